from typing import Any

import numpy as np

def encode(
    rows: bytes | bytearray | memoryview | np.ndarray[Any, Any],
    width: int,
    height: int,
    stride: int,
    scheme: bool,
    k: int = 1,
    threshold: int = 0,
    mask: bytes | bytearray | memoryview | np.ndarray[Any, Any] | None = None,
    block: int = 16,
    tone: bytes | None = None,
    cell: bytes | None = None,
    rects: bytes | None = None,
) -> bytes: ...
def has_midtones(
    grey: bytes | bytearray | memoryview | np.ndarray[Any, Any],
    width: int,
    height: int,
    stride: int,
    step: int,
    low: int,
    high: int,
) -> bool: ...
def photo_blocks(
    grey: bytes | bytearray | memoryview | np.ndarray[Any, Any],
    width: int,
    height: int,
    stride: int,
    block: int,
    low: int,
    high: int,
    share: int,
) -> bytes: ...
def add_strokes(
    page: bytearray | memoryview | np.ndarray[Any, Any],
    fine: bytes | bytearray | memoryview | np.ndarray[Any, Any],
    width: int,
    height: int,
    stride: int,
    fine_stride: int,
    threshold: int,
    low: int,
    slack: int,
) -> None: ...
def count_midtones(
    grey: bytes | bytearray | memoryview | np.ndarray[Any, Any],
    width: int,
    height: int,
    stride: int,
    x0: int,
    y0: int,
    x1: int,
    y1: int,
    low: int,
    high: int,
) -> int: ...
def stamp(
    page: bytearray | memoryview | np.ndarray[Any, Any],
    width: int,
    height: int,
    stride: int,
    x0: int,
    y0: int,
    x1: int,
    y1: int,
    rows: bytes | np.ndarray[Any, Any],
    cols: bytes | np.ndarray[Any, Any],
    starts: bytes | np.ndarray[Any, Any],
    glyph: bytes | np.ndarray[Any, Any],
    x: bytes | np.ndarray[Any, Any],
    y: bytes | np.ndarray[Any, Any],
) -> None: ...
def text_chars(
    text_page: int, count: int, get_unicode: int, get_text_object: int, get_char_origin: int
) -> tuple[bytes, bytes, bytes]: ...
