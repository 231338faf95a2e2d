"""The mailbox's operator operations, on SQLite and PostgreSQL (the ``mailbox`` fixture
runs each test on both): cancel and retry, the overview ``gatewayd status`` reads
(queue, statuses of the last hour, latest failures), the status watchers the metrics
count with, and API tokens."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from gatewayd.clock import ManualClock
from gatewayd.errors import InvalidTransition, LeaseLost, MessageNotFound
from gatewayd.mailbox import Mailbox, PartAccepted, ReceiptIn, StatusEntered
from gatewayd.model import (
    AttachmentType,
    AvailabilityAction,
    Direction,
    FaxErrorCode,
    MessageStatus,
    MessageType,
    PartStatus,
)
from tests.conftest import ACCOUNT, EXTENSION, OTHER_EXTENSION, fax, sms

S = MessageStatus


# -- cancel ------------------------------------------------------------------------------


async def test_cancel_a_queued_fax_and_sms(mailbox: Mailbox) -> None:
    document = await mailbox.create(fax())
    text = await mailbox.create(sms())
    await mailbox.record_acceptance(PartAccepted(text.id, 0, 2, "sim", "p0"))
    cancelled = await mailbox.cancel(document.id, reason="wrong recipient")
    assert cancelled.message_status is S.SENDING_FAILED
    assert cancelled.failure_reason == "cancelled: wrong recipient"
    assert cancelled.fax_error_code is None
    last = (await mailbox.events(document.id))[-1]
    assert (last.kind, last.from_value, last.to_value) == ("status", "Queued", "SendingFailed")
    assert last.detail == {"cancelled": True}
    # an SMS: the part the SMSC has not accepted yet is given up with it
    gone = await mailbox.cancel(text.id, reason="cancelled: by the sender")
    assert gone.failure_reason == "cancelled: by the sender"  # not "cancelled: cancelled: ..."
    parts = await mailbox.parts(text.id)
    assert [p.status for p in parts] == [PartStatus.SENT, PartStatus.SENDING_FAILED]
    assert (await mailbox.events(text.id))[-1].detail == {
        "cancelled": True,
        "parts_given_up": [1],
    }


async def test_only_a_queued_outbound_message_can_be_cancelled(mailbox: Mailbox) -> None:
    sent = await mailbox.create(fax())
    await mailbox.transition(sent.id, S.SENT, reason="sent")
    inbound = await mailbox.create(sms(direction=Direction.INBOUND))
    for message_id in (sent.id, inbound.id):
        with pytest.raises(InvalidTransition, match="only a Queued outbound"):
            await mailbox.cancel(message_id, reason="no")
    assert (await mailbox.get(sent.id)).message_status is S.SENT
    with pytest.raises(MessageNotFound):
        await mailbox.cancel(12345, reason="no")
    theirs = await mailbox.create(fax(extension_id=OTHER_EXTENSION))
    with pytest.raises(MessageNotFound):
        await mailbox.cancel(theirs.id, reason="no", extension_id=EXTENSION)


async def test_a_cancelled_message_is_no_longer_the_workers(mailbox: Mailbox) -> None:
    message = await mailbox.create(fax())
    (leased,) = await mailbox.lease("fax@n1", types=[MessageType.FAX], limit=1)
    await mailbox.set_carrier(leased.id, "fax@n1", carrier="spool", ref="job-7", reason="handed")
    cancelled = await mailbox.cancel(message.id, reason="by an operator")
    assert (cancelled.lease_owner, cancelled.next_attempt_at) == (None, None)
    assert (cancelled.carrier, cancelled.carrier_ref) == ("spool", "job-7")  # to cancel there
    assert (await mailbox.events(message.id))[-1].detail == {
        "cancelled": True,
        "carrier": "spool",
        "carrier_ref": "job-7",
    }
    with pytest.raises(LeaseLost):
        await mailbox.transition(message.id, S.SENT, reason="late", lease_owner="fax@n1")
    assert await mailbox.lease("fax@n1", types=[MessageType.FAX], limit=1) == []


# -- retry -------------------------------------------------------------------------------


async def test_a_failed_fax_is_retried_as_a_new_message(
    mailbox: Mailbox, clock: ManualClock, tmp_path: Path
) -> None:
    original = await mailbox.create(fax(cover_index=1, cover_page_text="Please sign"))
    tiff = await _rendered(mailbox, original.id, tmp_path / "fax.tif")
    original = await mailbox.get(original.id)
    await mailbox.transition(
        original.id, S.SENDING_FAILED, reason="busy", fax_error_code=FaxErrorCode.LINE_BUSY
    )
    clock.advance(minutes=5)
    again = await mailbox.retry(original.id, reason="line fixed")
    assert again.id != original.id
    assert (again.type, again.direction, again.message_status) == (
        MessageType.FAX,
        Direction.OUTBOUND,
        S.QUEUED,
    )
    assert (again.to, again.from_, again.subject) == (original.to, original.from_, "Contract")
    assert (again.cover_index, again.cover_page_text) == (1, "Please sign")
    assert (again.attempts, again.fax_error_code, again.failure_reason) == (0, None, None)
    assert again.creation_time == again.next_attempt_at == clock.now()
    # the same stored bytes, not the rendered pages: the retry is rendered again
    (document,) = again.attachments
    (source,) = [a for a in original.attachments if a.type is AttachmentType.SOURCE_DOCUMENT]
    assert document.type is AttachmentType.SOURCE_DOCUMENT
    assert (document.sha256, document.size, document.file_name) == (
        source.sha256,
        source.size,
        source.file_name,
    )
    assert document.id != source.id
    assert tiff not in {a.sha256 for a in again.attachments}
    content = (await mailbox.attachment(again.id, document.id))[1]
    assert await content.read_all() == b"%PDF-1.4 test"
    # linked both ways
    back = (await mailbox.events(original.id))[-1]
    assert (back.kind, back.reason, back.detail) == (
        "retry",
        f"retried as {again.id}: line fixed",
        {"retry": again.id},
    )
    forward = [(e.kind, e.reason, e.detail) for e in await mailbox.events(again.id)]
    assert forward == [
        ("status", "created", {"origin": "test", "retry_of": original.id}),
        ("retry", f"a retry of {original.id}: line fixed", {"retry_of": original.id}),
    ]
    # it is in the queue like any new fax
    (leased,) = await mailbox.lease("fax@n1", types=[MessageType.FAX], limit=5)
    assert leased.id == again.id


async def _rendered(mailbox: Mailbox, message_id: int, path: Path) -> str:
    # the store keeps the bytes, it reads none of them
    await asyncio.to_thread(path.write_bytes, b"II*\x00 the rendered pages")
    message = await mailbox.add_rendered(message_id, path, 1)
    (rendered,) = [a for a in message.attachments if a.type is AttachmentType.RENDERED_DOCUMENT]
    assert rendered.sha256 is not None
    return rendered.sha256


async def test_an_undelivered_sms_is_retried_with_its_text(mailbox: Mailbox) -> None:
    original = await mailbox.create(sms(text="See you at 8"))
    await mailbox.record_acceptance(PartAccepted(original.id, 0, 1, "sim", "c1"))
    await mailbox.record_receipt(
        ReceiptIn("sim", ("c1",), PartStatus.DELIVERY_FAILED, error_code="UNDELIV")
    )
    assert (await mailbox.get(original.id)).message_status is S.DELIVERY_FAILED
    again = await mailbox.retry(original.id, reason="asked by alice", extension_id=EXTENSION)
    assert (again.message_status, again.subject, again.conversation_id) == (
        S.QUEUED,
        "See you at 8",
        original.conversation_id,
    )
    assert [a.type for a in again.attachments] == [AttachmentType.TEXT]
    assert again.delivery_error_code is None
    assert await mailbox.parts(again.id) == []
    # a retry of a retry is fine; a message still Queued or Delivered is not failed
    with pytest.raises(InvalidTransition, match="only a SendingFailed or DeliveryFailed"):
        await mailbox.retry(again.id, reason="no")


async def test_what_cannot_be_retried(mailbox: Mailbox) -> None:
    inbound = await mailbox.create(sms(direction=Direction.INBOUND))
    with pytest.raises(InvalidTransition):
        await mailbox.retry(inbound.id, reason="no")
    purged = await mailbox.create(fax())
    await mailbox.cancel(purged.id, reason="x")
    await mailbox.change_availability(purged.id, AvailabilityAction.PURGE, reason="gone")
    with pytest.raises(InvalidTransition, match="Purged"):
        await mailbox.retry(purged.id, reason="no")
    theirs = await mailbox.create(fax(extension_id=OTHER_EXTENSION))
    await mailbox.cancel(theirs.id, reason="x")
    with pytest.raises(MessageNotFound):
        await mailbox.retry(theirs.id, reason="no", extension_id=EXTENSION)
    # a Deleted one still has its content
    deleted = await mailbox.create(fax())
    await mailbox.cancel(deleted.id, reason="x")
    await mailbox.change_availability(deleted.id, AvailabilityAction.DELETE, reason="tidy")
    assert (await mailbox.retry(deleted.id, reason="after all")).message_status is S.QUEUED


async def test_a_purged_original_does_not_take_the_retrys_bytes(mailbox: Mailbox) -> None:
    original = await mailbox.create(fax(document=b"%PDF-1.4 shared bytes"))
    await mailbox.cancel(original.id, reason="x")
    again = await mailbox.retry(original.id, reason="y")
    await mailbox.change_availability(original.id, AvailabilityAction.PURGE, reason="gone")
    await mailbox.sweep(orphans=True)
    (document,) = again.attachments
    content = (await mailbox.attachment(again.id, document.id))[1]
    assert await content.read_all() == b"%PDF-1.4 shared bytes"


# -- what the mailbox has been doing -----------------------------------------------------


async def test_queue_tallies_and_failures(mailbox: Mailbox, clock: ManualClock) -> None:
    old = await mailbox.create(fax())
    await mailbox.transition(old.id, S.SENDING_FAILED, reason="long ago")
    clock.advance(hours=2)
    since = clock.now()
    queued = [await mailbox.create(sms(text=f"t{i}")) for i in range(3)]
    clock.advance(seconds=30)
    waiting = await mailbox.create(fax())
    await mailbox.record_acceptance(PartAccepted(queued[0].id, 0, 1, "sim", "c0"))
    await mailbox.record_receipt(
        ReceiptIn("sim", ("c0",), PartStatus.DELIVERY_FAILED, error_code="UNDELIV:001")
    )
    clock.advance(seconds=1)
    await mailbox.transition(
        waiting.id,
        S.SENDING_FAILED,
        reason="no fax machine",
        fax_error_code=FaxErrorCode.NO_FAX_MACHINE,
    )
    await mailbox.create(sms(direction=Direction.INBOUND))
    clock.advance(seconds=10)

    queue = {(q.type, q.count, q.oldest) for q in await mailbox.queue()}
    assert queue == {(MessageType.SMS, 2, queued[1].creation_time)}

    tallies = {
        (t.type, t.direction, t.status): t.count for t in await mailbox.status_tallies(since=since)
    }
    out, into = Direction.OUTBOUND, Direction.INBOUND
    assert tallies == {
        (MessageType.SMS, out, S.QUEUED): 3,
        (MessageType.SMS, out, S.SENT): 1,
        (MessageType.SMS, out, S.DELIVERY_FAILED): 1,
        (MessageType.SMS, into, S.RECEIVED): 1,
        (MessageType.FAX, out, S.QUEUED): 1,
        (MessageType.FAX, out, S.SENDING_FAILED): 1,
    }

    failures = await mailbox.recent_failures(limit=2)
    assert [(f.message_id, f.status, f.code, f.reason) for f in failures] == [
        (waiting.id, S.SENDING_FAILED, "NoFaxMachine", "no fax machine"),
        (queued[0].id, S.DELIVERY_FAILED, "UNDELIV:001", "receipt: DeliveryFailed"),
    ]
    assert failures[1].to_number == "+4915112345678"
    everything = await mailbox.recent_failures(limit=10)
    assert [f.message_id for f in everything] == [waiting.id, queued[0].id, old.id]
    assert await mailbox.recent_failures(account_id=ACCOUNT + 1) == []
    await mailbox.ping()


async def test_status_watchers_hear_every_committed_status(mailbox: Mailbox) -> None:
    heard: list[StatusEntered] = []
    mailbox.watch_status(heard.append)
    mailbox.watch_status(_broken_watcher)  # a watcher's bug changes nothing for the others
    text = await mailbox.create(sms())
    await mailbox.record_acceptance(PartAccepted(text.id, 0, 1, "sim", "c1"))
    await mailbox.record_receipt(
        ReceiptIn("sim", ("c1",), PartStatus.DELIVERY_FAILED, error_code="UNDELIV")
    )
    document = await mailbox.create(fax())
    await mailbox.transition(
        document.id, S.SENDING_FAILED, reason="busy", fax_error_code=FaxErrorCode.LINE_BUSY
    )
    again = await mailbox.retry(document.id, reason="again")
    await mailbox.cancel(again.id, reason="no")
    with pytest.raises(InvalidTransition):
        await mailbox.cancel(again.id, reason="twice")  # refused: nothing heard
    inbound = await mailbox.create(sms(direction=Direction.INBOUND))
    assert [(h.message_id, h.type, h.direction, h.status, h.code) for h in heard] == [
        (text.id, MessageType.SMS, Direction.OUTBOUND, S.QUEUED, None),
        (text.id, MessageType.SMS, Direction.OUTBOUND, S.SENT, None),
        (text.id, MessageType.SMS, Direction.OUTBOUND, S.DELIVERY_FAILED, "UNDELIV"),
        (document.id, MessageType.FAX, Direction.OUTBOUND, S.QUEUED, None),
        (document.id, MessageType.FAX, Direction.OUTBOUND, S.SENDING_FAILED, "LineBusy"),
        (again.id, MessageType.FAX, Direction.OUTBOUND, S.QUEUED, None),
        (again.id, MessageType.FAX, Direction.OUTBOUND, S.SENDING_FAILED, None),
        (inbound.id, MessageType.SMS, Direction.INBOUND, S.RECEIVED, None),
    ]
    assert heard[-2].reason == "cancelled: no"


def _broken_watcher(_item: StatusEntered) -> None:
    raise RuntimeError("a bug in a watcher")


# -- API tokens --------------------------------------------------------------------------


async def test_tokens_are_kept_listed_found_and_revoked(
    mailbox: Mailbox, clock: ManualClock
) -> None:
    made = await mailbox.create_token(
        account_id=ACCOUNT,
        extension_id=EXTENSION,
        email="alice@example.com",
        name="ci",
        token_hash="sha256$" + "a" * 64,
        expires_at=clock.now() + timedelta(days=90),
    )
    other = await mailbox.create_token(
        account_id=ACCOUNT,
        extension_id=OTHER_EXTENSION,
        email="bob@example.com",
        name="",
        token_hash="sha256$" + "b" * 64,
    )
    assert made.id != other.id
    assert made.state(clock.now()) == "active"
    assert made.state(clock.now() + timedelta(days=91)) == "expired"
    found = await mailbox.token_by_hash("sha256$" + "a" * 64)
    assert found == made
    assert await mailbox.token_by_hash("sha256$" + "c" * 64) is None
    assert [t.id for t in await mailbox.tokens()] == [made.id, other.id]
    assert [t.id for t in await mailbox.tokens(extension_id=OTHER_EXTENSION)] == [other.id]
    clock.advance(seconds=3)
    revoked = await mailbox.revoke_token(made.id)
    assert (revoked.revoked_at, revoked.state(clock.now())) == (clock.now(), "revoked")
    clock.advance(seconds=3)
    assert (await mailbox.revoke_token(made.id)).revoked_at == revoked.revoked_at  # once
    json = revoked.to_json(clock.now())
    assert (json["state"], json["email"], "token_hash" in json) == (
        "revoked",
        "alice@example.com",
        False,
    )
    with pytest.raises(MessageNotFound, match="API token 999 not found"):
        await mailbox.revoke_token(999)
