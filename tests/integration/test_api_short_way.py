"""``POST …/sms`` answered by the HTTP connection itself (api/sms_route.py through
api/protocol.py's ShortWay), over a real socket with hand-written HTTP/1.1: the
connection goes on as after any answer (keep-alive, pipelined requests, Connection:
close), what it declines reaches the app with its body, and its failures have the
documented shapes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gatewayd.api.app import ApiServer
from gatewayd.api.protocol import Answer as ShortAnswer
from gatewayd.api.protocol import Reply
from gatewayd.api.sms_route import SHORT_BODY_LIMIT, SmsRoute
from gatewayd.config.settings import ApiSettings, HostPort, Settings
from gatewayd.errors import StoreUnavailable
from gatewayd.mailbox import Mailbox, Message
from gatewayd.model import MessageStatus
from tests.conftest import OUR_NUMBER
from tests.integration.test_api import ALICE, BOB, MINE, USERS, app_for
from tests.smtp_client import free_port

Answer = tuple[int, dict[str, str], bytes]


@pytest.fixture
async def server(mailbox: Mailbox) -> AsyncIterator[ApiServer]:
    settings = Settings(
        api=ApiSettings(listen=HostPort("127.0.0.1", free_port()), rate_limits=False),
        users=USERS,
    )
    queued: list[Message] = []
    server = ApiServer(app_for(mailbox, settings, on_queued=queued.extend), settings)
    server.queued = queued  # type: ignore[attr-defined]
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Per request the connection gave the short way: did it answer (not decline)?"""
    seen: list[bool] = []
    answer = SmsRoute.answer

    def spied(self: SmsRoute, scope: Any, body: bytes, reply: Reply) -> None:
        def told(found: ShortAnswer | None) -> None:
            seen.append(found is not None)
            reply(found)

        answer(self, scope, body, told)

    monkeypatch.setattr(SmsRoute, "answer", spied)
    return seen


def sms_body(text: str, to: str = "+4915112345678") -> bytes:
    return json.dumps(
        {"from": {"phoneNumber": OUR_NUMBER}, "to": [{"phoneNumber": to}], "text": text}
    ).encode()


