"""The channel between the daemon and its SMS process: one end each of a socket pair,
one message a frame (a 4-byte length, then the message pickled).

Both ends are this program (the daemon made the pair and handed the SMS process its
end when it started it; nothing else can reach it), so pickle carries the settings as
they are. What goes over it:

- daemon -> SMS process: ``Start`` first (the settings and the grace period), then
  ``Wake`` (SMS were queued: lease now), ``Reload`` (new settings after SIGHUP) and
  ``Beat`` (the node's heartbeat was written at that monotonic time; the SMS process
  leases nothing while it is stale, as the daemon's own workers).
- SMS process -> daemon: ``Links``, what each SMPP link says of itself, within a tenth
  of a second of a change and every second (for /metrics, ``gatewayd status``, the
  console and the node's heartbeat), with the statuses messages entered there since
  the last ``Links`` (``entered``: how many of each, which the daemon's metrics count,
  as they count what the daemon itself writes).

A frame larger than MAX_FRAME is a broken channel.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from gatewayd.config.settings import Settings
from gatewayd.model import Direction, MessageStatus, MessageType

HEADER = struct.Struct(">I")
MAX_FRAME = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Start:
    settings: Settings
    grace: float
    beat: float = 0.0  # the node's last heartbeat (time.monotonic()), as Beat


@dataclass(frozen=True, slots=True)
class Wake:
    pass


@dataclass(frozen=True, slots=True)
class Reload:
    settings: Settings


@dataclass(frozen=True, slots=True)
class Beat:
    at: float  # time.monotonic() (one clock for every process of the machine)


@dataclass(frozen=True, slots=True)
class LinkSnapshot:
    """An SMPP link as its process last saw it (metrics.LinkView)."""

    name: str
    state_name: str
    bound: bool
    window_in_use: int
    counts: Mapping[str, int] = field(default_factory=dict)
    responses: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    states: tuple[str, ...] = ()


# A status a message entered: its type, direction, status and failure code (the code
# only for SendingFailed and DeliveryFailed; "cancelled" counts as metrics say).
Entered = tuple[MessageType, Direction, MessageStatus, str | None, bool]


@dataclass(frozen=True, slots=True)
class Links:
    links: tuple[LinkSnapshot, ...]
    entered: Mapping[Entered, int] = field(default_factory=dict)


Message = Start | Wake | Reload | Beat | Links


class ChannelClosed(Exception):
    """The other end is gone (or sent something that is not a frame)."""


def encode(message: Message) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(payload)) + payload


def _decode(payload: bytes) -> Message:
    try:
        message = pickle.loads(payload)  # noqa: S301  (our own process at the other end)
    except Exception as exc:  # a broken frame: the channel cannot go on
        raise ChannelClosed(f"unreadable message: {exc}") from exc
    if not isinstance(message, Start | Wake | Reload | Beat | Links):
        raise ChannelClosed(f"unexpected message {type(message).__name__}")
    return message


def read_blocking(sock: socket.socket) -> Message:
    """One message, before there is an event loop (the SMS process's Start)."""

    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            piece = sock.recv(count - len(data))
            if not piece:
                raise ChannelClosed("the channel closed")
            data += piece
        return data

    (length,) = HEADER.unpack(exactly(HEADER.size))
    if length > MAX_FRAME:
        raise ChannelClosed(f"a frame of {length} bytes")
    return _decode(exactly(length))


class Channel:
    """One end, on the event loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._length: int | None = None  # a frame's header read, its payload not yet

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    def send(self, message: Message) -> None:
        """Queue a message (small; the other end reads as fast as it can)."""
        if self._writer.is_closing():
            raise ChannelClosed("the channel is closed")
        self._writer.write(encode(message))

    @property
    def backlog(self) -> int:
        """Bytes written and not yet taken by the other end's socket."""
        transport = self._writer.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    async def receive(self) -> Message:
        """The next message. Safe to cancel (a timeout): readexactly takes nothing from
        the stream until all it asked for is there, and a header already taken is kept
        for the next call."""
        try:
            if self._length is None:
                (length,) = HEADER.unpack(await self._reader.readexactly(HEADER.size))
                if length > MAX_FRAME:
                    raise ChannelClosed(f"a frame of {length} bytes")
                self._length = length
            payload = await self._reader.readexactly(self._length)
            self._length = None
            return _decode(payload)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ChannelClosed("the channel closed") from exc

    def close(self) -> None:
        self._writer.close()
