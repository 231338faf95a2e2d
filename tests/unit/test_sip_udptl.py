"""UDPTL framing (T.38 clause 9.1): the octets, redundancy that fits the far end's
datagram size, and a receiver that recovers lost packets from the ones after."""

from __future__ import annotations

import random

import pytest

from gatewayd.fax.sip import udptl


def test_the_octets_of_a_packet_with_redundancy() -> None:
    data = udptl.encode(0x1234, b"\x06", [b"\xc0\x01\x80", b"\x02"])
    assert data == bytes.fromhex("1234 01 06 00 02 03c00180 0102")
    assert udptl.decode(data) == udptl.Packet(0x1234, b"\x06", (b"\xc0\x01\x80", b"\x02"))


def test_long_ifps_use_two_octet_lengths() -> None:
    ifp = bytes(range(256)) * 2
    data = udptl.encode(7, ifp)
    assert data[2:4] == bytes([0x82, 0x00])
    assert udptl.decode(data).primary == ifp


def test_fec_packets_give_their_primary() -> None:
    # seq 5, primary 1 octet, FEC: npackets (1 octet: 3), 2 entries
    data = bytes.fromhex("0005 01 4a 80 01 03 02 02aabb 01cc")
    packet = udptl.decode(data)
    assert (packet.seq, packet.primary, packet.fec) == (5, b"\x4a", True)


@pytest.mark.parametrize(
    "data", [b"", b"\x00\x01\x05\x01", b"\x00\x01\x00\x00", b"\x00\x01\x01\x06\x00\x05\x01"]
)
def test_truncated_or_empty_packets_are_refused(data: bytes) -> None:
    with pytest.raises(udptl.UdptlError):
        udptl.decode(data)


def test_redundancy_is_trimmed_to_the_far_ends_max_datagram() -> None:
    sender = udptl.Sender(depth=4, max_datagram=60)
    packets = [udptl.decode(sender.packet(bytes([n]) * 20)) for n in range(6)]
    assert [len(p.secondaries) for p in packets] == [0, 1, 1, 1, 1, 1]
    assert packets[5].secondaries == (bytes([4]) * 20,)
    roomy = udptl.Sender(depth=3, max_datagram=400)
    deep = [udptl.decode(roomy.packet(bytes([n]))) for n in range(5)]
    assert deep[4].secondaries == (b"\x03", b"\x02", b"\x01")


def test_losses_are_recovered_in_order_and_repeats_dropped() -> None:
    sender, receiver = udptl.Sender(depth=3), udptl.Receiver()
    sent = [sender.packet(f"ifp{n}".encode()) for n in range(10)]
    got = []
    for n, data in enumerate(sent):
        if n in (2, 3, 7):  # lost
            continue
        got += receiver.receive(data)
        got += receiver.receive(data)  # T.38 repeats a packet with the same number
    assert got == [(n, f"ifp{n}".encode()) for n in range(10)]
    assert (receiver.stats.recovered, receiver.stats.lost, receiver.stats.repeats) == (3, 0, 7)
    late = receiver.receive(sent[3])
    assert late == []


def test_two_percent_random_loss_loses_nothing_with_depth_four() -> None:
    rng = random.Random(19)
    sender, receiver = udptl.Sender(depth=4), udptl.Receiver()
    got = []
    for n in range(20_000):
        data = sender.packet(n.to_bytes(3, "big"))
        if rng.random() >= 0.02:
            got += receiver.receive(data)
    assert [seq for seq, _ in got] == [n & 0xFFFF for n in range(got[0][0], 20_000)]
    assert receiver.stats.recovered > 300
    assert receiver.stats.lost == 0


def test_the_sequence_wraps() -> None:
    sender, receiver = udptl.Sender(), udptl.Receiver()
    sender.seq = 0xFFFE
    packets = [sender.packet(bytes([n + 1])) for n in range(4)]
    got = receiver.receive(packets[0]) + receiver.receive(packets[2]) + receiver.receive(packets[3])
    assert [seq for seq, _ in got] == [0xFFFE, 0xFFFF, 0, 1]
