"""Listening sockets served by our own accept loop, with caps on open connections.

Every listener (the SMTP listeners, the HTTP API) binds with ``bind`` and serves with
an ``Acceptor``, which in order:

1. accepts what the kernel has queued (at most ``BATCH`` a turn of the loop);
2. counts the connection against its listener's ``Caps``: open connections on the
   listener, and open connections from the client's address (an IPv6 client by its
   /64, which one customer's network shares; an IPv4-mapped address as IPv4). Over a
   cap, the door's refusal (``421 4.7.0 ...`` for SMTP, ``503`` for HTTP) is written
   on the raw socket and it is closed: no transport, no protocol, no task;
3. otherwise hands the socket to asyncio (``connect_accepted_socket``, with TLS when
   the listener has it) and the door's protocol, built with the ``Slot`` that it
   releases when the connection is lost.

Why not ``loop.create_server``: its accept loop (CPython 3.11) keeps calling
``accept()`` after EMFILE within one turn and schedules a retry for each failure, so
descriptor exhaustion becomes thousands of tracebacks a second and a busy loop. Here
an accept error pauses this listener for ``PAUSE`` seconds and is counted, logged
once per interval (``listener.accept_failed``); refusals likewise
(``listener.refused``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gatewayd.guard.tally import Tally, errno_name
from gatewayd.logging import get_logger

log = get_logger("gatewayd.guard")

BATCH = 64  # connections accepted per turn of the loop, at most
PAUSE = 1.0  # seconds a listener stops accepting after running out of descriptors
BACKLOG = 1024
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass(frozen=True, slots=True)
class Caps:
    """Open connections allowed on one listener, and from one client address."""

    per_listener: int
    per_address: int


def address_key(peer: Any) -> str:
    """What connections from ``peer`` (as ``getpeername`` gives it) are counted under."""
    host = peer[0] if isinstance(peer, tuple) and peer else str(peer)
    try:
        address = ipaddress.ip_address(str(host).partition("%")[0])
    except ValueError:
        return str(host)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Slot:
    """One admitted connection's place; ``release`` (idempotent) gives it back."""

    __slots__ = ("_limits", "key", "released")

    def __init__(self, limits: ConnectionLimits, key: str) -> None:
        self._limits = limits
        self.key = key
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._limits._release(self.key)


class ConnectionLimits:
    """The open connections of one listener, in total and by client address."""

    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self.open = 0
        self.by_address: dict[str, int] = {}

    def admit(self, peer: Any) -> Slot | str:
        """A Slot, or why not: ``"listener"`` or ``"address"`` (over that cap)."""
        if self.open >= self.caps.per_listener:
            return "listener"
        key = address_key(peer)
        count = self.by_address.get(key, 0)
        if count >= self.caps.per_address:
            return "address"
        self.by_address[key] = count + 1
        self.open += 1
        return Slot(self, key)

    def _release(self, key: str) -> None:
        self.open -= 1
        count = self.by_address.get(key, 0) - 1
        if count > 0:
            self.by_address[key] = count
        else:
            self.by_address.pop(key, None)


def bind(host: str, port: int, *, backlog: int = BACKLOG) -> list[socket.socket]:
    """Listening sockets for ``host:port`` (every address the name has), non-blocking.
    OSError if one cannot be bound (the others are closed)."""
    infos = socket.getaddrinfo(
        host or None,
        port,
        type=socket.SOCK_STREAM,
        proto=socket.IPPROTO_TCP,
        flags=socket.AI_PASSIVE,
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            # IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets (accepted ones
            # inherit it); without it each answer waits for the peer's delayed ACK.
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


ProtocolFactory = Callable[[Slot], asyncio.BaseProtocol]


class Acceptor:
    """Accepts connections on ``sockets`` for one listener named ``name``."""

    def __init__(
        self,
        name: str,
        sockets: list[socket.socket],
        factory: ProtocolFactory,
        caps: Caps,
        *,
        refusals: Mapping[str, bytes] | None = None,
        on_refused: Callable[[str], None] | None = None,
        tls: ssl.SSLContext | None = None,
        tls_handshake_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.sockets = sockets
        self.factory = factory
        self.limits = ConnectionLimits(caps)
        # What a refused client is told, by reason ("listener", "address"): written on
        # the raw socket before it is closed; never on a TLS listener, whose clients
        # expect a handshake first.
        self.refusals = {} if tls is not None or refusals is None else dict(refusals)
        self.on_refused = on_refused
        self.tls = tls
        self.tls_handshake_timeout = tls_handshake_timeout
        self.refused = Tally("listener.refused", listener=name)
        self.accept_failed = Tally("listener.accept_failed", listener=name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._paused: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._listen()

    def _listen(self) -> None:
        assert self._loop is not None
        self._paused = None
        if self.closed:
            return
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _pause(self) -> None:
        assert self._loop is not None
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
        if self._paused is None:
            self._paused = self._loop.call_later(PAUSE, self._listen)

    def _accept(self, listening: socket.socket) -> None:
        for _ in range(BATCH):
            try:
                conn, peer = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self.accept_failed.add(errno_name(exc))
                if exc.errno in _OUT_OF_RESOURCES:
                    self._pause()
                return
            admitted = self.limits.admit(peer)
            if isinstance(admitted, str):
                self.refused.add(admitted)
                self._refuse(conn, self.refusals.get(admitted, b""))
                if self.on_refused is not None:
                    self.on_refused(admitted)
                continue
            conn.setblocking(False)
            task = asyncio.ensure_future(self._connect(conn, admitted))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _refuse(conn: socket.socket, refusal: bytes) -> None:
        """Write the refusal and close, without waiting: a short reply fits the fresh
        socket's buffer. What the client sent already is read first, so that the close
        is a FIN rather than a reset that could discard the reply."""
        try:
            conn.setblocking(False)
            with contextlib.suppress(BlockingIOError, InterruptedError):
                conn.recv(65536)
            if refusal:
                conn.send(refusal)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            conn.close()

    async def _connect(self, conn: socket.socket, slot: Slot) -> None:
        assert self._loop is not None
        try:
            await self._loop.connect_accepted_socket(
                lambda: self.factory(slot),
                conn,
                ssl=self.tls,
                ssl_handshake_timeout=self.tls_handshake_timeout if self.tls else None,
            )
        except (OSError, ssl.SSLError, TimeoutError, EOFError):
            # The TLS handshake failed or the client left first; the protocol never
            # saw the connection, so its slot is given back here.
            slot.release()
            conn.close()
        except Exception:
            log.exception("listener.connection_failed", listener=self.name)
            slot.release()
            conn.close()

    def close(self) -> None:
        """Stop accepting (connections already open are the door's to close)."""
        if self.closed:
            return
        self.closed = True
        if self._paused is not None:
            self._paused.cancel()
        for sock in self.sockets:
            if self._loop is not None and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        for task in self._tasks:
            task.cancel()
        self.refused.close()
        self.accept_failed.close()
