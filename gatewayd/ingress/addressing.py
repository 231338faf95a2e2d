"""Which recipients gatewayd takes, and the destination numbers they name.

``NUMBER@<fax_domain>`` and ``NUMBER@<sms_domain>`` name one number in the local part;
``fax@<domain>`` and ``sms@<domain>`` (for each of ``smtp.domains``) take the number(s)
from the subject, separated by commas or semicolons. Anything else is relaying, which
gatewayd never does. The numbers are admitted as every door admits them
(gatewayd/admission); refusals raise RejectedMessage with the reply, which says where
the number was written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gatewayd.admission import Channel, Refusal, destination, destinations
from gatewayd.config.settings import Settings
from gatewayd.destinations import Destination
from gatewayd.errors import RejectedMessage
from gatewayd.ingress import replies


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    channel: Channel
    destination: Destination | None  # None: the numbers are in the subject


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
            found = destination(local, channel, settings)
        except Refusal as exc:
            raise RejectedMessage(replies.refused(exc, address=address)) from exc
        return Recipient(address, channel, found)
    if domain in smtp.domains and local.lower() in (Channel.FAX.value, Channel.SMS.value):
        return Recipient(address, Channel(local.lower()), None)
    raise RejectedMessage(replies.relaying_denied(address))


def subject_destinations(
    subject: str, settings: Settings, channel: Channel, *, limit: int | None = None
) -> list[Destination]:
    """The numbers a ``fax@``/``sms@`` subject names (comma or semicolon separated);
    more than ``limit`` are refused before any is parsed."""
    texts = [t.strip() for t in re.split(r"[,;]", subject) if t.strip()]
    try:
        return destinations(texts, channel, settings, limit=limit)
    except Refusal as exc:
        raise RejectedMessage(replies.refused(exc)) from exc
