"""Message-store API latency: list requests against a 1M-message mailbox.

    python bench/api.py [--messages 1000000] [--rate 50] [--seconds 30] [--keep DIR]
        [--arrivals steady|poisson]

Builds the mailbox of bench/mailbox.py (N messages over 100 extensions and 30 days;
reused from --keep DIR when it is there), starts ``gatewayd run`` on it as its own
process (rate limits off, logs at warning, loopback only) with one API token per
extension, its dispatchers and sweeper idle (the mailbox's Queued messages are made
not due, Deleted ones are kept), and sends GET message-store requests at a steady RATE
a second for SECONDS, from four paced client processes (http.client) over keep-alive
connections, each request for a random extension and one of the typical lists: the
last week (100 a page), SMS only, unread inbound, page 3. Each client first sends one unrecorded
request of each list (statements compiled, connection open), then the four start
together. Arrivals: ``steady`` (the default), the four clients' schedules interleaved
so that a request is due every 1/RATE s; or ``poisson``, each client's gaps drawn at
random (exponential, its mean 4/RATE), so that requests also come together now and
then, as from independent users. Latency is from the request's scheduled time to the
last byte of the answer (a late answer delays the next request: that delay is
counted). Reports p50 and p99 per list and overall (the target is p99 under 15 ms),
and of the latency how late the client sent and the rest, send to answer.
Writes bench/results/api.{json,md}.

Until 2026-12-01 each client's schedule began at a random point of its interval drawn
from its seed (0 to 3): clients 0 and 1 drew points 0.3 ms apart, so on every tick
their two requests came together and one waited for the other, in every run; the
rate was not the steady one described here.

Until 2026-11-30 the clients were four threads of one process with httpx: they shared
one GIL, so a thread reading an 80 kB answer held up another's for up to the 5 ms
switch interval, which the latency then counted; and the daemon meanwhile dispatched
the mailbox's 50,000 Queued messages (rendering and failing its faxes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import mailbox as mailbox_bench  # noqa: E402  (bench/mailbox.py)

from gatewayd.clock import ManualClock  # noqa: E402
from gatewayd.config.settings import MailboxSettings  # noqa: E402
from gatewayd.credentials import hash_token  # noqa: E402
from gatewayd.mailbox import Mailbox  # noqa: E402
from gatewayd.mailbox._schema import to_micros  # noqa: E402

EXTENSIONS = 100
WEEK_TO = mailbox_bench.NOW
WEEK_FROM = WEEK_TO - timedelta(days=7)
PATH = "/restapi/v1.0/account/~/extension/~/message-store"
NOT_DUE = datetime(2100, 1, 1, tzinfo=UTC)
LISTS: dict[str, dict[str, Any]] = {
    "last week, 100 a page": {},
    "SMS only": {"messageType": "SMS"},
    "unread inbound": {"readStatus": "Unread", "direction": "Inbound"},
    "page 3": {"page": 3},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token(extension: int) -> str:
    return f"bench-token-{extension}"


async def build(workdir: Path, messages: int) -> None:
    if not (workdir / "mailbox.sqlite3").exists():
        print(f"populating {messages:,} messages in {workdir}", file=sys.stderr)
        box = await Mailbox.open(
            MailboxSettings(data_dir=workdir, max_messages=0),
            clock=ManualClock(mailbox_bench.NOW),
        )
        try:
            await mailbox_bench.populate(box, messages, EXTENSIONS)
        finally:
            await box.close()
    # The bench mailbox's Queued messages are not due while we measure (population only):
    # the daemon's dispatchers would otherwise render and fail its faxes meanwhile.
    with contextlib.closing(sqlite3.connect(workdir / "mailbox.sqlite3")) as db, db:
        db.execute(
            "UPDATE messages SET next_attempt_at = ? WHERE message_status = 'Queued'",
            (to_micros(NOT_DUE),),
        )


def config(workdir: Path, port: int) -> Path:
    users = "".join(
        f'[[users]]\nemail = "user{e}@example.com"\naccount_id = 1\nextension_id = {e}\n'
        f'extension_number = "{e}"\napi_token_hash = "{hash_token(token(e))}"\n'
        for e in range(1000, 1000 + EXTENSIONS)
    )
    path = workdir / "gatewayd.toml"
    path.write_text(
        f'[mailbox]\ndata_dir = "{workdir}"\nmax_messages = 0\nretention_deleted_days = 3650\n'
        f'[smtp]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[api]\nlisten = "127.0.0.1:{port}"\nrate_limits = false\n'
        f'[fax.spool]\noutbox = "{workdir / "out"}"\nresults = "{workdir / "res"}"\n'
        f'[log]\nlevel = "warning"\nformat = "json"\nfile = ""\n{users}'
    )
    return path


def client(
    port: int,
    rate: float,
    seconds: float,
    seed: int,
    *,
    phase: float,
    poisson: bool,
    ready: Any,
    results: Any,
) -> None:
    """One paced client, a process of its own: threads would share one GIL, and a
    thread reading an answer would hold up another's for up to the 5 ms switch
    interval. After one unrecorded request of each list (statements compiled,
    connection open) it waits for the other clients (``ready``, a barrier), then sends
    at ``start + phase / rate + i / rate`` on ``time.monotonic`` (one clock for every
    process), or with ``poisson`` at gaps drawn with a mean of 1 / rate; a late answer
    delays the next request, and that delay is counted. Puts its samples and errors on
    ``results``."""
    rng = random.Random(seed)
    http = HTTPConnection("127.0.0.1", port, timeout=30)
    http.connect()
    http.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out: list[tuple[str, float, float]] = []  # list, latency ms, of it late at send ms
    errors: list[str] = []

    def get(name: str) -> tuple[int, bytes]:
        extension = 1000 + rng.randrange(EXTENSIONS)
        window = {"dateFrom": WEEK_FROM.isoformat(), "dateTo": WEEK_TO.isoformat()}
        query = urlencode({**window, **LISTS[name]})
        headers = {"Authorization": f"Bearer {token(extension)}"}
        http.request("GET", f"{PATH}?{query}", headers=headers)
        answer = http.getresponse()
        return answer.status, answer.read()

    for name in LISTS:
        get(name)
    ready.wait()
    interval = 1 / rate
    due = time.monotonic() + 0.5 + phase * interval
    for _ in range(int(seconds * rate)):
        due += rng.expovariate(rate) if poisson else interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        name = rng.choice(list(LISTS))
        sent = time.monotonic()
        status, body = get(name)
        out.append((name, (time.monotonic() - due) * 1000, (sent - due) * 1000))
        if status != 200 or not json.loads(body)["records"]:
            errors.append(f"{status} {body[:200]!r}")
    http.close()
    results.put((out, errors))


def cpu_seconds(pid: int) -> float:
    """User and system time of a process and its threads so far (/proc, Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=50.0, help="requests a second in all")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--keep", type=Path, help="build in (and keep) this directory")
    parser.add_argument("--arrivals", choices=("steady", "poisson"), default="steady")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="gatewayd-bench-api-"))
    workdir.mkdir(parents=True, exist_ok=True)
    asyncio.run(build(workdir, args.messages))
    port = free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "gatewayd", "run", "--config", str(config(workdir, port))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    samples: list[tuple[str, float, float]] = []
    errors: list[str] = []
    cpu = 0.0
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise SystemExit("the daemon did not start") from None
                time.sleep(0.2)
        workers = 4
        spawn = multiprocessing.get_context("spawn")
        ready, results = spawn.Barrier(workers + 1), spawn.Queue()
        clients = [
            spawn.Process(
                target=client,
                args=(port, args.rate / workers, args.seconds, n),
                kwargs={
                    "phase": n / workers,  # interleaved: one due every 1/RATE s in all
                    "poisson": args.arrivals == "poisson",
                    "ready": ready,
                    "results": results,
                },
            )
            for n in range(workers)
        ]
        for process in clients:
            process.start()
        ready.wait(timeout=300)  # every client warmed up: the measured run begins
        cpu_before = cpu_seconds(daemon.pid)
        for _ in clients:
            got, failed = results.get(timeout=args.seconds + 300)
            samples += got
            errors += failed
        cpu = cpu_seconds(daemon.pid) - cpu_before
        for process in clients:
            process.join()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    by_list = {name: [ms for n, ms, _ in samples if n == name] for name in LISTS}
    everything = [ms for _, ms, _ in samples]
    # Of the latency, how late the client sent (its sleep overslept, or the answer
    # before was late) and the rest (send to the answer's last byte): a tail in the
    # first is the client's or the machine's scheduling, not the daemon's.
    late = [ms for _, _, ms in samples]
    answered = [total - ms for _, total, ms in samples]
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "messages": args.messages,
        "rate_per_s": args.rate,
        "arrivals": args.arrivals,
        "seconds": args.seconds,
        "requests": len(samples),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "lists": {
            name: {
                "p50_ms": round(statistics.median(v), 2),
                "p99_ms": round(percentile(v, 99), 2),
                "requests": len(v),
            }
            for name, v in by_list.items()
            if v
        },
        "all": {
            "p50_ms": round(statistics.median(everything), 2),
            "p99_ms": round(percentile(everything, 99), 2),
        },
        "late_at_send": {
            "p50_ms": round(statistics.median(late), 2),
            "p99_ms": round(percentile(late, 99), 2),
        },
        "send_to_answer": {
            "p50_ms": round(statistics.median(answered), 2),
            "p99_ms": round(percentile(answered, 99), 2),
        },
        "daemon_cpu_ms_per_request": round(cpu * 1000 / len(samples), 2),
        "load_average": os.getloadavg()[0],
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "api.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# API list latency ({report['when']})",
        "",
        f"{args.messages:,} messages, GET message-store at {args.rate:g} requests/s "
        f"({args.arrivals} arrivals) for {args.seconds:g} s over HTTP to `gatewayd run` "
        f"(SQLite); {len(samples)} requests, {len(errors)} errors.",
        "",
        "| list | p50 ms | p99 ms | requests |",
        "| --- | ---: | ---: | ---: |",
        *[
            f"| {n} | {v['p50_ms']} | {v['p99_ms']} | {v['requests']} |"
            for n, v in report["lists"].items()
        ],
        f"| all | {report['all']['p50_ms']} | {report['all']['p99_ms']} | {len(samples)} |",
        f"| of it: late at send | {report['late_at_send']['p50_ms']} | "
        f"{report['late_at_send']['p99_ms']} | |",
        f"| of it: send to answer | {report['send_to_answer']['p50_ms']} | "
        f"{report['send_to_answer']['p99_ms']} | |",
        "",
        "Late at send: how late a client sent after its scheduled time (its sleep "
        "overslept, or the answer before came late); send to answer: the rest. A tail "
        "in the first alone is the clients' or the machine's scheduling.",
        "",
        f"The daemon's CPU time: {report['daemon_cpu_ms_per_request']} ms a request (all its "
        f"threads, while measured). Load average at the end: {report['load_average']:.2f}.",
    ]
    (out / "api.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
