"""Web console sessions: opened at sign-in, found on each request, closed at sign-out
or when they expire. Only the SHA-256 of a session's cookie is stored; expired rows
go when the next session is opened."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from gatewayd.clock import Clock
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._schema import console_sessions
from gatewayd.mailbox.records import ConsoleSession


async def open_session(
    db: Database, clock: Clock, key_hash: str, email: str, *, lifetime: float
) -> ConsoleSession:
    now = clock.now()
    session = ConsoleSession(key_hash, email, now, now + timedelta(seconds=lifetime))
    c = console_sessions.c
    async with db.write() as conn:
        await conn.execute(sa.delete(console_sessions).where(c.expires_at <= now))
        await conn.execute(
            console_sessions.insert().values(
                key_hash=key_hash,
                email=email,
                created_at=session.created_at,
                expires_at=session.expires_at,
            )
        )
    return session


async def find_session(db: Database, clock: Clock, key_hash: str) -> ConsoleSession | None:
    c = console_sessions.c
    async with db.read() as conn:
        row = (
            await conn.execute(
                sa.select(c.key_hash, c.email, c.created_at, c.expires_at).where(
                    c.key_hash == key_hash
                )
            )
        ).first()
    if row is None or row.expires_at <= clock.now():
        return None
    return ConsoleSession(row.key_hash, row.email, row.created_at, row.expires_at)


async def close_session(db: Database, key_hash: str) -> None:
    async with db.write() as conn:
        await conn.execute(
            sa.delete(console_sessions).where(console_sessions.c.key_hash == key_hash)
        )
