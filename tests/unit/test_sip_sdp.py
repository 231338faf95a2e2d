"""SDP offer/answer for fax calls: G.711 in the offerer's order, T.38 (image/t38) with
the Annex D attributes, one answer line per offered line, and the T.38 re-INVITE
offers a far end sends (Asterisk and FreeSWITCH shapes)."""

from __future__ import annotations

import pytest

from gatewayd.fax.sip import sdp

AUDIO_OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
)
# A T.38 re-INVITE as Asterisk sends it: the audio line turned into image.
T38_REOFFER = (
    b"v=0\r\no=- 1 2 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
    b"m=image 40002 udptl t38\r\na=T38FaxVersion:0\r\na=T38MaxBitRate:14400\r\n"
    b"a=T38FaxRateManagement:transferredTCF\r\na=T38FaxMaxBuffer:400\r\n"
    b"a=T38FaxMaxDatagram:160\r\na=T38FaxUdpEC:t38UDPRedundancy\r\na=T38FaxFillBitRemoval\r\n"
)
# Audio refused and image added, as some gateways offer it.
BOTH = (
    b"v=0\r\no=- 5 5 IN IP4 203.0.113.9\r\ns=-\r\nc=IN IP4 203.0.113.9\r\nt=0 0\r\n"
    b"m=audio 0 RTP/AVP 8\r\nm=image 41000 udptl t38\r\nc=IN IP4 203.0.113.10\r\n"
    b"a=T38FaxVersion:3\r\na=T38MaxBitRate:33600\r\na=T38FaxUdpEC:t38UDPFEC\r\n"
)


def test_audio_answer_takes_the_offerers_first_g711_codec() -> None:
    offer = sdp.parse(AUDIO_OFFER)
    answer, chosen = sdp.answer(
        offer, address="192.0.2.1", audio_port=10000, image_port=10001, t38=True, version=1
    )
    assert chosen == sdp.Chosen("audio", "198.51.100.7", 40000, codec="PCMU", payload_type=0)
    [line] = sdp.parse(sdp.render(answer)).media
    assert (line.kind, line.port, line.formats) == ("audio", 10000, ["0"])
    assert line.attribute("rtpmap") == "0 PCMU/8000"
    assert line.attribute("ptime") == "20"


def test_a_t38_reinvite_is_answered_with_negotiated_parameters() -> None:
    offer = sdp.parse(T38_REOFFER)
    answer, chosen = sdp.answer(
        offer, address="192.0.2.1", audio_port=10000, image_port=10002, t38=True, version=2
    )
    assert (chosen.kind, chosen.address, chosen.port) == ("image", "198.51.100.7", 40002)
    assert chosen.t38 is not None
    assert chosen.t38.max_datagram == 160
    [line] = sdp.parse(sdp.render(answer)).media
    assert (line.kind, line.port, line.proto, line.formats) == ("image", 10002, "udptl", ["t38"])
    ours = sdp.T38Params.of(line)
    assert ours.version == 0
    assert ours.max_bit_rate == 14400
    assert ours.rate_management == "transferredTCF"
    assert ours.udp_ec == sdp.EC_REDUNDANCY
    assert not ours.fill_bit_removal  # we do not remove fill bits


def test_with_t38_off_a_t38_only_offer_is_refused_for_a_488() -> None:
    with pytest.raises(sdp.SdpError, match=r"neither G\.711"):
        sdp.answer(
            sdp.parse(T38_REOFFER),
            address="192.0.2.1",
            audio_port=1,
            image_port=2,
            t38=False,
            version=1,
        )


def test_one_answer_line_per_offered_line_and_media_level_addresses() -> None:
    offer = sdp.parse(BOTH)
    answer, chosen = sdp.answer(
        offer, address="192.0.2.1", audio_port=10000, image_port=10002, t38=True, version=1
    )
    lines = sdp.parse(sdp.render(answer)).media
    assert [(m.kind, m.port) for m in lines] == [("audio", 0), ("image", 10002)]
    assert chosen.address == "203.0.113.10"
    assert chosen.t38 is not None
    assert chosen.t38.udp_ec == sdp.EC_REDUNDANCY  # FEC offered: we answer redundancy
    assert sdp.T38Params.of(lines[1]).version == 0


def test_our_offers_and_what_an_answer_settles() -> None:
    session = sdp.new_session("192.0.2.1")
    session.media.append(sdp.audio_media(10000, ["PCMA", "PCMU"]))
    offer = sdp.parse(sdp.render(session))
    [audio] = offer.media
    assert audio.formats == ["8", "0"]
    assert sdp.audio_codecs(audio) == [("PCMA", 8), ("PCMU", 0)]
    reinvite = sdp.new_session("192.0.2.1")
    reinvite.media.append(sdp.image_media(10002, sdp.OUR_T38))
    [image] = sdp.parse(sdp.render(reinvite)).media
    assert sdp.is_t38(image)
    assert sdp.T38Params.of(image) == sdp.OUR_T38
    answered = sdp.parse(T38_REOFFER)
    assert sdp.chosen(answered, t38_offered=True).kind == "image"
    refused = sdp.parse(BOTH.replace(b"m=image 41000", b"m=image 0"))
    with pytest.raises(sdp.SdpError, match="accepts none"):
        sdp.chosen(refused, t38_offered=True)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"v=0\r\nc=IN IP4 1.2.3.4\r\n", "no m= line"),
        (b"v=0\r\nm=audio 1 RTP/AVP 0\r\n", "no connection address"),
        (b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n", "MEDIA PORT PROTO"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_bad_sdp_is_named(body: bytes, problem: str) -> None:
    with pytest.raises(sdp.SdpError, match=problem):
        sdp.parse(body)
