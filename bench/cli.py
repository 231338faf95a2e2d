"""Command-line speed: how long the ``gatewayd`` command takes, against a bare Python.

    python bench/cli.py [--runs 5] [--before REF]

Each command is run ``--runs`` times as a new process, as an operator would run it
(``.venv/bin/gatewayd ...``); the figure is the minimum wall time (the least disturbed
run on a shared machine), next to ``python -c pass`` measured in the same run, so that
the difference is gatewayd's own start-up:

- ``--help``, ``--version``, ``check-config`` on the shipped config;
- ``messages list`` on a small mailbox (40 messages);
- ``render`` of a 17-page PDF (tests/documents.py, dense text) into a fax TIFF. Its
  overhead is the wall time less the time the same 17 pages take to draw, code and
  write inside a process that has everything loaded (measured here too);
- Ghostscript's fax device on the same PDF, for reference, when ``gs`` is installed.

``--before REF`` also measures the code of a git commit (``git archive`` into a
temporary directory, put first on PYTHONPATH; the C fax coder is taken from this
checkout), in the same run, so the report shows before and after side by side.

Writes bench/results/cli.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gatewayd.config.settings import MailboxSettings  # noqa: E402
from gatewayd.mailbox import Mailbox  # noqa: E402
from tests import documents  # noqa: E402
from tests.conftest import fax, sms  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GATEWAYD = Path(sys.executable).parent / "gatewayd"
GS = [
    "gs",
    "-q",
    "-dNOPAUSE",
    "-dBATCH",
    "-dSAFER",
    "-sDEVICE=tiffg4",
    "-r204x196",
    "-dFIXEDMEDIA",
    "-dPDFFitPage",
    "-sPAPERSIZE=a4",
]
DRAW = """
import sys, time
from pathlib import Path
from gatewayd.config.settings import FaxSettings
from gatewayd.render.kinds import Kind
from gatewayd.render import tiff, worker
from gatewayd.render.job import RenderOptions
pdf, out = Path(sys.argv[1]), Path(sys.argv[2])
options = RenderOptions.from_settings(FaxSettings())
call = worker.Call(out.parent, options.fax, options.limits)
best = float("inf")
for _ in range(int(sys.argv[3])):
    started = time.perf_counter()
    prepared = worker.prepare(worker.Source("m", Kind.PDF, pdf), call)
    tiff.write_file(worker.render_pages(prepared, range(prepared.pages), call), out)
    best = min(best, time.perf_counter() - started)
    worker.close_documents()
print(best)
"""


def wall(argv: list[str], runs: int, env: dict[str, str], cwd: Path | None = None) -> float:
    """The minimum wall time of ``runs`` runs; each must exit 0."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.decode()}")
        best = min(best, elapsed)
    return best


def make_mailbox(work: Path) -> Path:
    async def fill() -> None:
        box = await Mailbox.open(MailboxSettings(data_dir=work / "data"))
        try:
            for n in range(20):
                await box.create(sms(text=f"message {n}"))
                await box.create(fax())
        finally:
            await box.close()

    asyncio.run(fill())
    config = work / "gatewayd.toml"
    config.write_text(
        f'[mailbox]\ndata_dir = "{work / "data"}"\n[log]\nfile = ""\n'
        '[[users]]\nemail = "alice@example.com"\naccount_id = 1\nextension_id = 101\n'
        'extension_number = "101"\nname = "Alice"\n'
    )
    return config


def checkout(ref: str, into: Path) -> Path:
    """The tree of commit ``ref`` in ``into``, with this checkout's built fax coder."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "gatewayd"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    for built in (ROOT / "gatewayd" / "render").glob("_fax.*.so"):
        shutil.copy(built, into / "gatewayd" / "render" / built.name)
    return into


def measure(
    label: str, env: dict[str, str], *, work: Path, config: Path, pdf: Path, runs: int
) -> dict[str, float]:
    where = subprocess.run(
        [sys.executable, "-c", "import gatewayd; print(gatewayd.__file__)"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    print(f"{label}: gatewayd from {Path(where.strip()).parent}", file=sys.stderr)
    out = work / f"{label}.tif"
    commands = {
        "--help": ["--help"],
        "--version": ["--version"],
        "check-config": ["check-config", "--config", str(ROOT / "config" / "gatewayd.toml")],
        "messages list": ["messages", "list", "--config", str(config)],
        "render (17 pages)": ["render", str(pdf), "-o", str(out)],
    }
    return {name: wall([str(GATEWAYD), *argv], runs, env, work) for name, argv in commands.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", metavar="REF", help="also measure this git commit")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GATEWAYD_CONFIG": str(ROOT / "config" / "gatewayd.toml")}
    env.pop("PYTHONPATH", None)
    with tempfile.TemporaryDirectory(prefix="gatewayd-bench-cli-") as temporary:
        work = Path(temporary)
        config = make_mailbox(work)
        pdf = documents.write(work, "manual-17.pdf", lambda: documents.dense_text_pdf(17))
        bare = wall([sys.executable, "-c", "pass"], args.runs, env)
        draw = float(
            subprocess.run(
                [sys.executable, "-c", DRAW, str(pdf), str(work / "draw.tif"), str(args.runs)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        inputs = {"work": work, "config": config, "pdf": pdf, "runs": args.runs}
        figures = {"after": measure("after", env, **inputs)}
        if args.before:
            tree = checkout(args.before, work / "before")
            before_env = {**env, "PYTHONPATH": str(tree)}
            figures["before"] = measure("before", before_env, **inputs)
        gs = None
        if shutil.which("gs"):
            gs = wall([*GS, f"-sOutputFile={work / 'gs.tif'}", str(pdf)], args.runs, env)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": args.runs,
        "python": sys.version.split()[0],
        "bare_python_seconds": bare,
        "render_draw_seconds": draw,
        "ghostscript_seconds": gs,
        "before_ref": args.before,
        "figures": figures,
    }
    (RESULTS / "cli.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = to_markdown(report)
    (RESULTS / "cli.md").write_text(markdown)
    print(markdown)


def to_markdown(report: dict[str, object]) -> str:
    figures: dict[str, dict[str, float]] = report["figures"]  # type: ignore[assignment]
    bare = float(report["bare_python_seconds"])  # type: ignore[arg-type]
    draw = float(report["render_draw_seconds"])  # type: ignore[arg-type]
    columns = [c for c in ("before", "after") if c in figures]
    lines = [
        f"# gatewayd command-line speed ({report['when']}, Python {report['python']})",
        "",
        f"Minimum wall time of {report['runs']} runs. `python -c pass` took {bare:.3f} s in "
        f"the same run; drawing the 17 pages in a loaded process takes {draw:.3f} s.",
        "",
        "| command | " + " | ".join(f"{c} (s)" for c in columns) + " | after − bare python (s) |",
        "| --- | " + " | ".join("---:" for _ in columns) + " | ---: |",
    ]
    for name in figures["after"]:
        cells = " | ".join(f"{figures[c][name]:.3f}" for c in columns)
        lines.append(f"| `gatewayd {name}` | {cells} | {figures['after'][name] - bare:.3f} |")
    render = figures["after"]["render (17 pages)"]
    lines += ["", f"`render` overhead (wall time less drawing): {render - draw:.3f} s."]
    if report["ghostscript_seconds"] is not None:
        lines.append(
            f"Ghostscript's tiffg4 device on the same PDF: "
            f"{float(report['ghostscript_seconds']):.3f} s."
        )  # type: ignore[arg-type]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
