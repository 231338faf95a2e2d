"""The hostile suite's parts: a real ``gatewayd run`` on loopback ports (its log in a
file, read as JSON lines), the resident memory of a process and everything it
started (sampled from /proc), and the JSON log of the test's own process.

Every address is on loopback; a test that needs several client addresses binds its
sockets to 127.0.0.2, 127.0.0.3, ...
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gatewayd.config.settings import LogSettings
from gatewayd.credentials import hash_token
from gatewayd.logging import configure_logging
from tests.conftest import ROOT
from tests.shipped_config import shipped_config
from tests.smtp_client import free_port

TOKEN = "hostile-suite-token"
API_PREFIX = "/restapi/v1.0/account/~/extension/~"


def set_key(text: str, section: str, key: str, value: str) -> str:
    """``key = value`` in ``[section]`` of a TOML text that already sets it."""
    start = text.index(f"\n[{section}]\n")
    pattern = re.compile(rf"^{re.escape(key)} = .*$", re.MULTILINE)
    match = pattern.search(text, start)
    assert match is not None, f"[{section}] {key} is not in the config"
    following = text.find("\n[", start + 1)
    assert following == -1 or match.start() < following, f"[{section}] has no {key}"
    return text[: match.start()] + f"{key} = {value}" + text[match.end() :]


def tree_of(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:  # a process may end while it is looked at: it has no children then
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def own_rss_mb(pid: int) -> float:
    """Resident memory of the one process ``pid`` (0 when it is gone), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and everything below it, in MB."""
    return sum(own_rss_mb(each) for each in tree_of(pid))


@dataclass
class Daemon:
    """A running ``gatewayd run``."""

    process: subprocess.Popen[bytes]
    config: Path
    work: Path
    smtp_port: int
    api_port: int
    sim_port: int
    log_file: Path
    _read: int = field(default=0)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        if not self.log_file.exists():
            return lines
        for raw in self.log_file.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
        return lines

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.log() if line.get("event") == name]

    def wait_for(self, name: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if found:
                return found[-1]
            if self.process.poll() is not None:
                raise AssertionError(f"gatewayd exited ({self.process.returncode}) before {name}")
            time.sleep(0.05)
        raise AssertionError(f"no {name} in the log within {timeout} s")

    def longest_stall(self) -> float:
        """The longest event-loop stall the daemon's watchdog logged (0: none)."""
        return max((float(s["seconds"]) for s in self.events("loop.stalled")), default=0.0)

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


Settings = dict[tuple[str, str], str]  # (section, key) -> TOML value


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start ``gatewayd run`` on the shipped config with ``settings`` changed; stopped
    at the end of the test."""
    running: list[Daemon] = []

    def start(
        settings: Settings | None = None,
        *,
        users: str = "",
        preexec: Callable[[], None] | None = None,
        sim_port: int | None = None,
    ) -> Daemon:
        work = tmp_path / f"d{len(running)}"
        work.mkdir()
        smtp_port, api_port = free_port(), free_port()
        sim = sim_port or free_port()
        log_file = work / "gatewayd.log"
        config = shipped_config(
            work,
            smtp_port=smtp_port,
            api_port=api_port,
            sim_port=sim,
            token_hash=hash_token(TOKEN),
            log_file=log_file,
        )
        text = config.read_text()
        for (section, key), value in (settings or {}).items():
            text = set_key(text, section, key, value)
        config.write_text(text + users)
        with open(work / "stderr.txt", "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "gatewayd", "run", "--config", str(config), "--grace", "5"],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=preexec,  # noqa: PLW1509 - the test process forks from one thread
            )
        daemon = Daemon(process, config, work, smtp_port, api_port, sim, log_file)
        running.append(daemon)
        daemon.wait_for("daemon.started")
        return daemon

    yield start
    for daemon in running:
        daemon.stop()


@pytest.fixture
def json_log() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """This process's log as JSON lines (read them by calling the fixture's value)."""
    out = io.StringIO()
    configure_logging(LogSettings(format="json", file=None), stream=out)
    yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        handler.close()


def connect_from(host: str, port: int, source: str = "127.0.0.1") -> socket.socket:
    """A TCP connection to ``host:port`` from the loopback address ``source``."""
    return socket.create_connection((host, port), timeout=10, source_address=(source, 0))


def read_line(sock: socket.socket) -> bytes:
    """One line (up to CRLF), or what came before the connection closed."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def reply(sock: socket.socket) -> bytes:
    """An SMTP reply's last line."""
    line = read_line(sock)
    while line[3:4] == b"-":
        line = read_line(sock)
    return line
