"""Side by side on one SMSC peer: Kannel 1.4.5 and gatewayd, N single-part SMS each.

    python bench/sms_vs_kannel.py [--runs 3] [--messages 20000] [--clients 32]
        [--smtp-clients N] [--window 64] [--receipt-delay 0.3]
        [--sqlite-synchronous full|normal] [--only kannel,api,smtp,queue] [--kill]
        [--timeout 900]

Needs Kannel (bearerbox and smsbox; Debian: ``apt-get install kannel``; without them it
prints one line saying so and exits 0) and node with npm (the SMSC peer; its package
``smpp`` is installed into bench/smsc_peer/node_modules from package-lock.json on the
first run).

It starts ONE SMSC peer, bench/smsc_peer/peer.js (node-smpp, not gatewayd's simulator):
submit_sm answered at once, a delivery receipt (deliver_sm, esm_class 0x04, the standard
text and the receipted_message_id/message_state TLVs) RECEIPT_DELAY later; it counts
submits per destination and timestamps each. Then, in turn (RUNS rounds, each
round every system once, in this order), each on fresh state:

- kannel: bearerbox + smsbox on a generated config (SMPP transceiver to the peer,
  max-pending-submits = WINDOW, file store, internal DLR storage, logs at warning);
  CLIENTS keep-alive HTTP clients send ``GET /cgi-bin/sendsms`` with dlr-mask 31 and a
  dlr-url to a sink of ours. Done when every message's final DLR callback has arrived.
- api: ``gatewayd run`` on config/gatewayd.toml with keys rewritten (a temp data dir,
  SQLite synchronous=full as shipped unless --sqlite-synchronous says otherwise, one SMPP
  link to the peer with window WINDOW and no tps cap, API and SMTP rate limits off, no
  mailbox size limit, logs at warning); CLIENTS keep-alive clients send ``POST .../sms``
  with a bearer token.
- smtp: the same daemon; SMTP_CLIENTS smtplib clients, one mail per transaction.
- queue: the same daemon, its mailbox filled with N Queued SMS through gatewayd's
  Mailbox API before it starts: the SMS service alone.
  For gatewayd, done when the peer has every receipt acknowledged (gatewayd answers a
  deliver_sm after its commit) and the mailbox (read-only SQLite) shows all Delivered.

Each run reports: wall time from the first request (queue: the first submit_sm) to done;
the ingest time (first request to last answer) where there is one; submit_sm/s between
the 10th and 90th percentile of the peer's submit times; CPU ms per message of every
process (/proc/PID/stat utime+stime, the process with its children, read just before
the first request (gatewayd: before its bind is answered) and at done: bearerbox,
smsbox, gatewayd and its event-loop thread, the peer, the clients, the DLR sink); how
long the gateway's threads were runnable but waiting for a core (/proc schedstat: the
machine is shared); the load average at the start. Checks: every
destination submitted exactly once, every receipt acknowledged, every message
Delivered (the mailbox, or a final DLR of type 1). Medians per system over the runs,
and gatewayd against Kannel (speed = Kannel's median wall time / gatewayd's).

``--kill``: after the runs, one more queue run in which gatewayd is killed (SIGKILL)
once the peer has half of the submits, then started again on the same mailbox. The
peer's count per destination shows the duplicates; each must be a message the restarted
daemon marked "in flight when the gateway stopped unexpectedly ...". ``--runs 0 --kill``
runs only that.

Writes bench/results/sms_vs_kannel.{json,md}. Every address is on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
import sms_load  # noqa: E402  (bench/sms_load.py)
from sms_processes import (  # noqa: E402  (bench/sms_processes.py)
    Load,
    Meter,
    Peer,
    Sink,
    ensure_peer_installed,
    listening,
    load_now,
    say,
    stop_process,
    wait_until,
)
from sms_report import SYSTEMS, markdown, outcome, summarise, versions  # noqa: E402

from gatewayd.config.settings import MailboxSettings  # noqa: E402
from gatewayd.credentials import hash_token  # noqa: E402
from gatewayd.mailbox import Mailbox, NewAttachment, NewMessage, Party  # noqa: E402
from gatewayd.model import Direction, MessageType  # noqa: E402
from tests.shipped_config import shipped_config  # noqa: E402
from tests.smtp_client import free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TOKEN = "bench-api-token-for-alice"  # noqa: S105  (the bench user's, in its own temp config)
IN_FLIGHT_MARK = "in flight when the gateway stopped unexpectedly"


# -- Kannel --------------------------------------------------------------------------------


def kannel_config(work: Path, ports: dict[str, int], peer_port: int, window: int) -> Path:
    path = work / "kannel.conf"
    path.write_text(
        f"""group = core
