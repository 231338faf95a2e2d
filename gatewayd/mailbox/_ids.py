"""Message and attachment ids: when they were drawn, then random bits.

    | day since 2020-01-01: 16 bits | 1/64 s of that day: 23 bits | random: 14 bits |

- Ordered by time to the 1/64 second, so the rows of one commit land together in the
  newest pages of each table and index keyed by an id (messages, attachments, their
  message_id index, the events' message_id index). With the random part spanning the
  whole day, as before, thirty-two new rows were thirty-two random pages of the day's
  range in each of those trees: 143 pages written to the WAL a commit of the API's
  ingest, now 54 (strace), and a sixth of the checkpoints' writes.
- Not guessable from a counter: 16,384 candidates in each 1/64 s (a million a
  second). An id is not a capability anyway: every route that takes one checks the
  caller's access to the mailbox it is in.
- Below 2**53 until 6 June 2199 (65,536 days), so exact as JSON numbers in JavaScript
  clients.
- Collisions: never between the ids this process draws (it remembers those of the
  current 1/64 s, and moves on to the next one when half of its candidates are taken:
  ids then run a little ahead of the clock, still in order). Another process or node
  drawing in the same 1/64 s collides with a chance of its ids there in 16,384: a
  chance of the other writers' ids a second in a million, per id. On one host that is
  the SMS process's inbound messages; in a cluster it is the other nodes' traffic,
  which the old layout (the day's ids in 2**37) reached at the end of a busy day. The
  group commit then draws the whole batch again (_commit.py), a retried message its
  new id (_resend.py); a fax's rendering fails and is rendered again at its next
  lease (_changes.py). Only slots handed out to the writers (a node's number) would
  rule collisions out.
- The clock: set back a little, this process stays on its latest tick (ids keep
  growing); set back more than a minute (after a jump forward), it draws from the
  clock's time again, and the database's unique key catches a repeat.

Hand-written rather than a ULID or Snowflake library: those are 128 or 64 bits, and
ours must stay exact in a JavaScript number.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from array import array

EPOCH = 1_577_836_800  # 2020-01-01T00:00:00Z
TICKS = 64  # a second
TICK_BITS = 23  # 86,400 × 64 = 5,529,600 ticks a day, below 2**23
RANDOM_BITS = 14
_TICKS_A_DAY = 86_400 * TICKS
_CANDIDATES = 1 << RANDOM_BITS
ID_ATTEMPTS = 5  # draws for one write before a collision is not bad luck any more
_FULL = _CANDIDATES // 2  # taken in one tick before moving on to the next
# How far ahead of the clock a burst may run before the clock counts again: a minute
# of ticks, 31 million ids in one go.
_AHEAD = 60 * TICKS << RANDOM_BITS
_POOL = 1024  # candidates read from the system's randomness at once


class _Drawn:
    """The tick this process draws in, what it has taken there, and candidates drawn
    from the system's randomness not yet used."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.prefix = 0  # day and tick, shifted above the random bits
        self.taken: set[int] = set()
        self.pool = array("H")  # random 16-bit candidates (native byte order)


_drawn = _Drawn()


def _forget_pool() -> None:
    """A forked child draws its own candidates, not its parent's."""
    _drawn.pool = array("H")


os.register_at_fork(after_in_child=_forget_pool)


def prefix(moment: float) -> int:
    """The day and 1/64 s of ``moment`` (seconds since the Unix epoch), in place."""
    ticks = int((moment - EPOCH) * TICKS)
    day, tick = divmod(ticks, _TICKS_A_DAY)
    return (day << TICK_BITS | tick) << RANDOM_BITS


def new_ids(count: int) -> list[int]:
    """``count`` new ids, in increasing order of their ticks, none drawn before here.

    The random parts come from the system's randomness ``_POOL`` candidates at a time
    (one read for a few hundred messages rather than one a message: a sixth of making
    an API message's rows was that read)."""
    now = prefix(time.time())
    ids: list[int] = []
    with _drawn.lock:
        if now > _drawn.prefix or now < _drawn.prefix - _AHEAD:
            # A new tick; or the clock was set back a long way (after a jump forward):
            # from now again, or ids would stay in that future until the clock got there.
            _drawn.prefix, _drawn.taken = now, set()
        pool = _drawn.pool
        while len(ids) < count:
            if not pool:
                pool.frombytes(secrets.token_bytes(2 * _POOL))
                pool.reverse()  # (used from the end: in the order read)
            if len(_drawn.taken) >= _FULL:
                _drawn.prefix += _CANDIDATES  # the next tick
                _drawn.taken = set()
            low = pool.pop() & (_CANDIDATES - 1)
            if low not in _drawn.taken:
                _drawn.taken.add(low)
                ids.append(_drawn.prefix | low)
    return ids


def new_id() -> int:
    return new_ids(1)[0]
