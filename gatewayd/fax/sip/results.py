"""What a SIP fax call's ending means for the mailbox: faxErrorCode, temporary or
permanent, and a reason a person can act on (docs/sip-fax.md has the tables).

Two sources: the final SIP response to our INVITE when the call is not answered
(``sip_failure``), and the T.30 completion code at phase E when it was
(``t30_result``). Codes are ITU-T T.30 completion codes as libspandsp 0.0.6 numbers
them (spandsp/t30.h: ``T30_ERR_*``). Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from gatewayd.fax.carrier import Failed, Result, Sent
from gatewayd.model import FaxErrorCode as E


@dataclass(frozen=True, slots=True)
class Rule:
    code: E
    temporary: bool
    words: str


# Final responses to INVITE (RFC 3261 21; 3xx is not followed).
SIP_RULES: dict[int, Rule] = {
    400: Rule(E.CALL_FAILED, True, "the SIP server found our INVITE malformed"),
    402: Rule(E.NOT_ENOUGH_CREDITS, False, "the SIP account needs payment"),
    404: Rule(E.INVALID_NUMBER, False, "the number does not exist"),
    408: Rule(E.NO_ANSWER, True, "no answer"),
    410: Rule(E.INVALID_NUMBER, False, "the number is no longer in service"),
    480: Rule(E.NO_ANSWER, True, "the number is not available now"),
    484: Rule(E.INVALID_NUMBER, False, "the number is incomplete"),
    486: Rule(E.LINE_BUSY, True, "busy"),
    487: Rule(E.NO_ANSWER, True, "no answer before the ring timeout"),
    488: Rule(E.NOT_ACCEPTED, False, "the far end accepts neither G.711 audio nor T.38"),
    600: Rule(E.LINE_BUSY, True, "busy everywhere"),
    603: Rule(E.CALL_DECLINED, False, "the call was declined"),
    604: Rule(E.INVALID_NUMBER, False, "the number does not exist anywhere"),
    606: Rule(E.NOT_ACCEPTED, False, "the far end accepts neither G.711 audio nor T.38"),
}
# 401/407 after our credentials and 403: the trunk refuses us (the operator must act).
REFUSED = frozenset({401, 403, 407})


def sip_failure(status: int, reason: str) -> Failed:
    """The outcome of a call refused with ``status`` (not 401/403/407: see REFUSED)."""
    rule = SIP_RULES.get(status)
    if rule is None:
        if 300 <= status < 400:
            rule = Rule(E.CALL_FAILED, True, "the call was redirected (redirects are not followed)")
        elif status >= 500:
            rule = Rule(E.CALL_FAILED, True, "the SIP server or the far end failed")
        else:
            rule = Rule(E.CALL_FAILED, True, "the call failed")
    return Failed(rule.code, f"{rule.words} (SIP {status} {reason})".strip(), rule.temporary)


def refused(status: int, reason: str, username: str, server: str) -> Failed:
    what = "our credentials" if status in (401, 407) else "this call"
    return Failed(
        E.CALL_FAILED,
        f"the SIP server {server} refused {what} (SIP {status} {reason}); check [fax.sip] "
        f"username ({username or 'none'}) and password",
        True,
    )


# T.30 completion codes (spandsp 0.0.6 numbering) -> faxErrorCode.
T30_NO_FAX = frozenset({1, 2, 3})  # CED too long, T0/T1 expired: nothing answered as a fax
T30_NOT_ACCEPTED = frozenset({8, 9, 11, 12, *range(50, 62)})
T30_DOCUMENT = frozenset(range(41, 48))  # our TIFF was refused by the engine
T30_HUNG_UP = frozenset({15, 17, 35, 36, 37, 38, 39, 40, 49})


def t30_rule(code: int) -> Rule:
    if code in T30_NO_FAX:
        return Rule(E.NO_FAX_MACHINE, False, "no fax machine answered")
    if code in T30_NOT_ACCEPTED:
        return Rule(E.NOT_ACCEPTED, False, "the far fax machine cannot take this fax")
    if code in T30_DOCUMENT:
        return Rule(E.CONVERT_ERROR, False, "the fax engine refused the rendered pages")
    if code in T30_HUNG_UP:
        return Rule(E.CALLER_HUNG_UP, True, "the far end hung up during the fax")
    return Rule(E.CALL_FAILED, True, "the fax exchange failed")


@dataclass(frozen=True, slots=True)
class Exchange:
    """What an answered call achieved (engine.Outcome, reduced to what counts)."""

    code: int | None  # None: phase E never came
    text: str
    pages_sent: int
    pages_total: int
    duration: float
    mode: str  # "T.38" or "G.711 PCMA" ...
    remote_ident: str = ""
    bit_rate: int = 0
    ecm: bool = False


def t30_result(exchange: Exchange) -> Result:
    where = f"{exchange.mode}, {exchange.pages_sent}/{exchange.pages_total} pages"
    if exchange.remote_ident:
        where += f", far station {exchange.remote_ident}"
    if exchange.code == 0 and exchange.pages_sent >= exchange.pages_total > 0:
        detail = f"{where}, {exchange.bit_rate} bit/s{', ECM' if exchange.ecm else ''}"
        return Sent(exchange.pages_sent, round(exchange.duration, 1), detail)
    if exchange.code == 0:
        return Failed(
            E.SENT_PARTIALLY,
            f"only {exchange.pages_sent} of {exchange.pages_total} pages went through ({where})",
            True,
            exchange.pages_sent,
        )
    if exchange.code is None:
        return Failed(
            E.CALL_FAILED,
            f"the fax exchange did not finish: {exchange.text} ({where})",
            True,
            exchange.pages_sent,
        )
    rule = t30_rule(exchange.code)
    return Failed(
        rule.code,
        f"{rule.words}: T.30 code {exchange.code}, {exchange.text} ({where})",
        rule.temporary,
        exchange.pages_sent,
    )
