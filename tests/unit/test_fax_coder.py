"""The C fax coder: every page it codes must decode, with libtiff (through Pillow), to
exactly the pixels it was given; the screen and the block classifier do what they say."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from PIL import Image

from gatewayd.render import _fax
from gatewayd.render.raster import BLOCK, FaxFormat, encode, encode_grey, photo_blocks
from gatewayd.render.tiff import COMPRESSION_G3, COMPRESSION_G4, CodedPage, write


def decode(data: bytes, width: int, height: int, compression: int) -> NDArray[np.bool_]:
    out = io.BytesIO()
    write([CodedPage(width, height, 196, compression, data)], out)
    with Image.open(io.BytesIO(out.getvalue())) as image:
        return np.asarray(image.convert("L")) < 128


def code(bits: NDArray[np.bool_], compression: int, k: int = 4) -> bytes:
    packed = np.packbits(bits, axis=1)
    return _fax.encode(packed, bits.shape[1], bits.shape[0], packed.shape[1],
                       compression == COMPRESSION_G3, k)  # fmt: skip


def runs_image(rng: np.random.Generator, height: int, width: int) -> NDArray[np.bool_]:
    """Rows of random runs, some very long (make-up codes, the 2560+ extension)."""
    bits = np.zeros((height, width), bool)
    for row in bits:
        x, black = 0, bool(rng.integers(2))
        while x < width:
            run = int(rng.choice([rng.integers(1, 8), rng.integers(1, 200), rng.integers(1, 3000)]))
            row[x : x + run] = black
            x, black = x + run, not black
    return bits


SHAPES = {
    "white": lambda rng, h, w: np.zeros((h, w), bool),
    "black": lambda rng, h, w: np.ones((h, w), bool),
    "noise": lambda rng, h, w: rng.random((h, w)) < rng.random(),
    "runs": runs_image,
    "checkerboard": lambda rng, h, w: (np.indices((h, w)).sum(axis=0) % 2).astype(bool),
    "stripes": lambda rng, h, w: np.tile(rng.random(w) < 0.5, (h, 1)),
}


@pytest.mark.parametrize("compression", [COMPRESSION_G4, COMPRESSION_G3])
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("width", [1, 7, 8, 63, 64, 65, 1728, 2600, 5000])
def test_round_trip_through_libtiff(compression: int, shape: str, width: int) -> None:
    rng = np.random.default_rng(width)
    bits = SHAPES[shape](rng, 23, width)
    assert np.array_equal(decode(code(bits, compression), width, 23, compression), bits)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    width=st.integers(1, 3000),
    height=st.integers(1, 12),
    g3=st.booleans(),
    k=st.integers(1, 6),
)
def test_any_page_round_trips(seed: int, width: int, height: int, g3: bool, k: int) -> None:
    rng = np.random.default_rng(seed)
    bits = SHAPES[["noise", "runs"][seed % 2]](rng, height, width)
    compression = COMPRESSION_G3 if g3 else COMPRESSION_G4
    assert np.array_equal(decode(code(bits, compression, k), width, height, compression), bits)


def test_grey_input_codes_as_its_threshold() -> None:
    rng = np.random.default_rng(5)
    grey = rng.integers(0, 256, (40, 1728), dtype=np.uint8)
    for threshold in (1, 128, 255):
        packed = code(grey < threshold, COMPRESSION_G4)
        assert _fax.encode(grey, 1728, 40, 1728, False, 1, threshold) == packed


@pytest.mark.parametrize("photo", [False, True, None])
def test_grey_rows_may_be_strided(photo: bool | None) -> None:
    """A view into a wider bitmap (a PDFium bitmap's stride) codes like a copy of it."""
    rng = np.random.default_rng(6)
    wide = rng.integers(0, 256, (30, 1800), dtype=np.uint8)
    view = wide[:, :1728]
    fax = FaxFormat()
    assert encode_grey(view, fax, photo=photo).data == (
        encode_grey(np.ascontiguousarray(view), fax, photo=photo).data
    )


def test_g3_lines_end_with_byte_aligned_eols_and_rtc() -> None:
    bits = runs_image(np.random.default_rng(7), 10, 1728)
    data = code(bits, COMPRESSION_G3)
    # RTC: six EOLs each with a tag bit 1 (000000000001 1), then zero padding
    rtc = int.from_bytes(data[-10:], "big")
    rtc_bits = bin(rtc)[2:].rstrip("0")
    assert rtc_bits.endswith("1" + "0000000000011" * 5)


def test_bad_buffers_are_refused() -> None:
    with pytest.raises(ValueError, match="does not hold"):
        _fax.encode(b"\x00" * 10, 1728, 10, 216, False)
    with pytest.raises(ValueError, match="screen needs"):
        _fax.encode(b"\xff" * 1728 * 16, 1728, 16, 1728, False, 1, 128, b"\x01", 16,
                    b"\x00" * 10, b"\x00" * 64)  # fmt: skip


def test_a_flat_grey_is_screened_into_regular_dots() -> None:
    fax = FaxFormat(y_dpi=196)
    grey = np.full((fax.height, fax.width), 128, np.uint8)
    page = decode(encode_grey(grey, fax, photo=True).data, fax.width, fax.height, COMPRESSION_G4)
    coverage = page.mean()
    assert 0.25 < coverage < 0.5  # mid-grey, lightened by the tone curve
    cell = page[:8, :8]
    assert np.array_equal(page[8:16, 8:16], cell)  # a dot every 8 pixels, both ways
    # and as one clustered dot, not scattered pixels: black touches black
    black = np.argwhere(cell)
    assert (
        all(any(abs(y - y2) + abs(x - x2) == 1 for y2, x2 in black) for y, x in black)
        or len(black) == 1
    )


def test_photo_blocks_find_the_grey_and_grow_by_one_block() -> None:
    grey = np.full((320, 1728), 255, np.uint8)
    grey[100:164, 400:480] = 120  # 4 x 5 blocks of mid-grey
    grey[10:20, 10:1000] = 0  # black text is not a photograph
    blocks = photo_blocks(grey)
    assert blocks is not None
    flagged = np.argwhere(blocks)
    rows, cols = {int(r) for r, _ in flagged}, {int(c) for _, c in flagged}
    assert rows == set(range(100 // BLOCK - 1, 164 // BLOCK + 1))
    assert cols == set(range(400 // BLOCK - 1, 480 // BLOCK + 1))
    assert photo_blocks(np.where(grey == 0, 0, 255).astype(np.uint8)) is None


def test_text_stays_thresholded_beside_a_photograph() -> None:
    fax = FaxFormat()
    grey = np.full((fax.height, fax.width), 255, np.uint8)
    grey[200:600, 200:800] = 128  # a photograph
    grey[1000:1004, 100:1500] = 0  # a rule: pure black, away from it
    page = decode(encode_grey(grey, fax).data, fax.width, fax.height, COMPRESSION_G4)
    assert page[1000:1004, 100:1500].all()
    assert not page[990:1000].any()
    assert not page[1004:1014].any()
    assert 0.2 < page[200:600, 200:800].mean() < 0.6


def test_bilevel_pages_must_be_fax_width() -> None:
    with pytest.raises(Exception, match="1728 dots wide"):
        encode(np.zeros((10, 1000), bool), FaxFormat())


def _screened(grey: NDArray[np.uint8]) -> NDArray[np.bool_]:
    """What the clustered-dot screen makes of grey pixels (the reference)."""
    from gatewayd.render.raster import _CELL, _TONE

    cell = np.frombuffer(_CELL, np.uint8).reshape(8, 8)
    tone = np.frombuffer(_TONE, np.uint8)
    y, x = np.indices(grey.shape)
    return tone[grey] < cell[y % 8, x % 8]


@pytest.mark.parametrize("compression", [COMPRESSION_G4, COMPRESSION_G3])
def test_regions_are_screened_whole_to_the_pixel(compression: int) -> None:
    """A photograph's rectangle (any edges, not block-aligned) is screened whole, dark
    and light parts too; outside it the page is thresholded; exact, through libtiff."""
    rng = np.random.default_rng(8)
    fax = FaxFormat(compression=compression)
    grey = np.full((200, 1728), 255, np.uint8)
    ramp = np.linspace(2, 253, 613).astype(np.uint8)  # near black to near white
    grey[37:171, 101:714] = ramp[None, :]
    grey[50:60, 900:1400] = 0  # text beside it
    grey[80:90, 900:1400] = rng.integers(0, 256, (10, 500), dtype=np.uint8)  # noise, thresholded
    regions = ((101, 37, 714, 171), (1700, 190, 1728, 200))
    data = encode_grey(grey, FaxFormat(compression=compression), photo=None, regions=regions).data
    expected = grey < 128
    expected[37:171, 101:714] = _screened(grey)[37:171, 101:714]
    expected[190:200, 1700:1728] = _screened(grey)[190:200, 1700:1728]
    got = decode(data, 1728, 200, compression)
    assert fax.width == 1728
    assert np.array_equal(got, expected)
    # no 16x16 block of the ramp is solid: the dark and light ends are dotted too
    body = got[40:168, 104:712]
    blocks = body[: 128 // 16 * 16, : 608 // 16 * 16].reshape(8, 16, 38, 16).sum(axis=(1, 3))
    assert ((blocks > 0) & (blocks < 256)).all()


def test_screening_leaves_pure_black_and_white_alone() -> None:
    """So text over a photograph, or paper inside its box, stays as it was drawn."""
    grey = np.where(np.random.default_rng(9).random((64, 1728)) < 0.3, 0, 255).astype(np.uint8)
    assert np.array_equal(_screened(grey), grey < 128)


def test_bad_regions_are_refused() -> None:
    grey = np.full((16, 1728), 128, np.uint8)
    mask = np.ones((1, 108), np.uint8)
    args = (grey, 1728, 16, 1728, False, 1, 128, mask, 16, b"\x00" * 256, b"\x00" * 64)
    with pytest.raises(ValueError, match="outside the page"):
        _fax.encode(*args, np.array([0, 0, 1729, 16], np.int32).tobytes())
    with pytest.raises(ValueError, match="32-bit integers"):
        _fax.encode(*args, b"\x00" * 10)


def test_strokes_lost_at_normal_are_put_back_once() -> None:
    """A stroke one fine row tall that the normal page lacks is put back (beside the
    black of its neighbours when there is some); one the normal page has, give or take
    a row, is not doubled; grey runs (a photograph's) are left alone."""
    from gatewayd.render.raster import add_strokes

    fine = np.full((40, 1728), 255, np.uint8)
    normal = np.full((20, 1728), 255, np.uint8)
    fine[9, 100:300] = 0  # a hairline between normal rows 4 and 5: lost at normal
    fine[21, 400:500] = 0  # a stroke the normal page has, a row off
    normal[11, 400:500] = 0
    fine[29:31, 600:700] = 0  # an arch across normal rows 14 and 15, its end drawn on 15
    normal[15, 599] = 0
    fine[35, 800:900] = 90  # a dark grey: not a stroke
    add_strokes(normal, fine, slack=1)
    black = normal < 128
    assert black[4, 100:300].all()
    assert black[:, 100:300].sum() == 200
    assert black[:, 400:500].sum() == 100  # not doubled
    assert black[15, 599:700].all()  # joined to the end already there
    assert not black[14, 600:700].any()
    assert not black[:, 800:900].any()


def test_midtones_are_counted_in_a_rectangle() -> None:
    grey = np.full((50, 1728), 255, np.uint8)
    grey[10:20, 10:30] = 128
    grey[10:20, 30:40] = 0
    assert _fax.count_midtones(grey, 1728, 50, 1728, 0, 0, 1728, 50, 40, 215) == 200
    assert _fax.count_midtones(grey, 1728, 50, 1728, 15, 10, 35, 15, 40, 215) == 75
    with pytest.raises(ValueError, match="bad arguments"):
        _fax.count_midtones(grey, 1728, 50, 1728, 0, 0, 1729, 50, 40, 215)


def test_glyphs_are_stamped_black_inside_the_box_only() -> None:
    page = np.full((20, 30), 255, np.uint8)
    # glyph 0: a 2x2 square; glyph 1: one pixel left of and above its origin
    rows = np.array([0, 0, 1, 1, -1], np.int32)
    cols = np.array([0, 1, 0, 1, -1], np.int32)
    starts = np.array([0, 4, 5], np.int32)
    glyph = np.array([0, 1, 0], np.int32)
    x, y = np.array([5, 10, 28], np.int32), np.array([5, 10, 18], np.int32)
    _fax.stamp(page, 30, 20, 30, 0, 0, 29, 20, rows, cols, starts, glyph, x, y)
    black = page == 0
    assert black[5:7, 5:7].all()
    assert black[9, 9]
    assert black[18:20, 28].all()  # the third square is cut at the box's right edge
    assert not black[:, 29].any()
    assert black.sum() == 4 + 1 + 2
    with pytest.raises(ValueError, match="bad arguments"):  # glyph 2 of two: out of range
        _fax.stamp(page, 30, 20, 30, 0, 0, 30, 20, rows, cols, starts, glyph + 1, x, y)
    with pytest.raises(ValueError, match="bad arguments"):  # a box beyond the page
        _fax.stamp(page, 30, 20, 30, 0, 0, 31, 20, rows, cols, starts, glyph, x, y)


def test_glyphs_are_cut_at_the_box_top_and_bottom() -> None:
    """The box's rows 2 to 16 inside a 20-row page: what falls above or below it stays
    white (rows 1 and 17 are the page's, so a missing check shows as ink there)."""
    page = np.full((20, 30), 255, np.uint8)
    rows = np.array([0, 0, 1, 1, -1], np.int32)
    cols = np.array([0, 1, 0, 1, -1], np.int32)
    starts = np.array([0, 4, 5], np.int32)
    glyph = np.array([1, 0], np.int32)  # a pixel at row 1; a square on rows 16 and 17
    x, y = np.array([5, 10], np.int32), np.array([2, 16], np.int32)
    _fax.stamp(page, 30, 20, 30, 0, 2, 30, 17, rows, cols, starts, glyph, x, y)
    black = page == 0
    assert black[16, 10:12].all()
    assert black.sum() == 2  # not row 1 above the box, nor row 17 below it


def test_text_chars_refuses_null_handles() -> None:
    """(Read through PDFium's own functions; tests/integration/test_pdf_text.py reads
    real pages with it.)"""
    with pytest.raises(ValueError, match="bad arguments"):
        _fax.text_chars(0, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="bad arguments"):
        _fax.text_chars(1, 1, 0, 1, 1)
