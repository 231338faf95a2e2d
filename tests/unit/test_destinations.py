from __future__ import annotations

import pytest

from gatewayd.config.settings import DestinationPolicy
from gatewayd.destinations import Destination, NumberError, parse_number, refusal


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
