"""The SIP user agent against a scripted far end on a real UDP socket: the test plays
the trunk (proxy) byte by byte, so each RFC 3261 behaviour can be watched: 100 Trying,
404 / 403 / 486 for calls we do not take, retransmissions and their timers (A, B, E,
F for requests we send; G, H, J and the 2xx resends for ones we answer), the T.38
re-INVITE in both directions with glare (491), CANCEL after the ring timeout, and
digest credentials on INVITE. Timers are shortened (T1 = 20 ms); nothing else is
changed. No media is faxed here (tests/integration/test_sip_fax.py does that)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from gatewayd.config.settings import (
    FaxSettings,
    HostPort,
    MailboxSettings,
    Settings,
    SipSettings,
    User,
)
from gatewayd.fax.carrier import CarrierRefused, Failed, FaxJob
from gatewayd.fax.sip import call as call_module
from gatewayd.fax.sip import sdp
from gatewayd.fax.sip.carrier import SipCarrier
from gatewayd.fax.sip.inbound import InboundFaxes, Note
from gatewayd.fax.sip.message import NameAddr, Request, Response, parse
from gatewayd.fax.sip.service import SipService
from gatewayd.fax.sip.transaction import Timers, TransactionTimeout
from gatewayd.mailbox import Mailbox, MessageQuery
from gatewayd.model import Direction, FaxErrorCode, MessageStatus
from tests.kamailio import free_port_udp_and_tcp
from tests.sip_gateways import fax_pdf

BOB_FAX = "+4940222222"
FAST = Timers(t1=0.02, t2=0.16, t4=0.2)
AUDIO_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
)
T38_OFFER = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=image {port} udptl t38\r\na=T38FaxVersion:0\r\na=T38MaxBitRate:14400\r\n"
    "a=T38FaxRateManagement:transferredTCF\r\na=T38FaxMaxDatagram:400\r\n"
    "a=T38FaxUdpEC:t38UDPRedundancy\r\n"
)
_numbers = itertools.count(1)


class FarEnd(asyncio.DatagramProtocol):
    """The trunk, as the test scripts it: every datagram parsed and queued."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[Request | Response, tuple[str, int], float]] = (
            asyncio.Queue()
        )
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = int(transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((parse(data), addr, asyncio.get_running_loop().time()))

    def send(self, data: bytes | Request | Response, to: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(bytes(data), to)

    async def next(
        self, want: Callable[[Request | Response], bool] = lambda _m: True, within: float = 5
    ) -> tuple[Request | Response, tuple[str, int], float]:
        async def find() -> tuple[Request | Response, tuple[str, int], float]:
            while True:
                item = await self.queue.get()
                if want(item[0]):
                    return item

        return await asyncio.wait_for(find(), within)

    async def quiet(self, seconds: float, want: Callable[[Request | Response], bool]) -> int:
        """How many messages ``want`` picks arrive within ``seconds``."""
        count = 0
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while loop.time() < until:
            try:
                item = await asyncio.wait_for(self.queue.get(), until - loop.time())
            except TimeoutError:
                break
            count += want(item[0])
        return count


def is_response(status: int, method: str = "INVITE") -> Callable[[Request | Response], bool]:
    return lambda m: isinstance(m, Response) and m.status == status and m.cseq[1] == method


def is_request(method: str) -> Callable[[Request | Response], bool]:
    return lambda m: isinstance(m, Request) and m.method == method


def request(
    method: str,
    far: FarEnd,
    ua_port: int,
    *,
    number: str = BOB_FAX,
    call_id: str = "",
    cseq: int = 1,
    branch: str = "",
    to_tag: str = "",
    body: str = "",
    extra: str = "",
) -> bytes:
    branch = branch or f"z9hG4bKtest{next(_numbers)}"
    to = f"<sip:{number}@trunk.test>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:{number}@127.0.0.1:{ua_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{far.port};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:+4930111111@trunk.test>;tag=far1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id or f'call{next(_numbers)}@far'}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Contact: <sip:far@127.0.0.1:{far.port}>\r\n"
        f"{extra}"
        + ("Content-Type: application/sdp\r\n" if body else "")
        + f"Content-Length: {len(body)}\r\n\r\n{body}"
    )
    return text.encode()


def answer_to(message: Request, status: int, *, body: str = "", tag: str = "far2") -> bytes:
    response = Response(status, "OK" if status == 200 else "Whatever")
    for via in message.headers.get_all("Via"):
        response.headers.add("Via", via)
    response.headers.add("From", message.headers.get("From") or "")
    to = message.headers.get("To") or ""
    response.headers.add("To", to if NameAddr.parse(to).tag else f"{to};tag={tag}")
    response.headers.add("Call-ID", message.call_id)
    response.headers.add("CSeq", message.headers.get("CSeq") or "")
    if body:
        response.headers.add("Contact", "<sip:far@127.0.0.1>")
        response.headers.add("Content-Type", "application/sdp")
        response.body = body.encode()
    return bytes(response)


def settings(tmp_path: Path, far: FarEnd, **sip: object) -> Settings:
    values: dict[str, object] = {
        "proxy": HostPort("127.0.0.1", far.port),
        "local_address": HostPort("127.0.0.1", free_port_udp_and_tcp()),
        "media_ports": (23000, 23099),
        "register_interval": 0.0,
        "max_calls": 1,
    }
    values.update(sip)
    bob = User(("bob@example.com",), 1, 201, "201", "Bob", fax_number=BOB_FAX)
    fax = FaxSettings(carrier="sip", sip=SipSettings(**values))  # type: ignore[arg-type]
    return Settings(mailbox=MailboxSettings(data_dir=tmp_path / "data"), fax=fax, users=(bob,))


@pytest.fixture
async def far() -> AsyncIterator[FarEnd]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        FarEnd, local_addr=("127.0.0.1", 0)
    )
    try:
        yield protocol
    finally:
        transport.close()


