"""The writers' turn on SQLite (mailbox/_driver.py): the lock file beside the database,
taken by the writer thread for each transaction and given back when it ends; the body
of a transaction is made only once the turn is held, so a batch (mailbox/_batch.py)
takes in what arrived while another writer (here: another open file, as the SMS
process's would be) held it. A quick transaction runs on the event loop's thread
instead when the turn is free (at once, or once another process gives it back, waited
for beside the loop), unless one there was slow lately."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewayd.config.settings import SQLITE_FILE_NAME, MailboxSettings
from gatewayd.errors import StoreError
from gatewayd.mailbox import _driver
from gatewayd.mailbox._batch import Batcher, Take
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._driver import Body, Execute, Fetch, Insert, Spelling


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(MailboxSettings(data_dir=tmp_path))

    def body(_sql: Spelling) -> Body[None]:
        yield Execute("CREATE TABLE t (x INTEGER)")

    await db.transact(body)  # the writer thread opens the database and the lock file
    yield db
    await db.close()


@pytest.fixture
def other(database: Database, tmp_path: Path) -> Iterator[int]:
    """The lock file opened apart, as another process opens it."""
    fd = os.open(tmp_path / f"{SQLITE_FILE_NAME}-writer", os.O_RDWR)
    yield fd
    os.close(fd)


def is_free(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


async def test_a_transaction_holds_the_turn_and_gives_it_back(
    database: Database, other: int
) -> None:
    seen: list[bool] = []

    def body() -> Body[Any]:
        seen.append(is_free(other))
        yield Execute("INSERT INTO t VALUES (?)", (1,))
        return (yield Fetch("SELECT count(*) FROM t"))

    def make(_sql: Spelling) -> Body[Any]:
        seen.append(is_free(other))
        return body()

    assert await database.transact(make) == [(1,)]
    assert seen == [False, False]  # held while the body was made, and while it ran
    assert is_free(other)  # given back


async def test_a_batch_waits_for_the_turn_and_takes_in_what_came_meanwhile(
    database: Database, other: int
) -> None:
    batches: list[list[int]] = []

    def insert(items: list[int]) -> Body[None]:
        yield Insert("t", ("x",), [(x,) for x in items])

    async def apply(take: Take[int, int]) -> list[int | Exception]:
        def make(_sql: Spelling) -> Body[None]:  # as the group commit's: takes at once
            batches.append(take())
            return insert(batches[-1])

        await database.transact(make)
        return [x * 10 for x in take()]

    batcher: Batcher[int, int] = Batcher(apply, name="test")
    fcntl.flock(other, fcntl.LOCK_EX)  # another process writes
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.3)
    assert not first.done()  # waiting in the writer thread, nothing taken yet
    assert batches == []
    later = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3)]
    await asyncio.sleep(0.05)
    fcntl.flock(other, fcntl.LOCK_UN)
    assert await asyncio.wait_for(asyncio.gather(first, *later), 5) == [10, 20, 30]
    assert batches == [[1, 2, 3]]  # one transaction, taken once the turn was had

    def count(_sql: Spelling) -> Body[Any]:
        return (yield Fetch("SELECT count(*) FROM t"))

    assert await database.transact(count) == [(3,)]
    assert is_free(other)
    await batcher.close()


async def test_a_writer_stopped_while_it_waits_for_the_turn_leaves_it_free(
    database: Database, other: int
) -> None:
    fcntl.flock(other, fcntl.LOCK_EX)

    def body(_sql: Spelling) -> Body[None]:
        yield Execute("INSERT INTO t VALUES (?)", (7,))

    waiting = asyncio.ensure_future(database.transact(body))
    await asyncio.sleep(0.3)
    waiting.cancel()  # a stop, while the writer thread waits on the lock file
    with pytest.raises(asyncio.CancelledError):
        await waiting
    fcntl.flock(other, fcntl.LOCK_UN)  # the thread takes it now, writes, and gives it back

    def count(_sql: Spelling) -> Body[Any]:
        return (yield Fetch("SELECT count(*) FROM t"))

    # The writer thread runs its transactions in order: the given-up one's first.
    assert await database.transact(count) == [(1,)]  # a write given up is still written
    assert is_free(other)  # not left held


async def test_the_turn_is_free_only_while_no_writer_holds_it(
    database: Database, other: int
) -> None:
    assert database.turn_free()
    fcntl.flock(other, fcntl.LOCK_EX)
    assert not database.turn_free()  # another process writes
    fcntl.flock(other, fcntl.LOCK_UN)
    seen: list[bool] = []

    def one() -> Body[None]:
        yield Execute("INSERT INTO t VALUES (1)")

    def make(_sql: Spelling) -> Body[None]:
        seen.append(database.turn_free())  # this process's writer thread holds it
        return one()

    await database.transact(make)
    assert seen == [False]
    assert database.turn_free()
    assert is_free(other)  # looking did not take it


async def test_a_batch_taken_early_leaves_what_comes_later_to_the_next(
    database: Database, other: int
) -> None:
    """The group commit's way (``early``, there: while the turn is free): the batch is
    what waits at that moment, even if the turn must then be waited for; what comes
    meanwhile is the next batch."""
    batches: list[list[int]] = []

    def insert(items: list[int]) -> Body[None]:
        yield Insert("t", ("x",), [(x,) for x in items])

    async def apply(take: Take[int, int]) -> list[int | Exception]:
        def make(_sql: Spelling) -> Body[None]:
            batches.append(take())
            return insert(batches[-1])

        await database.transact(make)
        return [x * 10 for x in take()]

    batcher: Batcher[int, int] = Batcher(apply, name="test", early=lambda: True)
    fcntl.flock(other, fcntl.LOCK_EX)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.3)
    later = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3)]
    await asyncio.sleep(0.05)
    fcntl.flock(other, fcntl.LOCK_UN)
    assert await asyncio.wait_for(asyncio.gather(first, *later), 5) == [10, 20, 30]
    assert batches == [[1], [2, 3]]
    await batcher.close()


async def test_a_batcher_stopped_while_its_batch_waits_for_the_turn_leaves_nothing_hanging(
    database: Database, other: int
) -> None:
    """Its worker cancelled (a stop) while the writer thread waits for the turn: what
    it had asked for fails at once; the transaction, when the turn comes, takes
    nothing, so what is asked for afterwards goes in a batch of its own and is answered."""

    def insert(items: list[int]) -> Body[None]:
        yield Insert("t", ("x",), [(x,) for x in items])

    async def apply(take: Take[int, int]) -> list[int | Exception]:
        await database.transact(lambda _sql: insert(take()))
        return [x * 10 for x in take()]

    batcher: Batcher[int, int] = Batcher(apply, name="test")
    fcntl.flock(other, fcntl.LOCK_EX)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.3)  # the thread waits for the turn, nothing taken yet
    assert batcher._worker is not None
    batcher._worker.cancel()
    with pytest.raises(StoreError):
        await asyncio.wait_for(first, 5)
    later = asyncio.ensure_future(batcher.submit(2))
    fcntl.flock(other, fcntl.LOCK_UN)
    assert await asyncio.wait_for(later, 5) == 20

    def rows(_sql: Spelling) -> Body[Any]:
        return (yield Fetch("SELECT x FROM t ORDER BY x"))

    assert await database.transact(rows) == [(2,)]
    await batcher.close()


def where(seen: list[str]) -> Body[None]:
    """A body that notes the thread it runs on and writes one row."""
    seen.append(threading.current_thread().name)
    yield Execute("INSERT INTO t VALUES (1)")


async def test_a_quick_transaction_runs_on_the_event_loops_thread_holding_the_turn(
    database: Database, other: int
) -> None:
    seen: list[str] = []
    held: list[bool] = []

    def make(_sql: Spelling) -> Body[None]:
        held.append(is_free(other))
        return where(seen)

    await database.transact(make, quick=True)
    await database.transact(make)  # not quick: the writer thread
    assert seen[0] == threading.current_thread().name
    assert seen[1].startswith("mailbox-writer")
    assert held == [False, False]  # the turn held either way
    assert is_free(other)  # and given back


async def test_a_quick_transaction_waits_for_another_processs_turn_then_runs_on_the_loop(
    database: Database, other: int
) -> None:
    """Another process writes: a thread of its own waits for the turn (the loop goes
    on), and the transaction then runs on the event loop's thread, holding it."""
    seen: list[str] = []
    held: list[bool] = []

    def make(_sql: Spelling) -> Body[None]:
        held.append(is_free(other))
        return where(seen)

    fcntl.flock(other, fcntl.LOCK_EX)
    waiting = asyncio.ensure_future(database.transact(make, quick=True))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # the loop is not blocked: it runs this test meanwhile
    assert seen == []
    fcntl.flock(other, fcntl.LOCK_UN)
    await asyncio.wait_for(waiting, 5)
    assert seen == [threading.current_thread().name]
    assert held == [False]
    assert is_free(other)


