"""SMPP 3.4 PDUs: framing, encoding and decoding, lean enough for thousands a second.

The hot path (submit_sm out; submit_sm_resp and receipt deliver_sm in; their answers)
is coded here with struct and bytes.find instead of smpplib's generic field machinery,
which manages about 8,000 encodes or parses a second on one core. What this module
writes is byte for byte what smpplib's ``make_pdu(...).generate()`` writes for the same
fields (tests/unit/test_smpp_pdu.py proves it with hypothesis), so smpplib stays the
reference codec: it also reads the few PDUs this module does not (``decode`` keeps
their bodies raw; see ``reference``).

Field values: C-octet strings are ``str`` (Latin-1, as smpplib sends them), integers
are ``int``, short_message and octet-string TLVs are ``bytes``. Optional parameters
(TLVs) are kept as ``{tag: raw bytes}``, unknown tags included; a C-string TLV read
with ``tlv_text`` loses nothing when the SMSC left out its NUL (smpplib drops the last
character then).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import smpplib.smpp


class Command(IntEnum):
    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


RESPONSE = 0x80000000


class Status(IntEnum):
    """command_status values an ESME meets (SMPP 3.4 section 5.1.3)."""

    ROK = 0x00
    RINVMSGLEN = 0x01
    RINVCMDLEN = 0x02
    RINVCMDID = 0x03
    RINVBNDSTS = 0x04
    RALYBND = 0x05
    RINVPRTFLG = 0x06
    RINVREGDLVFLG = 0x07
    RSYSERR = 0x08
    RINVSRCADR = 0x0A
    RINVDSTADR = 0x0B
    RINVMSGID = 0x0C
    RBINDFAIL = 0x0D
    RINVPASWD = 0x0E
    RINVSYSID = 0x0F
    RCANCELFAIL = 0x11
    RREPLACEFAIL = 0x13
    RMSGQFUL = 0x14
    RINVSERTYP = 0x15
    RINVNUMDESTS = 0x33
    RINVDLNAME = 0x34
    RINVDESTFLAG = 0x40
    RINVSUBREP = 0x42
    RINVESMCLASS = 0x43
    RCNTSUBDL = 0x44
    RSUBMITFAIL = 0x45
    RINVSRCTON = 0x48
    RINVSRCNPI = 0x49
    RINVDSTTON = 0x50
    RINVDSTNPI = 0x51
    RINVSYSTYP = 0x53
    RINVREPFLAG = 0x54
    RINVNUMMSGS = 0x55
    RTHROTTLED = 0x58
    RINVSCHED = 0x61
    RINVEXPIRY = 0x62
    RINVDFTMSGID = 0x63
    RX_T_APPN = 0x64
    RX_P_APPN = 0x65
    RX_R_APPN = 0x66
    RQUERYFAIL = 0x67
    RINVOPTPARSTREAM = 0xC0
    ROPTPARNOTALLWD = 0xC1
    RINVPARLEN = 0xC2
    RMISSINGOPTPARAM = 0xC3
    RINVOPTPARAMVAL = 0xC4
    RDELIVERYFAILURE = 0xFE
    RUNKNOWNERR = 0xFF


def status_name(status: int) -> str:
    """``ESME_RTHROTTLED``, or ``0x00000401`` for a vendor's own code."""
    try:
        return f"ESME_{Status(status).name}"
    except ValueError:
        return f"0x{status:08X}"


class Tag(IntEnum):
    """Optional parameter tags (SMPP 3.4 section 5.3.2)."""

    DEST_ADDR_SUBUNIT = 0x0005
    DEST_NETWORK_TYPE = 0x0006
    SOURCE_ADDR_SUBUNIT = 0x000D
    SOURCE_NETWORK_TYPE = 0x000E
    PAYLOAD_TYPE = 0x0019
    RECEIPTED_MESSAGE_ID = 0x001E
    PRIVACY_INDICATOR = 0x0201
    USER_MESSAGE_REFERENCE = 0x0204
    SOURCE_PORT = 0x020A
    DESTINATION_PORT = 0x020B
    SAR_MSG_REF_NUM = 0x020C
    LANGUAGE_INDICATOR = 0x020D
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    MORE_MESSAGES_TO_SEND = 0x0426
    MESSAGE_STATE = 0x0427
    ITS_SESSION_INFO = 0x1383


