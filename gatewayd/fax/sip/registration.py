"""Registration with the trunk's registrar (RFC 3261 section 10), kept up.

REGISTER ``sip:<domain>`` for ``<username>@<domain>`` with our Contact and
``register_interval`` as Expires, digest credentials when challenged, renewed at
80 % of what the registrar granted (at least 10 s before it runs out), or at once
(after a second) when the TCP or TLS connection to the registrar ends. The state says
what the carrier may expect:

- ``registered``: the trunk knows where we are.
- ``refused``: the registrar refused our credentials (401/407 again after we
  answered, or 403): ``problem`` names the keys to check; retried every few minutes,
  in case the account is fixed on the server.
- ``unreachable``: no answer, or the connection failed: retried with back-off (5 s
  doubling to 5 minutes).

One log line per change of state (``sip.registered``, ``sip.registration_refused``,
``sip.registrar_unreachable``). ``stop`` removes the registration (Expires: 0).
"""

from __future__ import annotations

import asyncio
import contextlib

from gatewayd.fax.sip.message import NameAddr, Response, new_call_id, new_tag
from gatewayd.fax.sip.results import REFUSED
from gatewayd.fax.sip.transaction import TransactionTimeout
from gatewayd.fax.sip.transport import TransportError
from gatewayd.fax.sip.useragent import UserAgent
from gatewayd.logging import get_logger

log = get_logger("gatewayd.sip")

RETRY_REFUSED = 300.0
RETRY_FIRST, RETRY_MAX = 5.0, 300.0
UNREGISTER_TIMEOUT = 3.0


class Registration:
    def __init__(self, ua: UserAgent, interval: float) -> None:
        self.ua = ua
        self.interval = int(interval)
        self.state = "registering"
        self.problem = ""
        self.expires = 0
        self.changed = asyncio.Event()
        self._call_id = ""
        self._cseq = 0
        self._tag = new_tag()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        ua.transport.on_connection_lost = self._connection_lost

    def _connection_lost(self, host: str, port: int) -> None:
        """The TCP/TLS connection to the registrar ended: register again now (over a
        new one), rather than when the registration runs out."""
        if (host, port) == (self.ua.registrar.host, self.ua.registrar.port):
            self._wake.set()

    @property
    def server(self) -> str:
        registrar = self.ua.settings.registrar or self.ua.settings.proxy
        return str(registrar)

    async def run(self) -> None:
        self._call_id = new_call_id(self.ua.transport.advertised)
        delay = RETRY_FIRST
        while not self._stop.is_set():
            try:
                response = await self._register(self.interval)
            except (TransactionTimeout, TransportError) as exc:
                self._set("unreachable", f"the SIP registrar {self.server} does not answer: {exc}")
                wait, delay = delay, min(delay * 2, RETRY_MAX)
            else:
                delay = RETRY_FIRST
                if 200 <= response.status < 300:
                    self.expires = self._granted(response)
                    self._set("registered", "")
                    wait = max(min(self.expires * 0.8, self.expires - 10), 5)
                elif response.status in REFUSED:
                    self._set(
                        "refused",
                        f"the SIP registrar {self.server} refused username "
                        f"{self.ua.identity.username!r} (SIP {response.status} {response.reason}"
                        "); check [fax.sip] username and password",
                    )
                    wait = RETRY_REFUSED
                else:
                    self._set(
                        "unreachable",
                        f"the SIP registrar {self.server} answered REGISTER with "
                        f"{response.status} {response.reason}",
                    )
                    wait, delay = delay, min(delay * 2, RETRY_MAX)
            await self._pause(wait)

    async def _pause(self, seconds: float) -> None:
        """Until the next attempt: ``seconds``, or a lost connection (then 1 s)."""
        self._wake.clear()
        stop = asyncio.ensure_future(self._stop.wait())
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stop, wake}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            wake.cancel()
        if self._wake.is_set() and not self._stop.is_set():
            log.info("sip.connection_lost", registrar=self.server)
            await asyncio.sleep(1.0)

    def _set(self, state: str, problem: str) -> None:
        if (state, problem) == (self.state, self.problem):
            return
        self.state, self.problem = state, problem
        self.changed.set()
        self.changed = asyncio.Event()
        if state == "registered":
            contact = self.ua.contact_uri
            log.info("sip.registered", registrar=self.server, expires=self.expires, contact=contact)
        elif state == "refused":
            log.error("sip.registration_refused", registrar=self.server, reason=problem)
        else:
            log.warning("sip.registrar_unreachable", registrar=self.server, reason=problem)

    def _granted(self, response: Response) -> int:
        ours = self.ua.contact_uri
        for value in response.headers.get_all("Contact"):
            contact = NameAddr.parse(value)
            if contact.uri == ours and contact.params.get("expires", "").isdigit():
                return int(contact.params["expires"])
        expires = response.headers.get("Expires") or ""
        return int(expires) if expires.isdigit() else self.interval

    async def _register(self, expires: int) -> Response:
        identity = self.ua.identity
        aor = f"<{self.ua.uri_for(identity.username)}>"
        self._cseq += 1
        request = self.ua.new_request(
            "REGISTER",
            f"sip:{identity.domain}",
            from_=f"{aor};tag={self._tag}",
            to=aor,
            call_id=self._call_id,
            cseq=self._cseq,
        )
        request.headers.set("Contact", f"{self.ua.contact};expires={expires}")
        request.headers.add("Expires", str(expires))
        attempt = 0
        while True:
            transaction = self.ua.send(request, self.ua.registrar)
            response = await transaction.final
            if response.status not in (401, 407):
                return response
            again = self.ua.retry_with_credentials(request, response, attempt=attempt)
            if again is None:
                return response
            request, attempt = again, attempt + 1
            self._cseq = request.cseq[0]

    async def stop(self) -> None:
        """Stop renewing and remove the registration (best effort)."""
        self._stop.set()
        if self.state != "registered":
            return
        with contextlib.suppress(TransactionTimeout, TransportError, TimeoutError):
            await asyncio.wait_for(self._register(0), UNREGISTER_TIMEOUT)
