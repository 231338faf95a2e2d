"""The processes of bench/sms_vs_kannel.py other than the gateways: the SMSC peer, the
load processes of bench/sms_load.py, and the meter of processor time.

- ``Peer``: bench/smsc_peer/peer.js (node-smpp) in its own process, driven over its
  loopback control port (stats, duplicates, reset, hold and release of binds).
  ``ensure_peer_installed`` runs ``npm ci`` there when its package is missing.
- ``Load`` and ``Sink``: sms_load's clients and DLR sink, each a spawned process that
  says when it is ready and starts on ``go`` (the sink stops on ``stop``).
- ``Meter``: utime + stime from /proc of named processes (each with its descendants),
  read before the first request and at the end, and of gatewayd's main thread (its
  event loop), and of its SMS process (python -m gatewayd.sms.process, a child of
  gatewayd: links, dispatcher, receipts) and that one's main thread; and from
  /proc/.../schedstat how long their threads were runnable but waiting for a core (the
  machine is shared: this is what the other programs took).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import sms_load

from tests.smtp_client import free_port

ROOT = Path(__file__).resolve().parent.parent
PEER_DIR = ROOT / "bench" / "smsc_peer"
MP = multiprocessing.get_context("spawn")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(text: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def wait_until(check: Callable[[], bool], seconds: float, failure: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with suppress(OSError, httpx.HTTPError):
            if check():
                return
        time.sleep(0.1)
    raise SystemExit(f"sms_vs_kannel: {failure}")


def listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def load_now() -> dict[str, Any]:
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    return {"loadavg": [round(x, 2) for x in os.getloadavg()], "uptime": uptime.stdout.strip()}


# -- processor time ----------------------------------------------------------------------


def _ticks(stat: str) -> tuple[int, int]:
    """(ppid, utime + stime) from a /proc/.../stat line."""
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float:
    """utime + stime of PID and of its living descendants."""
    own: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError, ValueError):
                own[int(entry.name)] = _ticks((entry / "stat").read_text())
    total, family = 0, {pid}
    changed = True
    while changed:
        changed = False
        for child, (parent, _) in own.items():
            if parent in family and child not in family:
                family.add(child)
                changed = True
    for member in family:
        total += own.get(member, (0, 0))[1]
    return total / CLK_TCK


def main_thread_seconds(pid: int) -> float:
    """utime + stime of PID's main thread (gatewayd's event loop)."""
    return _ticks(Path(f"/proc/{pid}/task/{pid}/stat").read_text())[1] / CLK_TCK


def sms_process_of(pid: int) -> int | None:
    """The SMS process gatewayd ``pid`` started (None when there is none)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError, IndexError, ValueError):
            parent, _ = _ticks((entry / "stat").read_text())
            if parent == pid and b"gatewayd.sms.process" in (entry / "cmdline").read_bytes():
                return int(entry.name)
    return None


def queue_wait_seconds(pid: int, tid: int | None = None) -> float:
    """Seconds PID's living threads (or its thread TID) were runnable but waiting for a
    core (/proc/.../schedstat, second field): time lost to the other programs."""
    tasks = [str(tid)] if tid is not None else os.listdir(f"/proc/{pid}/task")
    total = 0
    for task in tasks:
        with suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[1])
    return total / 1e9


class Meter:
    """CPU of named processes between ``start`` and ``stop``, and how long their threads
    waited for a core; gatewayd's main thread (its event loop) on its own as well, and
    its SMS process with that one's main thread (included in gatewayd's figure)."""

    LOOP = "gatewayd event loop"
    SMS = "gatewayd SMS process"
    SMS_LOOP = "gatewayd SMS event loop"

    def __init__(self, pids: dict[str, int], loop_of: int | None = None) -> None:
        self.pids, self.loop_of = pids, loop_of
        self.sms_pid: int | None = None
        self.before: dict[str, float] = {}
        self.waits_before: dict[str, float] = {}
        self.spent: dict[str, float] = {}
        self.waited: dict[str, float] = {}

    def read(self) -> tuple[dict[str, float], dict[str, float]]:
        seen = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        waits = {name: queue_wait_seconds(pid) for name, pid in self.pids.items()}
        if self.loop_of is not None:
            seen[self.LOOP] = main_thread_seconds(self.loop_of)
            waits[self.LOOP] = queue_wait_seconds(self.loop_of, self.loop_of)
        if self.sms_pid is not None:
            with suppress(OSError):
                seen[self.SMS] = cpu_seconds(self.sms_pid)
                waits[self.SMS] = queue_wait_seconds(self.sms_pid)
                seen[self.SMS_LOOP] = main_thread_seconds(self.sms_pid)
                waits[self.SMS_LOOP] = queue_wait_seconds(self.sms_pid, self.sms_pid)
        return seen, waits

    def start(self) -> None:
        if self.loop_of is not None:
            self.sms_pid = sms_process_of(self.loop_of)
        self.before, self.waits_before = self.read()

    def stop(self) -> None:
        after, waits = self.read()
        self.spent = {
            name: after[name] - self.before[name] for name in after if name in self.before
        }
        self.waited = {
            name: waits[name] - self.waits_before[name]
            for name in waits
            if name in self.waits_before
        }

    def add(self, name: str, seconds: float) -> None:
        """A process that measured itself (the clients, which exit before ``stop``)."""
        self.spent[name] = seconds

    def per_message_ms(self, messages: int) -> dict[str, float]:
        return {name: round(s * 1000 / messages, 3) for name, s in self.spent.items()}