# The order smpplib writes optional parameters in (its params_order), for the ones we
# send: a PDU is byte-identical to smpplib's only with its TLVs in this order.
SUBMIT_TLV_ORDER = (
    Tag.USER_MESSAGE_REFERENCE,
    Tag.SOURCE_PORT,
    Tag.SOURCE_ADDR_SUBUNIT,
    Tag.DESTINATION_PORT,
    Tag.DEST_ADDR_SUBUNIT,
    Tag.SAR_MSG_REF_NUM,
    Tag.SAR_TOTAL_SEGMENTS,
    Tag.SAR_SEGMENT_SEQNUM,
    Tag.MORE_MESSAGES_TO_SEND,
    Tag.PAYLOAD_TYPE,
    Tag.MESSAGE_PAYLOAD,
    Tag.PRIVACY_INDICATOR,
)
DELIVER_TLV_ORDER = (
    Tag.USER_MESSAGE_REFERENCE,
    Tag.SOURCE_PORT,
    Tag.DESTINATION_PORT,
    Tag.SAR_MSG_REF_NUM,
    Tag.SAR_TOTAL_SEGMENTS,
    Tag.SAR_SEGMENT_SEQNUM,
    Tag.PRIVACY_INDICATOR,
    Tag.PAYLOAD_TYPE,
    Tag.MESSAGE_PAYLOAD,
    Tag.LANGUAGE_INDICATOR,
    Tag.ITS_SESSION_INFO,
    Tag.NETWORK_ERROR_CODE,
    Tag.MESSAGE_STATE,
    Tag.RECEIPTED_MESSAGE_ID,
    Tag.SOURCE_NETWORK_TYPE,
    Tag.DEST_NETWORK_TYPE,
    Tag.MORE_MESSAGES_TO_SEND,
)

# esm_class bits
ESM_UDHI = 0x40
ESM_RECEIPT_MASK = 0x04 | 0x08 | 0x20  # SMSC receipt, SME ack, intermediate notification

INTERFACE_VERSION = 0x34
HEADER = struct.Struct(">IIII")
MAX_PDU = 65536  # a longer command_length is a broken stream

# Mandatory fields per command: (name, kind, max length including the NUL); kind "c" is
# a C-octet string, "b" an octet, "sm" is sm_length and short_message.
_SM_FIELDS = (
    ("service_type", "c", 6),
    ("source_addr_ton", "b", 0),
    ("source_addr_npi", "b", 0),
    ("source_addr", "c", 21),
    ("dest_addr_ton", "b", 0),
    ("dest_addr_npi", "b", 0),
    ("destination_addr", "c", 21),
    ("esm_class", "b", 0),
    ("protocol_id", "b", 0),
    ("priority_flag", "b", 0),
    ("schedule_delivery_time", "c", 17),
    ("validity_period", "c", 17),
    ("registered_delivery", "b", 0),
    ("replace_if_present_flag", "b", 0),
    ("data_coding", "b", 0),
    ("sm_default_msg_id", "b", 0),
    ("short_message", "sm", 254),
)
_BIND_FIELDS = (
    ("system_id", "c", 16),
    ("password", "c", 9),
    ("system_type", "c", 13),
    ("interface_version", "b", 0),
    ("addr_ton", "b", 0),
    ("addr_npi", "b", 0),
    ("address_range", "c", 41),
)
_MESSAGE_ID = (("message_id", "c", 65),)
FIELDS: dict[int, tuple[tuple[str, str, int], ...]] = {
    Command.SUBMIT_SM: _SM_FIELDS,
    Command.DELIVER_SM: _SM_FIELDS,
    Command.BIND_RECEIVER: _BIND_FIELDS,
    Command.BIND_TRANSMITTER: _BIND_FIELDS,
    Command.BIND_TRANSCEIVER: _BIND_FIELDS,
    Command.BIND_RECEIVER_RESP: (("system_id", "c", 16),),
    Command.BIND_TRANSMITTER_RESP: (("system_id", "c", 16),),
    Command.BIND_TRANSCEIVER_RESP: (("system_id", "c", 16),),
    Command.SUBMIT_SM_RESP: _MESSAGE_ID,
    Command.DELIVER_SM_RESP: _MESSAGE_ID,
    Command.DATA_SM_RESP: _MESSAGE_ID,
    Command.DATA_SM: (  # submit_sm's addressing and esm_class, then two of its own
        *_SM_FIELDS[:8],
        ("registered_delivery", "b", 0),
        ("data_coding", "b", 0),
    ),
    Command.QUERY_SM_RESP: (
        ("message_id", "c", 65),
        ("final_date", "c", 17),
        ("message_state", "b", 0),
        ("error_code", "b", 0),
    ),
    Command.ALERT_NOTIFICATION: (
        ("source_addr_ton", "b", 0),
        ("source_addr_npi", "b", 0),
        ("source_addr", "c", 21),
        ("esme_addr_ton", "b", 0),
        ("esme_addr_npi", "b", 0),
        ("esme_addr", "c", 21),
    ),
    Command.OUTBIND: (("system_id", "c", 16), ("password", "c", 9)),
    Command.GENERIC_NACK: (),
    Command.UNBIND: (),
    Command.UNBIND_RESP: (),
    Command.ENQUIRE_LINK: (),
    Command.ENQUIRE_LINK_RESP: (),
}