admin-port = {ports["admin"]}
admin-interface = 127.0.0.1
admin-password = bench
status-password = bench
admin-allow-ip = "127.0.0.1"
smsbox-port = {ports["smsbox"]}
smsbox-interface = 127.0.0.1
box-allow-ip = "127.0.0.1"
log-file = "{work / "bearerbox.log"}"
log-level = 2
store-type = file
store-location = "{work / "kannel.store"}"
dlr-storage = internal

group = smsc
smsc = smpp
smsc-id = peer
host = 127.0.0.1
port = {peer_port}
transceiver-mode = true
smsc-username = kannel
smsc-password = kannel
system-type = ""
max-pending-submits = {window}

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {ports["smsbox"]}
sendsms-port = {ports["sendsms"]}
sendsms-interface = 127.0.0.1
log-file = "{work / "smsbox.log"}"
log-level = 2

group = sendsms-user
username = {sms_load.KANNEL_USER}
password = {sms_load.KANNEL_USER}
max-messages = 1
concatenation = false
"""
    )
    return path


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


ACK_GRACE = 10.0  # seconds Kannel's last receipt acknowledgements may trail its callbacks


def kannel_run(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    n = args.messages
    with workdir("bench-kannel-") as work:
        ports = {name: free_port() for name in ("admin", "smsbox", "sendsms")}
        config = kannel_config(work, ports, peer.smpp_port, args.window)
        log = (work / "console.log").open("wb")
        bearerbox = subprocess.Popen(
            ["bearerbox", "-v", "2", str(config)], cwd=work, stdout=log, stderr=subprocess.STDOUT
        )
        smsbox: subprocess.Popen[bytes] | None = None
        sink: Sink | None = None
        try:
            wait_until(
                lambda: "kannel" in peer.stats()["bound"],
                30,
                "bearerbox did not bind to the SMSC peer",
            )
            smsbox = subprocess.Popen(
                ["smsbox", "-v", "2", str(config)], cwd=work, stdout=log, stderr=subprocess.STDOUT
            )
            status = f"http://127.0.0.1:{ports['admin']}/status.txt?password=bench"
            wait_until(
                lambda: "smsbox:" in httpx.get(status).text and listening(ports["sendsms"]),
                30,
                "smsbox did not start",
            )
            sink = Sink(n)
            clients = Load(
                sms_load.http_clients,
                sms_load.HttpLoad(
                    kind="kannel",
                    port=ports["sendsms"],
                    messages=n,
                    clients=args.clients,
                    sink_port=sink.port,
                ),
            )
            meter = Meter(
                {
                    "bearerbox": bearerbox.pid,
                    "smsbox": smsbox.pid,
                    "peer": peer.pid,
                    "DLR sink": sink.pid,
                }
            )
            meter.start()
            clients.go.set()
            sent = clients.result(args.timeout)
            deadline = time.monotonic() + args.timeout
            while sink.finals.value < sent["accepted"] and time.monotonic() < deadline:
                time.sleep(0.05)
            done = sink.last.value if sink.finals.value >= n else None
            meter.stop()
            meter.add("clients", sent["cpu_s"])
            # Kannel may call the dlr-url before its deliver_sm_resp has reached the
            # peer: the check waits a moment for the last acknowledgements (the end
            # time stays the last callback's).
            settle = time.monotonic() + ACK_GRACE
            while peer.stats()["receipts_acked"] < n and time.monotonic() < settle:
                time.sleep(0.05)
            seen = peer.stats()
            dlrs = sink.stop()
            sink = None
        finally:
            if sink is not None:
                sink.stop()
            stop_process(bearerbox)
            if smsbox is not None:
                stop_process(smsbox)
            log.close()
    ok = (
        done is not None
        and dlrs["final"] == n
        and dlrs["not_delivered"] == 0
        and dlrs["repeated_finals"] == 0
    )
    return outcome(
        "kannel",
        n,
        sent=sent,
        done=done,
        seen=seen,
        meter=meter,
        ok=ok,
        extra={"dlr_callbacks": dlrs},
    )


# -- gatewayd ------------------------------------------------------------------------------


def gatewayd_config(
    work: Path, smtp_port: int, api_port: int, peer_port: int, args: argparse.Namespace
) -> Path:
    """config/gatewayd.toml as shipped, through tests/shipped_config.py, and then the
    bench's own keys (each checked to be there, so a renamed key fails loudly)."""
    path = shipped_config(
        work,
        smtp_port=smtp_port,
        api_port=api_port,
        sim_port=peer_port,
        token_hash=hash_token(TOKEN),
        level="warning",
    )
    text = path.read_text()
    for old, new in (
        ("window = 10\n", f"window = {args.window}\n"),
        ('sqlite_synchronous = "full"\n', f'sqlite_synchronous = "{args.sqlite_synchronous}"\n'),
        ("tps = 100.0\n", "tps = 0\n"),
        ("rate_limits = true\n", "rate_limits = false\n"),
        ("rate_per_minute = 60\n", "rate_per_minute = 0\n"),
        ("max_messages = 10000\n", "max_messages = 0\n"),
    ):
        if old not in text:
            raise SystemExit(f"sms_vs_kannel: config/gatewayd.toml no longer has {old.strip()!r}")
        text = text.replace(old, new, 1)
    path.write_text(text)
    return path


