"""SDP (RFC 4566) and the offer/answer rules (RFC 3264) for a fax call.

Two kinds of media matter: G.711 audio (``m=audio PORT RTP/AVP 8 0``, PCMA and PCMU,
20 ms packets) and T.38 (``m=image PORT udptl t38``, RFC 3362's image/t38, with the
T.38 Annex D attributes: T38FaxVersion, T38MaxBitRate, T38FaxRateManagement,
T38FaxMaxBuffer, T38FaxMaxDatagram, T38FaxUdpEC, and the flags T38FaxFillBitRemoval,
T38FaxTranscodingMMR, T38FaxTranscodingJBIG).

``answer`` answers an offer with as many m-lines as it had, in its order (RFC 3264
6): the one stream we take (T.38 when offered and allowed, else audio in the
offerer's codec order) and the rest refused with port 0. ``chosen`` reads what an
answer (or an offer we accept) settled. Pure values; no sockets.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace

CODECS = {"PCMA": 8, "PCMU": 0}  # RTP/AVP static payload types (RFC 3551)
STATIC_NAMES = {0: "PCMU", 8: "PCMA"}
PTIME = 20
EC_REDUNDANCY, EC_FEC, EC_NONE = "t38UDPRedundancy", "t38UDPFEC", "t38UDPNoEC"


class SdpError(ValueError):
    """An SDP body we cannot read or cannot answer; the text says what."""


@dataclass(slots=True)
class Media:
    kind: str  # "audio", "image", ...
    port: int
    proto: str  # "RTP/AVP", "udptl", ...
    formats: list[str]
    connection: str | None = None  # this m-line's own c= address
    attributes: list[tuple[str, str]] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.attributes if k.lower() == wanted), None)

    def has(self, name: str) -> bool:
        wanted = name.lower()
        return any(k.lower() == wanted for k, _ in self.attributes)


@dataclass(slots=True)
class Session:
    address: str  # session-level c= (or o=) address
    media: list[Media]
    session_id: str = "0"
    version: int = 0

    def address_of(self, media: Media) -> str:
        return media.connection or self.address


@dataclass(frozen=True, slots=True)
class T38Params:
    version: int = 0
    max_bit_rate: int = 14400
    rate_management: str = "transferredTCF"
    max_buffer: int = 2000
    max_datagram: int = 400
    udp_ec: str = EC_REDUNDANCY
    fill_bit_removal: bool = False
    transcoding_mmr: bool = False
    transcoding_jbig: bool = False

    @classmethod
    def of(cls, media: Media) -> T38Params:
        def number(name: str, default: int) -> int:
            value = media.attribute(name)
            return int(value) if value and value.strip().isdigit() else default

        def flag(name: str) -> bool:
            value = media.attribute(name)
            return media.has(name) and (value in ("", None) or value.strip() == "1")

        return cls(
            version=number("T38FaxVersion", 0),
            max_bit_rate=number("T38MaxBitRate", 14400),
            rate_management=(media.attribute("T38FaxRateManagement") or "transferredTCF").strip(),
            max_buffer=number("T38FaxMaxBuffer", 2000),
            max_datagram=number("T38FaxMaxDatagram", 400),
            udp_ec=(media.attribute("T38FaxUdpEC") or EC_NONE).strip(),
            fill_bit_removal=flag("T38FaxFillBitRemoval"),
            transcoding_mmr=flag("T38FaxTranscodingMMR"),
            transcoding_jbig=flag("T38FaxTranscodingJBIG"),
        )

    def attributes(self) -> list[tuple[str, str]]:
        out = [
            ("T38FaxVersion", str(self.version)),
            ("T38MaxBitRate", str(self.max_bit_rate)),
            ("T38FaxRateManagement", self.rate_management),
            ("T38FaxMaxBuffer", str(self.max_buffer)),
            ("T38FaxMaxDatagram", str(self.max_datagram)),
            ("T38FaxUdpEC", self.udp_ec),
        ]
        for name, on in (
            ("T38FaxFillBitRemoval", self.fill_bit_removal),
            ("T38FaxTranscodingMMR", self.transcoding_mmr),
            ("T38FaxTranscodingJBIG", self.transcoding_jbig),
        ):
            if on:
                out.append((name, ""))
        return out


OUR_T38 = T38Params()


# -- parsing and printing ----------------------------------------------------------------


def parse(body: bytes) -> Session:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("the SDP body is not UTF-8") from exc
    address, session_id, version = "", "0", 0
    media: list[Media] = []
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:].strip()
        if kind == "o":
            parts = value.split()
            if len(parts) != 6:
                raise SdpError(f"o={value!r} does not have six fields")
            session_id = parts[1]
            version = int(parts[2]) if parts[2].isdigit() else 0
            address = address or parts[5]
        elif kind == "c":
            parts = value.split()
            if len(parts) != 3 or parts[0] != "IN":
                raise SdpError(f"c={value!r} is not IN IP4|IP6 ADDRESS")
            connection = parts[2].split("/")[0]
            if media:
                media[-1].connection = connection
            else:
                address = connection
        elif kind == "m":
            parts = value.split()
            if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
                raise SdpError(f"m={value!r} is not MEDIA PORT PROTO FORMAT...")
            port = int(parts[1].split("/")[0])
            if port > 65535:
                raise SdpError(f"m={value!r} has an invalid port")
            media.append(Media(parts[0].lower(), port, parts[2], parts[3:]))
        elif kind == "a" and media:
            name, _, attr_value = value.partition(":")
            media[-1].attributes.append((name.strip(), attr_value.strip()))
    if not media:
        raise SdpError("the SDP has no m= line")
    if not address and any(m.connection is None for m in media):
        raise SdpError("the SDP has no connection address (c=)")
    return Session(address, media, session_id, version)


def _ip(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def render(session: Session) -> bytes:
    address = session.address
    lines = [
        "v=0",
        f"o=gatewayd {session.session_id} {session.version} IN {_ip(address)} {address}",
        "s=gatewayd fax",
        f"c=IN {_ip(address)} {address}",
        "t=0 0",
    ]
    for media in session.media:
        lines.append(f"m={media.kind} {media.port} {media.proto} {' '.join(media.formats)}")
        if media.connection and media.connection != address:
            lines.append(f"c=IN {_ip(media.connection)} {media.connection}")
        lines += [f"a={k}:{v}" if v != "" else f"a={k}" for k, v in media.attributes]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def new_session(address: str) -> Session:
    return Session(address, [], str(secrets.randbelow(2**31)), 1)


def audio_media(port: int, codecs: list[str]) -> Media:
    formats = [str(CODECS[c]) for c in codecs]
    attributes = [("rtpmap", f"{CODECS[c]} {c}/8000") for c in codecs]
    attributes += [("ptime", str(PTIME)), ("sendrecv", "")]
    return Media("audio", port, "RTP/AVP", formats, attributes=attributes)


def image_media(port: int, params: T38Params) -> Media:
    return Media("image", port, "udptl", ["t38"], attributes=params.attributes())


# -- offer / answer ----------------------------------------------------------------------


def audio_codecs(media: Media) -> list[tuple[str, int]]:
    """The G.711 codecs of an audio m-line, in its order: (name, payload type)."""
    names: dict[int, str] = dict(STATIC_NAMES)
    for key, value in media.attributes:
        if key.lower() == "rtpmap":
            pt, _, encoding = value.partition(" ")
            if pt.isdigit():
                names[int(pt)] = encoding.split("/")[0].upper()
    out = []
    for fmt in media.formats:
        if fmt.isdigit() and names.get(int(fmt)) in CODECS:
            out.append((names[int(fmt)], int(fmt)))
    return out


@dataclass(frozen=True, slots=True)
class Chosen:
    """What a stream settled: where to send and how."""

    kind: str  # "audio" or "image"
    address: str
    port: int
    codec: str = ""  # audio: PCMA or PCMU
    payload_type: int = -1
    t38: T38Params | None = None


def negotiate_t38(theirs: T38Params, ours: T38Params = OUR_T38) -> T38Params:
    """The answer's T.38 parameters to an offer of ``theirs`` (T.38 Annex D.2.3)."""
    ec = EC_NONE if theirs.udp_ec == EC_NONE else EC_REDUNDANCY
    return replace(
        ours,
        version=min(theirs.version, ours.version),
        max_bit_rate=min(theirs.max_bit_rate, ours.max_bit_rate),
        rate_management=theirs.rate_management,
        udp_ec=ec,
        fill_bit_removal=theirs.fill_bit_removal and ours.fill_bit_removal,
        transcoding_mmr=False,
        transcoding_jbig=False,
    )


