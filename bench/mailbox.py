"""Mailbox benchmark: list-page latency and lease throughput on a large mailbox.

    python bench/mailbox.py [--messages 1000000] [--extensions 100] [--keep DIR]

Builds a mailbox of N messages over E extensions spread across 30 days (SMS 70 %,
fax 20 %, pager 10 %; a tenth inbound; 5 % deleted; 50,000 Queued), through
``Mailbox.create_many`` in batches. Final statuses and read states are then set with
bulk SQL (population only: the measured paths are the real ones). Then it measures
``Mailbox.find`` for typical filters (p50/p99 over random extensions), the lease
throughput of one worker draining the Queued messages, and the database size.
Writes bench/results/mailbox.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from gatewayd.clock import ManualClock  # noqa: E402
from gatewayd.config.settings import MailboxSettings  # noqa: E402
from gatewayd.mailbox import (  # noqa: E402
    Mailbox,
    MessageQuery,
    NewAttachment,
    NewMessage,
    Party,
)
from gatewayd.mailbox._schema import messages  # noqa: E402
from gatewayd.model import (  # noqa: E402
    AttachmentType,
    Availability,
    Direction,
    MessageType,
    ReadStatus,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAYS = 30
QUEUED = 50_000
TEXTS = [f"Reminder {i}: your appointment is confirmed. Reply STOP to opt out." for i in range(500)]
DOCUMENTS = [b"%PDF-1.4\n" + bytes([i]) * 20_000 for i in range(50)]


def new_message(rng: random.Random, extensions: int, index: int, total: int) -> NewMessage:
    extension = 1000 + rng.randrange(extensions)
    # Each extension talks with about 300 numbers, so conversations repeat.
    peer = f"+49151{(extension * 7919 + rng.randrange(300)) % 10_000_000:07d}"
    ours = f"+4930{extension:06d}"
    inbound = rng.random() < 0.1
    created = NOW - timedelta(seconds=DAYS * 86400 * (1 - index / total))
    roll = rng.random()
    if roll < 0.7:
        kind = MessageType.SMS
        text = rng.choice(TEXTS)
        attachment = NewAttachment(AttachmentType.TEXT, "text/plain", data=text.encode())
        subject = text
    elif roll < 0.9:
        kind = MessageType.FAX
        attachment = NewAttachment(AttachmentType.SOURCE_DOCUMENT, "application/pdf",
                                   data=rng.choice(DOCUMENTS), file_name="doc.pdf")  # fmt: skip
        subject = "Invoice"
    else:
        kind = MessageType.PAGER
        attachment = NewAttachment(AttachmentType.TEXT, "text/plain", data=b"lunch?")
        subject = "lunch?"
        peer, ours = "", ""
    from_, to = (Party(phone_number=peer or None), Party(phone_number=ours or None))
    if not inbound:
        from_, to = to, from_
    return NewMessage(
        account_id=1, extension_id=extension, type=kind,
        direction=Direction.INBOUND if inbound else Direction.OUTBOUND,
        from_=from_, to=(to,), origin="bench", subject=subject, attachments=(attachment,),
        creation_time=created,
    )  # fmt: skip


async def populate(box: Mailbox, total: int, extensions: int) -> float:
    rng = random.Random(7)
    started = time.perf_counter()
    batch = 2000
    for start in range(0, total, batch):
        await box.create_many([new_message(rng, extensions, i, total)
                               for i in range(start, min(total, start + batch))])  # fmt: skip
        if start % 100_000 == 0:
            print(f"  {start:>9,} messages", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    # Population only: give most outbound messages a final status, read half the inbound
    # ones and delete 5 %, leaving the newest QUEUED outbound SMS and faxes Queued.
    c = messages.c
    async with box._db.write() as conn:
        queued_ids = sa.select(c.id).where(c.message_status == "Queued").order_by(
            c.creation_time.desc()).limit(QUEUED)  # fmt: skip
        await conn.execute(sa.update(messages).where(c.message_status == "Queued",
                                                     c.id.not_in(queued_ids))
                           .values(message_status=sa.case((c.type == "SMS", "Delivered"),
                                                          else_="Sent"),
                                   next_attempt_at=None))  # fmt: skip
        await conn.execute(sa.update(messages).where(c.direction == "Inbound", c.id % 2 == 0)
                           .values(read_status=ReadStatus.READ.value))  # fmt: skip
        await conn.execute(sa.update(messages).where(c.id % 20 == 0, c.message_status != "Queued")
                           .values(availability=Availability.DELETED.value))  # fmt: skip
        await conn.exec_driver_sql("ANALYZE")
    return elapsed


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def time_queries(box: Mailbox, extensions: int, rounds: int) -> list[dict[str, Any]]:
    rng = random.Random(11)
    conversations: dict[int, int] = {}
    async with box._db.read() as conn:
        for ext, conv in await conn.execute(
            sa.select(messages.c.extension_id, sa.func.max(messages.c.conversation_id))
            .where(messages.c.type == "SMS").group_by(messages.c.extension_id)):  # fmt: skip
            conversations[ext] = conv
    month = NOW - timedelta(days=DAYS)
    week = NOW - timedelta(days=7)
    cases: list[tuple[str, Any]] = [
        ("default: Alive, last 24 h, page 1 of 100", lambda e: {}),
        ("messageType=SMS, last 7 days", lambda e: {"message_type": (MessageType.SMS,),
                                                   "date_from": week}),
        ("messageType=Fax, 30 days", lambda e: {"message_type": (MessageType.FAX,),
                                               "date_from": month}),
        ("Inbound + Unread, 30 days", lambda e: {"direction": (Direction.INBOUND,),
                                                "read_status": (ReadStatus.UNREAD,),
                                                "date_from": month}),
        ("page 5 of a 30-day window", lambda e: {"date_from": month, "page": 5}),
        ("availability=Deleted, 30 days", lambda e: {"availability": (Availability.DELETED,),
                                                    "date_from": month}),
        ("conversationId, 30 days", lambda e: {"conversation_id": conversations.get(e, 1),
                                              "date_from": month}),
        ("phoneNumber (a correspondent), 30 days",
         lambda e: {"phone_number": f"+49151{(e * 7919 + 17) % 10_000_000:07d}",
                    "date_from": month}),
        ("distinctConversations, 7 days", lambda e: {"distinct_conversations": True,
                                                    "date_from": week}),
        ("perPage=1000, 30 days", lambda e: {"date_from": month, "per_page": 1000}),
    ]  # fmt: skip
    box.clock.set(NOW)  # type: ignore[attr-defined]
    results = []
    for name, make in cases:
        samples = []
        sizes = []
        for _ in range(rounds):
            extension = 1000 + rng.randrange(extensions)
            query = MessageQuery(extension_id=extension, **make(extension))
            started = time.perf_counter()
            page = await box.find(query)
            samples.append((time.perf_counter() - started) * 1000)
            sizes.append(len(page.records))
        results.append({"query": name, "p50_ms": round(percentile(samples, 50), 2),
                        "p99_ms": round(percentile(samples, 99), 2),
                        "records_median": statistics.median(sizes)})  # fmt: skip
        print(f"  {name:<45} p50 {results[-1]['p50_ms']:>7} ms  p99 {results[-1]['p99_ms']:>7} ms",
              file=sys.stderr)  # fmt: skip
    return results


async def time_leases(box: Mailbox) -> dict[str, Any]:
    types = [MessageType.SMS, MessageType.FAX]
    started = time.perf_counter()
    leased = 0
    while batch := await box.lease("bench", types=types, limit=100, lease_for=3600):
        leased += len(batch)
    elapsed = time.perf_counter() - started
    return {"leased": leased, "seconds": round(elapsed, 2),
            "messages_per_second": round(leased / elapsed)}  # fmt: skip


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--extensions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--keep", type=Path, help="build in (and keep) this directory")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="gatewayd-bench-"))
    settings = MailboxSettings(data_dir=workdir, max_messages=0)
    fresh = not (workdir / "mailbox.sqlite3").exists()
    box = await Mailbox.open(settings, clock=ManualClock(NOW))
    try:
        populate_seconds = None
        if fresh:
            print(f"populating {args.messages:,} messages in {workdir}", file=sys.stderr)
            populate_seconds = await populate(box, args.messages, args.extensions)
        print("list queries", file=sys.stderr)
        queries = await time_queries(box, args.extensions, args.rounds)
        print("leases", file=sys.stderr)
        leases = await time_leases(box)
    finally:
        await box.close()
    db_bytes = sum((workdir / n).stat().st_size for n in ("mailbox.sqlite3", "mailbox.sqlite3-wal")
                   if (workdir / n).exists())  # fmt: skip
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "messages": args.messages, "extensions": args.extensions,
        "populate_seconds": round(populate_seconds, 1) if populate_seconds else None,
        "populate_messages_per_second": round(args.messages / populate_seconds)
        if populate_seconds else None,
        "queries": queries, "lease": leases,
        "database_bytes": db_bytes, "blob_bytes": size_of(workdir / "blobs"),
        "bytes_per_message": round(db_bytes / args.messages),
    }  # fmt: skip
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "mailbox.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Mailbox benchmark ({report['date']})", "",
        f"{args.messages:,} messages over {args.extensions} extensions, 30 days, SQLite (WAL).",
        "", "| query | p50 ms | p99 ms | records |", "| --- | ---: | ---: | ---: |",
        *[f"| {q['query']} | {q['p50_ms']} | {q['p99_ms']} | {q['records_median']:g} |"
          for q in queries],
        "", f"Lease throughput (one worker, batches of 100): {leases['messages_per_second']:,} "
        f"messages/s ({leases['leased']:,} in {leases['seconds']} s).",
        f"Database: {db_bytes / 1e6:,.0f} MB ({report['bytes_per_message']} bytes/message); "
        f"attachment files {report['blob_bytes'] / 1e6:,.1f} MB.",
    ]  # fmt: skip
    if populate_seconds:
        lines.append(f"Population through create_many: {report['populate_messages_per_second']:,}"
                     " messages/s.")  # fmt: skip
    (out / "mailbox.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if not args.keep:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    asyncio.run(main())
