"""Message and attachment ids (gatewayd/mailbox/_ids.py): the day and the 1/64 second
they were drawn in, then 14 random bits; never the same one twice in a process."""

from __future__ import annotations

import itertools
import os
from array import array
from datetime import UTC, datetime
from itertools import pairwise

import pytest

from gatewayd.mailbox import _ids


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that has drawn nothing yet (and whose drawing is put back after each
    test: a clock set to 2199 here must not stay in the process's ids)."""
    monkeypatch.setattr(_ids, "_drawn", _ids._Drawn())


def at(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    monkeypatch.setattr(_ids.time, "time", moment.timestamp)


def test_the_layout_is_day_then_sixty_fourth_of_a_second_then_random(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    moment = datetime(2026, 12, 1, 10, 0, 0, 500_000, tzinfo=UTC)
    at(monkeypatch, moment)
    (drawn,) = _ids.new_ids(1)
    day = (datetime(2026, 12, 1, tzinfo=UTC) - datetime(2020, 1, 1, tzinfo=UTC)).days
    assert drawn >> 37 == day
    assert drawn >> 14 & (1 << 23) - 1 == (10 * 3600) * 64 + 32  # 10:00:00.5
    assert drawn >> 14 << 14 == _ids.prefix(moment.timestamp())


def test_ids_stay_exact_in_javascript_until_june_2199(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    at(monkeypatch, datetime(2199, 6, 6, 23, 59, 59, 999_000, tzinfo=UTC))  # 65,535 days on
    assert max(_ids.new_ids(100)) < 2**53


def test_later_ticks_draw_larger_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    moments = [datetime(2026, 12, 1, 23, 59, 59, 984_375, tzinfo=UTC)]  # the day's last tick
    moments += [datetime(2026, 12, 2, 0, 0, 0, 15_625 * n, tzinfo=UTC) for n in range(3)]
    batches = []
    for moment in moments:
        at(monkeypatch, moment)
        batches.append(_ids.new_ids(50))
    for earlier, later in pairwise(batches):
        assert max(earlier) < min(later)


def random_bits(monkeypatch: pytest.MonkeyPatch, lows: list[int]) -> None:
    """The system's randomness, as the 14-bit values ``lows`` in turn (then 0s: the
    process reads it a pool of candidates at a time)."""
    stream = itertools.chain(lows, itertools.repeat(0))

    def token_bytes(n: int) -> bytes:
        return array("H", [next(stream) for _ in range(n // 2)]).tobytes()

    monkeypatch.setattr(_ids.secrets, "token_bytes", token_bytes)


def test_a_process_never_draws_an_id_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same random bits again in the same tick are passed over, not handed out."""
    moment = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    at(monkeypatch, moment)
    tick = _ids.prefix(moment.timestamp())
    random_bits(monkeypatch, [7, 7, 9, 9, 11, 7, 9, 11, 12, *range(100, 200)])
    assert _ids.new_ids(3) == [tick | 7, tick | 9, tick | 11]
    assert _ids.new_ids(1) == [tick | 12]


def test_a_tick_half_taken_moves_on_to_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under a burst the ids run ahead of the clock, in order, rather than collide."""
    moment = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    at(monkeypatch, moment)
    monkeypatch.setattr(_ids, "_FULL", 4)
    tick = _ids.prefix(moment.timestamp())
    drawn = _ids.new_ids(10)
    assert [i >> 14 for i in drawn] == [tick >> 14] * 4 + [(tick >> 14) + 1] * 4 + [
        (tick >> 14) + 2
    ] * 2
    assert len(set(drawn)) == 10
    (later,) = _ids.new_ids(1)  # the clock has not moved: on from where the burst was
    assert later >> 14 == (tick >> 14) + 2
    assert later not in drawn


def test_a_clock_set_back_a_little_keeps_ids_growing_a_lot_draws_from_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    late = datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)
    at(monkeypatch, late)
    (first,) = _ids.new_ids(1)
    at(monkeypatch, datetime(2026, 12, 1, 10, 0, 20, tzinfo=UTC))  # 10 s back
    (second,) = _ids.new_ids(1)
    assert second >> 14 == first >> 14  # still on the latest tick
    assert second != first
    earlier = datetime(2026, 12, 1, 9, 58, tzinfo=UTC)  # 2.5 minutes back
    at(monkeypatch, earlier)
    (third,) = _ids.new_ids(1)
    assert third >> 14 << 14 == _ids.prefix(earlier.timestamp())


def test_a_forked_child_draws_its_own_random_bits() -> None:
    """The candidates read ahead from the system's randomness are not inherited: a
    child forked after its parent drew (the pool full) draws other ids than the
    parent's next ones, in the same tick."""
    _ids.new_ids(1)
    assert len(_ids._drawn.pool) > 100
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its next ids down the pipe, then out at once
        os.write(writer, " ".join(map(str, _ids.new_ids(8))).encode())
        os._exit(0)
    os.close(writer)
    mine = _ids.new_ids(8)
    with os.fdopen(reader) as pipe:
        theirs = [int(word) for word in pipe.read().split()]
    os.waitpid(child, 0)
    assert len(theirs) == 8
    low = (1 << 14) - 1
    assert [i & low for i in theirs] != [i & low for i in mine]
