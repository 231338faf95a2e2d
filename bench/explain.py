"""The plans of the message-store list, for each list bench/mailbox.py measures.

    python bench/explain.py --keep DIR [--postgres]

SQLite: EXPLAIN QUERY PLAN of the statement ``Mailbox.find_json`` runs, on the mailbox
bench/mailbox.py built in DIR (with the statistics it gathered). PostgreSQL
(``--postgres``): a throwaway server, as the tests start one (Debian ``postgresql``),
the same rows copied into it, VACUUM ANALYZE, then EXPLAIN (ANALYZE, BUFFERS) of the
same statement as compiled for asyncpg. Each for extension 1005 (any would do).
Prints the plans and writes bench/results/explain.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.dialects.sqlite import aiosqlite

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import mailbox as mailbox_bench  # noqa: E402  (bench/mailbox.py)

from gatewayd.clock import ManualClock  # noqa: E402
from gatewayd.config.settings import MailboxSettings  # noqa: E402
from gatewayd.mailbox import Mailbox, MessageQuery  # noqa: E402
from gatewayd.mailbox._message_json import BASE  # noqa: E402
from gatewayd.mailbox._queries import _json_statement, _plan  # noqa: E402
from tests.postgres import create_database, postgres_server  # noqa: E402

EXTENSION = 1005


def queries(conversations: dict[int, int]) -> list[tuple[str, MessageQuery]]:
    return [
        (name, MessageQuery(extension_id=EXTENSION, **make(EXTENSION)))
        for name, make in mailbox_bench.cases(conversations)
    ]


def conversations_in(db: sqlite3.Connection) -> dict[int, int]:
    rows = db.execute(
        "SELECT extension_id, max(conversation_id) FROM messages WHERE type = 'SMS' "
        "GROUP BY extension_id"
    )
    return dict(rows.fetchall())


def sqlite_plans(path: Path, dialect: Any) -> list[tuple[str, str]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    clock = ManualClock(mailbox_bench.NOW)
    out = []
    for name, query in queries(conversations_in(db)):
        plan = _plan(query, clock)
        rows = _json_statement(dialect, plan.shape)
        found = db.execute(
            "EXPLAIN QUERY PLAN " + rows.sql, rows.parameters({**plan.values, BASE: ""})
        ).fetchall()
        depth: dict[int, int] = {0: -1}
        lines = []
        for node, parent, _unused, detail in found:
            depth[node] = depth.get(parent, -1) + 1
            lines.append("  " * depth[node] + detail)
        out.append((name, "\n".join(lines)))
    db.close()
    return out


async def postgres_plans(path: Path, url: str) -> list[tuple[str, str]]:
    box = await Mailbox.open(
        MailboxSettings(data_dir=Path(tempfile.mkdtemp()), database_url=url),
        clock=ManualClock(mailbox_bench.NOW),
    )
    async with box._db.read() as conn:
        dialect = conn.dialect
    await box.close()
    await mailbox_bench.copy_to_postgres(path, url)
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conversations = conversations_in(source)
    source.close()
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    clock = ManualClock(mailbox_bench.NOW)
    out = []
    try:
        for name, query in queries(conversations):
            plan = _plan(query, clock)
            rows = _json_statement(dialect, plan.shape)
            parameters = rows.parameters({**plan.values, BASE: ""})
            for _ in range(2):  # warm: the second run's plan and times are shown
                found = await conn.fetch(
                    "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON) " + rows.sql, *parameters
                )
            out.append((name, "\n".join(r[0] for r in found)))
    finally:
        await conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, required=True, help="bench/mailbox.py's mailbox")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL's plans too")
    args = parser.parse_args()
    path = args.keep / "mailbox.sqlite3"
    sections = [("SQLite", sqlite_plans(path, aiosqlite.dialect()))]
    if args.postgres:
        with postgres_server() as base:
            url = create_database(base, "explain")
            sections.append(("PostgreSQL", asyncio.run(postgres_plans(path, url))))
    lines = []
    for engine, plans in sections:
        lines += [f"# {engine}", ""]
        for name, text in plans:
            lines += [f"## {name}", "", "```", text, "```", ""]
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "explain.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
