"""The HylaFAX carrier's reading of hfaxd's queue listings (JOBFMT lines) and of its
replies. The status texts are HylaFAX 6.0.7's own, recorded from faxq and faxsend
driving a modem that answered BUSY, NO ANSWER and NO CARRIER (see docs/fax.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gatewayd.fax.carrier import Failed, Sent
from gatewayd.fax.hylafax import JobLine, code_for, lasttime
from gatewayd.model import FaxErrorCode


def line(state: str, status: str, *, sent: int = 0, total: int = 3, tag: str = "t") -> str:
    return f"17|{state}|{sent}|{total}|1|3|2|12|{tag}|{status}"


def test_a_listing_line_is_read_field_by_field() -> None:
    job = JobLine.parse("42|S|1|3|2|3|5|12|gatewayd-7-1|Busy signal detected\n")
    assert job == JobLine("42", "S", 1, 3, 2, 3, 5, 12, "gatewayd-7-1", "Busy signal detected")


def test_a_status_text_may_hold_the_separator() -> None:
    job = JobLine.parse("42|F|0|1|1|3|1|12|tag|REJECT: a|b")
    assert job is not None
    assert job.status == "REJECT: a|b"


@pytest.mark.parametrize("text", ["", "total 3", "x|F|0|1|1|3|1|12|t|s", "1|F|0"])
def test_lines_that_are_not_jobs_are_skipped(text: str) -> None:
    assert JobLine.parse(text) is None


def test_done_is_sent_with_its_pages() -> None:
    job = JobLine.parse(line("D", "", sent=3))
    assert job is not None
    assert job.result() == Sent(3, None, "")


@pytest.mark.parametrize("state", ["T", "P", "S", "B", "W", "R", "?"])
def test_other_states_are_still_going(state: str) -> None:
    job = JobLine.parse(line(state, "Busy signal detected"))
    assert job is not None
    assert job.result() is None


@pytest.mark.parametrize(
    ("status", "code", "temporary"),
    [
        ("Busy signal detected", FaxErrorCode.LINE_BUSY, True),
        ("No answer from remote", FaxErrorCode.NO_ANSWER, True),
        ("No carrier detected", FaxErrorCode.NO_FAX_MACHINE, False),
        ("Kill time expired", FaxErrorCode.NO_CALL_TIME, False),
        ("Job aborted by request", FaxErrorCode.CALL_FAILED, False),
        ("No local dialtone", FaxErrorCode.CALL_FAILED, True),
        ("REJECT: Invalid dialstring", FaxErrorCode.INVALID_NUMBER, False),
        ("Document is not in a supported format", FaxErrorCode.CONVERT_ERROR, False),
        ("Remote fax disconnected prematurely", FaxErrorCode.CALLER_HUNG_UP, True),
        ("Something HylaFAX has never said", FaxErrorCode.CALL_FAILED, True),
    ],
)
def test_failures_map_to_fax_error_codes(status: str, code: FaxErrorCode, temporary: bool) -> None:
    job = JobLine.parse(line("F", status, sent=1))
    assert job is not None
    result = job.result()
    assert isinstance(result, Failed)
    assert (result.code, result.temporary) == (code, temporary)
    assert result.reason == f"HylaFAX: {status} (after 2 dials and 1 tries; 1 of 3 pages sent)"
    assert code_for(status) is code


@pytest.mark.parametrize(
    ("left", "expected"),
    [
        (timedelta(seconds=20), "000001"),
        (timedelta(minutes=90), "000130"),
        (timedelta(hours=3), "000300"),
        (timedelta(days=2, hours=1, minutes=5), "020105"),
        (timedelta(days=200), "990000"),
    ],
)
def test_kill_time_is_sent_as_time_left(left: timedelta, expected: str) -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert lasttime(now + left, now) == expected
