"""SIP transactions (RFC 3261 section 17): retransmissions and timeouts.

Client transactions (requests we send) are matched to responses by the top Via's
branch and the CSeq method; server transactions (requests we receive) by branch,
sent-by and method (an ACK finds its INVITE). Over UDP they retransmit; over TCP and
TLS they do not, and their waiting timers are zero.

    INVITE client:    Timer A (T1, doubling) resends until a response; Timer B (64*T1)
                      gives up if none came; a final non-2xx is ACKed here (same
                      branch) and Timer D (32 s) absorbs its retransmissions. A 2xx
                      ends the transaction: its ACK is the dialog's.
    non-INVITE client: Timer E (T1 doubling to T2; T2 after a 1xx) resends; Timer F
                      (64*T1) gives up; Timer K (T4) absorbs retransmitted responses.
    INVITE server:    100 Trying at once; a final non-2xx is resent by Timer G (T1
                      doubling to T2) until the ACK or Timer H (64*T1); Timer I (T4)
                      absorbs retransmitted ACKs. A 2xx ends it (the dialog resends
                      2xx until its ACK).
    non-INVITE server: the final response is resent for each retransmitted request
                      until Timer J (64*T1).

``Timers`` holds T1, T2 and T4 (500 ms, 4 s, 5 s): tests shorten them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from gatewayd.fax.sip.message import (
    BRANCH_MAGIC,
    Headers,
    Request,
    Response,
    Via,
    response_to,
)
from gatewayd.fax.sip.transport import Peer, Transport, TransportError
from gatewayd.logging import get_logger

log = get_logger("gatewayd.sip")


@dataclass(frozen=True, slots=True)
class Timers:
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def timeout(self) -> float:  # Timers B, F, H, J
        return 64 * self.t1

    @property
    def d(self) -> float:  # at least 32 s over UDP: 64*T1 is that with the RFC's T1
        return self.timeout


class TransactionTimeout(Exception):
    """No final response (Timer B or F)."""


class ClientTransaction:
    def __init__(self, layer: Transactions, request: Request, peer: Peer) -> None:
        self.layer = layer
        self.request = request
        self.peer = peer
        self.method = request.method
        self.key = (request.branch, request.method)
        self.final: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.on_provisional: Callable[[Response], None] | None = None
        self.provisional: Response | None = None
        self._responded = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"sip-tx-{self.method}")

    async def _run(self) -> None:
        timers, reliable = self.layer.timers, self.layer.transport.reliable
        loop = asyncio.get_running_loop()
        try:
            await self.layer.transport.send(self.request, self.peer)
        except TransportError as exc:
            self._fail(exc)
            return
        give_up = loop.time() + timers.timeout  # Timer B or F
        interval = timers.t1  # Timer A or E
        while not self.final.done():
            if self.method == "INVITE" and self.provisional is not None:
                # Proceeding: no retransmissions and no Timer B; the caller's ring
                # timeout (a CANCEL) ends it.
                await self.final_or_never()
                break
            now = loop.time()
            if now >= give_up:
                self._fail(TransactionTimeout(f"no response to {self.method} (timer B/F)"))
                return
            wait = min(give_up, now + interval) - now if not reliable else give_up - now
            self._responded.clear()
            try:
                await asyncio.wait_for(self._responded.wait(), wait)
            except TimeoutError:
                if reliable or loop.time() >= give_up:
                    continue
                if self.method == "INVITE":
                    interval *= 2
                else:
                    interval = timers.t2 if self.provisional else min(interval * 2, timers.t2)
                try:
                    await self.layer.transport.send(self.request, self.peer)
                except TransportError as exc:
                    self._fail(exc)
                    return
            else:
                if self.provisional is not None and self.method != "INVITE":
                    interval = timers.t2
        # Completed: absorb retransmitted finals (Timer D for INVITE, K otherwise).
        linger = 0.0 if reliable else (timers.d if self.method == "INVITE" else timers.t4)
        if linger:
            await asyncio.sleep(linger)
        self.layer.forget_client(self)

    async def final_or_never(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self.final)

    def _fail(self, exc: Exception) -> None:
        if not self.final.done():
            self.final.set_exception(exc)
            self.final.exception()  # the caller may have gone: no "never retrieved"
        self.layer.forget_client(self)

    def receive(self, response: Response) -> None:
        self._responded.set()
        if response.status < 200:
            if not self.final.done():
                self.provisional = response
                if self.on_provisional is not None:
                    self.on_provisional(response)
            return
        if self.method == "INVITE":
            if response.status >= 300:
                self._send_ack(response)  # and again for each retransmission
            elif self.final.done():
                self.layer.on_stray_response(response, self.peer)  # 2xx again: the dialog ACKs
                return
        if not self.final.done():
            self.final.set_result(response)

    def _send_ack(self, response: Response) -> None:
        """ACK for a non-2xx final answer (RFC 3261 17.1.1.3): same branch."""
        headers = Headers()
        headers.add("Via", self.request.headers.get("Via") or "")
        for route in self.request.headers.get_all("Route"):
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", self.request.headers.get("From") or "")
        headers.add("To", response.headers.get("To") or "")
        headers.add("Call-ID", self.request.call_id)
        headers.add("CSeq", f"{self.request.cseq[0]} ACK")
        ack = Request("ACK", self.request.uri, headers)
        self.layer.send_soon(ack, self.peer)

    def cancel_timers(self) -> None:
        if self._task is not None:
            self._task.cancel()


class ServerTransaction:
    def __init__(self, layer: Transactions, request: Request, peer: Peer) -> None:
        self.layer = layer
        self.request = request
        self.peer = peer
        self.method = request.method
        self.key = server_key(request)
        self.last: Response | None = None
        self.acked = asyncio.Event()
        self.cancelled = False
        self._task: asyncio.Task[None] | None = None

    @property
    def final_sent(self) -> bool:
        return self.last is not None and self.last.status >= 200

    def respond(self, response: Response) -> None:
        if self.final_sent:
            return
        self.last = response
        self.layer.send_soon(response, self.peer)
        if response.status < 200:
            return
        if self.method == "INVITE" and response.status < 300:
            self.layer.forget_server(self, after=0.0)
            return
        self._task = asyncio.create_task(self._completed(), name=f"sip-rx-{self.method}")

    def reply(self, status: int, reason: str = "", *, to_tag: str = "", **headers: str) -> Response:
        response = response_to(self.request, status, reason, to_tag=to_tag)
        for name, value in headers.items():
            response.headers.add(name.replace("_", "-"), value)
        self.respond(response)
        return response

    async def _completed(self) -> None:
        timers, reliable = self.layer.timers, self.layer.transport.reliable
        if self.method != "INVITE":
            self.layer.forget_server(self, after=0.0 if reliable else timers.timeout)
            return
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timers.timeout
        interval = timers.t1
        while not self.acked.is_set() and loop.time() < give_up:
            wait = min(give_up - loop.time(), timers.timeout if reliable else interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.acked.wait(), max(wait, 0))
            if not self.acked.is_set() and not reliable and self.last is not None:
                self.layer.send_soon(self.last, self.peer)  # Timer G
                interval = min(interval * 2, timers.t2)
        self.layer.forget_server(self, after=0.0 if reliable else timers.t4)  # Timer I

    def retransmitted(self) -> None:
        if self.last is not None:
            self.layer.send_soon(self.last, self.peer)


def server_key(request: Request) -> tuple[str, str, str]:
    top = request.headers.get("Via") or ""
    via = Via.parse(top)
    branch = via.params.get("branch", "")
    if not branch.startswith(BRANCH_MAGIC):  # RFC 2543 peer: make a key of our own
        basis = f"{request.call_id}|{request.cseq[0]}|{request.headers.get('From')}|{top}"
        branch = hashlib.sha256(basis.encode()).hexdigest()[:24]
    method = "INVITE" if request.method == "ACK" else request.method
    return branch, f"{via.host}:{via.port or ''}", method


RequestHandler = Callable[[Request, ServerTransaction | None, Peer], None]
ResponseHandler = Callable[[Response, Peer], None]


class Transactions:
    """Matches what arrives to transactions and hands the rest to the user agent."""

    def __init__(
        self,
        transport: Transport,
        timers: Timers,
        on_request: RequestHandler,
        on_stray_response: ResponseHandler,
    ) -> None:
        self.transport = transport
        self.timers = timers
        self.on_request = on_request
        self.on_stray_response = on_stray_response
        self.client: dict[tuple[str, str], ClientTransaction] = {}
        self.server: dict[tuple[str, str, str], ServerTransaction] = {}
        self._background: set[asyncio.Task[None]] = set()

    def send(self, request: Request, peer: Peer) -> ClientTransaction:
        transaction = ClientTransaction(self, request, peer)
        self.client[transaction.key] = transaction
        transaction.start()
        return transaction

    def send_soon(self, message: Request | Response, peer: Peer) -> None:
        """Send without waiting (responses, ACKs); a failure is a debug line: the
        transaction's own timers decide what it means."""
        task = asyncio.create_task(self._send(message, peer))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send(self, message: Request | Response, peer: Peer) -> None:
        try:
            await self.transport.send(message, peer)
        except TransportError as exc:
            log.debug("sip.send_failed", peer=f"{peer.host}:{peer.port}", error=str(exc))

    def forget_client(self, transaction: ClientTransaction) -> None:
        if self.client.get(transaction.key) is transaction:
            del self.client[transaction.key]

    def forget_server(self, transaction: ServerTransaction, *, after: float) -> None:
        def drop() -> None:
            if self.server.get(transaction.key) is transaction:
                del self.server[transaction.key]

        if after <= 0:
            drop()
        else:
            asyncio.get_running_loop().call_later(after, drop)

    def received(self, message: Request | Response, peer: Peer) -> None:
        if isinstance(message, Response):
            key = (message.branch, message.cseq[1])
            client = self.client.get(key)
            if client is not None:
                client.receive(message)
            else:
                self.on_stray_response(message, peer)
            return
        key3 = server_key(message)
        existing = self.server.get(key3)
        if message.method == "ACK":
            if existing is not None and existing.final_sent:
                existing.acked.set()  # ACK for our non-2xx
                return
            self.on_request(message, None, peer)  # ACK for a 2xx: the dialog's
            return
        if existing is not None:
            existing.retransmitted()
            return
        transaction = ServerTransaction(self, message, peer)
        self.server[key3] = transaction
        if message.method == "INVITE":
            transaction.reply(100)
        if message.method == "CANCEL":
            invite = self.server.get((key3[0], key3[1], "INVITE"))
            if invite is None or invite.final_sent:
                transaction.reply(481)
                return
            transaction.reply(200)
            invite.cancelled = True
            self.on_request(message, invite, peer)
            return
        self.on_request(message, transaction, peer)

    async def close(self) -> None:
        for transaction in list(self.client.values()):
            transaction.cancel_timers()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError):
                await task
