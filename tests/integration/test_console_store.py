"""What the web console asks of the mailbox, on SQLite and PostgreSQL: cancelling and
retrying messages, status changes counted by time from the events, the latest
failures, the queue, and sign-in sessions."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from gatewayd.clock import ManualClock
from gatewayd.errors import InvalidTransition, MessageNotFound
from gatewayd.mailbox import Mailbox, PartAccepted, PartRefused, ReceiptIn
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


# -- cancel -------------------------------------------------------------------------------


async def test_cancel_fails_a_queued_sms_and_gives_up_its_waiting_parts(mailbox: Mailbox) -> None:
    message = await mailbox.create(sms(text="x" * 200))  # two parts
    await mailbox.record_acceptance(PartAccepted(message.id, 0, 2, "smsc", "id-0"))
    cancelled = await mailbox.cancel(message.id, reason="by alice", extension_id=EXTENSION)
    assert cancelled.message_status is S.SENDING_FAILED
    assert cancelled.failure_reason == "cancelled: by alice"
    assert cancelled.lease_owner is None
    parts = await mailbox.parts(message.id)
    assert [p.status for p in parts] == [PartStatus.SENT, PartStatus.SENDING_FAILED]
    [event] = [e for e in await mailbox.events(message.id) if e.to_value == "SendingFailed"]
    assert event.reason == "cancelled: by alice"
    assert event.detail == {"cancelled": True, "parts_given_up": [1]}


async def test_cancel_keeps_the_carrier_job_of_a_fax_on_record(mailbox: Mailbox) -> None:
    message = await mailbox.create(fax())
    [leased] = await mailbox.lease("fax@test", types=[MessageType.FAX], limit=1)
    await mailbox.set_carrier(leased.id, "fax@test", carrier="spool", ref="job-7", reason="x")
    cancelled = await mailbox.cancel(message.id, reason="wrong number")
    assert cancelled.message_status is S.SENDING_FAILED
    assert cancelled.fax_error_code is None
    assert (cancelled.carrier, cancelled.carrier_ref) == ("spool", "job-7")
    events = await mailbox.events(message.id)
    assert events[-1].detail == {"cancelled": True, "carrier": "spool", "carrier_ref": "job-7"}


async def test_cancel_refuses_what_is_not_queued_or_not_yours(mailbox: Mailbox) -> None:
    message = await mailbox.create(sms())
    with pytest.raises(MessageNotFound):
        await mailbox.cancel(message.id, reason="x", extension_id=OTHER_EXTENSION)
    await mailbox.record_refusal(PartRefused(message.id, 0, 1, "0x00000045", "refused"))
    with pytest.raises(InvalidTransition, match="only a Queued outbound SMS or fax"):
        await mailbox.cancel(message.id, reason="x")
    inbound = await mailbox.create(sms(direction=Direction.INBOUND))
    with pytest.raises(InvalidTransition):
        await mailbox.cancel(inbound.id, reason="x")
    assert (await mailbox.get(inbound.id)).message_status is S.RECEIVED


# -- retry --------------------------------------------------------------------------------


async def test_retry_makes_a_new_queued_sms_linked_to_the_failed_one(
    mailbox: Mailbox, clock: ManualClock
) -> None:
    message = await mailbox.create(sms(text="Try again"))
    await mailbox.record_acceptance(PartAccepted(message.id, 0, 1, "smsc", "abc"))
    await mailbox.record_receipt(ReceiptIn("smsc", ("abc",), PartStatus.DELIVERY_FAILED, "UNDELIV"))
    assert (await mailbox.get(message.id)).message_status is S.DELIVERY_FAILED
    clock.advance(minutes=5)
    again = await mailbox.retry(message.id, reason="by alice", extension_id=EXTENSION)
    assert again.id != message.id
    assert again.message_status is S.QUEUED
    assert (again.type, again.direction, again.subject) == (
        MessageType.SMS,
        Direction.OUTBOUND,
        "Try again",
    )
    assert (again.from_, again.to, again.conversation_id) == (
        message.from_,
        message.to,
        message.conversation_id,
    )
    assert again.creation_time == clock.now()
    assert again.attempts == 0
    assert again.next_attempt_at == clock.now()
    assert [a.type for a in again.attachments] == [AttachmentType.TEXT]
    new_events = await mailbox.events(again.id)
    assert (new_events[0].kind, new_events[0].to_value) == ("status", "Queued")
    assert new_events[0].detail == {"origin": "test", "retry_of": message.id}
    assert new_events[1].detail == {"retry_of": message.id}
    old_events = await mailbox.events(message.id)
    assert old_events[-1].kind == "retry"
    assert old_events[-1].detail == {"retry": again.id}
    assert (await mailbox.get(message.id)).message_status is S.DELIVERY_FAILED  # unchanged
    # the new one is leased like any other
    [leased] = await mailbox.lease("sms@test", types=[MessageType.SMS], limit=5)
    assert leased.id == again.id


async def test_retry_of_a_fax_shares_its_documents_and_renders_again(mailbox: Mailbox) -> None:
    message = await mailbox.create(
        fax(document=b"%PDF-1.4 the contract", cover_index=1, cover_page_text="Please sign")
    )
    await mailbox.transition(
        message.id,
        S.SENDING_FAILED,
        reason="no answer",
        fax_error_code=FaxErrorCode.NO_ANSWER,
    )
    again = await mailbox.retry(message.id, reason="operator")
    assert (again.cover_index, again.cover_page_text) == (1, "Please sign")
    assert again.fax_error_code is None
    assert again.fax_resolution == message.fax_resolution
    [document] = again.attachments
    [original] = message.attachments
    assert document.id != original.id
    assert (document.sha256, document.file_name) == (original.sha256, "contract.pdf")
    _, content = await mailbox.attachment(again.id, document.id)
    assert await content.read_all() == b"%PDF-1.4 the contract"
    # deleting and purging the original leaves the copy's bytes in place
    await mailbox.change_availability(message.id, AvailabilityAction.PURGE, reason="test")
    await mailbox.sweep(orphans=True)
    assert document.sha256 is not None
    assert await mailbox.has_blob(document.sha256)


async def test_retry_refuses_what_has_not_failed_purged_or_not_yours(mailbox: Mailbox) -> None:
    queued = await mailbox.create(sms())
    with pytest.raises(InvalidTransition, match="only a SendingFailed or DeliveryFailed"):
        await mailbox.retry(queued.id, reason="x")
    await mailbox.cancel(queued.id, reason="x")
    with pytest.raises(MessageNotFound):
        await mailbox.retry(queued.id, reason="x", extension_id=OTHER_EXTENSION)
    await mailbox.change_availability(queued.id, AvailabilityAction.PURGE, reason="x")
    with pytest.raises(InvalidTransition, match="erased"):
        await mailbox.retry(queued.id, reason="x")


# -- activity -------------------------------------------------------------------------


async def test_status_history_counts_entries_into_each_status_by_bucket(
    mailbox: Mailbox, clock: ManualClock
) -> None:
    start = clock.now()
    first = await mailbox.create(sms())
    clock.advance(seconds=20)  # the same minute, another moment
    await mailbox.create(sms(extension_id=OTHER_EXTENSION))
    clock.advance(minutes=1, seconds=10)
    await mailbox.record_acceptance(PartAccepted(first.id, 0, 1, "smsc", "m1"))
    clock.advance(minutes=1)
    await mailbox.record_receipt(ReceiptIn("smsc", ("m1",), PartStatus.DELIVERED))
    clock.advance(seconds=1)
    tallies = await mailbox.status_history(since=start, bucket=timedelta(minutes=1))
    seen = {(t.start - start, t.status, t.count) for t in tallies}
    minute = timedelta(minutes=1)
    assert seen == {
        (0 * minute, S.QUEUED, 2),
        (1 * minute, S.SENT, 1),
        (2 * minute, S.DELIVERED, 1),
    }
    other = await mailbox.status_history(since=start, bucket=minute, account_id=ACCOUNT + 1)
    assert other == []
    later = await mailbox.status_history(since=start + minute, bucket=minute)
    assert {t.status for t in later} == {S.SENT, S.DELIVERED}


async def test_recent_failures_newest_first_with_reasons(
    mailbox: Mailbox, clock: ManualClock
) -> None:
    one = await mailbox.create(fax())
    two = await mailbox.create(sms())
    await mailbox.create(sms())  # still queued
    await mailbox.transition(one.id, S.SENDING_FAILED, reason="rendering failed: bad PDF")
    clock.advance(seconds=5)
    await mailbox.record_refusal(PartRefused(two.id, 0, 1, "0x0000000b", "invalid destination"))
    found = await mailbox.recent_failures(limit=5, account_id=ACCOUNT)
    assert [(f.message_id, f.status, f.reason, f.type) for f in found] == [
        (two.id, S.SENDING_FAILED, "invalid destination", MessageType.SMS),
        (one.id, S.SENDING_FAILED, "rendering failed: bad PDF", MessageType.FAX),
    ]
    assert found[0].to_number == "+4915112345678"
    assert await mailbox.recent_failures(limit=1) == found[:1]
    assert await mailbox.recent_failures(account_id=ACCOUNT + 1) == []


async def test_queue_counts_only_queued_messages_by_type(
    mailbox: Mailbox, clock: ManualClock
) -> None:
    oldest = await mailbox.create(sms())
    clock.advance(seconds=10)
    await mailbox.create(sms())
    await mailbox.create(fax())
    done = await mailbox.create(fax())
    await mailbox.transition(done.id, S.SENDING_FAILED, reason="x")
    queue = {q.type: q for q in await mailbox.queue()}
    assert (queue[MessageType.SMS].count, queue[MessageType.SMS].oldest) == (
        2,
        oldest.creation_time,
    )
    assert queue[MessageType.FAX].count == 1


# -- sessions -----------------------------------------------------------------------------


async def test_sessions_open_find_expire_and_close(mailbox: Mailbox, clock: ManualClock) -> None:
    key = hashlib.sha256(b"cookie").hexdigest()
    opened = await mailbox.open_session(key, "alice@example.com", lifetime=3600)
    assert opened.expires_at - opened.created_at == timedelta(hours=1)
    assert await mailbox.find_session(key) == opened
    assert await mailbox.find_session("0" * 64) is None
    clock.advance(hours=1)
    assert await mailbox.find_session(key) is None  # expired
    other = hashlib.sha256(b"other").hexdigest()
    await mailbox.open_session(other, "bob@example.com", lifetime=60)  # removes the expired
    await mailbox.open_session(key, "alice@example.com", lifetime=60)  # so the key is free
    await mailbox.close_session(other)
    assert await mailbox.find_session(other) is None
    assert await mailbox.find_session(key) is not None
