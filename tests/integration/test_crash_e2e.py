"""The gateway under load, as processes: ``gatewayd run`` sending 1,000 Queued SMS to
``gatewayd smsc-sim``. Killed with SIGKILL halfway and started again, it loses none
and sends again only what was in flight, each marked with an event; stopped with
SIGTERM halfway, it drains, exits 0 and leaves nothing leased."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gatewayd.config.settings import MailboxSettings
from gatewayd.mailbox import Mailbox, NewAttachment, NewMessage, Party
from gatewayd.model import Direction, MessageType
from tests.conftest import ROOT
from tests.integration.test_sms_daemon import simulator
from tests.shipped_config import shipped_config
from tests.smtp_client import free_port

pytestmark = pytest.mark.slow
TOTAL = 1000


def queue_sms(data: Path) -> None:
    async def fill() -> None:
        box = await Mailbox.open(MailboxSettings(data_dir=data))
        try:
            await box.create_many([
                NewMessage(
                    account_id=1, extension_id=101, type=MessageType.SMS,
                    direction=Direction.OUTBOUND, from_=Party(phone_number="+4930123456"),
                    to=(Party(phone_number=f"+49151{n:06d}5555"),), origin="test",
                    subject=f"Load {n}", attachments=(NewAttachment.text_of_message(),),
                )
                for n in range(TOTAL)
            ])  # fmt: skip
        finally:
            await box.close()

    asyncio.run(fill())


def statuses(data: Path) -> dict[str, int]:
    with sqlite3.connect(data / "mailbox.sqlite3", timeout=30) as db:
        return dict(db.execute("select message_status, count(*) from messages group by 1"))


def start(path: Path, log: Path) -> subprocess.Popen[str]:
    """``gatewayd run`` with its log lines going to a file (a pipe nobody reads fills up
    under load), once it says it has started."""
    with log.open("a") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gatewayd", "run", "--config", str(path), "--grace", "20"],
            stdout=out, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    seen = log.stat().st_size if log.exists() else 0
    until(lambda: '"daemon.started"' in log.read_text()[seen:] or daemon.poll() is not None,
          within=60)  # fmt: skip
    assert daemon.poll() is None, log.read_text()[-3000:]
    return daemon


def until(check: object, within: float) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_killed_gateway_loses_nothing_and_marks_what_it_may_repeat(tmp_path: Path) -> None:
    data = tmp_path / "data"
    queue_sms(data)
    sim_port = free_port()
    sim = simulator(sim_port)
    path = shipped_config(tmp_path, sim_port=sim_port)
    try:
        log = tmp_path / "daemon.log"
        log.touch()
        daemon = start(path, log)
        until(lambda: sum(v for k, v in statuses(data).items() if k != "Queued") >= TOTAL // 2,
              within=60)  # fmt: skip
        daemon.send_signal(signal.SIGKILL)
        daemon.communicate(timeout=30)
        at_crash = statuses(data)
        restarted = time.monotonic()
        again = start(path, log)
        try:
            until(lambda: statuses(data).get("Delivered", 0) == TOTAL, within=120)
        finally:
            if again.poll() is None:
                again.send_signal(signal.SIGTERM)
        recovered = time.monotonic() - restarted
        again.wait(timeout=60)
        assert again.returncode == 0, log.read_text()[-3000:]
    finally:
        sim.send_signal(signal.SIGTERM)
        sim_out, _ = sim.communicate(timeout=30)
    submitted = int(sim_out.split(" submit_sm")[0].rsplit(" ", 1)[-1])
    duplicates = submitted - TOTAL
    with sqlite3.connect(data / "mailbox.sqlite3") as db:
        marked = db.execute(
            "select count(distinct message_id) from message_events where reason like "
            "'in flight when the gateway stopped unexpectedly%'"
        ).fetchone()[0]
    print(
        f"\ncrash: {at_crash} at the kill; {duplicates} duplicate submit_sm; {marked} "
        f"messages marked; all {TOTAL} Delivered {recovered:.1f} s after the restart"
    )
    assert statuses(data) == {"Delivered": TOTAL}  # none lost
    assert 0 <= duplicates <= marked  # only what was in flight went twice, and it says so


def test_sigterm_under_load_drains_and_leaves_nothing_leased(tmp_path: Path) -> None:
    data = tmp_path / "data"
    queue_sms(data)
    sim_port = free_port()
    sim = simulator(sim_port)
    try:
        log = tmp_path / "daemon.log"
        log.touch()
        daemon = start(shipped_config(tmp_path, sim_port=sim_port), log)
        until(lambda: statuses(data).get("Queued", TOTAL) < TOTAL * 0.8, within=60)
        stopping = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        drained = time.monotonic() - stopping
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.communicate(timeout=30)
    assert daemon.returncode == 0, log.read_text()[-3000:]
    with sqlite3.connect(data / "mailbox.sqlite3") as db:
        leased = db.execute(
            "select count(*) from messages where message_status = 'Queued' "
            "and lease_owner is not null"
        ).fetchone()[0]
    print(f"\ndrain: {drained:.2f} s, {statuses(data)}")
    assert leased == 0
    assert drained < 30