def queued_sms(n: int) -> NewMessage:
    return NewMessage(
        account_id=1,
        extension_id=101,
        type=MessageType.SMS,
        direction=Direction.OUTBOUND,
        from_=Party(phone_number=sms_load.SENDER),
        to=(Party(phone_number=sms_load.destination(n)),),
        origin="bench",
        subject=sms_load.text(n),
        attachments=(NewAttachment.text_of_message(),),
    )


async def populate(data: Path, messages: int) -> None:
    """N Queued SMS through gatewayd's Mailbox API, before the daemon starts."""
    box = await Mailbox.open(MailboxSettings(data_dir=data, max_messages=0))
    try:
        for first in range(0, messages, 1000):
            last = min(first + 1000, messages)
            await box.create_many([queued_sms(n) for n in range(first, last)])
    finally:
        await box.close()


def mailbox_read(database: Path, sql: str, *params: str) -> list[tuple[Any, ...]]:
    """Rows from the daemon's SQLite mailbox, opened read-only ([] while it is not there)."""
    with suppress(sqlite3.Error):
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()
    return []


def statuses(database: Path) -> dict[str, int]:
    rows = mailbox_read(database, "SELECT message_status, count(*) FROM messages GROUP BY 1")
    return {str(status): int(count) for status, count in rows}


class Daemon:
    """``gatewayd run`` on a config, its output in a file next to it."""

    def __init__(self, config: Path, api_port: int) -> None:
        self.log = (config.parent / "gatewayd.out").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gatewayd", "run", "--config", str(config)],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.config = config
        wait_until(lambda: self.alive() and listening(api_port), 60, self.failure("did not start"))

    def alive(self) -> bool:
        if self.process.poll() is not None:
            raise SystemExit(self.failure(f"exited with {self.process.returncode}"))
        return True

    def failure(self, what: str) -> str:
        tail = (self.config.parent / "gatewayd.out").read_text(errors="replace")[-2000:]
        return f"gatewayd {what}; its output ends:\n{tail}"

    def stop(self) -> int:
        code = stop_process(self.process)
        self.log.close()
        return code


