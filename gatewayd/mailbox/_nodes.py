"""The nodes of a cluster: one row per node name, its heartbeat, and who holds what.

``join`` takes a name for this life of a daemon (a fresh ``instance``), refusing while
another life of that name is live (its heartbeat newer than ``stale_after`` and not
stopped), unless that life ran on this host and its process is gone (``alive`` says):
a daemon restarted after a crash takes its name back at once. ``beat`` renews the
heartbeat; False when the row now names another instance (another daemon took the
name after this one went quiet): this life must stop working. ``adopt`` moves the
Queued messages a gone node held to a live owner, with an event each, in one
statement per batch: two nodes adopting at once get disjoint sets.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from gatewayd.clock import Clock
from gatewayd.errors import NodeNameInUse
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._rows import add_events, event_row, load_messages, select_messages
from gatewayd.mailbox._schema import messages, nodes
from gatewayd.mailbox.records import Message, Node
from gatewayd.model import MessageStatus, MessageType


async def join(
    db: Database,
    clock: Clock,
    name: str,
    *,
    stale_after: float,
    host: str,
    pid: int,
    version: str,
    alive: Callable[[int], bool],
) -> str:
    now = clock.now()
    instance = secrets.token_hex(8)
    values = {
        "instance": instance,
        "host": host,
        "pid": pid,
        "version": version,
        "started_at": now,
        "heartbeat_at": now,
        "stopped_at": None,
        "info": {},
    }
    async with db.write() as conn:
        query = sa.select(nodes).where(nodes.c.name == name)
        if conn.dialect.name != "sqlite":
            query = query.with_for_update()
        row = (await conn.execute(query)).mappings().first()
        if row is None:
            await conn.execute(nodes.insert().values(name=name, **values))
            return instance
        quiet = (now - row["heartbeat_at"]).total_seconds()
        crashed_here = row["host"] == host and not alive(row["pid"])
        if row["stopped_at"] is None and quiet < stale_after and not crashed_here:
            raise NodeNameInUse(
                f"node name {name!r} is in use by a live node (host {row['host']}, pid "
                f"{row['pid']}, heartbeat {quiet:.0f} s ago): give this daemon its own "
                f"[node] name, or wait {stale_after - quiet:.0f} s if that node has died"
            )
        await conn.execute(sa.update(nodes).where(nodes.c.name == name).values(values))
    return instance


async def beat(db: Database, clock: Clock, name: str, instance: str, info: dict[str, Any]) -> bool:
    async with db.write() as conn:
        result = await conn.execute(
            sa.update(nodes)
            .where(nodes.c.name == name, nodes.c.instance == instance)
            .values(heartbeat_at=clock.now(), info=info, stopped_at=None)
        )
        return bool(result.rowcount)


async def leave(db: Database, clock: Clock, name: str, instance: str) -> None:
    async with db.write() as conn:
        await conn.execute(
            sa.update(nodes)
            .where(nodes.c.name == name, nodes.c.instance == instance)
            .values(stopped_at=clock.now())
        )


async def listed(db: Database) -> list[Node]:
    m = messages.c
    held_query = (
        sa.select(m.lease_owner, m.type, sa.func.count())
        .where(m.message_status == MessageStatus.QUEUED.value, m.lease_owner.is_not(None))
        .group_by(m.lease_owner, m.type)
    )
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(nodes).order_by(nodes.c.name))).mappings().all()
        held_rows = (await conn.execute(held_query)).all()
    held: dict[str, dict[str, int]] = {}
    for owner, kind, count in held_rows:
        _, _, node = str(owner).partition("@")
        by_type = held.setdefault(node, {})
        by_type[kind] = by_type.get(kind, 0) + count
    return [
        Node(
            name=row["name"],
            instance=row["instance"],
            host=row["host"],
            pid=row["pid"],
            version=row["version"],
            started_at=row["started_at"],
            heartbeat_at=row["heartbeat_at"],
            stopped_at=row["stopped_at"],
            info=dict(row["info"] or {}),
            held=held.get(row["name"], {}),
        )
        for row in rows
    ]


async def gone(db: Database, clock: Clock, *, stale_after: float) -> list[str]:
    """Nodes that stopped, or whose heartbeat is older than ``stale_after``."""
    cutoff = clock.now() - timedelta(seconds=stale_after)
    c = nodes.c
    async with db.read() as conn:
        found = await conn.execute(
            sa.select(c.name).where(sa.or_(c.stopped_at.is_not(None), c.heartbeat_at < cutoff))
        )
        return list(found.scalars())


async def adopt(
    db: Database,
    clock: Clock,
    from_owner: str,
    to_owner: str,
    *,
    types: Collection[MessageType],
    reason: str,
    limit: int = 500,
) -> list[Message]:
    """The Queued messages ``from_owner`` holds (at most ``limit``), now held by
    ``to_owner``, each with an event naming both. Attempts are not counted again:
    the work goes on where it stopped."""
    now = clock.now()
    m = messages.c
    async with db.write() as conn:
        picked = (
            sa.select(m.id)
            .where(
                m.lease_owner == from_owner,
                m.message_status == MessageStatus.QUEUED.value,
                m.type.in_([t.value for t in types]),
            )
            .limit(limit)
        )
        if conn.dialect.name != "sqlite":
            picked = picked.with_for_update(skip_locked=True)
        ids = list((await conn.execute(picked)).scalars())
        if not ids:
            return []
        await conn.execute(
            sa.update(messages)
            .where(m.id.in_(ids), m.lease_owner == from_owner)
            .values(lease_owner=to_owner, last_modified_time=now)
        )
        detail = {"previous_owner": from_owner, "owner": to_owner}
        await add_events(conn, [event_row(i, now, "lease", reason, detail=detail) for i in ids])
        return await load_messages(conn, select_messages(conn).where(m.id.in_(ids)))
