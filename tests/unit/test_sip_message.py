"""SIP messages as RFC 3261 writes them: parsing (compact forms, folding, multi-value
headers, a stream cut at any byte), building, and the structured values."""

from __future__ import annotations

import pytest

from gatewayd.fax.sip.message import (
    Headers,
    NameAddr,
    Request,
    Response,
    SipParseError,
    SipUri,
    StreamParser,
    Via,
    parse,
    response_to,
)

# RFC 3261 24.2, the INVITE Alice sends through her proxy (its SDP cut down).
INVITE = (
    b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8;received=192.0.2.1\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.com>\r\n"
    b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 10\r\n"
    b"\r\n"
    b"v=0\r\no=x\r\n"
)


def test_an_rfc_3261_invite() -> None:
    message = parse(INVITE)
    assert isinstance(message, Request)
    assert (message.method, message.uri) == ("INVITE", "sip:bob@biloxi.com")
    assert message.cseq == (314159, "INVITE")
    assert message.call_id == "a84b4c76e66710"
    assert message.branch == "z9hG4bKnashds8"
    assert message.body == b"v=0\r\no=x\r\n"
    sender = NameAddr.parse(message.headers.get("From") or "")
    assert (sender.display, sender.uri, sender.tag) == (
        "Alice",
        "sip:alice@atlanta.com",
        "1928301774",
    )
    via = Via.parse(message.headers.get("Via") or "")
    assert (via.transport, via.host, via.port, via.params["received"]) == (
        "UDP",
        "pc33.atlanta.com",
        None,
        "192.0.2.1",
    )


def test_compact_forms_folding_and_several_values_in_one_header() -> None:
    data = (
        b"SIP/2.0 200 OK\r\n"
        b"v: SIP/2.0/TCP a.example:5070;branch=z9hG4bK1, SIP/2.0/UDP b.example;branch=z9hG4bK2\r\n"
        b"f: <sip:a@x>;tag=1\r\nt: <sip:b@y>;tag=2\r\ni: c1\r\nCSeq: 2 REGISTER\r\n"
        b'm: "Doe, John" <sip:j@h;transport=tcp>;expires=60,\r\n <sip:k@h>;expires=30\r\n'
        b"Record-Route: <sip:p1;lr>\r\nRecord-Route: <sip:p2;lr>\r\nl: 0\r\n\r\n"
    )
    message = parse(data)
    assert isinstance(message, Response)
    assert (message.status, message.reason) == (200, "OK")
    assert [Via.parse(v).host for v in message.headers.get_all("via")] == ["a.example", "b.example"]
    contacts = [NameAddr.parse(c) for c in message.headers.get_all("Contact")]
    assert [(c.display, c.params["expires"]) for c in contacts] == [("Doe, John", "60"), ("", "30")]
    assert message.headers.get_all("Record-Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"HELLO\r\n\r\n", "neither a request nor a status line"),
        (INVITE.replace(b"CSeq: 314159 INVITE\r\n", b""), "the CSeq header is missing"),
        (INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: many INVITE"), "is not NUMBER METHOD"),
        (INVITE.replace(b"Content-Length: 10", b"Content-Length: 99"), "Content-Length 99"),
        (INVITE.replace(b"Max-Forwards: 70", b"Max Forwards 70"), "has no name"),
        (b"x" * 70_000, "over 65536"),
    ],
)
def test_malformed_messages_are_named(data: bytes, problem: str) -> None:
    with pytest.raises(SipParseError, match=problem):
        parse(data)


def test_a_stream_cut_anywhere_gives_the_same_messages() -> None:
    stream = b"\r\n\r\n" + INVITE + b"\r\n" + INVITE
    for cut in range(len(stream)):
        parser = StreamParser()
        found = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert [m.call_id for m in found] == ["a84b4c76e66710", "a84b4c76e66710"], cut
        assert all(m.body == b"v=0\r\no=x\r\n" for m in found)


def test_a_stream_without_content_length_is_refused() -> None:
    with pytest.raises(SipParseError, match="Content-Length is required"):
        StreamParser().feed(INVITE.replace(b"Content-Length: 10\r\n", b""))


def test_serialising_sets_content_length_and_round_trips() -> None:
    message = parse(INVITE)
    assert isinstance(message, Request)
    message.body = b"v=0\r\n"
    again = parse(bytes(message))
    assert again.headers.get("Content-Length") == "5"
    assert again.body == b"v=0\r\n"
    assert list(again.headers)[:3] == list(message.headers)[:3]


def test_a_response_copies_what_rfc_3261_8_2_6_2_asks() -> None:
    request = parse(INVITE)
    assert isinstance(request, Request)
    ringing = response_to(request, 180, to_tag="abc")
    assert ringing.reason == "Ringing"
    assert NameAddr.parse(ringing.headers.get("To") or "").tag == "abc"
    assert ringing.headers.get("Via") == request.headers.get("Via")
    assert ringing.cseq == (314159, "INVITE")
    trying = response_to(request, 100, to_tag="abc")
    assert NameAddr.parse(trying.headers.get("To") or "").tag == ""  # 100 has no tag


def test_uris_and_name_addresses() -> None:
    uri = SipUri.parse("sip:+4930123@[2001:db8::1]:5070;transport=tcp;lr")
    assert (uri.user, uri.host, uri.port, uri.params) == (
        "+4930123",
        "2001:db8::1",
        5070,
        {"transport": "tcp", "lr": ""},
    )
    assert str(uri) == "sip:+4930123@[2001:db8::1]:5070;transport=tcp;lr"
    assert str(NameAddr("sip:a@b", 'Say "hi"', {"tag": "x"})) == '"Say \\"hi\\"" <sip:a@b>;tag=x'
    with pytest.raises(SipParseError):
        SipUri.parse("tel:+4930123")


def test_headers_are_case_insensitive_and_ordered() -> None:
    headers = Headers([("call-id", "1"), ("X-Thing", "a")])
    headers.set("CALL-ID", "2")
    headers.add("via", "SIP/2.0/UDP h;branch=z9hG4bK3", first=True)
    assert list(headers) == [
        ("Via", "SIP/2.0/UDP h;branch=z9hG4bK3"),
        ("Call-ID", "2"),
        ("X-Thing", "a"),
    ]
