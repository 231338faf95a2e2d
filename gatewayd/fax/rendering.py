"""The render step of an outbound fax: its documents (and cover page) into one TIFF,
stored with the message as its RenderedDocument, with faxPageCount set; or, when the
documents cannot be faxed, the message SendingFailed with faxErrorCode RenderingFailed
(TooManyPages for too long a job) and the reason, naming the document.

The caller holds the message's lease (the fax dispatcher); a rendering already stored
is reused, so a retry after a carrier failure does not render again.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gatewayd.config.settings import Settings
from gatewayd.errors import RenderError
from gatewayd.logging import get_logger
from gatewayd.mailbox import Mailbox, Message
from gatewayd.metrics import RENDER_SECONDS
from gatewayd.model import AttachmentType, FaxResolution, MessageStatus
from gatewayd.render.job import CoverSheet, Renderer, RenderOptions, Source
from gatewayd.render.kinds import Kind

log = get_logger("gatewayd.fax")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A fax ready to send: its message (with the RenderedDocument) and the TIFF."""

    message: Message
    path: Path
    pages: int


def sources_of(mailbox: Mailbox, message: Message) -> list[Source]:
    """The message's documents in order, as files in the blob store."""
    out = []
    documents = [a for a in message.attachments if a.type is AttachmentType.SOURCE_DOCUMENT]
    for number, item in enumerate(sorted(documents, key=lambda a: a.position), 1):
        name = item.file_name or f"document {number}"
        if item.sha256 is None or not mailbox.blobs.exists(item.sha256):
            raise RenderError(f"{name}: the document is no longer stored (purged?)")
        try:
            kind = Kind(item.content_type)
        except ValueError:
            raise RenderError(f"{name}: cannot fax {item.content_type}") from None
        out.append(Source(name, kind, mailbox.blobs.path(item.sha256)))
    return out


def cover_of(settings: Settings, message: Message) -> CoverSheet | None:
    if not message.cover_index:
        return None
    user = settings.user_by_extension(message.extension_id)
    recipient = message.to[0] if message.to else None
    return CoverSheet(
        recipient_number=(recipient.phone_number or "") if recipient else "",
        recipient_name=(recipient.name or "") if recipient else "",
        sender_name=user.name if user else (message.from_.name or ""),
        sender_email=message.sender_email or "",
        sender_fax=message.from_.phone_number or "",
        subject=message.subject or "",
        note=message.cover_page_text or "",
        sent_at=message.creation_time.astimezone(),  # the daemon's local time zone
    )


def options_for(settings: Settings, message: Message) -> RenderOptions:
    resolution = "normal" if message.fax_resolution is FaxResolution.LOW else "fine"
    return RenderOptions.from_settings(settings.fax, resolution=resolution)


async def render_fax(
    mailbox: Mailbox,
    renderer: Renderer,
    settings: Settings,
    message: Message,
    *,
    lease_owner: str | None = None,
) -> Rendered | None:
    """Render a queued fax, or fail it. None: it failed (now SendingFailed)."""
    stored = next(
        (a for a in message.attachments if a.type is AttachmentType.RENDERED_DOCUMENT), None
    )
    if stored is not None and stored.sha256 and mailbox.blobs.exists(stored.sha256):
        return Rendered(message, mailbox.blobs.path(stored.sha256), message.fax_page_count or 0)
    handle, name = tempfile.mkstemp(prefix="gatewayd-fax-", suffix=".tif", dir=renderer.scratch)
    os.close(handle)
    out = Path(name)
    try:
        try:
            with RENDER_SECONDS.time():
                result = await renderer.render(
                    sources_of(mailbox, message),
                    cover_of(settings, message),
                    options_for(settings, message),
                    out,
                )
        except RenderError as exc:
            log.warning("fax.render_failed", message_id=message.id, reason=exc.reason,
                        fax_error_code=exc.fax_error_code)  # fmt: skip
            await mailbox.transition(
                message.id,
                MessageStatus.SENDING_FAILED,
                reason=exc.reason,
                lease_owner=lease_owner,
                fax_error_code=exc.fax_error_code,
            )
            return None
        updated = await mailbox.add_rendered(message.id, out, result.pages, lease_owner=lease_owner)
    finally:
        await asyncio.to_thread(out.unlink, True)  # missing_ok
    stored = next(a for a in updated.attachments if a.type is AttachmentType.RENDERED_DOCUMENT)
    assert stored.sha256 is not None
    return Rendered(updated, mailbox.blobs.path(stored.sha256), result.pages)
