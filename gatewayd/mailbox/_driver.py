"""The hot path's way to the database: whole transactions in one trip, rows as tuples.

SQLAlchemy Core costs about 0.1 ms of processor time per statement on the async
drivers (its adapter, a greenlet switch, a trip to aiosqlite's thread, result objects)
and several microseconds per row (type processors): right for everything the mailbox
does now and then, too dear for the few transactions that run for every SMS (the group
commit of new messages, the SMS ledger, the SMS lease). Those are written here as
*bodies*: generators that yield the statements (``Fetch``, ``Execute``, ``Insert``,
``Update``) and are sent back each one's result, with values already in their stored
form (times as microseconds, JSON as text). ``Database.transact`` runs a body:

- SQLite: in a thread of its own with its own connection (the same pragmas as the
  engines'), BEGIN IMMEDIATE to COMMIT in one trip from the event loop. Many rows go
  in one statement, so that the thread steps it once and needs Python's lock once,
  not once a row: a thread that must win that lock back from a busy event loop for
  every row (executemany) waits for it each time (16 new messages by executemany held
  the group commit's thread 5.9 ms, 0.8 ms of it working, under bench/smtp_ingest.py).
  New rows go in one multi-row ``INSERT ... VALUES (...), (...)``, of any width (up
  to SQLite's limit of parameters a statement), values bound as they are. Changed
  rows go as an ``UPDATE ... FROM json_each(?)`` over one JSON parameter (SQLite 3.33
  and later) when narrow, since json_extract parses a row's JSON once per column; a
  wide update, and a text JSON cannot carry, row by row. This process's SQLAlchemy
  writers and these transactions take turns on one asyncio lock (Database), so they
  never wait for each other inside SQLite; and the writer threads of the daemon's
  processes (the daemon and its SMS process) take turns on a lock file beside the
  database (``flock``): a writer waiting there is woken the moment the other is done,
  where SQLite's own busy handler would poll, sleeping 1, 2, 5, 10 ms ... The turn is
  taken by the writer thread for each transaction, and given back by it the moment
  the transaction ends; the transaction's body is made (``run``'s ``make``) only once
  the turn is held, so that a batch takes in what arrived while the other process
  wrote (_batch.py) and the turn is never held across a trip between threads.
  ``turn_free`` says, on any thread, whether a writer holds it now (a second
  descriptor of the lock file, tried and let go). A transaction its caller knows to
  be short (``run``'s ``here``: the group commit's small batch, the ledger's short
  transaction, a lease) runs on the caller's thread, the event loop's, when the turn,
  the connection and SQLite's own lock can all be had at once: its callers wait for
  it anyway, and the trip to the thread and back is two wake-ups, each waiting for a
  core on a busy machine. When another process holds the turn, a thread of its own
  waits for it in flock while the loop goes on, and the transaction then runs on the
  loop all the same; it never waits there for the connection or SQLite's lock (those
  send it to the writer thread), and one that took over HERE_SLOW_SECONDS sends the
  next to the thread for a while. A transaction whose callers wait on it (``front``:
  the group commit) writes the moment it let the turn go, and its process id, at the
  start of the lock file; one that can wait (the SMS ledger's) reads it and, while
  another process's come thick, waits a few milliseconds to begin right after one
  (``behind_front``): under bench/sms_vs_kannel.py a batch of the daemon's finding the
  turn held by the ledger held up all 32 of its clients.
  With ``sqlite_synchronous = "full"`` the WAL is synced after COMMIT by this module,
  not by SQLite inside it (``sync_wal``): SQLite's sync held the turn (~40 % of the
  time it was held, under bench/sms_vs_kannel.py), while the other process waited.
  The connection runs at synchronous=NORMAL (COMMIT writes the WAL, syncs nothing),
  and ``run`` gives the transaction's result back only once the turn is let go and
  ``fdatasync`` of the WAL file has returned: what a caller acts on (a client
  answered, a part submitted, a receipt acknowledged) is on disk, as with FULL. The
  WAL is one file appended in commit order, so the sync also covers every commit
  before (another process's included): a lease that read a new message is synced
  only with that message. Only readers may see a commit in the moment before its
  sync.
- PostgreSQL: on SQLAlchemy's pooled writer connection, straight to asyncpg
  (executemany for many rows), ``?`` placeholders numbered ``$1``, ``$2``, ...

SQL is written once with ``?`` placeholders (never a literal question mark). A body is
given a ``Spelling``: ``any_of`` says "this column is one of the values of one
parameter" the way each database does it best, so a statement's text does not change
with the number of values and stays prepared. Driver errors become the mailbox's
(``translate``): a unique key is StoreConflict, a lost connection or a locked or full
database StoreUnavailable, the rest StoreError.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Protocol, TypeVar

import orjson

from gatewayd.errors import StoreConflict, StoreError, StoreUnavailable
from gatewayd.logging import get_logger

log = get_logger("gatewayd.mailbox")

T = TypeVar("T")
Kind = Literal["bigint", "text"]

# SQLite learnt UPDATE ... FROM in 3.33.0.
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)
# json_extract parses a row's JSON once per column: past this many columns, executemany
# (a step a row) costs less than one statement over json_each.
_JSON_COLUMNS = 12
# Rows a multi-row INSERT takes at most (fewer where SQLite's limit of parameters a
# statement says so). Each count of rows is a statement of its own, prepared once and
# kept in the connection's cache (_STATEMENTS): preparing one costs more than
# stepping it (16 messages: 0.8 against 0.25 ms), so a batch of 100 events goes as
# 32 + 32 + 32 + 4, not as one statement prepared for this count alone.
_VALUES_ROWS = 32
_STATEMENTS = 256
HERE_SLOW_SECONDS = 0.050
"""A transaction run on the event loop's thread (``SqliteWriter.run``'s ``here``) that
took longer than this (a slow disk, a long checkpoint; half of what the daemon's loop
watchdog calls a stall) sends the next ones to the writer thread for
HERE_PAUSE_SECONDS: at most one such stall of the loop a pause."""
HERE_PAUSE_SECONDS = 10.0
FRONT_JUST = 0.0015
FRONT_ACTIVE = 0.010
FRONT_AT_MOST = 0.008
FRONT_POLL = 0.001
"""How the SMS ledger's transactions keep behind another process's ``front`` ones (the
group commit, whose callers wait: 32 API clients in one batch): SqliteWriter.
behind_front. Seconds, on the monotonic clock (the machine's, the same in every
process)."""
_STAMP = struct.Struct("<dq")  # (monotonic time, pid) at the start of the lock file


@dataclass(frozen=True, slots=True)
class Fetch:
    """A SELECT; sent back: its rows, as tuples."""

    sql: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Execute:
    """Any other one statement; sent back: how many rows it changed."""

    sql: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Insert:
    """Rows into ``table``, each a tuple in ``columns`` order."""

    table: str
    columns: tuple[str, ...]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True, slots=True)
class Update:
    """``columns`` of the rows of ``table`` found by ``keys``; each row is the new
    values followed by the key's values."""

    table: str
    columns: tuple[str, ...]
    keys: tuple[str, ...]
    rows: Sequence[Sequence[Any]]


