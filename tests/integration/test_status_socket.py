"""The daemon's status socket and what asks it (gatewayd/status.py, gatewayd/control.py):
a real Unix socket, a real Observer over a real mailbox (SQLite and PostgreSQL), the
stdlib client ``gatewayd status`` uses."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import pytest

from gatewayd import control
from gatewayd.config.settings import Settings
from gatewayd.mailbox import Mailbox
from gatewayd.status import Observer, StatusSocket
from tests.conftest import fax


async def test_the_socket_answers_with_the_status_document(
    mailbox: Mailbox, tmp_path: Path
) -> None:
    await mailbox.create(fax())
    observer = Observer(mailbox, Settings())
    observer.watch(listening=lambda: {"smtp": True, "api": True})
    # deeper than a Unix socket address can name: reached through the directory
    deep = tmp_path.joinpath(*(["a-rather-long-directory-name"] * 5))
    deep.mkdir(parents=True)
    assert len(os.fsencode(deep / control.SOCKET_NAME)) > 108
    server = StatusSocket(observer, deep)
    await server.start()
    try:
        mode = stat.S_IMODE((deep / control.SOCKET_NAME).stat().st_mode)
        assert mode == 0o660
        document = await asyncio.to_thread(control.ask, deep)
    finally:
        await server.close()
    assert (document["source"], document["daemon"]["running"]) == ("daemon", True)
    assert document["daemon"]["pid"] == os.getpid()
    assert {q["type"]: q["depth"] for q in document["queue"]} == {"SMS": 0, "Fax": 1}
    assert document["links"] == []
    checks = {c["name"]: c["ok"] for c in document["checks"]}
    # Settings() configures the simulator's link, and this observer watches none
    assert checks == {"mailbox": True, "listeners": True, "sms": False}
    assert document["ready"] is False
    assert not (deep / control.SOCKET_NAME).exists()  # closed: gone
    with pytest.raises(control.NotRunning, match="does not exist"):
        control.ask(deep)


async def test_a_socket_left_by_a_dead_daemon(mailbox: Mailbox, tmp_path: Path) -> None:
    path = tmp_path / control.SOCKET_NAME
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays; nobody listens
    with pytest.raises(control.NotRunning, match="left by one that stopped"):
        await asyncio.to_thread(control.ask, tmp_path)
    server = StatusSocket(Observer(mailbox, Settings()), tmp_path)
    await server.start()  # the lock is ours: the old file is replaced
    try:
        document = await asyncio.to_thread(control.ask, tmp_path)
        assert document["source"] == "daemon"
    finally:
        await server.close()
