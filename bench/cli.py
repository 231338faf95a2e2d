"""Command-line speed: how long the ``gatewayd`` command takes, against a bare Python.

    python bench/cli.py [--runs 5] [--before REF]

Each command is run ``--runs`` times as a new process, as an operator would run it
(``.venv/bin/gatewayd ...``); the figure is the minimum wall time (the least disturbed
run on a shared machine), next to ``python -c pass`` measured in the same run, so that
the difference is gatewayd's own start-up:

- ``--help``, ``--version``, ``check-config`` on the shipped config;
- ``messages list`` on a small mailbox (40 messages);
- ``status`` asking a running ``gatewayd run`` on that mailbox (its socket), and
  ``status`` with no daemon (the mailbox alone), ``token list``; a ``--before`` commit
  without such a command shows "-";
- ``render`` of a 17-page PDF (tests/documents.py, dense text) into a fax TIFF. Its
  overhead is the wall time less the time the same 17 pages take to draw, code and
  write inside a process that has everything loaded (measured here too);
- Ghostscript's fax device on the same PDF, for reference, when ``gs`` is installed.

``--before REF`` also measures the code of a git commit (``git archive`` into a
temporary directory, put first on PYTHONPATH; the C fax coder is taken from this
checkout), in the same run, its runs alternating with this checkout's (a busy moment
of a shared machine then falls on both), so the report shows before and after side by
side.

Writes bench/results/cli.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import documents  # noqa: E402

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


WRONG_USAGE = 2  # what argparse exits with for a command that does not exist (yet)


def wall(argv: list[str], runs: int, env: dict[str, str], cwd: Path | None = None) -> float | None:
    """The minimum wall time of ``runs`` runs; each must exit 0. None when the command
    does not exist in the code measured (an older commit)."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
        elapsed = time.perf_counter() - started
        if result.returncode == WRONG_USAGE and b"invalid choice" in result.stderr:
            return None
        if result.returncode != 0:
            sys.exit(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.decode()}")
        best = min(best, elapsed)
    return best


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def running_daemon(env: dict[str, str], config: Path, work: Path) -> Iterator[None]:
    """``gatewayd run`` on the bench's mailbox until the block ends (its status socket
    answers before the block starts)."""
    daemon = subprocess.Popen(
        [str(GATEWAYD), "run", "--config", str(config)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (work / "data" / "gatewayd.sock").exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"gatewayd run did not start: {daemon.communicate()[1].decode()}")
            time.sleep(0.05)
        yield
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)


FILL = """
import asyncio, sys
from pathlib import Path
sys.path.append(sys.argv[2])  # tests/ of this checkout; gatewayd as PYTHONPATH says
from gatewayd.config.settings import MailboxSettings
from gatewayd.mailbox import Mailbox
from tests.conftest import fax, sms

async def fill() -> None:
    box = await Mailbox.open(MailboxSettings(data_dir=Path(sys.argv[1])))
    try:
        for n in range(20):
            await box.create(sms(text=f"message {n}"))
            await box.create(fax())
    finally:
        await box.close()

asyncio.run(fill())
"""


def make_mailbox(work: Path, env: dict[str, str]) -> Path:
    """A mailbox of 40 messages in ``work``, made by the code ``env`` runs (each commit
    measured gets one of its own schema), and a config for it."""
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", FILL, str(work / "data"), str(ROOT)], env=env, cwd=work, check=True
    )
    config = work / "gatewayd.toml"
    config.write_text(
        f'[mailbox]\ndata_dir = "{work / "data"}"\n[log]\nfile = ""\nformat = "json"\n'
        f'[smtp]\nlisten = "127.0.0.1:{free_port()}"\n[api]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[fax.spool]\noutbox = "{work / "outbox"}"\nresults = "{work / "results"}"\n'
        f'[[sms.links]]\nname = "bench"\naddress = "127.0.0.1:{free_port()}"\n'
        '[[users]]\nemail = "alice@example.com"\naccount_id = 1\nextension_id = 101\n'
        'extension_number = "101"\nname = "Alice"\n'
    )
    return config


