"""The HTTP connection: uvicorn's httptools protocol, with the time limits uvicorn does
not have (its issue #157) and the connection's place under the listener's caps.

- The head of a request (request line and headers) must be complete within
  ``api.header_timeout`` of the connection (the first request) or of its first byte (a
  later request on a kept-alive connection; between requests uvicorn's keep-alive
  timeout, 5 s, applies).
- The body may pause at most ``api.body_timeout`` between bytes; a pause of our own
  making (the application not reading yet, so reading is paused) does not count.
- Past either limit the connection is closed, with ``408`` when a request had begun
  and nothing was answered yet.
- The ``Slot`` the listener gave the connection (gatewayd.guard.listener) is released
  when it is lost.
- What one turn of the event loop wrote is written in one system call
  (``_CoalescingTransport``): uvicorn writes an answer's head and body apart.
- A ``ShortWay`` (api/sms_route.py: ``POST …/sms`` from an integration) may answer a
  request itself, past the ASGI application and uvicorn's answer machinery: it says at
  the request's head whether it would (``wants``), is given the whole body, and answers
  or declines (``answer`` returns None); a declined request goes to the application
  with its body as read. Its answer is written in one piece, with the head uvicorn
  would have written (its default headers, ``connection: close`` when the connection
  ends), and the connection goes on as after any answer (keep-alive, the next
  pipelined request). A request with ``Expect: 100-continue`` is the application's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from uvicorn._types import ASGI3Application, HTTPScope
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from gatewayd.guard.listener import Slot

DIRECT_WRITE = 64 * 1024  # writes this large go to the transport at once
REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


@dataclass(frozen=True, slots=True)
class ReadTimeouts:
    header: float
    body: float


@dataclass(frozen=True, slots=True)
class Answer:
    """A short way's answer: ``headers`` without Content-Length (written here)."""

    status: int
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes


Reply = Callable[[Answer | None], None]


class ShortWay(Protocol):
    def wants(self, scope: HTTPScope) -> bool:
        """At the request's head: whether to be given this request (else the app's)."""
        ...

    def answer(self, scope: HTTPScope, body: bytes, reply: Reply) -> None:
        """Call ``reply`` once, now or later, with the answer to the request with this
        whole body; None: the app's to answer. (No task a request: a callback.)"""
        ...


class _CoalescingTransport:
    """A connection's transport that writes what one turn of the event loop wrote in
    one system call; closing writes what is waiting first. Everything else is the
    transport's own."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._waiting: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) >= DIRECT_WRITE:  # a document: no copy, and the transport's flow control
            self._flush()
            self._transport.write(data)
            return
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self._flush)
        self._waiting.append(bytes(data))

    def write_now(self, data: bytes) -> None:
        """``data`` to the transport now (after what is waiting)."""
        self._flush()
        if not self._transport.is_closing():
            self._transport.write(data)

    def _flush(self) -> None:
        if self._waiting:
            data = b"".join(self._waiting)
            self._waiting.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttp(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        timeouts: ReadTimeouts,
        slot: Slot | None = None,
        on_timeout: Callable[[str], None] | None = None,
        short: ShortWay | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.short = short
        self._short_waiting: RequestResponseCycle | None = None  # its body is still coming
        self.timeouts = timeouts
        self.slot = slot
        self.on_timeout = on_timeout  # told "header" or "body" (the server tallies them)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._begun = False  # a request's first byte is in, its head is not complete
        self._in_body = False
        self._last_body = 0.0

    # -- the connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport))  # type: ignore[arg-type]
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self.slot is not None:
            self.slot.release()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_body:
            self._last_body = self.loop.time()
        super().data_received(data)
        self._arm_timers()

    # -- the parser's callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True  # (its head timer once these bytes are parsed: _arm_timers)

    def on_headers_complete(self) -> None:
        self._begun = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._in_body, self._last_body = True, self.loop.time()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()
        cycle, self._short_waiting = self._short_waiting, None
        if cycle is not None and not cycle.more_body:
            self._short_start(cycle)

    # -- the short way -------------------------------------------------------------------

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        """uvicorn starts each request here (when its head is in, or when the request
        before it on the connection is answered): the short way's, if it wants it.
        (uvicorn ≥ 0.45, as pyproject.toml asks; tests/integration/test_api_short_way.py
        fails if the short way is never given a request.)"""
        short = self.short
        if (
            short is None
            or app is not self.app  # uvicorn's own 503 (its concurrency limit)
            or cycle.waiting_for_100_continue
            or not short.wants(cycle.scope)
        ):
            super()._start_asgi_task(cycle, app)
        elif cycle.more_body:
            self._short_waiting = cycle  # on_message_complete starts it
        else:
            self._short_start(cycle)

    def _short_start(self, cycle: RequestResponseCycle) -> None:
        """The short way's, with no task: uvicorn's shutdown waits for the connection
        (its answer not yet written), and the answer is written when it comes."""
        assert self.short is not None  # (only a ShortWay's request comes here)
        try:
            self.short.answer(
                cycle.scope, bytes(cycle.body), lambda answer: self._short_reply(cycle, answer)
            )
        except BaseException:
            self.transport.close()  # (the short way words its own failures: a stop)
            raise

    def _short_reply(self, cycle: RequestResponseCycle, answer: Answer | None) -> None:
        try:
            if answer is None:
                super()._start_asgi_task(cycle, self.app)
            elif not cycle.disconnected:
                self._write_answer(cycle, answer)
        except BaseException:
            self.transport.close()  # (no client left waiting for what never comes)
            raise

    def _write_answer(self, cycle: RequestResponseCycle, answer: Answer) -> None:
        """What uvicorn's ``send`` would write for this answer, in one piece; then the
        connection goes on as uvicorn's would."""
        keep_alive = cycle.keep_alive  # (False also when the server is stopping)
        parts = [STATUS_LINE[answer.status]]
        for name, value in (*cycle.default_headers, *answer.headers):
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"content-length: %d\r\n" % len(answer.body))
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", answer.body)
        cycle.response_started = cycle.response_complete = True
        self.transport.write_now(b"".join(parts))  # type: ignore[attr-defined]
        cycle.message_event.set()
        if not keep_alive:
            self.transport.close()
        cycle.on_response()

    # -- the timers --------------------------------------------------------------------------

    def _start_head(self) -> None:
        self._head_timer = self.loop.call_later(self.timeouts.header, self._head_expired)

    def _arm_timers(self) -> None:
        """The timers of a request still coming, once the bytes at hand are parsed:
        none for one that came whole, as most do (a timer armed and cancelled in the
        same call cost ~2 µs, two a request)."""
        if self._begun and self._head_timer is None:
            self._start_head()
        if self._in_body and self._body_timer is None:
            self._body_timer = self.loop.call_later(self.timeouts.body, self._body_check)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        self._time_out("header", answer=self._begun)

    def _body_check(self) -> None:
        self._body_timer = None
        if not self._in_body:
            return
        now = self.loop.time()
        if self.flow is not None and self.flow.read_paused:
            self._last_body = now  # we are not reading: the client is not slow
        due = self._last_body + self.timeouts.body
        if now < due:
            self._body_timer = self.loop.call_at(due, self._body_check)
            return
        cycle = self.cycle
        self._time_out("body", answer=cycle is not None and not cycle.response_started)

    def _time_out(self, part: str, *, answer: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.on_timeout is not None:
            self.on_timeout(part)
        if answer:
            transport.write(REQUEST_TIMEOUT)
        transport.close()
