"""Parts of concatenated inbound SMS, stored as they come so that each can be
acknowledged to the SMSC at once and none is lost in a restart. When the last part of
a message is stored, the parts are taken out (in the same transaction) and handed back
to be made into the message; parts whose siblings never came are taken out by
``take_stale`` after the reassembly wait."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gatewayd.mailbox._database import Database
from gatewayd.mailbox._schema import sms_fragments
from gatewayd.mailbox.records import Fragment

Key = tuple[str, str, str, int, int]  # link, source, destination, reference, total


def _fragment(row: sa.RowMapping) -> Fragment:
    return Fragment(
        row["link"],
        row["source"],
        row["destination"],
        row["reference"],
        row["total"],
        row["seq"],
        row["text"],
        row["received_at"],
    )


def _same(key: Key) -> sa.ColumnElement[bool]:
    c = sms_fragments.c
    link, source, destination, reference, total = key
    return sa.and_(
        c.link == link,
        c.source == source,
        c.destination == destination,
        c.reference == reference,
        c.total == total,
    )


async def add(db: Database, fragment: Fragment) -> list[Fragment] | None:
    """Store ``fragment`` (a part sent twice is stored once); every part of its message,
    in order, when this one completes it (they are then no longer stored)."""
    values = {
        "link": fragment.link,
        "source": fragment.source,
        "destination": fragment.destination,
        "reference": fragment.reference,
        "total": fragment.total,
        "seq": fragment.seq,
        "text": fragment.text,
        "received_at": fragment.received_at,
    }
    async with db.write() as conn:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        await conn.execute(insert(sms_fragments).values(values).on_conflict_do_nothing())
        rows = (
            (
                await conn.execute(
                    sa.select(sms_fragments)
                    .where(_same(fragment.key))
                    .order_by(sms_fragments.c.seq)
                )
            )
            .mappings()
            .all()
        )
        if len(rows) < fragment.total:
            return None
        # Taken by the one writer whose delete returns them: on PostgreSQL the last
        # parts may arrive on two nodes at once, and only one makes the message.
        taken = (
            (
                await conn.execute(
                    sa.delete(sms_fragments).where(_same(fragment.key)).returning(sms_fragments)
                )
            )
            .mappings()
            .all()
        )
    if len(taken) < fragment.total:
        return None
    return sorted((_fragment(row) for row in taken), key=lambda f: f.seq)


async def take_stale(db: Database, older_than: datetime) -> list[list[Fragment]]:
    """The parts of every message whose oldest part came before ``older_than``, taken
    out of the store, grouped by message."""
    c = sms_fragments.c
    async with db.write() as conn:
        stale = (
            await conn.execute(
                sa.select(c.link, c.source, c.destination, c.reference, c.total)
                .group_by(c.link, c.source, c.destination, c.reference, c.total)
                .having(sa.func.min(c.received_at) < older_than)
            )
        ).all()
        groups = []
        for key in stale:
            key_tuple: Key = tuple(key)
            # Only what this delete returns is ours (another node may sweep too).
            taken = (
                (
                    await conn.execute(
                        sa.delete(sms_fragments).where(_same(key_tuple)).returning(sms_fragments)
                    )
                )
                .mappings()
                .all()
            )
            if taken:
                groups.append(sorted((_fragment(row) for row in taken), key=lambda f: f.seq))
    return groups
