"""The render step of an outbound fax, on a real mailbox (SQLite and PostgreSQL): the
documents and cover page become a stored RenderedDocument with faxPageCount, or the
message fails with faxErrorCode and a reason a person can act on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gatewayd.config.settings import FaxSettings, Settings, User
from gatewayd.errors import LeaseLost, StoreError
from gatewayd.fax.rendering import render_fax
from gatewayd.mailbox import Mailbox, NewAttachment
from gatewayd.model import AttachmentType, FaxResolution, MessageStatus, MessageType
from gatewayd.render.job import Renderer
from tests import documents
from tests.conftest import ACCOUNT, EXTENSION, ROOT, fax
from tests.faxcheck import assert_fax

DOCS = ROOT / "tests" / "data" / "docs"
SETTINGS = Settings(
    fax=FaxSettings(max_pages=20),
    users=(
        User(
            ("alice@example.com",),
            ACCOUNT,
            EXTENSION,
            "101",
            "Alice Example",
            fax_number="+4930123457",
        ),
    ),
)


@pytest.fixture(scope="module")
def renderer() -> Iterator[Renderer]:
    pool = Renderer(2)
    yield pool
    asyncio.run(pool.close())


async def queued_fax(mailbox: Mailbox, *documents_: tuple[bytes, str], **more: object) -> int:
    attachments = tuple(
        NewAttachment(AttachmentType.SOURCE_DOCUMENT, kind, data=data, file_name=f"doc{n}")
        for n, (data, kind) in enumerate(documents_, 1)
    )
    message = await mailbox.create(replace(fax(**more), attachments=attachments))
    leased = await mailbox.lease("dispatcher", types=[MessageType.FAX], limit=10)
    assert [m.id for m in leased] == [message.id]
    return message.id


async def test_a_fax_is_rendered_and_stored(mailbox: Mailbox, renderer: Renderer) -> None:
    pdf = documents.dense_text_pdf(2)
    message_id = await queued_fax(
        mailbox, (pdf, "application/pdf"), ((DOCS / "photo.jpg").read_bytes(), "image/jpeg"),
        cover_index=1, cover_page_text="Please sign.", fax_resolution=FaxResolution.LOW,
    )  # fmt: skip
    message = await mailbox.get(message_id)
    rendered = await render_fax(mailbox, renderer, SETTINGS, message, lease_owner="dispatcher")
    assert rendered is not None
    assert rendered.pages == 4  # cover, two PDF pages, the photo
    async with mailbox.blob_file(rendered.sha256) as tiff:
        assert_fax(tiff, count=4, resolution=98)
        size = tiff.stat().st_size
    stored = await mailbox.get(message_id)
    assert stored.message_status is MessageStatus.QUEUED
    assert stored.fax_page_count == 4
    tiffs = [a for a in stored.attachments if a.type is AttachmentType.RENDERED_DOCUMENT]
    assert len(tiffs) == 1
    assert tiffs[0].content_type == "image/tiff"
    assert tiffs[0].size == size
    assert tiffs[0].sha256 == rendered.sha256
    assert stored.to_json()["faxPageCount"] == 4
    events = [e for e in await mailbox.events(message_id) if e.kind == "rendered"]
    assert events[0].detail == {"pages": 4, "bytes": tiffs[0].size}
    # asked again (a retry after a busy line), the stored pages are used as they are
    again = await render_fax(mailbox, renderer, SETTINGS, stored, lease_owner="dispatcher")
    assert again is not None
    assert again.sha256 == rendered.sha256


async def test_documents_that_cannot_be_faxed_fail_the_message(
    mailbox: Mailbox, renderer: Renderer
) -> None:
    encrypted = (DOCS / "encrypted.pdf").read_bytes()
    message_id = await queued_fax(mailbox, (b"%PDF-1.4 fine?", "application/pdf"),
                                  (encrypted, "application/pdf"))  # fmt: skip
    message = await mailbox.get(message_id)
    assert await render_fax(mailbox, renderer, SETTINGS, message, lease_owner="dispatcher") is None
    failed = await mailbox.get(message_id)
    assert failed.message_status is MessageStatus.SENDING_FAILED
    assert failed.fax_error_code == "RenderingFailed"
    assert failed.to_json()["to"][0]["faxErrorCode"] == "RenderingFailed"
    reasons = [e.reason for e in await mailbox.events(message_id) if e.kind == "status"]
    assert reasons[-1] in ("doc1: the PDF is damaged", "doc2: the PDF is password-protected")


async def test_too_many_pages_is_its_own_error(mailbox: Mailbox, renderer: Renderer) -> None:
    pdf = documents.dense_text_pdf(12)
    message_id = await queued_fax(mailbox, (pdf, "application/pdf"), (pdf, "application/pdf"))
    message = await mailbox.get(message_id)
    assert await render_fax(mailbox, renderer, SETTINGS, message, lease_owner="dispatcher") is None
    failed = await mailbox.get(message_id)
    assert failed.fax_error_code == "TooManyPages"
    events = await mailbox.events(message_id)
    assert events[-1].reason == "too many pages: 24, at most 20"


async def test_only_the_lease_holder_stores_pages(mailbox: Mailbox, tmp_path: Path) -> None:
    message_id = await queued_fax(mailbox, (b"%PDF-1.4", "application/pdf"))
    tiff = tmp_path / "pages.tif"
    tiff.write_bytes(b"II*\x00")
    with pytest.raises(LeaseLost):
        await mailbox.add_rendered(message_id, tiff, 1, lease_owner="someone else")
    await mailbox.transition(message_id, MessageStatus.SENDING_FAILED, reason="test",
                             lease_owner="dispatcher")  # fmt: skip
    with pytest.raises(StoreError, match="not a queued fax"):
        await mailbox.add_rendered(message_id, tiff, 1)
