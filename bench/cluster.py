"""Cluster benchmark: SMS through 1 and 2 ``gatewayd run`` nodes on one PostgreSQL.

    python bench/cluster.py [--messages 10000] [--nodes 1,2] [--runs 1]

For each node count: a fresh PostgreSQL database (a throwaway server from Debian's
postgresql, as the tests start one) filled with N Queued SMS, ``gatewayd smsc-sim``
in its own process, then that many ``gatewayd run`` nodes (each with its own SMPP bind
to the simulator, window 64, no tps cap), timed from the nodes' start until every
message is Delivered. Reported: wall time (start-up included), SMS/s sustained (from
10 % to 90 % delivered), processor time per message in each
node, in PostgreSQL (every postgres process of the server) and in the simulator, and
how the work split between the nodes (submit_sm per bind). Writes
bench/results/cluster.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gatewayd.config.settings import MailboxSettings  # noqa: E402
from gatewayd.mailbox import Mailbox, NewAttachment, NewMessage, Party  # noqa: E402
from gatewayd.model import Direction, MessageStatus, MessageType  # noqa: E402
from tests.cluster import make_node  # noqa: E402
from tests.postgres import create_database, postgres_server  # noqa: E402
from tests.smtp_client import free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def new_sms(number: int) -> NewMessage:
    return NewMessage(
        account_id=1,
        extension_id=100 + number % 10,
        type=MessageType.SMS,
        direction=Direction.OUTBOUND,
        from_=Party(phone_number="+4930123456"),
        to=(Party(phone_number=f"+49151{number:06d}5555"),),
        origin="bench",
        subject=f"Your code is {number:06d}",
        attachments=(NewAttachment.text_of_message(),),
    )


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def postgres_pids() -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


async def fill(url: str, count: int) -> None:
    box = await Mailbox.open(MailboxSettings(data_dir=Path(tempfile.mkdtemp()), database_url=url))
    try:
        for first in range(0, count, 1000):
            await box.create_many([new_sms(n) for n in range(first, min(first + 1000, count))])
    finally:
        await box.close()


async def delivered(url: str) -> int:
    box = await Mailbox.open(MailboxSettings(data_dir=Path(tempfile.mkdtemp()), database_url=url))
    try:
        return sum(
            c.count
            for c in await box.counts()
            if c.type is MessageType.SMS and c.status is MessageStatus.DELIVERED
        )
    finally:
        await box.close()


def one(base: str, nodes: int, messages: int, work: Path) -> dict[str, object]:
    url = create_database(base, f"bench_{nodes}_{int(time.time() * 1000)}")
    asyncio.run(fill(url, messages))
    sim_port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "gatewayd", "smsc-sim", "--listen", f"127.0.0.1:{sim_port}",
         "--receipt-delay", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )  # fmt: skip
    assert sim.stdout is not None
    sim.stdout.readline()
    made = [
        make_node(work, f"b{nodes}n{i}", database_url=url, sim_port=sim_port,
                  spool=work / "spool", extra="")
        for i in range(nodes)
    ]  # fmt: skip
    for node in made:
        node.config.write_text(
            node.config.read_text().replace("window = 32\n", "window = 64\n")
            .replace('level = "info"', 'level = "warning"')
        )  # fmt: skip
    pg_before = cpu_of(postgres_pids())
    sim_before = cpu_of([sim.pid])
    started = time.perf_counter()
    for node in made:
        node.start()
    done, samples = 0, []
    while done < messages and time.perf_counter() - started < 900:
        time.sleep(0.25)
        done = asyncio.run(delivered(url))
        samples.append((time.perf_counter(), done))
    elapsed = time.perf_counter() - started
    t10 = next(t for t, d in samples if d >= messages * 0.1)
    t90 = next((t for t, d in samples if d >= messages * 0.9), samples[-1][0])
    node_cpu = [cpu_of([n.process.pid]) for n in made if n.process is not None]
    pg_cpu = cpu_of(postgres_pids()) - pg_before
    sim_cpu = cpu_of([sim.pid]) - sim_before
    for node in made:
        node.stop()
    sim.terminate()
    said = sim.communicate(timeout=30)[0].strip().splitlines()
    return {
        "nodes": nodes,
        "messages": messages,
        "delivered": done,
        "seconds": round(elapsed, 2),
        "sms_per_second": round(done / elapsed, 1),
        "sustained_per_second": round(messages * 0.8 / max(t90 - t10, 1e-3), 1),
        "node_cpu_ms_per_message": [round(c * 1000 / messages, 3) for c in node_cpu],
        "postgres_cpu_ms_per_message": round(pg_cpu * 1000 / messages, 3),
        "simulator_cpu_ms_per_message": round(sim_cpu * 1000 / messages, 3),
        "simulator": said[-1] if said else "",
        "load": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--nodes", default="1,2")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    rows = []
    with postgres_server() as base, tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for nodes in counts:
                work = Path(tmp) / f"r{run}n{nodes}"
                work.mkdir()
                row = one(base, nodes, args.messages, work)
                print(json.dumps(row))
                rows.append(row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps(rows, indent=2))
    lines = [
        f"# Cluster benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores)",
        "",
        "| nodes | SMS | seconds (with start-up) | SMS/s sustained | node CPU ms/msg "
        "| PostgreSQL CPU ms/msg | simulator CPU ms/msg | load |",
        "| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['nodes']} | {r['delivered']} | {r['seconds']} | {r['sustained_per_second']} "
            f"| {r['node_cpu_ms_per_message']} | {r['postgres_cpu_ms_per_message']} "
            f"| {r['simulator_cpu_ms_per_message']} | {r['load']:.2f} |"
        )
    (RESULTS / "cluster.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
