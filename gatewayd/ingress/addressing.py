"""Which recipients gatewayd takes, and the destination numbers they name.

``NUMBER@<fax_domain>`` and ``NUMBER@<sms_domain>`` name one number in the local part;
``fax@<domain>`` and ``sms@<domain>`` (for each of ``smtp.domains``) take the number(s)
from the subject, separated by commas or semicolons. Anything else is relaying, which
gatewayd never does. Pure functions; refusals raise RejectedMessage with the reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from gatewayd.config.settings import DestinationPolicy, Settings
from gatewayd.destinations import Destination, NumberError, parse_number, refusal
from gatewayd.errors import RejectedMessage
from gatewayd.ingress import replies


class Channel(StrEnum):
    FAX = "fax"
    SMS = "sms"


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    channel: Channel
    destination: Destination | None  # None: the numbers are in the subject


def _policy(settings: Settings, channel: Channel) -> DestinationPolicy:
    return settings.fax.policy if channel is Channel.FAX else settings.sms.policy


def checked(destination: Destination, settings: Settings, channel: Channel) -> Destination:
    why = refusal(destination, _policy(settings, channel), channel.value)
    if why is not None:
        raise RejectedMessage(replies.policy_refused(why))
    return destination


def recipient(address: str, settings: Settings) -> Recipient:
    """What ``address`` asks for, or RejectedMessage (550) saying why not."""
    local, at, domain = address.rpartition("@")
    domain = domain.lower().rstrip(".")
    if not at or not local:
        raise RejectedMessage(replies.relaying_denied(address))
    smtp = settings.smtp
    by_number = {smtp.fax_domain: Channel.FAX, smtp.sms_domain: Channel.SMS}
    if domain in by_number:
        channel = by_number[domain]
        try:
            destination = parse_number(local, smtp.default_region)
        except NumberError as exc:
            raise RejectedMessage(replies.bad_local_number(address, str(exc))) from exc
        return Recipient(address, channel, checked(destination, settings, channel))
    if domain in smtp.domains and local.lower() in (Channel.FAX.value, Channel.SMS.value):
        return Recipient(address, Channel(local.lower()), None)
    raise RejectedMessage(replies.relaying_denied(address))


def subject_destinations(subject: str, settings: Settings, channel: Channel) -> list[Destination]:
    """The numbers a ``fax@``/``sms@`` subject names (comma or semicolon separated)."""
    texts = [t.strip() for t in re.split(r"[,;]", subject) if t.strip()]
    if not texts:
        raise RejectedMessage(replies.NO_SUBJECT_NUMBER)
    out = []
    for text in texts:
        try:
            destination = parse_number(text, settings.smtp.default_region)
        except NumberError as exc:
            raise RejectedMessage(replies.bad_subject_number(str(exc))) from exc
        out.append(checked(destination, settings, channel))
    return out
