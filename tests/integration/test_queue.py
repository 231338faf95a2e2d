"""The mailbox as the queue: only due messages are leased, never to two workers at
once, and a crashed worker's messages come back when its lease expires."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest

from gatewayd.clock import ManualClock
from gatewayd.config.settings import MailboxSettings
from gatewayd.errors import InvalidTransition, LeaseLost
from gatewayd.mailbox import Mailbox
from gatewayd.model import MessageStatus, MessageType
from tests.conftest import ROOT, fax, sms


async def test_only_due_queued_messages_of_the_asked_types_are_leased(
    mailbox: Mailbox, clock: ManualClock
) -> None:
    later = clock.now() + timedelta(hours=2)
    due_sms, due_fax, scheduled = await mailbox.create_many([sms(), fax(), fax(send_time=later)])
    done = await mailbox.create(fax())
    await mailbox.transition(done.id, MessageStatus.SENT, reason="done")
    leased = await mailbox.lease(
        "fax-worker", types=[MessageType.FAX], limit=10, lease_for=3 * 3600
    )
    assert [m.id for m in leased] == [due_fax.id]
    assert leased[0].lease_owner == "fax-worker"
    assert leased[0].attempts == 1
    assert await mailbox.lease("other", types=[MessageType.FAX], limit=10) == []
    clock.advance(hours=2)
    assert [m.id for m in await mailbox.lease("fax-worker", types=[MessageType.FAX], limit=10)] == [
        scheduled.id
    ]
    assert [m.id for m in await mailbox.lease("sms", types=[MessageType.SMS], limit=10)] == [
        due_sms.id
    ]


async def test_the_oldest_due_go_first_up_to_the_limit(
    mailbox: Mailbox, clock: ManualClock
) -> None:
    created = []
    for _ in range(5):
        created.append(await mailbox.create(sms()))
        clock.advance(1)
    leased = await mailbox.lease("w", types=[MessageType.SMS], limit=3)
    assert [m.id for m in leased] == [m.id for m in created[:3]]


async def test_an_expired_lease_comes_back_with_an_event(
    mailbox: Mailbox, clock: ManualClock
) -> None:
    message = await mailbox.create(fax())
    await mailbox.lease("crashed-worker", types=[MessageType.FAX], limit=1, lease_for=60)
    clock.advance(59)
    assert await mailbox.lease("w2", types=[MessageType.FAX], limit=1) == []
    clock.advance(2)
    (again,) = await mailbox.lease("w2", types=[MessageType.FAX], limit=1)
    assert again.id == message.id
    assert again.attempts == 2
    last = (await mailbox.events(message.id))[-1]
    assert last.kind == "lease"
    assert last.detail == {"previous_owner": "crashed-worker", "owner": "w2", "attempt": 2}
    with pytest.raises(LeaseLost):
        await mailbox.transition(
            message.id, MessageStatus.SENT, reason="late", lease_owner="crashed-worker"
        )
    with pytest.raises(LeaseLost):
        await mailbox.renew_lease(message.id, "crashed-worker", lease_for=60)
    await mailbox.renew_lease(message.id, "w2", lease_for=600)
    clock.advance(300)
    assert await mailbox.lease("w3", types=[MessageType.FAX], limit=1) == []


async def test_the_lean_sms_lease_is_the_lease(mailbox: Mailbox, clock: ManualClock) -> None:
    """Mailbox.lease_sms (the SMS process's, straight to the driver) leases as lease
    does: due Queued SMS only, oldest first, an attempt each, a lapsed lease noted."""
    later = clock.now() + timedelta(hours=1)
    first = await mailbox.create(sms(to="+4915100000001", text="one"))
    clock.advance(1)
    second = await mailbox.create(sms(to="+4915100000002"))
    await mailbox.create_many([fax(), fax(send_time=later)])
    taken = await mailbox.lease_sms("sms@a", limit=1, lease_for=60)
    assert [(t.id, t.to_number, t.from_number, t.text, t.attempts) for t in taken] == [
        (first.id, "+4915100000001", "+4930123456", "one", 1)
    ]
    assert taken[0].creation_time == first.creation_time
    assert [t.id for t in await mailbox.lease_sms("sms@a", limit=5, lease_for=60)] == [second.id]
    assert await mailbox.lease_sms("sms@b", limit=5, lease_for=60) == []
    assert (await mailbox.get(first.id)).lease_owner == "sms@a"
    clock.advance(61)
    again = await mailbox.lease_sms("sms@b", limit=5, lease_for=60)
    # (both were due again at the same moment: in either order)
    assert sorted((t.id, t.attempts) for t in again) == sorted([(first.id, 2), (second.id, 2)])
    last = (await mailbox.events(first.id))[-1]
    assert (last.kind, last.detail) == (
        "lease",
        {"previous_owner": "sms@a", "owner": "sms@b", "attempt": 2},
    )


async def test_retry_later(mailbox: Mailbox, clock: ManualClock) -> None:
    message = await mailbox.create(fax())
    await mailbox.lease("w", types=[MessageType.FAX], limit=1)
    back = await mailbox.retry_later(
        message.id, "w", delay=300, reason="LineBusy", detail={"fax_error_code": "LineBusy"}
    )
    assert back.lease_owner is None
    assert back.next_attempt_at == clock.now() + timedelta(seconds=300)
    assert await mailbox.lease("w", types=[MessageType.FAX], limit=1) == []
    clock.advance(300)
    (again,) = await mailbox.lease("w", types=[MessageType.FAX], limit=1)
    assert again.attempts == 2
    retry = [e for e in await mailbox.events(message.id) if e.kind == "retry"]
    assert retry[0].reason == "LineBusy"
    assert retry[0].detail is not None
    assert retry[0].detail["attempt"] == 1
    with pytest.raises(LeaseLost):
        await mailbox.retry_later(message.id, "someone-else", delay=1, reason="x")


async def test_retry_of_a_final_message_is_refused(mailbox: Mailbox) -> None:
    message = await mailbox.create(fax())
    await mailbox.lease("w", types=[MessageType.FAX], limit=1)
    await mailbox.transition(message.id, MessageStatus.SENT, reason="ok", lease_owner="w")
    with pytest.raises((InvalidTransition, LeaseLost)):
        await mailbox.retry_later(message.id, "w", delay=1, reason="x")


async def test_two_mailboxes_in_one_process_never_share_a_message(
    mailbox_settings: MailboxSettings,
) -> None:
    first = await Mailbox.open(mailbox_settings)
    second = await Mailbox.open(mailbox_settings)
    try:
        await first.create_many([sms() for _ in range(300)])

        async def drain(box: Mailbox, owner: str) -> list[int]:
            got: list[int] = []
            while batch := await box.lease(owner, types=[MessageType.SMS], limit=7):
                got.extend(m.id for m in batch)
                await asyncio.sleep(0.002)  # as a worker does: send, then come back
            return got

        a, b = await asyncio.gather(drain(first, "a"), drain(second, "b"))
        assert not set(a) & set(b)
        assert len(a) + len(b) == 300
        assert a
        assert b
    finally:
        await first.close()
        await second.close()


WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from gatewayd.config.settings import MailboxSettings
    from gatewayd.mailbox import Mailbox
    from gatewayd.model import MessageType

    async def main(data_dir, database_url, owner):
        settings = MailboxSettings(data_dir=Path(data_dir), database_url=database_url)
        box = await Mailbox.open(settings)
        got = []
        while batch := await box.lease(owner, types=[MessageType.SMS], limit=5):
            got.extend(m.id for m in batch)
            await asyncio.sleep(0.002)  # as a worker does: send, then come back
        await box.close()
        print(json.dumps(got))

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
    """
)


@pytest.mark.slow
def test_two_worker_processes_never_lease_the_same_message(
    mailbox_settings: MailboxSettings,
) -> None:
    async def fill() -> set[int]:
        box = await Mailbox.open(mailbox_settings)
        try:
            return {m.id for m in await box.create_many([sms() for _ in range(2000)])}
        finally:
            await box.close()

    created = asyncio.run(fill())
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(mailbox_settings.data_dir),
                mailbox_settings.database_url,
                name,
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for name in ("p1", "p2")
    ]
    results = [json.loads(w.communicate(timeout=120)[0]) for w in workers]
    assert all(w.returncode == 0 for w in workers)
    first, second = (set(r) for r in results)
    assert len(results[0]) == len(first)
    assert len(results[1]) == len(second)
    assert not first & second
    assert first | second == created
    assert first, "both processes should have had work"
    assert second, "both processes should have had work"
