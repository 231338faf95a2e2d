from __future__ import annotations

import functools

import phonenumbers
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gatewayd.config.settings import DestinationPolicy
from gatewayd.destinations import (
    Destination,
    NumberError,
    _plus_number,
    first_match,
    matches,
    parse_number,
    refusal,
)


@pytest.mark.parametrize(
    ("text", "region", "e164"),
    [
        ("+4930123456", "DE", "+4930123456"),
        ("004930123456", "DE", "+4930123456"),
        ("01149301234567", "DE", "+49301234567"),  # 011 is not Germany's prefix, still read
        ("01149301234567", "US", "+49301234567"),
        ("030 123456", "DE", "+4930123456"),
        ("(030) 123-456", "DE", "+4930123456"),
        ("030.123.456", "DE", "+4930123456"),
        ("030/123456", "DE", "+4930123456"),
        ("+1 (202) 555-0143", "DE", "+12025550143"),
        ("202-555-0143", "US", "+12025550143"),
        ("+44 20 7183 8750", "US", "+442071838750"),
    ],
)
def test_spellings(text: str, region: str, e164: str) -> None:
    assert parse_number(text, region).e164 == e164


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("12", "'12' is not a valid phone number (a local number without its area code)"),
        ("+1202555", "'+1202555' is not a valid phone number (too short)"),
        ("+999123", "'+999123' is not a phone number"),
        ("+12025550143999", "is not a valid phone number (too long)"),
        ("fax-me", "'fax-me' is not a phone number (only digits"),
        ("", "no number given"),
    ],
)
def test_bad_numbers_say_why(text: str, why: str) -> None:
    with pytest.raises(NumberError) as caught:
        parse_number(text, "DE")
    assert why in str(caught.value)


def test_number_types() -> None:
    assert parse_number("+4915112345678", "DE").number_type == "MOBILE"
    assert parse_number("0900 1234567", "DE").number_type == "PREMIUM_RATE"
    assert parse_number("+49 180 5 123456", "DE").number_type == "SHARED_COST"
    assert parse_number("+4930123456", "DE").country_code == 49


@functools.cache
def _examples() -> list[str]:
    """libphonenumber's example number of every type in every region, in E.164."""
    found = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(11):  # FIXED_LINE … VOICEMAIL
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                found.append(
                    phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
                )
    return found


_ANY_NUMBER = st.builds(
    lambda country, digits: f"+{country}{digits}",
    st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
    st.text("0123456789", min_size=4, max_size=13),
)
_NEAR_AN_EXAMPLE = st.builds(  # an example with its last digits changed: often valid
    lambda example, tail: example[: -len(tail)] + tail,
    st.deferred(lambda: st.sampled_from(_examples())),  # when drawn, not when collected
    st.text("0123456789", min_size=1, max_size=4),
)


@settings(max_examples=1500, deadline=None)
@given(text=st.one_of(_ANY_NUMBER, _NEAR_AN_EXAMPLE))
def test_a_number_is_taken_exactly_when_libphonenumber_calls_it_valid(text: str) -> None:
    """parse_number reads validity off the number's type (one pass of the region's
    patterns, not two): it must take and type exactly what is_valid_number and
    number_type say, for numbers of every calling code and type."""
    try:
        parsed = phonenumbers.parse(text, "DE")
    except phonenumbers.NumberParseException:
        with pytest.raises(NumberError):
            parse_number(text, "DE")
        return
    valid = phonenumbers.is_valid_number(parsed)
    event("valid" if valid else "invalid")
    try:
        found = parse_number(text, "DE")
    except NumberError:
        assert not valid
    else:
        assert valid
        assert found.e164 == phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        assert found.number_type == phonenumbers.PhoneNumberType.to_string(
            phonenumbers.number_type(parsed)
        )


def test_typical_numbers_of_every_region_are_taken() -> None:
    """libphonenumber's own example number of each type in each region."""
    examples = _examples()
    assert len(examples) > 1000
    for e164 in examples:
        assert parse_number(e164, "DE").e164 == e164


GERMAN_LANDLINE = Destination("+4930123456", 49, "FIXED_LINE")


