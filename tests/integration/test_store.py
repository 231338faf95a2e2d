"""The mailbox on a real SQLite file: creation with attachment files, the status
machine through the store, SMS parts and receipts, read state."""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import hashlib
import itertools
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from gatewayd.clock import ManualClock
from gatewayd.config.settings import SQLITE_FILE_NAME, MailboxSettings
from gatewayd.errors import InvalidTransition, MessageNotFound, StoreError
from gatewayd.mailbox import (
    Mailbox,
    NewAttachment,
    Outcome,
    PartAccepted,
    PartRefused,
    Party,
    ReceiptIn,
    _commit,
    _driver,
    _ledger,
    _queue,
)
from gatewayd.mailbox._schema import message_events
from gatewayd.model import (
    AttachmentType,
    Direction,
    FaxErrorCode,
    FaxResolution,
    MessageStatus,
    MessageType,
    PartStatus,
    ReadStatus,
)
from tests.conftest import ACCOUNT, EXTENSION, OTHER_EXTENSION, fax, pager, sms

T = TypeVar("T")

S = MessageStatus


async def test_a_new_message_has_every_field_and_its_attachment_on_disk(mailbox: Mailbox) -> None:
    document = b"%PDF-1.7 " + bytes(range(256)) * 100
    created = await mailbox.create(
        fax(
            document=document,
            fax_resolution=FaxResolution.HIGH,
            cover_index=0,
            sender_email="alice@example.com",
        )
    )
    assert 2**40 <= created.id < 2**53
    assert created.message_status is S.QUEUED
    assert created.read_status is ReadStatus.UNREAD
    assert created.attempts == 0
    assert created.next_attempt_at == created.creation_time
    (attachment,) = created.attachments
    assert attachment.size == len(document)
    assert attachment.sha256 == hashlib.sha256(document).hexdigest()
    _, content = await mailbox.attachment(created.id, attachment.id)
    assert await content.read_all() == document
    stored = await mailbox.get(created.id)
    assert stored == created
    data = stored.to_json("https://gw.example")
    assert (
        data["uri"]
        == f"https://gw.example/restapi/v1.0/account/{ACCOUNT}/extension/{EXTENSION}/message-store/{created.id}"
    )
    assert data["type"] == "Fax"
    assert data["direction"] == "Outbound"
    assert data["messageStatus"] == "Queued"
    assert data["availability"] == "Alive"
    assert data["faxResolution"] == "High"
    assert data["to"] == [{"phoneNumber": "+4940123456", "messageStatus": "Queued"}]
    assert data["attachments"][0]["uri"].endswith(f"/content/{attachment.id}")
    assert data["attachments"][0]["fileName"] == "contract.pdf"
    assert data["creationTime"].endswith("Z")


async def test_ids_are_random_not_a_counter(mailbox: Mailbox) -> None:
    created = await mailbox.create_many([sms() for _ in range(20)])
    ids = [m.id for m in created]
    gaps = {b - a for a, b in itertools.pairwise(ids)}
    assert len(set(ids)) == 20
    assert len(gaps) > 15


async def test_identical_bytes_are_stored_once(mailbox: Mailbox) -> None:
    first, second = await mailbox.create_many([fax(), fax()])
    assert first.attachments[0].sha256 == second.attachments[0].sha256
    assert first.attachments[0].id != second.attachments[0].id


async def test_an_attachment_can_come_from_a_file(mailbox: Mailbox, tmp_path: Path) -> None:
    source = tmp_path / "big.pdf"
    source.write_bytes(b"%PDF" + b"x" * 3_000_000)
    from_file = NewAttachment(AttachmentType.SOURCE_DOCUMENT, "application/pdf", path=source)
    created = await mailbox.create(dataclasses.replace(fax(), attachments=(from_file,)))
    _, content = await mailbox.attachment(created.id, created.attachments[0].id)
    assert content.size == source.stat().st_size
    assert await content.read_all() == source.read_bytes()
    assert b"".join([c async for c in content.chunks(1_000_000, 1_000_009)]) == b"x" * 10
    across = b"".join([c async for c in content.chunks(1_048_570, 1_048_580)])  # 1 MiB chunks
    assert across == source.read_bytes()[1_048_570:1_048_581]


async def test_sms_threads_by_the_two_numbers(mailbox: Mailbox) -> None:
    out = await mailbox.create(sms("+4915100000001"))
    reply = await mailbox.create(sms("+4915100000001", direction=Direction.INBOUND))
    other = await mailbox.create(sms("+4915100000002"))
    assert reply.message_status is S.RECEIVED
    assert out.conversation_id == reply.conversation_id
    assert other.conversation_id != out.conversation_id
    assert out.to_json()["conversation"]["id"] == str(out.conversation_id)


