"""Alembic migrations build exactly the schema the code describes, and run on start."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gatewayd.config.settings import MailboxSettings
from gatewayd.mailbox import Mailbox
from gatewayd.mailbox._database import HEAD, alembic_config, head_revision
from gatewayd.mailbox._schema import metadata


def _diff(connection: sa.Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_a_new_mailbox_is_migrated_to_head(tmp_path: Path) -> None:
    box = await Mailbox.open(MailboxSettings(data_dir=tmp_path))
    try:
        async with box._db.read() as conn:
            assert await conn.run_sync(_diff) == []
            revision = await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision()
            )
        assert revision == head_revision() == HEAD == "0007"
    finally:
        await box.close()
    reopened = await Mailbox.open(MailboxSettings(data_dir=tmp_path))  # idempotent
    await reopened.close()


def test_migrations_go_down_and_up_again(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
        assert _diff(conn) == []
        command.downgrade(alembic_config(conn), "base")
        assert set(sa.inspect(conn).get_table_names()) == {"alembic_version"}
        command.upgrade(alembic_config(conn), "head")
        assert _diff(conn) == []
    engine.dispose()


async def test_wal_and_pragmas(tmp_path: Path) -> None:
    box = await Mailbox.open(MailboxSettings(data_dir=tmp_path))
    try:
        async with box._db.read() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            sync = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
            fks = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
        assert (mode, sync, fks) == ("wal", 2, 1)  # synchronous 2 = FULL
    finally:
        await box.close()


async def test_an_older_mailbox_is_upgraded_on_opening(tmp_path: Path) -> None:
    """A mailbox at an older revision is not taken for the newest by the quick check."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'mailbox.sqlite3'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0004")
    engine.dispose()
    box = await Mailbox.open(MailboxSettings(data_dir=tmp_path))
    try:
        async with box._db.read() as conn:
            assert await conn.run_sync(_diff) == []
        assert await box.tokens() == []  # a table of 0005
    finally:
        await box.close()