Op = Fetch | Execute | Insert | Update
Body = Generator[Op, Any, T]


class Spelling(Protocol):
    """How this database says what SQL spells differently."""

    data_version: str | None
    """SQL answering one number that changes when another connection (another
    process) has committed since this connection's last look; None where writers do
    not take turns (PostgreSQL)."""

    def any_of(self, column: str, kind: Kind) -> str:
        """SQL saying ``column`` is one of the values of one parameter (``values``)."""
        ...

    def values(self, items: Iterable[Any]) -> Any:
        """The parameter ``any_of`` takes for these values."""
        ...


class SqliteSpelling:
    data_version: str | None = "PRAGMA data_version"

    def any_of(self, column: str, kind: Kind) -> str:
        return f"{column} IN (SELECT value FROM json_each(?))"

    def values(self, items: Iterable[Any]) -> Any:
        return orjson.dumps(list(items)).decode()


class PostgresSpelling:
    data_version: str | None = None

    def any_of(self, column: str, kind: Kind) -> str:
        return f"{column} = ANY(?::{kind}[])"

    def values(self, items: Iterable[Any]) -> Any:
        return list(items)


def _item(index: int) -> str:
    return f"json_extract(j.value, '$[{index}]')"


@lru_cache(maxsize=256)
def _sqlite_insert(table: str, columns: tuple[str, ...], count: int) -> str:
    row = f"({', '.join('?' * len(columns))})"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * count)}"