class Running:
    def __init__(self, service: SipService, mailbox: Mailbox) -> None:
        self.service, self.mailbox = service, mailbox

    @property
    def port(self) -> int:
        return self.service.ua.transport.port

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


async def running(tmp_path: Path, far: FarEnd, **sip: object) -> Running:
    config = settings(tmp_path, far, **sip)
    mailbox = await Mailbox.open(config.mailbox)
    service = SipService(mailbox, config)
    service.ua.transactions.timers = FAST
    await service.start()
    return Running(service, mailbox)


async def stop(gateway: Running) -> None:
    await gateway.service.close()
    await gateway.mailbox.close()


async def test_options_is_answered_and_unknown_methods_are_not_allowed(
    tmp_path: Path, far: FarEnd
) -> None:
    gateway = await running(tmp_path, far)
    try:
        options = request("OPTIONS", far, gateway.port)
        far.send(options, gateway.address)
        ok, _, _ = await far.next(is_response(200, "OPTIONS"))
        assert "INVITE" in (ok.headers.get("Allow") or "")
        far.send(options, gateway.address)  # retransmitted: answered again (Timer J)
        again, _, _ = await far.next(is_response(200, "OPTIONS"))
        assert bytes(again) == bytes(ok)
        far.send(request("MESSAGE", far, gateway.port), gateway.address)
        refused, _, _ = await far.next(lambda m: isinstance(m, Response))
        assert isinstance(refused, Response)
        assert refused.status == 405
    finally:
        await stop(gateway)


async def test_calls_we_do_not_take_404_403_and_a_retransmitted_final_until_ack(
    tmp_path: Path, far: FarEnd
) -> None:
    gateway = await running(tmp_path, far)
    stranger_transport, stranger = await asyncio.get_running_loop().create_datagram_endpoint(
        FarEnd, local_addr=("127.0.0.2", 0)
    )
    try:
        body = AUDIO_OFFER.format(port=40000)
        invite = request("INVITE", far, gateway.port, number="+4940999999", body=body)
        far.send(invite, gateway.address)
        trying, _, _ = await far.next(is_response(100))
        first, _, at_first = await far.next(is_response(404))
        # Timer G resends the 404 (T1, doubling to T2) until the ACK or Timer H.
        _, _, at_second = await far.next(is_response(404))
        _, _, at_third = await far.next(is_response(404))
        assert at_third - at_second > (at_second - at_first) * 1.3
        assert isinstance(first, Response)
        ack = request(
            "ACK",
            far,
            gateway.port,
            number="+4940999999",
            call_id=first.call_id,
            branch=first.branch,
            to_tag=NameAddr.parse(first.headers.get("To") or "").tag,
        )
        far.send(ack, gateway.address)
        await asyncio.sleep(0.05)
        assert await far.quiet(0.5, is_response(404)) <= 1  # one may have crossed the ACK
        # Without an ACK it stops at Timer H (64*T1 = 1.28 s here).
        far.send(
            request("INVITE", far, gateway.port, number="+4940999999", body=body), gateway.address
        )
        resent = await far.quiet(2.0, is_response(404))
        assert 4 <= resent <= 12
        assert await far.quiet(0.6, is_response(404)) == 0
        # From anywhere but the proxy: 403.
        stranger.send(request("INVITE", stranger, gateway.port, body=body), gateway.address)
        refused, _, _ = await stranger.next(is_response(403))
        assert isinstance(refused, Response)
        assert trying.status == 100
    finally:
        stranger_transport.close()
        await stop(gateway)


