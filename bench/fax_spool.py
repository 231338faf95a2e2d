"""Email-to-fax latency: from the SMTP 250 to the fax's TIFF and job file in the spool
outbox, for a 10-page PDF.

    python bench/fax_spool.py [--faxes 10] [--pages 10]

Starts ``gatewayd run`` as its own process on the shipped config (a fresh SQLite
mailbox, the spool carrier, loopback only), sends FAXES mails one after another, each
with a dense 10-page text PDF (embedded TrueType fonts, as office programs write
them), and times each from the 250 after DATA to the moment ``<id>-1.json`` appears in
the outbox (the dispatcher has leased, rendered, stored the TIFF and handed it over).
For scale, the same PDF is also rendered by Ghostscript as HylaFAX's ps2fax/pdf2fax
do it (tiffg4, 204x196), timed alone. Writes bench/results/fax_spool.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import documents  # noqa: E402
from tests.shipped_config import shipped_config  # noqa: E402
from tests.smtp_client import free_port, message, send  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def ghostscript_seconds(pdf: Path, out: Path) -> float | None:
    gs = shutil.which("gs")
    if gs is None:
        return None
    started = time.perf_counter()
    subprocess.run(
        [gs, "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=tiffg4", "-r204x196",
         "-sPAPERSIZE=a4", f"-sOutputFile={out}", str(pdf)],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faxes", type=int, default=10)
    parser.add_argument("--pages", type=int, default=10)
    args = parser.parse_args()
    pdf = documents.dense_text_pdf(args.pages)
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="gatewayd-bench-fax-") as scratch:
        work = Path(scratch)
        port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        config = shipped_config(work, smtp_port=port, level="warning")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gatewayd", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    send(port, "alice@example.com", ["+4940123456@fax.example.com"],
                         message(to="+4940123456@fax.example.com", body="warm-up"))  # fmt: skip
                    break
                except OSError:
                    time.sleep(0.1)
            for _ in range(args.faxes):
                mail = message(to="+4940123456@fax.example.com", subject="Contract", body="",
                               attachments=[(pdf, "application/pdf", "contract.pdf")])  # fmt: skip
                reply = send(port, "alice@example.com", ["+4940123456@fax.example.com"], mail)
                accepted = time.perf_counter()
                assert reply.code == 250, reply
                job = work / "outbox" / f"{reply.text.split()[-1]}-1.json"
                while not job.exists():
                    if time.perf_counter() - accepted > 120:
                        raise SystemExit(f"no {job.name} after 120 s")
                    time.sleep(0.002)
                latencies.append(time.perf_counter() - accepted)
                pages = json.loads(job.read_text())["pages"]
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.communicate(timeout=60)
        (work / "in.pdf").write_bytes(pdf)
        gs = [ghostscript_seconds(work / "in.pdf", work / "gs.tif") for _ in range(3)]
    gs_median = statistics.median(g for g in gs if g is not None) if all(gs) else None
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "faxes": args.faxes,
        "pdf_pages": args.pages,
        "fax_pages": pages,
        "latency_s": {
            "median": round(statistics.median(latencies), 3),
            "min": round(min(latencies), 3),
            "max": round(max(latencies), 3),
        },
        "ghostscript_render_s_median": round(gs_median, 3) if gs_median else None,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fax_spool.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# Email-to-fax latency ({result['when']})", "",
        f"{args.faxes} mails one after another, each a {args.pages}-page dense text PDF "
        f"({pages} fax pages with the cover), through `gatewayd run` on the shipped config "
        "(spool carrier).", "",
        "| figure | seconds |", "| --- | ---: |",
        f"| 250 to job in the outbox, median | {result['latency_s']['median']} |",
        f"| min / max | {result['latency_s']['min']} / {result['latency_s']['max']} |",
        f"| Ghostscript alone renders the PDF (tiffg4, median of 3) | "
        f"{result['ghostscript_render_s_median']} |",
    ]  # fmt: skip
    (RESULTS / "fax_spool.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
