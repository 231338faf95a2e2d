"""Delivery receipts: what a receipt deliver_sm says, however the SMSC wrote it.

A receipt carries its facts in TLVs (receipted_message_id, message_state,
network_error_code), in text (``id:... sub:... dlvrd:... submit date:... done date:...
stat:... err:... text:...``, SMPP 3.4 appendix B, an example every vendor varies: any
order, fields missing, ``Text:``, dates with or without seconds, in short_message or in
message_payload), or both. Both are read; where both name the message, they are
cross-checked. Message ids are normalised per link as Kannel's msg-id-type and
Jasmin's dlr_msgid do: hex and decimal, leading zeros and case.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from gatewayd.model import PartStatus
from gatewayd.sms.pdu import ESM_RECEIPT_MASK, Pdu, Tag


class IdFormat(StrEnum):
    AUTO = "auto"  # leading zeros and case do not matter; hex and decimal both tried
    HEX = "hex"  # ids are hexadecimal numbers
    DECIMAL = "decimal"  # ids are decimal numbers
    TEXT = "text"  # ids are opaque: compared as written


STATES = {
    0: "SCHEDLD",
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
    9: "SKIPPED",
}
INTERMEDIATE = frozenset({"ENROUTE", "SCHEDLD", "BUFFRED", "BUFFERD", "ACKED", "SUBMITTED"})

_FIELDS = re.compile(
    r"(?P<key>id|sub|dlvrd|submit date|done date|stat|err|text)\s*:\s*", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Receipt:
    message_id: str  # the SMSC's id for the part, as the receipt wrote it
    stat: str  # DELIVRD, UNDELIV, ... (from the text, else from message_state)
    error: str | None = None  # err:, else network_error_code as hex
    submitted_at: datetime | None = None
    done_at: datetime | None = None
    text: str | None = None
    id_mismatch: str | None = None  # the other id, when text and TLV disagree

    def outcome(self, *, accepted_is_delivered: bool = False) -> PartStatus | None:
        """Delivered, DeliveryFailed, or None for a state on the way (ENROUTE)."""
        if self.stat == "DELIVRD" or (self.stat == "ACCEPTD" and accepted_is_delivered):
            return PartStatus.DELIVERED
        if self.stat in INTERMEDIATE or self.stat == "ACCEPTD":
            return None
        return PartStatus.DELIVERY_FAILED

    @property
    def error_code(self) -> str:
        """deliveryErrorCode: the state, and the SMSC's error when it gave one."""
        if self.error and self.error.strip("0"):
            return f"{self.stat}:{self.error}"
        return self.stat


def is_receipt(pdu: Pdu) -> bool:
    """A deliver_sm whose esm_class says receipt (or SME ack, or intermediate
    notification; SMSCs also set UDHI beside it: 0x44)."""
    return bool(pdu.fields.get("esm_class", 0) & ESM_RECEIPT_MASK)


# The layout of SMPP 3.4 appendix B, as most SMSCs write it: read in one match.
_STANDARD = re.compile(
    r"id:(?P<id>\S*) sub:(?P<sub>\S*) dlvrd:(?P<dlvrd>\S*) submit date:(?P<submit>\d*) "
    r"done date:(?P<done>\d*) stat:(?P<stat>\S*) err:(?P<err>\S*)(?: text:\s*(?P<text>.*))?",
    re.DOTALL,
)
_STANDARD_KEYS = (
    ("id", "id"),
    ("sub", "sub"),
    ("dlvrd", "dlvrd"),
    ("submit date", "submit"),
    ("done date", "done"),
    ("stat", "stat"),
    ("err", "err"),
)


def _parse_fields(text: str) -> dict[str, str]:
    standard = _STANDARD.fullmatch(text)
    if standard is not None:
        rest = standard.group("text")
        if rest is None or _FIELDS.search(rest) is None:  # else: read it the general way
            found = {key: standard.group(group) for key, group in _STANDARD_KEYS}
            if rest is not None:
                found["text"] = rest
            return found
    found = {}
    matches = list(_FIELDS.finditer(text))
    for index, match in enumerate(matches):
        key = match.group("key").lower()
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        value = text[match.end() : end]
        found.setdefault(key, value if key == "text" else value.strip())
    return found


