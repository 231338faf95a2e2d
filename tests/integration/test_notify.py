"""Result emails through a real relay: an aiosmtpd server on a loopback port as the
smarthost, a real mailbox (SQLite and PostgreSQL), the notifier reading the events."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from PIL import Image

from gatewayd.clock import ManualClock
from gatewayd.config.settings import HostPort, NotifySettings, Settings, User
from gatewayd.mailbox import Mailbox
from gatewayd.model import Direction, MessageStatus, MessageType
from gatewayd.notify import Notifications
from tests.conftest import ACCOUNT, EXTENSION, OUR_NUMBER, fax, sms
from tests.smtp_client import free_port

ALICE = User(("alice@example.com",), ACCOUNT, EXTENSION, "101", "Alice",
             sms_numbers=(OUR_NUMBER,), forward_inbound_sms=True)  # fmt: skip


class Sink:
    """The relay: keeps what it is given."""

    def __init__(self) -> None:
        self.mails: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.mails.append(parsed)  # type: ignore[arg-type]
        return "250 2.0.0 OK"


@pytest.fixture
def relay() -> Iterator[tuple[Sink, int]]:
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def settings_for(port: int, **more: Any) -> Settings:
    notify = NotifySettings(enabled=True, relay=HostPort("127.0.0.1", port),
                            from_address="gatewayd@example.com", **more)  # fmt: skip
    return Settings(notify=notify, users=(ALICE,))


async def started(mailbox: Mailbox, settings: Settings, clock: ManualClock) -> Notifications:
    notes = Notifications(mailbox, settings)
    assert await notes.collect() == 0  # the first start sets the cursor: no history
    return notes


async def tell(notes: Notifications, clock: ManualClock) -> int:
    clock.advance(seconds=3)  # past the settling time of new events
    await notes.collect()
    return await notes.send_due()


async def test_a_sent_fax_is_confirmed_with_its_pages_and_the_pdf(
    mailbox: Mailbox, relay: tuple[Sink, int], clock: ManualClock, tmp_path: Path
) -> None:
    sink, port = relay
    notes = await started(mailbox, settings_for(port, attach_fax=True), clock)
    message = await mailbox.create(replace(fax(), sender_email="alice@example.com"))
    [leased] = [m for m in await mailbox.lease("fax", types=[MessageType.FAX], limit=5)
                if m.id == message.id]  # fmt: skip
    tiff = tmp_path / "fax.tif"
    pages = [Image.new("1", (1728, 2200), 1) for _ in range(2)]
    pages[0].save(tiff, save_all=True, append_images=pages[1:], compression="group4",
                  dpi=(204, 196))  # fmt: skip
    await mailbox.add_rendered(leased.id, tiff, 2, lease_owner="fax")
    await mailbox.transition(message.id, MessageStatus.SENT, reason="sent by spool",
                             lease_owner="fax", detail={"pages": 2, "duration": 61.5})  # fmt: skip
    assert await tell(notes, clock) == 1
    [mail] = sink.mails
    assert sink.envelopes == [("gatewayd@example.com", ["alice@example.com"])]
    assert mail["Subject"] == "Fax to +4940123456 sent (2 pages)"
    body = mail.get_body(("plain",))
    assert body is not None
    assert "Pages: 2\r\nDuration: 62 s" in body.get_content()
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content().startswith(b"%PDF")
    assert await tell(notes, clock) == 0  # told once


async def test_failures_and_inbound_sms(
    mailbox: Mailbox, relay: tuple[Sink, int], clock: ManualClock
) -> None:
    sink, port = relay
    notes = await started(mailbox, settings_for(port), clock)
    failed = await mailbox.create(replace(sms(), sender_email="alice@example.com"))
    await mailbox.transition(failed.id, MessageStatus.SENDING_FAILED,
                             reason="the SMSC refused part 1 of 1: ESME_RINVDSTADR",
                             delivery_error_code="ESME_RINVDSTADR")  # fmt: skip
    await mailbox.create(sms(direction=Direction.INBOUND, text="Running late"))
    assert await tell(notes, clock) == 2
    subjects = sorted(m["Subject"] for m in sink.mails)
    assert subjects == ["SMS from +4915112345678", "SMS to +4915112345678 not delivered"]
    failure = next(m for m in sink.mails if "not delivered" in m["Subject"])
    text = failure.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Reason: the SMSC refused part 1 of 1: ESME_RINVDSTADR" in text


async def test_a_relay_that_is_down_is_retried_and_changes_no_status(
    mailbox: Mailbox, clock: ManualClock
) -> None:
    port = free_port()  # nothing listens yet
    notes = await started(mailbox, settings_for(port), clock)
    message = await mailbox.create(replace(sms(), sender_email="alice@example.com"))
    await mailbox.transition(message.id, MessageStatus.SENDING_FAILED, reason="no route")
    assert await tell(notes, clock) == 0
    assert (await mailbox.get(message.id)).message_status is MessageStatus.SENDING_FAILED
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert await notes.send_due() == 0  # not due yet: 30 s after the first try
        clock.advance(seconds=31)
        assert await notes.send_due() == 1
    finally:
        controller.stop()
    assert len(sink.mails) == 1