class DecodeError(ValueError):
    """A PDU that cannot be read; ``status`` is what to answer it with."""

    def __init__(self, reason: str, status: int = Status.RINVCMDLEN) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(slots=True)
class Pdu:
    command: int
    status: int
    sequence: int
    fields: dict[str, Any] = field(default_factory=dict)
    tlvs: dict[int, bytes] = field(default_factory=dict)
    raw_body: bytes = b""  # for commands this module does not read

    @property
    def is_response(self) -> bool:
        return bool(self.command & RESPONSE)

    @property
    def name(self) -> str:
        try:
            return Command(self.command).name.lower()
        except ValueError:
            return f"0x{self.command:08X}"

    def tlv_int(self, tag: int) -> int | None:
        value = self.tlvs.get(tag)
        return int.from_bytes(value, "big") if value else None

    def tlv_text(self, tag: int) -> str | None:
        """A C-string TLV as text, with or without its NUL."""
        value = self.tlvs.get(tag)
        if value is None:
            return None
        return value.split(b"\x00", 1)[0].decode("latin-1")


# -- encoding ---------------------------------------------------------------------------


def _cstring(value: str | None, limit: int) -> bytes:
    """As smpplib writes a C-octet string: cut to limit - 1 characters, then a NUL."""
    if not value:
        return b"\x00"
    if len(value) >= limit:
        value = value[: limit - 1]
    return value.encode("latin-1") + b"\x00"


def _tlvs(
    tlvs: Mapping[int, bytes] | Iterable[tuple[int, bytes]] | None, order: tuple[int, ...]
) -> bytes:
    if not tlvs:
        return b""
    items = dict(tlvs)
    rank = {tag: i for i, tag in enumerate(order)}
    out = bytearray()
    for tag in sorted(items, key=lambda t: rank.get(t, len(order) + t)):
        value = items[tag]
        out += struct.pack(">HH", tag, len(value)) + value
    return bytes(out)


def tlv(tag: int, value: int | bytes | str, size: int = 1) -> tuple[int, bytes]:
    """One TLV: an integer of ``size`` octets, octets as they are, or a C-string."""
    if isinstance(value, int):
        return tag, value.to_bytes(size, "big")
    if isinstance(value, str):
        return tag, value.encode("latin-1") + b"\x00"
    return tag, value


