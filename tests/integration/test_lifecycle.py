"""Read state and the availability life cycle with a controllable clock: delete,
restore, purge, the sweeper's retention periods, max_messages, attachment files."""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from gatewayd.clock import ManualClock
from gatewayd.config.settings import MailboxSettings
from gatewayd.errors import InvalidTransition, MessageNotFound
from gatewayd.mailbox import Mailbox, MessageQuery
from gatewayd.mailbox._blobs import DatabaseBlobStore, FileBlobStore
from gatewayd.model import Availability, AvailabilityAction, MessageStatus
from tests.conftest import EXTENSION, fax, sms

DELETE, PURGE, RESTORE = (
    AvailabilityAction.DELETE,
    AvailabilityAction.PURGE,
    AvailabilityAction.RESTORE,
)


async def age_blobs(mailbox: Mailbox, seconds: float = 3600) -> None:
    """Make every blob look stored ``seconds`` ago (past the erase grace period): files
    by their modification time, database blobs by their stored_at (mailbox clock)."""
    blobs = mailbox._blobs
    if isinstance(blobs, DatabaseBlobStore):
        await blobs.stored_before(mailbox.clock.now() - timedelta(seconds=seconds))
        return
    assert isinstance(blobs, FileBlobStore)
    past = time.time() - seconds
    for digest in await blobs.all_digests():
        os.utime(blobs.path(digest), (past, past))


async def stored(mailbox: Mailbox, digest: str | None) -> bool:
    assert digest is not None
    return await mailbox._blobs.exists(digest)


async def test_delete_restore_delete_purge(mailbox: Mailbox, clock: ManualClock) -> None:
    message = await mailbox.create(fax())
    deleted = await mailbox.change_availability(message.id, DELETE, reason="user")
    assert deleted.availability is Availability.DELETED
    assert deleted.attachments == message.attachments  # restorable: nothing erased yet
    restored = await mailbox.change_availability(message.id, RESTORE, reason="user")
    assert restored.availability is Availability.ALIVE
    await mailbox.change_availability(message.id, DELETE, reason="user")
    purged = await mailbox.change_availability(message.id, DELETE, reason="deleted twice")
    assert purged.availability is Availability.PURGED
    assert purged.attachments == ()
    with pytest.raises(InvalidTransition, match="cannot be restored"):
        await mailbox.change_availability(message.id, RESTORE, reason="user")
    again = await mailbox.change_availability(message.id, DELETE, reason="user")
    assert again.availability is Availability.PURGED
    changes = [
        (e.from_value, e.to_value)
        for e in await mailbox.events(message.id)
        if e.kind == "availability"
    ]
    assert changes == [
        ("Alive", "Deleted"),
        ("Deleted", "Alive"),
        ("Alive", "Deleted"),
        ("Deleted", "Purged"),
    ]


async def test_purge_at_once_erases_text_and_attachment_files(mailbox: Mailbox) -> None:
    text = await mailbox.create(sms(text="the secret"))
    _, content = await mailbox.attachment(text.id, text.attachments[0].id)
    assert (
        await content.read_all() == b"the secret"
    )  # an SMS's Text attachment is its subject, stored once
    document = await mailbox.create(fax(document=b"%PDF- private", cover_page_text="note"))
    digest = document.attachments[0].sha256
    assert digest is not None
    await age_blobs(mailbox)
    purged = await mailbox.change_availability(text.id, PURGE, reason="purge=true")
    assert purged.availability is Availability.PURGED
    assert purged.subject is None
    assert purged.attachments == ()
    assert purged.message_status is MessageStatus.QUEUED  # status and availability are apart
    purged_fax = await mailbox.change_availability(document.id, PURGE, reason="purge=true")
    assert purged_fax.cover_page_text is None
    assert purged_fax.subject == "Contract"  # a fax's subject is not its content
    assert not await stored(mailbox, digest)


