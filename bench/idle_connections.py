"""Idle-connection load check: real mail clients while thousands of idle SMTP
connections are held open.

    python bench/idle_connections.py [--idle 2000] [--clients 16] [--seconds 20]

Starts ``gatewayd run`` as its own process with the descriptor limit systemd gives a
service that sets no ``LimitNOFILE`` (soft 1024, hard as this machine allows), a
fresh SQLite mailbox in a temp dir, everything on loopback. Two phases, in the same
run:

1. baseline: CLIENTS clients, each sending a short email-to-SMS mail every
   ``--interval`` seconds on a new connection (connect, banner, EHLO, MAIL, RCPT,
   DATA, QUIT), from 127.0.0.1;
2. under load: first IDLE connections are opened and held (banner read, then
   silence), spread over loopback source addresses 127.0.1.1, 127.0.1.2, ... (at
   most ``--per-address`` each, as many attackers would), then the same clients as in
   phase 1.

Reports for each phase the clients' transaction time (connect to the 250 after
DATA) p50 and p99, the mails accepted and refused (or failed: timeouts, resets), how
many idle connections the daemon greeted, refused (421) or never answered, the
daemon's processor use and RSS, and how many ``accept()`` errors its log holds. The
target: p99 under 100 ms and nothing refused to the real clients under load.

This process raises its own RLIMIT_NOFILE soft limit to the hard limit (it holds the
idle connections). Writes bench/results/idle_connections.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
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
SYSTEMD_SOFT_NOFILE = 1024  # what a unit without LimitNOFILE gets
CONNECT_TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def systemd_like_limits() -> None:
    """In the daemon's child process: the soft descriptor limit of a plain unit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(SYSTEMD_SOFT_NOFILE, hard), hard))


def start_daemon(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    config = workdir / "gatewayd.toml"
    config.write_text(
        f'[mailbox]\ndata_dir = "{workdir / "data"}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{port}"\nrate_per_minute = 0\n'
        f'[api]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[fax.spool]\noutbox = "{workdir / "outbox"}"\nresults = "{workdir / "results"}"\n'
        f'[log]\nlevel = "info"\nformat = "json"\nfile = "{workdir / "gatewayd.log"}"\n'
        '[[users]]\nemail = "alice@example.com"\naccount_id = 1\nextension_id = 101\n'
        'extension_number = "101"\nsms_numbers = ["+4930123456"]\n'
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "gatewayd", "run", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=systemd_like_limits,  # noqa: PLW1509 - this process has one thread
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.recv(100)
            return daemon
        except OSError:
            time.sleep(0.1)
    daemon.kill()
    raise SystemExit("gatewayd did not start")


# -- the idle connections ---------------------------------------------------------------


async def hold_idle(
    port: int, count: int, *, per_address: int, ready: Any, stop: Any, out: Any
) -> None:
    """Open ``count`` connections, read the banner, then stay silent until ``stop``."""
    writers: list[asyncio.StreamWriter] = []
    outcome = {"greeted": 0, "refused": 0, "unanswered": 0, "failed": 0}

    async def one(index: int) -> None:
        host = f"127.0.{1 + index // per_address // 250}.{1 + index // per_address % 250}"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0)),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError):
            outcome["failed"] += 1
            return
        writers.append(writer)
        try:
            banner = await asyncio.wait_for(reader.readline(), CONNECT_TIMEOUT)
        except (OSError, TimeoutError):
            outcome["unanswered"] += 1
            return
        if banner.startswith(b"220"):
            outcome["greeted"] += 1
        elif banner:
            outcome["refused"] += 1
        else:
            outcome["unanswered"] += 1

    for first in range(0, count, 200):
        await asyncio.gather(*(one(i) for i in range(first, min(count, first + 200))))
    ready.set()
    await asyncio.to_thread(stop.wait)
    still_open = sum(1 for w in writers if not w.is_closing())
    for writer in writers:
        writer.close()
    out.put({**outcome, "opened": len(writers), "open_at_end": still_open})


def run_idle(port: int, count: int, **events: Any) -> None:
    raise_nofile()
    asyncio.run(hold_idle(port, count, **events))


# -- the real clients --------------------------------------------------------------------

MAIL = (
    b"From: alice@example.com\r\nTo: +4915112345678@sms.example.com\r\n"
    b"Subject: reminder\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    b"Your appointment %d tomorrow at 9:30 is confirmed.\r\n.\r\n"
)


async def reply(reader: asyncio.StreamReader) -> bytes:
    line = await reader.readline()
    while line[3:4] == b"-":
        line = await reader.readline()
    return line


async def transaction(port: int, serial: int) -> tuple[float, bytes | None]:
    """One mail on a new connection: (seconds, None) or (seconds, what went wrong)."""
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError) as exc:
        return time.perf_counter() - started, f"connect: {exc!r}".encode()
    try:
        banner = await asyncio.wait_for(reply(reader), CONNECT_TIMEOUT)
        if not banner.startswith(b"220"):
            return time.perf_counter() - started, b"banner: " + banner
        writer.write(
            b"EHLO client.example\r\nMAIL FROM:<alice@example.com>\r\n"
            b"RCPT TO:<+4915112345678@sms.example.com>\r\nDATA\r\n"
        )
        answers = [await asyncio.wait_for(reply(reader), CONNECT_TIMEOUT) for _ in range(4)]
        if not answers[3].startswith(b"354"):
            return time.perf_counter() - started, b" | ".join(answers)
        writer.write(MAIL % serial)
        final = await asyncio.wait_for(reply(reader), CONNECT_TIMEOUT)
        elapsed = time.perf_counter() - started
        writer.write(b"QUIT\r\n")
        return elapsed, None if final.startswith(b"250") else final
    except (OSError, TimeoutError) as exc:
        return time.perf_counter() - started, f"during the session: {exc!r}".encode()
    finally:
        writer.close()


