"""Queued SMS out through the SMPP links.

The dispatcher leases due Queued SMS from the mailbox (the mailbox is the queue) while
a link is bound, routes each by its destination (the link with the longest matching
prefix, else the default link), splits its text into parts (GSM-7 or UCS-2; UDH with an
8- or 16-bit reference, SAR TLVs or message_payload, per link), and submits the parts
not yet accepted by an earlier attempt, concurrently, through the link's window.

What the SMSC answers decides (command_status classes as in docs/sms.md):

- ESME_ROK: the part is accepted; its SMSC id (normalised per link) goes to the
  mailbox at once (through the receipt rendezvous, rendezvous.py), so that its receipt
  finds it. The SMS is Sent when every part is.
- ESME_RTHROTTLED, ESME_RMSGQFUL: the link pauses, and the part is sent again within
  the same attempt (up to THROTTLE_RETRIES times).
- ESME_RSYSERR, ESME_RX_T_APPN, ESME_RINVBNDSTS, no answer in time, the link going down:
  the SMS is given back to the queue, due again after ``sms.retry_delay`` doubling per
  attempt. (A submit_sm whose answer was lost may have been taken: sending it again can
  duplicate it, as in every SMPP gateway.)
- anything else is permanent: the SMS is SendingFailed with deliveryErrorCode (the
  status name) and a reason naming it.

An SMS older than ``sms.max_age``, or past ``sms.max_attempts`` attempts (each lease
counts one: smsSendingAttemptsCount), is SendingFailed with the last reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from gatewayd import gsm
from gatewayd.cluster import Cluster
from gatewayd.config.settings import Settings, SmppLinkSettings
from gatewayd.errors import GatewayError, LeaseLost, LinkDown
from gatewayd.gsm import Concatenation, Split
from gatewayd.logging import get_logger
from gatewayd.mailbox import Mailbox, Message, Outcome, PartAccepted, PartRefused, SmsToSend
from gatewayd.model import MessageStatus, MessageType, PartStatus
from gatewayd.sms import pdu, receipts
from gatewayd.sms.link import SmppLink
from gatewayd.sms.pdu import ESM_UDHI, Pdu, Status, Tag
from gatewayd.sms.rendezvous import Rendezvous
from gatewayd.worker import LeaseLoop, backoff

log = get_logger("gatewayd.sms")

TEMPORARY = frozenset(
    {Status.RSYSERR, Status.RX_T_APPN, Status.RINVBNDSTS, Status.RMSGQFUL, Status.RTHROTTLED}
)
THROTTLE_RETRIES = 10
IDLE_POLL = 0.5
MAX_RETRY_DELAY = 3600.0
LEASE_SECONDS = 300.0
LEASE_BATCH = 500
LEASE_INTERVAL = 0.05  # at most twenty short leases a second
IN_FLIGHT_PER_WINDOW = 16  # messages leased per place in the links' windows
CRASH_REASON = (
    "in flight when the gateway stopped unexpectedly: parts not recorded as accepted are "
    "sent again and may reach the phone twice"
)


@dataclass(frozen=True, slots=True)
class Address:
    number: str
    ton: int
    npi: int


def address_of(number: str) -> Address:
    """E.164 as international (TON 1, NPI 1, without the +); a name as alphanumeric
    (TON 5, NPI 0); other digits as national (TON 2, NPI 1)."""
    if number.startswith("+"):
        return Address(number[1:], 1, 1)
    if any(not c.isdigit() for c in number):
        return Address(number, 5, 0)
    return Address(number, 2, 1)


Answered = tuple["SmppLink", "PartOut", "asyncio.Future[Pdu]"]
"""The quick way's part, submitted, and its answer (a future that is done)."""


@dataclass(frozen=True, slots=True)
class PartOut:
    """One part's submit_sm, waiting for its sequence number."""

    source: Address
    destination: Address
    short_message: bytes
    esm_class: int
    data_coding: int
    registered_delivery: int
    tlvs: tuple[tuple[int, bytes], ...]

    def build(self, sequence: int) -> bytes:
        return pdu.encode_submit_sm(
            sequence,
            source=self.source.number,
            source_ton=self.source.ton,
            source_npi=self.source.npi,
            destination=self.destination.number,
            dest_ton=self.destination.ton,
            dest_npi=self.destination.npi,
            short_message=self.short_message,
            esm_class=self.esm_class,
            data_coding=self.data_coding,
            registered_delivery=self.registered_delivery,
            tlvs=self.tlvs,
        )