@pytest.mark.parametrize(
    ("policy", "destination", "why"),
    [
        (DestinationPolicy(), GERMAN_LANDLINE, None),
        (DestinationPolicy(allowed_countries=(43, 41)), GERMAN_LANDLINE,
         "+4930123456: country code +49 is not allowed (fax.policy.allowed_countries: +43, +41)"),
        (DestinationPolicy(), Destination("+499001234567", 49, "PREMIUM_RATE"),
         "+499001234567 is a premium rate number (fax.policy.refused_number_types)"),
        (DestinationPolicy(refused_number_types=()),
         Destination("+499001234567", 49, "PREMIUM_RATE"), None),
        (DestinationPolicy(deny=("+4930123456",)), GERMAN_LANDLINE,
         "+4930123456 is on the deny list (fax.policy.deny: +4930123456)"),
        (DestinationPolicy(deny=("+4930*",)), GERMAN_LANDLINE,
         "+4930123456 is on the deny list (fax.policy.deny: +4930*)"),
        (DestinationPolicy(deny=("+4940*",)), GERMAN_LANDLINE, None),
        (DestinationPolicy(deny=("+49??123456",)), GERMAN_LANDLINE,
         "+4930123456 is on the deny list (fax.policy.deny: +49??123456)"),
        (DestinationPolicy(), Destination("+881612345678", 881, "MOBILE"),
         "+881612345678 is in a range refused for its cost (fax.policy.refused_ranges: +881*)"),
        (DestinationPolicy(), Destination("+12129761234", 1, "FIXED_LINE_OR_MOBILE"),
         "+12129761234 is in a range refused for its cost (fax.policy.refused_ranges: "
         "+1???976*)"),
        (DestinationPolicy(), Destination("+12125551976", 1, "FIXED_LINE_OR_MOBILE"), None),
        (DestinationPolicy(refused_ranges=()), Destination("+881612345678", 881, "MOBILE"), None),
    ],
)  # fmt: skip
def test_policy(policy: DestinationPolicy, destination: Destination, why: str | None) -> None:
    assert refusal(destination, policy, "fax") == why


_ENTRY = st.one_of(
    st.builds(  # as entries are written: +, digits and ?, a trailing * for a prefix
        lambda digits, star: "+" + digits + ("*" if star else ""),
        st.text("0123456789?", min_size=0, max_size=6),
        st.booleans(),
    ),
    st.text("+0123456789?*.", max_size=7),  # and as they might be mistyped
)


@settings(max_examples=1500, deadline=None)
@given(
    e164=st.builds(lambda d: "+" + d, st.text("0123456789", min_size=1, max_size=8)),
    entries=st.lists(_ENTRY, max_size=5).map(tuple),
)
def test_one_pattern_finds_what_the_entries_one_by_one_find(
    e164: str, entries: tuple[str, ...]
) -> None:
    """The policy's lists go through one compiled pattern; the entry it names must be
    the first that ``matches`` takes, and none when none does."""
    expected = next((entry for entry in entries if matches(e164, entry)), None)
    event("a match" if expected else "no match")
    assert first_match(e164, entries) == expected


@settings(max_examples=3000, deadline=None)
@given(
    text=st.one_of(_ANY_NUMBER, _NEAR_AN_EXAMPLE),
    region=st.sampled_from(["DE", "US", "GB", "IT", "FR", "BR", "CN", "IN"]),
)
def test_a_plus_number_is_read_as_libphonenumber_reads_it(text: str, region: str) -> None:
    """Text of + and digits skips phonenumbers.parse's general steps (_plus_number);
    whatever it makes must be the very number parse makes, in every field."""
    plain = _plus_number(text)
    event("read here" if plain is not None else "left to parse")
    if plain is None:
        return
    assert plain == phonenumbers.parse(text, region)
    assert plain == phonenumbers.parse(text, None)


def test_the_short_path_takes_the_usual_numbers_and_leaves_the_rest_to_parse() -> None:
    """The property above passes if _plus_number declines everything; here it must take
    plain international numbers (libphonenumber's examples, nearly all of them) and
    decline what needs parse: a national prefix or a zero after the code, no code."""
    examples = _examples()
    taken = [e164 for e164 in examples if _plus_number(e164) is not None]
    assert len(taken) > 0.9 * len(examples)
    for e164 in taken:
        assert _plus_number(e164) == phonenumbers.parse(e164, None)
    assert _plus_number("+4930123456") == phonenumbers.parse("+4930123456", None)
    for text in ("+44 7911 123456", "+4407911123456", "+390612345678", "+999123", "4930123456"):
        assert _plus_number(text) is None
