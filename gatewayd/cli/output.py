"""Printing for the operator commands: aligned tables, JSON, one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO


class CommandError(Exception):
    """A command failed in a way the operator can fix; printed as one line, exit 1."""


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    width: int | None = 40,
    out: TextIO | None = None,
) -> None:
    """Aligned columns; cells longer than ``width`` are cut (None: never)."""
    out = out or sys.stdout
    cells = [[_cell(v, width) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(), file=out)
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _cell(value: object, width: int | None) -> str:
    if value is None:
        return "-"
    text = str(value).replace("\n", " ")
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def print_json(value: Any, *, out: TextIO | None = None) -> None:
    json.dump(value, out or sys.stdout, ensure_ascii=False, indent=2, default=str)
    print(file=out or sys.stdout)


def parse_id(text: str, what: str = "message id") -> int:
    if not text.isdigit():
        raise CommandError(f"{text!r} is not a {what} (a number)")
    return int(text)