async def test_a_quick_transaction_given_up_while_it_waits_for_the_turn_leaves_it_free(
    database: Database, other: int
) -> None:
    """Its caller gives up while the waiting thread is blocked: the turn, when that
    thread gets it, is given back at once, and so is the connection; nothing of the
    given-up one was written."""
    seen: list[str] = []
    fcntl.flock(other, fcntl.LOCK_EX)
    given_up = asyncio.ensure_future(database.transact(lambda _sql: where(seen), quick=True))
    await asyncio.sleep(0.2)
    given_up.cancel()
    with pytest.raises(asyncio.CancelledError):
        await given_up
    fcntl.flock(other, fcntl.LOCK_UN)
    await asyncio.sleep(0.5)  # the waiting thread gets the turn and lets it go
    assert is_free(other)  # (with no other transaction to give it back)
    await asyncio.wait_for(database.transact(lambda _sql: where(seen), quick=True), 5)
    assert seen == [threading.current_thread().name]  # the connection free again: here

    def count(_sql: Spelling) -> Body[Any]:
        return (yield Fetch("SELECT count(*) FROM t"))

    assert await database.transact(count) == [(1,)]  # the given-up one wrote nothing
    assert is_free(other)


async def test_a_quick_transaction_never_shares_the_connection_with_one_given_up(
    database: Database, other: int
) -> None:
    """A transaction whose caller gave up still runs to its end in the writer thread,
    holding the turn through this process's own lock file descriptor (which the event
    loop's thread could take again without waiting): a quick one asked meanwhile goes
    to the thread, after it."""
    started = threading.Event()
    go_on = threading.Event()
    seen: list[str] = []

    def slow(_sql: Spelling) -> Body[None]:
        started.set()
        go_on.wait(5)  # the given-up transaction, still in the thread
        return where(seen)

    given_up = asyncio.ensure_future(database.transact(slow))
    assert await asyncio.to_thread(started.wait, 5)
    given_up.cancel()
    with pytest.raises(asyncio.CancelledError):
        await given_up
    quick = asyncio.ensure_future(database.transact(lambda _sql: where(seen), quick=True))
    await asyncio.sleep(0.1)
    assert not quick.done()  # not run here meanwhile
    go_on.set()
    await asyncio.wait_for(quick, 5)
    assert len(seen) == 2
    assert all(name.startswith("mailbox-writer") for name in seen)

    def count(_sql: Spelling) -> Body[Any]:
        return (yield Fetch("SELECT count(*) FROM t"))

    assert await database.transact(count) == [(2,)]
    assert is_free(other)


