"""The user agent core: who we are on the trunk, and where each message goes.

It owns the transport and the transaction layer, builds requests with our identity
(From ``from_user@from_domain``, a Contact at the advertised address, a Via with
``rport``), sends everything to the proxy unless a dialog says otherwise, answers
digest challenges (``retry_with_credentials``), and routes what arrives:

- a request inside a dialog (To tag known) to that dialog's call; an unknown dialog
  gets 481;
- a new INVITE to ``on_invite`` (the service decides: answer, 404, 486, 403);
- OPTIONS (a trunk's keep-alive) gets 200; other methods 405;
- a 2xx to an INVITE whose transaction has ended (a retransmission) to its call,
  which ACKs it again.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gatewayd.config.settings import SipSettings
from gatewayd.fax.sip import auth
from gatewayd.fax.sip.message import (
    Headers,
    NameAddr,
    Request,
    Response,
    SipUri,
    Via,
    new_branch,
)
from gatewayd.fax.sip.transaction import ClientTransaction, ServerTransaction, Timers, Transactions
from gatewayd.fax.sip.transport import Peer, Transport, TransportError
from gatewayd.logging import get_logger

log = get_logger("gatewayd.sip")

USER_AGENT = "gatewayd"
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS"
DEFAULT_PORT = {"UDP": 5060, "TCP": 5060, "TLS": 5061}


class DialogOwner(Protocol):
    def on_request(self, request: Request, transaction: ServerTransaction | None) -> None: ...

    def on_stray_2xx(self, response: Response) -> None: ...


InviteHandler = Callable[[Request, ServerTransaction, Peer], None]


@dataclass(frozen=True, slots=True)
class Identity:
    username: str
    password: str
    from_user: str
    domain: str


class UserAgent:
    def __init__(
        self,
        settings: SipSettings,
        *,
        timers: Timers | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.identity = Identity(
            username=settings.username,
            password=settings.password,
            from_user=settings.from_user or settings.username or "gatewayd",
            domain=settings.domain,
        )
        kind = settings.transport.upper()
        if kind == "TLS" and ssl_context is None:
            ssl_context = ssl.create_default_context()
        self.transport = Transport(
            kind,
            settings.local_address.host,
            settings.local_address.port,
            self._received,
            ssl_context=ssl_context,
            server_name=settings.proxy.host,
        )
        self.transactions = Transactions(
            self.transport, timers or Timers(), self._request, self._stray_response
        )
        self.proxy = Peer(settings.proxy.host, settings.proxy.port)
        self.registrar = self.proxy
        self.trusted: set[str] = set()
        self.dialogs: dict[tuple[str, str], DialogOwner] = {}
        self.on_invite: InviteHandler | None = None
        self.closing = False

    @property
    def kind(self) -> str:
        return self.transport.kind

    async def start(self) -> None:
        """Resolve the proxy and registrar, bind the transport."""
        self.proxy = await self._resolve(self.settings.proxy.host, self.settings.proxy.port)
        registrar = self.settings.registrar or self.settings.proxy
        self.registrar = await self._resolve(registrar.host, registrar.port)
        self.trusted = {self.proxy.host, self.registrar.host}
        await self.transport.start(self.proxy.host)

    async def _resolve(self, host: str, port: int) -> Peer:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_DGRAM if self.kind == "UDP" else socket.SOCK_STREAM
            )
        except OSError as exc:
            raise TransportError(f"cannot resolve the SIP server {host}: {exc}") from exc
        return Peer(str(found[0][4][0]), port)

    async def close(self) -> None:
        self.closing = True
        await self.transactions.close()
        await self.transport.close()

    # -- building --------------------------------------------------------------------

    @property
    def contact_uri(self) -> str:
        uri = SipUri(
            self.transport.advertised,
            self.identity.from_user,
            self.transport.port,
            params={} if self.kind == "UDP" else {"transport": self.kind.lower()},
        )
        return str(uri)

    @property
    def contact(self) -> str:
        return f"<{self.contact_uri}>"

    def uri_for(self, user: str) -> str:
        return str(SipUri(self.identity.domain, user))

    def new_request(
        self,
        method: str,
        uri: str,
        *,
        from_: str,
        to: str,
        call_id: str,
        cseq: int,
    ) -> Request:
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", from_)
        headers.add("To", to)
        headers.add("Call-ID", call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if method not in ("ACK", "CANCEL", "BYE"):
            headers.add("Contact", self.contact)
        return Request(method, uri, headers)

    def stamp(self, request: Request) -> Request:
        """Our Via (a new branch) on top, User-Agent and Allow."""
        via = Via(self.kind, self.transport.advertised, self.transport.port)
        via.params = {"branch": new_branch(), "rport": ""}
        request.headers.remove("Via")
        request.headers.add("Via", str(via), first=True)
        if request.headers.get("User-Agent") is None:
            request.headers.add("User-Agent", USER_AGENT)
        if request.method in ("INVITE", "OPTIONS") and request.headers.get("Allow") is None:
            request.headers.add("Allow", ALLOW)
        return request

    # -- sending ---------------------------------------------------------------------

    def send(self, request: Request, peer: Peer | None = None) -> ClientTransaction:
        """Send ``request`` (stamped with a new Via branch) in a client transaction."""
        return self.transactions.send(self.stamp(request), peer or self.proxy)

    def send_stateless(self, request: Request, peer: Peer) -> None:
        """An ACK for a 2xx: no transaction of its own (RFC 3261 17.1.1.1)."""
        self.transactions.send_soon(request, peer)

    async def peer_for(self, uri: SipUri) -> Peer:
        port = uri.port or DEFAULT_PORT[self.kind]
        if uri.host in (self.proxy.host, self.settings.proxy.host):
            return Peer(self.proxy.host, port)
        return await self._resolve(uri.host, port)

    def retry_with_credentials(
        self, request: Request, response: Response, *, attempt: int
    ) -> Request | None:
        """``request`` again with an answer to the challenge in ``response`` (401/407)
        and the next CSeq; None when there is nothing (more) to try: no username, an
        unsupported challenge, or the same credentials refused twice (not stale)."""
        if not self.identity.username:
            return None
        proxy = response.status == 407
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        try:
            challenge = auth.choose(
                auth.Challenge.parse(v, proxy=proxy) for v in response.headers.get_all(header)
            )
        except auth.AuthError as exc:
            log.warning("sip.auth_unsupported", problem=str(exc))
            return None
        if attempt >= 1 and not challenge.stale:
            return None
        if attempt >= 3:
            return None
        again = Request(request.method, request.uri, request.headers.copy(), request.body)
        number, method = request.cseq
        again.headers.set("CSeq", f"{number + 1} {method}")
        value = auth.answer(
            challenge,
            username=self.identity.username,
            password=self.identity.password,
            method=request.method,
            uri=request.uri,
            body=request.body,
        )
        again.headers.set(challenge.header, value)
        return again

    # -- receiving -------------------------------------------------------------------

    def _received(self, message: Request | Response, peer: Peer) -> None:
        self.transactions.received(message, peer)

    def _request(self, request: Request, transaction: ServerTransaction | None, peer: Peer) -> None:
        to_tag = NameAddr.parse(request.headers.get("To") or "").tag
        if to_tag or request.method in ("ACK", "CANCEL"):
            owner = self.dialogs.get((request.call_id, to_tag))
            if owner is None and request.method == "CANCEL":
                owner = next(
                    (o for (call_id, _), o in self.dialogs.items() if call_id == request.call_id),
                    None,
                )
            if owner is not None:
                owner.on_request(request, transaction)
            elif transaction is not None and request.method != "CANCEL":
                transaction.reply(481)
            return
        assert transaction is not None
        if request.method == "INVITE":
            if self.closing or self.on_invite is None:
                transaction.reply(503, Retry_After="60")
            else:
                self.on_invite(request, transaction, peer)
        elif request.method == "OPTIONS":
            transaction.reply(200, Allow=ALLOW, Accept="application/sdp")
        elif request.method == "BYE":
            transaction.reply(481)
        else:
            transaction.reply(405, Allow=ALLOW)

    def _stray_response(self, response: Response, peer: Peer) -> None:
        if response.cseq[1] == "INVITE" and 200 <= response.status < 300:
            to_tag = NameAddr.parse(response.headers.get("To") or "").tag
            from_tag = NameAddr.parse(response.headers.get("From") or "").tag
            owner = self.dialogs.get((response.call_id, from_tag))
            if owner is not None:
                owner.on_stray_2xx(response)
            else:
                log.debug("sip.stray_2xx", call_id=response.call_id, to_tag=to_tag)
