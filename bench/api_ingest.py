"""API ingest benchmark: how many ``POST …/sms`` the API accepts durably, and how fast.

    python bench/api_ingest.py [--messages 20000] [--clients 32] [--runs 3]
        [--sqlite-synchronous full|normal] [--log-level info|warning]

Starts ``gatewayd run`` on config/gatewayd.toml as shipped (through
tests/shipped_config.py; then API rate limits off, no mailbox size limit, logs at
LOG_LEVEL, SQLite synchronous as shipped unless told) with its SMPP link pointed at a
port nobody listens on, so the SMS stay Queued and only the door works. In another
process, CLIENTS keep-alive HTTP/1.1 clients (bench/sms_load.py) send MESSAGES
single-part SMS, each client taking the next message when its answer is in.

Reports per run: accepted per second (first request to last answer), p50 and p99 of
the answer time, processor time per message of gatewayd (every process of it, and its
main thread: the event loop that serves the API) and of the clients. Checks that every
request was answered 200 and that the mailbox (opened read-only after the run) holds
exactly that many Queued SMS, each with its creation event. Medians over the runs.
Writes bench/results/api_ingest.{json,md}. Every address is on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sms_load  # noqa: E402  (bench/sms_load.py)
from sms_processes import Load, Meter, load_now, say  # noqa: E402
from sms_vs_kannel import TOKEN, Daemon, gatewayd_config, mailbox_read, workdir  # noqa: E402

from tests.smtp_client import free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.messages
    with workdir("bench-api-ingest-") as work:
        api_port = free_port()
        nobody = free_port()  # the SMPP link's address: nothing listens there
        config = gatewayd_config(work, free_port(), api_port, nobody, args)
        text = config.read_text().replace('level = "warning"', f'level = "{args.log_level}"', 1)
        config.write_text(text)
        daemon = Daemon(config, api_port)
        try:
            clients = Load(
                sms_load.http_clients,
                sms_load.HttpLoad(
                    kind="api", port=api_port, messages=n, clients=args.clients, token=TOKEN
                ),
            )
            meter = Meter({"gatewayd": daemon.process.pid}, loop_of=daemon.process.pid)
            time.sleep(1.0)  # let the start-up settle before the counters are read
            meter.start()
            clients.go.set()
            sent = clients.result(args.timeout)
            meter.stop()
            meter.add("clients", sent["cpu_s"])
        finally:
            code = daemon.stop()
        database = work / "data" / "mailbox.sqlite3"
        stored = mailbox_read(
            database,
            "SELECT count(*) FROM messages WHERE type = 'SMS' AND message_status = 'Queued'",
        )[0][0]
        created = mailbox_read(
            database, "SELECT count(*) FROM message_events WHERE reason = 'created'"
        )[0][0]
    seconds = sent["last_answer"] - sent["first_request"]
    ok = sent["accepted"] == n and not sent["failures"] and stored == n and created == n
    return {
        "accepted": sent["accepted"],
        "failures": sent["failures"],
        "first_failure": sent["first_failure"],
        "seconds": round(seconds, 3),
        "per_second": round(sent["accepted"] / seconds, 1) if seconds > 0 else None,
        "p50_ms": sent["p50_ms"],
        "p99_ms": sent["p99_ms"],
        "cpu_ms_per_message": meter.per_message_ms(n),
        "stored_queued": stored,
        "creation_events": created,
        "exit_code": code,
        "ok": ok and code == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument(
        "--sqlite-synchronous", choices=("full", "normal"), default="full", help="shipped: full"
    )
    parser.add_argument("--log-level", choices=("info", "warning"), default="info")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    args = parser.parse_args()
    runs = []
    for number in range(1, args.runs + 1):
        load = load_now()
        say(f"run {number}/{args.runs} ({load['uptime']})")
        result = {**one_run(args), "load": load}
        say(
            f"  {result['per_second']} accepted/s, p50 {result['p50_ms']} ms, "
            f"p99 {result['p99_ms']} ms, CPU ms/msg {result['cpu_ms_per_message']}, "
            f"ok={result['ok']}"
        )
        runs.append(result)
        time.sleep(2)

    def median(key: str) -> float | None:
        values = [r[key] for r in runs if r[key] is not None]
        return round(statistics.median(values), 2) if values else None

    cpu_keys = sorted({k for r in runs for k in r["cpu_ms_per_message"]})
    summary = {
        "per_second": median("per_second"),
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "cpu_ms_per_message": {
            k: round(statistics.median(r["cpu_ms_per_message"].get(k, 0) for r in runs), 3)
            for k in cpu_keys
        },
        "all_ok": all(r["ok"] for r in runs),
    }
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "settings": {
            "messages": args.messages,
            "clients": args.clients,
            "sqlite_synchronous": args.sqlite_synchronous,
            "log_level": args.log_level,
        },
        "summary": summary,
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "api_ingest.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# API ingest benchmark ({report['when']})",
        "",
        f"{args.messages:,} `POST …/sms` per run from {args.clients} keep-alive clients in "
        f"one process, gatewayd in another, loopback; SQLite synchronous="
        f"{args.sqlite_synchronous}, logs at {args.log_level}; {args.runs} runs, medians.",
        "",
        "| accepted/s | p50 ms | p99 ms | "
        + " | ".join(f"CPU ms/msg {k}" for k in cpu_keys)
        + " | all checks |",
        "| ---: | ---: | ---: | " + " | ".join("---:" for _ in cpu_keys) + " | --- |",
        f"| {summary['per_second']} | {summary['p50_ms']} | {summary['p99_ms']} | "
        + " | ".join(str(summary["cpu_ms_per_message"][k]) for k in cpu_keys)
        + f" | {'yes' if summary['all_ok'] else 'NO'} |",
        "",
        "| # | accepted/s | p50 ms | p99 ms | load 1/5/15 | ok |",
        "| ---: | ---: | ---: | ---: | --- | --- |",
        *[
            f"| {i} | {r['per_second']} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{' '.join(str(x) for x in r['load']['loadavg'])} | {r['ok']} |"
            for i, r in enumerate(runs, 1)
        ],
    ]
    (RESULTS / "api_ingest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