@lru_cache(maxsize=64)
def _sqlite_update(table: str, columns: tuple[str, ...], keys: tuple[str, ...]) -> str:
    sets = ", ".join(f"{c} = {_item(i)}" for i, c in enumerate(columns))
    where = " AND ".join(f"{table}.{k} = {_item(len(columns) + i)}" for i, k in enumerate(keys))
    return f"UPDATE {table} SET {sets} FROM json_each(?) AS j WHERE {where}"


@lru_cache(maxsize=64)
def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


@lru_cache(maxsize=64)
def _update(table: str, columns: tuple[str, ...], keys: tuple[str, ...]) -> str:
    sets = ", ".join(f"{c} = ?" for c in columns)
    return f"UPDATE {table} SET {sets} WHERE {' AND '.join(f'{k} = ?' for k in keys)}"


@lru_cache(maxsize=256)
def _numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1``, ``$2``, ..."""
    pieces = sql.split("?")
    return pieces[0] + "".join(f"${n}{piece}" for n, piece in enumerate(pieces[1:], 1))


# -- SQLite -------------------------------------------------------------------------------


class SqliteWriter:
    """One thread with its own connection: each transaction is one trip to it."""

    def __init__(
        self, path: str, pragmas: Sequence[str], busy_timeout: float, *, sync_wal: bool = False
    ) -> None:
        """``sync_wal``: the connection's pragmas set synchronous=NORMAL, and each
        transaction syncs the WAL itself after COMMIT, outside the turn (synchronous
        FULL's durability; the module's docstring). On a database not in WAL mode the
        connection is set to synchronous=FULL instead."""
        self._path = path
        self._pragmas = tuple(pragmas)
        self._sync_wal = sync_wal and path not in ("", ":memory:")
        # The WAL's descriptor, opened after the first commit: the file stays the same
        # (one inode) while this connection is open, whatever others open, checkpoint
        # or close, so one descriptor serves every sync.
        self._wal: int | None = None
        self._busy_timeout = busy_timeout
        self._connection: sqlite3.Connection | None = None
        self._turn: int | None = None  # the lock file's descriptor
        self._peek: int | None = None  # the lock file again: is anyone writing?
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailbox-writer")
        # Waits for the turn, blocked in flock, for a transaction to run here (run).
        self._turn_waiter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailbox-turn")
        # Held for each transaction, wherever it runs: the connection is used by one at
        # a time (a transaction given up by its caller still runs to its end in the
        # thread while the next may be asked to run here).
        self._using = threading.Lock()
        self._here_again = 0.0  # (monotonic) no transaction here before then
        self.spelling = SqliteSpelling()

    async def run(
        self,
        make: Callable[[], Body[T]],
        *,
        here: bool = False,
        front: bool = False,
    ) -> T:
        """The transaction whose body ``make`` makes, in the writer thread, once it holds
        the writers' turn (so ``make`` may take in what arrived until then). ``here``
        (a small transaction): on the caller's thread instead, when the turn can be had
        (at once, or once another process gives it back) and the connection and
        SQLite's lock at once, and no transaction here has been slow lately."""
        if here:
            connection = await self._begun_here()
            if connection is not None:
                return self._run_here(connection, make, front)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._transaction, make, front)

    async def _begun_here(self) -> sqlite3.Connection | None:
        """The connection, in a transaction begun on this thread holding the turn, if
        the connection and SQLite's own lock can be had at once, the pause after a slow
        transaction here is over, and the turn is free or, held by another process,
        given back: waited for by a thread of its own blocked in flock while the event
        loop goes on. In the writer thread instead, the transaction would need Python's
        lock back from the busy loop at every statement, holding the turn the while
        (the group commit's batches held it 1.4 ms on average there, 0.9 ms here,
        under bench/sms_vs_kannel.py --only api). Else None, nothing held. SQLite's
        lock may be held by a program that does not take turns (``gatewayd purge``):
        waiting for it is the writer thread's job."""
        connection, turn = self._connection, self._turn
        if connection is None or time.monotonic() < self._here_again:
            return None  # (the first transaction opens the database in the thread)
        if not self._using.acquire(blocking=False):  # the thread is still in one
            return None
        if turn is not None and not _flock_now(turn):  # another process writes
            waited = self._turn_waiter.submit(fcntl.flock, turn, fcntl.LOCK_EX)
            try:
                await asyncio.wrap_future(waited)
            except BaseException:  # given up (or flock failed): let go once it is over
                waited.add_done_callback(self._let_go_after_wait)
                raise
        began = False
        try:
            began = self._begin_at_once(connection)
        finally:
            if not began:  # SQLite's lock held (or a failure, raised): nothing kept
                self._give_back(turn)
                self._using.release()
        return connection if began else None

    def _let_go_after_wait(self, waited: Future[None]) -> None:
        """The turn (if the wait got it) and the connection, given back after a wait
        whose caller gave up (on the waiting thread)."""
        if not waited.cancelled() and waited.exception() is None:
            self._give_back(self._turn)
        self._using.release()

    def _begin_at_once(self, connection: sqlite3.Connection) -> bool:
        """BEGIN IMMEDIATE without SQLite's busy wait; False if another holds its lock."""
        connection.execute("PRAGMA busy_timeout = 0")
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            return False
        finally:
            connection.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout * 1000)}")
        return True

    def _run_here(
        self, connection: sqlite3.Connection, make: Callable[[], Body[T]], front: bool = False
    ) -> T:
        """The transaction ``_begun_here`` began, to its end; then the turn and the
        connection given back."""
        started = time.monotonic()
        try:
            try:
                result = self._in_turn(connection, make)
            finally:
                self._give_back(self._turn, front=front)
                self._using.release()
            self._durable()
            return result
        finally:
            took = time.monotonic() - started
            if took > HERE_SLOW_SECONDS:
                self._here_again = time.monotonic() + HERE_PAUSE_SECONDS
                log.info(
                    "mailbox.slow_write",
                    took_ms=round(took * 1000, 1),
                    writer_thread_for_s=HERE_PAUSE_SECONDS,
                )

    @staticmethod
    def _give_back(turn: int | None, *, front: bool = False) -> None:
        """The turn let go; after a transaction whose callers wait on it (``front``),
        when, and which process it was, written at the start of the lock file
        (behind_front)."""
        if turn is None:
            return
        fcntl.flock(turn, fcntl.LOCK_UN)
        if front:
            os.pwrite(turn, _STAMP.pack(time.monotonic(), os.getpid()), 0)

    async def behind_front(self) -> bool:
        """Before a transaction that can wait (the SMS ledger's; Database.behind_front):
        when another process writes for waiting callers (its last ``front``
        transaction ended less than FRONT_ACTIVE ago) and not just now (FRONT_JUST),
        wait for its next one to end, looking every FRONT_POLL, for at most
        FRONT_AT_MOST: this one then holds the turn while the other is busy with its
        callers, not when it comes back to write for them. True when it comes right
        after one (within FRONT_JUST)."""
        turn = self._turn
        if turn is None:
            return False
        give_up = time.monotonic() + FRONT_AT_MOST
        while True:
            stamp = os.pread(turn, _STAMP.size, 0)
            if len(stamp) < _STAMP.size:
                return False  # nobody has written for callers yet
            at, pid = _STAMP.unpack(stamp)
            now = time.monotonic()
            if pid == os.getpid() or not 0 <= now - at < FRONT_ACTIVE:
                return False  # ours, not lately, or from before the machine started
            if now - at < FRONT_JUST:
                return True
            if now >= give_up:
                return False
            await asyncio.sleep(FRONT_POLL)

    def turn_free(self) -> bool:
        """Whether no writer (of this process or another) holds the turn now: a lock
        file descriptor of its own, tried and let go, on the caller's thread."""
        peek = self._peek
        if peek is None:
            return True
        if not _flock_now(peek):
            return False
        fcntl.flock(peek, fcntl.LOCK_UN)
        return True

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)
        self._turn_waiter.shutdown(wait=True)

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout,
                isolation_level=None,
                cached_statements=_STATEMENTS,
                check_same_thread=False,  # used here too, one transaction at a time
            )
            for pragma in self._pragmas:
                connection.execute(pragma)
            if self._sync_wal and connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA synchronous=FULL")  # no WAL to sync: SQLite syncs
                self._sync_wal = False
            self._connection = connection
        if self._turn is None and self._path not in ("", ":memory:"):
            self._turn = os.open(f"{self._path}-writer", os.O_RDWR | os.O_CREAT, 0o600)
            self._peek = os.open(f"{self._path}-writer", os.O_RDWR)
        return self._connection

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        for fd in (self._turn, self._peek, self._wal):
            if fd is not None:
                os.close(fd)
        self._turn = self._peek = self._wal = None

    def _transaction(self, make: Callable[[], Body[T]], front: bool = False) -> T:
        """In the writer thread: the transaction, waiting for the turn if need be."""
        with self._using:
            connection = self._connect()
            turn = self._turn
            if turn is not None:
                fcntl.flock(turn, fcntl.LOCK_EX)  # woken the moment the other writer is done
            try:
                connection.execute("BEGIN IMMEDIATE")
                result = self._in_turn(connection, make)
            finally:
                self._give_back(turn, front=front)
        self._durable()
        return result

    def _durable(self) -> None:
        """With ``sync_wal``: the WAL on disk (fdatasync), the transaction just committed
        and every one before it; after the turn is let go, before the result is given
        back."""
        if self._wal is None:  # (without sync_wal it is never opened)
            return
        try:
            os.fdatasync(self._wal)
        except OSError as exc:
            log.error("mailbox.sync_failed", file=f"{self._path}-wal", error=str(exc))
            raise

    def _in_turn(self, connection: sqlite3.Connection, make: Callable[[], Body[T]]) -> T:
        """The body made and run in the transaction begun; committed, or rolled back.
        (The connection is held: the first commit opens the WAL's descriptor here, on
        whichever thread, before any other transaction can begin.)"""
        try:
            result = _drive(make(), lambda op: _sqlite_op(connection, op))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        if self._sync_wal and self._wal is None:
            self._wal = os.open(f"{self._path}-wal", os.O_RDONLY)
        return result