# -- the SMSC peer -----------------------------------------------------------------------


def ensure_peer_installed() -> None:
    if (PEER_DIR / "node_modules" / "smpp" / "package.json").exists():
        return
    if not shutil.which("npm"):
        raise SystemExit(
            "sms_vs_kannel: npm is needed to install the SMSC peer: apt-get install nodejs npm"
        )
    say("installing the SMSC peer's npm package (npm ci in bench/smsc_peer)")
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEER_DIR, check=False)
    if done.returncode != 0:
        raise SystemExit(f"sms_vs_kannel: npm ci in {PEER_DIR} failed (exit {done.returncode})")


class Peer:
    """bench/smsc_peer/peer.js in its own process, driven over its control port."""

    def __init__(self, receipt_delay: float) -> None:
        self.process = subprocess.Popen(
            [
                "node",
                str(PEER_DIR / "peer.js"),
                "--listen",
                "127.0.0.1:0",
                "--control",
                "127.0.0.1:0",
                "--receipt-delay",
                str(round(receipt_delay * 1000)),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=PEER_DIR,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(
                f"sms_vs_kannel: the SMSC peer did not start (exit {self.process.wait()})"
            )
        ports = json.loads(line)
        self.smpp_port: int = ports["smpp"]
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{ports['control']}", timeout=30)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get("/stats").raise_for_status().json())

    def duplicates(self) -> dict[str, int]:
        return dict(self.http.get("/duplicates").raise_for_status().json())

    def reset(self) -> None:
        self.http.post("/reset").raise_for_status()

    def hold(self, system_id: str) -> None:
        self.http.post("/hold", params={"system_id": system_id}).raise_for_status()

    def held(self) -> list[str]:
        return list(self.http.get("/held").raise_for_status().json()["waiting"])

    def release(self) -> None:
        self.http.post("/release").raise_for_status()

    def close(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.communicate(timeout=30)


# -- load processes ----------------------------------------------------------------------


class Load:
    """One sms_load process: started, ready, then ``go``; its result at the end."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self.ready: Any = MP.Queue()
        self.out: Any = MP.Queue()
        self.go = MP.Event()
        self.process = MP.Process(
            target=target, args=(*args, self.ready, self.go, self.out), daemon=True
        )
        self.process.start()
        self.ready.get(timeout=120)

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def result(self, timeout: float) -> dict[str, Any]:
        answer: dict[str, Any] = self.out.get(timeout=timeout)
        self.process.join(30)
        return answer


class Sink:
    """sms_load.dlr_sink in its own process."""

    def __init__(self, messages: int) -> None:
        self.port = free_port()
        self.finals: Any = MP.RawValue("i", 0)
        self.last: Any = MP.RawValue("d", 0.0)
        self.ready: Any = MP.Queue()
        self.out: Any = MP.Queue()
        self.stop_event = MP.Event()
        self.process = MP.Process(
            target=sms_load.dlr_sink,
            args=(self.port, messages),
            kwargs={
                "finals": self.finals,
                "last": self.last,
                "ready": self.ready,
                "stop": self.stop_event,
                "out": self.out,
            },
            daemon=True,
        )
        self.process.start()
        self.ready.get(timeout=60)

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def stop(self) -> dict[str, Any]:
        self.stop_event.set()
        answer: dict[str, Any] = self.out.get(timeout=60)
        self.process.join(30)
        return answer


def stop_process(process: subprocess.Popen[bytes], grace: float = 60) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
    return process.returncode
