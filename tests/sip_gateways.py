"""Two ``gatewayd run`` processes on one SIP trunk (tests/kamailio.py): gateway A
(Alice, +4930111111) sends, gateway B (Bob, +4940222222) receives, each with the
shipped config pointed at its own directory and ports, ``[fax] carrier = "sip"``.
Their logs are JSON lines in files (read as they grow); their mailboxes are read
over the message-store API with each user's token."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gatewayd.credentials import hash_token
from tests.kamailio import Trunk, free_port_udp_and_tcp
from tests.shipped_config import shipped_config
from tests.smtp_client import free_port, message, send

ROOT = Path(__file__).resolve().parent.parent
ALICE_FAX, BOB_FAX = "+4930111111", "+4940222222"
NOBODYS_FAX = "+4940333333"  # routed by the trunk to B, where no user has it
USERS = {"gw-a": "secret-a", "gw-b": "secret-b"}
DIDS = {ALICE_FAX: "gw-a", BOB_FAX: "gw-b", NOBODYS_FAX: "gw-b"}
STORE = "/restapi/v1.0/account/~/extension/~/message-store"


def fax_pdf(pages: int) -> bytes:
    """A light document (a heading and a few lines a page): quick to send at V.17."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    for page in range(pages):
        pdf.setFont("Helvetica-Bold", 28)
        pdf.drawString(72, 760, f"Page {page + 1} of {pages}")
        pdf.setFont("Helvetica", 14)
        for line in range(6):
            pdf.drawString(72, 700 - 24 * line, f"Line {line + 1}: the quick brown fox {page}")
        pdf.showPage()
    pdf.save()
    return out.getvalue()


