"""Destination numbers as both doors admit them: a text is parsed into E.164 and every
destination is checked against its channel's policy (the rules themselves are in
gatewayd/destinations.py); a number given twice counts once."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from gatewayd.admission.refusals import Code, Refusal
from gatewayd.config.settings import DestinationPolicy, Settings
from gatewayd.destinations import Destination, NumberError, parse_number, refusal


class Channel(StrEnum):
    FAX = "fax"
    SMS = "sms"


# A destination as a door has it: the text a sender wrote, or a number already parsed
# (the SMTP door parses the numbers of the addresses at RCPT).
Number = str | Destination


def policy(settings: Settings, channel: Channel) -> DestinationPolicy:
    return settings.fax.policy if channel is Channel.FAX else settings.sms.policy


def destination(number: Number, channel: Channel, settings: Settings) -> Destination:
    """The destination ``number`` names, if the channel's policy allows it; else Refusal
    BAD_NUMBER (value: the text, reason: why) or DESTINATION_REFUSED (reason: the rule)."""
    if isinstance(number, str):
        try:
            found = parse_number(number, settings.smtp.default_region)
        except NumberError as exc:
            raise Refusal(Code.BAD_NUMBER, reason=str(exc), value=number) from exc
    else:
        found = number
    why = refusal(found, policy(settings, channel), channel.value)
    if why is not None:
        value = number if isinstance(number, str) else found.e164
        raise Refusal(Code.DESTINATION_REFUSED, reason=why, value=value)
    return found


def destinations(
    numbers: Sequence[Number], channel: Channel, settings: Settings, *, limit: int | None = None
) -> list[Destination]:
    """Every destination, each once, in order; Refusal NO_DESTINATION for none,
    TOO_MANY_DESTINATIONS for more than ``limit`` given, or the first number's refusal."""
    if not numbers:
        raise Refusal(Code.NO_DESTINATION)
    if limit is not None and len(numbers) > limit:
        raise Refusal(Code.TOO_MANY_DESTINATIONS, count=len(numbers), limit=limit)
    found: dict[str, Destination] = {}
    for number in numbers:
        checked = destination(number, channel, settings)
        found.setdefault(checked.e164, checked)
    return list(found.values())
