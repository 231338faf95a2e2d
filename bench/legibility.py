"""Legibility benchmark: how well fax pages read, gatewayd against Ghostscript.

    python bench/legibility.py [--jobs 2] [--pages 6] [--only Helvetica-6]

For each font and size (Helvetica 6/7/8/10/12, Times 8/10, Courier 9; the standard
PDF fonts, not embedded, as reportlab writes them) pages are generated
(tests/legibility.py): ``--pages`` pages of running text of made-up words, and as many
of random identifier codes such as ``AB7-4K9Q``, each page with its own words. Each is
drawn at fine (204x196) and normal (204x98) by gatewayd (in this process: PDFium, the
C coder, decoded again by libtiff) and by ``gs -sDEVICE=tiffg4 -r204x196`` (or
``-r204x98``) ``-dFIXEDMEDIA -dPDFFitPage -sPAPERSIZE=a4``, and read by tesseract
(``--psm 6``, the page rescaled to square pixels). Reported: character accuracy, word
accuracy and the share of codes read exactly, in per cent, the mean over the pages;
and the first page's character accuracy alone (the single page earlier reports
measured). Writes bench/results/legibility.{json,md}.

Why several pages: at the smallest print a single page is a poor sample. At Helvetica 6
at normal, Ghostscript's character accuracy ranges from 93.9 to 95.8 over six pages of
the same kind (gatewayd's from 94.7 to 95.1), far more than the 0.2 points of noise a
comparison allows; the first page is Ghostscript's best of the six.

Needs Debian tesseract-ocr, tesseract-ocr-eng and ghostscript.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import legibility  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CASES = (
    ("Helvetica", 6),
    ("Helvetica", 7),
    ("Helvetica", 8),
    ("Helvetica", 10),
    ("Helvetica", 12),
    ("Times-Roman", 8),
    ("Times-Roman", 10),
    ("Courier", 9),
)
RESOLUTIONS = {"fine": 196, "normal": 98}
PAGES = 6


@dataclass
class Cell:
    font: str
    size: int
    resolution: str
    renderer: str  # gatewayd or gs
    chars: float  # the mean over the pages
    words: float
    codes: float
    chars_by_page: list[float]  # the first is the page earlier reports measured alone


def measure(font: str, size: int, resolution: str, renderer: str, pages: int) -> Cell:
    y_dpi = RESOLUTIONS[resolution]
    draw = legibility.gatewayd if renderer == "gatewayd" else legibility.ghostscript
    scores, exact = [], []
    for seed in range(1, pages + 1):
        text = legibility.text_page(font, size, seed=seed)
        codes = legibility.codes_page(font, size, seed=seed)
        scores.append(legibility.score(legibility.read(draw(text.pdf, y_dpi)[0], y_dpi), text.text))
        exact.append(
            legibility.codes_read(legibility.read(draw(codes.pdf, y_dpi)[0], y_dpi), codes)
        )
    mean = legibility.mean(scores)
    codes_mean = round(statistics.fmean(exact), 2)
    by_page = [s.chars for s in scores]
    return Cell(font, size, resolution, renderer, mean.chars, mean.words, codes_mean, by_page)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pages", type=int, default=PAGES, help="pages of each kind per cell")
    parser.add_argument("--only", help="one case, e.g. Helvetica-6")
    parser.add_argument("--out", default="legibility", help="report name in bench/results/")
    args = parser.parse_args()
    if legibility.TESSERACT is None or legibility.GHOSTSCRIPT is None:
        sys.exit(
            "bench/legibility.py needs tesseract and Ghostscript: apt-get install "
            "tesseract-ocr tesseract-ocr-eng ghostscript"
        )
    cases = [c for c in CASES if args.only in (None, f"{c[0]}-{c[1]}")]
    plan = [
        (f, s, r, who, args.pages)
        for f, s in cases
        for r in RESOLUTIONS
        for who in ("gatewayd", "gs")
    ]
    with ProcessPoolExecutor(args.jobs) as pool:
        cells = list(pool.map(measure, *zip(*plan, strict=True)))
    for cell in cells:
        print(
            f"  {cell.font:<12} {cell.size:>2} {cell.resolution:<6} {cell.renderer:<8} "
            f"chars {cell.chars:6.2f}  words {cell.words:6.2f}  codes {cell.codes:6.2f}  "
            f"(chars by page {' '.join(f'{c:.2f}' for c in cell.chars_by_page)})"
        )
    report(cells, args.out, args.pages)


def versions() -> dict[str, str]:
    def first_line(*command: str) -> str:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        return (result.stdout or result.stderr).splitlines()[0].strip()

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "ghostscript": first_line("gs", "--version"),
        "tesseract": first_line("tesseract", "--version"),
        "commit": commit,
    }


def report(cells: list[Cell], name: str, pages: int) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    about = versions()
    (RESULTS / f"{name}.json").write_text(
        json.dumps(
            {"when": stamp, **about, "pages": pages, "cells": [asdict(c) for c in cells]},
            indent=2,
        )
    )
    get = {(c.font, c.size, c.resolution, c.renderer): c for c in cells}
    lines = [
        f"# Legibility benchmark ({stamp}, commit {about['commit']})",
        "",
        f"tesseract ({about['tesseract']}) `--psm 6` on pages rescaled to square pixels; "
        f"gatewayd against Ghostscript {about['ghostscript']} (`-sDEVICE=tiffg4`); the "
        "standard fonts not embedded. chars and words: accuracy in per cent; codes: "
        f"identifier codes read exactly, per cent; each the mean over {pages} pages of "
        "text (of codes) with different words. page 1: the first page's character "
        "accuracy alone; range: the lowest and highest page.",
        "",
        "| font / size | res | chars gs | chars gatewayd | words gs | words gatewayd "
        "| codes gs | codes gatewayd | page 1 gs / gatewayd | range gs | range gatewayd |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for font, size in dict.fromkeys((c.font, c.size) for c in cells):
        for resolution in RESOLUTIONS:
            gs, ours = (
                get.get((font, size, resolution, "gs")),
                get.get((font, size, resolution, "gatewayd")),
            )
            if gs is None or ours is None:
                continue
            lines.append(
                f"| {font.split('-')[0]} {size} | {resolution} | {gs.chars:.2f} | "
                f"{ours.chars:.2f} | {gs.words:.2f} | {ours.words:.2f} | {gs.codes:.2f} | "
                f"{ours.codes:.2f} | {gs.chars_by_page[0]:.2f} / {ours.chars_by_page[0]:.2f} | "
                f"{_spread(gs)} | {_spread(ours)} |"
            )
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / name}.md")


def _spread(cell: Cell) -> str:
    return f"{min(cell.chars_by_page):.2f}-{max(cell.chars_by_page):.2f}"


if __name__ == "__main__":
    main()