def request(
    text: str = "hello",
    *,
    token: str = ALICE,
    to: str = "+4915112345678",
    extra: str = "",
    body: bytes | None = None,
    kind: str = "application/json",
) -> bytes:
    if body is None:
        body = sms_body(text, to)
    head = (
        f"POST {MINE}/sms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    while head.startswith(b"HTTP/1.1 100 "):  # (to Expect: 100-continue)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"{name} twice"
            headers[name.lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    return status, headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(1), 10) == b""


async def test_answers_on_one_kept_alive_connection_and_pipelined(
    server: ApiServer, mailbox: Mailbox, taken: list[bool]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request("one"))
    first = await read_answer(reader)
    # Three at once (pipelined), the middle one the app's (its media type).
    writer.write(
        request("two") + request("three", kind="application/vnd.example+json") + request("four")
    )
    rest = [await read_answer(reader) for _ in range(3)]
    writer.close()
    answers = [first, *rest]
    assert [status for status, _, _ in answers] == [200] * 4
    assert taken == [True, True, False, True]
    texts = [json.loads(body)["subject"] for _, _, body in answers]
    assert texts == ["one", "two", "three", "four"]  # in order, each its own
    for _, headers, body in answers:
        made = json.loads(body)
        stored = await mailbox.get(int(made["id"]))
        assert stored.message_status is MessageStatus.QUEUED
        assert headers["content-type"] == "application/json"
        assert "date" in headers  # uvicorn's default header, on either way
        assert headers["x-rate-limit-group"] == "Medium"
        assert "connection" not in headers
    assert len(server.queued) == 4  # type: ignore[attr-defined]  (the dispatchers woken)


async def test_connection_close_is_honoured(server: ApiServer, taken: list[bool]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request(extra="Connection: close\r\n"))
    status, headers, _ = await read_answer(reader)
    assert (status, headers["connection"]) == (200, "close")
    assert await closed(reader)
    writer.close()
    assert taken == [True]


async def test_what_it_declines_is_answered_by_the_app(
    server: ApiServer, taken: list[bool]
) -> None:
    """A bad body, another user's extension, a wrong token, Expect: 100-continue: each
    answered as the FastAPI route and the Gate answer it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request(body=b'{"from": '))  # not JSON
    status, _, body = await read_answer(reader)
    assert (status, json.loads(body)["errorCode"]) == (400, "CMN-103")
    writer.write(request(to="12"))  # no phone number
    status, _, body = await read_answer(reader)
    assert (status, json.loads(body)["errorCode"]) == (400, "CMN-101"), body
    writer.write(request(token=BOB))  # Bob may not send from Alice's number
    status, _, body = await read_answer(reader)
    assert (status, json.loads(body)["errorCode"]) == (403, "MSG-240")
    writer.write(request(extra="Expect: 100-continue\r\n"))
    status, _, body = await read_answer(reader)
    assert status == 200, body
    writer.write(request(token="wrong"))
    status, headers, body = await read_answer(reader)
    assert (status, json.loads(body)["errorCode"]) == (401, "OAU-149")
    assert headers["connection"] == "close"
    writer.close()
    # The short way was asked about the first three (and declined them); neither the
    # request with Expect nor the unknown token reached it.
    assert taken == [False, False, False]


async def failing(
    server: ApiServer, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> tuple[Answer, asyncio.StreamReader, asyncio.StreamWriter]:
    """The answer to one SMS while storing fails with ``error`` (injected, where the
    group commit's answer comes: a database that stays locked past its busy timeout
    would take 30 s), and the connection it came on; the mailbox works again
    afterwards."""

    def failed(*_args: Any) -> asyncio.Future[list[Message]]:
        future: asyncio.Future[list[Message]] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, future.set_exception, error)
        return future

    with monkeypatch.context() as patched:
        patched.setattr(mailbox, "create_texts", failed)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request())
        answer = await read_answer(reader)
    return answer, reader, writer


async def test_an_unavailable_mailbox_is_503_with_retry_after(
    server: ApiServer, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch, taken: list[bool]
) -> None:
    unavailable = StoreUnavailable("mailbox database x is unavailable: database is locked")
    (status, headers, body), reader, writer = await failing(
        server, mailbox, monkeypatch, unavailable
    )
    assert (status, headers["retry-after"]) == (503, "5")
    error = json.loads(body)
    assert error["errorCode"] == "CMN-201"
    assert "Service temporarily unavailable" in error["message"]
    writer.write(request("again"))  # the connection goes on
    status, _, body = await read_answer(reader)
    writer.close()
    assert (status, json.loads(body)["subject"]) == (200, "again")
    assert taken == [True, True]  # both answered by the short way, not the app


async def test_an_unexpected_failure_is_500_in_the_documented_shape(
    server: ApiServer, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch, taken: list[bool]
) -> None:
    broken = RuntimeError("something no client should read")
    (status, _, body), _, writer = await failing(server, mailbox, monkeypatch, broken)
    writer.close()
    assert status == 500
    assert json.loads(body)["errorCode"] == "CMN-201"
    assert b"RuntimeError" not in body
    assert b"something" not in body
    assert taken == [True]  # worded by the short way itself


async def test_a_body_past_its_limit_goes_to_the_app(server: ApiServer, taken: list[bool]) -> None:
    """Valid, but declared longer than SHORT_BODY_LIMIT (padded with JSON whitespace):
    the app's, and answered alike."""
    body = sms_body("padded")
    padded = body[:-1] + b" " * (SHORT_BODY_LIMIT + 1 - len(body)) + b"}"
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request(body=padded))
    status, _, answer = await read_answer(reader)
    writer.close()
    assert (status, json.loads(answer)["subject"]) == (200, "padded")
    assert taken == []  # never given to the short way
