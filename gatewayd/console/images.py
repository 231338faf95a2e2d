"""Fax pages as PNG images, made on request and kept on disk.

A page image is made from the fax's TIFF (its RenderedDocument) by
gatewayd.render.preview in a thread, at most ``WORKERS`` at a time, and kept under
``data_dir/console/pages`` named by the TIFF's SHA-256, the page and the size: a TIFF
never changes under its digest, so a kept image is never stale. When the kept images
pass ``[console] image_cache_bytes`` the least recently made go first. Two requests for
the same image wait for one making.

Previews of a fax not sent yet are TIFFs rendered by the render pool into
``data_dir/console/previews``, each known by a random token and owned by the user
who asked; they are forgotten after ``PREVIEW_SECONDS`` (at most ``MAX_PREVIEWS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from gatewayd.logging import get_logger
from gatewayd.mailbox import Mailbox
from gatewayd.render import preview

log = get_logger("gatewayd.console")

WORKERS = 2
THUMB_WIDTH = 220
SIZES = {"thumb": THUMB_WIDTH, "full": preview.FULL}
PREVIEW_SECONDS = 15 * 60.0
MAX_PREVIEWS = 50


@dataclass(frozen=True, slots=True)
class Preview:
    token: str
    owner: str  # the e-mail address of the user who made it
    path: Path
    pages: int
    made: float


class PageImages:
    def __init__(self, mailbox: Mailbox, directory: Path, limit: int) -> None:
        self.mailbox = mailbox
        self.pages_dir = directory / "pages"
        self.previews_dir = directory / "previews"
        self.limit = limit
        self._slots = asyncio.Semaphore(WORKERS)
        self._making: dict[str, asyncio.Future[bytes]] = {}
        self._used: int | None = None  # bytes kept, counted on first use
        self.previews: dict[str, Preview] = {}

    async def page(self, sha256: str, index: int, size: str) -> bytes:
        """PNG bytes of page ``index`` (from 0) of the stored TIFF ``sha256``;
        RenderError for a page that is not there, BlobError for a TIFF gone."""
        name = f"{sha256}-{index}-{size}.png"
        kept = self.pages_dir / name
        data = await asyncio.to_thread(_read, kept)
        if data is not None:
            return data
        waiting = self._making.get(name)
        if waiting is not None:
            return await asyncio.shield(waiting)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._making[name] = future
        try:
            async with self._slots, self.mailbox.blob_file(sha256) as tiff:
                data = await asyncio.to_thread(preview.page_png, tiff, index, SIZES[size])
            await self._keep(kept, data)
            future.set_result(data)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            del self._making[name]
        return data

    async def page_count(self, sha256: str) -> int:
        async with self.mailbox.blob_file(sha256) as tiff:
            return await asyncio.to_thread(preview.page_count, tiff)

    async def _keep(self, path: Path, data: bytes) -> None:
        try:
            self._used = await asyncio.to_thread(self._store, path, data, self._used)
        except OSError as exc:  # a full disk costs the cache, not the page
            log.warning("console.image_cache_failed", error=str(exc))

    def _store(self, path: Path, data: bytes, used: int | None) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        if used is None:
            used = sum(p.stat().st_size for p in path.parent.glob("*.png"))
        temporary = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
        used += len(data)
        if used > self.limit:
            files = sorted(path.parent.glob("*.png"), key=lambda p: p.stat().st_mtime)
            for old in files:
                if used <= self.limit * 0.8:
                    break
                with contextlib.suppress(OSError):
                    size = old.stat().st_size
                    old.unlink()
                    used -= size
        return used

    # -- previews -------------------------------------------------------------------------

    def new_preview_path(self) -> tuple[str, Path]:
        self.previews_dir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(18)
        return token, self.previews_dir / f"{token}.tif"

    async def add_preview(self, token: str, owner: str, path: Path, pages: int) -> Preview:
        made = Preview(token, owner, path, pages, time.monotonic())
        self.previews[token] = made
        await self._expire_previews()
        return made

    def preview(self, token: str, owner: str) -> Preview | None:
        found = self.previews.get(token)
        if found is None or found.owner != owner:
            return None
        if time.monotonic() - found.made > PREVIEW_SECONDS:
            return None
        return found

    async def preview_page(self, found: Preview, index: int, size: str) -> bytes:
        async with self._slots:
            return await asyncio.to_thread(preview.page_png, found.path, index, SIZES[size])

    async def _expire_previews(self) -> None:
        now = time.monotonic()
        ordered = sorted(self.previews.values(), key=lambda p: p.made)
        gone = [p for p in ordered if now - p.made > PREVIEW_SECONDS]
        gone += [p for p in ordered[: max(0, len(ordered) - MAX_PREVIEWS)] if p not in gone]
        for item in gone:
            self.previews.pop(item.token, None)
            await asyncio.to_thread(item.path.unlink, True)
        await asyncio.to_thread(_remove_stale, self.previews_dir, set(self.previews))

    async def close(self) -> None:
        for item in list(self.previews.values()):
            await asyncio.to_thread(item.path.unlink, True)
        self.previews.clear()


def _remove_stale(directory: Path, kept: set[str]) -> None:
    """Preview files no preview knows (an earlier life's) once they are old."""
    cutoff = time.time() - PREVIEW_SECONDS
    for path in directory.glob("*.tif"):
        with contextlib.suppress(OSError):
            if path.stem not in kept and path.stat().st_mtime < cutoff:
                path.unlink()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