def wait_all_delivered(
    peer: Peer, database: Path, messages: int, timeout: float
) -> tuple[float | None, dict[str, Any], dict[str, int]]:
    """Until every destination is submitted, every receipt acknowledged and the mailbox
    shows all Delivered: the time of that (the peer's last acknowledgement when the
    mailbox already agreed at the first look), the peer's stats, the mailbox's counts."""
    deadline = time.monotonic() + timeout
    first_look = True
    seen: dict[str, Any] = {}
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        seen = peer.stats()
        if (
            seen["destinations"] >= messages
            and seen["receipts_acked"] >= seen["submits"]
            and not seen["receipts_waiting_for_bind"]
        ):
            counts = statuses(database)
            if counts.get("Delivered", 0) >= messages:
                return (seen["last_ack"] if first_look else time.time()), seen, counts
            first_look = False
        time.sleep(0.05)
    return None, seen, counts


def gatewayd_run(peer: Peer, args: argparse.Namespace, door: str) -> dict[str, Any]:
    n = args.messages
    with workdir(f"bench-gatewayd-{door}-") as work:
        smtp_port, api_port = free_port(), free_port()
        config = gatewayd_config(work, smtp_port, api_port, peer.smpp_port, args)
        database = work / "data" / "mailbox.sqlite3"
        if door == "queue":
            asyncio.run(populate(work / "data", n))
        peer.hold("gatewayd")
        daemon = Daemon(config, api_port)
        try:
            wait_until(lambda: "gatewayd" in peer.held(), 30, "gatewayd did not bind")
            clients: Load | None = None
            if door == "api":
                clients = Load(
                    sms_load.http_clients,
                    sms_load.HttpLoad(
                        kind="api", port=api_port, messages=n, clients=args.clients, token=TOKEN
                    ),
                )
            elif door == "smtp":
                clients = Load(
                    sms_load.smtp_clients,
                    sms_load.SmtpLoad(port=smtp_port, messages=n, clients=args.smtp_clients),
                )
            meter = Meter(
                {"gatewayd": daemon.process.pid, "peer": peer.pid}, loop_of=daemon.process.pid
            )
            time.sleep(1.0)  # let the start-up settle before the counters are read
            meter.start()
            peer.release()
            sent: dict[str, Any] = {}
            if clients is not None:
                wait_until(lambda: "gatewayd" in peer.stats()["bound"], 30, "no bind")
                clients.go.set()
                sent = clients.result(args.timeout)
            done, seen, counts = wait_all_delivered(peer, database, n, args.timeout)
            meter.stop()
            if clients is not None:
                meter.add("clients", sent["cpu_s"])
        finally:
            peer.release()
            code = daemon.stop()
    if door == "queue":
        sent = {"first_request": seen["first_submit"], "accepted": n}
    ok = done is not None and counts == {"Delivered": n} and code == 0
    return outcome(
        door,
        n,
        sent=sent,
        done=done,
        seen=seen,
        meter=meter,
        ok=ok,
        extra={"mailbox": counts, "exit_code": code},
    )


