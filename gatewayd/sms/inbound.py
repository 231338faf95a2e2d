"""What SMSCs deliver: receipts for our parts, and SMS for our users.

Every deliver_sm (and data_sm) is answered only after what it says is committed to the
mailbox; when the mailbox cannot take it, the answer is ESME_RX_T_APPN and the SMSC
sends it again later.

Receipts go to the mailbox through the receipt rendezvous (rendezvous.py): a receipt
for an id we do not know yet, while submit_sm wait for their answers on that link, may
be for one of them (some SMSCs send the receipt first): it waits for that id, up to the
link's response_timeout. A receipt still unknown then is parked in the mailbox and
acknowledged: the part may be recorded later, or by another node of a cluster (whose
bind the SMSC chose for the receipt). Parked receipts are tried again every second and
given up after PARKED_RECEIPT_TTL, with a warning (``sms.receipt_unknown``).

An SMS for a number of a configured user (``sms_numbers``) is stored as a Received SMS
in that user's extension, threaded with the earlier messages between the same two
numbers. Concatenated SMS (UDH with 8- or 16-bit references, or SAR TLVs) are stored
part by part, each acknowledged once stored, and made into one message when the last
part is in; parts whose siblings do not come within ``sms.reassembly_timeout`` are made
into a message of what arrived, marked where parts are missing. A number nobody owns is
logged and, by ``sms.unknown_destination``, acknowledged or refused (ESME_RX_R_APPN).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import phonenumbers

from gatewayd import gsm
from gatewayd.config.settings import Settings, User
from gatewayd.errors import StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox import (
    Fragment,
    Mailbox,
    NewAttachment,
    NewMessage,
    Outcome,
    Party,
    ReceiptIn,
)
from gatewayd.model import Direction, MessageType, PartStatus
from gatewayd.sms import receipts
from gatewayd.sms.link import SmppLink
from gatewayd.sms.pdu import ESM_UDHI, Pdu, Status, Tag
from gatewayd.sms.rendezvous import Rendezvous

log = get_logger("gatewayd.sms")

SWEEP_INTERVAL = 5.0
PARKED_INTERVAL = 1.0
PARKED_RECEIPT_TTL = 3600.0


@dataclass(frozen=True, slots=True)
class Concatenated:
    reference: int
    total: int
    seq: int


def split_udh(data: bytes) -> tuple[Concatenated | None, bytes]:
    """The concatenation element of a user data header (IE 0x00 or 0x08), and the text
    after the header. A header that does not hold together (longer than the data, an
    element cut short, a part number of 0 or past the total) is no concatenation: the
    message is taken as a single part (an SMSC that is refused retries forever)."""
    if not data:
        return None, data
    length = data[0]
    if 1 + length > len(data):
        return None, data[1:]  # the header claims more than there is: none to trust
    header, rest = data[1 : 1 + length], data[1 + length :]
    at, found = 0, None
    while at + 2 <= len(header):
        kind, size = header[at], header[at + 1]
        value = header[at + 2 : at + 2 + size]
        if len(value) < size:
            return None, rest  # an element cut short: the header is broken
        if kind == 0x00 and size == 3:
            found = Concatenated(value[0], value[1], value[2])
        elif kind == 0x08 and size == 4:
            found = Concatenated(int.from_bytes(value[:2], "big"), value[2], value[3])
        at += 2 + size
    if found is not None and not 1 <= found.seq <= found.total:
        return None, rest
    return found, rest


def decode_text(data: bytes, data_coding: int) -> str:
    """SMS user data as text: GSM 03.38 (unpacked, as SMPP carries it), IA5/ASCII,
    Latin-1, UCS-2; anything else is binary and said so."""
    scheme = data_coding & 0x0F if data_coding & 0xF0 == 0xF0 else data_coding
    if scheme == 0:
        return gsm.decode_gsm7(data)
    if scheme == 1:
        return data.decode("ascii", "replace")
    if scheme == 3:
        return data.decode("latin-1")
    if scheme == 8:
        return data.decode("utf-16-be", "replace")
    return f"[binary message: {len(data)} octets, data_coding {data_coding}]"


def number_of(address: str, ton: int, region: str) -> str:
    """An SMPP address as the mailbox writes numbers: E.164 when it is one."""
    digits = address.strip()
    if ton == 5 or not digits:  # alphanumeric
        return digits
    if digits.startswith("+"):
        return digits
    if ton == 1:
        return "+" + digits
    with contextlib.suppress(phonenumbers.NumberParseException):
        parsed = phonenumbers.parse(digits, region)
        if phonenumbers.is_possible_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return digits


class Inbound:
    """The handler every SMPP link gives what the SMSC delivers."""

    def __init__(self, mailbox: Mailbox, settings: Settings, rendezvous: Rendezvous) -> None:
        self.mailbox = mailbox
        self.rendezvous = rendezvous
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[int]] = set()  # receipts waiting for their part
        self.reload(settings)

    def reload(self, settings: Settings) -> None:
        """New users and numbers (SIGHUP): an SMS to a number added now is stored."""
        self.settings = settings
        self._owners: dict[str, User] = {n: u for u in settings.users for n in u.sms_numbers}

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="sms-reassembly")

    async def close(self) -> None:
        for task in [*self._tasks, *([self._sweeper] if self._sweeper else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._sweeper is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def __call__(self, link: SmppLink, request: Pdu) -> int:
        """An inbound SMS (receipts never come here: ``soon`` takes them all)."""
        try:
            return await self._message(link, request)
        except StoreError as exc:
            log.error("sms.deliver_not_stored", link=link.name, error=str(exc))
            return Status.RX_T_APPN

    def soon(self, link: SmppLink, request: Pdu) -> asyncio.Future[int] | int | None:
        """A receipt without a task of its own (the link answers when the future is
        done): its first look at the mailbox is a callback; only a receipt whose part is
        not known yet goes on in a task (the wait, then parking). None for anything
        else (an inbound SMS: ``__call__``)."""
        if not receipts.is_receipt(request):
            return None
        read = self._read_receipt(link, request)
        if read is None:
            return Status.ROK
        receipt, item = read
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        looked = self.rendezvous.receipt_nowait(item)
        looked.add_done_callback(partial(self._looked, link, receipt, item, answer))
        return answer

    def _looked(
        self,
        link: SmppLink,
        receipt: receipts.Receipt,
        item: ReceiptIn,
        answer: asyncio.Future[int],
        looked: asyncio.Future[Outcome | None],
    ) -> None:
        if looked.cancelled():
            answer.cancel()
            return
        error = looked.exception()
        if isinstance(error, StoreError):
            log.error("sms.deliver_not_stored", link=link.name, error=str(error))
            answer.set_result(Status.RX_T_APPN)
        elif error is not None:
            answer.set_exception(error)
        elif looked.result() is not None:
            answer.set_result(Status.ROK)
        else:
            task = asyncio.create_task(self._unknown(link, receipt, item))
            self._tasks.add(task)
            task.add_done_callback(partial(self._chain, answer))

    def _chain(self, answer: asyncio.Future[int], task: asyncio.Task[int]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            answer.cancel()
        elif (error := task.exception()) is not None:
            answer.set_exception(error)
        else:
            answer.set_result(task.result())

    # -- receipts ---------------------------------------------------------------------

    def _read_receipt(
        self, link: SmppLink, request: Pdu
    ) -> tuple[receipts.Receipt, ReceiptIn] | None:
        """What a receipt says, for the mailbox; None when it names no message (logged)."""
        receipt = receipts.parse(request)
        if receipt is None:
            log.warning(
                "sms.receipt_unreadable", link=link.name, esm_class=request.fields.get("esm_class")
            )
            return None
        fmt = link.id_format
        ids = tuple(receipts.candidates(receipt.message_id, fmt))
        if receipt.id_mismatch:
            ids += tuple(c for c in receipts.candidates(receipt.id_mismatch, fmt) if c not in ids)
            log.warning(
                "sms.receipt_ids_differ",
                link=link.name,
                tlv=receipt.message_id,
                text=receipt.id_mismatch,
            )
        outcome = receipt.outcome(accepted_is_delivered=self.settings.sms.accepted_is_delivered)
        failed = outcome is PartStatus.DELIVERY_FAILED
        item = ReceiptIn(
            link.name,
            ids,
            outcome,
            error_code=receipt.error_code if failed else None,
            done_at=receipt.done_at,
            detail={"stat": receipt.stat, "err": receipt.error},
        )
        return receipt, item

    async def _unknown(self, link: SmppLink, receipt: receipts.Receipt, item: ReceiptIn) -> int:
        """A receipt no part is known for at first look: wait for the part if it may
        still come, else park the receipt (acknowledged either way)."""
        try:
            found = await self.rendezvous.receipt_again(item, within=link.settings.response_timeout)
            if found is None:
                await self.mailbox.park_receipt(item)
                log.info(
                    "sms.receipt_parked",
                    link=link.name,
                    carrier_id=receipt.message_id,
                    stat=receipt.stat,
                )
        except StoreError as exc:
            log.error("sms.deliver_not_stored", link=link.name, error=str(exc))
            return Status.RX_T_APPN
        return Status.ROK

    # -- SMS for our users --------------------------------------------------------------

    async def _message(self, link: SmppLink, request: Pdu) -> int:
        fields = request.fields
        region = self.settings.smtp.default_region
        source = number_of(fields.get("source_addr", ""), fields.get("source_addr_ton", 0), region)
        destination = number_of(
            fields.get("destination_addr", ""), fields.get("dest_addr_ton", 0), region
        )
        user = self._owners.get(destination)
        if user is None:
            refuse = self.settings.sms.unknown_destination == "refuse"
            log.warning(
                "sms.inbound_unknown_destination",
                link=link.name,
                destination=destination,
                refused=refuse,
            )
            return Status.RX_R_APPN if refuse else Status.ROK
        data = fields.get("short_message") or request.tlvs.get(Tag.MESSAGE_PAYLOAD) or b""
        concatenated = None
        if fields.get("esm_class", 0) & ESM_UDHI:
            concatenated, data = split_udh(data)
        elif Tag.SAR_MSG_REF_NUM in request.tlvs:
            concatenated = Concatenated(
                request.tlv_int(Tag.SAR_MSG_REF_NUM) or 0,
                request.tlv_int(Tag.SAR_TOTAL_SEGMENTS) or 1,
                request.tlv_int(Tag.SAR_SEGMENT_SEQNUM) or 1,
            )
        text = decode_text(data, fields.get("data_coding", 0))
        if concatenated is None or concatenated.total <= 1:
            await self._store(user, link.name, source, destination, text, note=None)
            return Status.ROK
        fragment = Fragment(
            link.name,
            source,
            destination,
            concatenated.reference,
            concatenated.total,
            concatenated.seq,
            text,
            self.mailbox.clock.now(),
        )
        whole = await self.mailbox.add_fragment(fragment)
        if whole is not None:
            await self._store(
                user, link.name, source, destination, "".join(f.text for f in whole), note=None
            )
        return Status.ROK

    async def _store(
        self, user: User, link: str, source: str, destination: str, text: str, *, note: str | None
    ) -> None:
        message = await self.mailbox.create(
            NewMessage(
                account_id=user.account_id,
                extension_id=user.extension_id,
                type=MessageType.SMS,
                direction=Direction.INBOUND,
                from_=Party(phone_number=source),
                to=(Party(phone_number=destination, name=user.name or None),),
                origin=f"smpp:{link}",
                subject=text,
                attachments=(NewAttachment.text_of_message(),),
            )
        )
        if note:
            await self.mailbox.record_event(message.id, "note", note)
        log.info("sms.received", message_id=message.id, link=link, extension_id=user.extension_id)

    # -- parts that never became whole ----------------------------------------------------

    async def sweep(self) -> int:
        """Make messages of the parts that waited past the reassembly timeout."""
        wait = timedelta(seconds=self.settings.sms.reassembly_timeout)
        groups = await self.mailbox.take_stale_fragments(self.mailbox.clock.now() - wait)
        for parts in groups:
            first = parts[0]
            have = {p.seq: p.text for p in parts}
            text = "".join(
                have.get(seq, f"[part {seq} of {first.total} missing]")
                for seq in range(1, first.total + 1)
            )
            missing = first.total - len(have)
            user = self._owners.get(first.destination)
            if user is None:
                continue
            await self._store(
                user,
                first.link,
                first.source,
                first.destination,
                text,
                note=f"{missing} of {first.total} parts never arrived",
            )
        return len(groups)

    async def apply_parked(self) -> int:
        """Parked receipts whose part is known now are applied (by one node of a
        cluster at a time); those parked too long are given up."""
        if not await self.mailbox.hold_role("sms-parked-receipts"):
            return 0
        applied, expired = await self.mailbox.apply_parked(expire_after=PARKED_RECEIPT_TTL)
        for item in expired:
            log.warning("sms.receipt_unknown", link=item.link, carrier_id=item.carrier_ids[0])
        return applied

    async def _sweep_forever(self) -> None:
        since_sweep = 0.0
        while True:
            await asyncio.sleep(PARKED_INTERVAL)
            since_sweep += PARKED_INTERVAL
            try:
                await self.apply_parked()
                if since_sweep >= SWEEP_INTERVAL:
                    since_sweep = 0.0
                    await self.sweep()
            except StoreError as exc:
                log.error("sms.reassembly_sweep_failed", error=str(exc))
