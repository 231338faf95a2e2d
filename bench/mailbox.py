"""Mailbox benchmark: list-page latency and lease throughput on a large mailbox.

    python bench/mailbox.py [--messages 1000000] [--extensions 100] [--keep DIR]
                            [--rounds 300] [--no-leases] [--postgres]

Builds a mailbox of N messages over E extensions spread across 30 days (SMS 70 %,
fax 20 %, pager 10 %; a tenth inbound; 5 % deleted; 50,000 Queued), through
``Mailbox.create_many`` in batches. Final statuses and read states are then set with
bulk SQL (population only: the measured paths are the real ones). Then it measures,
for typical filters (p50/p99 over random extensions), ``Mailbox.find_json`` (the API's
list: the page's JSON, written by the database) and ``Mailbox.find`` (the page as
records), the lease throughput of one worker draining the Queued messages (which
leaves them leased: a kept mailbox has none to lease the next time), and the
database size. ``--postgres`` also times the lists on PostgreSQL: a throwaway server,
as the tests start one (Debian ``postgresql``), holding a copy of the same rows.
Writes bench/results/mailbox.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
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
from tests.postgres import create_database, postgres_server  # noqa: E402

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAYS = 30
QUEUED = 50_000
BASE_URL = "http://127.0.0.1:8080"
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
        attachment = NewAttachment(
            AttachmentType.SOURCE_DOCUMENT,
            "application/pdf",
            data=rng.choice(DOCUMENTS),
            file_name="doc.pdf",
        )
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
        account_id=1,
        extension_id=extension,
        type=kind,
        direction=Direction.INBOUND if inbound else Direction.OUTBOUND,
        from_=from_,
        to=(to,),
        origin="bench",
        subject=subject,
        attachments=(attachment,),
        creation_time=created,
    )


async def populate(box: Mailbox, total: int, extensions: int) -> float:
    rng = random.Random(7)
    started = time.perf_counter()
    batch = 2000
    for start in range(0, total, batch):
        await box.create_many(
            [
                new_message(rng, extensions, i, total)
                for i in range(start, min(total, start + batch))
            ]
        )
        if start % 100_000 == 0:
            print(f"  {start:>9,} messages", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    # Population only: give most outbound messages a final status, read half the inbound
    # ones and delete 5 %, leaving the newest QUEUED outbound SMS and faxes Queued.
    c = messages.c
    async with box._db.write() as conn:
        queued_ids = (
            sa.select(c.id)
            .where(c.message_status == "Queued")
            .order_by(c.creation_time.desc())
            .limit(QUEUED)
        )
        await conn.execute(
            sa.update(messages)
            .where(c.message_status == "Queued", c.id.not_in(queued_ids))
            .values(
                message_status=sa.case((c.type == "SMS", "Delivered"), else_="Sent"),
                next_attempt_at=None,
            )
        )
        await conn.execute(
            sa.update(messages)
            .where(c.direction == "Inbound", c.id % 2 == 0)
            .values(read_status=ReadStatus.READ.value)
        )
        await conn.execute(
            sa.update(messages)
            .where(c.id % 20 == 0, c.message_status != "Queued")
            .values(availability=Availability.DELETED.value)
        )
        await conn.exec_driver_sql("ANALYZE")
    return elapsed


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def conversations_of(box: Mailbox) -> dict[int, int]:
    """An SMS conversation of each extension (the conversationId filter's value)."""
    found: dict[int, int] = {}
    async with box._db.read() as conn:
        for ext, conv in await conn.execute(
            sa.select(messages.c.extension_id, sa.func.max(messages.c.conversation_id))
            .where(messages.c.type == "SMS")
            .group_by(messages.c.extension_id)
        ):
            found[ext] = conv
    return found


def cases(conversations: dict[int, int]) -> list[tuple[str, Any]]:
    """The lists measured: (name, extension -> MessageQuery arguments)."""
    month = NOW - timedelta(days=DAYS)
    week = NOW - timedelta(days=7)
    return [
        ("default: Alive, last 24 h, page 1 of 100", lambda e: {}),
        (
            "messageType=SMS, last 7 days",
            lambda e: {"message_type": (MessageType.SMS,), "date_from": week},
        ),
        (
            "messageType=Fax, 30 days",
            lambda e: {"message_type": (MessageType.FAX,), "date_from": month},
        ),
        (
            "Inbound + Unread, 30 days",
            lambda e: {
                "direction": (Direction.INBOUND,),
                "read_status": (ReadStatus.UNREAD,),
                "date_from": month,
            },
        ),
        ("page 5 of a 30-day window", lambda e: {"date_from": month, "page": 5}),
        (
            "availability=Deleted, 30 days",
            lambda e: {"availability": (Availability.DELETED,), "date_from": month},
        ),
        (
            "conversationId, 30 days",
            lambda e: {"conversation_id": conversations.get(e, 1), "date_from": month},
        ),
        (
            "phoneNumber (a correspondent), 30 days",
            lambda e: {
                "phone_number": f"+49151{(e * 7919 + 17) % 10_000_000:07d}",
                "date_from": month,
            },
        ),
        (
            "distinctConversations, 7 days",
            lambda e: {"distinct_conversations": True, "date_from": week},
        ),
        ("perPage=1000, 30 days", lambda e: {"date_from": month, "per_page": 1000}),
    ]


async def time_queries(box: Mailbox, extensions: int, rounds: int) -> list[dict[str, Any]]:
    """Each list, for random extensions: ``find_json`` (the API's list: the page as
    JSON, written by the database) and ``find`` (the page as records), alternating
    on the same query, after one unmeasured round of each (statements compiled)."""
    rng = random.Random(11)
    box.clock.set(NOW)  # type: ignore[attr-defined]
    results = []
    for name, make in cases(await conversations_of(box)):
        fast: list[float] = []
        records: list[float] = []
        sizes = []
        for number in range(rounds + 1):
            extension = 1000 + rng.randrange(extensions)
            query = MessageQuery(extension_id=extension, **make(extension))
            started = time.perf_counter()
            page = await box.find_json(query, BASE_URL)
            middle = time.perf_counter()
            await box.find(query)
            ended = time.perf_counter()
            if number:
                fast.append((middle - started) * 1000)
                records.append((ended - middle) * 1000)
                sizes.append(page.size)
        results.append(
            {
                "query": name,
                "p50_ms": round(percentile(fast, 50), 2),
                "p99_ms": round(percentile(fast, 99), 2),
                "records_p50_ms": round(percentile(records, 50), 2),
                "records_p99_ms": round(percentile(records, 99), 2),
                "records_median": statistics.median(sizes),
            }
        )
        got = results[-1]
        print(
            f"  {name:<45} p50 {got['p50_ms']:>7} ms  p99 {got['p99_ms']:>7} ms"
            f"   (records: {got['records_p50_ms']}, {got['records_p99_ms']})",
            file=sys.stderr,
        )
    return results


async def time_leases(box: Mailbox) -> dict[str, Any]:
    types = [MessageType.SMS, MessageType.FAX]
    started = time.perf_counter()
    leased = 0
    while batch := await box.lease("bench", types=types, limit=100, lease_for=3600):
        leased += len(batch)
    elapsed = time.perf_counter() - started
    return {
        "leased": leased,
        "seconds": round(elapsed, 2),
        "messages_per_second": round(leased / elapsed),
    }


async def copy_to_postgres(path: Path, url: str) -> None:
    """The SQLite mailbox's messages and attachments, row for row, into the PostgreSQL
    mailbox at ``url`` (opened once, so migrated), then VACUUM ANALYZE."""
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    target = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for table in ("messages", "attachments"):
            kinds = {
                r["column_name"]: r["data_type"]
                for r in await target.fetch(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = $1",
                    table,
                )
            }
            cursor = source.execute(f"SELECT * FROM {table}")  # noqa: S608 (our names)
            columns = [d[0] for d in cursor.description]
            booleans = {i for i, c in enumerate(columns) if kinds[c] == "boolean"}
            while batch := cursor.fetchmany(50_000):
                rows = [
                    tuple(
                        (None if v is None else bool(v)) if i in booleans else v
                        for i, v in enumerate(row)
                    )
                    for row in batch
                ]
                await target.copy_records_to_table(table, records=rows, columns=columns)
            print(f"  copied {table}", file=sys.stderr)
        await target.execute("VACUUM ANALYZE")
    finally:
        await target.close()
        source.close()


async def time_postgres(workdir: Path, extensions: int, rounds: int) -> list[dict[str, Any]]:
    """The same lists on PostgreSQL: a throwaway server (as the tests start one) holding
    a copy of the SQLite mailbox. (Its helpers run their own event loop: in a thread.)"""
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
        base = await asyncio.to_thread(stack.enter_context, postgres_server())
        url = await asyncio.to_thread(create_database, base, "bench")
        settings = MailboxSettings(data_dir=Path(scratch), database_url=url, max_messages=0)
        box = await Mailbox.open(settings, clock=ManualClock(NOW))
        try:
            await copy_to_postgres(workdir / "mailbox.sqlite3", url)
            return await time_queries(box, extensions, rounds)
        finally:
            await box.close()
            await asyncio.to_thread(stack.close)


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--extensions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--keep", type=Path, help="build in (and keep) this directory")
    parser.add_argument(
        "--no-leases", action="store_true", help="skip the lease run (it leases the Queued)"
    )
    parser.add_argument(
        "--postgres", action="store_true", help="the lists on a PostgreSQL copy too"
    )
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
        leases = None
        if not args.no_leases:
            print("leases", file=sys.stderr)
            leases = await time_leases(box)
    finally:
        await box.close()
    postgres = None
    if args.postgres:
        print("list queries on PostgreSQL", file=sys.stderr)
        postgres = await time_postgres(workdir, args.extensions, args.rounds)
    db_bytes = sum(
        (workdir / n).stat().st_size
        for n in ("mailbox.sqlite3", "mailbox.sqlite3-wal")
        if (workdir / n).exists()
    )
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "messages": args.messages,
        "extensions": args.extensions,
        "populate_seconds": round(populate_seconds, 1) if populate_seconds else None,
        "populate_messages_per_second": round(args.messages / populate_seconds)
        if populate_seconds
        else None,
        "queries": queries,
        "postgres_queries": postgres,
        "lease": leases,
        "database_bytes": db_bytes,
        "blob_bytes": size_of(workdir / "blobs"),
        "bytes_per_message": round(db_bytes / args.messages),
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "mailbox.json").write_text(json.dumps(report, indent=2) + "\n")

    def table(rows: list[dict[str, Any]]) -> list[str]:
        return [
            "| query | find_json p50 | p99 | find p50 | p99 | records |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            *[
                f"| {q['query']} | {q['p50_ms']} | {q['p99_ms']} | {q['records_p50_ms']} "
                f"| {q['records_p99_ms']} | {q['records_median']:g} |"
                for q in rows
            ],
        ]

    lines = [
        f"# Mailbox benchmark ({report['date']})",
        "",
        f"{args.messages:,} messages over {args.extensions} extensions, 30 days, SQLite (WAL).",
        "",
        "`find_json` is the API's list (the page as JSON, written by the database); `find`",
        "returns records. Milliseconds, p50 / p99.",
        "",
        *table(queries),
        *(
            ["", "The same on PostgreSQL (a copy of the mailbox):", "", *table(postgres)]
            if postgres
            else []
        ),
        "",
        f"Lease throughput (one worker, batches of 100): {leases['messages_per_second']:,} "
        f"messages/s ({leases['leased']:,} in {leases['seconds']} s)."
        if leases
        else "Leases: not measured (--no-leases).",
        f"Database: {db_bytes / 1e6:,.0f} MB ({report['bytes_per_message']} bytes/message); "
        f"attachment files {report['blob_bytes'] / 1e6:,.1f} MB.",
    ]
    if populate_seconds:
        lines.append(
            f"Population through create_many: {report['populate_messages_per_second']:,}"
            " messages/s."
        )
    (out / "mailbox.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if not args.keep:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    asyncio.run(main())