def kill_run(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """The queue run with a SIGKILL half-way and a restart on the same mailbox."""
    n = args.messages
    with workdir("bench-gatewayd-kill-") as work:
        api_port = free_port()
        config = gatewayd_config(work, free_port(), api_port, peer.smpp_port, args)
        database = work / "data" / "mailbox.sqlite3"
        asyncio.run(populate(work / "data", n))
        daemon = Daemon(config, api_port)
        try:
            wait_until(
                lambda: peer.stats()["submits"] >= n // 2,
                args.timeout,
                "gatewayd did not submit half of the messages",
            )
            daemon.process.kill()
            daemon.process.wait(30)
            daemon.log.close()
            at_kill = peer.stats()
            say(
                f"  killed gatewayd (SIGKILL) after {at_kill['submits']} submits, "
                f"{at_kill['receipts_acked']} receipts acknowledged"
            )
            daemon = Daemon(config, api_port)
            done, seen, counts = wait_all_delivered(peer, database, n, args.timeout)
        finally:
            code = daemon.stop()
        duplicates = peer.duplicates()
        marked = {
            str(number).lstrip("+")
            for (number,) in mailbox_read(
                database,
                "SELECT DISTINCT m.to_number FROM message_events e JOIN messages m "
                "ON m.id = e.message_id WHERE e.reason LIKE ?",
                f"{IN_FLIGHT_MARK}%",
            )
        }
    outside = sorted(set(duplicates) - marked)
    return {
        "messages": n,
        "submits_at_kill": at_kill["submits"],
        "receipts_acked_at_kill": at_kill["receipts_acked"],
        "submits": seen.get("submits"),
        "destinations": seen.get("destinations"),
        "duplicated_destinations": len(duplicates),
        "duplicate_submits": sum(c - 1 for c in duplicates.values()),
        "marked_in_flight": len(marked),
        "duplicates_not_marked": len(outside),
        "duplicates_not_marked_sample": outside[:10],
        "mailbox": counts,
        "receipts_acked": seen.get("receipts_acked"),
        "complete": done is not None,
        "exit_code_after_restart": code,
        "ok": done is not None
        and not outside
        and counts == {"Delivered": n}
        and seen.get("destinations") == n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--smtp-clients", type=int, help="default: --clients")
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--receipt-delay", type=float, default=0.3, help="seconds")
    parser.add_argument(
        "--sqlite-synchronous",
        choices=("full", "normal"),
        default="full",
        help="gatewayd's [mailbox] sqlite_synchronous (shipped: full)",
    )
    parser.add_argument("--only", default=",".join(SYSTEMS), help="systems to run, in order")
    parser.add_argument("--kill", action="store_true", help="also the kill -9 run")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    args = parser.parse_args()
    args.smtp_clients = args.smtp_clients or args.clients
    systems = [s for s in args.only.split(",") if s]
    if unknown := set(systems) - set(SYSTEMS):
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    if "kannel" in systems and not all(shutil.which(b, path=path) for b in ("bearerbox", "smsbox")):
        print(
            "sms_vs_kannel: skipped: Kannel is not installed (no bearerbox/smsbox); "
            "apt-get install kannel"
        )
        return
    os.environ["PATH"] = path
    if not shutil.which("node"):
        raise SystemExit(
            "sms_vs_kannel: node is needed for the SMSC peer: apt-get install nodejs npm"
        )
    ensure_peer_installed()
    peer = Peer(args.receipt_delay)
    runs: list[dict[str, Any]] = []
    kill: dict[str, Any] | None = None
    try:
        for round_ in range(1, args.runs + 1):
            for system in systems:
                peer.reset()
                load = load_now()
                say(f"run {round_}/{args.runs}: {system} ({load['uptime']})")
                if system == "kannel":
                    result = kannel_run(peer, args)
                else:
                    result = gatewayd_run(peer, args, system)
                result["round"], result["load"] = round_, load
                runs.append(result)
                say(
                    f"  {system}: {result['wall_s']} s end to end, ingest {result['ingest_s']} s, "
                    f"{result['submit_sm_per_s']} submit_sm/s, CPU ms/msg "
                    f"{result['cpu_ms_per_message']}, ok={result['ok']}"
                )
                time.sleep(2)
        if args.kill:
            peer.reset()
            load = load_now()
            say(f"kill -9 run ({load['uptime']})")
            kill = {**kill_run(peer, args), "load": load}
            say(f"  {kill}")
    finally:
        peer.close()
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "versions": versions(),
        "settings": {
            "runs": args.runs,
            "messages": args.messages,
            "clients": args.clients,
            "smtp_clients": args.smtp_clients,
            "window": args.window,
            "receipt_delay": args.receipt_delay,
            "sqlite_synchronous": args.sqlite_synchronous,
            "systems": systems,
        },
        "summary": summarise(runs),
        "runs": runs,
        "kill": kill,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sms_vs_kannel.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (RESULTS / "sms_vs_kannel.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
