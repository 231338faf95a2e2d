"""SIP messages (RFC 3261 section 7, 20, 25): parse from bytes, build, serialise.

Pure values, no sockets. ``parse`` reads one datagram; ``StreamParser`` cuts a TCP or
TLS byte stream into messages by Content-Length (which is then mandatory) and skips
the CRLF keep-alives of RFC 5626. Anything malformed is ``SipParseError`` naming what;
limits keep a hostile peer from making us hold much (a message at most 64 KiB, 100
headers).

Header names are matched case-insensitively, compact forms (``v``, ``f``, ``t``,
``i``, ``m``, ``l``, ``c``, ``k``, ``s``) expanded on the way in; values are kept as
received. Headers that may hold several comma-separated values (Via, Route,
Record-Route, Contact, ...) are split with quotes and angle brackets respected.
``NameAddr``, ``SipUri`` and ``Via`` parse and print the values that need structure.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

MAX_MESSAGE = 65_536
MAX_HEADERS = 100
BRANCH_MAGIC = "z9hG4bK"

COMPACT = {
    "v": "Via",
    "f": "From",
    "t": "To",
    "i": "Call-ID",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
}
# Spellings that capitalising each dash-separated part would get wrong.
CANONICAL = {
    name.lower(): name
    for name in ("Call-ID", "CSeq", "WWW-Authenticate", "P-Asserted-Identity", "Min-SE")
}
MULTI = frozenset({"via", "route", "record-route", "contact", "allow", "supported", "accept"})

REASONS = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    600: "Busy Everywhere",
    603: "Decline",
}


class SipParseError(ValueError):
    """Bytes that are not a SIP message we can read; the text says what is wrong."""


def canonical(name: str) -> str:
    lower = name.strip().lower()
    lower = COMPACT.get(lower, lower).lower()
    return CANONICAL.get(lower, "-".join(part.capitalize() for part in lower.split("-")))


def split_values(value: str) -> list[str]:
    """``a, "b,c" <sip:x>, <sip:y;p=1,2>`` -> the comma-separated values, quotes and
    angle brackets respected."""
    out: list[str] = []
    current: list[str] = []
    quoted = angle = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            angle = True
        elif char == ">" and not quoted:
            angle = False
        elif char == "," and not quoted and not angle:
            out.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        out.append("".join(current).strip())
    return [v for v in out if v]


def parse_params(text: str) -> dict[str, str]:
    """``;a=1;b;c="x;y"`` -> {"a": "1", "b": "", "c": "x;y"} (names in lower case)."""
    params: dict[str, str] = {}
    for raw in _split_unquoted(text, ";"):
        part = raw.strip()
        if not part:
            continue
        name, _, value = part.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        params[name.strip().lower()] = value
    return params


def format_params(params: dict[str, str]) -> str:
    return "".join(f";{k}={v}" if v != "" else f";{k}" for k, v in params.items())


def _split_unquoted(text: str, separator: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(char)
    out.append("".join(current))
    return out


class Headers:
    """Ordered SIP headers; names canonical, lookups case-insensitive."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical(k), v) for k, v in items]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = canonical(name)
        for key, value in self._items:
            if key == wanted:
                return split_values(value)[0] if wanted.lower() in MULTI else value
        return default

    def get_all(self, name: str) -> list[str]:
        wanted = canonical(name)
        values = [v for k, v in self._items if k == wanted]
        if wanted.lower() in MULTI:
            return [part for v in values for part in split_values(v)]
        return values

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        item = (canonical(name), value)
        if first:
            self._items.insert(0, item)
        else:
            self._items.append(item)

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` header with one (in the first one's place)."""
        wanted = canonical(name)
        at = next((i for i, (k, _) in enumerate(self._items) if k == wanted), None)
        self.remove(name)
        if at is None:
            self._items.append((wanted, value))
        else:
            self._items.insert(at, (wanted, value))

    def remove(self, name: str) -> None:
        wanted = canonical(name)
        self._items = [(k, v) for k, v in self._items if k != wanted]

    def copy(self) -> Headers:
        return Headers(self._items)


@dataclass(slots=True)
class Request:
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.headers.get("CSeq") or "")

    @property
    def branch(self) -> str:
        top = self.headers.get("Via")
        return Via.parse(top).params.get("branch", "") if top else ""

    def __bytes__(self) -> bytes:
        return _serialise(f"{self.method} {self.uri} SIP/2.0", self.headers, self.body)


@dataclass(slots=True)
class Response:
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.headers.get("CSeq") or "")

    @property
    def branch(self) -> str:
        top = self.headers.get("Via")
        return Via.parse(top).params.get("branch", "") if top else ""

    def __bytes__(self) -> bytes:
        return _serialise(f"SIP/2.0 {self.status} {self.reason}", self.headers, self.body)


Message = Request | Response


def _serialise(start: str, headers: Headers, body: bytes) -> bytes:
    lines = [start]
    lines += [f"{k}: {v}" for k, v in headers if k != "Content-Length"]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def parse_cseq(value: str) -> tuple[int, str]:
    number, _, method = value.strip().partition(" ")
    if not number.isdigit() or not method.strip():
        raise SipParseError(f"CSeq {value!r} is not NUMBER METHOD")
    return int(number), method.strip().upper()


_REQUEST_LINE = re.compile(r"^([A-Za-z]+) (\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9]{2}) ?(.*)$")


def _parse_head(head: bytes) -> tuple[Request | Response, int | None]:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("latin-1")
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    start, raw = lines[0].strip(), lines[1:]
    items: list[tuple[str, str]] = []
    for line in raw:
        if not line:
            continue
        if line[0] in " \t" and items:  # folded continuation (RFC 3261 7.3.1)
            name, value = items[-1]
            items[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or " " in name.strip():
            raise SipParseError(f"header line {line[:60]!r} has no name")
        items.append((name, value.strip()))
        if len(items) > MAX_HEADERS:
            raise SipParseError(f"more than {MAX_HEADERS} headers")
    headers = Headers(items)
    length_text = headers.get("Content-Length")
    length = None
    if length_text is not None:
        if not length_text.strip().isdigit():
            raise SipParseError(f"Content-Length {length_text!r} is not a number")
        length = int(length_text)
    if match := _REQUEST_LINE.match(start):
        message: Request | Response = Request(match.group(1).upper(), match.group(2), headers)
    elif match := _STATUS_LINE.match(start):
        message = Response(int(match.group(1)), match.group(2), headers)
    else:
        raise SipParseError(f"start line {start[:80]!r} is neither a request nor a status line")
    for required in ("Via", "From", "To", "Call-ID", "CSeq"):
        if headers.get(required) is None:
            raise SipParseError(f"the {required} header is missing")
    parse_cseq(headers.get("CSeq") or "")
    return message, length


def parse(data: bytes) -> Request | Response:
    """One message from a datagram (Content-Length, when present, cuts the body)."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError(f"message of {len(data)} bytes is over {MAX_MESSAGE}")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    message, length = _parse_head(head)
    if length is not None:
        if length > len(body):
            raise SipParseError(f"Content-Length {length} but {len(body)} bytes of body")
        body = body[:length]
    message.body = body
    return message


class StreamParser:
    """Messages out of a stream transport (TCP, TLS)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Request | Response]:
        self._buffer += data
        out: list[Request | Response] = []
        while True:
            while self._buffer[:2] == b"\r\n":  # keep-alive
                del self._buffer[:2]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_MESSAGE:
                    raise SipParseError(f"a header block longer than {MAX_MESSAGE} bytes")
                return out
            message, length = _parse_head(bytes(self._buffer[:end]))
            if length is None:
                raise SipParseError("Content-Length is required on a stream transport")
            if length > MAX_MESSAGE:
                raise SipParseError(f"Content-Length {length} is over {MAX_MESSAGE}")
            total = end + 4 + length
            if len(self._buffer) < total:
                return out
            message.body = bytes(self._buffer[end + 4 : total])
            del self._buffer[:total]
            out.append(message)


# -- structured values ---------------------------------------------------------------


@dataclass(slots=True)
class SipUri:
    """``sip:user@host:port;params`` (sips too)."""

    host: str
    user: str = ""
    port: int | None = None
    scheme: str = "sip"
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        if not colon or scheme.lower() not in ("sip", "sips"):
            raise SipParseError(f"{text[:80]!r} is not a sip: URI")
        rest, _, _headers = rest.partition("?")
        rest, _, param_text = rest.partition(";")
        user = ""
        if "@" in rest:
            user, _, rest = rest.rpartition("@")
            user = user.partition(":")[0]
        host, port = _host_port(rest)
        return cls(host, user, port, scheme.lower(), parse_params(param_text))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        user = f"{self.user}@" if self.user else ""
        return f"{self.scheme}:{user}{host}{port}{format_params(self.params)}"


def _host_port(text: str) -> tuple[str, int | None]:
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise SipParseError(f"{text!r} has no host")
    if port_text and (not port_text.isdigit() or not 0 < int(port_text) < 65536):
        raise SipParseError(f"{text!r} has an invalid port")
    return host, int(port_text) if port_text else None


@dataclass(slots=True)
class NameAddr:
    """From, To, Contact, Route values: ``"Name" <uri>;tag=...`` or ``uri;tag=...``."""

    uri: str
    display: str = ""
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if "<" in text:
            display, _, rest = text.partition("<")
            uri, close, params = rest.partition(">")
            if not close:
                raise SipParseError(f"{text[:80]!r} has no closing '>'")
            display = display.strip()
            if len(display) >= 2 and display[0] == display[-1] == '"':
                display = display[1:-1].replace('\\"', '"')
            return cls(uri.strip(), display, parse_params(params))
        uri, _, params = text.partition(";")
        return cls(uri.strip(), "", parse_params(params))

    @property
    def tag(self) -> str:
        return self.params.get("tag", "")

    @property
    def sip_uri(self) -> SipUri:
        return SipUri.parse(self.uri)

    def __str__(self) -> str:
        display = ""
        if self.display:
            escaped = self.display.replace("\\", "\\\\").replace('"', '\\"')
            display = f'"{escaped}" '
        return f"{display}<{self.uri}>{format_params(self.params)}"


@dataclass(slots=True)
class Via:
    transport: str
    host: str
    port: int | None = None
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        protocol, _, rest = text.strip().partition(" ")
        parts = protocol.split("/")
        if len(parts) != 3 or parts[0].upper() != "SIP":
            raise SipParseError(f"Via {text[:80]!r} is not SIP/2.0/TRANSPORT host")
        sent_by, _, params = rest.strip().partition(";")
        host, port = _host_port(sent_by)
        return cls(parts[2].upper(), host, port, parse_params(params))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        return f"SIP/2.0/{self.transport} {host}{port}{format_params(self.params)}"


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


def response_to(request: Request, status: int, reason: str = "", *, to_tag: str = "") -> Response:
    """A response copying Via, From, To (with ``to_tag`` added if it has none), Call-ID
    and CSeq from ``request`` (RFC 3261 8.2.6.2)."""
    headers = Headers()
    for via in request.headers.get_all("Via"):
        headers.add("Via", via)
    headers.add("From", request.headers.get("From") or "")
    to = request.headers.get("To") or ""
    if to_tag and status > 100 and NameAddr.parse(to).tag == "":
        to = f"{to};tag={to_tag}"
    headers.add("To", to)
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", request.headers.get("CSeq") or "")
    return Response(status, reason or REASONS.get(status, "Unknown"), headers)
