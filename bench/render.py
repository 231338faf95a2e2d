"""Fax rendering benchmark: gatewayd's renderer against Ghostscript's fax device.

    python bench/render.py [--reps 3] [--quick]

The corpus is generated (tests/documents.py) into bench/results/corpus/ on first use:

- dense-ttf: 50 dense A4 pages with embedded subset TrueType fonts (office-style)
- dense-type1: the same text in the standard Type 1 fonts, not embedded
- mixed: 10 pages of Letter, landscape and odd sizes, 6 pt print and shaded charts
- scanned: 6 pages, each a 200 dpi grey JPEG of a text page
- photo: a full-page photograph (JPEG, 2480x3508)
- email: a 10-page plain-text email
- dense-*-200: 200-page versions of the dense PDFs, with one and two workers

Each is rendered by gatewayd (a warm pool of render processes, as in the daemon, and a
fresh copy of the input per run, so no document stays parsed from a previous run) and
by ``gs -q -dNOPAUSE -dBATCH -dSAFER -sDEVICE=tiffg4 -r204x196 -dFIXEDMEDIA
-dPDFFitPage -sPAPERSIZE=a4`` (a new process per run, as a fax server calls it).
Ghostscript reads PDF only: the photo is given to it wrapped in a one-page PDF, the
email as the PDF gatewayd typesets from it (so Ghostscript skips that step). Reported:
median pages/s of ``--reps`` runs, the ratio, bytes per page, and peak RSS (gatewayd:
the sum over its process and its workers, sampled every 20 ms; Ghostscript: its
max RSS, by GNU time). Writes bench/results/render.{json,md}.

Ghostscript is installed by this script when missing (apt-get, as root); it is not a
dependency of gatewayd.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gatewayd.render import textdoc  # noqa: E402
from gatewayd.render.job import Renderer, RenderOptions, Source  # noqa: E402
from gatewayd.render.kinds import Kind  # noqa: E402
from gatewayd.render.raster import FaxFormat  # noqa: E402
from tests import documents  # noqa: E402

TIME = "/usr/bin/time"
RESULTS = ROOT / "bench" / "results"
CORPUS = RESULTS / "corpus"
GS = ["gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=tiffg4", "-r204x196",
      "-dFIXEDMEDIA", "-dPDFFitPage", "-sPAPERSIZE=a4"]  # fmt: skip


@dataclass
class Row:
    name: str
    pages: int
    workers: int
    ours_pps: float
    gs_pps: float
    ratio: float
    ours_bytes_per_page: int
    gs_bytes_per_page: int
    ours_peak_rss_mb: float
    gs_peak_rss_mb: float


def corpus() -> dict[str, tuple[Path, Kind, Path]]:
    """name -> (our input, its kind, Ghostscript's PDF)."""
    photo = documents.write(CORPUS, "photo.jpg", documents.photo_jpeg)
    email = documents.write(CORPUS, "email.txt", lambda: documents.email_text().encode())
    items = {
        "dense-ttf": documents.write(CORPUS, "dense-ttf.pdf", documents.dense_text_pdf),
        "dense-type1": documents.write(
            CORPUS, "dense-type1.pdf", lambda: documents.dense_text_pdf(embedded=False)
        ),
        "mixed": documents.write(CORPUS, "mixed.pdf", documents.mixed_pdf),
        "scanned": documents.write(CORPUS, "scanned.pdf", documents.scanned_pdf),
        "dense-ttf-200": documents.write(
            CORPUS, "dense-ttf-200.pdf", lambda: documents.dense_text_pdf(200)
        ),
        "dense-type1-200": documents.write(
            CORPUS, "dense-type1-200.pdf", lambda: documents.dense_text_pdf(200, embedded=False)
        ),
    }
    found = {name: (path, Kind.PDF, path) for name, path in items.items()}
    found["photo"] = (photo, Kind.JPEG, documents.write(
        CORPUS, "photo.pdf", lambda: documents.image_pdf(photo.read_bytes())))  # fmt: skip
    found["email"] = (email, Kind.TEXT, documents.write(
        CORPUS, "email.pdf", lambda: textdoc.plain_text_pdf(email.read_text(), "a4")))  # fmt: skip
    return found


def ensure_tools() -> str:
    """Ghostscript and GNU time, installed when missing; Ghostscript's version."""
    missing = [package for package, tool in (("ghostscript", "gs"), ("time", TIME))
               if shutil.which(tool) is None]  # fmt: skip
    if missing and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=False, env=env)
    if shutil.which("gs") is None or shutil.which(TIME) is None:
        sys.exit("bench/render.py needs Ghostscript and GNU time: apt-get install ghostscript time")
    result = subprocess.run(["gs", "--version"], check=True, capture_output=True, text=True)
    return result.stdout.strip()


