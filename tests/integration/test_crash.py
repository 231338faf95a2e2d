"""A process killed (SIGKILL) in the middle of writing leaves a consistent mailbox:
every message it confirmed is there, every row's attachment file is there and whole,
every message has its events, and SQLite finds nothing wrong."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gatewayd.config.settings import MailboxSettings
from gatewayd.mailbox import Mailbox
from tests.conftest import ROOT

WRITER = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    from gatewayd.config.settings import MailboxSettings
    from gatewayd.mailbox import Mailbox
    from gatewayd.model import MessageStatus, MessageType
    sys.path.insert(0, sys.argv[2])
    from tests.conftest import fax, sms

    async def main(data_dir):
        box = await Mailbox.open(MailboxSettings(data_dir=Path(data_dir)))
        n = 0
        while True:
            n += 1
            # Big and small attachments, several messages per transaction.
            batch = [fax(document=os.urandom(256 * 1024)), sms(text=f"text {n}"), fax()]
            created = await box.create_many(batch)
            print("committed", *[m.id for m in created], flush=True)
            for leased in await box.lease("w", types=[MessageType.FAX], limit=2):
                await box.transition(leased.id, MessageStatus.SENT, reason="ok", lease_owner="w")
                print("sent", leased.id, flush=True)

    asyncio.run(main(sys.argv[1]))
    """
)


def _check_consistency(data_dir: Path, confirmed: set[int], sent: set[int]) -> None:
    db = sqlite3.connect(data_dir / "mailbox.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        ids = {row[0] for row in db.execute("SELECT id FROM messages")}
        assert confirmed <= ids, "a message confirmed as committed is missing"
        for message_id, status in db.execute("SELECT id, message_status FROM messages"):
            events = db.execute(
                "SELECT from_value, to_value FROM message_events WHERE message_id = ? "
                "AND kind = 'status' ORDER BY id",
                (message_id,),
            ).fetchall()
            assert events[0][0] is None, "the first event is the creation"
            assert events[-1][1] == status, "the last status event matches the status"
        for message_id in sent:
            (status,) = db.execute(
                "SELECT message_status FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            assert status == "Sent"
        for sha256, size in db.execute(
            "SELECT sha256, size FROM attachments WHERE sha256 IS NOT NULL"
        ):
            blob = data_dir / "blobs" / sha256[:2] / sha256
            data = blob.read_bytes()
            assert len(data) == size
            assert hashlib.sha256(data).hexdigest() == sha256
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [0.7, 1.3, 2.1])
def test_a_killed_writer_leaves_a_consistent_mailbox(tmp_path: Path, kill_after: float) -> None:
    data_dir = tmp_path / "data"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data_dir), str(ROOT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert writer.stdout is not None
    first = writer.stdout.readline()  # started and committed once (slow on a busy machine)
    time.sleep(kill_after)  # then work for kill_after seconds
    writer.send_signal(signal.SIGKILL)
    rest, err = writer.communicate(timeout=30)
    out = first + rest
    assert writer.returncode == -signal.SIGKILL, err
    confirmed = {
        int(x)
        for line in out.splitlines()
        if line.startswith("committed ")
        for x in line.split()[1:]
    }
    sent = {int(line.split()[1]) for line in out.splitlines() if line.startswith("sent ")}
    assert len(confirmed) > 10, f"the writer did too little before the kill: {err[-500:]}"
    _check_consistency(data_dir, confirmed, sent)

    async def reopen() -> None:
        # The daemon's next start: the mailbox opens, and the orphan scan (files whose
        # rows never committed) leaves every referenced file in place.
        box = await Mailbox.open(MailboxSettings(data_dir=data_dir))
        try:
            await box.sweep(orphans=True)
        finally:
            await box.close()

    asyncio.run(reopen())
    _check_consistency(data_dir, confirmed, sent)
