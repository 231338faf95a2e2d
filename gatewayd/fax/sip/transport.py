"""SIP over UDP, TCP or TLS on asyncio (RFC 3261 section 18).

One ``Transport`` per user agent, of the configured kind, bound to
``[fax.sip] local_address``:

- UDP: one socket; requests and responses are datagrams; a message from a peer is
  answered to the address it came from (symmetric, RFC 3581's rport behaviour).
- TCP: a listening socket (the Contact we register says where) and outgoing
  connections, one per peer, reused; a request that came over a connection is
  answered over it, and anything the peer sends on a connection we opened is taken
  too (so a proxy can reach us over the connection we keep to it, behind NAT).
- TLS: outgoing connections only (no server certificate of ours): the proxy reaches
  us over the connection we opened and keep (see docs/sip-fax.md).

Unreadable input is dropped with a debug line (a stream that cannot be read is
closed). ``advertised`` is the address peers should use: the bound one, or, when
bound to every address (0.0.0.0), the local address that routes to the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from gatewayd.fax.sip.message import Request, Response, SipParseError, StreamParser, parse
from gatewayd.logging import get_logger

log = get_logger("gatewayd.sip")

CONNECT_TIMEOUT = 10.0


class TransportError(OSError):
    """A message could not be sent (connection refused, unreachable, closed)."""


@dataclass(eq=False)
class Connection:
    """One TCP or TLS stream and the messages read from it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    host: str
    port: int
    parser: StreamParser = field(default_factory=StreamParser)
    task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return not self.writer.is_closing()


@dataclass(frozen=True)
class Peer:
    host: str
    port: int
    connection: Connection | None = None  # the stream a message came on, if any


Handler = Callable[[Request | Response, Peer], None]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: Transport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if data.strip(b"\r\n\x00") == b"":
            return  # keep-alive
        host, port = str(addr[0]), int(str(addr[1]))
        try:
            message = parse(data)
        except SipParseError as exc:
            log.debug("sip.unreadable", peer=f"{host}:{port}", problem=str(exc))
            return
        self.owner.deliver(message, Peer(host, port))

    def error_received(self, exc: Exception) -> None:
        log.debug("sip.udp_error", error=str(exc))


class Transport:
    def __init__(
        self,
        kind: str,
        host: str,
        port: int,
        handler: Handler,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_name: str | None = None,
    ) -> None:
        self.kind = kind.upper()  # "UDP", "TCP", "TLS"
        self.host = host
        self.port = port
        self.handler = handler
        self.ssl_context = ssl_context
        self.server_name = server_name
        self.advertised = host
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[tuple[str, int], Connection] = {}
        self._accepted: set[Connection] = set()
        self._connecting: dict[tuple[str, int], asyncio.Future[Connection]] = {}
        # told when a connection we opened ends (the registration re-registers at once)
        self.on_connection_lost: Callable[[str, int], None] | None = None

    @property
    def reliable(self) -> bool:
        return self.kind != "UDP"

    async def start(self, toward: str) -> None:
        """Bind; ``toward`` (the proxy's address) picks the advertised address."""
        loop = asyncio.get_running_loop()
        if self.kind == "UDP":
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(self.host, self.port)
            )
            self._udp = transport
            self.port = int(transport.get_extra_info("sockname")[1])
        elif self.kind == "TCP":
            self._server = await asyncio.start_server(self._accept, self.host, self.port)
            self.port = int(self._server.sockets[0].getsockname()[1])
        unspecified = ipaddress.ip_address(self.host).is_unspecified
        self.advertised = _route_to(toward) if unspecified else self.host

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
        for connection in self._accepted:
            connection.writer.close()  # its reader sees the end and returns
        readers = []
        for connection in self._connections.values():
            connection.writer.close()
            if connection.task is not None:
                connection.task.cancel()
                readers.append(connection.task)
        for task in readers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._connections.clear()

    def deliver(self, message: Request | Response, peer: Peer) -> None:
        self.handler(message, peer)

    # -- sending ---------------------------------------------------------------------

    async def send(self, message: Request | Response, peer: Peer) -> None:
        data = bytes(message)
        if self.kind == "UDP":
            if self._udp is None:
                raise TransportError("the SIP transport is closed")
            self._udp.sendto(data, (peer.host, peer.port))
            return
        connection = peer.connection
        if connection is None or not connection.alive:
            connection = await self._connection(peer.host, peer.port)
        try:
            connection.writer.write(data)
            await connection.writer.drain()
        except (OSError, ConnectionError) as exc:
            connection.writer.close()
            raise TransportError(f"sending to {peer.host}:{peer.port} failed: {exc}") from exc

    async def _connection(self, host: str, port: int) -> Connection:
        key = (host, port)
        existing = self._connections.get(key)
        if existing is not None and existing.alive:
            return existing
        pending = self._connecting.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self._connecting[key] = future
        try:
            server_name = (self.server_name or host) if self.ssl_context else None
            opening = asyncio.open_connection(
                host, port, ssl=self.ssl_context, server_hostname=server_name
            )
            reader, writer = await asyncio.wait_for(opening, CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            error = TransportError(f"cannot connect to {host}:{port} over {self.kind}: {exc}")
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning
            raise error from exc
        finally:
            self._connecting.pop(key, None)
        connection = Connection(reader, writer, host, port)
        self._connections[key] = connection
        connection.task = asyncio.create_task(self._read(connection), name=f"sip-{host}:{port}")
        future.set_result(connection)
        return connection

    # -- receiving on streams --------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        connection = Connection(reader, writer, str(peer[0]), int(peer[1]))
        self._accepted.add(connection)
        try:
            await self._read(connection)
        finally:
            self._accepted.discard(connection)

    async def _read(self, connection: Connection) -> None:
        try:
            while True:
                data = await connection.reader.read(65536)
                if not data:
                    return
                try:
                    messages = connection.parser.feed(data)
                except SipParseError as exc:
                    where = f"{connection.host}:{connection.port}"
                    log.debug("sip.unreadable", peer=where, problem=str(exc))
                    return
                for message in messages:
                    self.deliver(message, Peer(connection.host, connection.port, connection))
        except (OSError, ConnectionError, ssl.SSLError) as exc:
            where = f"{connection.host}:{connection.port}"
            log.debug("sip.connection_lost", peer=where, error=str(exc))
        finally:
            connection.writer.close()
            with contextlib.suppress(OSError, ConnectionError, ssl.SSLError):
                await connection.writer.wait_closed()
            key = (connection.host, connection.port)
            if self._connections.get(key) is connection:
                del self._connections[key]
                if self.on_connection_lost is not None:
                    self.on_connection_lost(*key)


def _route_to(host: str) -> str:
    """The local address the kernel would use to reach ``host`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1" if family == socket.AF_INET else "::1"
