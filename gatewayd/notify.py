"""Result emails through a relay (``[notify]``), sent with aiosmtplib.

What to tell is read from the mailbox's event rows, which are committed with every
status change: the notifier keeps a cursor (the last event id it read, in the
mailbox) and turns each new event that deserves an email into a ``notifications``
row, in the same transaction as the cursor moves, so nothing is told twice or
forgotten across restarts. Then it sends the due rows:

- a fax Sent or SendingFailed (``fax_results``): to the sender, with the recipient,
  pages and call duration, or the reason in plain words (and the fax as PDF when
  ``attach_fax``);
- an SMS SendingFailed or DeliveryFailed (``sms_failures``): to the sender, with the
  number, the reason and the start of the text;
- an SMS Received for a user with ``forward_inbound_sms``: the text, to the user;
- a fax Received (over SIP) for a user with ``forward_inbound_fax``: who sent it and
  how many pages, with the fax as PDF, to the user.

A failed send is retried with back-off (30 s doubling, at most an hour) for a day,
then given up with an error line. A notification never changes a message's status.
On its first start the cursor begins at the newest event: history is not mailed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib
import sqlalchemy as sa
from PIL import Image

from gatewayd.config.settings import NotifySettings, Settings
from gatewayd.errors import MessageNotFound
from gatewayd.logging import bound_message, get_logger
from gatewayd.mailbox import Mailbox, Message
from gatewayd.mailbox.schema import message_events, messages, notifications, notify_cursor
from gatewayd.model import AttachmentType, Direction, MessageStatus, MessageType

log = get_logger("gatewayd.notify")

POLL = 2.0
BATCH = 500
FIRST_RETRY = 30.0
MAX_RETRY = 3600.0
GIVE_UP_AFTER = timedelta(days=1)
SETTLE = timedelta(seconds=2)
SEND_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Due:
    id: int
    message_id: int
    kind: str
    recipient: str
    attempts: int


def kind_of(message_type: str, direction: str, status: str) -> str | None:
    outbound_fax = message_type == MessageType.FAX and direction == Direction.OUTBOUND
    if outbound_fax and status in (MessageStatus.SENT, MessageStatus.SENDING_FAILED):
        return "fax_result"
    if message_type == MessageType.FAX and direction == Direction.INBOUND:
        return "inbound_fax" if status == MessageStatus.RECEIVED else None
    if message_type == MessageType.SMS:
        if direction == Direction.OUTBOUND and status in (
            MessageStatus.SENDING_FAILED, MessageStatus.DELIVERY_FAILED,
        ):  # fmt: skip
            return "sms_failure"
        if direction == Direction.INBOUND and status == MessageStatus.RECEIVED:
            return "inbound_sms"
    return None


class Notifications:
    def __init__(self, mailbox: Mailbox, settings: Settings) -> None:
        self.mailbox = mailbox
        self.settings = settings
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> None:
        while not self._stopped.is_set():
            try:
                await self.collect()
                await self.send_due()
            except (OSError, sa.exc.SQLAlchemyError) as exc:
                log.error("notify.failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), POLL)

    # -- what to tell ----------------------------------------------------------------

    async def collect(self) -> int:
        """New events → notification rows; returns how many rows were added."""
        added = 0
        async with self.mailbox.db.write() as conn:
            cursor = await conn.scalar(sa.select(notify_cursor.c.last_event_id))
            if cursor is None:
                newest = await conn.scalar(sa.select(sa.func.max(message_events.c.id))) or 0
                await conn.execute(notify_cursor.insert().values(id=1, last_event_id=newest))
                return 0
            e, m = message_events.c, messages.c
            now = self.mailbox.clock.now()
            settled = now - SETTLE  # an event id taken by a transaction not yet committed
            rows = (await conn.execute(
                sa.select(e.id, e.message_id, e.to_value, m.type, m.direction, m.extension_id,
                          m.sender_email)
                .select_from(message_events.join(messages, messages.c.id == e.message_id))
                .where(e.id > cursor, e.kind == "status", e.at <= settled)
                .order_by(e.id).limit(BATCH)
            )).all()  # fmt: skip
            for row in rows:
                kind = kind_of(row.type, row.direction, row.to_value or "")
                if kind is None or not self._wanted(kind, row.extension_id):
                    continue
                recipient = self._recipient(kind, row.extension_id, row.sender_email)
                if not recipient:
                    continue
                exists = await conn.scalar(sa.select(notifications.c.id).where(
                    notifications.c.message_id == row.message_id,
                    notifications.c.kind == kind))  # fmt: skip
                if exists is not None:
                    continue
                await conn.execute(notifications.insert().values(
                    message_id=row.message_id, kind=kind, recipient=recipient, state="pending",
                    attempts=0, next_attempt_at=now, created_at=now))  # fmt: skip
                added += 1
            if rows:
                await conn.execute(sa.update(notify_cursor).values(last_event_id=rows[-1].id))
        return added

    def _wanted(self, kind: str, extension_id: int) -> bool:
        notify: NotifySettings = self.settings.notify
        if kind == "fax_result":
            return notify.fax_results
        if kind == "sms_failure":
            return notify.sms_failures
        user = self.settings.user_by_extension(extension_id)
        if kind == "inbound_fax":
            return bool(user and user.forward_inbound_fax)
        return bool(user and user.forward_inbound_sms)

    def _recipient(self, kind: str, extension_id: int, sender_email: str | None) -> str:
        user = self.settings.user_by_extension(extension_id)
        if kind not in ("inbound_sms", "inbound_fax") and sender_email:
            return sender_email
        return user.emails[0] if user else ""

    # -- telling ---------------------------------------------------------------------

    async def send_due(self) -> int:
        now = self.mailbox.clock.now()
        n = notifications.c
        async with self.mailbox.db.read() as conn:
            due = [Due(r.id, r.message_id, r.kind, r.recipient, r.attempts) for r in (
                await conn.execute(sa.select(n.id, n.message_id, n.kind, n.recipient,
                                             n.attempts, n.created_at)
                                   .where(n.state == "pending", n.next_attempt_at <= now)
                                   .order_by(n.next_attempt_at).limit(100))).all()]  # fmt: skip
        sent = 0
        for item in due:
            with bound_message(item.message_id):
                sent += await self._send_one(item)
        return sent

    async def _send_one(self, item: Due) -> int:
        now = self.mailbox.clock.now()
        try:
            message = await self.mailbox.get(item.message_id)
            email = await self.compose(item, message)
            await self._deliver(email)
        except MessageNotFound:
            await self._mark(item.id, state="failed", last_error="the message is gone")
            return 0
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            attempts = item.attempts + 1
            created = await self._created(item.id)
            if created is not None and now - created > GIVE_UP_AFTER:
                await self._mark(item.id, state="failed", attempts=attempts, last_error=str(exc))
                log.error("notify.given_up", message_id=item.message_id, kind=item.kind,
                          to=item.recipient, error=str(exc))  # fmt: skip
                return 0
            delay = min(FIRST_RETRY * 2 ** (attempts - 1), MAX_RETRY)
            await self._mark(item.id, attempts=attempts, last_error=str(exc),
                             next_attempt_at=now + timedelta(seconds=delay))  # fmt: skip
            log.warning("notify.retry", message_id=item.message_id, kind=item.kind,
                        attempt=attempts, retry_in=delay, error=str(exc))  # fmt: skip
            return 0
        await self._mark(item.id, state="sent", attempts=item.attempts + 1, sent_at=now)
        log.info("notify.sent", message_id=item.message_id, kind=item.kind, to=item.recipient)
        return 1

    async def _created(self, notification_id: int) -> Any:
        async with self.mailbox.db.read() as conn:
            return await conn.scalar(
                sa.select(notifications.c.created_at).where(notifications.c.id == notification_id)
            )

    async def _mark(self, notification_id: int, **values: Any) -> None:
        async with self.mailbox.db.write() as conn:
            await conn.execute(
                sa.update(notifications).where(notifications.c.id == notification_id)
                .values(**values)
            )  # fmt: skip

    async def _deliver(self, email: EmailMessage) -> None:
        notify = self.settings.notify
        await aiosmtplib.send(
            email, hostname=notify.relay.host, port=notify.relay.port,
            username=notify.username or None, password=notify.password or None,
            start_tls=notify.security == "starttls", use_tls=notify.security == "tls",
            timeout=SEND_TIMEOUT,
        )  # fmt: skip

    async def compose(self, item: Due, message: Message) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.settings.notify.from_address
        email["To"] = item.recipient
        email["Date"] = formatdate(localtime=False)
        email["Message-ID"] = make_msgid(domain="gatewayd")
        email["Auto-Submitted"] = "auto-generated"
        number = message.to[0].phone_number if message.to else None
        when = message.last_modified_time.strftime("%Y-%m-%d %H:%M UTC")
        if item.kind == "fax_result":
            await self._fax_result(email, message, number, when)
        elif item.kind == "inbound_fax":
            await self._inbound_fax(email, message, when)
        elif item.kind == "sms_failure":
            email["Subject"] = f"SMS to {number} not delivered"
            reason = message.failure_reason or message.delivery_error_code or "no reason given"
            email.set_content(
                f"Your SMS to {number} was not delivered ({message.message_status}).\n\n"
                f"Reason: {reason}\n"
                + (f"Code: {message.delivery_error_code}\n" if message.delivery_error_code else "")
                + f"Text: {(message.subject or '')[:160]}\n\nMessage {message.id}, {when}.\n"
            )
        else:
            sender = message.from_.phone_number or "an unknown number"
            email["Subject"] = f"SMS from {sender}"
            email.set_content(f"{message.subject or ''}\n\n-- \nFrom {sender}, {when}.\n")
        return email

    async def _fax_result(
        self, email: EmailMessage, message: Message, number: str | None, when: str
    ) -> None:
        pages = message.fax_page_count
        if message.message_status is MessageStatus.SENT:
            duration = await self._duration(message.id)
            email["Subject"] = f"Fax to {number} sent ({pages} pages)"
            email.set_content(
                f"Your fax to {number} was sent.\n\nPages: {pages}\n"
                + (f"Duration: {duration:.0f} s\n" if duration is not None else "")
                + f"\nMessage {message.id}, {when}.\n"
            )
        else:
            email["Subject"] = f"Fax to {number} failed"
            email.set_content(
                f"Your fax to {number} could not be sent.\n\n"
                f"Reason: {message.failure_reason or 'no reason given'}\n"
                + (f"Code: {message.fax_error_code}\n" if message.fax_error_code else "")
                + f"\nMessage {message.id}, {when}.\n"
            )
        if self.settings.notify.attach_fax:
            pdf = await asyncio.to_thread(self._as_pdf, message)
            if pdf is not None:
                email.add_attachment(pdf, maintype="application", subtype="pdf",
                                     filename=f"fax-{message.id}.pdf")  # fmt: skip

    async def _inbound_fax(self, email: EmailMessage, message: Message, when: str) -> None:
        sender = message.from_.phone_number or "an unknown number"
        pages = message.fax_page_count
        email["Subject"] = f"Fax from {sender} ({pages} pages)"
        email.set_content(
            f"A fax from {sender} came in for {message.to[0].phone_number if message.to else ''}"
            f".\n\nPages: {pages}\n\nMessage {message.id}, {when}.\n"
        )
        pdf = await asyncio.to_thread(self._stored_pdf, message)
        if pdf is not None:
            name = f"fax-{message.id}.pdf"
            email.add_attachment(pdf, maintype="application", subtype="pdf", filename=name)

    def _stored_pdf(self, message: Message) -> bytes | None:
        pdfs = [a for a in message.attachments if a.content_type == "application/pdf"]
        stored = pdfs[0] if pdfs else None
        if stored is None or stored.sha256 is None or not self.mailbox.blobs.exists(stored.sha256):
            return self._as_pdf(message)
        return self.mailbox.blobs.path(stored.sha256).read_bytes()

    async def _duration(self, message_id: int) -> float | None:
        events = await self.mailbox.events(message_id)
        for event in reversed(events):
            if event.kind == "status" and event.to_value == "Sent" and event.detail:
                value = event.detail.get("duration")
                return float(value) if isinstance(value, int | float) else None
        return None

    def _as_pdf(self, message: Message) -> bytes | None:
        tiff = next((a for a in message.attachments
                     if a.type is AttachmentType.RENDERED_DOCUMENT and a.sha256), None)  # fmt: skip
        if tiff is None or tiff.sha256 is None or not self.mailbox.blobs.exists(tiff.sha256):
            return None
        with Image.open(self.mailbox.blobs.path(tiff.sha256)) as image:
            pages = []
            for index in range(getattr(image, "n_frames", 1)):
                image.seek(index)
                pages.append(image.convert("1").copy())
        out = io.BytesIO()
        pages[0].save(out, format="PDF", save_all=True, append_images=pages[1:], resolution=204)
        return out.getvalue()
