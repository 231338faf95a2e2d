"""An operator's view of a running ``gatewayd run`` (real processes, real sockets):

- ``gatewayd status`` and ``/readyz`` while the SMPP link is down (shown down, 503),
  then once ``gatewayd smsc-sim`` is up and the link binds (bound, 200); the systemd
  STATUS= line follows; on journald (JOURNAL_STREAM names the daemon's stdout) every
  line starts with its priority.
- a token made with ``gatewayd token create`` while the daemon runs works on the next
  request, and a revoked one fails within a couple of seconds; an SMS that fails is a
  warning that ``gatewayd logs --level warning`` shows, ``gatewayd status`` lists with
  its code, and the metrics count; ``gatewayd messages retry`` sends it again through
  the running daemon; an admin token drives the operator routes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from gatewayd.credentials import hash_token
from tests.conftest import ROOT, gatewayd
from tests.integration.test_sms_daemon import simulator
from tests.shipped_config import shipped_config
from tests.smtp_client import free_port

T = TypeVar("T")
ADMIN_TOKEN = "boss-admin-token"
MINE = "/restapi/v1.0/account/~/extension/~"


def until(check: Callable[[], T | None], within: float = 20.0, what: str = "") -> T:
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what or check}")
        time.sleep(0.1)


def config_for(tmp_path: Path, sim_port: int, api_port: int) -> Path:
    config = shipped_config(
        tmp_path, api_port=api_port, sim_port=sim_port, log_file=tmp_path / "gatewayd.log"
    )
    text = config.read_text()
    text = text.replace('reconnect_delay = "2s"', 'reconnect_delay = "0.2s"', 1)
    text = text.replace('reconnect_delay_max = "1m"', 'reconnect_delay_max = "0.5s"', 1)
    text = text.replace("rate_limits = true", "rate_limits = false", 1)
    text += (
        '\n[[users]]\nemail = "boss@example.com"\naccount_id = 1\nextension_id = 109\n'
        'extension_number = "109"\nname = "Boss"\napi_admin = true\n'
        f'api_token_hash = "{hash_token(ADMIN_TOKEN)}"\n'
    )
    config.write_text(text)
    return config


class Daemon:
    """``gatewayd run`` with its stdout a pipe that JOURNAL_STREAM names (as journald's
    stream would be), read line by line by a thread."""

    def __init__(self, config: Path, notify: Path | None = None) -> None:
        read, write = os.pipe()
        found = os.fstat(write)
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "JOURNAL_STREAM": f"{found.st_dev}:{found.st_ino}",
        }
        env.pop("GATEWAYD_CONFIG", None)
        if notify is not None:
            env["NOTIFY_SOCKET"] = str(notify)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gatewayd", "run", "--config", str(config), "--grace", "5"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        os.close(write)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(read,), daemon=True)
        self._reader.start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, encoding="utf-8") as stream:
            for line in stream:
                self.lines.append(line.rstrip("\n"))

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """(priority prefix, the JSON line) for every line so far."""
        out = []
        for line in list(self.lines):
            match = re.match(r"^(<\d>)(\{.*\})$", line)
            assert match, f"a line without its priority: {line!r}"
            out.append((match.group(1), json.loads(match.group(2))))
        return out

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=60)
        self._reader.join(timeout=10)
        assert self.process.returncode == 0, err
        return self.process.returncode


@contextmanager
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "notify.sock"))
    server.settimeout(0.2)
    try:
        yield server
    finally:
        server.close()


class Datagrams:
    """What the daemon told systemd, kept as it comes."""

    def __init__(self, server: socket.socket) -> None:
        self.server = server
        self.seen: list[str] = []

    def wait(self, wanted: str, within: float = 20.0) -> str:
        """The first datagram so far (or to come) with ``wanted`` in it."""

        def look() -> str | None:
            while True:
                try:
                    self.seen.append(self.server.recv(4096).decode())
                except TimeoutError:
                    break
            return next((d for d in self.seen if wanted in d), None)

        return until(look, within, what=wanted)


def status_json(config: Path) -> dict[str, Any]:
    result = gatewayd("status", "--json", "--config", str(config))
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_status_and_readiness_follow_the_smpp_link(tmp_path: Path) -> None:
    sim_port, api_port = free_port(), free_port()
    config = config_for(tmp_path, sim_port, api_port)
    base = f"http://127.0.0.1:{api_port}"
    with notify_socket(tmp_path) as notify:
        daemon = Daemon(config, tmp_path / "notify.sock")
        sim = None
        try:
            told = Datagrams(notify)
            ready = told.wait("READY=1")
            assert "SMPP links 0/1 bound" in ready  # ready: the SMTP door takes mail

            # the link is down: status says so, /readyz is 503. (The link is IDLE until
            # the SMS process has started it and said so, a tenth of a second later.)
            def shown_down() -> subprocess.CompletedProcess[str] | None:
                text = gatewayd("status", "--config", str(config))
                assert text.returncode == 0, text.stderr
                down = re.search(
                    r"^simulator\s+127\.0\.0\.1:\d+\s+(RECONNECTING|CONNECTING)\s",
                    text.stdout,
                    re.MULTILINE,
                )
                return text if down else None

            text = until(shown_down, 10, "status showing the link down")
            assert ": NOT READY, up " in text.stdout.splitlines()[0]
            assert re.search(r"^sms\s+FAIL\s+no SMPP link is bound", text.stdout, re.MULTILINE)
            document = status_json(config)
            assert (document["source"], document["ready"]) == ("daemon", False)
            (link,) = document["links"]
            assert (link["name"], link["bound"]) == ("simulator", False)
            assert "Connect call failed" in link["error"] or "refused" in link["error"]
            assert document["daemon"]["pid"] == daemon.process.pid
            assert document["fax"] == {
                "carrier": "spool",
                "state": "ok",
                "reason": None,
                "following": 0,
            }
            not_ready = httpx.get(f"{base}/readyz")
            assert not_ready.status_code == 503
            assert {c["name"]: c["ok"] for c in not_ready.json()["checks"]} == {
                "mailbox": True,
                "listeners": True,
                "sms": False,
            }
            assert httpx.get(f"{base}/healthz").status_code == 200
            scraped = httpx.get(f"{base}/metrics").text
            assert 'gatewayd_smpp_link_up{link="simulator"} 0.0' in scraped
            assert 'gatewayd_smpp_link_state{link="simulator",state="bound"} 0.0' in scraped
            # the SMSC comes up: the link binds, and everything says so
            sim = simulator(sim_port)
            until(lambda: httpx.get(f"{base}/readyz").status_code == 200, what="/readyz 200")
            document = status_json(config)
            assert document["ready"] is True
            assert (document["links"][0]["state"], document["links"][0]["bound"]) == ("bound", True)
            text = gatewayd("status", "--config", str(config)).stdout
            assert ": ready, up " in text.splitlines()[0]
            scraped = httpx.get(f"{base}/metrics").text
            assert 'gatewayd_smpp_link_up{link="simulator"} 1.0' in scraped
            assert 'gatewayd_smpp_link_state{link="simulator",state="bound"} 1.0' in scraped
            line = told.wait("SMPP links 1/1 bound").strip()
            assert line.startswith("STATUS=gatewayd ")
            assert "queue SMS 0, Fax 0" in line
        finally:
            daemon.stop()
            if sim is not None:
                sim.send_signal(signal.SIGTERM)
                sim.communicate(timeout=30)
    assert not (tmp_path / "data" / "gatewayd.sock").exists()  # taken away at the stop
    # journald: every line with its priority; a failed bind a warning, a bind info
    events = daemon.events()
    assert events
    priorities = {(e["event"], e.get("state")): prefix for prefix, e in events}
    assert priorities["sms.link_state", "reconnecting"] == "<4>"
    assert priorities["sms.bound", None] == "<6>"
    assert priorities["daemon.started", None] == "<6>"


def test_tokens_failures_and_actions_on_a_running_daemon(tmp_path: Path) -> None:
    sim_port, api_port = free_port(), free_port()
    config = config_for(tmp_path, sim_port, api_port)
    base = f"http://127.0.0.1:{api_port}"
    sim = simulator(sim_port)
    daemon = Daemon(config)
    clients = ExitStack()
    try:
        until(lambda: _answers(f"{base}/readyz") == 200, what="/readyz 200")
        # a token made now works on the next request: no reload, no restart
        made = gatewayd("token", "create", "--user", "alice@example.com", "--config", str(config))
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        alice = clients.enter_context(
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})
        )
        assert alice.get(f"{MINE}/message-store").status_code == 200
        # an SMS that fails (the simulator says UNDELIV to numbers ending 0001)
        sent = alice.post(
            f"{MINE}/sms",
            json={
                "from": {"phoneNumber": "+4930123456"},
                "to": [{"phoneNumber": "+4915112340001"}],
                "text": "Will not arrive",
            },
        )
        assert sent.status_code == 200, sent.text
        failed_id = sent.json()["id"]
        until(
            lambda: (
                alice.get(f"{MINE}/message-store/{failed_id}").json()["messageStatus"]
                == "DeliveryFailed"
            ),
            what="DeliveryFailed",
        )
        # logged at warning: `gatewayd logs --level warning` shows it, and no info line
        warnings = gatewayd("logs", "--level", "warning", "--json", "--config", str(config))
        entries = json.loads(warnings.stdout)
        assert {e["level"] for e in entries} <= {"warning", "error", "critical"}
        failure_lines = [
            e
            for e in entries
            if e["event"] == "message.status" and e.get("message_id") == failed_id
        ]
        assert [e["status"] for e in failure_lines] == ["DeliveryFailed"]
        # status and metrics know of it
        document = status_json(config)
        (failure,) = [f for f in document["failures"] if f["id"] == failed_id]
        assert (failure["status"], failure["code"], failure["to"]) == (
            "DeliveryFailed",
            "UNDELIV:001",
            "+4915112340001",
        )
        counts = {(c["type"], c["status"]): c["count"] for c in document["lastHour"]["counts"]}
        assert counts[("SMS", "DeliveryFailed")] == 1
        scraped = httpx.get(f"{base}/metrics").text
        outbound = 'direction="Outbound",outcome="{}",type="SMS"'
        assert f"gatewayd_messages_total{{{outbound.format('DeliveryFailed')}}} 1.0" in scraped
        assert 'gatewayd_sms_failures_total{code="UNDELIV:001"} 1.0' in scraped
        # sent again from the command line: the running daemon takes the new message
        retried = gatewayd("messages", "retry", str(failed_id), "--json", "--config", str(config))
        assert retried.returncode == 0, retried.stderr
        new_id = json.loads(retried.stdout)[0]["message"]["id"]
        until(
            lambda: (
                alice.get(f"{MINE}/message-store/{new_id}").json()["messageStatus"]
                == "DeliveryFailed"
            ),
            what="the retry sent (and failed again: the same number)",
        )
        # and once more through the operator routes, with the admin's token
        admin = clients.enter_context(
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        )
        again = admin.post(f"/gatewayd/v1/messages/{new_id}/retry", json={"reason": "test"})
        assert again.status_code == 201, again.text
        assert admin.get("/gatewayd/v1/status").json()["ready"] is True
        # revoked: refused within a couple of seconds
        token_id = json.loads(gatewayd("token", "list", "--json", "--config", str(config)).stdout)[
            0
        ]["id"]
        assert gatewayd("token", "revoke", str(token_id), "--config", str(config)).returncode == 0
        revoked_at = time.monotonic()
        until(
            lambda: alice.get(f"{MINE}/message-store").status_code == 401,
            within=2.5,
            what="the revoked token refused",
        )
        assert time.monotonic() - revoked_at < 2.5
    finally:
        clients.close()
        daemon.stop()
        sim.send_signal(signal.SIGTERM)
        sim.communicate(timeout=30)


def _answers(url: str) -> int | None:
    try:
        return httpx.get(url).status_code
    except httpx.TransportError:
        return None