async def answer_call(far: FarEnd, gateway: Running) -> tuple[Response, str]:
    """INVITE bob's number; the 200 (resent until the ACK we then send)."""
    invite = request("INVITE", far, gateway.port, body=AUDIO_OFFER.format(port=40000))
    far.send(invite, gateway.address)
    ok, _, _ = await far.next(is_response(200))
    assert isinstance(ok, Response)
    again, _, _ = await far.next(is_response(200))  # no ACK yet: the 2xx comes again
    assert again.call_id == ok.call_id
    tag = NameAddr.parse(ok.headers.get("To") or "").tag
    far.send(request("ACK", far, gateway.port, call_id=ok.call_id, to_tag=tag), gateway.address)
    return ok, tag


async def test_answered_then_our_t38_reinvite_glare_and_bye(tmp_path: Path, far: FarEnd) -> None:
    gateway = await running(tmp_path, far, t38=True)
    try:
        ok, tag = await answer_call(far, gateway)
        chosen = sdp.chosen(sdp.parse(ok.body), t38_offered=False)
        assert (chosen.kind, chosen.codec) == ("audio", "PCMA")
        ours, source, _ = await far.next(is_request("INVITE"))  # our T.38 re-INVITE
        assert isinstance(ours, Request)
        [image] = sdp.parse(ours.body).media
        assert sdp.is_t38(image)
        assert sdp.T38Params.of(image).udp_ec == sdp.EC_REDUNDANCY
        assert NameAddr.parse(ours.headers.get("From") or "").tag == tag
        # Glare: our own re-INVITE while theirs is pending gets 491.
        theirs = request(
            "INVITE",
            far,
            gateway.port,
            call_id=ok.call_id,
            cseq=2,
            to_tag=tag,
            body=T38_OFFER.format(port=40002),
        )
        far.send(theirs, gateway.address)
        pending, _, _ = await far.next(is_response(491))
        assert isinstance(pending, Response)
        far.send(answer_to(ours, 200, body=T38_OFFER.format(port=40002)), source)
        ack, _, _ = await far.next(is_request("ACK"))
        assert isinstance(ack, Request)
        assert ack.cseq == (ours.cseq[0], "ACK")
        far.send(
            request("BYE", far, gateway.port, call_id=ok.call_id, cseq=3, to_tag=tag),
            gateway.address,
        )
        bye_ok, _, _ = await far.next(is_response(200, "BYE"))
        assert isinstance(bye_ok, Response)
        for _ in range(100):
            if gateway.service.slots.used == 0:
                break
            await asyncio.sleep(0.05)
        assert gateway.service.slots.used == 0  # the line is free again
    finally:
        await stop(gateway)


async def test_without_t38_a_far_end_t38_reinvite_is_488_and_busy_is_486(
    tmp_path: Path, far: FarEnd
) -> None:
    gateway = await running(tmp_path, far, t38=False, max_calls=1)
    try:
        ok, tag = await answer_call(far, gateway)
        far.send(
            request(
                "INVITE",
                far,
                gateway.port,
                call_id=ok.call_id,
                cseq=2,
                to_tag=tag,
                body=T38_OFFER.format(port=40002),
            ),
            gateway.address,
        )
        refused, _, _ = await far.next(is_response(488))
        assert isinstance(refused, Response)
        # The one line is taken: the next call is busy.
        far.send(
            request("INVITE", far, gateway.port, body=AUDIO_OFFER.format(port=40010)),
            gateway.address,
        )
        busy, _, _ = await far.next(is_response(486))
        assert isinstance(busy, Response)
        assert not await far.quiet(0.3, is_request("INVITE"))  # and no T.38 re-INVITE from us
    finally:
        await stop(gateway)


def job(tiff: Path) -> FaxJob:
    now = datetime.now(UTC)
    return FaxJob(
        1, 1, tiff, "+4930555555", 1, "fine", "a4", "+4940222222", "", now + timedelta(hours=1), now
    )


