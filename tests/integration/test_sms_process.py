"""The SMS process (gatewayd/sms/process.py) as the daemon runs it, with real processes:
``gatewayd smsc-sim`` on a port and ``gatewayd run`` bound to it. Killed, the SMS
process is started again and the SMS go on; the daemon's /metrics show its links;
the daemon killed takes its SMS process along; SIGTERM stops both."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from tests.integration.test_daemon import start, wait_for
from tests.integration.test_operations_daemon import until
from tests.integration.test_sms_daemon import delivered, simulator
from tests.shipped_config import shipped_config
from tests.smtp_client import free_port, message, send

NUMBER = "+4915112340000"
BOUND = 'gatewayd_smpp_link_up{link="simulator"} 1.0'


def sms_process_of(daemon: int) -> int | None:
    """The SMS process the daemon ``daemon`` started (None: there is none now)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == daemon and b"gatewayd.sms.process" in command:
            return int(entry.name)
    return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_sms_process_is_started_again_and_the_sms_go_on(tmp_path: Path) -> None:
    sim_port, smtp_port, api_port = free_port(), free_port(), free_port()
    config = shipped_config(tmp_path, smtp_port=smtp_port, api_port=api_port, sim_port=sim_port)
    sim = simulator(sim_port)
    daemon = start(config)
    second = None
    try:
        wait_for(daemon, "daemon.started", "sms.bound")
        first = sms_process_of(daemon.pid)
        assert first is not None
        # The daemon's /metrics show the SMS process's link (its state arrives within
        # a second of a change).
        until(lambda: BOUND in httpx.get(f"http://127.0.0.1:{api_port}/metrics").text, 5)

        os.kill(first, signal.SIGKILL)
        exited = wait_for(daemon, "sms.process_exited")[-1]
        assert (exited["pid"], exited["signal"]) == (first, "SIGKILL")
        wait_for(daemon, "sms.bound")  # the next one has bound the link again
        second = sms_process_of(daemon.pid)
        assert second is not None
        assert second != first

        to = f"{NUMBER}@sms.example.com"
        reply = send(smtp_port, "alice@example.com", [to], message(to=to, body="Still here"))
        assert reply.code == 250, reply
        shown = delivered(config, reply.text.split()[-1])
        assert shown["messageStatus"] == "Delivered", shown
        # The link's state and the SMS's outcome (the only SMS of the run, delivered by
        # the second SMS process) reach /metrics within a second of the change.
        delivered_sms = (
            'gatewayd_messages_total{direction="Outbound",outcome="Delivered",type="SMS"} 1.0'
        )
        until(
            lambda: all(
                line in httpx.get(f"http://127.0.0.1:{api_port}/metrics", timeout=30).text
                for line in ('gatewayd_smpp_link_up{link="simulator"} 1.0', delivered_sms)
            )
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
        sim.send_signal(signal.SIGTERM)
        sim.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert second is not None
    assert not alive(second)  # SIGTERM stopped the SMS process too


def test_a_killed_daemon_takes_its_sms_process_along(tmp_path: Path) -> None:
    sim_port = free_port()
    config = shipped_config(tmp_path, sim_port=sim_port)
    sim = simulator(sim_port)
    daemon = start(config)
    try:
        wait_for(daemon, "daemon.started")
        until(lambda: sms_process_of(daemon.pid) is not None, within=30)
        child = sms_process_of(daemon.pid)
        assert child is not None
        daemon.kill()
        daemon.communicate(timeout=30)
        # Never two SMS processes for one node: a new daemon would start its own.
        until(lambda: not alive(child), within=10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        sim.send_signal(signal.SIGTERM)
        sim.communicate(timeout=30)
