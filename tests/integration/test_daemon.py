"""``gatewayd run`` as a process: starts, sweeps, stops cleanly on SIGTERM or SIGINT,
and fails to start with its own exit code and one log line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.smtp_client import free_port

EXIT_CONFIG, EXIT_STARTUP = 3, 4


def start(config: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "gatewayd", "run", "--config", str(config), "--grace", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


def wait_for(
    process: subprocess.Popen[str], *events: str, timeout: float = 30
) -> list[dict[str, object]]:
    """Read JSON log lines from the daemon's stdout until every one of ``events`` has
    appeared, in whatever order the daemon's tasks logged them."""
    assert process.stdout is not None
    seen: list[dict[str, object]] = []
    missing = set(events)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(json.loads(line))
        missing.discard(str(seen[-1]["event"]))
        if not missing:
            return seen
    raise AssertionError(f"no {missing} within {timeout}s; saw {[s['event'] for s in seen]}")


def config_for(tmp_path: Path, data_dir: Path | None = None) -> Path:
    config = tmp_path / "gatewayd.toml"
    config.write_text(
        f'[mailbox]\ndata_dir = "{data_dir or tmp_path / "data"}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[api]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[log]\nformat = "json"\nfile = "{tmp_path / "gatewayd.log"}"\n'
    )
    return config


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_starts_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    daemon = start(config_for(tmp_path))
    try:
        # The sweeper's first pass may finish before or after the start is logged.
        events = [e["event"] for e in wait_for(daemon, "mailbox.swept", "daemon.started")]
        assert "mailbox.opened" in events
        assert events.index("mailbox.opened") < events.index("daemon.started")
        daemon.send_signal(sig)
        out, err = daemon.communicate(timeout=30)
    finally:
        daemon.kill()
        daemon.communicate()  # closes the pipes, whichever way the test ended
    assert daemon.returncode == 0, err
    tail = [json.loads(line) for line in out.splitlines()]
    events = [e["event"] for e in tail]
    assert events[0] == "daemon.signal"
    assert events.index("smtp.stopped") < events.index("daemon.stopped") == len(events) - 1
    assert tail[-1]["exit_code"] == 0
    assert (tmp_path / "data" / "mailbox.sqlite3").exists()
    logged = [
        json.loads(line)["event"] for line in (tmp_path / "gatewayd.log").read_text().splitlines()
    ]
    # This config has no users and the simulator's password: said first, then the start.
    assert logged[:3] == ["config.warning", "config.warning", "mailbox.opened"]
    assert logged[-1] == "daemon.stopped"


def test_a_startup_failure_has_its_own_exit_code(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data directory should be")
    daemon = start(config_for(tmp_path, data_dir=blocker))
    out, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == EXIT_STARTUP
    (failure,) = [json.loads(x) for x in out.splitlines() if "daemon.startup_failed" in x]
    assert "not-a-directory" in str(failure["error"])
    assert failure["level"] == "error"


def test_an_invalid_config_has_its_own_exit_code(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[smtp]\nlisten = "127.0.0.1:99999"\n')
    daemon = start(config)
    _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == EXIT_CONFIG
    assert "smtp.listen" in err


def test_a_corrupt_database_is_a_startup_failure(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "mailbox.sqlite3").write_bytes(b"this is not a database" * 100)
    daemon = start(config_for(tmp_path))
    out, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == EXIT_STARTUP
    assert "daemon.startup_failed" in out
    assert "Traceback" not in out