async def test_invite_timers_a_and_b_to_a_silent_trunk(tmp_path: Path, far: FarEnd) -> None:
    gateway = await running(tmp_path, far)
    try:
        placing = asyncio.create_task(gateway.service.place(job(tmp_path / "none.tif")))
        times = []
        for _ in range(5):
            _, _, at = await far.next(is_request("INVITE"))
            times.append(at)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(later > earlier * 1.4 for earlier, later in itertools.pairwise(gaps))  # A
        result = await asyncio.wait_for(placing, 10)
        assert isinstance(result, Failed)
        assert result.code is FaxErrorCode.CALL_FAILED
        assert result.temporary
        assert "did not answer the call" in result.reason  # Timer B
    finally:
        await stop(gateway)


async def test_non_invite_timers_e_and_f_continue_at_t2_after_a_provisional(
    tmp_path: Path, far: FarEnd
) -> None:
    gateway = await running(tmp_path, far)
    ua = gateway.service.ua
    try:
        options = ua.new_request(
            "OPTIONS",
            "sip:trunk.test",
            from_="<sip:gw@trunk.test>;tag=1",
            to="<sip:trunk.test>",
            call_id="opt@test",
            cseq=1,
        )
        transaction = ua.send(options)
        first, source, t0 = await far.next(is_request("OPTIONS"))
        assert isinstance(first, Request)
        far.send(answer_to(first, 100), source)
        later = []
        while True:
            try:
                _, _, at = await far.next(is_request("OPTIONS"), within=0.5)
            except TimeoutError:
                break
            later.append(at)
        gaps = [b - a for a, b in itertools.pairwise([t0, *later])]
        assert len(gaps) >= 4
        assert all(gap > FAST.t2 * 0.7 for gap in gaps[1:])  # every T2 after the 1xx
        with pytest.raises(TransactionTimeout):
            await transaction.final  # Timer F
    finally:
        await stop(gateway)


