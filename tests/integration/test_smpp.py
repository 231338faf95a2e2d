"""The SMS half end to end over TCP: the mailbox's Queued SMS, our ESME links, the SMSC
simulator (gatewayd/sms/simulator.py) on a loopback port, receipts, inbound SMS; one
scenario per failure mode."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gatewayd.clock import SystemClock
from gatewayd.config.settings import (
    HostPort,
    MailboxSettings,
    Settings,
    SmppLinkSettings,
    SmsSettings,
    User,
)
from gatewayd.mailbox import Mailbox, Message, MessageQuery, PartAccepted, ReceiptIn
from gatewayd.model import Direction, MessageStatus, PartStatus
from gatewayd.sms import pdu, receipts
from gatewayd.sms.link import LinkState
from gatewayd.sms.pdu import Command, Status
from gatewayd.sms.service import SmsService
from gatewayd.sms.simulator import SimSettings, Smsc
from tests.conftest import ACCOUNT, EXTENSION, OUR_NUMBER, sms

FINAL = {MessageStatus.DELIVERED, MessageStatus.DELIVERY_FAILED, MessageStatus.SENDING_FAILED}
USER = User(("alice@example.com",), ACCOUNT, EXTENSION, "101", "Alice", sms_numbers=(OUR_NUMBER,))


@pytest.fixture
def clock() -> SystemClock:
    """Real time here: retries are due after real delays."""
    return SystemClock()


@pytest.fixture
async def box(tmp_path: Path, clock: SystemClock) -> AsyncIterator[Mailbox]:
    """A mailbox on SQLite only, for the scenarios where the database does not matter
    (the ledger's SQL runs on both in the tests that take ``mailbox``)."""
    opened = await Mailbox.open(MailboxSettings(data_dir=tmp_path / "data"), clock=clock)
    try:
        yield opened
    finally:
        await opened.close()


def link_settings(port: int, **more: Any) -> SmppLinkSettings:
    values: dict[str, Any] = {
        "address": HostPort("127.0.0.1", port),
        "window": 10,
        "tps": 0,
        "response_timeout": 2.0,
        "reconnect_delay": 0.05,
        "reconnect_delay_max": 0.2,
        "enquire_link_interval": 5.0,
    }
    values.update(more)
    return SmppLinkSettings(**values)


@asynccontextmanager
async def running(
    mailbox: Mailbox, *links: SmppLinkSettings, **sms_settings: Any
) -> AsyncIterator[SmsService]:
    defaults: dict[str, Any] = {"retry_delay": 0.05, "reassembly_timeout": 1.0}
    defaults.update(sms_settings)
    settings = Settings(sms=SmsSettings(links=links, **defaults), users=(USER,))
    service = SmsService(mailbox, settings)
    service.start()
    task = asyncio.create_task(service.dispatcher.run())
    try:
        yield service
    finally:
        service.dispatcher.stop()
        await task
        await service.close()


@asynccontextmanager
async def simulator(**options: Any) -> AsyncIterator[tuple[Smsc, int]]:
    smsc = Smsc(SimSettings(receipt_delay=0.02, **options))
    port = await smsc.start()
    try:
        yield smsc, port
    finally:
        await smsc.close()


async def wait_until(check: Callable[[], Any], within: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.02)


async def finals(
    mailbox: Mailbox, ids: list[int], within: float = 10.0, done: set[MessageStatus] = FINAL
) -> list[Message]:
    async def check() -> list[Message] | None:
        messages = [await mailbox.get(i) for i in ids]
        return messages if all(m.message_status in done for m in messages) else None

    return await wait_until(check, within)  # type: ignore[no-any-return]


async def queue(mailbox: Mailbox, *destinations: str, text: str = "Hello") -> list[int]:
    created = [await mailbox.create(sms(to=d, text=text)) for d in destinations]
    return [m.id for m in created]


# -- the happy path ---------------------------------------------------------------------


async def test_sms_are_delivered_with_their_receipts(mailbox: Mailbox) -> None:
    async with simulator() as (smsc, port), running(mailbox, link_settings(port)):
        long_text = "Grüße aus Köln! " * 20  # GSM-7, three parts
        emoji = "😀 Ωμέγα " * 12  # UCS-2, two parts
        ids = (
            await queue(mailbox, "+4915112340000")
            + await queue(mailbox, "+4915112340011", text=long_text)
            + await queue(mailbox, "+4915112340012", text=emoji)
        )
        messages = await finals(mailbox, ids)
    assert [m.message_status for m in messages] == [MessageStatus.DELIVERED] * 3
    for message in messages:
        assert message.attempts == 1
        assert message.sms_delivery_time is not None
        parts = await mailbox.parts(message.id)
        assert all(p.status is PartStatus.DELIVERED and p.carrier_id for p in parts)
    assert [len(await mailbox.parts(i)) for i in ids] == [1, 3, 2]
    # what reached the SMSC: UDH-concatenated parts with one reference per message
    submitted = smsc.submitted
    assert len(submitted) == 6
    udh = [s.fields["short_message"][:6] for s in submitted if s.fields["esm_class"] == 0x40]
    assert len(udh) == 5
    by_reference = Counter(u[3] for u in udh)  # one reference per message: 3 parts and 2
    assert sorted(by_reference.values()) == [2, 3]
    first = submitted[0].fields
    assert (first["source_addr"], first["source_addr_ton"], first["source_addr_npi"]) == (
        OUR_NUMBER[1:],
        1,
        1,
    )
    assert first["registered_delivery"] == 1
    assert sorted(s.fields["data_coding"] for s in submitted) == [0, 0, 0, 0, 8, 8]
    events = [e.reason for e in await mailbox.events(ids[1])]
    assert "accepted by the SMSC" in events
    assert "receipt: Delivered" in events


@pytest.mark.parametrize("concatenation", ["udh16", "sar", "payload"])
async def test_other_concatenations(box: Mailbox, concatenation: str) -> None:
    text = "abcdefghij" * 40
    async with (
        simulator() as (smsc, port),
        running(box, link_settings(port, concatenation=concatenation)),
    ):
        [message] = await finals(box, await queue(box, "+4915112340000", text=text))
    assert message.message_status is MessageStatus.DELIVERED
    sent = smsc.submitted
    if concatenation == "payload":
        assert len(sent) == 1
        assert sent[0].tlvs[pdu.Tag.MESSAGE_PAYLOAD] == text.encode()
    elif concatenation == "sar":
        assert [s.tlv_int(pdu.Tag.SAR_SEGMENT_SEQNUM) for s in sent] == [1, 2, 3]
        assert {s.tlv_int(pdu.Tag.SAR_MSG_REF_NUM) for s in sent} == {
            sent[0].tlv_int(pdu.Tag.SAR_MSG_REF_NUM)
        }
    else:
        assert [s.fields["short_message"][:3] for s in sent] == [b"\x06\x08\x04"] * 3


# -- receipts ---------------------------------------------------------------------------


async def test_every_receipt_outcome(mailbox: Mailbox) -> None:
    async with simulator() as (_smsc, port), running(mailbox, link_settings(port)):
        ids = await queue(mailbox, *(f"+491511234{n:04d}" for n in (1, 2, 3, 4, 7)))
        messages = await finals(mailbox, ids)
        sent_only = await queue(mailbox, "+4915112340005", "+4915112340006")  # no receipt; ACCEPTD
        kept = await finals(mailbox, sent_only, done={MessageStatus.SENT})
        await asyncio.sleep(0.3)
    by_number = {m.to[0].phone_number[-4:]: m for m in messages}
    assert by_number["0001"].message_status is MessageStatus.DELIVERY_FAILED
    assert by_number["0001"].delivery_error_code == "UNDELIV:001"
    assert by_number["0002"].delivery_error_code == "EXPIRED"
    assert by_number["0003"].delivery_error_code == "REJECTD:003"
    assert by_number["0004"].message_status is MessageStatus.DELIVERED
    assert by_number["0007"].message_status is MessageStatus.DELIVERED  # receipt before resp
    intermediate = [e for e in await mailbox.events(by_number["0004"].id) if e.kind == "receipt"]
    assert intermediate[0].reason == "intermediate receipt"
    assert [(await mailbox.get(i)).message_status for i in sent_only] == [MessageStatus.SENT] * 2
    assert [m.message_status for m in kept] == [MessageStatus.SENT] * 2


async def test_acceptd_may_count_as_delivered(box: Mailbox) -> None:
    async with (
        simulator() as (_, port),
        running(box, link_settings(port), accepted_is_delivered=True),
    ):
        [message] = await finals(box, await queue(box, "+4915112340006"))
    assert message.message_status is MessageStatus.DELIVERED


@pytest.mark.parametrize(
    ("options", "id_format"),
    [
        ({"receipt_layout": "text"}, "auto"),
        ({"receipt_layout": "tlv"}, "auto"),
        ({"receipt_layout": "payload"}, "auto"),
        ({"receipt_layout": "odd"}, "auto"),
        ({"receipt_id_format": "decimal"}, "auto"),
        ({"receipt_id_format": "padded"}, "auto"),
        ({"id_format": "decimal", "receipt_id_format": "hex"}, "auto"),
        ({"receipt_id_format": "padded"}, "hex"),
    ],
)
async def test_receipts_in_every_layout_and_id_form(
    box: Mailbox, options: dict[str, Any], id_format: str
) -> None:
    async with (
        simulator(**options) as (_, port),
        running(box, link_settings(port, smsc_id_format=id_format)),
    ):
        messages = await finals(box, await queue(box, "+4915112340000", "+4915112340001"))
    assert [m.message_status for m in messages] == [
        MessageStatus.DELIVERED,
        MessageStatus.DELIVERY_FAILED,
    ]


async def test_a_receipt_for_nothing_we_know_is_acknowledged(box: Mailbox) -> None:
    async with simulator() as (smsc, port), running(box, link_settings(port)) as service:
        await service.links.links[0].wait_bound(5)
        [connection] = smsc.connections
        text = b"id:DEADBEEF sub:001 dlvrd:001 stat:DELIVRD err:000"
        answer = await connection.request(
            lambda s: pdu.encode(Command.DELIVER_SM, s, {"esm_class": 4, "short_message": text})
        )
    assert (answer.command, answer.status) == (Command.DELIVER_SM_RESP, Status.ROK)


async def test_a_receipt_read_two_ways_waits_for_its_own_part(mailbox: Mailbox) -> None:
    """In ``auto``, a receipt id 3990 may be decimal for the hex F96. When F96's part is
    long done and 3990's answer is still being recorded, the receipt is not spent on F96:
    it is unknown for now (the link waits) and lands on its own part after."""
    earlier, later = await queue(mailbox, "+4915112345555", "+4915112345556")
    ids = tuple(receipts.candidates("3990", receipts.IdFormat.AUTO))
    assert ids[:2] == ("3990", "F96")
    await mailbox.record_acceptance(PartAccepted(earlier, 0, 1, "smsc", "F96"))
    await mailbox.record_receipt(ReceiptIn("smsc", ("F96",), PartStatus.DELIVERED))
    assert await mailbox.record_receipt(ReceiptIn("smsc", ids, PartStatus.DELIVERED)) is None
    await mailbox.record_acceptance(PartAccepted(later, 0, 1, "smsc", "3990"))
    outcome = await mailbox.record_receipt(ReceiptIn("smsc", ids, PartStatus.DELIVERED))
    assert outcome is not None
    assert outcome.message_id == later
    assert [(await mailbox.get(i)).message_status for i in (earlier, later)] == [
        MessageStatus.DELIVERED,
        MessageStatus.DELIVERED,
    ]


# -- refusals and retries -----------------------------------------------------------


async def test_a_permanent_refusal_fails_at_once(box: Mailbox) -> None:
    async with simulator() as (_, port), running(box, link_settings(port)):
        [message] = await finals(box, await queue(box, "+4915112340009"))
    assert message.message_status is MessageStatus.SENDING_FAILED
    assert message.delivery_error_code == "ESME_RINVDSTADR"
    assert message.attempts == 1
    assert message.failure_reason == "the SMSC refused part 1 of 1: ESME_RINVDSTADR"


async def test_a_system_error_is_retried(mailbox: Mailbox) -> None:
    async with simulator() as (_, port), running(mailbox, link_settings(port)):
        [message] = await finals(mailbox, await queue(mailbox, "+4915112340008"))
    assert message.message_status is MessageStatus.DELIVERED
    assert message.attempts == 2
    assert message.to_json()["smsSendingAttemptsCount"] == 2
    retries = [e for e in await mailbox.events(message.id) if e.kind == "retry"]
    assert "ESME_RSYSERR" in retries[0].reason


async def test_throttling_slows_the_link_without_costing_attempts(box: Mailbox) -> None:
    async with simulator(throttle_every=3) as (smsc, port), running(box, link_settings(port)):
        ids = await queue(box, *[f"+49151123400{n:02d}" for n in range(20, 29)])
        messages = await finals(box, ids, within=30)
    assert all(m.message_status is MessageStatus.DELIVERED for m in messages)
    assert all(m.attempts == 1 for m in messages)
    assert smsc.stats.submits > 9  # the throttled ones went again


async def test_max_attempts_then_sending_failed(box: Mailbox) -> None:
    async with (
        simulator(silent_every=1) as (_, port),
        running(box, link_settings(port, response_timeout=0.2), max_attempts=2),
    ):
        [message] = await finals(box, await queue(box, "+4915112340000"))
    assert message.message_status is MessageStatus.SENDING_FAILED
    assert message.attempts == 2
    assert message.failure_reason is not None
    assert message.failure_reason.startswith(
        "gave up after 2 attempts: link simulator: no response"
    )


async def test_too_old_is_sending_failed(box: Mailbox) -> None:
    [message_id] = await queue(box, "+4915112340000")
    await asyncio.sleep(0.3)
    async with simulator() as (_, port), running(box, link_settings(port), max_age=0.2):
        [message] = await finals(box, [message_id])
    assert message.message_status is MessageStatus.SENDING_FAILED
    assert message.failure_reason == "not accepted by the SMSC within 0.2 s"


async def test_the_window_bounds_what_is_outstanding(box: Mailbox) -> None:
    async with (
        simulator(silent_every=1) as (smsc, port),
        running(box, link_settings(port, window=4, response_timeout=2)),
    ):
        await queue(box, *[f"+49151123400{n:02d}" for n in range(30, 50)])
        await wait_until(lambda: asyncio.sleep(0.3, smsc.stats.submits >= 4))
        await asyncio.sleep(0.5)
        assert smsc.stats.submits == 4  # no answers: nothing more leaves


# -- the session ----------------------------------------------------------------------


async def test_a_dropped_connection_is_made_again(box: Mailbox) -> None:
    async with simulator(disconnect_after=3) as (smsc, port), running(box, link_settings(port)):
        ids = await queue(box, *[f"+49151123400{n:02d}" for n in range(50, 60)])
        messages = await finals(box, ids, within=20)
    assert all(m.message_status is MessageStatus.DELIVERED for m in messages)
    assert smsc.stats.binds >= 2


async def test_an_smsc_unbind_is_answered_and_the_link_comes_back(box: Mailbox) -> None:
    async with simulator(unbind_after=2) as (smsc, port), running(box, link_settings(port)):
        ids = await queue(box, *[f"+49151123400{n:02d}" for n in range(60, 66)])
        messages = await finals(box, ids, within=20)
    assert all(m.message_status is MessageStatus.DELIVERED for m in messages)
    assert smsc.stats.statuses["unbind_resp"] >= 1
    assert smsc.stats.binds >= 2


async def test_what_an_smsc_sends_is_answered(box: Mailbox) -> None:
    async with simulator() as (smsc, port), running(box, link_settings(port)) as service:
        await service.links.links[0].wait_bound(5)
        [connection] = smsc.connections
        enquire = await connection.request(lambda s: pdu.frame(Command.ENQUIRE_LINK, 0, s))
        cancel = await connection.request(lambda s: pdu.frame(Command.CANCEL_SM, 0, s, b"\x00"))
        broken = await connection.request(lambda s: pdu.frame(Command.DELIVER_SM, 0, s, b"\x01"))
    assert (enquire.command, enquire.status) == (Command.ENQUIRE_LINK_RESP, 0)
    assert (cancel.command, cancel.status) == (Command.GENERIC_NACK, Status.RINVCMDID)
    assert broken.command == Command.GENERIC_NACK


async def test_an_unanswered_enquire_link_reconnects(box: Mailbox) -> None:
    async with (
        simulator(answer_enquire_link=False) as (smsc, port),
        running(box, link_settings(port, enquire_link_interval=0.1, response_timeout=0.2)),
    ):
        await wait_until(lambda: asyncio.sleep(0.05, smsc.stats.binds >= 2))


async def test_bad_credentials_stop_that_link_and_others_work(box: Mailbox) -> None:
    async with simulator() as (smsc, port):
        good = link_settings(port, name="good", prefixes=("+49",), default=False)
        bad = link_settings(port, name="bad", password="wrong", default=True)
        async with running(box, good, bad) as service:
            links = {link.name: link for link in service.links.links}
            await wait_until(lambda: asyncio.sleep(0.02, links["bad"].state is LinkState.STOPPED))
            assert links["bad"].error is not None
            assert "ESME_RINVPASWD" in links["bad"].error
            german = await queue(box, "+4915112340000")
            [delivered] = await finals(box, german)
            assert delivered.message_status is MessageStatus.DELIVERED
            french = await queue(box, "+33612345678")
            await asyncio.sleep(0.3)
            assert (await box.get(french[0])).message_status is MessageStatus.QUEUED
    assert smsc.stats.binds == 1


async def test_transmitter_and_receiver_binds(box: Mailbox) -> None:
    async with (
        simulator() as (smsc, port),
        running(box, link_settings(port, bind="transmitter_receiver")),
    ):
        [message] = await finals(box, await queue(box, "+4915112340000"))
    assert message.message_status is MessageStatus.DELIVERED
    assert smsc.stats.statuses["bind_transmitter"] == 1
    assert smsc.stats.statuses["bind_receiver"] == 1


# -- inbound SMS ------------------------------------------------------------------------


async def inbound(box: Mailbox) -> list[Message]:
    page = await box.find(MessageQuery(extension_id=EXTENSION, direction=(Direction.INBOUND,)))
    return list(page.records)


@pytest.mark.parametrize(
    ("text", "options"),
    [
        ("Hello back", {}),
        ("Grüße, Ωμέγα 😀", {}),
        ("Grüße aus Köln", {"data_coding": 3}),
        ("Long answer. " * 30, {"concatenation": "udh8"}),
        ("Long answer. " * 30, {"concatenation": "udh16", "parts_order": [2, 0, 1]}),
        ("Long answer. " * 30, {"concatenation": "sar", "parts_order": [1, 0, 2, 1]}),
        ("Long answer. " * 30, {"concatenation": "payload"}),
    ],
)
async def test_inbound_sms_are_stored_whole(
    box: Mailbox, text: str, options: dict[str, Any]
) -> None:
    [sent] = await queue(box, "+4917612345678")
    async with simulator() as (smsc, port), running(box, link_settings(port)):
        await finals(box, [sent])
        statuses = await smsc.send_mo("+4917612345678", OUR_NUMBER, text, **options)
        assert set(statuses) == {Status.ROK}
        [received] = await wait_until(lambda: inbound(box))
    assert received.message_status is MessageStatus.RECEIVED
    assert received.subject == text
    assert received.from_.phone_number == "+4917612345678"
    assert received.origin == "smpp:simulator"
    outbound = await box.get(sent)
    assert received.conversation_id == outbound.conversation_id  # threaded with our SMS


async def test_missing_parts_are_stored_after_the_wait(mailbox: Mailbox) -> None:
    async with (
        simulator() as (smsc, port),
        running(mailbox, link_settings(port), reassembly_timeout=0.5) as service,
    ):
        await service.links.links[0].wait_bound(5)
        await smsc.send_mo("+4917612345678", OUR_NUMBER, "Part text. " * 40, skip_parts=(1,))
        assert await inbound(mailbox) == []
        assert await service.inbound.sweep() == 0  # not yet: the wait is half a second
        await asyncio.sleep(0.6)
        assert await service.inbound.sweep() == 1
    [received] = await inbound(mailbox)
    assert received.subject is not None
    assert "[part 2 of 3 missing]" in received.subject
    notes = [e.reason for e in await mailbox.events(received.id) if e.kind == "note"]
    assert notes == ["1 of 3 parts never arrived"]


@pytest.mark.parametrize(("policy", "status"), [("ack", Status.ROK), ("refuse", Status.RX_R_APPN)])
async def test_sms_for_a_number_nobody_owns(box: Mailbox, policy: str, status: int) -> None:
    async with (
        simulator() as (smsc, port),
        running(box, link_settings(port), unknown_destination=policy) as service,
    ):
        await service.links.links[0].wait_bound(5)
        assert await smsc.send_mo("+4917612345678", "+4930999999", "Who?") == [status]
    assert await inbound(box) == []


async def test_when_the_mailbox_fails_the_smsc_is_told_to_retry(box: Mailbox) -> None:
    async with simulator() as (smsc, port), running(box, link_settings(port)) as service:
        await service.links.links[0].wait_bound(5)
        async with box._db.write() as conn:  # the fragment store is gone: writes fail
            await conn.execute(sa.text("ALTER TABLE sms_fragments RENAME TO gone"))
        statuses = await smsc.send_mo("+4917612345678", OUR_NUMBER, "Part text. " * 40)
    assert statuses == [Status.RX_T_APPN] * 3
