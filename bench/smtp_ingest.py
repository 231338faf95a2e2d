"""SMTP ingest benchmark: how many mails the door accepts, and how fast it answers.

    python bench/smtp_ingest.py [--seconds 30] [--clients 32] [--kinds sms,fax]

Starts ``gatewayd run`` as its own process (a fresh SQLite mailbox in a temp dir,
loopback only) and, in another process, CLIENTS SMTP clients that each send mail after
mail over one connection, pipelining MAIL, RCPT and DATA as an MTA does. Two phases:
email-to-SMS (a short text) and email-to-fax (a 1 MB PDF). Reports accepted mails per
second and the acceptance latency (from MAIL to the 250 after DATA), p50 and p99, and
gatewayd's processor time per accepted mail (all of its processes), with the load
average at the start. Writes bench/results/smtp_ingest.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its children (gatewayd and its SMS process)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_megabyte_pdf() -> bytes:
    """A one-page PDF holding a ~1 MB noisy JPEG, like a scanned page."""
    import pypdfium2 as pdfium
    from PIL import Image

    rng = random.Random(3)
    noise = Image.frombytes("L", (1150, 1150), rng.randbytes(1150 * 1150))
    jpeg = io.BytesIO()
    noise.save(jpeg, "JPEG", quality=90)
    document = pdfium.PdfDocument.new()
    page = document.new_page(595, 842)
    image = pdfium.PdfImage.new(document)
    image.load_jpeg(io.BytesIO(jpeg.getvalue()), inline=True)
    image.set_matrix(pdfium.PdfMatrix().scale(595, 842))
    page.insert_obj(image)
    page.gen_content()
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def mail(kind: str, pdf: bytes, serial: int) -> tuple[bytes, bytes]:
    """(RCPT address, DATA with CRLF line ends); every SMS text differs, as in life."""
    if kind == "sms":
        rcpt = b"+4915112345678@sms.example.com"
        body = (
            b"From: alice@example.com\r\nTo: +4915112345678@sms.example.com\r\n"
            b"Subject: reminder\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            b"Your appointment %d tomorrow at 9:30 is confirmed.\r\n" % serial
        )
    else:
        rcpt = b"+4940123456@fax.example.com"
        encoded = base64.encodebytes(pdf).replace(b"\n", b"\r\n")
        body = (
            b"From: alice@example.com\r\nTo: +4940123456@fax.example.com\r\n"
            b"Subject: contract\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            b"--b1\r\nContent-Type: text/plain\r\n\r\nPlease sign.\r\n"
            b'--b1\r\nContent-Type: application/pdf; name="scan.pdf"\r\n'
            b'Content-Disposition: attachment; filename="scan.pdf"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--b1--\r\n"
        )
    return rcpt, body + b".\r\n"


async def reply(reader: asyncio.StreamReader) -> bytes:
    line = await reader.readline()
    while line[3:4] == b"-":
        line = await reader.readline()
    return line


async def client(
    port: int, kind: str, pdf: bytes, *, until: float, latencies: list[float], refused: list[bytes]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reply(reader)
    writer.write(b"EHLO bench.example\r\n")
    await reply(reader)
    serial = 0
    while time.monotonic() < until:
        serial += 1
        rcpt, data = mail(kind, pdf, id(writer) * 1_000_000 + serial)
        envelope = b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<" + rcpt + b">\r\nDATA\r\n"
        started = time.perf_counter()
        writer.write(envelope)
        answers = [await reply(reader) for _ in range(3)]
        if not answers[2].startswith(b"354"):
            refused.append(b" | ".join(answers))
            writer.write(b"RSET\r\n")
            await reply(reader)
            continue
        writer.write(data)
        final = await reply(reader)
        if final.startswith(b"250"):
            latencies.append(time.perf_counter() - started)
        else:
            refused.append(final)
    writer.write(b"QUIT\r\n")
    await reply(reader)
    writer.close()


def run_clients(port: int, kind: str, clients: int, seconds: float, out: Any) -> None:
    pdf = one_megabyte_pdf() if kind == "fax" else b""

    async def main() -> dict[str, Any]:
        latencies: list[float] = []
        refused: list[bytes] = []
        until = time.monotonic() + seconds
        started = time.monotonic()
        await asyncio.gather(
            *(
                client(port, kind, pdf, until=until, latencies=latencies, refused=refused)
                for _ in range(clients)
            )
        )
        elapsed = time.monotonic() - started
        latencies.sort()

        def pick(fraction: float) -> float:
            return round(
                latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1000, 2
            )

        return {
            "kind": kind,
            "clients": clients,
            "seconds": round(elapsed, 1),
            "accepted": len(latencies),
            "per_second": round(len(latencies) / elapsed, 1),
            "p50_ms": pick(0.50),
            "p99_ms": pick(0.99),
            "refused": len(refused),
            "first_refusal": refused[0].decode(errors="replace") if refused else None,
            "pdf_bytes": len(pdf) or None,
        }

    out.put(asyncio.run(main()))


def start_daemon(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    config = workdir / "gatewayd.toml"
    config.write_text(
        f'[mailbox]\ndata_dir = "{workdir / "data"}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{port}"\nrate_per_minute = 0\n'
        f'[api]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[fax.spool]\noutbox = "{workdir / "outbox"}"\nresults = "{workdir / "results"}"\n'
        f'[log]\nlevel = "info"\nformat = "json"\nfile = ""\n'
        '[[users]]\nemail = "alice@example.com"\naccount_id = 1\nextension_id = 101\n'
        'extension_number = "101"\nsms_numbers = ["+4930123456"]\n'
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "gatewayd", "run", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return daemon
        except OSError:
            time.sleep(0.1)
    daemon.kill()
    raise SystemExit("gatewayd did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--kinds", default="sms,fax", help="phases to run, in order")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gatewayd-smtp-bench-"))
    results = []
    try:
        for kind in [k for k in args.kinds.split(",") if k]:
            port = free_port()
            (workdir / kind).mkdir()
            daemon = start_daemon(workdir / kind, port)
            try:
                time.sleep(1.0)  # let the start-up settle before the counters are read
                load = [round(x, 2) for x in os.getloadavg()]
                before = cpu_seconds(daemon.pid)
                queue: Any = multiprocessing.Queue()
                worker = multiprocessing.Process(
                    target=run_clients, args=(port, kind, args.clients, args.seconds, queue)
                )
                worker.start()
                result = queue.get(timeout=args.seconds + 600)
                worker.join()
                spent = cpu_seconds(daemon.pid) - before
                result["gatewayd_cpu_ms_per_mail"] = (
                    round(spent * 1000 / result["accepted"], 3) if result["accepted"] else None
                )
                result["load"] = load
                results.append(result)
                print(json.dumps(result), file=sys.stderr)
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "smtp_ingest.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# SMTP ingest benchmark ({report['date']})",
        "",
        f"{args.clients} pipelining clients in one process, gatewayd in another, loopback, "
        f"{args.seconds:g} s per phase, SQLite mailbox.",
        "",
        "| mail | accepted/s | p50 ms | p99 ms | gatewayd CPU ms/mail | accepted | refused "
        "| load 1/5/15 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *[
            f"| {r['kind']}{' (1 MB PDF)' if r['kind'] == 'fax' else ' (short text)'} | "
            f"{r['per_second']} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['gatewayd_cpu_ms_per_mail']} | {r['accepted']} | {r['refused']} | "
            f"{' '.join(str(x) for x in r['load'])} |"
            for r in results
        ],
    ]
    (RESULTS / "smtp_ingest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