async def test_ring_timeout_sends_cancel_and_is_no_answer(
    tmp_path: Path, far: FarEnd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(call_module, "RING_TIMEOUT", 0.5)
    gateway = await running(tmp_path, far)
    try:
        placing = asyncio.create_task(gateway.service.place(job(tmp_path / "none.tif")))
        invite, source, _ = await far.next(is_request("INVITE"))
        assert isinstance(invite, Request)
        far.send(answer_to(invite, 180), source)
        cancel, _, _ = await far.next(is_request("CANCEL"))
        assert isinstance(cancel, Request)
        assert cancel.branch == invite.branch
        far.send(answer_to(cancel, 200), source)
        far.send(answer_to(invite, 487), source)
        ack, _, _ = await far.next(is_request("ACK"))
        assert isinstance(ack, Request)
        assert ack.branch == invite.branch  # the ACK of a non-2xx is the INVITE's own
        result = await asyncio.wait_for(placing, 10)
        assert isinstance(result, Failed)
        assert (result.code, result.temporary) == (FaxErrorCode.NO_ANSWER, True)
    finally:
        await stop(gateway)


def digest_ok(value: str, password: str, method: str) -> bool:
    fields = {}
    for part in value.removeprefix("Digest ").split(", "):
        name, _, raw = part.partition("=")
        fields[name] = raw.strip('"')

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    ha1 = md5(f"{fields['username']}:{fields['realm']}:{password}")
    ha2 = md5(f"{method}:{fields['uri']}")
    expected = md5(f"{ha1}:{fields['nonce']}:{fields['nc']}:{fields['cnonce']}:auth:{ha2}")
    return fields["response"] == expected


async def test_invite_digest_credentials_then_busy_and_then_refused(
    tmp_path: Path, far: FarEnd
) -> None:
    gateway = await running(tmp_path, far, username="gw-a", password="secret-a")
    carrier = SipCarrier(gateway.service)
    challenge = 'Proxy-Authenticate: Digest realm="trunk.test", nonce="n1", qop="auth"\r\n'

    async def challenged(final: int) -> Failed:
        placing = asyncio.create_task(gateway.service.place(job(tmp_path / "none.tif")))
        first, source, _ = await far.next(is_request("INVITE"))
        assert isinstance(first, Request)
        far.send(
            answer_to(first, 407).replace(
                b"Content-Length", challenge.encode() + b"Content-Length"
            ),
            source,
        )
        await far.next(is_request("ACK"))
        second, _, _ = await far.next(is_request("INVITE"))
        assert isinstance(second, Request)
        assert second.cseq[0] == first.cseq[0] + 1
        assert second.call_id == first.call_id
        assert digest_ok(second.headers.get("Proxy-Authorization") or "", "secret-a", "INVITE")
        response = answer_to(second, final)
        if final == 407:
            response = response.replace(b"Content-Length", challenge.encode() + b"Content-Length")
        far.send(response, source)
        result = await asyncio.wait_for(placing, 10)
        assert isinstance(result, Failed)
        return result

    try:
        busy = await challenged(486)
        assert (busy.code, busy.temporary) == (FaxErrorCode.LINE_BUSY, True)
        assert gateway.service.trouble() is None
        refused = await challenged(407)  # the same credentials refused again
        assert refused.code is FaxErrorCode.CALL_FAILED
        assert "refused our credentials (SIP 407" in refused.reason
        assert "check [fax.sip] username (gw-a) and password" in refused.reason
        with pytest.raises(CarrierRefused, match="refused our credentials"):
            await carrier.submit(replace(job(tmp_path / "none.tif"), attempt=2))
    finally:
        await stop(gateway)


async def test_the_carrier_is_honest_about_calls_an_earlier_life_had(
    tmp_path: Path, far: FarEnd
) -> None:
    gateway = await running(tmp_path, far)
    carrier = SipCarrier(gateway.service)
    try:
        lost = await carrier.status(["123-1-deadbeef"])
        [result] = lost.values()
        assert isinstance(result, Failed)
        assert (result.code, result.temporary) == (FaxErrorCode.CALL_FAILED, True)
        assert "lost" in result.reason
    finally:
        await stop(gateway)


async def test_a_received_fax_left_in_the_spool_is_stored_later(
    tmp_path: Path, far: FarEnd
) -> None:
    """The mailbox could not take a received fax (or the daemon stopped first): the
    TIFF and its note stay in <data_dir>/fax/inbound and are stored on recovery."""
    config = settings(tmp_path, far)
    mailbox = await Mailbox.open(config.mailbox)
    try:
        inbound = InboundFaxes(mailbox, config)
        tiff = inbound.spool_path("left@far")
        (tmp_path / "doc.pdf").write_bytes(fax_pdf(2))
        argv = [sys.executable, "-m", "gatewayd", "render", str(tmp_path / "doc.pdf")]
        render = await asyncio.create_subprocess_exec(*argv, "-o", str(tiff))
        assert await render.wait() == 0
        note = Note(
            201, "+4930111111", BOB_FAX, "left@far", "T.38", 2, 31.5, "+49 30 111", 0, "OK", 0
        )
        tiff.with_suffix(".json").write_text(json.dumps(asdict(note)))
        assert await inbound.recover() == 1
        assert not tiff.exists()
        assert not tiff.with_suffix(".json").exists()
        page = await mailbox.find(MessageQuery(extension_id=201))
        [stored] = page.records
        assert (stored.direction, stored.message_status, stored.fax_page_count) == (
            Direction.INBOUND,
            MessageStatus.RECEIVED,
            2,
        )
        assert stored.from_.phone_number == "+4930111111"
        assert sorted(a.content_type for a in stored.attachments) == [
            "application/pdf",
            "image/tiff",
        ]
        [event] = [e for e in await mailbox.events(stored.id) if e.kind == "received"]
        assert event.reason == "received over SIP (T.38): 2 pages from +4930111111"
    finally:
        await mailbox.close()


async def test_a_call_cancelled_before_it_is_answered_gets_487(tmp_path: Path, far: FarEnd) -> None:
    gateway = await running(tmp_path, far)
    try:
        branch = "z9hG4bKcancelled"
        invite = request(
            "INVITE",
            far,
            gateway.port,
            call_id="c@far",
            branch=branch,
            body=AUDIO_OFFER.format(port=40000),
        )
        cancel = request("CANCEL", far, gateway.port, call_id="c@far", branch=branch)
        far.send(invite, gateway.address)
        far.send(cancel, gateway.address)
        cancelled, _, _ = await far.next(is_response(200, "CANCEL"))
        terminated, _, _ = await far.next(is_response(487))
        assert isinstance(cancelled, Response)
        assert isinstance(terminated, Response)
        assert await far.quiet(0.5, is_response(200)) == 0  # never answered
    finally:
        await stop(gateway)
