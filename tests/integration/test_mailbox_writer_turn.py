"""The writers' turn on SQLite (mailbox/_driver.py, through ``Database.turn``): the lock
file beside the database, taken on the event loop's thread when it is free, waited for
in the writer thread when another writer (here: another open file, as the SMS
process's would be) holds it, and given back when the block ends or its task is
cancelled while it waits."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gatewayd.config.settings import SQLITE_FILE_NAME, MailboxSettings
from gatewayd.mailbox._database import Database
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
        writer.let_go()
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
        writer.let_go()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(MailboxSettings(data_dir=tmp_path))
    async with db.turn():  # the writer thread opens the database and the lock file
        pass
    yield db
    await db.close()


def lock_file(tmp_path: Path) -> int:
    return os.open(tmp_path / f"{SQLITE_FILE_NAME}-writer", os.O_RDWR)


async def test_the_turn_of_a_database_is_given_back_when_its_block_ends(
    database: Database, tmp_path: Path
) -> None:
    other = lock_file(tmp_path)
    try:
        async with database.turn():  # free: taken at once
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # given back
        entered = asyncio.Event()

        async def writer() -> None:
            async with database.turn():
                entered.set()

        waiting = asyncio.ensure_future(writer())
        await asyncio.sleep(0.3)
        assert not entered.is_set()  # held elsewhere: waited for
        fcntl.flock(other, fcntl.LOCK_UN)
        await asyncio.wait_for(waiting, 5)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # and given back again
        fcntl.flock(other, fcntl.LOCK_UN)
    finally:
        os.close(other)


async def test_a_writer_stopped_while_it_waits_for_the_turn_leaves_it_free(
    database: Database, tmp_path: Path
) -> None:
    other = lock_file(tmp_path)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free (the fixture's turn ended)

        async def writer() -> None:
            async with database.turn():
                raise AssertionError("never given the turn")

        waiting = asyncio.ensure_future(writer())
        await asyncio.sleep(0.3)
        waiting.cancel()  # a stop, while the writer thread waits on the lock file
        fcntl.flock(other, fcntl.LOCK_UN)  # the thread takes it now, and gives it back
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiting, 5)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: not left held
    finally:
        os.close(other)