@dataclass
class Gateway:
    name: str
    work: Path
    config: Path
    smtp_port: int
    api_port: int
    token: str
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    _offset: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.work / "stdout.log"

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("GATEWAYD_CONFIG", None)
        with open(self.log, "ab") as out, open(self.work / "stderr.log", "ab") as err:
            argv = [sys.executable, "-m", "gatewayd", "run", "--config", str(self.config)]
            self.process = subprocess.Popen(
                [*argv, "--grace", "5"], stdout=out, stderr=err, cwd=ROOT, env=env
            )
        try:
            self.wait("daemon.started", timeout=60)
        except BaseException:
            self.stop()  # one that never started is not left running
            raise

    def stop(self) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def read(self) -> list[dict[str, Any]]:
        with open(self.log, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            if line.startswith(b"{"):
                self.events.append(json.loads(line))
        return self.events

    def wait(
        self,
        event: str,
        *,
        timeout: float = 120,
        where: Callable[[dict[str, Any]], bool] = lambda _e: True,
        count: int = 1,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.read() if e.get("event") == event and where(e)]
            if len(found) >= count:
                return found
            if self.process is not None and self.process.poll() is not None:
                said = [e for e in self.events if e.get("level") in ("error", "critical")]
                raise AssertionError(
                    f"{self.name} exited with {self.process.returncode}: {said[-5:]} "
                    f"{(self.work / 'stderr.log').read_text()}"
                )
            if time.monotonic() > deadline:
                seen = [e.get("event") for e in self.events[-40:]]
                raise AssertionError(f"{self.name}: no {count}x {event} in {timeout}s; {seen}")
            time.sleep(0.2)

    def seen(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.read() if e.get("event") == event]

    # -- the mailbox over the API ----------------------------------------------------

    def api(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(
            f"http://127.0.0.1:{self.api_port}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    def faxes(self, direction: str) -> list[dict[str, Any]]:
        response = self.api(STORE, messageType="Fax", direction=direction, perPage=100)
        assert response.status_code == 200, response.text
        records: list[dict[str, Any]] = response.json()["records"]
        return records

    def message(self, message_id: int | str) -> dict[str, Any]:
        response = self.api(f"{STORE}/{message_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def content(self, record: dict[str, Any], content_type: str) -> bytes:
        [attachment] = [
            a
            for a in record["attachments"]
            if a["contentType"] == content_type and a["type"] == "RenderedDocument"
        ]
        response = httpx.get(
            attachment["uri"], headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )
        assert response.status_code == 200, response.text
        return response.content

    def send_fax(
        self, to: str, pages: int = 2, *, subject: str = "Contract", body: str = "Please sign."
    ) -> str:
        """A mail with a ``pages``-page PDF to ``to``; the message id. With a cover
        page the body is its note; without one, an empty body adds no page."""
        document = (fax_pdf(pages), "application/pdf", "doc.pdf")
        mail = message(
            to=f"{to}@fax.example.com", subject=subject, body=body, attachments=[document]
        )
        reply = send(self.smtp_port, "alice@example.com", [f"{to}@fax.example.com"], mail)
        assert reply.code == 250, reply
        return reply.text.split()[-1]

    def wait_final(self, message_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            record = self.message(message_id)
            if record["messageStatus"] in ("Sent", "SendingFailed"):
                return record
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: {message_id} still {record['messageStatus']}")
            time.sleep(0.5)

    def trace(self, message_id: str) -> str:
        argv = [sys.executable, "-m", "gatewayd", "trace", message_id, "--config", str(self.config)]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
        )
        return result.stdout + result.stderr


def sip_block(trunk: Trunk, user: str, password: str, ports: str, **options: Any) -> str:
    values: dict[str, Any] = {
        "proxy": trunk.address,
        "transport": "udp",
        "username": user,
        "password": password,
        "from_domain": "trunk.test",
        "local_address": f"127.0.0.1:{free_port_udp_and_tcp()}",
        "media_ports": ports,
        "t38": True,
        "ecm": True,
        "register_interval": "1m",
        "max_calls": 4,
    }
    values.update(options)
    lines = ["[fax.sip]"]
    for key, value in values.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def gateway(
    work: Path,
    trunk: Trunk,
    *,
    sender: bool,
    relay_port: int | None = None,
    fax: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    **sip: Any,
) -> Gateway:
    """Gateway A (``sender``, Alice) or B (Bob), configured, not started."""
    work.mkdir(parents=True, exist_ok=True)
    token = f"token-{work.name}"
    smtp_port, api_port = free_port(), free_port()
    path = shipped_config(
        work,
        smtp_port=smtp_port,
        api_port=api_port,
        relay_port=relay_port,
        token_hash=hash_token(token),
    )
    text = path.read_text()
    start = text.index("\n[fax.sip]\n") + 1
    end = text.index("\n[", start + 1)
    user, password = ("gw-a", USERS["gw-a"]) if sender else ("gw-b", USERS["gw-b"])
    ports = "21000-21199" if sender else "22000-22199"
    sip.setdefault("password", password)
    block = sip_block(trunk, sip.pop("username", user), sip.pop("password"), ports, **sip)
    text = text[:start] + block + text[end:]
    settings = {"carrier": "sip", "retry_delay": "5s", "max_attempts": 3, **(fax or {})}
    for key, value in settings.items():
        head = text.index("\n[fax]\n")
        at = text.index(f"\n{key} = ", head) + 1
        line_end = text.index("\n", at)
        text = text[:at] + f"{key} = {json.dumps(value)}" + text[line_end:]
    number = ALICE_FAX if sender else BOB_FAX
    for old, new in (
        ('fax_number = "+4930123457"', f'fax_number = "{number}"'),
        ('station_id = "+49 30 123457"', f'station_id = "{number}"'),
        ("forward_inbound_fax = false", f"forward_inbound_fax = {'false' if sender else 'true'}"),
        ("rate_limits = true", "rate_limits = false"),  # the tests poll the API often
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    if not sender:
        text = text.replace('email = ["alice@example.com"]', 'email = ["bob@example.com"]', 1)
        text = text.replace('name = "Alice Example"', 'name = "Bob Example"', 1)
    path.write_text(text)
    return Gateway("A" if sender else "B", work, path, smtp_port, api_port, token, env or {})
