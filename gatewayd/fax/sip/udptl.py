"""UDPTL: how T.38 IFP packets travel over UDP (ITU-T T.38 clause 9.1, Annex D; the
image/t38 media type of RFC 3362). spandsp 0.0.6 makes and reads IFP packets only;
the UDPTL framing around them is ours.

A UDPTL packet (ASN.1 PER, aligned)::

    UDPTLPacket ::= SEQUENCE {
        seq-number          INTEGER (0..65535),               -- 2 octets
        primary-ifp-packet  OPEN TYPE,                        -- length + IFP
        error-recovery      CHOICE {
            secondary-ifp-packets  SEQUENCE OF OPEN TYPE,     -- 0x00, count, each length + IFP
            fec-info               SEQUENCE { fec-npackets INTEGER,
                                              fec-data SEQUENCE OF OCTET STRING } } }  -- 0x80

Lengths are PER length determinants: one octet below 128, two (0x80 | high, low)
below 16384; longer (fragmented) ones are refused, as no IFP comes near that.

Redundancy (``t38UDPRedundancy``): each packet also carries the IFPs of the packets
before it, most recent first, as many as fit the far end's T38FaxMaxDatagram, so a
lost packet is recovered from the next one that arrives. ``Sender`` builds packets;
``Receiver`` puts IFPs back in order, fills gaps from the secondaries, and drops
repeats and late packets (T.38 asks for some packets to be sent more than once, with
the same sequence number). FEC packets are read for their primary IFP; recovery from
FEC data is not done (we answer every offer with redundancy or none).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

MAX_LENGTH = 16383
JUMP = 1000  # a sequence step this large is a restart, not a loss


class UdptlError(ValueError):
    """Bytes that are not a UDPTL packet."""


def _length(value: int) -> bytes:
    if value < 0x80:
        return bytes([value])
    if value <= MAX_LENGTH:
        return bytes([0x80 | (value >> 8), value & 0xFF])
    raise UdptlError(f"a length of {value} needs fragmentation, which is not supported")


def _read_length(data: bytes, at: int) -> tuple[int, int]:
    if at >= len(data):
        raise UdptlError("truncated: a length is missing")
    first = data[at]
    if first < 0x80:
        return first, at + 1
    if first & 0xC0 == 0x80:
        if at + 1 >= len(data):
            raise UdptlError("truncated: a two-octet length is cut")
        return ((first & 0x3F) << 8) | data[at + 1], at + 2
    raise UdptlError("a fragmented length is not supported")


def _read_open(data: bytes, at: int) -> tuple[bytes, int]:
    length, at = _read_length(data, at)
    if at + length > len(data):
        raise UdptlError(f"truncated: {length} octets announced, {len(data) - at} present")
    return data[at : at + length], at + length


@dataclass(frozen=True, slots=True)
class Packet:
    seq: int
    primary: bytes
    secondaries: tuple[bytes, ...] = ()  # IFPs of seq-1, seq-2, ...
    fec: bool = False


def encode(seq: int, primary: bytes, secondaries: tuple[bytes, ...] | list[bytes] = ()) -> bytes:
    if not primary:
        raise UdptlError("an empty IFP packet")
    out = bytearray((seq & 0xFFFF).to_bytes(2, "big"))
    out += _length(len(primary)) + primary
    out.append(0x00)  # secondary-ifp-packets
    out += _length(len(secondaries))
    for ifp in secondaries:
        out += _length(len(ifp)) + ifp
    return bytes(out)


def decode(data: bytes) -> Packet:
    if len(data) < 4:
        raise UdptlError(f"{len(data)} octets are too few for UDPTL")
    seq = int.from_bytes(data[:2], "big")
    primary, at = _read_open(data, 2)
    if not primary:
        raise UdptlError("an empty primary IFP")
    if at >= len(data):
        return Packet(seq, primary)  # no error-recovery field: tolerated
    choice, at = data[at], at + 1
    if choice & 0x80 == 0:
        count, at = _read_length(data, at)
        secondaries = []
        for _ in range(count):
            ifp, at = _read_open(data, at)
            secondaries.append(ifp)
        return Packet(seq, primary, tuple(secondaries))
    # fec-info: fec-npackets (a length-prefixed integer), then the FEC entries
    size, at = _read_length(data, at)
    at += size
    entries, at = _read_length(data, at)
    for _ in range(entries):
        _, at = _read_open(data, at)
    return Packet(seq, primary, (), fec=True)


class Sender:
    """Numbers IFP packets and adds the ones before as redundancy."""

    def __init__(self, *, depth: int = 4, max_datagram: int = 400) -> None:
        self.seq = 0
        self.max_datagram = max(max_datagram, 32)
        self._history: deque[bytes] = deque(maxlen=depth)

    def packet(self, ifp: bytes) -> bytes:
        secondaries = list(self._history)
        data = encode(self.seq, ifp, secondaries)
        while len(data) > self.max_datagram and secondaries:
            secondaries.pop()
            data = encode(self.seq, ifp, secondaries)
        self._history.appendleft(ifp)
        self.seq = (self.seq + 1) & 0xFFFF
        return data


@dataclass(slots=True)
class ReceiverStats:
    packets: int = 0
    recovered: int = 0  # IFPs taken from a later packet's redundancy
    lost: int = 0  # IFPs nothing brought
    repeats: int = 0  # repeats and late packets, dropped
    bad: int = 0


class Receiver:
    """IFPs in sequence order, gaps filled from redundancy."""

    def __init__(self) -> None:
        self.expected: int | None = None
        self.stats = ReceiverStats()

    def receive(self, data: bytes) -> list[tuple[int, bytes]]:
        """(sequence number, IFP) to hand to T.38, in order; [] for a repeat."""
        try:
            packet = decode(data)
        except UdptlError:
            self.stats.bad += 1
            return []
        self.stats.packets += 1
        if self.expected is None:
            self.expected = packet.seq
        ahead = (packet.seq - self.expected) & 0xFFFF
        if ahead >= 0x8000:  # behind what was delivered: a repeat or late
            self.stats.repeats += 1
            return []
        out: list[tuple[int, bytes]] = []
        if ahead >= JUMP:
            ahead = 0  # the far end restarted its numbering
        for missing in range(ahead):
            seq = (self.expected + missing) & 0xFFFF
            back = (packet.seq - seq) & 0xFFFF  # 1 = the packet just before
            if back - 1 < len(packet.secondaries):
                out.append((seq, packet.secondaries[back - 1]))
                self.stats.recovered += 1
            else:
                self.stats.lost += 1
        out.append((packet.seq, packet.primary))
        self.expected = (packet.seq + 1) & 0xFFFF
        return out
