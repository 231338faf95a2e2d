"""Roles one node of a cluster plays at a time (the sweeper, the notifier): a
PostgreSQL session advisory lock per role, held on a connection of its own for as long
as the node plays it. When the node dies its connection closes and the lock is free
for the next node that asks. A SQLite mailbox has one daemon: it always plays every
role.
"""

from __future__ import annotations

import contextlib
import hashlib

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.logging import get_logger
from gatewayd.mailbox._database import Database

log = get_logger("gatewayd.mailbox")


def _key(role: str) -> int:
    """A stable 63-bit lock key for a role name."""
    digest = hashlib.blake2b(f"gatewayd-role:{role}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


class Roles:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._held: dict[str, AsyncConnection] = {}

    async def hold(self, role: str) -> bool:
        """Whether this process plays ``role`` now: it keeps it while its connection
        lives, or takes it when no other node has it."""
        if self._db.is_sqlite:
            return True
        conn = self._held.get(role)
        if conn is not None:
            try:
                await conn.execute(sa.text("SELECT 1"))
            except (sa_exc.SQLAlchemyError, OSError) as exc:  # the connection is gone
                log.warning("mailbox.role_lost", role=role, error=str(exc).splitlines()[0])
                del self._held[role]
                with contextlib.suppress(sa_exc.SQLAlchemyError, OSError):
                    await conn.close()
            else:
                return True
        conn = await self._db.dedicated()
        try:
            taken = await conn.scalar(sa.select(sa.func.pg_try_advisory_lock(_key(role))))
            await conn.commit()
        except (sa_exc.SQLAlchemyError, OSError) as exc:
            with contextlib.suppress(sa_exc.SQLAlchemyError, OSError):
                await conn.close()
            raise self._db.translate(exc) from exc
        if not taken:
            await conn.close()
            return False
        self._held[role] = conn
        log.info("mailbox.role_taken", role=role)
        return True

    async def release_all(self) -> None:
        for conn in self._held.values():
            with contextlib.suppress(sa_exc.SQLAlchemyError, OSError):
                await conn.close()
        self._held.clear()
