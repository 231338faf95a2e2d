"""SMS text: the GSM 03.38 default alphabet, UCS-2, and splitting into parts.

Standalone: it imports nothing from gatewayd, so both doors (counting parts to admit a
text) and the SMPP side (encoding and splitting to send, decoding what arrives) use it.

Text that every character of fits the GSM 7-bit default alphabet (with its extension
table, each extension character costing two septets: ESC and the character) is sent
as GSM-7, one septet per octet (unpacked, data_coding 0, as SMPP carries it). Anything
else is sent as UCS-2 (UTF-16BE, data_coding 8), where a character outside the Basic
Multilingual Plane (an emoji) is a surrogate pair: two code units.

Splitting never cuts an escape sequence or a surrogate pair in half (smpplib's
make_parts does both). Part sizes, with the header each
concatenation method needs:

    single part               160 septets   70 units
    8-bit reference UDH       153 septets   67 units   (6-octet header)
    16-bit reference UDH      152 septets   66 units   (7-octet header)
    SAR TLVs                  160 septets   70 units   (no header in the text)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

# GSM 03.38 default alphabet, in code point order 0x00-0x7F (0x1B is the escape).
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: reached with ESC (0x1B) followed by this code.
GSM7_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
ESCAPE = 0x1B

_BASIC_CODE = {char: code for code, char in enumerate(GSM7_BASIC) if code != ESCAPE}
_DECODE_BASIC = dict(enumerate(GSM7_BASIC))
_DECODE_EXTENSION = {code: char for char, code in GSM7_EXTENSION.items()}
# The same tables for str.translate and set operations (in C: these run for every SMS
# at both doors and again when it is sent).
_GSM7_CHARS = frozenset(_BASIC_CODE) | frozenset(GSM7_EXTENSION)
_TWO_SEPTETS = str.maketrans({char: "\x1b\x1b" for char in GSM7_EXTENSION})
_TO_SEPTETS = str.maketrans(
    {
        **{char: chr(code) for char, code in _BASIC_CODE.items()},
        **{char: chr(ESCAPE) + chr(code) for char, code in GSM7_EXTENSION.items()},
    }
)

DATA_CODING_GSM7 = 0x00
DATA_CODING_UCS2 = 0x08


class Concatenation(StrEnum):
    UDH8 = "udh8"
    UDH16 = "udh16"
    SAR = "sar"
    PAYLOAD = "payload"


class Alphabet(StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


SINGLE_LIMIT = {Alphabet.GSM7: 160, Alphabet.UCS2: 70}
PART_LIMIT = {
    Concatenation.UDH8: {Alphabet.GSM7: 153, Alphabet.UCS2: 67},
    Concatenation.UDH16: {Alphabet.GSM7: 152, Alphabet.UCS2: 66},
    Concatenation.SAR: SINGLE_LIMIT,
}
MAX_PARTS = 255


class EncodingError(ValueError):
    pass


def is_gsm7(text: str) -> bool:
    return _GSM7_CHARS.issuperset(text)


def alphabet_for(text: str) -> Alphabet:
    return Alphabet.GSM7 if is_gsm7(text) else Alphabet.UCS2


def gsm7_cost(char: str) -> int:
    """Septets one character takes: 2 for the extension table, else 1."""
    return 2 if char in GSM7_EXTENSION else 1


def ucs2_cost(char: str) -> int:
    """UTF-16 code units one character takes: 2 outside the BMP (a surrogate pair)."""
    return 2 if ord(char) > 0xFFFF else 1


def length(text: str, alphabet: Alphabet | None = None) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2) the text takes (as gsm7_cost and
    ucs2_cost count each character)."""
    alphabet = alphabet or alphabet_for(text)
    if alphabet is Alphabet.GSM7:
        return len(text.translate(_TWO_SEPTETS))
    return len(text.encode("utf-16-be", "surrogatepass")) // 2


def encode_gsm7(text: str) -> bytes:
    """Unpacked septets, one per octet; extension characters as ESC + code."""
    if not _GSM7_CHARS.issuperset(text):
        char = next(c for c in text if c not in _GSM7_CHARS)
        raise EncodingError(f"{char!r} is not in the GSM 7-bit alphabet")
    return text.translate(_TO_SEPTETS).encode("latin-1")


def decode_gsm7(data: bytes) -> str:
    """Unpacked septets back to text. An escape followed by a code the extension table
    lacks falls back to the basic character (3GPP TS 23.038); a trailing lone escape is
    dropped."""
    out: list[str] = []
    escaped = False
    for octet in data:
        septet = octet & 0x7F
        if escaped:
            out.append(_DECODE_EXTENSION.get(septet, _DECODE_BASIC[septet]))
            escaped = False
        elif septet == ESCAPE:
            escaped = True
        else:
            out.append(_DECODE_BASIC[septet])
    return "".join(out)


def encode(text: str, alphabet: Alphabet) -> bytes:
    return encode_gsm7(text) if alphabet is Alphabet.GSM7 else text.encode("utf-16-be")


def decode(data: bytes, alphabet: Alphabet) -> str:
    return decode_gsm7(data) if alphabet is Alphabet.GSM7 else data.decode("utf-16-be")


@dataclass(frozen=True, slots=True)
class Split:
    """A text cut into the parts it is sent in."""

    alphabet: Alphabet
    parts: tuple[str, ...]

    @property
    def data_coding(self) -> int:
        return DATA_CODING_GSM7 if self.alphabet is Alphabet.GSM7 else DATA_CODING_UCS2

    def encoded(self) -> list[bytes]:
        return [encode(part, self.alphabet) for part in self.parts]


def _chunks(text: str, limit: int, cost: Callable[[str], int]) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` units, never inside a character
    (so never between an escape and its code, nor inside a surrogate pair)."""
    chunks: list[str] = []
    start = used = 0
    for index, char in enumerate(text):
        size = cost(char)
        if used + size > limit:
            chunks.append(text[start:index])
            start, used = index, 0
        used += size
    chunks.append(text[start:])
    return chunks


def _parts(text: str, concatenation: Concatenation) -> tuple[Alphabet, list[str]]:
    alphabet = alphabet_for(text)
    if concatenation is Concatenation.PAYLOAD or length(text, alphabet) <= SINGLE_LIMIT[alphabet]:
        return alphabet, [text]
    cost = gsm7_cost if alphabet is Alphabet.GSM7 else ucs2_cost
    return alphabet, _chunks(text, PART_LIMIT[concatenation][alphabet], cost)


def split(text: str, concatenation: Concatenation = Concatenation.UDH8) -> Split:
    """The parts ``text`` goes out in. With ``payload`` the whole text is one part
    (message_payload carries up to 64 KB)."""
    alphabet, parts = _parts(text, concatenation)
    if len(parts) > MAX_PARTS:
        raise EncodingError(f"text too long: {len(parts)} parts, at most {MAX_PARTS}")
    return Split(alphabet, tuple(parts))


def count_parts(text: str, concatenation: Concatenation = Concatenation.UDH8) -> int:
    """How many SMS the text takes (any number, even past what can be sent)."""
    return len(_parts(text, concatenation)[1])


def most_characters(parts: int) -> int:
    """The most characters a text can have and still take at most ``parts`` parts as
    count_parts counts them by default (each character costs at least one septet or code
    unit): any longer text takes more parts, whatever it says."""
    if parts < 1:
        return 0
    if parts == 1:
        return SINGLE_LIMIT[Alphabet.GSM7]
    return parts * PART_LIMIT[Concatenation.UDH8][Alphabet.GSM7]