def parts_out(
    split: Split, link: SmppLinkSettings, source: Address, destination: Address, reference: int
) -> list[PartOut]:
    """The submit_sm of every part of ``split``, concatenated as the link wants."""
    encoded = split.encoded()
    total = len(encoded)
    data_coding = link.data_coding if split.data_coding == 0 else split.data_coding
    receipt = 1 if link.registered_delivery else 0
    concatenation = Concatenation(link.concatenation)
    out = []
    for index, body in enumerate(encoded):
        seq, esm_class, short = index + 1, 0, body
        tlvs: tuple[tuple[int, bytes], ...] = ()
        if concatenation is Concatenation.PAYLOAD:
            tlvs, short = (pdu.tlv(Tag.MESSAGE_PAYLOAD, body),), b""
        elif total > 1 and concatenation is Concatenation.UDH8:
            short, esm_class = bytes((5, 0, 3, reference % 256, total, seq)) + body, ESM_UDHI
        elif total > 1 and concatenation is Concatenation.UDH16:
            udh = bytes((6, 8, 4, reference >> 8 & 0xFF, reference & 0xFF, total, seq))
            short, esm_class = udh + body, ESM_UDHI
        elif total > 1:  # SAR
            tlvs = (
                pdu.tlv(Tag.SAR_MSG_REF_NUM, reference & 0xFFFF, 2),
                pdu.tlv(Tag.SAR_TOTAL_SEGMENTS, total),
                pdu.tlv(Tag.SAR_SEGMENT_SEQNUM, seq),
            )
        out.append(PartOut(source, destination, short, esm_class, data_coding, receipt, tlvs))
    return out


class Links:
    """The configured links and the routing between them."""

    def __init__(self, links: Sequence[SmppLink]) -> None:
        self.links = list(links)
        self._default = next((link for link in links if link.settings.default), None)
        self._prefixes = sorted(
            ((prefix, link) for link in links for prefix in link.settings.prefixes),
            key=lambda item: -len(item[0]),
        )

    def route(self, number: str) -> SmppLink | None:
        for prefix, link in self._prefixes:
            if number.startswith(prefix):
                return link
        return self._default

    @property
    def any_bound(self) -> bool:
        return any(link.bound for link in self.links)

    def capacity(self) -> int:
        return sum(link.settings.window for link in self.links if link.bound)


