"""One daemon per data directory: a second ``gatewayd run`` on the same config stops
at the lock file, exit 4, naming the file and the first daemon's pid, before it opens
the mailbox or binds anything; the lock goes with the process that held it."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest

from gatewayd import lockfile
from gatewayd.errors import AlreadyRunning
from tests.integration.test_daemon import EXIT_STARTUP, config_for, start, wait_for

SAYS_ONLY = ("daemon", "config")  # config.warning lines come before the lock is tried


def test_a_second_daemon_on_the_same_data_directory_stops_at_the_lock(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    first = start(config)
    try:
        wait_for(first, "daemon.started")
        second = start(config)
        out, err = second.communicate(timeout=60)
        assert second.returncode == EXIT_STARTUP, err
        lines = [json.loads(line) for line in out.splitlines()]
        (failure,) = [x for x in lines if x["event"] == "daemon.startup_failed"]
        lock = tmp_path / "data" / "gatewayd.lock"
        assert failure["error"] == (
            f"another gatewayd (pid {first.pid}) is running on this data directory: it holds {lock}"
        )
        # Nothing of the second got going: no mailbox, link, carrier, API or SMTP line.
        started = [x["event"] for x in lines if x["event"].split(".")[0] not in SAYS_ONLY]
        assert started == []
        assert first.poll() is None  # the first runs on, untouched
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
        assert first.returncode == 0
    finally:
        first.kill()
        first.communicate()


def test_the_lock_goes_with_its_holder(tmp_path: Path) -> None:
    held = lockfile.acquire(tmp_path / "data")
    assert (tmp_path / "data" / "gatewayd.lock").read_text().strip().isdigit()
    with pytest.raises(AlreadyRunning) as refused:
        lockfile.acquire(tmp_path / "data")  # another open file description: refused too
    assert refused.value.path == tmp_path / "data" / "gatewayd.lock"
    held.release()
    lockfile.acquire(tmp_path / "data").release()  # free again


def test_a_killed_daemon_leaves_no_stale_lock(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    first = start(config)
    try:
        wait_for(first, "daemon.started")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.kill()
        first.communicate()
    again = start(config)
    try:
        wait_for(again, "daemon.started")
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=60)
        assert again.returncode == 0
    finally:
        again.kill()
        again.communicate()


def test_the_api_port_is_free_for_the_first_daemon_only(tmp_path: Path) -> None:
    """The second daemon never binds: after it has given up, the first still answers."""
    config = config_for(tmp_path)
    api_port = int(config.read_text().split('[api]\nlisten = "127.0.0.1:')[1].split('"')[0])
    first = start(config)
    try:
        wait_for(first, "daemon.started")
        second = start(config)
        second.communicate(timeout=60)
        assert second.returncode == EXIT_STARTUP
        with socket.create_connection(("127.0.0.1", api_port), timeout=5):
            pass
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
