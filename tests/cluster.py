"""Several ``gatewayd run`` nodes on one PostgreSQL mailbox, for the cluster tests and
bench/cluster.py: their configs, their processes (logs to files, so a full pipe never
stops one), a fax machine that answers every job in the shared spool, a TCP proxy that
can cut a node's database connections, and the mailbox's view of the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.shipped_config import ROOT, shipped_config
from tests.smtp_client import free_port


@dataclass
class Node:
    name: str
    work: Path
    smtp_port: int
    api_port: int
    config: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.work / "stdout.log"

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gatewayd", "run", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
            )

    def events(self) -> list[dict[str, object]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def wait_started(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("event") == "daemon.started" for e in self.events()):
                return
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"node {self.name} exited: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"node {self.name} did not start: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            return -9


def make_node(
    root: Path,
    name: str,
    *,
    database_url: str,
    sim_port: int,
    spool: Path,
    relay_port: int | None = None,
    extra: str = "",
) -> Node:
    work = root / name
    work.mkdir(parents=True)
    smtp_port, api_port = free_port(), free_port()
    config = shipped_config(
        work, smtp_port=smtp_port, api_port=api_port, sim_port=sim_port, relay_port=relay_port
    )
    text = config.read_text()
    for old, new in (
        ('database_url = ""', f'database_url = "{database_url}"'),
        ('name = ""\n# How often', f'name = "{name}"\n# How often'),
        ('heartbeat_interval = "5s"', 'heartbeat_interval = "500ms"'),
        ('stale_after = "30s"', 'stale_after = "3s"'),
        ("rate_per_minute = 60", "rate_per_minute = 0"),
        ("max_messages = 10000", "max_messages = 0"),
        ("window = 10\n", "window = 32\n"),
        ("tps = 100.0", "tps = 0"),
        (f'outbox = "{work / "outbox"}"', f'outbox = "{spool / "outbox"}"'),
        (f'results = "{work / "results"}"', f'results = "{spool / "results"}"'),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    config.write_text(text + extra)
    return Node(name, work, smtp_port, api_port, config)


class FaxMachine:
    """Plays the fax system behind the shared spool: every job handed over is sent."""

    def __init__(self, spool: Path) -> None:
        self.outbox, self.results = spool / "outbox", spool / "results"
        self.answered: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FaxMachine:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            if not self.outbox.is_dir():
                continue
            for job in self.outbox.glob("*.json"):
                ref = job.stem
                if ref in self.answered:
                    continue
                with contextlib.suppress(OSError, ValueError):
                    pages = json.loads(job.read_text())["pages"]
                    result = self.results / f"{ref}.result.json"
                    partial = result.with_suffix(".part")
                    partial.write_text(json.dumps({"status": "sent", "pages": pages}))
                    partial.rename(result)
                    self.answered.add(ref)


class Proxy:
    """A TCP proxy to PostgreSQL that can cut: every connection through it closed, and
    new ones refused, for a while."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.cut_until = 0.0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()

    def cut(self, seconds: float) -> None:
        self.cut_until = time.monotonic() + seconds
        for writer in list(self._writers):
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self.cut_until:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}
