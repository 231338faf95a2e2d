"""GSM 03.38 and UCS-2: encoding round trips, and splitting that never cuts an escape
sequence or a surrogate pair and never exceeds 140 octets on the air."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.gsm import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    Alphabet,
    Concatenation,
    EncodingError,
    count_parts,
    decode,
    decode_gsm7,
    encode,
    encode_gsm7,
    gsm7_cost,
    is_gsm7,
    length,
    most_characters,
    split,
    ucs2_cost,
)

HEADER_OCTETS = {Concatenation.UDH8: 6, Concatenation.UDH16: 7, Concatenation.SAR: 0}
GSM_CHARS = [c for c in GSM7_BASIC if c != "\x1b"] + list(GSM7_EXTENSION)


def air_octets(part: str, alphabet: Alphabet, header: int) -> int:
    """Octets one part takes on the air: the header, then packed septets (padded to a
    septet boundary after the header) or UTF-16 units."""
    if alphabet is Alphabet.UCS2:
        return header + 2 * length(part, alphabet)
    header_septets = math.ceil(header * 8 / 7)
    return math.ceil((header_septets + length(part, alphabet)) * 7 / 8)


@pytest.mark.parametrize(
    ("text", "alphabet", "sizes"),
    [
        ("a" * 160, Alphabet.GSM7, [160]),
        ("a" * 161, Alphabet.GSM7, [153, 8]),
        ("€" * 80, Alphabet.GSM7, [160]),  # an extension character is two septets
        ("a" * 152 + "€" + "b" * 10, Alphabet.GSM7, [152, 12]),  # the escape stays whole
        ("ä" * 70 + "Ω", Alphabet.GSM7, [71]),  # ä and Ω are in the GSM alphabet
        ("é" * 160 + "ê", Alphabet.UCS2, [67, 67, 27]),  # ê is not
        ("😀" * 35, Alphabet.UCS2, [70]),  # a surrogate pair is two units
        ("😀" * 36, Alphabet.UCS2, [66, 6]),  # never cut between the two halves
        ("", Alphabet.GSM7, [0]),
    ],
)
def test_split(text: str, alphabet: Alphabet, sizes: list[int]) -> None:
    result = split(text)
    assert result.alphabet is alphabet
    assert [length(p, alphabet) for p in result.parts] == sizes
    assert "".join(result.parts) == text
    assert result.data_coding == (0 if alphabet is Alphabet.GSM7 else 8)


def test_the_escape_is_never_cut() -> None:
    (first, second) = split("a" * 152 + "€" + "b" * 10).encoded()
    assert not first.endswith(b"\x1b")
    assert decode_gsm7(second) == "€" + "b" * 10


@pytest.mark.parametrize(
    ("concatenation", "limits"),
    [(Concatenation.UDH16, (152, 66)), (Concatenation.SAR, (160, 70))],
)
def test_part_sizes_by_concatenation(concatenation: Concatenation, limits: tuple[int, int]) -> None:
    assert length(split("a" * 400, concatenation).parts[0], Alphabet.GSM7) == limits[0]
    assert length(split("ж" * 400, concatenation).parts[0], Alphabet.UCS2) == limits[1]


def test_message_payload_is_one_part() -> None:
    assert split("a" * 2000, Concatenation.PAYLOAD).parts == ("a" * 2000,)


def test_count_parts_beyond_the_limit() -> None:
    assert count_parts("a" * 153 * 300) == 300
    with pytest.raises(EncodingError, match="300 parts"):
        split("a" * 153 * 300)


def test_gsm7_round_trip_of_the_whole_alphabet() -> None:
    text = "".join(GSM_CHARS)
    assert is_gsm7(text)
    assert decode_gsm7(encode_gsm7(text)) == text
    assert len(encode_gsm7(text)) == 127 + 2 * len(GSM7_EXTENSION)


def test_decoding_tolerates_what_an_smsc_may_send() -> None:
    assert decode_gsm7(b"\x1bA") == "A"  # escape + unknown code: the basic character
    assert decode_gsm7(b"ab\x1b") == decode_gsm7(b"ab")  # a trailing lone escape
    assert decode_gsm7(bytes([0xC1])) == "A"  # the high bit is ignored


def test_non_gsm_text_refuses_gsm7() -> None:
    with pytest.raises(EncodingError, match="not in the GSM"):
        encode_gsm7("snow ☃")


@settings(max_examples=400, deadline=None)
@given(
    text=st.text(max_size=1200),
    concatenation=st.sampled_from([Concatenation.UDH8, Concatenation.UDH16, Concatenation.SAR]),
)
def test_any_text_reassembles_exactly_and_fits_140_octets(
    text: str, concatenation: Concatenation
) -> None:
    result = split(text, concatenation)
    assert "".join(result.parts) == text
    header = HEADER_OCTETS[concatenation] if len(result.parts) > 1 else 0
    for part in result.parts:
        assert air_octets(part, result.alphabet, header) <= 140
        assert decode(encode(part, result.alphabet), result.alphabet) == part
    assert count_parts(text, concatenation) == len(result.parts)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=1200))
def test_gsm_text_stays_gsm_and_round_trips(text: str) -> None:
    result = split(text)
    assert result.alphabet is Alphabet.GSM7
    assert [decode_gsm7(p) for p in result.encoded()] == list(result.parts)
    assert "".join(result.parts) == text


@settings(max_examples=400, deadline=None)
@given(text=st.text(max_size=400) | st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=400))
def test_length_and_septets_are_what_each_character_costs(text: str) -> None:
    """length and encode_gsm7 work on whole strings (str.translate, in C); they must say
    what the per-character rules say (gsm7_cost, ucs2_cost, ESC + code)."""
    assert length(text, Alphabet.GSM7) == sum(gsm7_cost(c) for c in text)
    assert length(text, Alphabet.UCS2) == sum(ucs2_cost(c) for c in text)
    assert is_gsm7(text) == all(c in GSM_CHARS for c in text)
    if is_gsm7(text):
        expected = b"".join(
            bytes((0x1B, GSM7_EXTENSION[c]))
            if c in GSM7_EXTENSION
            else bytes((GSM7_BASIC.index(c),))
            for c in text
        )
        assert encode_gsm7(text) == expected
    else:
        with pytest.raises(EncodingError, match="not in the GSM"):
            encode_gsm7(text)


@pytest.mark.parametrize("parts", [1, 2, 10, 255])
def test_most_characters_is_the_most_that_fits(parts: int) -> None:
    most = most_characters(parts)
    assert count_parts("a" * most) == parts
    assert count_parts("a" * (most + 1)) == parts + 1


@settings(max_examples=200)
@given(
    parts=st.integers(1, 12),
    text=st.text(min_size=1, max_size=2000) | st.text(alphabet=st.sampled_from(GSM_CHARS)),
)
def test_a_text_longer_than_most_characters_takes_more_parts(parts: int, text: str) -> None:
    if len(text) > most_characters(parts):
        assert count_parts(text) > parts