def is_t38(media: Media) -> bool:
    return media.kind == "image" and media.proto.lower() == "udptl" and "t38" in media.formats


def _first(offer: Session, wanted: Callable[[Media], bool]) -> int | None:
    return next((i for i, m in enumerate(offer.media) if m.port and wanted(m)), None)


def answer(
    offer: Session, *, address: str, audio_port: int, image_port: int, t38: bool, version: int
) -> tuple[Session, Chosen]:
    """Our answer to ``offer`` and the stream it settles; SdpError (answered 488) when
    nothing in it is G.711 audio or (with ``t38``) T.38."""
    pick = _first(offer, is_t38) if t38 else None
    if pick is None:
        pick = _first(offer, lambda m: m.kind == "audio" and bool(audio_codecs(m)))
    if pick is None:
        raise SdpError("the offer has neither G.711 audio (PCMA, PCMU) nor T.38 we accept")
    session = Session(address, [], str(secrets.randbelow(2**31)), version)
    chosen: Chosen | None = None
    for index, media in enumerate(offer.media):
        if index != pick:
            session.media.append(Media(media.kind, 0, media.proto, media.formats[:1]))
            continue
        remote = offer.address_of(media)
        if media.kind == "image":
            params = negotiate_t38(T38Params.of(media))
            session.media.append(image_media(image_port, params))
            theirs = replace(T38Params.of(media), udp_ec=params.udp_ec)
            chosen = Chosen("image", remote, media.port, t38=theirs)
        else:
            name, pt = audio_codecs(media)[0]
            answer_media = audio_media(audio_port, [name])
            answer_media.formats = [str(pt)]
            answer_media.attributes[0] = ("rtpmap", f"{pt} {name}/8000")
            session.media.append(answer_media)
            chosen = Chosen("audio", remote, media.port, codec=name, payload_type=pt)
    assert chosen is not None
    return session, chosen


def chosen(answer_session: Session, *, t38_offered: bool) -> Chosen:
    """What the far end's answer to our offer settled; SdpError if it refused all."""
    for media in answer_session.media:
        if not media.port:
            continue
        remote = answer_session.address_of(media)
        if media.kind == "image" and t38_offered:
            return Chosen("image", remote, media.port, t38=T38Params.of(media))
        if media.kind == "audio":
            codecs = audio_codecs(media)
            if codecs:
                name, pt = codecs[0]
                return Chosen("audio", remote, media.port, codec=name, payload_type=pt)
    raise SdpError("the answer accepts none of the streams offered")
