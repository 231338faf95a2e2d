"""The writers' turn on SQLite (mailbox/_driver.py): the lock file beside the database,
taken on the event loop's thread when it is free, waited for in the writer thread when
another writer (here: another open file, as the SMS process's would be) holds it."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gatewayd.mailbox._driver import Execute, Fetch, SqliteWriter


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[SqliteWriter]:
    writer = SqliteWriter(str(tmp_path / "m.sqlite3"), ["PRAGMA journal_mode=WAL"], 5.0)

    def body():  # type: ignore[no-untyped-def]
        yield Execute("CREATE TABLE t (x INTEGER)")

    await writer.run(body())  # the thread opens the database and the lock file
    yield writer
    await writer.close()


def other_writer(tmp_path: Path) -> int:
    """The lock file opened apart, as another process opens it."""
    return os.open(tmp_path / "m.sqlite3-writer", os.O_RDWR)


async def test_a_free_turn_is_taken_without_the_writer_thread(
    writer: SqliteWriter, tmp_path: Path
) -> None:
    busy, done = threading.Event(), threading.Event()
    loop = asyncio.get_running_loop()
    blocked = loop.run_in_executor(writer._thread, lambda: (busy.set(), done.wait(10)))
    await asyncio.to_thread(busy.wait, 10)
    await asyncio.wait_for(writer.hold(), 2)  # the thread is busy: taken here
    other = other_writer(tmp_path)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # it is held
        await writer.let_go()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # given back: free
        fcntl.flock(other, fcntl.LOCK_UN)
    finally:
        os.close(other)
        done.set()
        await blocked


async def test_a_held_turn_is_waited_for_then_taken(writer: SqliteWriter, tmp_path: Path) -> None:
    other = other_writer(tmp_path)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        taking = asyncio.ensure_future(writer.hold())
        await asyncio.sleep(0.3)
        assert not taking.done()  # waiting in the writer thread
        fcntl.flock(other, fcntl.LOCK_UN)
        await asyncio.wait_for(taking, 5)

        def body():  # type: ignore[no-untyped-def]
            yield Execute("INSERT INTO t VALUES (?)", (1,))
            return (yield Fetch("SELECT count(*) FROM t"))

        assert await writer.run(body()) == [(1,)]  # a transaction in the turn
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        await writer.let_go()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)
