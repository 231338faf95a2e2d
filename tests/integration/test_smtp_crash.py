"""Acceptance is durable: a daemon killed (SIGKILL) right after its 250 still has the
message when it comes back; one killed before its 250 left no rows and no files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gatewayd.config.settings import MailboxSettings
from gatewayd.mailbox import Mailbox, MessageQuery
from gatewayd.mailbox._schema import EPOCH
from gatewayd.model import Availability
from tests.conftest import ROOT
from tests.smtp_client import free_port, message, send

PDF = (ROOT / "tests" / "data" / "docs" / "three-pages.pdf").read_bytes()
USER = """
[[users]]
email = "alice@example.com"
account_id = 1
extension_id = 101
extension_number = "101"
sms_numbers = ["+4930123456"]
"""


def start_daemon(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    config = tmp_path / "gatewayd.toml"
    config.write_text(
        f'[mailbox]\ndata_dir = "{tmp_path / "data"}"\n[smtp]\nlisten = "127.0.0.1:{port}"\n'
        f'[api]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[fax.spool]\noutbox = "{tmp_path / "outbox"}"\nresults = "{tmp_path / "results"}"\n'
        f'[log]\nformat = "json"\nfile = ""\n{USER}'
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "gatewayd", "run", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert daemon.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = daemon.stdout.readline()
        if line and json.loads(line)["event"] == "smtp.listening":
            return daemon
    daemon.kill()
    raise AssertionError("the daemon did not start listening")


def stored(data_dir: Path) -> tuple[list[int], list[Path]]:
    async def read() -> list[int]:
        box = await Mailbox.open(MailboxSettings(data_dir=data_dir))
        try:
            page = await box.find(MessageQuery(extension_id=None, date_from=EPOCH,
                                               availability=tuple(Availability)))  # fmt: skip
            for record in page.records:  # every row's files are there and whole
                for attachment in record.attachments:
                    assert box._blobs.path(attachment.sha256).stat().st_size == attachment.size
            return [m.id for m in page.records]
        finally:
            await box.close()

    files = [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]
    return asyncio.run(read()), files


@pytest.mark.slow
def test_killed_after_250_the_message_is_there(tmp_path: Path) -> None:
    port = free_port()
    daemon = start_daemon(tmp_path, port)
    try:
        raw = message("+4940123456@fax.example.com", "note",
                      attachments=[(PDF, "application/pdf", "a.pdf")])  # fmt: skip
        reply = send(port, "alice@example.com", ["+4940123456@fax.example.com"], raw)
        assert reply.code == 250, reply
        daemon.send_signal(signal.SIGKILL)
    finally:
        daemon.kill()
        daemon.communicate(timeout=30)
    ids, files = stored(tmp_path / "data")
    assert ids == [int(reply.text.split()[-1])]
    assert len(files) == 1


@pytest.mark.slow
def test_killed_before_250_nothing_is_left(tmp_path: Path) -> None:
    port = free_port()
    daemon = start_daemon(tmp_path, port)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
            sock.makefile("rwb") as stream,
        ):
            stream.readline()
            for command in (b"EHLO c.example", b"MAIL FROM:<alice@example.com>",
                            b"RCPT TO:<+4940123456@fax.example.com>", b"DATA"):  # fmt: skip
                stream.write(command + b"\r\n")
                stream.flush()
                while stream.readline()[3:4] == b"-":
                    pass
            raw = message("+4940123456@fax.example.com", "note",
                          attachments=[(PDF, "application/pdf", "a.pdf")])  # fmt: skip
            stream.write(raw[: len(raw) // 2])  # half the message, no end of data
            stream.flush()
            time.sleep(0.3)
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(timeout=30)
    finally:
        daemon.kill()
        daemon.communicate(timeout=30)
    ids, files = stored(tmp_path / "data")
    assert ids == []
    assert files == []
