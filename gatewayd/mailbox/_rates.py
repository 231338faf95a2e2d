"""Rate-limit counters every node sees: a fixed window per key (the count since the
window began, a new window once it is over) and the end of a penalty.

On PostgreSQL each hit is one upsert, so the nodes of a cluster count together. A
SQLite mailbox has one daemon (its data directory is locked), so the counters live in
memory there: the same answers without a write per request.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from gatewayd.clock import Clock
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._schema import UtcTimestamp, rate_limits
from gatewayd.mailbox.records import RateState


class Rates(Protocol):
    async def add(self, key: str, *, window: float, n: int) -> RateState: ...

    async def peek(self, key: str, *, window: float) -> RateState: ...

    async def penalise(self, key: str, until: datetime) -> None: ...


class MemoryRates:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._states: dict[str, RateState] = {}

    def _current(self, key: str, window: float) -> RateState:
        now = self._clock.now()
        state = self._states.get(key)
        if state is None or state.window_start <= now - timedelta(seconds=window):
            state = RateState(0, now, state.penalty_until if state else None)
        return state

    async def add(self, key: str, *, window: float, n: int) -> RateState:
        state = self._current(key, window)
        state = RateState(state.count + n, state.window_start, state.penalty_until)
        self._states[key] = state
        return state

    async def peek(self, key: str, *, window: float) -> RateState:
        return self._current(key, window)

    async def penalise(self, key: str, until: datetime) -> None:
        state = self._states.get(key) or RateState(0, self._clock.now(), None)
        self._states[key] = RateState(state.count, state.window_start, until)


class DatabaseRates:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add(self, key: str, *, window: float, n: int) -> RateState:
        now = self._clock.now()
        over = rate_limits.c.window_start <= now - timedelta(seconds=window)
        insert = pg_insert(rate_limits).values(key=key, window_start=now, count=n)
        upsert = insert.on_conflict_do_update(
            index_elements=[rate_limits.c.key],
            set_={
                "count": sa.case((over, n), else_=rate_limits.c.count + n),
                "window_start": sa.case(
                    (over, sa.literal(now, UtcTimestamp)), else_=rate_limits.c.window_start
                ),
            },
        ).returning(rate_limits.c.count, rate_limits.c.window_start, rate_limits.c.penalty_until)
        async with self._db.write() as conn:
            count, start, penalty = (await conn.execute(upsert)).one()
        return RateState(count, start, penalty)

    async def peek(self, key: str, *, window: float) -> RateState:
        now = self._clock.now()
        c = rate_limits.c
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(c.count, c.window_start, c.penalty_until).where(c.key == key)
                )
            ).first()
        if row is None:
            return RateState(0, now, None)
        count, start, penalty = row
        if start <= now - timedelta(seconds=window):
            return RateState(0, now, penalty)
        return RateState(count, start, penalty)

    async def penalise(self, key: str, until: datetime) -> None:
        insert = pg_insert(rate_limits).values(
            key=key, window_start=self._clock.now(), count=0, penalty_until=until
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[rate_limits.c.key], set_={"penalty_until": until}
        )
        async with self._db.write() as conn:
            await conn.execute(upsert)