def frame(command: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    return HEADER.pack(16 + len(body), command, status, sequence) + body


def encode_fields(command: int, values: Mapping[str, Any]) -> bytes:
    """The mandatory part of a body, from field values (missing ones empty or 0)."""
    out = bytearray()
    for name, kind, limit in FIELDS[command]:
        value = values.get(name)
        if kind == "c":
            out += _cstring(value, limit)
        elif kind == "b":
            out.append(value or 0)
        else:  # sm_length and short_message
            message = value or b""
            out.append(len(message))
            out += message
    return bytes(out)


def encode(
    command: int,
    sequence: int,
    values: Mapping[str, Any] | None = None,
    *,
    status: int = 0,
    tlvs: Mapping[int, bytes] | Iterable[tuple[int, bytes]] | None = None,
) -> bytes:
    """Any PDU this module knows: mandatory fields, then the TLVs (in smpplib's order for
    submit_sm and deliver_sm)."""
    order = DELIVER_TLV_ORDER if command == Command.DELIVER_SM else SUBMIT_TLV_ORDER
    body = encode_fields(command, values or {}) + _tlvs(tlvs, order)
    return frame(command, status, sequence, body)


_SUBMIT_HEAD = struct.Struct(">BB")


def encode_submit_sm(
    sequence: int,
    *,
    source: str,
    source_ton: int,
    source_npi: int,
    destination: str,
    dest_ton: int = 1,
    dest_npi: int = 1,
    short_message: bytes = b"",
    esm_class: int = 0,
    data_coding: int = 0,
    registered_delivery: int = 1,
    tlvs: Iterable[tuple[int, bytes]] = (),
) -> bytes:
    """submit_sm as the dispatcher sends it (empty service_type, schedule and validity;
    protocol_id, priority and sm_default_msg_id 0): the hot path, without the field
    table."""
    body = b"".join(
        (
            b"\x00",
            _SUBMIT_HEAD.pack(source_ton, source_npi),
            _cstring(source, 21),
            _SUBMIT_HEAD.pack(dest_ton, dest_npi),
            _cstring(destination, 21),
            bytes((esm_class, 0, 0)),
            b"\x00\x00",
            bytes((registered_delivery, 0, data_coding, 0, len(short_message))),
            short_message,
            _tlvs(tuple(tlvs), SUBMIT_TLV_ORDER),
        )
    )
    return frame(Command.SUBMIT_SM, 0, sequence, body)


def encode_resp(command: int, sequence: int, status: int = 0, message_id: str = "") -> bytes:
    """submit_sm_resp, deliver_sm_resp or data_sm_resp (smpplib always writes the
    message_id, an empty one as a lone NUL, even with an error status)."""
    return frame(command, status, sequence, _cstring(message_id, 65))


# -- decoding ---------------------------------------------------------------------------


def _read_tlvs(body: bytes, at: int) -> dict[int, bytes]:
    tlvs: dict[int, bytes] = {}
    end = len(body)
    while at < end:
        if at + 4 > end:
            raise DecodeError("a truncated optional parameter", Status.RINVOPTPARSTREAM)
        tag, size = struct.unpack_from(">HH", body, at)
        at += 4
        if at + size > end:
            raise DecodeError(
                f"optional parameter 0x{tag:04X} overruns the PDU", Status.RINVOPTPARSTREAM
            )
        tlvs[tag] = body[at : at + size]
        at += size
    return tlvs


def decode_body(command: int, body: bytes) -> tuple[dict[str, Any], dict[int, bytes]]:
    """The mandatory fields and the TLVs of a body this module knows."""
    values: dict[str, Any] = {}
    at, end = 0, len(body)
    for name, kind, _ in FIELDS[command]:
        if at >= end:  # a short body (an error response, an old SMSC): the rest is empty
            break
        if kind == "c":
            nul = body.find(b"\x00", at)
            if nul < 0:
                raise DecodeError(f"{name} has no terminating NUL", Status.RINVMSGLEN)
            values[name] = body[at:nul].decode("latin-1")
            at = nul + 1
        elif kind == "b":
            values[name] = body[at]
            at += 1
        else:
            length = body[at]
            if at + 1 + length > end:
                raise DecodeError("short_message overruns the PDU", Status.RINVMSGLEN)
            values[name] = body[at + 1 : at + 1 + length]
            at += 1 + length
    return values, _read_tlvs(body, at)


def decode(data: bytes) -> Pdu:
    """One whole PDU (header included). Commands this module has no layout for keep
    their body in ``raw_body``; ``Command`` values outside SMPP 3.4 are kept too (the
    caller answers generic_nack)."""
    if len(data) < 16:
        raise DecodeError("a PDU shorter than its header")
    length, command, status, sequence = HEADER.unpack_from(data)
    if length != len(data):
        raise DecodeError(f"command_length {length} for {len(data)} octets")
    pdu = Pdu(command, status, sequence)
    body = data[16:]
    if command in FIELDS:
        pdu.fields, pdu.tlvs = decode_body(command, body)
    else:
        pdu.raw_body = bytes(body)
    return pdu


def reference(data: bytes) -> Any:
    """smpplib's reading of a PDU (``allow_unknown_opt_params``), for what this module
    keeps raw."""

    class _Sequence:  # parsing a request asks its client for a sequence number
        sequence = 0

        def next_sequence(self) -> int:
            return 0

    return smpplib.smpp.parse_pdu(data, client=_Sequence(), allow_unknown_opt_params=True)


class Framer:
    """Cuts a byte stream into PDUs by command_length."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        out = []
        at, end = 0, len(buffer)
        while end - at >= 4:
            length = int.from_bytes(buffer[at : at + 4], "big")
            if length < 16 or length > MAX_PDU:
                raise DecodeError(f"command_length {length} is impossible")
            if end - at < length:
                break
            out.append(bytes(buffer[at : at + length]))
            at += length
        if at:
            del buffer[:at]
        return out