async def test_a_shared_attachment_file_survives_until_its_last_message_goes(
    mailbox: Mailbox,
) -> None:
    first, second = await mailbox.create_many([fax(), fax()])
    digest = first.attachments[0].sha256
    await age_blobs(mailbox)
    await mailbox.change_availability(first.id, PURGE, reason="purge")
    assert await stored(mailbox, digest)
    await mailbox.change_availability(second.id, PURGE, reason="purge")
    assert not await stored(mailbox, digest)


async def test_a_freshly_written_file_is_erased_by_a_later_sweep(mailbox: Mailbox) -> None:
    message = await mailbox.create(fax(document=b"fresh bytes"))
    digest = message.attachments[0].sha256
    await mailbox.change_availability(message.id, PURGE, reason="purge")
    assert await stored(mailbox, digest)  # too fresh: a writer may be re-using it
    assert digest in mailbox._lifecycle.pending_erase
    await age_blobs(mailbox)
    report = await mailbox.sweep()
    assert report.blobs_erased == 1
    assert not await stored(mailbox, digest)


async def test_the_sweeper_keeps_each_retention_period(
    mailbox: Mailbox, clock: ManualClock
) -> None:
    keep, delete = await mailbox.create_many([sms(), sms()])
    await mailbox.change_availability(delete.id, DELETE, reason="user")
    clock.advance(days=4, hours=23)
    assert (await mailbox.sweep()).purged == 0
    clock.advance(hours=2)
    report = await mailbox.sweep()
    assert report.purged == 1
    purged = await mailbox.get(delete.id)
    assert purged.availability is Availability.PURGED
    assert purged.attachments == ()
    last = (await mailbox.events(delete.id))[-1]
    assert (last.to_value, last.reason) == ("Purged", "deleted 5 days ago")
    clock.advance(days=4, hours=23)
    assert (await mailbox.sweep()).removed == 0
    clock.advance(hours=2)
    assert (await mailbox.sweep()).removed == 1
    with pytest.raises(MessageNotFound):
        await mailbox.get(delete.id)
    with pytest.raises(MessageNotFound):
        await mailbox.events(delete.id)
    assert (await mailbox.get(keep.id)).availability is Availability.ALIVE


async def test_a_mailbox_over_max_messages_deletes_its_oldest(
    mailbox_settings: MailboxSettings, clock: ManualClock
) -> None:
    settings = dataclasses.replace(mailbox_settings, max_messages=3)
    box = await Mailbox.open(settings, clock=clock)
    try:
        queued_oldest = await box.create(fax())
        clock.advance(1)
        done = []
        for _ in range(4):
            message = await box.create(fax())
            done.append(await box.transition(message.id, MessageStatus.SENT, reason="ok"))
            clock.advance(1)
        other = await box.create(fax(extension_id=999))
        report = await box.sweep()
        assert report.auto_deleted == 2
        alive = await box.find(MessageQuery(extension_id=EXTENSION))
        assert {m.id for m in alive.records} == {queued_oldest.id, done[2].id, done[3].id}
        gone = await box.get(done[0].id)
        assert gone.availability is Availability.DELETED
        assert (await box.events(done[0].id))[-1].reason == "mailbox over max_messages (3)"
        assert (await box.get(queued_oldest.id)).availability is Availability.ALIVE
        assert (await box.get(other.id)).availability is Availability.ALIVE
        assert (await box.sweep()).auto_deleted == 0
    finally:
        await box.close()


async def test_orphan_files_from_a_crash_are_found(mailbox: Mailbox, tmp_path: Path) -> None:
    kept = await mailbox.create(fax(document=b"kept"))
    [orphan] = await mailbox._blobs.put_all([b"written, then the process died before the commit"])
    assert orphan is not None
    await age_blobs(mailbox)
    assert (await mailbox.sweep()).orphans_erased == 0  # the scan runs only when asked
    report = await mailbox.sweep(orphans=True)
    assert report.orphans_erased == 1
    assert not await stored(mailbox, orphan.sha256)
    assert await stored(mailbox, kept.attachments[0].sha256)