def _flock_now(fd: int) -> bool:
    """The lock file's lock taken through ``fd`` if nobody else holds it; False if
    another descriptor (another process's, or our peek's) does."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _drive(body: Body[T], run: Callable[[Op], Any]) -> T:
    try:
        op = next(body)
        while True:
            op = body.send(run(op))
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        body.close()


def _sqlite_op(connection: sqlite3.Connection, op: Op) -> Any:
    if isinstance(op, Fetch):
        return connection.execute(op.sql, op.params).fetchall()
    if isinstance(op, Execute):
        return connection.execute(op.sql, op.params).rowcount
    if not op.rows:
        return 0
    if isinstance(op, Insert):
        return _insert_rows(connection, op)
    rows = _as_json(op.rows) if len(op.columns) + len(op.keys) <= _JSON_COLUMNS else None
    if rows is not None and _UPDATE_FROM:
        sql = _sqlite_update(op.table, op.columns, op.keys)
        return connection.execute(sql, (rows,)).rowcount
    return connection.executemany(_update(op.table, op.columns, op.keys), op.rows).rowcount


def _insert_rows(connection: sqlite3.Connection, op: Insert) -> int:
    """``op``'s rows, _VALUES_ROWS (or as many as SQLite binds) a statement."""
    limit = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    step = max(1, min(_VALUES_ROWS, limit // len(op.columns)))
    written = 0
    for start in range(0, len(op.rows), step):
        chunk = op.rows[start : start + step]
        values = [value for row in chunk for value in row]
        written += connection.execute(
            _sqlite_insert(op.table, op.columns, len(chunk)), values
        ).rowcount
    return written


def _as_json(rows: Sequence[Sequence[Any]]) -> str | None:
    """The rows as one JSON parameter; None when JSON cannot carry them exactly (a NUL
    in a text, which SQLite's JSON functions would cut there; text that is not UTF-8):
    those go row by row."""
    try:
        text = orjson.dumps(rows).decode()
    except orjson.JSONEncodeError:
        return None
    return None if "\\u0000" in text else text


# -- PostgreSQL ---------------------------------------------------------------------------


async def run_postgres(connection: Any, body: Body[T]) -> T:
    """Run ``body`` in a transaction on an asyncpg connection."""
    transaction = connection.transaction()
    await transaction.start()
    try:
        try:
            op = next(body)
            while True:
                op = body.send(await _postgres_op(connection, op))
        except StopIteration as done:
            result: T = done.value
        finally:
            body.close()
    except BaseException:
        if not connection.is_closed():
            await transaction.rollback()
        raise
    await transaction.commit()
    return result


async def _postgres_op(connection: Any, op: Op) -> Any:
    if isinstance(op, Fetch):
        return await connection.fetch(_numbered(op.sql), *op.params)
    if isinstance(op, Execute):
        status: str = await connection.execute(_numbered(op.sql), *op.params)
        last = status.rsplit(" ", 1)[-1]  # "UPDATE 3", "INSERT 0 1"
        return int(last) if last.isdigit() else 0
    if not op.rows:
        return 0
    sql = (
        _insert(op.table, op.columns)
        if isinstance(op, Insert)
        else _update(op.table, op.columns, op.keys)
    )
    await connection.executemany(_numbered(sql), op.rows)
    return len(op.rows)


# -- errors -------------------------------------------------------------------------------


def translate(exc: BaseException, where: str) -> StoreError | None:
    """The mailbox's error for a driver's own exception (None: not a driver's)."""
    why = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    if isinstance(exc, sqlite3.IntegrityError):
        return StoreConflict(f"{where}: {why}")
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailable(f"{where} is unavailable: {why}")
    if isinstance(exc, sqlite3.Error):
        return StoreError(f"{where}: {why}")
    if type(exc).__module__.startswith("asyncpg"):
        import asyncpg  # noqa: PLC0415  (an optional dependency: only with PostgreSQL)

        if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
            return StoreConflict(f"{where}: {why}")
        if isinstance(
            exc,
            asyncpg.PostgresConnectionError
            | asyncpg.InterfaceError
            | asyncpg.CannotConnectNowError
            | asyncpg.InsufficientResourcesError,
        ):
            return StoreUnavailable(f"{where} is unavailable: {why}")
        return StoreError(f"{where}: {why}")
    if isinstance(exc, OSError | TimeoutError):
        return StoreUnavailable(f"{where} is unavailable: {why}")
    return None
