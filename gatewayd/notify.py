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
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

import aiosmtplib
from PIL import Image

from gatewayd.config.settings import NotifySettings, Settings
from gatewayd.errors import BlobError, MessageNotFound, StoreError
from gatewayd.logging import bound_message, get_logger
from gatewayd.mailbox import Mailbox, Message, NotificationDue, StatusEvent
from gatewayd.model import AttachmentType, Direction, MessageStatus, MessageType
from gatewayd.worker import backoff

log = get_logger("gatewayd.notify")

POLL = 2.0
BATCH = 500
FIRST_RETRY = 30.0
MAX_RETRY = 3600.0
GIVE_UP_AFTER = timedelta(days=1)
SETTLE = timedelta(seconds=2)
SEND_TIMEOUT = 60.0


def kind_of(message_type: MessageType, direction: Direction, status: MessageStatus) -> str | None:
    outbound_fax = message_type is MessageType.FAX and direction is Direction.OUTBOUND
    if outbound_fax and status in (MessageStatus.SENT, MessageStatus.SENDING_FAILED):
        return "fax_result"
    if message_type is MessageType.FAX and direction is Direction.INBOUND:
        return "inbound_fax" if status is MessageStatus.RECEIVED else None
    if message_type is MessageType.SMS:
        failed = (MessageStatus.SENDING_FAILED, MessageStatus.DELIVERY_FAILED)
        if direction is Direction.OUTBOUND and status in failed:
            return "sms_failure"
        if direction is Direction.INBOUND and status is MessageStatus.RECEIVED:
            return "inbound_sms"
    return None


class Notifications:
    def __init__(self, mailbox: Mailbox, settings: Settings) -> None:
        self.mailbox = mailbox
        self.settings = settings
        self._stopped = asyncio.Event()

    def reload(self, settings: Settings) -> None:
        """New users and their choices (SIGHUP)."""
        self.settings = settings

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> None:
        """Collect and send every POLL seconds, on the one node of a cluster that plays
        the notifier (the others wait to take over)."""
        while not self._stopped.is_set():
            try:
                if await self.mailbox.hold_role("notifier"):
                    await self.collect()
                    await self.send_due()
            except StoreError as exc:
                log.error("notify.failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), POLL)

    # -- what to tell ----------------------------------------------------------------

    async def collect(self) -> int:
        """New events → notification rows; returns how many rows were added."""
        return await self.mailbox.collect_notifications(self.decide, settle=SETTLE, batch=BATCH)

    def decide(self, event: StatusEvent) -> tuple[str, str] | None:
        """The kind of email a status change deserves, and its recipient; None: none."""
        kind = kind_of(event.type, event.direction, event.status)
        if kind is None or not self._wanted(kind, event.extension_id):
            return None
        recipient = self._recipient(kind, event.extension_id, event.sender_email)
        return (kind, recipient) if recipient else None

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
        due = await self.mailbox.notifications_due(limit=100)
        sent = 0
        for item in due:
            with bound_message(item.message_id):
                sent += await self._send_one(item)
        return sent

    async def _send_one(self, item: NotificationDue) -> int:
        now = self.mailbox.clock.now()
        try:
            message = await self.mailbox.get(item.message_id)
            email = await self.compose(item, message)
            await self._deliver(email)
        except MessageNotFound:
            await self.mailbox.mark_notification(
                item.id, state="failed", last_error="the message is gone"
            )
            return 0
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            attempts = item.attempts + 1
            if now - item.created_at > GIVE_UP_AFTER:
                await self.mailbox.mark_notification(
                    item.id, state="failed", attempts=attempts, last_error=str(exc)
                )
                log.error(
                    "notify.given_up",
                    message_id=item.message_id,
                    kind=item.kind,
                    to=item.recipient,
                    error=str(exc),
                )
                return 0
            delay = backoff(FIRST_RETRY, attempts, cap=MAX_RETRY)
            await self.mailbox.mark_notification(
                item.id,
                attempts=attempts,
                last_error=str(exc),
                next_attempt_at=now + timedelta(seconds=delay),
            )
            log.warning(
                "notify.retry",
                message_id=item.message_id,
                kind=item.kind,
                attempt=attempts,
                retry_in=delay,
                error=str(exc),
            )
            return 0
        await self.mailbox.mark_notification(
            item.id, state="sent", attempts=item.attempts + 1, sent_at=now
        )
        log.info("notify.sent", message_id=item.message_id, kind=item.kind, to=item.recipient)
        return 1

    async def _deliver(self, email: EmailMessage) -> None:
        notify = self.settings.notify
        await aiosmtplib.send(
            email,
            hostname=notify.relay.host,
            port=notify.relay.port,
            username=notify.username or None,
            password=notify.password or None,
            start_tls=notify.security == "starttls",
            use_tls=notify.security == "tls",
            timeout=SEND_TIMEOUT,
        )

    async def compose(self, item: NotificationDue, message: Message) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.settings.notify.from_address
        email["To"] = item.recipient
        email["Date"] = formatdate(localtime=False)
        # The same id if it is ever sent twice (a crash between the relay's answer and
        # our commit), so that mail programs show it once.
        email["Message-ID"] = f"<notification-{item.id}.{message.id}@gatewayd>"
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
            pdf = await self._as_pdf(message)
            if pdf is not None:
                email.add_attachment(
                    pdf, maintype="application", subtype="pdf", filename=f"fax-{message.id}.pdf"
                )

    async def _inbound_fax(self, email: EmailMessage, message: Message, when: str) -> None:
        sender = message.from_.phone_number or "an unknown number"
        pages = message.fax_page_count
        email["Subject"] = f"Fax from {sender} ({pages} pages)"
        email.set_content(
            f"A fax from {sender} came in for {message.to[0].phone_number if message.to else ''}"
            f".\n\nPages: {pages}\n\nMessage {message.id}, {when}.\n"
        )
        pdf = await self._stored_pdf(message)
        if pdf is not None:
            name = f"fax-{message.id}.pdf"
            email.add_attachment(pdf, maintype="application", subtype="pdf", filename=name)

    async def _stored_pdf(self, message: Message) -> bytes | None:
        """The PDF stored with an inbound fax, else one made from its TIFF."""
        stored = next((a for a in message.attachments if a.content_type == "application/pdf"), None)
        if stored is not None and stored.sha256 is not None:
            try:
                _, content = await self.mailbox.attachment(message.id, stored.id)
                return await content.read_all()
            except BlobError:
                pass
        return await self._as_pdf(message)

    async def _duration(self, message_id: int) -> float | None:
        events = await self.mailbox.events(message_id)
        for event in reversed(events):
            if event.kind == "status" and event.to_value == "Sent" and event.detail:
                value = event.detail.get("duration")
                return float(value) if isinstance(value, int | float) else None
        return None

    async def _as_pdf(self, message: Message) -> bytes | None:
        tiff = next(
            (
                a
                for a in message.attachments
                if a.type is AttachmentType.RENDERED_DOCUMENT and a.sha256
            ),
            None,
        )
        if tiff is None or tiff.sha256 is None:
            return None
        try:
            async with self.mailbox.blob_file(tiff.sha256) as path:
                return await asyncio.to_thread(_tiff_to_pdf, path)
        except BlobError:
            return None


def _tiff_to_pdf(path: Path) -> bytes:
    with Image.open(path) as image:
        pages = []
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            pages.append(image.convert("1").copy())
    out = io.BytesIO()
    pages[0].save(out, format="PDF", save_all=True, append_images=pages[1:], resolution=204)
    return out.getvalue()
