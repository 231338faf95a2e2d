"""SMPP benchmark: Queued SMS through one bind to the SMSC simulator, receipts on.

    python bench/smpp.py [--messages 50000] [--window 64] [--receipt-delay 0.05]

Fills a fresh mailbox (SQLite, synchronous=FULL as shipped) with N Queued SMS, a tenth
of them long enough for two parts, starts ``gatewayd smsc-sim`` in its own process,
then runs the daemon's SMS service (dispatcher, one transceiver link with the given
window, no tps cap, the receipt handler) in this process until every message is final.
Reports submit_sm/s and receipts/s sustained (first to last), processor time per
message in this process and in the simulator's, and checks that every message ended
Delivered with every part delivered. Writes bench/results/smpp.{json,md}.
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

import sqlalchemy as sa  # noqa: E402

from gatewayd.config.settings import (  # noqa: E402
    HostPort,
    LogSettings,
    MailboxSettings,
    Settings,
    SmppLinkSettings,
    SmsSettings,
)
from gatewayd.logging import configure_logging  # noqa: E402
from gatewayd.mailbox import Mailbox, NewAttachment, NewMessage, Party  # noqa: E402
from gatewayd.mailbox._schema import message_parts, messages  # noqa: E402
from gatewayd.model import Direction, MessageType  # noqa: E402
from gatewayd.sms.service import SmsService  # noqa: E402
from tests.smtp_client import free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
LONG = "This is a longer message that needs two parts to reach the phone. " * 3


def new_sms(number: int) -> NewMessage:
    text = LONG if number % 10 == 0 else f"Your code is {number:06d}"
    return NewMessage(
        account_id=1, extension_id=100 + number % 10, type=MessageType.SMS,
        direction=Direction.OUTBOUND, from_=Party(phone_number="+4930123456"),
        to=(Party(phone_number=f"+49151{number:06d}5555"),),
        origin="bench", subject=text, attachments=(NewAttachment.text_of_message(),),
    )  # fmt: skip


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(
    args: argparse.Namespace, data: Path, sim: subprocess.Popen[str], port: int
) -> dict[str, object]:
    settings_mailbox = MailboxSettings(data_dir=data)
    mailbox = await Mailbox.open(settings_mailbox)
    started = time.perf_counter()
    for first in range(0, args.messages, 1000):
        last = min(first + 1000, args.messages)
        await mailbox.create_many([new_sms(n) for n in range(first, last)])
    populate = time.perf_counter() - started
    link = SmppLinkSettings(address=HostPort("127.0.0.1", port), window=args.window, tps=0)
    settings = Settings(mailbox=settings_mailbox, sms=SmsSettings(links=(link,)))
    service = SmsService(mailbox, settings)
    [smpp] = service.links.links
    service.start()
    await smpp.wait_bound(10)
    cpu_before, sim_cpu_before = time.process_time(), cpu_of(sim.pid)
    start = time.perf_counter()
    task = asyncio.create_task(service.dispatcher.run())
    first_submit = last_submit = last_receipt = None
    total_parts = args.messages + args.messages // 10
    while True:
        await asyncio.sleep(0.1)
        now = time.perf_counter()
        if smpp.counts["submit_sm"] and first_submit is None:
            first_submit = now
        if smpp.responses["ESME_ROK"] < total_parts:
            last_submit = now
        if smpp.counts["deliver_sm"] < total_parts:
            last_receipt = now
        if smpp.counts["deliver_sm"] >= total_parts:
            async with mailbox._db.read() as conn:
                status = messages.c.message_status
                open_ = await conn.scalar(
                    sa.select(sa.func.count()).where(status.in_(["Queued", "Sent"]))
                )
            if not open_:
                break
        if now - start > args.timeout:
            break
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_before
    sim_cpu = cpu_of(sim.pid) - sim_cpu_before
    service.dispatcher.stop()
    await task
    await service.close()
    sim.terminate()
    sim_said = (await asyncio.to_thread(sim.communicate, timeout=30))[0].strip().splitlines()
    async with mailbox._db.read() as conn:
        status = messages.c.message_status
        by_status = dict((await conn.execute(
            sa.select(status, sa.func.count()).group_by(status)
        )).all())  # fmt: skip
        parts = dict((await conn.execute(
            sa.select(message_parts.c.status, sa.func.count()).group_by(message_parts.c.status)
        )).all())  # fmt: skip
    await mailbox.close()
    assert first_submit is not None
    assert last_submit is not None
    assert last_receipt is not None
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "messages": args.messages,
        "parts": total_parts,
        "window": args.window,
        "receipt_delay": args.receipt_delay,
        "populate_per_s": round(args.messages / populate),
        "elapsed_s": round(elapsed, 2),
        "submit_sm": smpp.counts["submit_sm"],
        "submit_sm_per_s": round(total_parts / (last_submit - first_submit + 0.1)),
        "receipts_per_s": round(total_parts / (last_receipt - first_submit + 0.1)),
        "messages_per_s": round(args.messages / elapsed),
        "cpu_ms_per_message": round(cpu * 1000 / args.messages, 3),
        "simulator_cpu_ms_per_message": round(sim_cpu * 1000 / args.messages, 3),
        "link_counts": dict(smpp.counts),
        "submit_responses": dict(smpp.responses),
        "simulator": sim_said[-1] if sim_said else "",
        "statuses": by_status,
        "part_statuses": parts,
        "all_delivered": by_status == {"Delivered": args.messages}
        and parts == {"Delivered": total_parts},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--receipt-delay", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    configure_logging(LogSettings(level="warning", format="json", file=None))
    with tempfile.TemporaryDirectory(prefix="gatewayd-bench-smpp-") as data:
        port = free_port()
        sim = subprocess.Popen(
            [sys.executable, "-m", "gatewayd", "smsc-sim", "--listen", f"127.0.0.1:{port}",
             "--receipt-delay", str(args.receipt_delay)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        assert sim.stdout is not None
        sim.stdout.readline()  # listening
        result = asyncio.run(run(args, Path(data), sim, port))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "smpp.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# SMPP benchmark ({result['when']})", "",
        f"{result['messages']:,} Queued SMS ({result['parts']:,} parts: a tenth of the "
        f"messages in two), one transceiver bind, window {result['window']}, receipts after "
        f"{result['receipt_delay']} s, the simulator in its own process, SQLite "
        "(synchronous=FULL).", "",
        "| figure | value |", "| --- | ---: |",
        f"| submit_sm/s sustained | {result['submit_sm_per_s']:,} |",
        f"| receipts/s sustained | {result['receipts_per_s']:,} |",
        f"| messages/s, first submit to last final | {result['messages_per_s']:,} |",
        f"| gateway CPU per message | {result['cpu_ms_per_message']} ms |",
        f"| simulator CPU per message | {result['simulator_cpu_ms_per_message']} ms |",
        f"| every message Delivered | {result['all_delivered']} |",
    ]  # fmt: skip
    (RESULTS / "smpp.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
