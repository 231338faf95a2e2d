"""RTP (RFC 3550) for G.711 fax audio: packets, and a jitter buffer.

``Sender`` numbers 20 ms packets (160 samples: timestamp +160, sequence +1, a random
SSRC and starting points, the marker bit on the first). ``parse`` reads a packet
(CSRCs, a header extension and padding skipped); anything that is not RTP version 2
is None.

``JitterBuffer`` gives the fax modem one block per 20 ms tick of our own monotonic
clock, whatever the network did: packets are held for ``delay`` ticks so that
jitter up to that much changes nothing, put back in sequence order, and a block that
has not come when its turn is due is reported lost (the modem then bridges the gap:
``fax_rx_fillin``); when it comes later it is dropped. A sender that restarts its
numbering (a new SSRC, a large jump) starts the buffer over; more than ``capacity``
blocks waiting (the far end's clock runs fast) drops the oldest.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

HEADER = 12
SAMPLES = 160
JUMP = 1000


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    marker: bool
    payload: bytes


def build(packet: RtpPacket) -> bytes:
    first = 0x80  # version 2, no padding, no extension, no CSRC
    second = (0x80 if packet.marker else 0) | (packet.payload_type & 0x7F)
    return (
        bytes([first, second])
        + (packet.seq & 0xFFFF).to_bytes(2, "big")
        + (packet.timestamp & 0xFFFFFFFF).to_bytes(4, "big")
        + (packet.ssrc & 0xFFFFFFFF).to_bytes(4, "big")
        + packet.payload
    )


def parse(data: bytes) -> RtpPacket | None:
    if len(data) < HEADER or data[0] >> 6 != 2:
        return None
    csrc = data[0] & 0x0F
    at = HEADER + 4 * csrc
    if data[0] & 0x10:  # header extension: 4 octets, then its length in words
        if len(data) < at + 4:
            return None
        at += 4 + 4 * int.from_bytes(data[at + 2 : at + 4], "big")
    end = len(data)
    if data[0] & 0x20:  # padding: the last octet counts it
        end -= data[-1]
    if end < at:
        return None
    return RtpPacket(
        payload_type=data[1] & 0x7F,
        seq=int.from_bytes(data[2:4], "big"),
        timestamp=int.from_bytes(data[4:8], "big"),
        ssrc=int.from_bytes(data[8:12], "big"),
        marker=bool(data[1] & 0x80),
        payload=data[at:end],
    )


class Sender:
    def __init__(self, payload_type: int) -> None:
        self.payload_type = payload_type
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbits(16)
        self.timestamp = secrets.randbits(32)
        self._first = True

    def packet(self, payload: bytes) -> bytes:
        data = build(
            RtpPacket(self.payload_type, self.seq, self.timestamp, self.ssrc, self._first, payload)
        )
        self._first = False
        self.seq = (self.seq + 1) & 0xFFFF
        self.timestamp = (self.timestamp + SAMPLES) & 0xFFFFFFFF
        return data


@dataclass(slots=True)
class JitterStats:
    received: int = 0
    played: int = 0
    lost: int = 0  # blocks due that had not come while the far end was sending (bridged)
    silent: int = 0  # ticks with nothing from the far end for a while (its end of call)
    late: int = 0  # blocks that came after their turn (dropped)
    dropped: int = 0  # blocks dropped because too many waited
    restarts: int = 0


class JitterBuffer:
    def __init__(self, *, delay: int = 5, capacity: int = 50) -> None:
        self.delay = delay
        self.capacity = capacity
        self.stats = JitterStats()
        self._store: dict[int, bytes] = {}
        self._next: int | None = None
        self._ssrc: int | None = None
        self._waited = 0  # ticks since the first packet, until playing starts
        self._playing = False
        self._idle = 0  # ticks since the last packet came

    def push(self, packet: RtpPacket) -> None:
        self.stats.received += 1
        self._idle = 0
        if self._ssrc is not None and packet.ssrc != self._ssrc:
            self._restart()
        self._ssrc = packet.ssrc
        if self._next is None:
            self._next = packet.seq
        ahead = (packet.seq - self._next) & 0xFFFF
        if ahead >= 0x8000 and not self._playing and 0x10000 - ahead < self.capacity:
            self._next = packet.seq  # came out of order before playing began
            ahead = 0
        if ahead >= 0x8000:
            self.stats.late += 1
            return
        if ahead >= JUMP:
            self._restart()
            self._ssrc, self._next = packet.ssrc, packet.seq
        self._store[packet.seq] = packet.payload
        while len(self._store) > self.capacity:
            self._skip_to_oldest()
            self.stats.dropped += 1
            self._store.pop(self._next, None)
            self._next = (self._next + 1) & 0xFFFF

    def _skip_to_oldest(self) -> None:
        assert self._next is not None
        nxt = self._next
        self._next = min(self._store, key=lambda seq: (seq - nxt) & 0xFFFF)

    def _restart(self) -> None:
        self.stats.restarts += 1
        self._store.clear()
        self._next = None
        self._waited = 0
        self._playing = False

    def pop(self) -> bytes | None:
        """The block for this tick; None before anything came, or when it is lost."""
        if self._next is None:
            return None
        self._idle += 1
        if not self._playing:
            self._waited += 1
            if self._waited < self.delay and len(self._store) < self.delay:
                return None
            self._playing = True
        payload = self._store.pop(self._next, None)
        self._next = (self._next + 1) & 0xFFFF
        if payload is None and not self._store and self._idle > 2 * self.delay:
            self.stats.silent += 1
        elif payload is None:
            self.stats.lost += 1
        else:
            self.stats.played += 1
        return payload