class Temporary(Exception):  # an outcome, not an error to report
    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class Permanent(Exception):
    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class SmsDispatcher(LeaseLoop[SmsToSend]):
    name = "sms"
    idle_poll = IDLE_POLL
    lease_interval = LEASE_INTERVAL

    def __init__(
        self,
        mailbox: Mailbox,
        settings: Settings,
        links: Links,
        rendezvous: Rendezvous,
        *,
        cluster: Cluster | None = None,
    ) -> None:
        # The owner is the node's (the same across restarts): a new process takes back
        # at once what its previous life held when it died (see ``adopt``).
        node = cluster.name if cluster else settings.node.resolved_name
        super().__init__(
            mailbox, f"sms@{node}", [MessageType.SMS], lease_for=LEASE_SECONDS, cluster=cluster
        )
        self.settings = settings
        self.links = links
        self.rendezvous = rendezvous
        self._references: dict[int, int] = {}  # message id -> concatenation reference
        self._quick = 0  # messages on the quick way (see start), not yet recorded

    def reload(self, settings: Settings) -> None:
        self.settings = settings

    def stop(self) -> None:
        super().stop()
        for link in self.links.links:  # what waits for a place in a window goes back
            link.abandon_waiting()

    def room(self) -> int | None:
        if not self.links.any_bound:
            return None
        room = self.links.capacity() * IN_FLIGHT_PER_WINDOW - self.busy
        return min(room, LEASE_BATCH)

    async def take(self, limit: int) -> list[SmsToSend]:
        return await self.mailbox.lease_sms(self.owner, limit=limit, lease_for=self.lease_for)

    def in_flight(self) -> int:
        return self._quick

    def start(self, work: SmsToSend) -> None:
        """The first attempt of a single-part SMS on a bound link (nearly all of them)
        goes the quick way: submitted and recorded with callbacks chained on futures,
        no task; anything else it meets (a refusal, throttling, no answer, the link
        down) it hands to the long way, a task (``_send``), where it is. Everything
        else goes the long way from the start."""
        quick = self._quick_part(work)
        if quick is None:
            self.spawn(self._send(work))
            return
        link, part = quick
        self._quick += 1
        self.rendezvous.submitting(link.name)
        answer = link.submit_nowait(part.build, unless=self._stopped)
        answer.add_done_callback(partial(self._quick_answered, work, link, part))

    def _quick_part(self, job: SmsToSend) -> tuple[SmppLink, PartOut] | None:
        if job.attempts > 1 or not job.to_number or job.text is None:
            return None
        age = self.mailbox.clock.now() - job.creation_time
        if age > timedelta(seconds=self.settings.sms.max_age):
            return None
        link = self.links.route(job.to_number)
        if link is None or not link.bound:
            return None
        try:
            split = gsm.split(job.text, Concatenation(link.settings.concatenation))
        except gsm.EncodingError:
            return None
        if len(split.parts) != 1:
            return None
        source, destination = address_of(job.from_number or ""), address_of(job.to_number)
        [part] = parts_out(split, link.settings, source, destination, reference=0)
        return link, part

    def _quick_answered(
        self, job: SmsToSend, link: SmppLink, part: PartOut, answer: asyncio.Future[Pdu]
    ) -> None:
        if answer.cancelled() or answer.exception() is not None or answer.result().status:
            # Not a plain acceptance: the long way goes on from this answer.
            self.spawn(self._send(job, first=(link, part, answer)))
            self._quick -= 1
            return
        carrier_id = receipts.normalise(
            answer.result().fields.get("message_id", ""), link.id_format
        )
        recorded = self.rendezvous.accept_nowait(PartAccepted(job.id, 0, 1, link.name, carrier_id))
        recorded.add_done_callback(partial(self._quick_recorded, job, link))

    def _quick_recorded(
        self, job: SmsToSend, link: SmppLink, recorded: asyncio.Future[Outcome | None]
    ) -> None:
        self._quick -= 1
        self.rendezvous.answered(link.name)
        if recorded.cancelled():
            return
        error = recorded.exception()
        if isinstance(error, GatewayError):
            # The mailbox failed: the lease runs out and the message comes back.
            log.error("sms.send_failed", message_id=job.id, error=str(error))
        elif error is not None:
            log.error("sms.send_failed", message_id=job.id, error=repr(error), exc_info=error)

    async def adopt(self, held: Sequence[Message]) -> None:
        """SMS this node's previous process (or a node that is gone) held when it
        stopped without letting go (a crash): due again now, each with an event saying
        that its parts not recorded as accepted may have reached the SMSC already and
        will be sent again."""
        for message in held:
            try:
                await self.mailbox.retry_later(
                    message.id, self.owner, delay=0, reason=CRASH_REASON, detail={"crash": True}
                )
            except GatewayError as exc:
                log.warning("sms.take_back_failed", message_id=message.id, error=str(exc))
        log.warning("sms.taken_back", messages=len(held))

    # -- one message ------------------------------------------------------------------
    # (Log lines name the message themselves: binding it to the context for every SMS
    # costs more than the few lines written on the way.)

    async def _send(self, job: SmsToSend, first: Answered | None = None) -> None:
        """One attempt (``first``: going on from the quick way's answer)."""
        try:
            await (self._attempt(job) if first is None else self._go_on(job, first))
        except LeaseLost:
            log.warning("sms.lease_lost", message_id=job.id)
        except GatewayError as exc:
            # The mailbox failed: the lease runs out and the message comes back.
            log.error("sms.send_failed", message_id=job.id, error=str(exc))

    async def _go_on(self, job: SmsToSend, first: Answered) -> None:
        """The quick way's attempt, from the answer that sent it this way."""
        link, part, answer = first
        try:
            await self._submit_part(link, job.id, 0, 1, part, sent=answer)
            results: list[BaseException | None] = [None]
        except (Temporary, Permanent) as exc:
            results = [exc]
        await self._conclude(job, results)

    async def _attempt(self, job: SmsToSend) -> None:
        sms = self.settings.sms
        destination = job.to_number
        if not destination or job.text is None:
            await self._fail(job, "the SMS has no destination or no text", "NoContent")
            return
        age = self.mailbox.clock.now() - job.creation_time
        if age > timedelta(seconds=sms.max_age):
            await self._fail(
                job,
                f"not accepted by the SMSC within {sms.max_age:g} s",
                job.delivery_error_code or "Expired",
            )
            return
        link = self.links.route(destination)
        if link is None:
            await self._fail(job, f"no SMPP link routes {destination}", "NoRoute")
            return
        try:
            split = gsm.split(job.text, Concatenation(link.settings.concatenation))
        except gsm.EncodingError as exc:
            await self._fail(job, str(exc), "TooLong")
            return
        done = await self._done_parts(job)
        reference = self._references.get(job.id)
        if reference is None:
            bits = 16 if link.settings.concatenation == "udh16" else 8
            reference = self._references[job.id] = link.next_reference(bits)
        source = address_of(job.from_number or "")
        outs = parts_out(split, link.settings, source, address_of(destination), reference)
        total = len(outs)
        results: list[BaseException | None]
        if total == 1 and not done:  # no task per part
            try:
                await self._submit_part(link, job.id, 0, 1, outs[0])
                results = [None]
            except (Temporary, Permanent) as exc:
                results = [exc]
        else:
            results = await asyncio.gather(
                *(
                    self._submit_part(link, job.id, index, total, part)
                    for index, part in enumerate(outs)
                    if index not in done
                ),
                return_exceptions=True,
            )
        await self._conclude(job, results)

    async def _conclude(self, job: SmsToSend, results: Sequence[BaseException | None]) -> None:
        """After the parts of an attempt: done, or back to the queue, or failed."""
        sms = self.settings.sms
        permanent = [r for r in results if isinstance(r, Permanent)]
        temporary = [r for r in results if isinstance(r, Temporary)]
        other = [
            r
            for r in results
            if isinstance(r, BaseException) and not isinstance(r, Temporary | Permanent)
        ]
        if other:
            raise other[0]
        if permanent or not temporary:
            self._references.pop(job.id, None)
            return  # Sent, or SendingFailed through the ledger
        first = temporary[0]
        if job.attempts >= sms.max_attempts:
            self._references.pop(job.id, None)
            await self._fail(
                job, f"gave up after {job.attempts} attempts: {first.reason}", first.code
            )
            return
        delay = backoff(sms.retry_delay, job.attempts, cap=MAX_RETRY_DELAY, jitter=0.1)
        await self.mailbox.retry_later(
            job.id, self.owner, delay=delay, reason=first.reason, detail={"code": first.code}
        )

    async def _done_parts(self, job: SmsToSend) -> set[int]:
        """The parts an earlier attempt had accepted or refused (a first attempt has
        none)."""
        if job.attempts <= 1:
            return set()
        parts = await self.mailbox.parts(job.id)
        return {p.index for p in parts if p.status is not PartStatus.QUEUED}

    async def _submit_part(
        self,
        link: SmppLink,
        message_id: int,
        index: int,
        total: int,
        part: PartOut,
        *,
        sent: asyncio.Future[Pdu] | None = None,
    ) -> None:
        """Submit one part (``sent``: submitted already, by the quick way, and counted
        in the rendezvous); record what the SMSC said. Temporary or Permanent when it
        was not accepted."""
        answer = None
        if sent is None:
            self.rendezvous.submitting(link.name)
        try:
            for _ in range(THROTTLE_RETRIES):
                try:
                    if sent is not None:
                        answer, sent = await sent, None
                    else:
                        answer = await link.submit(part.build, unless=self._stopped)
                except LinkDown as exc:
                    raise Temporary(str(exc), "LinkDown") from None
                if answer.status not in (Status.RTHROTTLED, Status.RMSGQFUL):
                    break
            assert answer is not None
            if answer.status == Status.ROK:
                carrier_id = receipts.normalise(answer.fields.get("message_id", ""), link.id_format)
                await self.rendezvous.accept(
                    PartAccepted(message_id, index, total, link.name, carrier_id)
                )
                return
        finally:
            self.rendezvous.answered(link.name)
        name = pdu.status_name(answer.status)
        if answer.status in TEMPORARY:
            raise Temporary(f"the SMSC answered part {index + 1} of {total} with {name}", name)
        reason = f"the SMSC refused part {index + 1} of {total}: {name}"
        await self.mailbox.record_refusal(PartRefused(message_id, index, total, name, reason))
        raise Permanent(reason, name)

    async def _fail(self, job: SmsToSend, reason: str, code: str) -> None:
        await self.mailbox.transition(
            job.id,
            MessageStatus.SENDING_FAILED,
            reason=reason,
            lease_owner=self.owner,
            delivery_error_code=code[:32],
        )
        log.warning("sms.sending_failed", message_id=job.id, reason=reason, code=code)
