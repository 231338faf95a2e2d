"""Receipts as SMSCs write them, ids as they normalise, parts as they go out and come in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd import gsm
from gatewayd.config.settings import SmppLinkSettings
from gatewayd.model import PartStatus
from gatewayd.sms import pdu, receipts
from gatewayd.sms.dispatcher import Address, address_of, parts_out
from gatewayd.sms.inbound import decode_text, number_of, split_udh
from gatewayd.sms.pdu import Command, Tag
from gatewayd.sms.receipts import IdFormat


def deliver(
    text: str = "",
    *,
    esm_class: int = 0x04,
    tlvs: list[tuple[int, bytes]] | None = None,
    payload: bool = False,
) -> pdu.Pdu:
    fields = {"esm_class": esm_class}
    extra = list(tlvs or [])
    if payload:
        extra.append(pdu.tlv(Tag.MESSAGE_PAYLOAD, text.encode()))
    else:
        fields["short_message"] = text.encode("latin-1")  # type: ignore[assignment]
    return pdu.decode(pdu.encode(Command.DELIVER_SM, 1, fields, tlvs=extra))


STANDARD = (
    "id:0000A3F1 sub:001 dlvrd:001 submit date:2611261530 done date:2611261531 "
    "stat:DELIVRD err:000 text:Hello there"
)


def test_the_standard_text() -> None:
    receipt = receipts.parse(deliver(STANDARD))
    assert receipt is not None
    assert receipt.message_id == "0000A3F1"
    assert receipt.stat == "DELIVRD"
    assert receipt.done_at == datetime(2026, 11, 26, 15, 31, tzinfo=UTC)
    assert receipt.submitted_at == datetime(2026, 11, 26, 15, 30, tzinfo=UTC)
    assert receipt.text == "Hello there"
    assert receipt.outcome() is PartStatus.DELIVERED
    assert receipt.error_code == "DELIVRD"


@pytest.mark.parametrize(
    ("text", "message_id", "stat", "error"),
    [
        ("stat:UNDELIV err:001 id:77 done date:2611261531", "77", "UNDELIV", "001"),
        (
            "id:abc-123 submit date:2611261530 done date:2611261531 stat:EXPIRED err:000",
            "abc-123",
            "EXPIRED",
            "000",
        ),
        (
            "ID:9 SUB:001 DLVRD:000 SUBMIT DATE:2611261530 DONE DATE:261126153107 STAT:REJECTD "
            "ERR:003 TEXT:x",
            "9",
            "REJECTD",
            "003",
        ),
        ("id:5 stat:deleted", "5", "DELETED", None),
        ("Stat:ACCEPTD id:1F Err:000 Text:hello world", "1F", "ACCEPTD", "000"),
    ],
)
def test_texts_in_any_order_and_case(
    text: str, message_id: str, stat: str, error: str | None
) -> None:
    receipt = receipts.parse(deliver(text))
    assert receipt is not None
    assert (receipt.message_id, receipt.stat, receipt.error) == (message_id, stat, error)


def test_seconds_and_smpp_absolute_times() -> None:
    assert receipts.parse_date("261126153107") == datetime(2026, 11, 26, 15, 31, 7, tzinfo=UTC)
    # 15:31:07.5 at UTC+01:00 (four quarter hours)
    assert receipts.parse_date("261126153107504+") == datetime(
        2026, 11, 26, 14, 31, 7, 500000, tzinfo=UTC
    )
    assert receipts.parse_date("yesterday") is None
    assert receipts.parse_date("2613261531") is None  # month 13


def test_tlvs_alone_and_text_in_message_payload() -> None:
    tlv_only = deliver(
        tlvs=[
            pdu.tlv(Tag.RECEIPTED_MESSAGE_ID, "00B8BE19"),
            pdu.tlv(Tag.MESSAGE_STATE, 5),
            pdu.tlv(Tag.NETWORK_ERROR_CODE, b"\x03\x00\x0b"),
        ]
    )
    receipt = receipts.parse(tlv_only)
    assert receipt is not None
    assert (receipt.message_id, receipt.stat, receipt.error) == ("00B8BE19", "UNDELIV", "03000B")
    assert receipt.outcome() is PartStatus.DELIVERY_FAILED
    assert receipt.error_code == "UNDELIV:03000B"
    payload = receipts.parse(deliver(STANDARD, payload=True))
    assert payload is not None
    assert payload.message_id == "0000A3F1"


def test_text_and_tlv_ids_are_cross_checked() -> None:
    # a TLV cut short (read without its NUL by some parser) loses to the text
    cut = receipts.parse(deliver(STANDARD, tlvs=[pdu.tlv(Tag.RECEIPTED_MESSAGE_ID, "0000A3F")]))
    assert cut is not None
    assert cut.message_id == "0000A3F1"
    assert cut.id_mismatch is None
    other = receipts.parse(deliver(STANDARD, tlvs=[pdu.tlv(Tag.RECEIPTED_MESSAGE_ID, "42")]))
    assert other is not None
    assert (other.message_id, other.id_mismatch) == ("42", "0000A3F1")


def test_what_is_not_a_receipt() -> None:
    assert receipts.is_receipt(deliver(STANDARD, esm_class=0x44))
    assert receipts.is_receipt(deliver(STANDARD, esm_class=0x20))
    assert not receipts.is_receipt(deliver("hello", esm_class=0x00))
    assert not receipts.is_receipt(deliver("hello", esm_class=0x40))
    assert receipts.parse(deliver("no fields here")) is None
    assert receipts.parse(deliver("id:12 text:no state")) is None


@pytest.mark.parametrize(
    ("stat", "accepted", "outcome"),
    [
        ("DELIVRD", False, PartStatus.DELIVERED),
        ("ACCEPTD", False, None),
        ("ACCEPTD", True, PartStatus.DELIVERED),
        ("ENROUTE", False, None),
        ("BUFFRED", False, None),
        ("EXPIRED", False, PartStatus.DELIVERY_FAILED),
        ("UNKNOWN", False, PartStatus.DELIVERY_FAILED),
        ("FAILED", False, PartStatus.DELIVERY_FAILED),
    ],
)
def test_outcomes(stat: str, accepted: bool, outcome: PartStatus | None) -> None:
    receipt = receipts.Receipt("1", stat)
    assert receipt.outcome(accepted_is_delivered=accepted) is outcome


@pytest.mark.parametrize(
    ("written", "fmt", "stored"),
    [
        ("00B8BE19", IdFormat.AUTO, "B8BE19"),
        ("b8be19", IdFormat.AUTO, "B8BE19"),
        ("0000A3F1", IdFormat.HEX, "A3F1"),
        ("000123", IdFormat.DECIMAL, "123"),
        ("  Opaque-Id ", IdFormat.TEXT, "Opaque-Id"),
        ("0", IdFormat.AUTO, "0"),
    ],
)
def test_ids_normalise(written: str, fmt: IdFormat, stored: str) -> None:
    assert receipts.normalise(written, fmt) == stored


def test_auto_tries_hex_and_decimal() -> None:
    # submit_sm_resp said A3F1 (hex); the receipt says 41969 (decimal), or the other way
    assert "A3F1" in receipts.candidates("41969", IdFormat.AUTO)
    assert "41969" in receipts.candidates("A3F1", IdFormat.AUTO)
    assert receipts.candidates("41969", IdFormat.TEXT) == ["41969"]


def test_addresses() -> None:
    assert address_of("+4915112345678") == Address("4915112345678", 1, 1)
    assert address_of("ACME") == Address("ACME", 5, 0)
    assert address_of("015112345678") == Address("015112345678", 2, 1)
    assert number_of("4915112345678", 1, "DE") == "+4915112345678"
    assert number_of("015112345678", 2, "DE") == "+4915112345678"
    assert number_of("ACME", 5, "DE") == "ACME"


def test_data_codings_decode() -> None:
    assert decode_text(gsm.encode_gsm7("Grüße €"), 0) == "Grüße €"
    assert decode_text("Grüße".encode("latin-1"), 3) == "Grüße"
    assert decode_text("Ωμέγα 😀".encode("utf-16-be"), 8) == "Ωμέγα 😀"
    assert decode_text(b"hi", 1) == "hi"
    assert decode_text(b"\x01\x02", 4).startswith("[binary message: 2 octets")


LINKS = {name: SmppLinkSettings(concatenation=name) for name in ("udh8", "udh16", "sar", "payload")}


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(min_size=1, max_size=1500),
    concatenation=st.sampled_from(sorted(LINKS)),
    reference=st.integers(0, 65535),
)
def test_parts_out_reassemble_exactly(text: str, concatenation: str, reference: int) -> None:
    link = LINKS[concatenation]
    try:
        split = gsm.split(text, gsm.Concatenation(concatenation))
    except gsm.EncodingError:
        return
    outs = parts_out(split, link, Address("4930", 1, 1), Address("4915", 1, 1), reference)
    pieces = []
    for index, out in enumerate(outs, 1):
        data = out.short_message or dict(out.tlvs)[Tag.MESSAGE_PAYLOAD]
        if len(outs) > 1 and concatenation in ("udh8", "udh16"):
            assert out.esm_class == 0x40
            info, data = split_udh(data)
            assert info is not None
            assert (info.total, info.seq) == (len(outs), index)
            assert info.reference == (reference % 256 if concatenation == "udh8" else reference)
        if len(outs) > 1 and concatenation == "sar":
            tlvs = dict(out.tlvs)
            assert int.from_bytes(tlvs[Tag.SAR_SEGMENT_SEQNUM], "big") == index
        if concatenation != "payload":
            assert len(out.short_message) <= 140 + 20  # unpacked septets: 153 + 7 at most
        pieces.append(decode_text(data, out.data_coding))
    assert "".join(pieces) == text
