"""Destination numbers: parsed with phonenumbers into E.164, and checked against the
destination policy of a channel (fax or SMS).

The policy (config ``[sms.policy]``, ``[fax.policy]``): allowed country codes, refused
number types (premium rate and shared cost by default), the operator's deny list,
and refused ranges (by default Inmarsat +870, satellite +881, international networks
+882 and +883, and US 976 numbers: costly, and not typed premium by libphonenumber).

Accepted spellings: +E.164; national numbers in the configured default region; the
international prefixes 00 and 011 whatever the region; spaces, dots, dashes and
parentheses anywhere. Every refusal says why, in words a sender can act on.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult

from gatewayd.config.settings import DestinationPolicy

_TYPE_NAMES = {
    value: name for name, value in vars(PhoneNumberType).items() if isinstance(value, int)
}
# libphonenumber's bounds of a national significant number's length.
_MIN_NATIONAL, _MAX_NATIONAL = 2, 17
_SEPARATORS = re.compile(r"[\s.\-()/]")
_ALLOWED = re.compile(r"^\+?[0-9]+$")
_WHY_NOT_POSSIBLE = {
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong length",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "a local number without its area code",
}


class NumberError(ValueError):
    """The text is not a phone number; the message says why."""


@dataclass(frozen=True, slots=True)
class Destination:
    e164: str
    country_code: int
    number_type: str  # a phonenumbers PhoneNumberType name, e.g. "MOBILE"


def _parse(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    plain = _plus_number(text)
    if plain is not None:
        return plain
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException:
        return None


def _plus_number(text: str) -> phonenumbers.PhoneNumber | None:
    """What ``phonenumbers.parse`` makes of ``+`` and digits alone, the way almost every
    API client and address writes a number, in the steps such a text needs of it (a
    calling code, the digits after it); None for whatever needs any other step (a
    national prefix or a zero after the code, a length out of bounds, no known code):
    parse itself reads those. Its general steps (finding a number in free text,
    extensions, normalising letters and other scripts' digits) took two thirds of its
    time. A test holds the two equal on numbers of every calling code."""
    digits = text[1:]
    if text[:1] != "+" or not digits.isascii() or not digits.isdigit() or digits[0] == "0":
        return None
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[size:]
    if not _MIN_NATIONAL <= len(national) <= _MAX_NATIONAL or national[0] == "0":
        return None
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
        code, phonenumbers.region_code_for_country_code(code)
    )
    if metadata is None:
        return None
    prefix = metadata.national_prefix_for_parsing
    if prefix and re.match(prefix, national):  # (re keeps the compiled patterns)
        return None
    return phonenumbers.PhoneNumber(country_code=code, national_number=int(national))


@functools.lru_cache(maxsize=4096)
def parse_number(text: str, region: str) -> Destination:
    """The destination ``text`` names, or NumberError saying why it names none.
    (Cached: parsing is slow, and a mail's numbers are read at RCPT and again at DATA.)"""
    compact = _SEPARATORS.sub("", text.strip())
    if not compact:
        raise NumberError("no number given")
    if not _ALLOWED.match(compact):
        raise NumberError(
            f"{text!r} is not a phone number (only digits, spaces, . - ( ) and "
            "a leading + belong in one)"
        )
    candidates = [compact]
    for prefix in ("00", "011"):  # international prefixes, whatever the region's own
        if compact.startswith(prefix):
            candidates.append("+" + compact[len(prefix) :])
    number, kind = None, PhoneNumberType.UNKNOWN
    for candidate in candidates:
        parsed = _parse(candidate, region)
        # A number is valid exactly when it has a type: is_valid_number matches the
        # same patterns of the number's region as number_type, which took ~40 % of
        # this function's time each; one pass instead of two.
        kind = PhoneNumberType.UNKNOWN if parsed is None else phonenumbers.number_type(parsed)
        if kind != PhoneNumberType.UNKNOWN:
            number = parsed
            break
    if number is None:
        parsed = _parse(compact, region)
        if parsed is None:
            raise NumberError(f"{text!r} is not a phone number")
        why = _WHY_NOT_POSSIBLE.get(phonenumbers.is_possible_number_with_reason(parsed))
        raise NumberError(f"{text!r} is not a valid phone number" + (f" ({why})" if why else ""))
    return Destination(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        country_code=int(number.country_code or 0),
        number_type=_TYPE_NAMES[kind],
    )


def refusal(destination: Destination, policy: DestinationPolicy, channel: str) -> str | None:
    """Why the policy refuses this destination (naming the rule), or None."""
    if policy.allowed_countries and destination.country_code not in policy.allowed_countries:
        allowed = ", ".join(f"+{c}" for c in policy.allowed_countries)
        return (
            f"{destination.e164}: country code +{destination.country_code} is not allowed "
            f"({channel}.policy.allowed_countries: {allowed})"
        )
    if destination.number_type in policy.refused_number_types:
        kind = destination.number_type.lower().replace("_", " ")
        return f"{destination.e164} is a {kind} number ({channel}.policy.refused_number_types)"
    entry = first_match(destination.e164, policy.deny)
    if entry is not None:
        return f"{destination.e164} is on the deny list ({channel}.policy.deny: {entry})"
    entry = first_match(destination.e164, policy.refused_ranges)
    if entry is not None:
        return (
            f"{destination.e164} is in a range refused for its cost "
            f"({channel}.policy.refused_ranges: {entry})"
        )
    return None


def first_match(e164: str, entries: tuple[str, ...]) -> str | None:
    """The first of ``entries`` that ``e164`` matches, or None. (One compiled pattern
    answers the usual no; then the entries are walked for the one to name.)"""
    pattern = _any_of(entries)
    if pattern is None or pattern.fullmatch(e164) is None:
        return None
    return next(entry for entry in entries if matches(e164, entry))


@functools.lru_cache(maxsize=64)
def _any_of(entries: tuple[str, ...]) -> re.Pattern[str] | None:
    """A pattern matching what ``matches`` says any of ``entries`` matches."""
    if not entries:
        return None
    return re.compile("|".join(_pattern(entry) for entry in entries))


def _pattern(entry: str) -> str:
    prefix = entry.endswith("*")
    digits = entry[:-1] if prefix else entry
    return "".join("." if c == "?" else re.escape(c) for c in digits) + (".*" if prefix else "")


def matches(e164: str, entry: str) -> bool:
    """Whether ``e164`` is ``entry``: a number, or a prefix ending in ``*``; ``?``
    stands for any one digit."""
    prefix = entry.endswith("*")
    pattern = entry[:-1] if prefix else entry
    if len(e164) < len(pattern) or (not prefix and len(e164) != len(pattern)):
        return False
    return all(p in ("?", c) for p, c in zip(pattern, e164, strict=False))
