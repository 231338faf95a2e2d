"""The fax dispatcher with the spool carrier on a real mailbox (SQLite and PostgreSQL)
and real rendering: Queued fax -> TIFF and job file in the outbox -> result file ->
Sent or SendingFailed; retries on a clock the test moves; scheduled sends; deletion
cancelling; restart safety."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gatewayd.clock import ManualClock
from gatewayd.config.settings import FaxSettings, Settings, SpoolSettings, User
from gatewayd.fax.carrier import FaxJob
from gatewayd.fax.dispatcher import FaxDispatcher
from gatewayd.fax.spool import SpoolCarrier, parse_result
from gatewayd.mailbox import Mailbox, Message, NewAttachment
from gatewayd.model import (
    AttachmentType,
    AvailabilityAction,
    FaxErrorCode,
    MessageStatus,
    MessageType,
)
from gatewayd.render.job import Renderer
from tests import documents
from tests.conftest import ACCOUNT, EXTENSION, fax
from tests.faxcheck import assert_fax
from tests.integration.test_smpp import wait_until

USER = User(("alice@example.com",), ACCOUNT, EXTENSION, "101", "Alice Example",
            fax_number="+4930123457")  # fmt: skip


@pytest.fixture(scope="module")
def renderer() -> Iterator[Renderer]:
    pool = Renderer(2)
    yield pool
    asyncio.run(pool.close())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    spool = SpoolSettings(outbox=tmp_path / "outbox", results=tmp_path / "results")
    return Settings(
        fax=FaxSettings(max_attempts=3, retry_delay=60.0, max_age=86_400.0, spool=spool),
        users=(USER,),
    )


@asynccontextmanager
async def running(
    mailbox: Mailbox, settings: Settings, renderer: Renderer, carrier: SpoolCarrier | None = None
) -> AsyncIterator[FaxDispatcher]:
    carrier = carrier or SpoolCarrier(settings.fax.spool)
    dispatcher = FaxDispatcher(mailbox, settings, carrier, renderer, poll_interval=0.05)
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        await asyncio.wait_for(task, 30)


async def until(check: Callable[[], Any], within: float = 30.0) -> Any:
    return await wait_until(check, within)


async def queue_fax(mailbox: Mailbox, pages: int = 2, **more: Any) -> int:
    document = NewAttachment(
        AttachmentType.SOURCE_DOCUMENT, "application/pdf",
        data=documents.dense_text_pdf(pages), file_name="contract.pdf",
    )  # fmt: skip
    message = await mailbox.create(replace(fax(**more), attachments=(document,)))
    return message.id


async def job_file(settings: Settings, ref: str) -> dict[str, Any]:
    path = settings.fax.spool.outbox / f"{ref}.json"

    async def check() -> dict[str, Any] | None:
        return json.loads(path.read_text()) if path.exists() else None

    return await until(check)  # type: ignore[no-any-return]


def write_result(settings: Settings, ref: str, result: dict[str, Any] | bytes) -> None:
    results = settings.fax.spool.results
    results.mkdir(parents=True, exist_ok=True)
    temporary = results / f".{ref}.tmp"
    temporary.write_bytes(result if isinstance(result, bytes) else json.dumps(result).encode())
    temporary.rename(results / f"{ref}.result.json")


async def with_ref(mailbox: Mailbox, message_id: int) -> Message:
    async def check() -> Message | None:
        message = await mailbox.get(message_id)
        return message if message.carrier_ref else None

    return await until(check)  # type: ignore[no-any-return]


async def final(mailbox: Mailbox, message_id: int) -> Message:
    async def check() -> Message | None:
        message = await mailbox.get(message_id)
        return message if message.message_status is not MessageStatus.QUEUED else None

    return await until(check)  # type: ignore[no-any-return]


async def test_a_fax_goes_out_through_the_spool_and_comes_back_sent(
    mailbox: Mailbox, settings: Settings, renderer: Renderer, clock: ManualClock
) -> None:
    message_id = await queue_fax(mailbox, pages=3)
    async with running(mailbox, settings, renderer):
        job = await job_file(settings, f"{message_id}-1")
        outbox = settings.fax.spool.outbox
        assert job["destination"] == "+4940123456"
        assert job["pages"] == 3
        assert (job["resolution"], job["vertical_dpi"], job["paper"]) == ("fine", 196, "a4")
        assert job["station_id"] == "+4930123457"
        assert job["header"] == "Alice Example +4930123457"
        assert job["document"] == f"{message_id}-1.tif"
        assert_fax(outbox / job["document"], count=3, resolution=196)
        assert sorted(p.name for p in outbox.iterdir()) == [f"{message_id}-1.json",
                                                            f"{message_id}-1.tif"]  # fmt: skip
        queued = await with_ref(mailbox, message_id)
        assert (queued.message_status, queued.carrier, queued.carrier_ref) == (
            MessageStatus.QUEUED, "spool", f"{message_id}-1",
        )  # fmt: skip
        write_result(settings, f"{message_id}-1", {"status": "sent", "pages": 3, "duration": 61.5})
        sent = await final(mailbox, message_id)
    assert sent.message_status is MessageStatus.SENT
    assert sent.fax_page_count == 3
    assert not (settings.fax.spool.results / f"{message_id}-1.result.json").exists()
    events = await mailbox.events(message_id)
    kinds = [(e.kind, e.reason) for e in events]
    assert ("rendered", "rendered") in kinds
    assert ("carrier", f"submitted to spool as {message_id}-1") in kinds
    last = events[-1]
    assert (last.kind, last.to_value) == ("status", "Sent")
    assert last.detail == {"carrier_ref": f"{message_id}-1", "pages": 3, "duration": 61.5}


async def test_a_permanent_failure_fails_at_once(
    mailbox: Mailbox, settings: Settings, renderer: Renderer
) -> None:
    message_id = await queue_fax(mailbox, pages=1)
    async with running(mailbox, settings, renderer):
        await job_file(settings, f"{message_id}-1")
        write_result(settings, f"{message_id}-1", {
            "status": "failed", "error_code": "NoFaxMachine", "reason": "a voice answered",
        })  # fmt: skip
        failed = await final(mailbox, message_id)
    assert failed.message_status is MessageStatus.SENDING_FAILED
    assert failed.fax_error_code == "NoFaxMachine"
    assert failed.failure_reason == "a voice answered"
    assert failed.to_json()["to"][0]["faxErrorCode"] == "NoFaxMachine"


async def test_busy_lines_are_retried_later_then_given_up(
    mailbox: Mailbox, settings: Settings, renderer: Renderer, clock: ManualClock
) -> None:
    message_id = await queue_fax(mailbox, pages=1)
    busy = {"status": "failed", "error_code": "LineBusy", "reason": "busy signal"}
    async with running(mailbox, settings, renderer) as dispatcher:
        for attempt, delay in ((1, 60), (2, 120)):
            await job_file(settings, f"{message_id}-{attempt}")
            write_result(settings, f"{message_id}-{attempt}", busy)

            async def back_in_queue() -> Message | None:
                message = await mailbox.get(message_id)
                return message if message.carrier_ref is None and not message.lease_owner else None

            waiting = await until(back_in_queue)
            assert waiting.message_status is MessageStatus.QUEUED
            assert waiting.next_attempt_at == clock.now() + timedelta(seconds=delay)
            await asyncio.sleep(0.3)  # not due: nothing new is written
            assert not (settings.fax.spool.outbox / f"{message_id}-{attempt + 1}.json").exists()
            clock.advance(delay)
            dispatcher.wake()
        await job_file(settings, f"{message_id}-3")
        write_result(settings, f"{message_id}-3", busy)
        failed = await final(mailbox, message_id)
    assert failed.message_status is MessageStatus.SENDING_FAILED
    assert failed.fax_error_code == "LineBusy"
    assert failed.failure_reason == "busy signal (gave up after 3 attempts)"
    assert failed.attempts == 3
    rendered = [e for e in await mailbox.events(message_id) if e.kind == "rendered"]
    assert len(rendered) == 1  # rendered once, sent three times


async def test_a_scheduled_fax_waits_for_its_time(
    mailbox: Mailbox, settings: Settings, renderer: Renderer, clock: ManualClock
) -> None:
    message_id = await queue_fax(mailbox, pages=1, send_time=clock.now() + timedelta(hours=2))
    async with running(mailbox, settings, renderer) as dispatcher:
        await asyncio.sleep(0.5)
        assert not settings.fax.spool.outbox.exists() or not any(
            settings.fax.spool.outbox.iterdir()
        )
        clock.advance(hours=2)
        dispatcher.wake()
        job = await job_file(settings, f"{message_id}-1")
    assert job["pages"] == 1


async def test_deleting_a_queued_fax_cancels_it_at_the_carrier(
    mailbox: Mailbox, settings: Settings, renderer: Renderer
) -> None:
    message_id = await queue_fax(mailbox, pages=1)
    async with running(mailbox, settings, renderer):
        await job_file(settings, f"{message_id}-1")
        await mailbox.change_availability(message_id, AvailabilityAction.DELETE, reason="user")
        cancelled = await final(mailbox, message_id)
    assert cancelled.message_status is MessageStatus.SENDING_FAILED
    assert cancelled.failure_reason == "cancelled: the fax was deleted before it was sent"
    assert list(settings.fax.spool.outbox.iterdir()) == []  # taken back before the sender


async def test_a_fax_cancelled_by_an_operator_is_taken_back_from_the_carrier(
    mailbox: Mailbox, settings: Settings, renderer: Renderer
) -> None:
    """``gatewayd messages cancel`` runs in a process of its own: another Mailbox on the
    same database. The dispatcher following the job sees the fax is no longer Queued
    and stops the job at the carrier."""
    message_id = await queue_fax(mailbox, pages=1)
    async with running(mailbox, settings, renderer) as dispatcher:
        await job_file(settings, f"{message_id}-1")
        await with_ref(mailbox, message_id)
        operator = await Mailbox.open(mailbox.settings)
        try:
            cancelled = await operator.cancel(message_id, reason="wrong number")
        finally:
            await operator.close()
        outbox = settings.fax.spool.outbox

        async def taken_back() -> bool:  # the job file and its TIFF
            return not dispatcher.tracked and not any(outbox.iterdir())

        await until(taken_back)
    assert cancelled.failure_reason == "cancelled: wrong number"
    stored = await mailbox.get(message_id)
    assert (stored.message_status, stored.failure_reason) == (
        MessageStatus.SENDING_FAILED,
        "cancelled: wrong number",
    )
    assert dispatcher.carrier_state == ("ok", None)


async def test_a_job_the_sender_already_took_is_asked_to_stop(
    mailbox: Mailbox, settings: Settings, renderer: Renderer
) -> None:
    message_id = await queue_fax(mailbox, pages=1)
    async with running(mailbox, settings, renderer):
        await job_file(settings, f"{message_id}-1")
        outbox = settings.fax.spool.outbox
        for name in (f"{message_id}-1.json", f"{message_id}-1.tif"):
            (outbox / name).unlink()  # what a sender does when it takes the job
        await mailbox.change_availability(message_id, AvailabilityAction.DELETE, reason="user")
        await final(mailbox, message_id)
    assert [p.name for p in outbox.iterdir()] == [f"{message_id}-1.cancel"]


async def test_a_malformed_result_is_moved_aside_and_a_good_one_counts(
    mailbox: Mailbox, settings: Settings, renderer: Renderer
) -> None:
    message_id = await queue_fax(mailbox, pages=1)
    ref = f"{message_id}-1"
    async with running(mailbox, settings, renderer):
        await job_file(settings, ref)
        write_result(settings, ref, b"{not json")
        rejected = settings.fax.spool.results / "rejected" / f"{ref}.result.json"

        async def moved() -> bool:
            return rejected.exists()

        await until(moved)
        assert (await mailbox.get(message_id)).message_status is MessageStatus.QUEUED
        write_result(settings, ref, {"status": "sent", "pages": 1})
        sent = await final(mailbox, message_id)
    assert sent.message_status is MessageStatus.SENT


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"[1]", "not a JSON object"),
        (b'{"status": "done"}', "status: 'done' is neither"),
        (b'{"status": "failed", "error_code": "Busy"}', "error_code: 'Busy' is not a faxErrorCode"),
        (b'{"status": "failed"}', "error_code: None is not a faxErrorCode"),
        (b'{"status": "sent", "pages": -1}', "pages: -1 is not a count"),
        (b'{"status": "sent", "duration": "long"}', "duration: 'long' is not a number"),
        (b"\xff", "not JSON"),
    ],
)
def test_result_files_are_checked(content: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_result(content)


def test_result_codes_say_whether_to_retry() -> None:
    busy = parse_result(b'{"status": "failed", "error_code": "NoAnswer"}')
    wrong = parse_result(b'{"status": "failed", "error_code": "InvalidNumber"}')
    assert (busy.temporary, wrong.temporary) == (True, False)  # type: ignore[union-attr]
    assert busy.code is FaxErrorCode.NO_ANSWER  # type: ignore[union-attr]


async def test_a_restart_follows_the_job_and_never_sends_it_twice(
    mailbox: Mailbox, settings: Settings, renderer: Renderer
) -> None:
    message_id = await queue_fax(mailbox, pages=1)
    async with running(mailbox, settings, renderer):
        await job_file(settings, f"{message_id}-1")
    # the daemon stopped with the job at the carrier; a new one starts
    async with running(mailbox, settings, renderer):
        await asyncio.sleep(0.5)
        names = sorted(p.name for p in settings.fax.spool.outbox.iterdir())
        assert names == [f"{message_id}-1.json", f"{message_id}-1.tif"]
        write_result(settings, f"{message_id}-1", {"status": "sent", "pages": 1})
        sent = await final(mailbox, message_id)
    assert sent.message_status is MessageStatus.SENT
    assert sent.attempts == 1


async def test_a_job_handed_over_just_before_a_crash_is_found_not_resent(
    mailbox: Mailbox, settings: Settings, renderer: Renderer
) -> None:
    """The process died after the carrier took the job and before its ref was stored:
    the message says which carrier it was going to, and the carrier knows the job."""
    message_id = await queue_fax(mailbox, pages=1)
    async with running(mailbox, settings, renderer) as dispatcher:
        await job_file(settings, f"{message_id}-1")
        owner = dispatcher.owner
        dispatcher.tracked.clear()  # this life forgets it...
    await mailbox.set_carrier(message_id, owner, carrier="spool", ref=None, reason="crash")
    async with running(mailbox, settings, renderer) as again:
        await until(lambda: _is_tracked(again, f"{message_id}-1"))
        assert (await mailbox.get(message_id)).carrier_ref == f"{message_id}-1"
        write_result(settings, f"{message_id}-1", {"status": "sent", "pages": 1})
        await final(mailbox, message_id)
    events = [e.reason for e in await mailbox.events(message_id)]
    assert events.count(f"submitted to spool as {message_id}-1") == 2  # recorded, not resent
    assert "handing over to spool" in events


async def _is_tracked(dispatcher: FaxDispatcher, ref: str) -> bool:
    return ref in dispatcher.tracked


async def test_past_its_kill_time_a_job_is_stopped(
    mailbox: Mailbox, settings: Settings, renderer: Renderer, clock: ManualClock
) -> None:
    message_id = await queue_fax(mailbox, pages=1)
    async with running(mailbox, settings, renderer):
        job = await job_file(settings, f"{message_id}-1")
        assert job["kill_at"] == (clock.now() + timedelta(hours=3)).isoformat()
        clock.advance(hours=3, minutes=6)
        failed = await final(mailbox, message_id)
    assert failed.message_status is MessageStatus.SENDING_FAILED
    assert failed.fax_error_code == "CallFailed"
    assert "did not send it before its kill time" in (failed.failure_reason or "")
    assert list(settings.fax.spool.outbox.iterdir()) == []


async def test_a_document_that_cannot_be_faxed_fails_with_its_reason(
    mailbox: Mailbox, settings: Settings, renderer: Renderer
) -> None:
    bad = NewAttachment(AttachmentType.SOURCE_DOCUMENT, "application/pdf",
                        data=b"%PDF-1.4 not really", file_name="broken.pdf")  # fmt: skip
    message = await mailbox.create(replace(fax(), attachments=(bad,)))
    async with running(mailbox, settings, renderer):
        failed = await final(mailbox, message.id)
    assert failed.fax_error_code == "RenderingFailed"
    assert "broken.pdf" in (failed.failure_reason or "")
    assert not settings.fax.spool.outbox.exists() or not any(settings.fax.spool.outbox.iterdir())


async def test_an_unwritable_outbox_is_a_retry_not_a_loss(
    mailbox: Mailbox, settings: Settings, renderer: Renderer, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the outbox should be")
    spool = SpoolSettings(outbox=blocked / "outbox", results=tmp_path / "results")
    broken = replace(settings, fax=replace(settings.fax, spool=spool))
    message_id = await queue_fax(mailbox, pages=1)
    async with running(mailbox, broken, renderer):

        async def retried() -> Message | None:
            message = await mailbox.get(message_id)
            return message if message.lease_owner is None and message.attempts else None

        waiting = await until(retried)
    assert waiting.message_status is MessageStatus.QUEUED
    events = [e for e in await mailbox.events(message_id) if e.kind == "retry"]
    assert "cannot write to the fax outbox" in events[-1].reason


async def test_only_faxes_are_taken(
    mailbox: Mailbox, settings: Settings, renderer: Renderer
) -> None:
    from tests.conftest import sms

    text = await mailbox.create(sms())
    async with running(mailbox, settings, renderer):
        await asyncio.sleep(0.3)
    untouched = await mailbox.get(text.id)
    assert (untouched.type, untouched.attempts) == (MessageType.SMS, 0)


async def test_after_a_restart_the_job_keeps_its_kill_time(
    mailbox: Mailbox, settings: Settings, renderer: Renderer, clock: ManualClock
) -> None:
    message_id = await queue_fax(mailbox, pages=1)
    async with running(mailbox, settings, renderer):
        await job_file(settings, f"{message_id}-1")
        await with_ref(mailbox, message_id)
    async with running(mailbox, settings, renderer) as again:
        await until(lambda: _is_tracked(again, f"{message_id}-1"))
        assert again.tracked[f"{message_id}-1"].kill_at == clock.now() + timedelta(hours=3)
        clock.advance(hours=3, minutes=6)
        failed = await final(mailbox, message_id)
    assert "did not send it before its kill time" in (failed.failure_reason or "")


async def test_cancelling_a_fax_the_carrier_has_takes_it_back_there(
    mailbox: Mailbox, settings: Settings, renderer: Renderer
) -> None:
    message_id = await queue_fax(mailbox, pages=1)
    async with running(mailbox, settings, renderer) as dispatcher:
        await job_file(settings, f"{message_id}-1")
        await with_ref(mailbox, message_id)  # the mailbox knows the carrier has it
        cancelled = await mailbox.cancel(message_id, reason="wrong number")
        assert cancelled.failure_reason == "cancelled: wrong number"
        outbox = settings.fax.spool.outbox

        async def taken_back() -> bool:
            return list(outbox.iterdir()) == [] and dispatcher.jobs == 0

        await until(taken_back)  # the dispatcher let it go
    message = await mailbox.get(message_id)
    assert message.message_status is MessageStatus.SENDING_FAILED
    assert message.carrier_ref is not None  # the job it was, on record


class _CancelledWhileTaken(SpoolCarrier):
    """The spool carrier, with the fax cancelled in the mailbox just as the carrier has
    taken it and before the dispatcher records that it has."""

    def __init__(self, settings: SpoolSettings, mailbox: Mailbox) -> None:
        super().__init__(settings)
        self.mailbox = mailbox
        self.taken: list[str] = []

    async def submit(self, job: FaxJob) -> str:
        ref = await super().submit(job)
        self.taken.append(ref)
        await self.mailbox.cancel(job.message_id, reason="wrong number")
        return ref


async def test_a_fax_cancelled_while_the_carrier_takes_it_is_taken_back_there(
    mailbox: Mailbox, settings: Settings, renderer: Renderer
) -> None:
    message_id = await queue_fax(mailbox, pages=1)
    carrier = _CancelledWhileTaken(settings.fax.spool, mailbox)
    async with running(mailbox, settings, renderer, carrier) as dispatcher:

        async def taken() -> bool:
            return bool(carrier.taken)

        await until(taken)
        outbox = settings.fax.spool.outbox

        async def taken_back() -> bool:  # the dispatcher lets go just after the carrier
            return list(outbox.iterdir()) == [] and dispatcher.jobs == 0

        await until(taken_back)  # the job file the carrier took is gone again
    message = await mailbox.get(message_id)
    assert (message.message_status, message.failure_reason) == (
        MessageStatus.SENDING_FAILED,
        "cancelled: wrong number",
    )
    assert carrier.taken == [f"{message_id}-1"]