def checkout(ref: str, into: Path) -> Path:
    """The tree of commit ``ref`` in ``into``, with this checkout's built fax coder."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "gatewayd", "config"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    for built in (ROOT / "gatewayd" / "render").glob("_fax.*.so"):
        shutil.copy(built, into / "gatewayd" / "render" / built.name)
    return into


@dataclasses.dataclass
class Code:
    """One version of gatewayd to measure: its environment, work directory, mailbox
    config and shipped config."""

    label: str
    env: dict[str, str]
    work: Path
    config: Path
    shipped: Path

    def commands(self, pdf: Path) -> dict[str, list[str]]:
        return {
            "--help": ["--help"],
            "--version": ["--version"],
            "check-config": ["check-config", "--config", str(self.shipped)],
            "messages list": ["messages", "list", "--config", str(self.config)],
            "status (no daemon)": ["status", "--config", str(self.config)],
            "token list": ["token", "list", "--config", str(self.config)],
            "render (17 pages)": ["render", str(pdf), "-o", str(self.work / "out.tif")],
        }


def interleaved(
    codes: list[Code], names: list[str], argv: Callable[[Code, str], list[str]], runs: int
) -> dict[str, dict[str, float | None]]:
    """Each command's minimum time for each code: the runs of the codes alternate, so
    that a busy moment of a shared machine falls on both, not on one."""
    found: dict[str, dict[str, float | None]] = {code.label: {} for code in codes}
    for name in names:
        for code in codes:
            found[code.label][name] = float("inf")
        for _ in range(runs):
            for code in codes:
                if found[code.label][name] is None:
                    continue
                took = wall([str(GATEWAYD), *argv(code, name)], 1, code.env, code.work)
                best = found[code.label][name]
                found[code.label][name] = None if took is None else min(took, best or took)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", metavar="REF", help="also measure this git commit")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    shipped = ROOT / "config" / "gatewayd.toml"
    env = {**os.environ, "GATEWAYD_CONFIG": str(shipped)}
    env.pop("PYTHONPATH", None)
    with tempfile.TemporaryDirectory(prefix="gatewayd-bench-cli-") as temporary:
        work = Path(temporary)
        pdf = documents.write(work, "manual-17.pdf", lambda: documents.dense_text_pdf(17))
        bare = wall([sys.executable, "-c", "pass"], args.runs, env)
        assert bare is not None
        draw = float(
            subprocess.run(
                [sys.executable, "-c", DRAW, str(pdf), str(work / "draw.tif"), str(args.runs)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        codes = [Code("after", env, work / "after", make_mailbox(work / "after", env), shipped)]
        if args.before:
            tree = checkout(args.before, work / "before")
            old = tree / "config" / "gatewayd.toml"
            before_env = {**env, "PYTHONPATH": str(tree), "GATEWAYD_CONFIG": str(old)}
            there = work / "before-run"
            codes.insert(0, Code("before", before_env, there, make_mailbox(there, before_env), old))
        for code in codes:
            where = subprocess.run(
                [sys.executable, "-c", "import gatewayd; print(gatewayd.__file__)"],
                env=code.env,
                cwd=code.work,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            print(f"{code.label}: gatewayd from {Path(where.strip()).parent}", file=sys.stderr)
        names = list(codes[0].commands(pdf))
        figures = interleaved(codes, names, lambda c, n: c.commands(pdf)[n], args.runs)
        # `status` asking a running daemon: only the code that has the command
        name = "status (a running daemon)"
        for code in codes:
            if figures[code.label]["status (no daemon)"] is None:
                figures[code.label][name] = None
                continue
            with running_daemon(code.env, code.config, code.work):
                argv = [str(GATEWAYD), "status", "--config", str(code.config)]
                figures[code.label][name] = wall(argv, args.runs, code.env, code.work)
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
    figures: dict[str, dict[str, float | None]] = report["figures"]  # type: ignore[assignment]
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
    for name, after in figures["after"].items():
        cells = " | ".join(_seconds(figures[c].get(name)) for c in columns)
        less = _seconds(None if after is None else after - bare)
        lines.append(f"| `gatewayd {name}` | {cells} | {less} |")
    render = figures["after"]["render (17 pages)"]
    assert render is not None
    lines += ["", f"`render` overhead (wall time less drawing): {render - draw:.3f} s."]
    if report["ghostscript_seconds"] is not None:
        lines.append(
            f"Ghostscript's tiffg4 device on the same PDF: "
            f"{float(report['ghostscript_seconds']):.3f} s."
        )  # type: ignore[arg-type]
    return "\n".join(lines) + "\n"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
