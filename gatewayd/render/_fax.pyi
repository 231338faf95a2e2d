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
def add_rules(
    page: bytearray | memoryview | np.ndarray[Any, Any],
    fine: bytes | bytearray | memoryview | np.ndarray[Any, Any],
    width: int,
    height: int,
    stride: int,
    fine_stride: int,
    min_run: int,
    threshold: int,
) -> None: ...
