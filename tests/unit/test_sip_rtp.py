"""RTP packets and the jitter buffer that feeds the fax modem one block per tick."""

from __future__ import annotations

import random

from gatewayd.fax.sip import rtp


def packets(count: int, *, ssrc: int = 7, start: int = 65530) -> list[rtp.RtpPacket]:
    return [
        rtp.RtpPacket(8, (start + n) & 0xFFFF, n * 160, ssrc, n == 0, bytes([n % 256]) * 160)
        for n in range(count)
    ]


def test_packets_round_trip_and_extensions_padding_and_csrcs_are_skipped() -> None:
    sender = rtp.Sender(0)
    first, second = rtp.parse(sender.packet(b"a" * 160)), rtp.parse(sender.packet(b"b" * 160))
    assert first is not None
    assert second is not None
    assert first.marker
    assert not second.marker
    assert (second.seq - first.seq) & 0xFFFF == 1
    assert (second.timestamp - first.timestamp) & 0xFFFFFFFF == 160
    assert first.ssrc == second.ssrc
    assert first.payload_type == 0
    # one CSRC, an extension of one word, and 3 octets of padding
    data = bytes([0xB1, 8]) + bytes(10) + bytes(4) + bytes([0xBE, 0xDE, 0, 1]) + bytes(4)
    data += b"xyz" + bytes([0, 0, 3])
    parsed = rtp.parse(data)
    assert parsed is not None
    assert parsed.payload == b"xyz"
    assert rtp.parse(b"\x00" * 20) is None  # not version 2
    assert rtp.parse(b"\x80\x08") is None


def test_jitter_within_the_delay_changes_nothing() -> None:
    rng = random.Random(1)
    buffer = rtp.JitterBuffer(delay=5)
    sent = packets(400)
    arrivals: dict[int, list[rtp.RtpPacket]] = {}
    delays = [rng.randrange(5) for _ in sent]  # each packet 0..80 ms late: often reordered
    delays[0], delays[1] = 2, 0  # even the first: the second comes before it
    for n, packet in enumerate(sent):
        arrivals.setdefault(n + delays[n], []).append(packet)
    played = []
    tick = 0
    while len(played) < len(sent):
        for packet in arrivals.get(tick, []):
            buffer.push(packet)
        block = buffer.pop()
        if block is not None:
            played.append(block)
        tick += 1
        assert tick < 500
    assert played == [p.payload for p in sent]
    assert buffer.stats.lost == 0
    assert buffer.stats.late == 0


def test_a_missing_block_is_lost_in_its_turn_and_dropped_when_it_comes_late() -> None:
    buffer = rtp.JitterBuffer(delay=2)
    sent = packets(6, start=100)
    for packet in sent[:2]:
        buffer.push(packet)
    assert buffer.pop() == sent[0].payload
    assert buffer.pop() == sent[1].payload
    buffer.push(sent[3])
    assert buffer.pop() is None  # seq 102 has not come: lost, bridged by the modem
    buffer.push(sent[2])  # comes after its turn
    assert buffer.pop() == sent[3].payload
    assert (buffer.stats.lost, buffer.stats.late) == (1, 1)


def test_a_new_ssrc_starts_over_and_too_much_waiting_drops_the_oldest() -> None:
    buffer = rtp.JitterBuffer(delay=1, capacity=4)
    for packet in packets(3, ssrc=1):
        buffer.push(packet)
    assert buffer.pop() == packets(1, ssrc=1)[0].payload
    fresh = packets(10, ssrc=2, start=9000)
    for packet in fresh:
        buffer.push(packet)
    assert buffer.stats.restarts == 1
    assert buffer.stats.dropped == 6
    assert [buffer.pop() for _ in range(4)] == [p.payload for p in fresh[6:]]
