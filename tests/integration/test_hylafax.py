"""The HylaFAX carrier against a real hfaxd and faxq (Debian's hylafax-server, started
by tests/hylafax.py on a private spool). With no modem, jobs wait: these tests cover
login, upload, job parameters, submit, reading the queues, finding a job by its tag,
cancelling, a kill time passing (-> SendingFailed), and a refused login. What HylaFAX
reports for calls that were made is read from recorded lines in
tests/unit/test_hylafax_status.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from gatewayd.clock import ManualClock
from gatewayd.config.settings import FaxSettings, HostPort, HylafaxSettings, Settings, User
from gatewayd.fax.carrier import CarrierRefused, CarrierUnavailable, Failed, FaxJob
from gatewayd.fax.dispatcher import FaxDispatcher
from gatewayd.fax.hylafax import HylafaxCarrier
from gatewayd.mailbox import Mailbox, NewAttachment
from gatewayd.model import AttachmentType, FaxErrorCode, MessageStatus
from gatewayd.render.job import Renderer, RenderOptions, Source
from gatewayd.render.kinds import Kind
from tests import documents
from tests.conftest import ACCOUNT, EXTENSION, fax
from tests.hylafax import Hylafax, available, hylafax_server
from tests.smtp_client import free_port

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


@pytest.fixture(scope="module")
def server() -> Iterator[Hylafax]:
    with hylafax_server() as running:
        yield running


def carrier_for(server: Hylafax, **more: object) -> HylafaxCarrier:
    settings = HylafaxSettings(
        address=HostPort("127.0.0.1", server.port), username=server.username,
        password=server.password, poll_interval=0.2, max_dials=3, max_tries=2,
    )  # fmt: skip
    return HylafaxCarrier(replace(settings, **more))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-page fax TIFF as the renderer makes it."""
    out = tmp_path_factory.mktemp("tiff") / "fax.tif"
    pdf = tmp_path_factory.mktemp("pdf") / "in.pdf"
    pdf.write_bytes(documents.dense_text_pdf(2))

    async def render() -> None:
        renderer = Renderer(1)
        try:
            await renderer.render([Source("in.pdf", Kind.PDF, pdf)], None,
                                  RenderOptions.from_settings(FaxSettings()), out)  # fmt: skip
        finally:
            await renderer.close()

    asyncio.run(render())
    return out


def job_for(
    tiff: Path,
    clock: ManualClock,
    *,
    message_id: int = 7,
    attempt: int = 1,
    kill_in: timedelta = timedelta(hours=3),
) -> FaxJob:
    return FaxJob(
        message_id=message_id, attempt=attempt, tiff=tiff, destination="+4940123456",
        pages=2, resolution="fine", paper="a4", station_id="+4930123457",
        header='Alice "Example" +4930123457', kill_at=clock.now() + kill_in,
        handed_at=clock.now(),
    )  # fmt: skip


async def test_a_job_is_submitted_waits_is_found_and_cancelled(
    server: Hylafax, tiff: Path, clock: ManualClock
) -> None:
    carrier = carrier_for(server)
    job = job_for(tiff, clock, message_id=101)
    ref = await carrier.submit(job)
    assert ref.isdigit()
    assert await carrier.status([ref]) == {}  # no modem: it waits
    [line] = [j for j in await carrier._jobs() if j.job_id == ref]
    assert line.tag == "gatewayd-101-1"
    assert (line.max_dials, line.max_tries) == (3, 2)  # pages are counted when it is sent
    assert line.state in {"W", "B", "P", "S", "T"}
    queue_file = (server.spool / "sendq" / f"q{ref}").read_text()
    for field in ("number:+4940123456", "resolution:196", "pagewidth:209", "pagelength:296",
                  "tsi:+4930123457", "jobtag:gatewayd-101-1", "notify:none",
                  "sender:Alice 'Example' +4930123457"):  # fmt: skip
        assert f"\n{field}\n" in queue_file, field
    assert await carrier.find(job) == ref
    assert await carrier.find(replace(job, attempt=2)) is None
    await carrier.cancel(ref)
    result = await _wait_for_result(carrier, ref)
    assert isinstance(result, Failed)
    assert result.code is FaxErrorCode.CALL_FAILED
    assert not result.temporary
    assert result.reason.startswith("HylaFAX: Job aborted by request")
    await carrier.cancel(ref)  # again: already done, no error


async def _wait_for_result(carrier: HylafaxCarrier, ref: str, within: float = 90) -> object:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        found = await carrier.status([ref])
        if ref in found:
            return found[ref]
        await asyncio.sleep(0.25)
    raise AssertionError(f"no result for job {ref} within {within} s")


async def test_a_refused_login_is_a_clear_carrier_error(server: Hylafax) -> None:
    carrier = carrier_for(server, password="wrong")
    with pytest.raises(CarrierRefused) as caught:
        await carrier.status(["1"])
    message = str(caught.value)
    assert "refused the login of 'gatewayd'" in message
    assert "[fax.hylafax] username and password" in message


async def test_a_server_that_is_not_there_is_unavailable(server: Hylafax) -> None:
    carrier = HylafaxCarrier(HylafaxSettings(address=HostPort("127.0.0.1", free_port())))
    with pytest.raises(CarrierUnavailable, match="cannot reach hfaxd"):
        await carrier.status(["1"])


@pytest.fixture
async def dispatcher(
    mailbox: Mailbox, server: Hylafax, tmp_path: Path
) -> AsyncIterator[FaxDispatcher]:
    hylafax = replace(carrier_for(server).settings, kill_time=60.0)
    settings = Settings(
        fax=FaxSettings(carrier="hylafax", hylafax=hylafax),
        users=(User(("alice@example.com",), ACCOUNT, EXTENSION, "101", "Alice"),),
    )
    renderer = Renderer(1)
    carrier = HylafaxCarrier(settings.fax.hylafax)
    running = FaxDispatcher(mailbox, settings, carrier, renderer, poll_interval=0.5)
    task = asyncio.create_task(running.run())
    try:
        yield running
    finally:
        running.stop()
        await asyncio.wait_for(task, 30)
        await renderer.close()


@pytest.mark.parametrize("mailbox_settings", ["sqlite"], indirect=True)
async def test_a_kill_time_passing_fails_the_fax(
    mailbox: Mailbox, dispatcher: FaxDispatcher
) -> None:
    document = NewAttachment(AttachmentType.SOURCE_DOCUMENT, "application/pdf",
                             data=documents.dense_text_pdf(1), file_name="a.pdf")  # fmt: skip
    message = await mailbox.create(replace(fax(), attachments=(document,)))
    deadline = asyncio.get_running_loop().time() + 150
    while asyncio.get_running_loop().time() < deadline:
        current = await mailbox.get(message.id)
        if current.message_status is not MessageStatus.QUEUED:
            break
        await asyncio.sleep(0.5)
    assert current.message_status is MessageStatus.SENDING_FAILED
    assert current.fax_error_code == "NoCallTime"
    assert current.carrier == "hylafax"
    assert (current.failure_reason or "").startswith("HylaFAX: Kill time expired")
    reasons = [e.reason for e in await mailbox.events(message.id)]
    assert f"submitted to hylafax as {current.carrier_ref}" in reasons
