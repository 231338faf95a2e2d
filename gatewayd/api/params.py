"""Reading query values strictly: ISO 8601 times only (not numbers), ids as digits."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from gatewayd.api.errors import invalid, not_found

MAX_ID = 2**53 - 1  # message ids stay below 2^53 (exact in JavaScript)
MAX_CONVERSATION = 2**63 - 1  # SMS conversation ids are 63-bit hashes
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"([Zz]|[+-]\d{2}:?\d{2})?$"
)


def when(name: str, value: str | None) -> datetime | None:
    """An ISO 8601 / RFC 3339 time (UTC when no offset is written), or None. Year 0 and
    a leap second are read as the nearest time Python can hold."""
    if value is None:
        return None
    match = _ISO.match(value)
    if not match:
        raise invalid(name, value, "Expected an ISO 8601 date-time, e.g. 2026-11-28T10:00:00Z.")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            max(1, int(year)),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            min(59, int(second or 0)),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError:
        raise invalid(name, value, "Not a date-time.") from None
    if zone and zone not in "Zz":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        try:
            moment -= sign * offset
        except OverflowError:
            moment = (datetime.min if sign > 0 else datetime.max).replace(tzinfo=UTC)
    return moment


def message_id(value: str, name: str = "messageId") -> int:
    if not value.isdigit() or len(value) > 16 or int(value) > MAX_ID:
        raise not_found(name, value)
    return int(value)
