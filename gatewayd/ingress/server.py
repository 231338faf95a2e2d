"""The SMTP listeners: aiosmtpd's SMTP protocol, embedded in the daemon's event loop
(not its threaded Controller), made to speak with enhanced status codes throughout and
to check passwords off the event loop.

EHLO advertises SIZE, 8BITMIME, SMTPUTF8, PIPELINING, ENHANCEDSTATUSCODES, STARTTLS
(when ``smtp.tls_cert`` is set and TLS is not yet on) and AUTH PLAIN LOGIN (after
STARTTLS, or at once on a loopback listener with ``auth_without_tls``).

Under load and abuse (docs/ingress.md, "Connections"):
- each listener is served by gatewayd.guard's accept loop: at most
  ``smtp.max_connections`` open connections, ``smtp.max_connections_per_address`` from
  one client address; beyond them ``421 4.7.0`` before any protocol is built;
- a session ends with ``421 4.4.2`` after ``smtp.idle_timeout`` without a command that
  moves it on (NOOP, RSET, HELP, VRFY and EXPN do not; DATA bytes do) and after
  ``smtp.session_timeout`` whatever it does, never while its mail is being committed;
- failed logins are slowed down and then refused (ingress/throttle.py).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import weakref
from base64 import b64decode
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, AnyStr, cast

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, syntax

from gatewayd import __version__
from gatewayd.config.settings import Settings, SmtpListener, User
from gatewayd.errors import StartupError
from gatewayd.guard.listener import Acceptor, Caps, Slot, address_key, bind
from gatewayd.ingress import replies, senders
from gatewayd.ingress.throttle import AuthThrottle, delay, login_hint
from gatewayd.logging import get_logger
from gatewayd.metrics import Metrics

log = get_logger("gatewayd.smtp")

_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")
# The enhanced code for a reply aiosmtpd words without one (RFC 3463, RFC 5248).
_DEFAULT_ENHANCED = {
    "211": "2.0.0",
    "214": "2.0.0",
    "221": "2.0.0",
    "235": "2.7.0",
    "250": "2.0.0",
    "251": "2.1.5",
    "252": "2.5.0",
    "421": "4.3.2",
    "450": "4.2.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "454": "4.7.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "535": "5.7.8",
    "538": "5.7.11",
    "550": "5.0.0",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.0.0",
    "555": "5.5.4",
}
# <local@domain> with dot-atom parts only (RFC 5321 4.1.2), then the parameters.
_PLAIN_ADDRESS = re.compile(
    r"^\s*<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)>"
    r"(.*)$",
    re.DOTALL,
)
# Replies after which the client waits (or the connection changes): never held.
_FLUSH_NOW = ("220", "221", "334", "354", "421")
# Replies with no enhanced code by nature: the greeting, AUTH challenges, "go ahead".
_PLAIN_CODES = frozenset({"220", "334", "354"})
_END_OF_DATA = b"\r\n.\r\n"
_REFUSALS = {
    "listener": replies.TOO_MANY_CONNECTIONS.encode() + b"\r\n",
    "address": replies.TOO_MANY_FROM_ADDRESS.encode() + b"\r\n",
}


class GatewaySMTP(SMTP):
    """One SMTP connection."""

    def __init__(
        self,
        handler: Any,
        *,
        settings: Settings,
        listener: SmtpListener,
        connections: weakref.WeakSet[GatewaySMTP],
        metrics: Metrics,
        throttle: AuthThrottle | None = None,
        slot: Slot | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, timeout=settings.smtp.idle_timeout, **kwargs)
        self.settings = settings
        self.metrics = metrics
        self.listener = listener
        # Shared by the listeners' connections (SmtpListeners); one of its own otherwise.
        self.throttle = throttle or AuthThrottle(settings.smtp.auth_failures_per_address)
        self.slot = slot
        self._in_ehlo = False
        self._held: list[bytes] = []
        self.processing = False  # a mail is being committed (the handler says)
        self._auth_failures = 0
        # Time limits, on the loop's clock (see _reset_timeout).
        self._session_end: float | None = None
        self._idle_deadline = 0.0
        self._idle_deadline_before = 0.0
        self._in_data = False
        self._last_data = 0.0
        connections.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        if self.slot is not None:
            self.slot.release()
        super().connection_lost(error)

    # -- time limits -----------------------------------------------------------------------

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd calls this on connect and before every valid command: the idle
        deadline moves on, never past the session's end."""
        now = self.loop.time()
        if self._session_end is None:
            self._session_end = now + self.settings.smtp.session_timeout
        self._idle_deadline_before = self._idle_deadline
        self._idle_deadline = now + (duration or self.settings.smtp.idle_timeout)
        self._arm()

    def _arm(self) -> None:
        assert self._session_end is not None
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        deadline = min(self._idle_deadline, self._session_end)
        self._timeout_handle = self.loop.call_at(deadline, self._timeout_cb)

    def _no_progress(self) -> None:
        """The command just read does not count as activity: the deadline it moved
        goes back."""
        self._idle_deadline = self._idle_deadline_before
        self._arm()

    def _timeout_cb(self) -> None:
        assert self._session_end is not None
        now, idle = self.loop.time(), self.settings.smtp.idle_timeout
        if self.processing or (self._in_data and self._last_data + idle > now):
            self._idle_deadline = now + idle if self.processing else self._last_data + idle
            if self.processing:  # never cut a commit short
                self._session_end = max(self._session_end, self._idle_deadline)
            self._arm()
            return
        reply = replies.SESSION_TOO_LONG if now >= self._session_end else replies.IDLE_TIMEOUT
        log.info(
            "smtp.timeout",
            peer=str(self.session.peer if self.session else None),
            reason="session" if reply is replies.SESSION_TOO_LONG else "idle",
        )
        self.metrics.smtp_reply("421")
        transport = cast(asyncio.WriteTransport | None, self.transport)  # uvloop's: no subclass
        if transport is not None and not transport.is_closing():
            transport.write(reply.encode() + b"\r\n")
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self._in_data:
            self._last_data = self.loop.time()
        super().data_received(data)

    # Overrides keep aiosmtpd's @syntax, which HELP lists commands by.
    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, with the mail read in the pieces it arrives in rather than
        line by line: its replies, its limits, its handler hook. aiosmtpd's own loop
        runs Python for every line on the event loop, then again over every line, which
        for a 10 MB mail of short lines held the loop for a quarter of a second and
        more (a second on a busy machine); here each piece is a few operations in C."""
        buffer = getattr(self._reader, "_buffer", None)
        if not isinstance(buffer, bytearray) or self._decode_data:  # aiosmtpd's own way
            with self._receiving():
                await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        # The DATA line's CRLF is where an empty mail's end marker begins: put back in
        # front of what follows, the marker is one search for CRLF "." CRLF throughout.
        buffer[0:0] = b"\r\n"
        try:
            with self._receiving():
                read = await self._read_data()
        except (asyncio.CancelledError, asyncio.IncompleteReadError) as exc:
            # The connection ended before the mail did (aiosmtpd cancels us on EOF).
            log.debug("smtp.lost_in_data", peer=str(self.session.peer if self.session else None))
            self._writer.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        if isinstance(read, bytes):
            self.envelope.content = self.envelope.original_content = read
            status = await self._call_handler_hook("DATA")
            read = "250 OK" if status is MISSING else status
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(read)

    @contextmanager
    def _receiving(self) -> Iterator[None]:
        """DATA bytes coming in: each moves the idle deadline on (``data_received``)."""
        self._in_data, self._last_data = True, self.loop.time()
        try:
            yield
        finally:
            self._in_data = False

    async def _read_data(self) -> bytes | str:
        """The mail up to the end marker, dots unstuffed (RFC 5321 4.5.2); or, read to
        its end all the same (4.2.5), the reply for one too large or with a line longer
        than aiosmtpd's ``line_length_limit``."""
        pieces: list[bytes] = []
        taken = run = 0  # bytes read, the first two ours; bytes since the last LF
        refusal = None
        size_limit = self.data_size_limit or float("inf")
        while True:
            try:
                piece, done = await self._reader.readuntil(_END_OF_DATA), True
            except asyncio.LimitOverrunError as exc:  # not yet: what cannot hold a marker
                piece, done = await self._reader.read(exc.consumed), False
            taken += len(piece)
            if refusal is None:
                longest, run = _longest_line(piece, run)
                if taken - (5 if done else 2) > size_limit:
                    refusal = "552 Error: Too much mail data"
                elif longest > self.line_length_limit:
                    refusal = "500 Line too long (see RFC5321 4.5.3.1.6)"
                if refusal is None:
                    pieces.append(piece)
                else:
                    pieces.clear()  # read on to the end, keeping nothing
            if done:
                break
        if refusal is not None:
            return refusal
        mail = b"".join(pieces)[:-3]  # CRLF (ours), the lines each with its CRLF
        return mail.replace(b"\r\n.", b"\r\n")[2:]

    @syntax("NOOP [ignored]")
    async def smtp_NOOP(self, arg: str) -> None:
        self._no_progress()
        await super().smtp_NOOP(arg)

    @syntax("RSET")
    async def smtp_RSET(self, arg: str) -> None:
        self._no_progress()
        await super().smtp_RSET(arg)

    @syntax("HELP [command]")
    async def smtp_HELP(self, arg: str) -> None:
        self._no_progress()
        await super().smtp_HELP(arg)

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str) -> None:
        self._no_progress()
        await super().smtp_VRFY(arg)

    async def smtp_EXPN(self, arg: str) -> None:
        self._no_progress()
        await super().smtp_EXPN(arg)

    # -- replies ------------------------------------------------------------------------

    async def push(self, status: AnyStr) -> None:
        """Send a reply. While the client has already sent its next command (RFC 2920
        pipelining) the reply is held and goes out with the next one: one packet for
        MAIL, RCPT and DATA instead of three (a send is dear: ~50 us here)."""
        text = self._worded(
            status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        )
        self.metrics.smtp_reply(text[:3])
        self._held.append(text.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") + b"\r\n")
        if not text.startswith(_FLUSH_NOW) and b"\n" in getattr(self._reader, "_buffer", b""):
            return
        held, self._held = b"".join(self._held), []
        self._writer.write(held)
        await self._writer.drain()

    def _worded(self, text: str) -> str:
        code = text[:3]
        if self._in_ehlo or code in _PLAIN_CODES or _HAS_ENHANCED.match(text):
            return text
        if code == "552":  # aiosmtpd's size refusals, at MAIL (SIZE=) and in DATA
            return replies.message_too_big(self.settings.smtp.max_message_size)
        enhanced = _DEFAULT_ENHANCED.get(code)
        if enhanced is None or len(text) < 4:
            return text
        return f"{code}{text[3]}{enhanced} {text[4:]}"

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_ehlo = True  # RFC 2034: no enhanced codes in the EHLO reply
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    # -- MAIL FROM / RCPT TO addresses -------------------------------------------------

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parser, with a fast path for the plain ``<local@domain>``
        nearly every client sends (its general parser costs a fifth of our CPU time
        at a few hundred mails a second). Anything else goes the general way."""
        match = _PLAIN_ADDRESS.match(arg)
        rest = match.group(2).lstrip(" \t") if match else ""
        if match is None or rest.startswith("("):  # comments too go the general way
            return super()._getaddr(arg)
        return match.group(1), rest

    # -- AUTH: the same mechanisms as aiosmtpd's, with the password check in a thread --

    async def auth_PLAIN(self, _: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = b64decode(args[1].encode(), validate=True)
            except ValueError:
                await self.push("501 5.5.2 cannot decode base64")
                return AuthResult(success=False, handled=True)
        assert isinstance(blob, bytes)
        fields = blob.split(b"\x00")
        if len(fields) != 3:
            await self.push("501 5.5.2 cannot split the AUTH PLAIN value")
            return AuthResult(success=False, handled=True)
        return await self._check(fields[1], fields[2])

    async def auth_LOGIN(self, _: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if login is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = b64decode(args[1].encode(), validate=True)
            except ValueError:
                await self.push("501 5.5.2 cannot decode base64")
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        assert isinstance(login, bytes)
        assert isinstance(password, bytes)
        return await self._check(login, password)

    async def _check(self, login: bytes, password: bytes) -> AuthResult:
        name = login.decode("utf-8", "replace").strip()
        peer = self.session.peer if self.session else None
        address = address_key(peer)
        if not self.throttle.begin(address):
            log.warning("smtp.auth_refused", peer=str(peer), reason="failures from the address")
            return await self._hang_up(replies.AUTH_BLOCKED)
        user: User | None = None
        try:
            user = await asyncio.to_thread(
                senders.login, self.settings, name, password.decode("utf-8", "replace")
            )
        finally:
            self.throttle.end(address, ok=user is not None)
        if user is None:
            self._auth_failures += 1
            log.warning(
                "smtp.auth_failed",
                peer=str(peer),
                failures=self._auth_failures,
                **login_hint(name),
            )
            await asyncio.sleep(delay(self._auth_failures))
            if self._auth_failures >= self.settings.smtp.auth_failures_per_connection:
                return await self._hang_up(replies.TOO_MANY_AUTH_FAILURES)
            return AuthResult(success=False, handled=False, message=replies.AUTH_FAILED)
        log.info("smtp.auth", user=user.emails[0], peer=str(peer), extension_id=user.extension_id)
        return AuthResult(success=True, auth_data=user)

    async def _hang_up(self, reply: str) -> AuthResult:
        await self.push(reply)
        if self.transport is not None:
            self.transport.close()
        return AuthResult(success=False, handled=True)

    # -- stopping -----------------------------------------------------------------------

    def close_for_shutdown(self) -> None:
        """Tell an idle client we are going, and hang up."""
        transport = cast(asyncio.WriteTransport | None, self.transport)  # uvloop's: no subclass
        if transport is not None and not transport.is_closing():
            transport.write((replies.SHUTTING_DOWN + "\r\n").encode())
            transport.close()


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    smtp = settings.smtp
    if smtp.tls_cert is None or smtp.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(smtp.tls_cert, smtp.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"smtp.tls_cert/tls_key: cannot load: {exc}") from exc
    return context


class SmtpListeners:
    """Every ``[smtp] listen`` address, served in this event loop."""

    def __init__(
        self,
        settings: Settings,
        handler: Any,
        metrics: Metrics | None = None,
        *,
        caps: Caps | None = None,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.metrics = metrics or Metrics()
        smtp = settings.smtp
        # Per listener; the daemon may give lower caps when descriptors are short.
        self.caps = caps or Caps(smtp.max_connections, smtp.max_connections_per_address)
        self.throttle = AuthThrottle(smtp.auth_failures_per_address)
        self.draining = False
        self.connections: weakref.WeakSet[GatewaySMTP] = weakref.WeakSet()
        self.acceptors: list[Acceptor] = []

    def _connection(self, slot: Slot, **kwargs: Any) -> asyncio.BaseProtocol:
        """A new connection, with the settings of now (SIGHUP may have changed users);
        while the daemon drains, a 421 and goodbye."""
        if self.draining:
            return _ShuttingDown(self.metrics, slot)
        return GatewaySMTP(
            self.handler,
            settings=self.settings,
            metrics=self.metrics,
            throttle=self.throttle,
            slot=slot,
            **kwargs,
        )

    def _refused(self, _reason: str) -> None:
        self.metrics.smtp_reply("421")

    def reload(self, settings: Settings) -> None:
        """New users and policies (SIGHUP) for new connections and the handler."""
        self.settings = settings
        self.handler.reload(settings)

    async def start(self) -> None:
        context = tls_context(self.settings)
        smtp = self.settings.smtp
        for listener in smtp.listen:
            factory = partial(
                self._connection,
                listener=listener,
                connections=self.connections,
                data_size_limit=smtp.max_message_size,
                enable_SMTPUTF8=True,
                decode_data=False,
                hostname=smtp.hostname,
                ident=f"gatewayd {__version__} ESMTP",
                tls_context=context,
                auth_require_tls=not listener.auth_without_tls,
            )
            try:
                sockets = await asyncio.to_thread(
                    bind, listener.address.host, listener.address.port
                )
            except OSError as exc:
                raise StartupError(
                    f"smtp.listen {listener.address}: {exc.strerror or exc}"
                ) from exc
            acceptor = Acceptor(
                f"smtp {listener.address}",
                sockets,
                factory,
                self.caps,
                refusals=_REFUSALS,
                on_refused=self._refused,
            )
            acceptor.start()
            self.acceptors.append(acceptor)
            log.info(
                "smtp.listening",
                address=str(listener.address),
                require_auth=listener.require_auth,
                starttls=context is not None,
                max_connections=self.caps.per_listener,
                max_connections_per_address=self.caps.per_address,
            )

    def stop_accepting(self) -> None:
        """Take no more mail: new connections are answered 421 until ``hang_up``."""
        self.draining = True

    def close_listeners(self) -> None:
        for acceptor in self.acceptors:
            acceptor.close()

    def hang_up(self) -> int:
        """Stop listening and close every connection still open; returns how many
        there were."""
        self.close_listeners()
        open_now = list(self.connections)
        for connection in open_now:
            connection.close_for_shutdown()
        return len(open_now)


class _ShuttingDown(asyncio.Protocol):
    """A connection that arrives while the daemon drains: told to come back later."""

    def __init__(self, metrics: Metrics, slot: Slot) -> None:
        self.metrics = metrics
        self.slot = slot

    def connection_lost(self, exc: Exception | None) -> None:
        self.slot.release()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.metrics.smtp_reply("421")
        writer = cast(asyncio.WriteTransport, transport)
        writer.write(b"421 4.3.2 gatewayd is shutting down; try again later\r\n")
        writer.close()


def _longest_line(piece: bytes, run: int) -> tuple[int, int]:
    """The longest line in ``piece`` with its LF, the one still open counted so far, and
    the open line's length after it, given ``run`` bytes of it before ``piece``."""
    first = piece.find(b"\n")
    if first < 0:
        return run + len(piece), run + len(piece)
    last = piece.rfind(b"\n")
    longest = max(run + first + 1, len(piece) - last - 1)
    if last > first:
        longest = max(longest, max(map(len, piece[first + 1 : last].split(b"\n"))) + 1)
    return longest, len(piece) - last - 1
