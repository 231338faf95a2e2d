"""Engines for the mailbox database: SQLite (WAL) by default, PostgreSQL by URL.

Reads and writes take different paths. On SQLite, writes go through one pooled
connection that opens its transactions with BEGIN IMMEDIATE, so writers in this
process queue in the pool instead of fighting over the file lock, and a read-then-write
transaction can never fail half-way with SQLITE_BUSY; writers in other processes
(``gatewayd purge`` beside the daemon) wait on ``busy_timeout``. Reads use their own
pool without explicit transactions (each SELECT is its own snapshot, which WAL runs
beside the writer), saving the BEGIN and COMMIT round trips to the driver's thread.
On PostgreSQL one engine serves both, and row locks (FOR UPDATE, SKIP LOCKED in the
queue) do what BEGIN IMMEDIATE does here.

This is where the mailbox touches the database, and so where the database's own
exceptions become the mailbox's (gatewayd.errors): a lost connection, a locked or
full database is StoreUnavailable, a unique key collision StoreConflict, anything else
StoreError, each naming the database and what went wrong, never the driver's class.

Opening a mailbox already at the newest schema (``HEAD``, which a test keeps equal to
the newest migration) reads its revision with one query and does not load Alembic:
every operator command opens the mailbox, and Alembic with its migration scripts is a
tenth of a second of a command's start. Anything else goes through Alembic's upgrade.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from gatewayd.config.settings import MailboxSettings
from gatewayd.errors import StartupError, StoreConflict, StoreError, StoreUnavailable
from gatewayd.mailbox import _driver
from gatewayd.mailbox._driver import Body, PostgresSpelling, Spelling, SqliteWriter

T = TypeVar("T")

if TYPE_CHECKING:
    from alembic.config import Config

HEAD = "0007"  # the newest migration (tests/integration/test_migrations.py checks)
BUSY_TIMEOUT_SECONDS = 30.0
MIGRATION_LOCK = 0x6761746577617964  # "gatewayd"


def _json_dumps(value: Any) -> str:
    """JSON columns (parties, event details) with orjson: several times faster than
    the json module, which matters on every row read."""
    return orjson.dumps(value).decode()


WRITE_QUEUE_TIMEOUT_SECONDS = 60.0
_POSTGRES = PostgresSpelling()


def _pragmas(settings: MailboxSettings, synchronous: str | None = None) -> list[str]:
    """What every SQLite connection of the mailbox is set up with (``synchronous``: other
    than the setting's, for the hot path's writer, which syncs the WAL itself)."""
    return [
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={(synchronous or settings.sqlite_synchronous).upper()}",
        "PRAGMA foreign_keys=ON",
        "PRAGMA cache_size=-32768",
        "PRAGMA temp_store=MEMORY",
    ]


def _sqlite_engine(settings: MailboxSettings, *, begin: str | None, pool_size: int) -> AsyncEngine:
    """``begin``: the statement that opens a transaction; None for a reader, whose
    statements each run in their own implicit transaction (no BEGIN/COMMIT round trips)."""
    engine = create_async_engine(
        settings.url,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args={"timeout": BUSY_TIMEOUT_SECONDS},
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=WRITE_QUEUE_TIMEOUT_SECONDS,
        pool_reset_on_return=None if begin is None else "rollback",
    )

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Take BEGIN away from the driver so the "begin" hook below decides its kind.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in _pragmas(settings):
            cursor.execute(pragma)
        cursor.close()

    if begin is not None:
        statement = begin

        @event.listens_for(engine.sync_engine, "begin")
        def on_begin(connection: sa.Connection) -> None:
            connection.exec_driver_sql(statement)

    return engine


class Database:
    """The mailbox's engines, with ``read()`` and ``write()`` transactions."""

    def __init__(self, settings: MailboxSettings) -> None:
        self.settings = settings
        self.is_sqlite = settings.is_sqlite
        # This process's writers take turns here (SQLAlchemy's and the hot path's own
        # connection on SQLite), so that they never wait for each other inside SQLite.
        self._writing = asyncio.Lock()
        self._sqlite: SqliteWriter | None = None
        if self.is_sqlite:
            self._writer = _sqlite_engine(settings, begin="BEGIN IMMEDIATE", pool_size=1)
            self._reader = _sqlite_engine(settings, begin=None, pool_size=4)
            path = sa.make_url(settings.url).database or ""
            self._sqlite = SqliteWriter(
                path,
                _pragmas(settings, synchronous="normal"),
                BUSY_TIMEOUT_SECONDS,
                sync_wal=settings.sqlite_synchronous == "full",
            )
        else:
            self._writer = create_async_engine(
                settings.url,
                json_serializer=_json_dumps,
                json_deserializer=orjson.loads,
                pool_size=10,
                pool_pre_ping=True,
            )
            self._reader = self._writer

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        try:
            if self.is_sqlite:
                async with self._writing, self._writer.begin() as conn:
                    yield conn
            else:
                async with self._writer.begin() as conn:
                    yield conn
        except (sa_exc.SQLAlchemyError, OSError) as exc:
            raise self.translate(exc) from exc

    async def behind_front(self) -> bool:
        """For a transaction that can wait a few milliseconds (the SMS ledger's), before
        it asks: on SQLite, while another process's ``front`` transactions come thick,
        wait for the next to end (_driver.py, ``SqliteWriter.behind_front``). Whether
        the turn was just let go by one (PostgreSQL: never; there is no turn)."""
        return self._sqlite is not None and await self._sqlite.behind_front()

    def turn_free(self) -> bool:
        """Whether no writer holds the writers' turn now (PostgreSQL: there is none)."""
        return self._sqlite is None or self._sqlite.turn_free()

    async def transact(
        self,
        make: Callable[[Spelling], Body[T]],
        *,
        quick: bool = False,
        front: bool = False,
    ) -> T:
        """Run the transaction body ``make(spelling)`` builds, on the driver's own
        connection (_driver.py), for the statements that run for every message;
        committed when the body returns, rolled back if it raises. ``make`` is called
        once the writers' turn is held (SQLite: in the writer thread, holding the lock
        file), so a batch may take in there what arrived until then (_batch.py).
        ``quick``: a few rows to write, nothing to compute; on SQLite it runs on the
        event loop's thread when the turn is free at once (_driver.py, "here").
        ``front``: callers wait on it (the group commit: ``behind_front``)."""
        try:
            if self._sqlite is not None:
                sqlite = self._sqlite
                async with self._writing:
                    return await sqlite.run(lambda: make(sqlite.spelling), here=quick, front=front)
            async with self._writer.connect() as conn:
                raw = await conn.get_raw_connection()
                return await _driver.run_postgres(raw.driver_connection, make(_POSTGRES))
        except StoreError:
            raise
        except Exception as exc:
            translated = _driver.translate(exc, f"mailbox database {self.describe()}")
            if translated is not None:
                raise translated from exc
            if isinstance(exc, sa_exc.SQLAlchemyError):
                raise self.translate(exc) from exc
            raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reading. Each statement sees the newest committed data;
        two statements may see different commits (a count beside a page, say)."""
        try:
            async with self._reader.connect() as conn:
                yield conn
        except (sa_exc.SQLAlchemyError, OSError) as exc:
            raise self.translate(exc) from exc

    async def dedicated(self) -> AsyncConnection:
        """A connection of its own, outside the pools' turn-taking, for a session-long
        hold such as an advisory lock; the caller closes it."""
        try:
            return await self._writer.connect()
        except (sa_exc.SQLAlchemyError, OSError) as exc:
            raise self.translate(exc) from exc

    def translate(self, exc: BaseException) -> StoreError:
        """The mailbox's error for a database (or driver) exception."""
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        why = detail[0] if detail else exc.__class__.__name__
        where = f"mailbox database {self.describe()}"
        if isinstance(exc, sa_exc.IntegrityError):
            return StoreConflict(f"{where}: {why}")
        if isinstance(
            exc, OSError | sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError
        ):
            return StoreUnavailable(f"{where} is unavailable: {why}")
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return StoreUnavailable(f"{where} is unavailable: {why}")
        return StoreError(f"{where}: {why}")

    async def migrate(self) -> str:
        """Bring the schema to the newest revision; returns that revision."""
        try:
            async with self.read() as conn:
                if await conn.run_sync(_stored_revision) == HEAD:
                    return HEAD
            await asyncio.to_thread(_load_alembic)  # its import is ~0.1 s of the loop
            async with self.write() as conn:
                if not self.is_sqlite:
                    # Instances starting together take turns (SQLite's BEGIN IMMEDIATE
                    # already makes them).
                    await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                await conn.run_sync(_upgrade)
                revision = await conn.run_sync(_current_revision)
        except StoreError as exc:
            raise StartupError(str(exc)) from exc
        return revision or ""

    async def close(self) -> None:
        if self._sqlite is not None:
            await self._sqlite.close()
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()

    def describe(self) -> str:
        """The URL without a password, for logs."""
        return sa.make_url(self.settings.url).render_as_string(hide_password=True)


def _stored_revision(connection: sa.Connection) -> str | None:
    """The schema's revision as the database records it (None: no schema yet)."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    found = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    return found[0][0] if len(found) == 1 else None


def _load_alembic() -> None:
    """Import what a migration needs (in a thread: the modules stay loaded)."""
    import alembic.command  # noqa: PLC0415
    import alembic.runtime.migration  # noqa: PLC0415
    import alembic.script  # noqa: PLC0415, F401


def alembic_config(connection: sa.Connection | None = None) -> Config:
    from alembic.config import Config  # noqa: PLC0415 (only when the schema must change)

    config = Config()
    location = resources.files("gatewayd.mailbox") / "migrations"
    config.set_main_option("script_location", str(location))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: sa.Connection) -> None:
    from alembic import command  # noqa: PLC0415 (only when the schema must change)

    command.upgrade(alembic_config(connection), "head")


def _current_revision(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415 (as above)

    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest migration, as Alembic reads the scripts."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415 (as above)

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return head or ""