_DATE = re.compile(r"(\d{10})(\d{2})?(?:(\d)(\d{2})([+-]))?")


@functools.lru_cache(maxsize=1024)
def parse_date(value: str | None) -> datetime | None:
    """YYMMDDhhmm, YYMMDDhhmmss, or SMPP's absolute time (YYMMDDhhmmsstnnp); UTC when
    no offset is written. (Cached: the receipts of a busy minute carry the same few
    dates, and this was a tenth of the SMS process's loop.)"""
    if not value:
        return None
    digits = value.strip()
    match = _DATE.fullmatch(digits)
    if not match:
        return None
    stamp = match.group(1) + (match.group(2) or "00")
    try:  # %y as strptime reads it: 69-99 are 1900s
        year = int(stamp[0:2])
        month, day, hour, minute, second = (int(stamp[i : i + 2]) for i in range(2, 12, 2))
        moment = datetime(year + (1900 if year >= 69 else 2000), month, day, hour, minute, second)
    except ValueError:
        return None
    zone = UTC
    if match.group(5):
        quarters = int(match.group(4)) * (1 if match.group(5) == "+" else -1)
        moment += timedelta(seconds=int(match.group(3)) / 10)
        return moment.replace(tzinfo=UTC) - timedelta(minutes=15 * quarters)
    return moment.replace(tzinfo=zone)


def parse(pdu: Pdu) -> Receipt | None:
    """The receipt in a deliver_sm (or data_sm); None when it names no message."""
    raw = pdu.fields.get("short_message") or pdu.tlvs.get(Tag.MESSAGE_PAYLOAD) or b""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    fields = _parse_fields(text)
    text_id = fields.get("id") or None
    tlv_id = pdu.tlv_text(Tag.RECEIPTED_MESSAGE_ID) or None
    state = pdu.tlv_int(Tag.MESSAGE_STATE)
    stat = (fields.get("stat") or "").upper() or STATES.get(state if state is not None else -1)
    if (text_id is None and tlv_id is None) or not stat:
        return None
    message_id, mismatch = tlv_id or text_id, None
    if tlv_id and text_id and tlv_id != text_id:
        if text_id.startswith(tlv_id):  # a TLV cut short (one read without its NUL)
            message_id = text_id
        elif not tlv_id.startswith(text_id):
            mismatch = text_id
    network_error = pdu.tlvs.get(Tag.NETWORK_ERROR_CODE)
    error = fields.get("err") or (network_error.hex().upper() if network_error else None)
    assert message_id is not None
    return Receipt(
        message_id=message_id,
        stat=stat,
        error=error,
        submitted_at=parse_date(fields.get("submit date")),
        done_at=parse_date(fields.get("done date")),
        text=fields.get("text"),
        id_mismatch=mismatch,
    )


def normalise(message_id: str, fmt: IdFormat) -> str:
    """The form an id is stored and looked up in."""
    value = message_id.strip()
    if fmt is IdFormat.TEXT:
        return value
    if fmt is IdFormat.HEX:
        try:
            return format(int(value, 16), "X")
        except ValueError:
            return value.upper()
    if fmt is IdFormat.DECIMAL:
        return str(int(value)) if value.isdigit() else value.upper()
    return value.upper().lstrip("0") or "0"


def candidates(message_id: str, fmt: IdFormat) -> list[str]:
    """The stored ids a receipt's id may stand for. In ``auto``, a decimal id may be the
    decimal form of a hex id the submit_sm_resp gave, and the other way round."""
    first = normalise(message_id, fmt)
    if fmt is not IdFormat.AUTO:
        return [first]
    value = message_id.strip()
    out = [first]
    if value.isdigit():
        out.append(format(int(value), "X"))
    if re.fullmatch(r"[0-9A-Fa-f]+", value):
        out.append(str(int(value, 16)))
    return list(dict.fromkeys(out))
