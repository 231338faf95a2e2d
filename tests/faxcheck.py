"""Checking fax TIFFs with the tools fax servers use: HylaFAX's tiffcheck (Debian
hylafax-server) and libtiff's tiffinfo (libtiff-tools); and reading their pages back
(libtiff's decoder, through Pillow) as arrays, True for black."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

TIFFCHECK = next((p for p in ("/usr/sbin/tiffcheck", shutil.which("tiffcheck")) if p and
                  Path(p).exists()), None)  # fmt: skip
TIFFINFO = shutil.which("tiffinfo")


def tiffcheck(path: Path, *, resolution: int = 196, g3: bool = False,
              length_mm: int = 300) -> str:  # fmt: skip
    """tiffcheck's verdict for a fax sent at ``resolution`` lines per inch, G4 (or G3
    2-D) and pages up to ``length_mm``: ``OK`` when HylaFAX would send it as it is."""
    if TIFFCHECK is None:
        pytest.fail("tiffcheck is missing: apt-get install hylafax-server")
    command = [TIFFCHECK, "-r", str(resolution), "-2" if g3 else "-3", "-l", str(length_mm),
               str(path)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    return (result.stdout + result.stderr).strip()


def tiffinfo(path: Path) -> list[dict[str, str]]:
    """Every directory as tiffinfo prints it: {"Image Width": "1728", ...}."""
    if TIFFINFO is None:
        pytest.fail("tiffinfo is missing: apt-get install libtiff-tools")
    result = subprocess.run([TIFFINFO, str(path)], capture_output=True, text=True, check=False,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Error" not in result.stderr, result.stderr
    pages: list[dict[str, str]] = []
    for line in result.stdout.splitlines():
        if line.startswith("TIFF Directory"):
            pages.append({})
        elif pages and ":" in line:
            entry = line.strip()
            if entry.startswith("Image Width"):  # "Image Width: 1728 Image Length: 2292"
                found = re.match(r"Image Width: (\d+) Image Length: (\d+)", entry)
                assert found, entry
                pages[-1]["Image Width"], pages[-1]["Image Length"] = found.groups()
                continue
            key, _, value = entry.partition(":")
            pages[-1][key.strip()] = value.strip()
    return pages


def pages(path: Path) -> list[NDArray[np.bool_]]:
    """The pages, decoded by libtiff; True is black."""
    out = []
    with Image.open(path) as image:
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            out.append(np.asarray(image.convert("L")) < 128)
    return out


def assert_fax(path: Path, *, count: int, resolution: int = 196, g3: bool = False,
               paper: str = "a4") -> list[dict[str, str]]:  # fmt: skip
    """The file is a fax TIFF HylaFAX sends unchanged and libtiff reads: ``count`` pages
    of 1728 dots, the paper's length at ``resolution``, bilevel min-is-white, one strip,
    NewSubfileType 2 and PageNumber (index, total) on each."""
    verdict = tiffcheck(path, resolution=resolution, g3=g3, length_mm=300)
    assert verdict == "OK", verdict
    info = tiffinfo(path)
    assert len(info) == count
    rows = {("a4", 196): 2292, ("a4", 98): 1146, ("letter", 196): 2156, ("letter", 98): 1078}
    for index, page in enumerate(info):
        assert page["Image Width"] == "1728"
        assert page["Image Length"] == str(rows[paper, resolution])
        assert page["Resolution"] == f"204, {resolution} pixels/inch"
        assert page["Bits/Sample"] == "1"
        assert page["Photometric Interpretation"] == "min-is-white"
        assert page["Subfile Type"].startswith("multi-page document (2")
        assert page["Page Number"] == f"{index}-{count}"
        assert page["Rows/Strip"] == page["Image Length"]
        expected = "CCITT Group 3" if g3 else "CCITT Group 4"
        assert page["Compression Scheme"] == expected
    return info
