"""The HTTP API attacked, over real HTTP (uvicorn on a loopback port, as the daemon
runs it, on a real SQLite mailbox): bodies without a token, silent and slow clients,
too many connections, too many recipients, a forged Host header, sync tokens of no
time of ours, parse errors and internal errors in our words, with the loop's lag
measured while it happens."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import socket
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatewayd.api.app import ApiServer, create_app
from gatewayd.api.auth import Authenticator
from gatewayd.api.deps import Context
from gatewayd.clock import ManualClock
from gatewayd.config.settings import ApiSettings, HostPort, MailboxSettings, Settings, User
from gatewayd.credentials import hash_token
from gatewayd.mailbox import Mailbox, MessageQuery
from gatewayd.mailbox._schema import EPOCH
from gatewayd.model import Availability
from tests.conftest import ACCOUNT, EXTENSION, OUR_NUMBER, sms
from tests.hostile.conftest import API_PREFIX, connect_from, read_line
from tests.smtp_client import free_port

TOKEN = "hostile-api-token"
ALICE = User(
    ("alice@example.com",),
    ACCOUNT,
    EXTENSION,
    "101",
    "Alice",
    sms_numbers=(OUR_NUMBER,),
    fax_number="+4930123457",
    api_token_hash=hash_token(TOKEN),
)
DOCS = Path(__file__).resolve().parents[1] / "data" / "docs"


class Api:
    def __init__(self, server: ApiServer, mailbox: Mailbox) -> None:
        self.server = server
        self.mailbox = mailbox
        self.port = server.port
        self.base = f"http://127.0.0.1:{server.port}"

    def client(self, token: str | None = TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.base, headers=headers, timeout=30)


@pytest.fixture
async def make_api(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Api]]]:
    running: list[Api] = []

    async def make(mailbox: Mailbox | None = None, **api: Any) -> Api:
        settings = Settings(
            api=ApiSettings(
                **{"listen": HostPort("127.0.0.1", free_port()), "rate_limits": False, **api}
            ),
            users=(ALICE,),
        )
        if mailbox is None:
            data = MailboxSettings(data_dir=tmp_path / f"data{len(running)}")
            mailbox = await Mailbox.open(data, clock=ManualClock())
        server = ApiServer(create_app(Context(mailbox, Authenticator(settings, mailbox))), settings)
        await server.start()
        made = Api(server, mailbox)
        running.append(made)
        return made

    yield make
    for api in running:
        await api.server.stop()
        await api.mailbox.close()


class LagProbe:
    """How late the test's loop (the API's loop) wakes up, sampled every 10 ms."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + 0.01
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, loop.time() - due)

    def __enter__(self) -> LagProbe:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


def _raw(port: int, head: bytes, source: str = "127.0.0.1") -> socket.socket:
    sock = connect_from("127.0.0.1", port, source)
    sock.sendall(head)
    return sock


