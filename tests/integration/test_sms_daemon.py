"""The whole SMS path with real processes: ``gatewayd smsc-sim`` on a port, ``gatewayd
run`` bound to it, a mail in over SMTP, the SMS out, its receipt back, an SMS in; then
a clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from aiosmtpd.controller import Controller

from gatewayd.credentials import hash_token
from tests.conftest import ROOT, gatewayd
from tests.integration.test_daemon import start, wait_for
from tests.integration.test_notify import Sink
from tests.shipped_config import shipped_config
from tests.smtp_client import free_port, message, send

TOKEN = "api-token-for-alice"


def delivered(config: Path, message_id: str, within: float = 30) -> dict[str, object]:
    """The message as ``gatewayd messages show --json`` gives it, once Delivered or
    when ``within`` seconds have passed (the caller asserts the status)."""
    deadline = time.monotonic() + within
    shown: dict[str, object] = {}
    while time.monotonic() < deadline:
        result = gatewayd("messages", "show", message_id, "--json", "--config", str(config))
        shown = json.loads(result.stdout)
        if shown["messageStatus"] == "Delivered":
            break
        time.sleep(0.2)
    return shown


def simulator(port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gatewayd",
            "smsc-sim",
            "--listen",
            f"127.0.0.1:{port}",
            "--receipt-delay",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert process.stdout is not None
    assert "listening on" in process.stdout.readline()
    return process


def test_an_email_becomes_a_delivered_sms(tmp_path: Path) -> None:
    sim_port, smtp_port, api_port, relay_port = free_port(), free_port(), free_port(), free_port()
    sink = Sink()
    relay = Controller(sink, hostname="127.0.0.1", port=relay_port)
    relay.start()
    config = shipped_config(
        tmp_path, smtp_port=smtp_port, api_port=api_port, sim_port=sim_port,
        relay_port=relay_port, token_hash=hash_token(TOKEN), log_file=tmp_path / "gatewayd.log",
    )  # fmt: skip
    sim = simulator(sim_port)
    daemon = start(config)
    try:
        seen = wait_for(daemon, "daemon.started")  # SMTP listens (the link may bind later)
        if not any(line["event"] == "sms.bound" for line in seen):
            wait_for(daemon, "sms.bound")
        reply = send(
            smtp_port,
            "alice@example.com",
            ["+4915112340000@sms.example.com"],
            message(to="+4915112340000@sms.example.com", body="Hello Bob"),
        )
        assert reply.code == 250, reply
        message_id = reply.text.split()[-1]
        deadline = time.monotonic() + 20  # the later waits count from here too
        shown = delivered(config, message_id, within=20)
        assert shown["messageStatus"] == "Delivered", shown
        assert shown["smsSendingAttemptsCount"] == 1
        assert "smsDeliveryTime" in shown
        # the API's SMS go through the same dispatcher
        api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}/restapi/v1.0/account/~/extension/~",
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)  # fmt: skip
        with api:
            made = api.post("/sms", json={"from": {"phoneNumber": "+4930123456"},
                                          "to": [{"phoneNumber": "+4915112340001"}],
                                          "text": "From the API"})  # fmt: skip
            assert made.status_code == 200, made.text
            while time.monotonic() < deadline + 20:
                seen = api.get(f"/message-store/{made.json()['id']}").json()
                if seen["messageStatus"] != "Queued" and seen["messageStatus"] != "Sent":
                    break
                time.sleep(0.2)
        assert seen["messageStatus"] == "DeliveryFailed", seen  # ...0001 is UNDELIV
        assert seen["deliveryErrorCode"] == "UNDELIV:001"
        while not sink.mails and time.monotonic() < deadline + 30:
            time.sleep(0.1)
        [failure] = sink.mails  # the Delivered one is not mailed about
        assert failure["Subject"] == "SMS to +4915112340001 not delivered"
        assert "Code: UNDELIV:001" in failure.get_body(("plain",)).get_content()
        scraped = httpx.get(f"http://127.0.0.1:{api_port}/metrics", timeout=30).text
        assert 'gatewayd_smpp_link_up{link="simulator"} 1.0' in scraped
        assert 'gatewayd_smpp_link_state{link="simulator",state="bound"} 1.0' in scraped
        assert 'gatewayd_smpp_link_state{link="simulator",state="reconnecting"} 0.0' in scraped
        assert 'gatewayd_smpp_pdus_total{link="simulator",pdu="submit_sm"} 2.0' in scraped
        assert 'gatewayd_smpp_pdus_total{link="simulator",pdu="deliver_sm"} 2.0' in scraped
        assert 'gatewayd_smpp_submit_responses_total{link="simulator",status="ESME_ROK"} 2.0' in (
            scraped
        )
        assert 'gatewayd_smtp_replies_total{code="250"}' in scraped
        # counted where the outcomes happened: the SMS of the mail and of the API
        out = 'direction="Outbound",outcome="{}",type="SMS"'
        assert f"gatewayd_messages_total{{{out.format('Queued')}}} 2.0" in scraped
        assert f"gatewayd_messages_total{{{out.format('Delivered')}}} 1.0" in scraped
        assert f"gatewayd_messages_total{{{out.format('DeliveryFailed')}}} 1.0" in scraped
        assert 'gatewayd_sms_failures_total{code="UNDELIV:001"} 1.0' in scraped
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
        sim.send_signal(signal.SIGTERM)
        sim_out, _ = sim.communicate(timeout=30)
        relay.stop()
    assert daemon.returncode == 0, err
    assert "1 binds, 2 submit_sm, 2 receipts" in sim_out
    trace = gatewayd("trace", message_id, "--config", str(config))
    assert "accepted by the SMSC" in trace.stdout
    assert "receipt: Delivered" in trace.stdout