class RssSampler:
    """Peak of the summed RSS of this process and its children (the render workers)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return 0

    @staticmethod
    def _pids() -> list[int]:
        """This process and its descendants (render workers, the forkserver)."""
        found, queue = [], [os.getpid()]
        while queue:
            pid = queue.pop()
            found.append(pid)
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
                queue += [int(x) for x in children.split()]
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(self._rss(pid) for pid in self._pids()))
            time.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_gs(pdf: Path, out: Path) -> tuple[float, int]:
    """Seconds and max RSS (bytes) of one Ghostscript run. GNU time reports the RSS:
    gs's own rusage from here would include this (larger) process's, forked before the
    exec."""
    started = time.perf_counter()
    result = subprocess.run([TIME, "-f", "%M", *GS, f"-sOutputFile={out}", str(pdf)],
                            check=False, capture_output=True, text=True)  # fmt: skip
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"gs failed on {pdf}: {result.stderr.strip()}")
    return elapsed, int(result.stderr.strip().splitlines()[-1]) * 1024


def tiff_pages(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return int(getattr(image, "n_frames", 1))


async def run_ours(renderer: Renderer, path: Path, kind: Kind, out: Path,
                   scratch: Path) -> tuple[float, int]:  # fmt: skip
    copy = scratch / f"input-{time.monotonic_ns()}{path.suffix}"
    shutil.copyfile(path, copy)
    options = RenderOptions(FaxFormat(), max_pages=1000)
    started = time.perf_counter()
    result = await renderer.render([Source(path.name, kind, copy)], None, options, out)
    elapsed = time.perf_counter() - started
    copy.unlink()
    return elapsed, result.pages


async def measure(name: str, item: tuple[Path, Kind, Path], workers: int, reps: int,
                  scratch: Path) -> Row:  # fmt: skip
    path, kind, gs_pdf = item
    renderer = Renderer(workers, scratch=scratch)
    warm = documents.write(scratch, "warm.pdf", lambda: documents.dense_text_pdf(4))
    # start every worker (the daemon's pool is long-lived)
    await asyncio.gather(*(run_ours(renderer, warm, Kind.PDF, scratch / f"warm{i}.tif", scratch)
                           for i in range(workers * 2)))  # fmt: skip
    ours_out, gs_out = scratch / f"{name}-ours.tif", scratch / f"{name}-gs.tif"
    times, pages = [], 0
    with RssSampler() as sampler:
        for _ in range(reps):
            elapsed, pages = await run_ours(renderer, path, kind, ours_out, scratch)
            times.append(elapsed)
    await renderer.close()
    gs_times, gs_rss = [], 0
    for _ in range(reps):
        elapsed, rss = run_gs(gs_pdf, gs_out)
        gs_times.append(elapsed)
        gs_rss = max(gs_rss, rss)
    gs_pages = tiff_pages(gs_out)
    ours_pps = pages / statistics.median(times)
    gs_pps = gs_pages / statistics.median(gs_times)
    row = Row(name, pages, workers, round(ours_pps, 1), round(gs_pps, 1),
              round(ours_pps / gs_pps, 2), ours_out.stat().st_size // pages,
              gs_out.stat().st_size // gs_pages, round(sampler.peak / 2**20, 1),
              round(gs_rss / 2**20, 1))  # fmt: skip
    print(f"  {name:<16} {workers} worker{'s' if workers > 1 else ' '}  {row.ours_pps:7.1f} p/s "
          f"vs gs {row.gs_pps:7.1f} p/s  x{row.ratio:<5}  {row.ours_bytes_per_page:>7,} vs "
          f"{row.gs_bytes_per_page:>7,} B/page  RSS {row.ours_peak_rss_mb} vs "
          f"{row.gs_peak_rss_mb} MB", flush=True)  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the 200-page runs")
    parser.add_argument("--make-corpus", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_corpus:
        corpus()
        return
    version = ensure_tools()
    # The corpus is made in another process, so that this one (whose RSS counts)
    # stays as small as the daemon's.
    subprocess.run([sys.executable, __file__, "--make-corpus"], check=True)
    plan = [(name, 1) for name in ("dense-ttf", "dense-type1", "mixed", "scanned", "photo",
                                   "email")]  # fmt: skip
    if not args.quick:
        plan += [(name, w) for name in ("dense-ttf-200", "dense-type1-200") for w in (1, 2)]
    print(f"render benchmark: gatewayd vs Ghostscript {version}, {os.cpu_count()} processors, "
          f"median of {args.reps}")  # fmt: skip
    rows = asyncio.run(run_plan(plan, corpus(), args.reps))
    report(rows, version, args.reps)


async def run_plan(plan: list[tuple[str, int]], items: dict[str, tuple[Path, Kind, Path]],
                   reps: int) -> list[Row]:  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="gatewayd-bench-render-") as scratch:
        for name, workers in plan:
            rows.append(await measure(name, items[name], workers, reps, Path(scratch)))
    return rows


def report(rows: list[Row], version: str, reps: int) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    (RESULTS / "render.json").write_text(json.dumps(
        {"when": stamp, "ghostscript": version, "processors": os.cpu_count(), "reps": reps,
         "rows": [asdict(r) for r in rows]}, indent=2))  # fmt: skip
    lines = [
        f"# Render benchmark ({stamp})", "",
        f"gatewayd against Ghostscript {version} (`{' '.join(GS)}`), {os.cpu_count()} "
        f"processors, median of {reps} runs; fine resolution, A4, G4.", "",
        "| document | pages | workers | gatewayd p/s | gs p/s | ratio | gatewayd B/page "
        "| gs B/page | gatewayd peak RSS MB | gs peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]  # fmt: skip
    lines += [f"| {r.name} | {r.pages} | {r.workers} | {r.ours_pps} | {r.gs_pps} | {r.ratio} | "
              f"{r.ours_bytes_per_page:,} | {r.gs_bytes_per_page:,} | {r.ours_peak_rss_mb} | "
              f"{r.gs_peak_rss_mb} |" for r in rows]  # fmt: skip
    (RESULTS / "render.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'render.md'}")


if __name__ == "__main__":
    main()
