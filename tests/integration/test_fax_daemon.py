"""The whole fax path with real processes: ``gatewayd run`` on the shipped config with
the spool carrier, a mail with a PDF in over SMTP, the TIFF and job file in the
outbox, a result file from "the sender", the fax Sent; then a clean stop."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from aiosmtpd.controller import Controller

from tests import documents
from tests.conftest import gatewayd
from tests.faxcheck import assert_fax
from tests.integration.test_daemon import start, wait_for
from tests.integration.test_notify import Sink
from tests.shipped_config import shipped_config
from tests.smtp_client import free_port, message, send


def test_an_email_with_a_pdf_becomes_a_sent_fax(tmp_path: Path) -> None:
    smtp_port, relay_port = free_port(), free_port()
    sink = Sink()
    relay = Controller(sink, hostname="127.0.0.1", port=relay_port)
    relay.start()
    outbox, results = tmp_path / "outbox", tmp_path / "results"  # as shipped_config puts them
    config = shipped_config(tmp_path, smtp_port=smtp_port, relay_port=relay_port,
                            log_file=tmp_path / "gatewayd.log")  # fmt: skip
    daemon = start(config)
    try:
        wait_for(daemon, "daemon.started")
        pdf = documents.dense_text_pdf(2)
        mail = message(to="+4940123456@fax.example.com", subject="Contract", body="",
                       attachments=[(pdf, "application/pdf", "contract.pdf")])  # fmt: skip
        reply = send(smtp_port, "alice@example.com", ["+4940123456@fax.example.com"], mail)
        assert reply.code == 250, reply
        message_id = reply.text.split()[-1]
        job_path = outbox / f"{message_id}-1.json"
        deadline = time.monotonic() + 60
        while not job_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        job = json.loads(job_path.read_text())
        assert job["destination"] == "+4940123456"
        assert_fax(outbox / job["document"], count=job["pages"], resolution=196)
        results.mkdir(exist_ok=True)
        (results / "part").write_text(json.dumps({"status": "sent", "pages": job["pages"],
                                                  "duration": 48.0}))  # fmt: skip
        (results / "part").rename(results / f"{message_id}-1.result.json")
        shown: dict[str, object] = {}
        while time.monotonic() < deadline:
            result = gatewayd("messages", "show", message_id, "--json", "--config", str(config))
            shown = json.loads(result.stdout)
            if shown["messageStatus"] != "Queued":
                break
            time.sleep(0.2)
        assert shown["messageStatus"] == "Sent", shown
        assert shown["faxPageCount"] == job["pages"]
        while not sink.mails and time.monotonic() < deadline:
            time.sleep(0.1)
        [confirmation] = sink.mails
        assert confirmation["To"] == "alice@example.com"
        assert confirmation["Subject"] == f"Fax to +4940123456 sent ({job['pages']} pages)"
        assert "Duration: 48 s" in confirmation.get_body(("plain",)).get_content()
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
        relay.stop()
    assert daemon.returncode == 0, err
    trace = gatewayd("trace", message_id, "--config", str(config))
    assert f"submitted to spool as {message_id}-1" in trace.stdout
    assert "sent by spool" in trace.stdout