async def test_texts_are_stored_without_a_task_as_create_many_stores_them(
    mailbox: Mailbox,
) -> None:
    """create_texts (the API's short way): the same records and rows as create_many,
    their creation told once committed, even to a caller who gave up the future."""
    told: list[int] = []
    mailbox.watch_status(lambda entered: told.append(entered.message_id))
    made = await mailbox.create_texts([sms("+4915100000001"), pager()])
    assert [m.message_status for m in made] == [S.QUEUED, S.SENT]
    assert [await mailbox.get(m.id) for m in made] == made
    assert told == [m.id for m in made]
    given_up = mailbox.create_texts([sms("+4915100000002")])
    given_up.cancel()
    for _ in range(500):  # written and told all the same
        if len(told) == 3:
            break
        await asyncio.sleep(0.01)
    assert len(told) == 3
    assert (await mailbox.get(told[2])).to[0].phone_number == "+4915100000002"
    assert await mailbox.create_texts([]) == []
    with pytest.raises(ValueError, match="no attachment bytes"):
        mailbox.create_texts([fax()])
    with pytest.raises(StoreError):  # refused at once, as create_many refuses it
        mailbox.create_texts([dataclasses.replace(sms(), type=MessageType.VOICEMAIL)])


async def test_a_text_that_cannot_be_written_fails_its_future(
    mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every id drawn collides with a stored one: the group commit gives up on it, and
    create_texts's future has the StoreError (no caller left waiting)."""
    from gatewayd.mailbox import _create

    first = await mailbox.create(sms())
    monkeypatch.setattr(_create, "new_ids", lambda count: [first.id] * count)
    with pytest.raises(StoreError, match="could not store"):
        await asyncio.wait_for(mailbox.create_texts([sms()]), 10)


async def test_a_pager_thread_is_named_after_its_first_message(mailbox: Mailbox) -> None:
    first = await mailbox.create(pager())
    assert first.message_status is S.SENT
    assert first.conversation_id == first.id


async def test_every_creation_and_transition_has_its_event(mailbox: Mailbox) -> None:
    created = await mailbox.create(fax())
    (_leased,) = await mailbox.lease("w1", types=[MessageType.FAX], limit=5)
    done = await mailbox.transition(
        created.id,
        S.SENT,
        reason="sent by the spool carrier",
        lease_owner="w1",
        fax_page_count=3,
        detail={"duration": 42},
    )
    assert done.message_status is S.SENT
    assert done.fax_page_count == 3
    assert done.lease_owner is None
    assert done.next_attempt_at is None
    events = await mailbox.events(created.id)
    assert [(e.kind, e.from_value, e.to_value) for e in events] == [
        ("status", None, "Queued"),
        ("status", "Queued", "Sent"),
    ]
    assert events[1].reason == "sent by the spool carrier"
    assert events[1].detail == {"duration": 42}


FAX_CHANGES = [(a, b) for a in S for b in S]


@pytest.mark.parametrize(
    ("current", "wanted"),
    [
        (S.QUEUED, S.SENT),
        (S.QUEUED, S.SENDING_FAILED),
        (S.QUEUED, S.DELIVERED),
        (S.QUEUED, S.QUEUED),
        (S.SENT, S.SENDING_FAILED),
        (S.SENT, S.QUEUED),
        (S.SENDING_FAILED, S.SENT),
        (S.SENDING_FAILED, S.QUEUED),
    ],
)
async def test_fax_transitions_through_the_store(
    mailbox: Mailbox, current: MessageStatus, wanted: MessageStatus
) -> None:
    message = await mailbox.create(fax())
    if current is not S.QUEUED:
        message = await mailbox.transition(message.id, current, reason="setup")
    allowed = (current, wanted) in {(S.QUEUED, S.SENT), (S.QUEUED, S.SENDING_FAILED)}
    before = len(await mailbox.events(message.id))
    if allowed:
        after = await mailbox.transition(
            message.id, wanted, reason="test", fax_error_code=FaxErrorCode.LINE_BUSY
        )
        assert after.message_status is wanted
        assert len(await mailbox.events(message.id)) == before + 1
    else:
        with pytest.raises(InvalidTransition):
            await mailbox.transition(message.id, wanted, reason="test")
        unchanged = await mailbox.get(message.id)
        assert unchanged.message_status is current
        assert len(await mailbox.events(message.id)) == before


async def test_a_failure_keeps_its_reason_and_code(mailbox: Mailbox) -> None:
    message = await mailbox.create(fax())
    failed = await mailbox.transition(
        message.id,
        S.SENDING_FAILED,
        reason="the line was busy 3 times",
        fax_error_code=FaxErrorCode.LINE_BUSY,
    )
    assert failed.failure_reason == "the line was busy 3 times"
    assert failed.fax_error_code == "LineBusy"
    assert failed.to_json()["to"][0]["faxErrorCode"] == "LineBusy"


async def test_an_sms_moves_through_its_parts_only(mailbox: Mailbox) -> None:
    message = await mailbox.create(sms())
    with pytest.raises(InvalidTransition, match="through its parts"):
        await mailbox.transition(message.id, S.SENT, reason="no")


async def accepted(
    mailbox: Mailbox, message_id: int, index: int, parts: int, carrier: str
) -> Outcome:
    return await mailbox.record_acceptance(PartAccepted(message_id, index, parts, "sim", carrier))


async def receipt(
    mailbox: Mailbox, carrier: str, outcome: PartStatus | None, **fields: Any
) -> Outcome | None:
    return await mailbox.record_receipt(ReceiptIn("sim", (carrier,), outcome, **fields))


async def sent_sms(mailbox: Mailbox, parts: int) -> int:
    message = await mailbox.create(sms())
    for index in range(parts):
        await accepted(mailbox, message.id, index, parts, f"{message.id}-{index}")
    return message.id


async def test_multipart_sms_is_sent_when_every_part_is_accepted(mailbox: Mailbox) -> None:
    message = await mailbox.create(sms())
    for index in range(3):
        after = await accepted(mailbox, message.id, index, 3, f"id{index}")
        assert after.status is (S.SENT if index == 2 else S.QUEUED)
    again = await accepted(mailbox, message.id, 0, 3, "id0")  # an answer we already have
    assert (again.status, again.changed) == (S.SENT, False)
    parts = await mailbox.parts(message.id)
    assert [(p.status, p.carrier_id) for p in parts] == [
        (PartStatus.SENT, "id0"),
        (PartStatus.SENT, "id1"),
        (PartStatus.SENT, "id2"),
    ]
    with pytest.raises(StoreError, match="has 3 parts, not 2"):
        await accepted(mailbox, message.id, 0, 2, "id0")


async def test_delivered_when_every_part_is_delivered(mailbox: Mailbox, clock: ManualClock) -> None:
    message_id = await sent_sms(mailbox, 2)
    done = clock.now() - timedelta(seconds=5)
    after = await receipt(mailbox, f"{message_id}-0", PartStatus.DELIVERED, done_at=done)
    assert after is not None
    assert after.status is S.SENT
    after = await receipt(mailbox, f"{message_id}-1", PartStatus.DELIVERED, done_at=done)
    assert after is not None
    assert after.status is S.DELIVERED
    assert (await mailbox.get(message_id)).sms_delivery_time == done


async def test_delivery_failed_as_soon_as_one_part_fails(mailbox: Mailbox) -> None:
    message_id = await sent_sms(mailbox, 3)
    after = await receipt(
        mailbox, f"{message_id}-1", PartStatus.DELIVERY_FAILED, error_code="SMS-CAR-411"
    )
    assert after is not None
    assert after.status is S.DELIVERY_FAILED
    assert (await mailbox.get(message_id)).delivery_error_code == "SMS-CAR-411"


async def test_a_late_or_duplicate_receipt_is_an_event_never_a_regress(mailbox: Mailbox) -> None:
    message_id = await sent_sms(mailbox, 1)
    await receipt(mailbox, f"{message_id}-0", PartStatus.DELIVERED)
    for outcome in (PartStatus.DELIVERED, PartStatus.DELIVERY_FAILED):
        after = await receipt(mailbox, f"{message_id}-0", outcome)
        assert after is not None
        assert (after.status, after.changed) == (S.DELIVERED, False)
    kinds = [(e.kind, e.reason) for e in await mailbox.events(message_id)]
    assert ("receipt", "receipt Delivered for part 0 already Delivered") in kinds
    assert ("receipt", "receipt DeliveryFailed for part 0 already Delivered") in kinds


async def test_an_intermediate_receipt_is_only_recorded(mailbox: Mailbox) -> None:
    message_id = await sent_sms(mailbox, 1)
    after = await receipt(mailbox, f"{message_id}-0", None, detail={"stat": "ENROUTE"})
    assert after is not None
    assert after.status is S.SENT
    last = (await mailbox.events(message_id))[-1]
    assert (last.kind, last.reason, last.detail["stat"]) == (
        "receipt",
        "intermediate receipt",
        "ENROUTE",
    )  # type: ignore[index]


async def test_a_receipt_for_nothing_we_know(mailbox: Mailbox) -> None:
    await sent_sms(mailbox, 1)
    assert await receipt(mailbox, "no-such-id", PartStatus.DELIVERED) is None
    other_link = ReceiptIn("other-link", ("whatever",), PartStatus.DELIVERED)
    assert await mailbox.record_receipt(other_link) is None


async def test_the_timeline_of_an_sms(mailbox: Mailbox) -> None:
    """One part: the status events carry the part's details, no part event repeats
    them; several parts: the split, and a part event for each part's move."""
    one = await mailbox.create(sms())
    await accepted(mailbox, one.id, 0, 1, "one-0")
    await receipt(mailbox, "one-0", PartStatus.DELIVERED, detail={"stat": "DELIVRD"})
    events = await mailbox.events(one.id)
    assert [(e.kind, e.from_value, e.to_value, e.reason) for e in events] == [
        ("status", None, "Queued", "created"),
        ("status", "Queued", "Sent", "accepted by the SMSC"),
        ("status", "Sent", "Delivered", "receipt: Delivered"),
    ]
    assert events[1].detail == {"part": 0, "link": "sim", "carrier_id": "one-0"}
    assert events[2].detail == {
        "part": 0, "link": "sim", "carrier_id": "one-0", "error_code": None, "stat": "DELIVRD",
    }  # fmt: skip
    two = await mailbox.create(sms())
    for index in range(2):
        await accepted(mailbox, two.id, index, 2, f"two-{index}")
    assert [(e.kind, e.from_value, e.to_value, e.reason) for e in await mailbox.events(two.id)] == [
        ("status", None, "Queued", "created"),
        ("part", None, None, "split into 2 parts"),
        ("part", "Queued", "Sent", "accepted by the SMSC"),
        ("part", "Queued", "Sent", "accepted by the SMSC"),
        ("status", "Queued", "Sent", "accepted by the SMSC"),
    ]


@pytest.mark.parametrize("way", ["one statement", "in pieces"])
async def test_many_rows_are_written_alike_either_way(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """On SQLite the hot path writes many rows in one statement (mailbox/_driver.py):
    new rows in a multi-row INSERT, changed rows of a narrow table over one JSON
    parameter. In pieces: new rows past _VALUES_ROWS a statement go in several, and
    changed rows go row by row where JSON cannot carry them (a NUL in a text) or
    SQLite is older than 3.33 (no UPDATE ... FROM). No older SQLite is installed here:
    that way is forced by setting the module's switches (three new messages go as
    two statements of two rows and one, with their attachments and events)."""
    if way == "in pieces":
        monkeypatch.setattr(_driver, "_UPDATE_FROM", False)
        monkeypatch.setattr(_driver, "_JSON_COLUMNS", 0)
        monkeypatch.setattr(_driver, "_VALUES_ROWS", 2)
    box = await Mailbox.open(MailboxSettings(data_dir=tmp_path / "data"), clock=clock)
    try:
        made = await box.create_many([sms(to=f"+49151000000{n:02d}") for n in range(3)])
        assert [(await box.get(m.id)).to[0].phone_number for m in made] == [
            f"+49151000000{n:02d}" for n in range(3)
        ]
        await asyncio.gather(
            *(box.record_acceptance(PartAccepted(m.id, 0, 1, "sim", f"id{n}"))
              for n, m in enumerate(made))
        )  # fmt: skip
        code = "UNDELIV:0\x00ld"  # an SMSC's err with a NUL in it
        failed = await box.record_receipt(
            ReceiptIn("sim", ("id0",), PartStatus.DELIVERY_FAILED, error_code=code)
        )
        # In a transaction of its own, so that its rows go the way under test (the NUL
        # above sends its whole batch row by row).
        delivered = await box.record_receipt(ReceiptIn("sim", ("id1",), PartStatus.DELIVERED))
        assert failed is not None
        assert delivered is not None
        assert (failed.status, delivered.status) == (S.DELIVERY_FAILED, S.DELIVERED)
        [part] = await box.parts(made[0].id)
        assert (part.status, part.carrier_id, part.error_code) == (
            PartStatus.DELIVERY_FAILED, "id0", code,
        )  # fmt: skip
        assert (await box.get(made[0].id)).delivery_error_code == code
        assert [(await box.get(m.id)).message_status for m in made] == [
            S.DELIVERY_FAILED, S.DELIVERED, S.SENT,
        ]  # fmt: skip
        last = (await box.events(made[0].id))[-1]
        assert last.detail is not None
        assert last.detail["error_code"] == code
    finally:
        await box.close()


async def test_a_refused_part_fails_the_whole_sms(mailbox: Mailbox) -> None:
    message = await mailbox.create(sms())
    await accepted(mailbox, message.id, 0, 2, "a")
    failed = await mailbox.record_refusal(
        PartRefused(message.id, 1, 2, "SMS-UP-410", "ESME_RINVDSTADR: invalid destination")
    )
    assert failed.status is S.SENDING_FAILED
    stored = await mailbox.get(message.id)
    assert stored.delivery_error_code == "SMS-UP-410"
    assert stored.failure_reason == "ESME_RINVDSTADR: invalid destination"
    late = await receipt(mailbox, "a", PartStatus.DELIVERED)
    assert late is not None
    assert late.status is S.SENDING_FAILED


async def test_giving_up_on_an_sms_fails_its_waiting_parts(mailbox: Mailbox) -> None:
    message = await mailbox.create(sms())
    await accepted(mailbox, message.id, 0, 2, "a")
    failed = await mailbox.transition(
        message.id,
        S.SENDING_FAILED,
        reason="5 attempts, giving up",
        delivery_error_code="SMS-RC-413",
    )
    assert failed.message_status is S.SENDING_FAILED
    assert [p.status for p in await mailbox.parts(message.id)] == [
        PartStatus.SENT,
        PartStatus.SENDING_FAILED,
    ]
    last = (await mailbox.events(message.id))[-1]
    assert last.detail == {"parts_given_up": [1]}


async def test_an_acceptance_is_recorded_whoever_holds_the_lease(mailbox: Mailbox) -> None:
    """The SMSC took the part: that is a fact, even when the lease has moved on (the
    dispatcher that sent it may have lost it meanwhile). The SMS leaves the queue."""
    message = await mailbox.create(sms())
    await mailbox.lease("w1", types=[MessageType.SMS], limit=1)
    after = await accepted(mailbox, message.id, 0, 1, "x")
    assert after.status is S.SENT
    stored = await mailbox.get(message.id)
    assert (stored.message_status, stored.lease_owner, stored.next_attempt_at) == (
        S.SENT,
        None,
        None,
    )


async def test_read_status(mailbox: Mailbox) -> None:
    message = await mailbox.create(sms(direction=Direction.INBOUND))
    read = await mailbox.set_read_status(message.id, ReadStatus.READ)
    assert read.read_status is ReadStatus.READ
    again = await mailbox.set_read_status(message.id, ReadStatus.READ)
    assert again.last_modified_time == read.last_modified_time
    assert [e.kind for e in await mailbox.events(message.id)] == ["status", "read"]


async def test_a_message_is_only_found_in_its_own_mailbox(mailbox: Mailbox) -> None:
    message = await mailbox.create(sms())
    assert (await mailbox.get(message.id, extension_id=EXTENSION)).id == message.id
    with pytest.raises(MessageNotFound):
        await mailbox.get(message.id, extension_id=OTHER_EXTENSION)
    with pytest.raises(MessageNotFound):
        await mailbox.set_read_status(message.id, ReadStatus.READ, extension_id=OTHER_EXTENSION)
    with pytest.raises(MessageNotFound):
        await mailbox.get(12345)


async def test_a_refused_transition_is_logged(
    mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    message = await mailbox.create(fax())
    await mailbox.transition(message.id, S.SENT, reason="ok")
    with pytest.raises(InvalidTransition):
        await mailbox.transition(message.id, S.SENDING_FAILED, reason="too late")
    assert any("message.transition_refused" in r.getMessage() for r in caplog.records)


async def test_nothing_half_written_when_a_batch_fails(mailbox: Mailbox) -> None:
    from gatewayd.mailbox import NewMessage

    good = sms()
    bad = NewMessage(
        account_id=ACCOUNT,
        extension_id=EXTENSION,
        type=MessageType.VOICEMAIL,
        direction=Direction.OUTBOUND,
        from_=Party(),
        to=(),
        origin="test",
    )
    with pytest.raises(StoreError, match="always Inbound"):
        await mailbox.create_many([good, bad])
    async with mailbox._db.read() as conn:
        count = (
            await conn.execute(sa.select(sa.func.count()).select_from(message_events))
        ).scalar()
    assert count == 0


async def test_an_id_collision_draws_the_batch_again(
    mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process drew an id already stored (the first draw here is made to): the
    whole group commit is drawn and written again, and every caller gets its message."""
    from gatewayd.mailbox import _create

    caplog.set_level("INFO")
    first = await mailbox.create(sms())
    real = _create.new_ids
    draws: list[int] = []

    def drawing(count: int) -> list[int]:
        draws.append(count)
        fresh = real(count)
        return [first.id, *fresh[1:]] if len(draws) == 1 else fresh

    monkeypatch.setattr(_create, "new_ids", drawing)
    stored = await asyncio.gather(*(mailbox.create(sms()) for _ in range(3)))
    assert len(draws) == 6  # the batch of three, drawn twice (not each alone after)
    assert first.id not in {m.id for m in stored}
    assert len({m.id for m in stored}) == 3
    for message in stored:
        assert (await mailbox.get(message.id)).subject == "Hello"
    assert (await mailbox.get(first.id)) == first
    collisions = [r.msg for r in caplog.records if "message.id_collision" in r.getMessage()]
    assert len(collisions) == 1
    assert isinstance(collisions[0], dict)
    assert (collisions[0]["attempt"], collisions[0]["batch"]) == (1, 3)


def watch_ledger(monkeypatch: pytest.MonkeyPatch, note: Callable[[Any], T]) -> list[T]:
    """What ``note`` says of each ledger transaction's items, in order."""
    noted: list[T] = []
    load = _ledger._load

    def watched(sql: Any, group: Any, items: Any) -> Any:
        noted.append(note(items))
        return (yield from load(sql, group, items))

    monkeypatch.setattr(_ledger, "_load", watched)
    return noted


@pytest.mark.parametrize("other_writes", [False, True])
async def test_the_ledger_keeps_its_transactions_short_while_another_process_writes(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, other_writes: bool
) -> None:
    """The SMS process's ledger holds the writers' turn for as long as its batch takes;
    while the daemon is taking in messages (another connection has committed since
    the ledger's last transaction: SQLite's data_version), it takes at most
    SHARED_BATCH items in its next transaction, so that the daemon's group commit waits
    less, and the rest go in the one after, in order. With nobody else writing, it
    takes all that waits. Here the acceptances pile up while another process holds the
    turn."""
    monkeypatch.setattr(_ledger, "SHARED_BATCH", 2)
    batches = watch_ledger(monkeypatch, lambda items: [item.message_id for item in items])
    settings = MailboxSettings(data_dir=tmp_path / "data")
    box = await Mailbox.open(settings, clock=clock)
    try:
        made = await box.create_many([sms(to=f"+49151000000{n:02d}") for n in range(6)])
        await accepted(box, made[0].id, 0, 1, "first")  # the ledger has looked once
        turn = os.open(settings.data_dir / f"{SQLITE_FILE_NAME}-writer", os.O_RDWR)
        other = sqlite3.connect(settings.data_dir / SQLITE_FILE_NAME, isolation_level=None)
        try:
            fcntl.flock(turn, fcntl.LOCK_EX)  # another process writes...
            waiting = [
                asyncio.ensure_future(accepted(box, m.id, 0, 1, f"id{m.id}")) for m in made[1:]
            ]
            await asyncio.sleep(0.2)
            if other_writes:  # ...and commits (as the daemon's group commit would)
                other.execute(
                    "UPDATE messages SET read_status = 'Read' WHERE id = ?", (made[0].id,)
                )
            fcntl.flock(turn, fcntl.LOCK_UN)
            outcomes = await asyncio.wait_for(asyncio.gather(*waiting), 10)
        finally:
            other.close()
            os.close(turn)
        assert [o.status for o in outcomes] == [S.SENT] * 5
        ids = [m.id for m in made[1:]]
        if other_writes:  # the next has seen nothing new from the other: takes the rest
            assert batches[1:] == [ids[0:2], ids[2:]]
        else:
            assert batches[1:] == [ids]
        assert [(await box.get(m.id)).message_status for m in made] == [S.SENT] * 6
    finally:
        await box.close()


async def test_the_ledger_begins_right_behind_another_processs_group_commit(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another process writes and its group commit's transactions (``front``)
    come thick, the ledger waits to begin right after one ends, and then takes up to
    QUICK_ITEMS, not SHARED_BATCH: the turn is free while that process answers."""
    monkeypatch.setattr(_ledger, "SHARED_BATCH", 2)
    monkeypatch.setattr(_ledger, "QUICK_ITEMS", 4)
    monkeypatch.setattr(_driver, "FRONT_ACTIVE", 5.0)
    monkeypatch.setattr(_driver, "FRONT_AT_MOST", 5.0)
    batches = watch_ledger(monkeypatch, lambda items: [item.message_id for item in items])
    settings = MailboxSettings(data_dir=tmp_path / "data")
    box = await Mailbox.open(settings, clock=clock)
    made = await box.create_many([sms(to=f"+49151000000{n:02d}") for n in range(6)])
    turn = os.open(settings.data_dir / f"{SQLITE_FILE_NAME}-writer", os.O_RDWR)
    other = sqlite3.connect(settings.data_dir / SQLITE_FILE_NAME, isolation_level=None)

    def front(age: float) -> None:  # what the other's group commit writes, and commits
        other.execute("UPDATE messages SET read_status = 'Read' WHERE id = ?", (made[0].id,))
        os.pwrite(turn, struct.pack("<dq", time.monotonic() - age, os.getpid() + 1), 0)

    try:
        await accepted(box, made[0].id, 0, 1, "first")  # the ledger has looked once
        front(age=10.0)  # the other has written (long ago: not for callers now)
        await accepted(box, made[1].id, 0, 1, "second")  # the ledger sees it: shared
        front(age=0.05)  # the other is in the middle of its cycle
        asyncio.get_running_loop().call_later(0.2, front, 0.0)  # its next ends
        started = time.monotonic()
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(accepted(box, m.id, 0, 1, f"id{m.id}") for m in made[2:])), 10
        )
        waited = time.monotonic() - started
    finally:
        other.close()
        os.close(turn)
        await box.close()
    assert [o.status for o in outcomes] == [S.SENT] * 4
    assert waited >= 0.19
    assert batches[2:] == [[m.id for m in made[2:]]]  # four: QUICK_ITEMS, right behind it


async def test_the_group_commit_writes_a_small_batch_on_the_event_loops_thread(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch taken while the writers' turn was free is written on the event loop's
    thread when it has at most QUICK_MESSAGES messages and at least QUICK_AT_LEAST, or
    fewer when its callers are all eager (create_texts: the API's short way); any other
    in the writer thread."""
    monkeypatch.setattr(_commit, "QUICK_MESSAGES", 3)
    monkeypatch.setattr(_commit, "QUICK_AT_LEAST", 2)
    threads: list[str] = []
    insert = _commit._insert

    def watched(made: list[Any]) -> Any:
        threads.append(threading.current_thread().name)
        return (yield from insert(made))

    monkeypatch.setattr(_commit, "_insert", watched)
    box = await Mailbox.open(MailboxSettings(data_dir=tmp_path / "data"), clock=clock)
    try:
        made = [await box.create(sms())]  # the writer thread opens the database
        made.append(await box.create(sms(to="+4915100000001")))
        made += await box.create_many([sms(to=f"+491510000000{n}") for n in (2, 3)])
        made += await box.create_many([sms(to=f"+491510000000{n}") for n in (4, 5, 6, 7)])
        made += await box.create_texts([sms(to="+4915100000008")])
        assert [(await box.get(m.id)).id for m in made] == [m.id for m in made]
    finally:
        await box.close()
    loop = threading.current_thread().name
    assert threads[0].startswith("mailbox-writer")
    assert threads[1].startswith("mailbox-writer")  # one: fewer than QUICK_AT_LEAST
    assert threads[2] == loop  # two
    assert threads[3].startswith("mailbox-writer")  # four: more than QUICK_MESSAGES
    assert threads[4] == loop  # one, eager


async def test_the_ledger_writes_a_short_transaction_on_the_event_loops_thread(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction of at most QUICK_ITEMS acceptances and receipts, with the turn
    free: on the event loop's thread; more, piled up while nobody else committed (as
    the SMS service draining a queue alone), in the writer thread, all together."""
    monkeypatch.setattr(_ledger, "QUICK_ITEMS", 2)
    batches = watch_ledger(monkeypatch, lambda items: (threading.current_thread().name, len(items)))
    settings = MailboxSettings(data_dir=tmp_path / "data")
    box = await Mailbox.open(settings, clock=clock)
    try:
        made = await box.create_many([sms(to=f"+49151000000{n:02d}") for n in range(7)])
        await accepted(box, made[0].id, 0, 1, "first")  # the ledger's first look
        await accepted(box, made[1].id, 0, 1, "second")  # nobody else has written since
        turn = os.open(settings.data_dir / f"{SQLITE_FILE_NAME}-writer", os.O_RDWR)
        try:
            fcntl.flock(turn, fcntl.LOCK_EX)  # held, not written: the acceptances pile up
            waiting = [
                asyncio.ensure_future(accepted(box, m.id, 0, 1, f"id{m.id}")) for m in made[2:]
            ]
            await asyncio.sleep(0.2)
            fcntl.flock(turn, fcntl.LOCK_UN)
            await asyncio.wait_for(asyncio.gather(*waiting), 10)
        finally:
            os.close(turn)
        assert [(await box.get(m.id)).message_status for m in made] == [S.SENT] * 7
    finally:
        await box.close()
    loop = threading.current_thread().name
    assert batches == [(loop, 1), (loop, 1), ("mailbox-writer_0", 5)]


async def test_an_sms_lease_of_at_most_quick_lease_messages_runs_on_the_event_loops_thread(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_queue, "QUICK_LEASE", 1)
    threads: list[str] = []
    execute = _driver._sqlite_op

    def watched(connection: Any, op: Any) -> Any:
        if getattr(op, "sql", "").startswith("UPDATE messages SET lease_owner"):
            threads.append(threading.current_thread().name)
        return execute(connection, op)

    monkeypatch.setattr(_driver, "_sqlite_op", watched)
    box = await Mailbox.open(MailboxSettings(data_dir=tmp_path / "data"), clock=clock)
    try:
        made = await box.create_many([sms(to=f"+491510000000{n}") for n in (1, 2, 3)])
        first = await box.lease_sms("w1", limit=1, lease_for=60)
        rest = await box.lease_sms("w1", limit=5, lease_for=60)
    finally:
        await box.close()
    assert sorted(m.id for m in first + rest) == sorted(m.id for m in made)
    loop = threading.current_thread().name
    assert threads[0] == loop  # one: at most QUICK_LEASE
    assert threads[1].startswith("mailbox-writer")  # five: more


@pytest.mark.parametrize(("quick_messages", "sizes"), [(None, [3]), (2, [2, 1])])
async def test_new_messages_that_come_while_another_process_writes_go_in_one_transaction(
    tmp_path: Path,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    quick_messages: int | None,
    sizes: list[int],
) -> None:
    """The group commit takes its batch at once only while the writers' turn is free;
    held by another process, the batch is taken once the turn comes, so what arrives
    meanwhile goes in the same transaction (mailbox/_batch.py). With at most
    QUICK_MESSAGES waiting when it finds the turn held, it waits for it beside the loop
    and is written on the loop's thread, taking at most QUICK_MESSAGES; the rest go in
    the next."""
    if quick_messages is not None:
        monkeypatch.setattr(_commit, "QUICK_MESSAGES", quick_messages)
    batches: list[tuple[str, int]] = []
    insert = _commit._insert

    def watched(made: list[Any]) -> Any:
        batches.append((threading.current_thread().name, len(made)))
        return (yield from insert(made))

    monkeypatch.setattr(_commit, "_insert", watched)
    settings = MailboxSettings(data_dir=tmp_path / "data")
    box = await Mailbox.open(settings, clock=clock)
    try:
        await box.create(sms())  # the writer thread has opened the lock file
        turn = os.open(settings.data_dir / f"{SQLITE_FILE_NAME}-writer", os.O_RDWR)
        try:
            fcntl.flock(turn, fcntl.LOCK_EX)  # another process writes
            first = asyncio.ensure_future(box.create(sms(to="+4915100000001")))
            await asyncio.sleep(0.2)
            later = [asyncio.ensure_future(box.create(sms(to=f"+491510000000{n}"))) for n in (2, 3)]
            await asyncio.sleep(0.05)
            fcntl.flock(turn, fcntl.LOCK_UN)
            made = await asyncio.wait_for(asyncio.gather(first, *later), 10)
        finally:
            os.close(turn)
        assert [n for _, n in batches] == [1, *sizes]
        assert batches[1][0] == threading.current_thread().name  # waited for, here
        assert [m.to[0].phone_number for m in made] == [f"+491510000000{n}" for n in (1, 2, 3)]
    finally:
        await box.close()
