"""An outbound SMS admitted: from whom, to which numbers, with what text; the messages
to queue, one per destination, or a Refusal.

The same rules for every door: the sender is one of the user's SMS numbers, every
destination passes the SMS policy, the text is not empty and fits in ``sms.max_parts``
parts (GSM 03.38 when it can, else UCS-2; parts as gatewayd/gsm.py counts them for
8-bit-reference concatenation). Where the doors differ, they say so by parameter:

- ``sender``: the API's caller names the number to send from (it must be theirs); mail
  sends from the user's first SMS number (None).
- ``max_destinations``: the API takes one destination per SMS (as RingCentral: a group
  is an MMS); mail takes several (its limit is on the envelope, counted by the door).
- ``max_units``: the API caps the text at 1000 UTF-16 code units (its documented
  limit); mail only by parts.
"""

from __future__ import annotations

from collections.abc import Sequence

from gatewayd import gsm
from gatewayd.admission.numbers import Channel, Number, destinations
from gatewayd.admission.refusals import Code, Refusal
from gatewayd.config.settings import Settings, User
from gatewayd.mailbox import NewAttachment, NewMessage, Party
from gatewayd.model import Direction, MessageType


def sender(user: User, number: str | None = None) -> str:
    """The number an SMS of ``user`` goes out from: ``number`` if it is one of theirs
    (else NOT_YOUR_NUMBER), or their first (NO_SMS_NUMBER when they have none)."""
    if number is not None:
        if number not in user.sms_numbers:
            raise Refusal(Code.NOT_YOUR_NUMBER, value=number)
        return number
    if not user.sms_numbers:
        login = user.emails[0] if user.emails else user.extension_number
        raise Refusal(Code.NO_SMS_NUMBER, value=login)
    return user.sms_numbers[0]


def check_text(text: str, settings: Settings, *, max_units: int | None = None) -> None:
    """NO_TEXT, TOO_MANY_UNITS or TEXT_TOO_LONG, or nothing when the text may be sent."""
    if not text:
        raise Refusal(Code.NO_TEXT)
    if max_units is not None:
        units = gsm.length(text, gsm.Alphabet.UCS2)
        if units > max_units:
            raise Refusal(Code.TOO_MANY_UNITS, count=units, limit=max_units)
    parts = gsm.count_parts(text)
    if parts > settings.sms.max_parts:
        raise Refusal(Code.TEXT_TOO_LONG, count=parts, limit=settings.sms.max_parts)


def messages(
    text: str,
    numbers: Sequence[Number],
    *,
    user: User,
    settings: Settings,
    origin: str,
    from_number: str | None = None,
    max_destinations: int | None = None,
    max_units: int | None = None,
    sender_email: str | None = None,
) -> list[NewMessage]:
    """One Queued-to-be SMS per destination, or the first Refusal: the sender, then the
    destinations, then the text."""
    ours = Party(phone_number=sender(user, from_number), name=user.name or None)
    found = destinations(numbers, Channel.SMS, settings, limit=max_destinations)
    check_text(text, settings, max_units=max_units)
    return [
        NewMessage(
            account_id=user.account_id,
            extension_id=user.extension_id,
            type=MessageType.SMS,
            direction=Direction.OUTBOUND,
            from_=ours,
            to=(Party(phone_number=d.e164),),
            origin=origin,
            subject=text,
            attachments=(NewAttachment.text_of_message(),),
            sender_email=sender_email,
        )
        for d in found
    ]