def _status(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    line = read_line(sock)
    status = int(line.split()[1]) if line else 0
    headers = {}
    while True:
        header = read_line(sock).strip()
        if not header:
            break
        name, _, value = header.decode().partition(":")
        headers[name.lower()] = value.strip()
    body = sock.recv(65536) if status else b""
    return status, headers, body


def _trickle(sock: socket.socket, data: bytes, started: float) -> None:
    """``data`` a byte every 50 ms (never still for a second) until the server cuts the
    connection or 3 s have passed since ``started``."""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return
        time.sleep(0.05)
        if time.monotonic() - started > 3:
            return


# A message-store change whose head is whole and whose 100-byte body has begun.
_BODY_BEGUN = (
    f"PUT {API_PREFIX}/message-store/1 HTTP/1.1\r\nHost: x\r\n"
    f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
    "Content-Length: 100\r\n\r\n{"
).encode()


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


# -- authentication before the body ---------------------------------------------------------


async def test_without_a_token_the_body_is_never_read(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    api = await make_api()
    async with api.client(token=None) as anonymous:
        bad = await anonymous.put(f"{API_PREFIX}/message-store/1", content=b"{not json")
        assert (bad.status_code, bad.json()["errorCode"]) == (401, "CMN-405")
    # 54 MB announced to a path ending in /fax: the answer comes before any of it.
    head = (
        f"PUT {API_PREFIX}/message-store/fax HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nContent-Length: 54000000\r\n\r\n"
    ).encode()

    def attempt(head: bytes) -> tuple[int, dict[str, str], bytes]:
        sock = _raw(api.port, head + b"[" * 1000)
        try:
            return _status(sock)
        finally:
            sock.close()

    with LagProbe() as lag:
        status, headers, body = await asyncio.to_thread(attempt, head)
        assert (status, json.loads(body)["errorCode"]) == (401, "CMN-405")
        assert headers["connection"] == "close"
        with_token = head.replace(
            b"Host: x\r\n", f"Host: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode()
        )
        status, _, body = await asyncio.to_thread(attempt, with_token)
        assert (status, json.loads(body)["errorCode"]) == (413, "CMN-104")  # 1 MB off POST …/fax
        # POST …/sms, the route with a short way past FastAPI (rate limits are off here,
        # so it is in play): a wrong token is refused before any of the body is read.
        sms = (
            f"POST {API_PREFIX}/sms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
            "Content-Type: application/json\r\nContent-Length: 54000000\r\n\r\n"
        ).encode()
        status, headers, body = await asyncio.to_thread(attempt, sms)
        assert (status, json.loads(body)["errorCode"]) == (401, "OAU-149")
        assert headers["connection"] == "close"
        status, _, body = await asyncio.to_thread(
            attempt, sms.replace(b"Bearer wrong", f"Bearer {TOKEN}".encode())
        )
        assert (status, json.loads(body)["errorCode"]) == (413, "CMN-104")
    assert lag.worst < 0.5


# -- silent and slow clients ------------------------------------------------------------------


async def test_silent_slow_header_and_slow_body_clients_are_cut_off(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    api = await make_api(header_timeout=1.0, body_timeout=1.0)

    def silent() -> float:
        started = time.monotonic()
        sock = connect_from("127.0.0.1", api.port)
        with sock:
            assert _closed(sock)
        return time.monotonic() - started

    def slow_header() -> tuple[float, int]:
        started = time.monotonic()
        sock = connect_from("127.0.0.1", api.port)
        with sock:
            _trickle(sock, b"GET /metrics HTTP/1.1\r\nHost: x\r\n", started)
            status, _, _ = _status(sock)
        return time.monotonic() - started, status

    def slow_body() -> tuple[float, int]:
        started = time.monotonic()
        sock = _raw(api.port, _BODY_BEGUN)
        with sock:
            time.sleep(1.6)  # a pause longer than body_timeout
            with contextlib.suppress(OSError):
                sock.sendall(b'"readStatus"')
            status, _, _ = _status(sock)
        return time.monotonic() - started, status

    with LagProbe() as lag:
        waited, (header_time, header_status), (body_time, body_status) = await asyncio.gather(
            asyncio.to_thread(silent), asyncio.to_thread(slow_header), asyncio.to_thread(slow_body)
        )
    assert 0.8 < waited < 3
    assert (header_status, header_time < 3) == (408, True)
    assert (body_status, body_time < 3) == (408, True)
    assert lag.worst < 0.5


async def test_a_kept_alive_client_slow_in_its_next_request_is_cut_off(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    """The timers of a request are armed once the bytes at hand are parsed (none for a
    request that came whole): a second request on the connection whose head or body
    then trickles in is timed out all the same."""
    api = await make_api(header_timeout=1.0, body_timeout=1.0)

    def second(request: bytes, tail: bytes) -> tuple[int, float, int]:
        sock = _raw(api.port, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        with sock:
            first, headers, body = _status(sock)
            while len(body) < int(headers["content-length"]):
                body += sock.recv(65536)
            started = time.monotonic()
            sock.sendall(request)  # the head begun (or whole, and the body begun)
            _trickle(sock, tail, started)
            status, _, _ = _status(sock)
        return first, time.monotonic() - started, status

    head = asyncio.to_thread(second, b"GET /nowhere HTTP/1.1\r\n", b"Host: x\r\n" * 20)
    body = asyncio.to_thread(second, _BODY_BEGUN, b"")  # (and then nothing)
    (
        (head_first, head_time, head_status),
        (body_first, body_time, body_status),
    ) = await asyncio.gather(head, body)
    assert (head_first, head_status, head_time < 3) == (404, 408, True)
    assert (body_first, body_status, body_time < 3) == (404, 408, True)


async def test_connections_beyond_the_caps_are_answered_503(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    api = await make_api(max_connections=6, max_connections_per_address=2)

    def scenario() -> list[int]:
        held = [connect_from("127.0.0.1", api.port, "127.0.0.1") for _ in range(2)]
        statuses = []
        try:
            third = _raw(api.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = _status(third)
            third.close()
            statuses.append(status)
            assert json.loads(body)["errorCode"] == "CMN-203"
            assert headers["retry-after"] == "10"
            held += [connect_from("127.0.0.1", api.port, f"127.0.0.{n}") for n in (2, 3, 4, 5)]
            seventh = _raw(api.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "127.0.0.6")
            statuses.append(_status(seventh)[0])
            seventh.close()
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.3)
        again = _raw(api.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        statuses.append(_status(again)[0])
        again.close()
        return statuses

    assert await asyncio.to_thread(scenario) == [503, 503, 200]


# -- what the answers say ---------------------------------------------------------------------


async def test_links_ignore_the_host_header(make_api: Callable[..., Awaitable[Api]]) -> None:
    api = await make_api(public_url="https://gateway.example.com")
    made = await api.mailbox.create(sms())
    async with api.client() as client:
        headers = {"Host": "evil.example"}
        listed = (await client.get(f"{API_PREFIX}/message-store", headers=headers)).json()
        one = (await client.get(f"{API_PREFIX}/message-store/{made.id}", headers=headers)).json()
        synced = await client.get(
            f"{API_PREFIX}/message-sync", params={"syncType": "FSync"}, headers=headers
        )
    text = json.dumps([listed, one, synced.json()])
    assert "evil.example" not in text
    assert listed["uri"].startswith("https://gateway.example.com/restapi/")
    assert one["uri"].startswith("https://gateway.example.com/restapi/")
    assert synced.json()["uri"].startswith("https://gateway.example.com/restapi/")


def _token(at: str, conversation: int | None = None) -> str:
    filters = {"messageType": [], "direction": [], "conversationId": conversation}
    raw = json.dumps({"v": 1, "t": at, "f": filters}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_sync_tokens_of_no_time_of_ours_are_msg_333(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    api = await make_api()
    async with api.client() as client:
        for token in (
            _token("0001-01-01T00:00:00+00:00"),
            _token("2026-11-01T00:00:00+00:00", 10**20),
            _token("9999-12-31T00:00:00+00:00"),
        ):
            answer = await client.get(
                f"{API_PREFIX}/message-sync", params={"syncType": "ISync", "syncToken": token}
            )
            assert (answer.status_code, answer.json()["errorCode"]) == (400, "MSG-333")
        full = await client.get(
            f"{API_PREFIX}/message-sync",
            params={"syncType": "FSync", "dateTo": "0001-01-01T00:00:00Z"},
        )
        assert full.status_code == 200, full.text


async def test_a_fax_to_two_hundred_numbers_is_refused(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    api = await make_api()
    pdf = (DOCS / "one-page.pdf").read_bytes()
    parts: list[tuple[str, tuple[str | None, Any, ...]]] = [
        ("to", (None, f"+4940123{n:04d}")) for n in range(200)
    ]
    parts.append(("attachment", ("a.pdf", pdf, "application/pdf")))
    async with api.client() as client:
        answer = await client.post(f"{API_PREFIX}/fax", files=parts)
    assert (answer.status_code, answer.json()["errorCode"]) == (400, "CMN-101")
    assert answer.json()["message"].endswith("At most 50 destinations.")
    everything = MessageQuery(extension_id=None, date_from=EPOCH, availability=tuple(Availability))
    page = await api.mailbox.find(everything)
    assert page.records == []


async def test_broken_requests_are_answered_in_our_words(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    api = await make_api()
    async with api.client() as client:
        broken = await client.post(
            f"{API_PREFIX}/fax",
            content=b"--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n",
            headers={"Content-Type": "multipart/form-data; boundary=x"},  # a part without a name
        )
        nested = b"".join(
            b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (n, n)
            for n in range(1000)
        )
        deep = await client.post(
            f"{API_PREFIX}/fax",
            content=b'--top\r\nContent-Type: application/json\r\n\r\n{"to": ["+4940123456"]}'
            b"\r\n--top\r\n" + nested + b"--top--\r\n",
            headers={"Content-Type": 'multipart/mixed; boundary="top"'},
        )
    assert (broken.status_code, broken.json()["errorCode"]) == (400, "MSG-349")
    assert broken.json()["message"] == (
        "Unable to parse the fax request: not valid multipart/form-data"
    )
    assert (deep.status_code, deep.json()["errorCode"]) == (400, "MSG-349")
    assert "nested too deeply" in deep.json()["message"]
    for answer in (broken, deep):
        assert "Error" not in answer.text
        assert "Exception" not in answer.text


async def test_a_zip_bomb_through_the_api_does_not_hold_the_loop(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    api = await make_api()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", b"application/vnd.oasis.opendocument.text" + b"x" * 2**30)
    async with api.client() as client:
        with LagProbe() as lag:
            bomb = ("plan.odt", out.getvalue(), "application/octet-stream")
            answer = await client.post(
                f"{API_PREFIX}/fax", files=[("to", (None, "+4940123456")), ("attachment", bomb)]
            )
    assert (answer.status_code, answer.json()["errorCode"]) == (415, "MSG-348")
    assert lag.worst < 0.5


async def test_an_internal_error_is_logged_with_its_traceback_and_answered_plainly(
    make_api: Callable[..., Awaitable[Api]],
    json_log: Callable[[], list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = await make_api()

    async def a_bug(query: MessageQuery, base_url: str) -> Any:
        raise RuntimeError("a bug in a query")

    # No real part fails on demand: the mailbox's list read is made to fail as a bug
    # would; everything else is real.
    monkeypatch.setattr(api.mailbox, "find_json", a_bug)
    async with api.client() as client:
        answer = await client.get(f"{API_PREFIX}/message-store")
    assert (answer.status_code, answer.json()["errorCode"]) == (500, "CMN-201")
    assert "RuntimeError" not in answer.text
    assert "bug" not in answer.text
    [line] = [x for x in json_log() if x["event"] == "api.internal_error"]
    assert "Traceback" in line["exception"]
    assert "RuntimeError: a bug in a query" in line["exception"]