async def test_after_a_slow_transaction_here_the_next_go_to_the_writer_thread_for_a_while(
    database: Database,
    other: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(_driver, "HERE_SLOW_SECONDS", 0.05)
    monkeypatch.setattr(_driver, "HERE_PAUSE_SECONDS", 0.5)
    seen: list[str] = []

    def slow(_sql: Spelling) -> Body[None]:
        time.sleep(0.1)  # as a slow disk would hold it
        return where(seen)

    with caplog.at_level(logging.INFO, logger="gatewayd.mailbox"):
        await database.transact(slow, quick=True)
    assert "mailbox.slow_write" in caplog.text
    await database.transact(lambda _sql: where(seen), quick=True)
    await asyncio.sleep(0.6)  # the pause is over
    await database.transact(lambda _sql: where(seen), quick=True)
    loop = threading.current_thread().name
    assert seen[0] == loop
    assert seen[1].startswith("mailbox-writer")
    assert seen[2] == loop
    assert is_free(other)


async def test_a_quick_transaction_leaves_sqlites_own_lock_to_the_writer_thread(
    database: Database, other: int, tmp_path: Path
) -> None:
    """A program that does not take turns on the lock file (``gatewayd purge``) may hold
    SQLite's own write lock: the event loop's thread does not wait for it (SQLite's
    busy wait would hold the loop); the writer thread does."""
    seen: list[str] = []
    purge = sqlite3.connect(tmp_path / SQLITE_FILE_NAME, isolation_level=None)
    try:
        purge.execute("BEGIN IMMEDIATE")
        waiting = asyncio.ensure_future(database.transact(lambda _sql: where(seen), quick=True))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # and the loop ran this test meanwhile
        purge.execute("COMMIT")
        await asyncio.wait_for(waiting, 5)
    finally:
        purge.close()
    assert len(seen) == 1
    assert seen[0].startswith("mailbox-writer")
    await database.transact(lambda _sql: where(seen), quick=True)  # free again: here
    assert seen[1] == threading.current_thread().name
    assert is_free(other)


async def test_a_batcher_lets_the_loop_run_between_batches_written_on_its_thread() -> None:
    """Batches written without an await (quick transactions on the loop's thread) and
    capped leave the rest waiting: the loop runs between them, so it is not held for
    a whole backlog and another process can take the writers' turn."""
    order: list[Any] = []

    async def apply(take: Take[int, int]) -> list[int | Exception]:
        order.append(take(1))  # written at once, no await
        return [x * 10 for x in take()]

    batcher: Batcher[int, int] = Batcher(apply, name="test")
    answers = [batcher.submit_nowait(n) for n in (1, 2, 3)]
    asyncio.get_running_loop().call_soon(order.append, "the loop")
    assert await asyncio.wait_for(asyncio.gather(*answers), 5) == [10, 20, 30]
    assert order == [[1], "the loop", [2], [3]]
    await batcher.close()


@pytest.mark.parametrize(("gather_below", "expected"), [(3, [[1, 2, 3]]), (0, [[1], [2, 3]])])
async def test_a_batcher_with_few_waiting_lets_the_loop_go_round_for_more(
    gather_below: int, expected: list[list[int]]
) -> None:
    """``gather_below``: one item waiting, the worker lets the loop run twice before it
    takes the batch, so what the loop's next callbacks submit goes in the same batch;
    without it the first item is a batch of its own."""
    batches: list[list[int]] = []

    async def apply(take: Take[int, int]) -> list[int | Exception]:
        batches.append(take())
        await asyncio.sleep(0)
        return [x * 10 for x in take()]

    batcher: Batcher[int, int] = Batcher(
        apply, name="test", early=lambda: True, gather_below=gather_below
    )
    first = batcher.submit_nowait(1)
    later: list[asyncio.Future[int]] = []
    loop = asyncio.get_running_loop()
    loop.call_soon(lambda: later.extend(batcher.submit_nowait(n) for n in (2, 3)))
    assert await asyncio.wait_for(first, 5) == 10
    assert await asyncio.wait_for(asyncio.gather(*later), 5) == [20, 30]
    assert batches == expected
    await batcher.close()


# -- front and behind: the ledger begins right after the other process's group commit --


def stamp(fd: int, age: float, pid: int) -> None:
    """Write what a ``front`` transaction of process ``pid`` writes, ``age`` seconds ago."""
    os.pwrite(fd, struct.pack("<dq", time.monotonic() - age, pid), 0)


OTHER_PID = os.getpid() + 1  # any process id but ours


async def test_a_front_transaction_writes_when_it_let_the_turn_go_and_whose_it_was(
    database: Database, other: int
) -> None:
    await database.transact(lambda _sql: where([]))
    assert os.pread(other, 16, 0) == b""  # not front: nothing written
    for quick in (True, False):  # on the loop's thread and in the writer thread
        before = time.monotonic()
        await database.transact(lambda _sql: where([]), quick=quick, front=True)
        at, pid = struct.unpack("<dq", os.pread(other, 16, 0))
        assert pid == os.getpid()
        assert before <= at <= time.monotonic()
    assert is_free(other)


async def test_behind_front_goes_at_once_unless_another_process_writes_for_callers(
    database: Database, other: int
) -> None:
    started = time.monotonic()
    assert await database.behind_front() is False  # no stamp yet
    stamp(other, 0.003, os.getpid())
    assert await database.behind_front() is False  # our own
    stamp(other, _driver.FRONT_ACTIVE + 0.01, OTHER_PID)
    assert await database.behind_front() is False  # another's, but not lately
    stamp(other, -3600.0, OTHER_PID)
    assert await database.behind_front() is False  # from before a restart of the machine
    stamp(other, 0.0, OTHER_PID)
    assert await database.behind_front() is True  # another's, just now
    assert time.monotonic() - started < 0.5  # none of these waited


async def test_behind_front_waits_for_the_next_front_transaction_to_end(
    database: Database, other: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_driver, "FRONT_ACTIVE", 5.0)
    monkeypatch.setattr(_driver, "FRONT_AT_MOST", 5.0)
    stamp(other, 0.05, OTHER_PID)  # in the middle of the other's cycle
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, stamp, other, 0.0, OTHER_PID)  # its next one ends
    started = time.monotonic()
    assert await asyncio.wait_for(database.behind_front(), 5) is True
    assert time.monotonic() - started >= 0.19


