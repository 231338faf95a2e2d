"""How a SIP fax call's end becomes a mailbox outcome: the table of docs/sip-fax.md."""

from __future__ import annotations

import pytest

from gatewayd.fax.carrier import Failed, Sent
from gatewayd.fax.sip import engine
from gatewayd.fax.sip.results import Exchange, refused, sip_failure, t30_result
from gatewayd.model import FaxErrorCode as E


@pytest.mark.parametrize(
    ("status", "code", "temporary"),
    [
        (486, E.LINE_BUSY, True),
        (600, E.LINE_BUSY, True),
        (408, E.NO_ANSWER, True),
        (480, E.NO_ANSWER, True),
        (487, E.NO_ANSWER, True),
        (404, E.INVALID_NUMBER, False),
        (484, E.INVALID_NUMBER, False),
        (604, E.INVALID_NUMBER, False),
        (410, E.INVALID_NUMBER, False),
        (603, E.CALL_DECLINED, False),
        (488, E.NOT_ACCEPTED, False),
        (402, E.NOT_ENOUGH_CREDITS, False),
        (503, E.CALL_FAILED, True),
        (302, E.CALL_FAILED, True),
        (499, E.CALL_FAILED, True),
    ],
)
def test_sip_final_responses(status: int, code: E, temporary: bool) -> None:
    result = sip_failure(status, "Reason Text")
    assert (result.code, result.temporary) == (code, temporary)
    assert f"SIP {status} Reason Text" in result.reason


def test_refused_credentials_name_the_keys_to_check() -> None:
    result = refused(401, "Unauthorized", "gw-a", "127.0.0.1:5060")
    assert result.temporary
    assert result.reason == (
        "the SIP server 127.0.0.1:5060 refused our credentials (SIP 401 Unauthorized); "
        "check [fax.sip] username (gw-a) and password"
    )


def exchange(code: int | None, sent: int = 3, total: int = 3) -> Exchange:
    return Exchange(
        code, "OK" if code == 0 else "text", sent, total, 61.26, "T.38", "+49 40 222", 14400, True
    )


def test_phase_e_ok_with_every_page_is_sent() -> None:
    result = t30_result(exchange(0))
    assert result == Sent(3, 61.3, "T.38, 3/3 pages, far station +49 40 222, 14400 bit/s, ECM")


@pytest.mark.parametrize(
    ("code", "expected", "temporary"),
    [
        (2, E.NO_FAX_MACHINE, False),  # T0 expired
        (3, E.NO_FAX_MACHINE, False),  # T1 expired
        (6, E.CALL_FAILED, True),  # cannot train
        (11, E.NOT_ACCEPTED, False),  # far end cannot take the resolution
        (12, E.NOT_ACCEPTED, False),  # nor the size
        (16, E.CALL_FAILED, True),  # bad ECM response (heavy loss)
        (17, E.CALLER_HUNG_UP, True),  # DCN while waiting for DIS
        (21, E.CALL_FAILED, True),  # no response after a page
        (41, E.CONVERT_ERROR, False),  # our TIFF refused
        (49, E.CALLER_HUNG_UP, True),  # call dropped
        (48, E.CALL_FAILED, True),  # retries exhausted
    ],
)
def test_t30_completion_codes(code: int, expected: E, temporary: bool) -> None:
    result = t30_result(exchange(code, sent=1))
    assert isinstance(result, Failed)
    assert (result.code, result.temporary, result.pages) == (expected, temporary, 1)
    assert f"T.30 code {code}" in result.reason


def test_the_codes_mean_what_libspandsp_says() -> None:
    """Our numbering is libspandsp 0.0.6's: its own words for a few codes."""
    lib = engine.load()
    words = {code: lib.t30_completion_code_to_str(code).decode() for code in (0, 2, 16, 41, 49)}
    assert words[0] == "OK"
    assert "T0" in words[2] or "initial" in words[2].lower()
    assert "ECM" in words[16]
    assert "TIFF" in words[41] or "file" in words[41].lower()
    assert "dropped" in words[49].lower()


def test_ok_with_pages_missing_is_sent_partially_and_no_phase_e_is_call_failed() -> None:
    partial = t30_result(exchange(0, sent=2))
    assert isinstance(partial, Failed)
    assert (partial.code, partial.temporary, partial.pages) == (E.SENT_PARTIALLY, True, 2)
    never = t30_result(exchange(None, sent=0))
    assert isinstance(never, Failed)
    assert never.code is E.CALL_FAILED
    assert never.temporary
