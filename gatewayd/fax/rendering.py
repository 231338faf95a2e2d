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
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from gatewayd.config.settings import Resolution, Settings
from gatewayd.errors import BlobError, RenderError
from gatewayd.logging import get_logger
from gatewayd.mailbox import Mailbox, Message
from gatewayd.model import AttachmentType, FaxResolution, MessageStatus
from gatewayd.render.job import CoverSheet, Renderer, RenderOptions, Source
from gatewayd.render.kinds import Kind

log = get_logger("gatewayd.fax")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A fax ready to send: its message (with the RenderedDocument) and the digest of
    the TIFF's bytes in the mailbox (``Mailbox.blob_file`` gives them as a file)."""

    message: Message
    sha256: str
    pages: int


async def sources_of(mailbox: Mailbox, message: Message, files: AsyncExitStack) -> list[Source]:
    """The message's documents in order, as files the render workers can read (open
    until ``files`` closes)."""
    out = []
    documents = [a for a in message.attachments if a.type is AttachmentType.SOURCE_DOCUMENT]
    for number, item in enumerate(sorted(documents, key=lambda a: a.position), 1):
        name = item.file_name or f"document {number}"
        try:
            kind = Kind(item.content_type)
        except ValueError:
            raise RenderError(f"{name}: cannot fax {item.content_type}") from None
        if item.sha256 is None:
            raise RenderError(f"{name}: the document is no longer stored (purged?)")
        try:
            path = await files.enter_async_context(mailbox.blob_file(item.sha256))
        except BlobError:
            raise RenderError(f"{name}: the document is no longer stored (purged?)") from None
        out.append(Source(name, kind, path))
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
    resolution: Resolution = "normal" if message.fax_resolution is FaxResolution.LOW else "fine"
    return RenderOptions.from_settings(settings.fax, resolution=resolution)


async def render_fax(
    mailbox: Mailbox,
    renderer: Renderer,
    settings: Settings,
    message: Message,
    *,
    lease_owner: str | None = None,
    observe: Callable[[float], None] | None = None,
) -> Rendered | None:
    """Render a queued fax, or fail it. None: it failed (now SendingFailed).
    ``observe`` is told how many seconds the rendering took."""
    stored = next(
        (a for a in message.attachments if a.type is AttachmentType.RENDERED_DOCUMENT), None
    )
    if stored is not None and stored.sha256 and await mailbox.has_blob(stored.sha256):
        return Rendered(message, stored.sha256, message.fax_page_count or 0)
    handle, name = tempfile.mkstemp(prefix="gatewayd-fax-", suffix=".tif", dir=renderer.scratch)
    os.close(handle)
    out = Path(name)
    try:
        started = time.monotonic()
        try:
            async with AsyncExitStack() as files:
                result = await renderer.render(
                    await sources_of(mailbox, message, files),
                    cover_of(settings, message),
                    options_for(settings, message),
                    out,
                )
        except RenderError as exc:
            log.warning(
                "fax.render_failed",
                message_id=message.id,
                reason=exc.reason,
                fax_error_code=exc.fax_error_code.value,
            )
            await mailbox.transition(
                message.id,
                MessageStatus.SENDING_FAILED,
                reason=exc.reason,
                lease_owner=lease_owner,
                fax_error_code=exc.fax_error_code,
            )
            return None
        finally:
            if observe is not None:
                observe(time.monotonic() - started)
        updated = await mailbox.add_rendered(message.id, out, result.pages, lease_owner=lease_owner)
    finally:
        await asyncio.to_thread(out.unlink, True)  # missing_ok
    stored = next(a for a in updated.attachments if a.type is AttachmentType.RENDERED_DOCUMENT)
    assert stored.sha256 is not None
    return Rendered(updated, stored.sha256, result.pages)
