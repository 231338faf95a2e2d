"""Our SMPP codec against smpplib's, the reference: the same fields make the same bytes,
and what smpplib writes we read back as the same fields."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smpplib import smpp

from gatewayd.sms import pdu
from gatewayd.sms.pdu import Command, Tag

LATIN1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=30)
OCTET = st.integers(0, 255)


class Sequence:
    """What smpplib asks of its client to number a request."""

    def __init__(self, number: int) -> None:
        self.sequence = number - 1

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


def smpplib_bytes(name: str, sequence: int, **fields: Any) -> bytes:
    made = smpp.make_pdu(name, client=Sequence(sequence), **fields)
    made.sequence = sequence
    return bytes(made.generate())


def cut(value: str, limit: int) -> str:
    return value[: limit - 1] if len(value) >= limit else value


SUBMITS = st.fixed_dictionaries(
    {
        "sequence": st.integers(1, 0x7FFFFFFF),
        "source": LATIN1,
        "destination": LATIN1,
        "source_ton": OCTET,
        "source_npi": OCTET,
        "dest_ton": OCTET,
        "dest_npi": OCTET,
        "esm_class": OCTET,
        "data_coding": OCTET,
        "registered_delivery": OCTET,
        "short_message": st.binary(max_size=254),
        "sar": st.one_of(
            st.none(), st.tuples(st.integers(0, 0xFFFF), st.integers(1, 255), st.integers(1, 255))
        ),
        "payload": st.one_of(st.none(), st.binary(min_size=1, max_size=600)),
    }
)


@settings(max_examples=300, deadline=None)
@given(case=SUBMITS)
def test_submit_sm_is_byte_identical(case: dict[str, Any]) -> None:
    sequence, source, destination = case["sequence"], case["source"], case["destination"]
    source_ton, source_npi = case["source_ton"], case["source_npi"]
    dest_ton, dest_npi, esm_class = case["dest_ton"], case["dest_npi"], case["esm_class"]
    data_coding, registered_delivery = case["data_coding"], case["registered_delivery"]
    short_message, sar, payload = case["short_message"], case["sar"], case["payload"]
    if payload is not None:
        short_message = b""  # smpplib refuses both at once
    tlvs: list[tuple[int, bytes]] = []
    extra: dict[str, Any] = {}
    if payload is not None:  # given before the SAR TLVs: the order is the codec's job
        tlvs.append(pdu.tlv(Tag.MESSAGE_PAYLOAD, payload))
        extra["message_payload"] = payload
    if sar is not None:
        tlvs += [
            pdu.tlv(Tag.SAR_MSG_REF_NUM, sar[0], 2),
            pdu.tlv(Tag.SAR_TOTAL_SEGMENTS, sar[1]),
            pdu.tlv(Tag.SAR_SEGMENT_SEQNUM, sar[2]),
        ]
        extra.update(sar_msg_ref_num=sar[0], sar_total_segments=sar[1], sar_segment_seqnum=sar[2])
    ours = pdu.encode_submit_sm(
        sequence,
        source=source,
        source_ton=source_ton,
        source_npi=source_npi,
        destination=destination,
        dest_ton=dest_ton,
        dest_npi=dest_npi,
        short_message=short_message,
        esm_class=esm_class,
        data_coding=data_coding,
        registered_delivery=registered_delivery,
        tlvs=tlvs,
    )
    theirs = smpplib_bytes(
        "submit_sm",
        sequence,
        source_addr=source,
        source_addr_ton=source_ton,
        source_addr_npi=source_npi,
        destination_addr=destination,
        dest_addr_ton=dest_ton,
        dest_addr_npi=dest_npi,
        short_message=short_message or None,
        esm_class=esm_class,
        data_coding=data_coding,
        registered_delivery=registered_delivery,
        **extra,
    )
    assert ours == theirs
    back = pdu.decode(ours)
    assert back.fields["source_addr"] == cut(source, 21)
    assert back.fields["destination_addr"] == cut(destination, 21)
    assert back.fields["short_message"] == short_message
    assert (back.fields["esm_class"], back.fields["data_coding"]) == (esm_class, data_coding)
    if payload is not None:
        assert back.tlvs[Tag.MESSAGE_PAYLOAD] == payload
    if sar is not None:
        assert back.tlv_int(Tag.SAR_MSG_REF_NUM) == sar[0]


DELIVERS = st.fixed_dictionaries(
    {
        "sequence": st.integers(1, 0x7FFFFFFF),
        "source": LATIN1,
        "destination": LATIN1,
        "esm_class": OCTET,
        "data_coding": OCTET,
        "short_message": st.binary(max_size=254),
        "receipted": st.one_of(
            st.none(), st.text("0123456789ABCDEFabcdef-", min_size=1, max_size=64)
        ),
        "state": st.one_of(st.none(), st.integers(0, 9)),
        "network_error": st.one_of(st.none(), st.binary(min_size=3, max_size=3)),
    }
)


@settings(max_examples=200, deadline=None)
@given(case=DELIVERS)
def test_deliver_sm_is_byte_identical_and_reads_back(case: dict[str, Any]) -> None:
    sequence, source, destination = case["sequence"], case["source"], case["destination"]
    esm_class, data_coding, short_message = (
        case["esm_class"],
        case["data_coding"],
        case["short_message"],
    )
    receipted, state, network_error = case["receipted"], case["state"], case["network_error"]
    fields = {
        "source_addr": source,
        "destination_addr": destination,
        "esm_class": esm_class,
        "data_coding": data_coding,
        "short_message": short_message,
    }
    tlvs: list[tuple[int, bytes]] = []
    extra: dict[str, Any] = {}
    if network_error is not None:
        tlvs.append(pdu.tlv(Tag.NETWORK_ERROR_CODE, network_error))
        extra["network_error_code"] = network_error
    if receipted is not None:
        tlvs.append(pdu.tlv(Tag.RECEIPTED_MESSAGE_ID, receipted))
        extra["receipted_message_id"] = receipted
    if state is not None:
        tlvs.append(pdu.tlv(Tag.MESSAGE_STATE, state))
        extra["message_state"] = state
    ours = pdu.encode(Command.DELIVER_SM, sequence, fields, tlvs=tlvs)
    theirs = smpplib_bytes(
        "deliver_sm", sequence, **{**fields, "short_message": short_message or None}, **extra
    )
    assert ours == theirs
    back = pdu.decode(theirs)
    assert back.command == Command.DELIVER_SM
    assert back.sequence == sequence
    assert back.fields["short_message"] == short_message
    assert back.fields["source_addr"] == cut(source, 21)
    assert back.tlv_text(Tag.RECEIPTED_MESSAGE_ID) == receipted
    assert back.tlv_int(Tag.MESSAGE_STATE) == state


@pytest.mark.parametrize(
    ("name", "command", "values"),
    [
        (
            "bind_transceiver",
            Command.BIND_TRANSCEIVER,
            {
                "system_id": "gatewayd",
                "password": "secret",
                "system_type": "VMA",
                "interface_version": 0x34,
                "addr_ton": 1,
                "addr_npi": 1,
                "address_range": "",
            },
        ),
        (
            "bind_transmitter",
            Command.BIND_TRANSMITTER,
            {
                "system_id": "a-very-long-system-id",
                "password": "toolongpassword",
                "system_type": "",
                "interface_version": 0x34,
            },
        ),
        ("bind_receiver", Command.BIND_RECEIVER, {"system_id": "x", "interface_version": 0x34}),
        ("bind_transceiver_resp", Command.BIND_TRANSCEIVER_RESP, {"system_id": "SMSC"}),
        ("submit_sm_resp", Command.SUBMIT_SM_RESP, {"message_id": "0000A3F1"}),
        ("deliver_sm_resp", Command.DELIVER_SM_RESP, {}),
        ("enquire_link", Command.ENQUIRE_LINK, {}),
        ("enquire_link_resp", Command.ENQUIRE_LINK_RESP, {}),
        ("unbind", Command.UNBIND, {}),
        ("unbind_resp", Command.UNBIND_RESP, {}),
        ("generic_nack", Command.GENERIC_NACK, {}),
    ],
)
def test_session_pdus_are_byte_identical(name: str, command: int, values: dict[str, Any]) -> None:
    assert pdu.encode(command, 77, values) == smpplib_bytes(name, 77, **values)


def test_responses_with_an_error_status() -> None:
    ours = pdu.encode_resp(Command.DELIVER_SM_RESP, 9, pdu.Status.RX_T_APPN)
    assert ours == smpplib_bytes("deliver_sm_resp", 9, status=pdu.Status.RX_T_APPN)
    resp = pdu.decode(pdu.frame(Command.SUBMIT_SM_RESP, pdu.Status.RTHROTTLED, 4))  # no body
    assert resp.status == 0x58
    assert resp.fields == {}
    assert pdu.status_name(0x58) == "ESME_RTHROTTLED"
    assert pdu.status_name(0x401) == "0x00000401"


def test_a_c_string_tlv_without_its_nul_keeps_every_character() -> None:
    body = pdu.encode_fields(Command.DELIVER_SM, {"esm_class": 4})
    raw = pdu.frame(Command.DELIVER_SM, 0, 3, body + b"\x00\x1e\x00\x08000003E8")
    assert pdu.decode(raw).tlv_text(Tag.RECEIPTED_MESSAGE_ID) == "000003E8"
    assert pdu.reference(raw).receipted_message_id == b"000003E"  # smpplib's reading


def test_unknown_tlvs_and_commands_are_kept() -> None:
    body = pdu.encode_fields(Command.DELIVER_SM, {}) + b"\x14\x01\x00\x02hi"
    read = pdu.decode(pdu.frame(Command.DELIVER_SM, 0, 5, body))
    assert read.tlvs == {0x1401: b"hi"}
    odd = pdu.decode(pdu.frame(0x00000099, 0, 6, b"whatever"))
    assert odd.raw_body == b"whatever"
    assert odd.name == "0x00000099"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x00\x00\x10\x00\x00\x00\x15", "shorter than its header"),
        (pdu.frame(Command.SUBMIT_SM_RESP, 0, 1, b"abc"), "no terminating NUL"),
        (pdu.frame(Command.DELIVER_SM, 0, 1, b"\x00" * 16 + b"\x09ab"), "overruns"),
        (
            pdu.frame(
                Command.DELIVER_SM,
                0,
                1,
                pdu.encode_fields(Command.DELIVER_SM, {}) + b"\x04\x24\x00\x09abc",
            ),
            "overruns",
        ),
    ],
)
def test_broken_pdus_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(pdu.DecodeError, match=reason):
        pdu.decode(data)


def test_the_framer_cuts_a_stream_anywhere() -> None:
    stream = b"".join(pdu.encode(Command.ENQUIRE_LINK, n) for n in range(1, 6)) + pdu.encode(
        Command.SUBMIT_SM_RESP, 6, {"message_id": "abc"}
    )
    for step in (1, 3, 16, 17, 1000):
        framer = pdu.Framer()
        frames = [
            f for at in range(0, len(stream), step) for f in framer.feed(stream[at : at + step])
        ]
        assert [pdu.decode(f).sequence for f in frames] == [1, 2, 3, 4, 5, 6]
    with pytest.raises(pdu.DecodeError, match="impossible"):
        pdu.Framer().feed(b"\x00\x00\x00\x05xxxxxxxxxxxxxxxx")