async def clients(port: int, count: int, seconds: float, interval: float) -> dict[str, Any]:
    times: list[float] = []
    problems: list[bytes] = []
    until = time.monotonic() + seconds

    async def client(number: int) -> None:
        serial = number * 1_000_000
        await asyncio.sleep(interval * number / count)  # spread over the interval
        while time.monotonic() < until:
            serial += 1
            due = time.monotonic() + interval
            elapsed, problem = await transaction(port, serial)
            if problem is None:
                times.append(elapsed)
            else:
                problems.append(problem)
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    await asyncio.gather(*(client(n) for n in range(count)))
    times.sort()

    def pick(fraction: float) -> float | None:
        if not times:
            return None
        return round(times[min(len(times) - 1, int(fraction * len(times)))] * 1000, 1)

    return {
        "accepted": len(times),
        "refused_or_failed": len(problems),
        "first_problem": problems[0].decode(errors="replace").strip() if problems else None,
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "max_ms": pick(1.0),
    }


def run_clients(port: int, count: int, seconds: float, interval: float, out: Any) -> None:
    raise_nofile()
    out.put(asyncio.run(clients(port, count, seconds, interval)))


# -- the daemon, seen from outside -----------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def log_counts(path: Path) -> dict[str, int]:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return {"log_bytes": 0, "accept_error_lines": 0}
    return {
        "log_bytes": len(text.encode()),
        "accept_error_lines": text.count("out of system resource"),
    }


def phase(
    port: int, daemon: subprocess.Popen[bytes], args: argparse.Namespace, *, idle: int
) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    ready, stop, idle_out = context.Event(), context.Event(), context.Queue()
    holder = None
    if idle:
        holder = context.Process(
            target=run_idle,
            args=(port, idle),
            kwargs={"per_address": args.per_address, "ready": ready, "stop": stop, "out": idle_out},
        )
        holder.start()
        if not ready.wait(timeout=600):
            raise SystemExit("the idle connections were not opened in 10 minutes")
    cpu_before, started = cpu_seconds(daemon.pid), time.monotonic()
    out = context.Queue()
    worker = context.Process(
        target=run_clients, args=(port, args.clients, args.seconds, args.interval, out)
    )
    worker.start()
    result: dict[str, Any] = out.get(timeout=args.seconds + 600)
    worker.join()
    elapsed = time.monotonic() - started
    result["daemon_cpu_percent"] = round(100 * (cpu_seconds(daemon.pid) - cpu_before) / elapsed)
    result["daemon_rss_mb"] = rss_mb(daemon.pid)
    if holder is not None:
        stop.set()
        result["idle"] = idle_out.get(timeout=60)
        holder.join()
    return {"idle_connections": idle, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--per-address", type=int, default=20)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--label", default="", help="a name for this run in the report")
    args = parser.parse_args()
    nofile = raise_nofile()
    if nofile < args.idle + 200:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {nofile} is too low for {args.idle} sockets")
    workdir = Path(tempfile.mkdtemp(prefix="gatewayd-idle-bench-"))
    port = free_port()
    daemon = start_daemon(workdir, port)
    try:
        asyncio.run(clients(port, args.clients, 3.0, args.interval))  # warm-up, not counted
        phases = [phase(port, daemon, args, idle=0), phase(port, daemon, args, idle=args.idle)]
        phases[-1].update(log_counts(workdir / "gatewayd.log"))
        alive = daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "label": args.label,
        "cpus": os.cpu_count(),
        "daemon_nofile_soft_at_start": SYSTEMD_SOFT_NOFILE,
        "daemon_alive_at_end": alive,
        "clients": args.clients,
        "interval_s": args.interval,
        "seconds": args.seconds,
        "phases": phases,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "idle_connections" + (f"-{args.label}" if args.label else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Idle-connection load check ({report['date']}, commit {commit} {args.label})",
        "",
        f"{args.clients} clients, one short mail each every {args.interval:g} s on a new "
        f"connection, {args.seconds:g} s; gatewayd started with soft RLIMIT_NOFILE "
        f"{SYSTEMD_SOFT_NOFILE}; loopback; {os.cpu_count()} processors.",
        "",
        "| idle connections | greeted / refused / unanswered / failed | p50 ms | p99 ms | "
        "max ms | accepted | refused or failed | daemon CPU % | daemon RSS MB |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in phases:
        idle = p.get("idle")
        held = (
            f"{idle['greeted']} / {idle['refused']} / {idle['unanswered']} / {idle['failed']}"
            if idle
            else "-"
        )
        lines.append(
            f"| {p['idle_connections']} | {held} | {p['p50_ms']} | {p['p99_ms']} | "
            f"{p['max_ms']} | {p['accepted']} | {p['refused_or_failed']} | "
            f"{p['daemon_cpu_percent']} | {p['daemon_rss_mb']} |"
        )
    last = phases[-1]
    lines += [
        "",
        f"Log under load: {last['log_bytes']:,} bytes, {last['accept_error_lines']:,} "
        f"accept() error lines. First problem of a real client: {last['first_problem']}. "
        f"Daemon alive at the end: {alive}.",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