async def test_behind_front_waits_at_most_front_at_most(
    database: Database, other: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_driver, "FRONT_ACTIVE", 5.0)
    monkeypatch.setattr(_driver, "FRONT_AT_MOST", 0.1)
    stamp(other, 0.05, OTHER_PID)  # and no next one comes
    started = time.monotonic()
    assert await asyncio.wait_for(database.behind_front(), 5) is False
    assert 0.09 <= time.monotonic() - started < 1.0


# -- synchronous=full: the WAL synced after the turn is let go ------------------------------


class SyncSpy:
    """os.fdatasync as it is (the real sync), noting for each call the file synced and
    whether the writers' turn was free at that moment."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, turn: int) -> None:
        self.calls: list[tuple[int, bool, str]] = []
        real = os.fdatasync

        def spy(fd: int) -> None:
            self.calls.append((os.fstat(fd).st_ino, is_free(turn), threading.current_thread().name))
            real(fd)

        monkeypatch.setattr(os, "fdatasync", spy)


def create_table() -> Body[None]:
    yield Execute("CREATE TABLE t (x INTEGER)")


def wal_inode(tmp_path: Path) -> int:
    return (tmp_path / f"{SQLITE_FILE_NAME}-wal").stat().st_ino


async def test_with_synchronous_full_the_wal_is_synced_after_the_turn_is_let_go(
    database: Database, other: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own sync in COMMIT held the turn while the other process waited; the
    writer's connection runs at NORMAL and the driver syncs the WAL once the turn is
    free, before the caller has its result, on the loop's thread and in the writer
    thread alike."""
    spy = SyncSpy(monkeypatch, other)
    seen: list[str] = []
    await database.transact(lambda _sql: where(seen), quick=True)  # here
    assert seen == [threading.current_thread().name]
    assert spy.calls == [(wal_inode(tmp_path), True, seen[0])]
    await database.transact(lambda _sql: where(seen))  # in the writer thread
    assert seen[1].startswith("mailbox-writer")
    assert spy.calls[1:] == [(wal_inode(tmp_path), True, seen[1])]
    writer = database._sqlite
    assert writer is not None
    assert writer._connection is not None
    assert writer._connection.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL


async def test_with_synchronous_normal_nothing_is_synced_at_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(MailboxSettings(data_dir=tmp_path, sqlite_synchronous="normal"))
    try:
        await db.transact(lambda _sql: create_table())
        turn = os.open(tmp_path / f"{SQLITE_FILE_NAME}-writer", os.O_RDWR)
        try:
            spy = SyncSpy(monkeypatch, turn)
            await db.transact(lambda _sql: where([]), quick=True)
            await db.transact(lambda _sql: where([]))
        finally:
            os.close(turn)
        assert spy.calls == []
    finally:
        await db.close()


async def test_one_descriptor_syncs_the_wal_whatever_other_connections_do(
    database: Database, other: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The WAL's descriptor is opened once, at the first commit: while the writer's
    connection is open the WAL stays one file (one inode), even when another
    connection writes, checkpoints it to nothing and closes."""
    writer = database._sqlite
    assert writer is not None
    await database.transact(lambda _sql: where([]))
    held = writer._wal
    assert held is not None
    assert os.fstat(held).st_ino == wal_inode(tmp_path)
    for _ in range(2):
        another = sqlite3.connect(tmp_path / SQLITE_FILE_NAME, isolation_level=None)
        another.execute("INSERT INTO t VALUES (2)")
        another.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        another.close()
    spy = SyncSpy(monkeypatch, other)
    await database.transact(lambda _sql: where([]), quick=True)
    await database.transact(lambda _sql: where([]))
    assert writer._wal == held
    assert [inode for inode, _, _ in spy.calls] == [wal_inode(tmp_path)] * 2


async def test_a_failed_sync_is_the_callers_error_and_says_so(
    database: Database, other: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    def broken(_fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    with (
        caplog.at_level(logging.ERROR, logger="gatewayd.mailbox"),
        pytest.raises(StoreError, match="Input/output error"),
    ):
        await database.transact(lambda _sql: where([]), quick=True)
    assert "mailbox.sync_failed" in caplog.text
    assert is_free(other)


def test_without_wal_the_connection_syncs_itself(tmp_path: Path) -> None:
    """A database SQLite cannot keep in WAL mode: no WAL to sync, so the connection is
    set back to synchronous=FULL."""
    path = str(tmp_path / "plain.sqlite3")
    pragmas = ["PRAGMA journal_mode=DELETE", "PRAGMA synchronous=NORMAL"]
    writer = _driver.SqliteWriter(path, pragmas, 5.0, sync_wal=True)

    async def run() -> None:
        try:
            await writer.run(create_table)
            assert writer._connection is not None
            assert writer._connection.execute("PRAGMA synchronous").fetchone() == (2,)
            assert writer._sync_wal is False
        finally:
            await writer.close()

    asyncio.run(run())
