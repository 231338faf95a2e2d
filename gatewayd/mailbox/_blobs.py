"""Attachment bytes, content-addressed by SHA-256: files under ``<data_dir>/blobs`` for
a SQLite mailbox, rows of 1 MiB chunks in the database for a PostgreSQL one (so that
every node of a cluster reads what any node stored).

Either way a blob is stored, durably, before the message row that points at it
commits: a crash at any point leaves either no row or a row with its bytes.
Identical bytes are stored once; storing them again marks them used now.

Erasing is the other half: a blob is removed only when no attachment row refers to it
(the caller checks) and it has not been stored or re-used within ``grace`` seconds, so
a writer that is about to commit a row for an existing blob never loses it. Blobs
orphaned by a crash between store and commit are found by ``all_digests`` and the
same check.

Nothing here holds a whole large file in memory: files are copied and hashed in
pieces, database blobs written and read a chunk at a time. Work on the file system
runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Protocol

import sqlalchemy as sa

from gatewayd.clock import Clock
from gatewayd.errors import BlobError
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._schema import blob_chunks, blobs

CHUNK = 1 << 20
DEFAULT_GRACE_SECONDS = 600.0

Source = bytes | Path | None
"""What to store: bytes in memory, a file, or nothing (the message's own text)."""


@dataclass(frozen=True, slots=True)
class BlobRef:
    sha256: str
    size: int


class BlobStore(Protocol):
    async def put_all(self, sources: Sequence[Source]) -> list[BlobRef | None]:
        """Store each source (None stays None); durable when this returns."""
        ...

    async def exists(self, sha256: str) -> bool: ...

    async def size(self, sha256: str) -> int:
        """BlobError when the blob is gone."""
        ...

    async def read(self, sha256: str, offset: int, length: int) -> bytes: ...

    def local_file(self, sha256: str) -> contextlib.AbstractAsyncContextManager[Path]:
        """The blob as a file of this host, for as long as the block runs."""
        ...

    async def erase(self, digests: Iterable[str], *, grace: float = ...) -> set[str]:
        """Remove these blobs unless stored or re-used within ``grace`` seconds; the
        caller has checked that no row refers to them. Returns the digests now gone."""
        ...

    async def all_digests(self) -> set[str]:
        """Every blob stored (for the orphan scan)."""
        ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hash_file(source: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        with source.open("rb") as src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise BlobError(f"cannot read {source}: {exc.strerror}") from exc
    return digest.hexdigest(), size


class FileBlobStore:
    """The blob store on the local file system (a SQLite mailbox)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"

    def prepare(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    # -- the protocol -------------------------------------------------------------------

    async def put_all(self, sources: Sequence[Source]) -> list[BlobRef | None]:
        if all(source is None for source in sources):  # an SMS: no trip to a thread
            return [None] * len(sources)
        return await asyncio.to_thread(self._put_all, sources)

    async def exists(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.path(sha256).is_file)

    async def size(self, sha256: str) -> int:
        try:
            return (await asyncio.to_thread(self.path(sha256).stat)).st_size
        except OSError as exc:
            raise BlobError(f"attachment bytes {sha256} missing: {exc.strerror}") from exc

    async def read(self, sha256: str, offset: int, length: int) -> bytes:
        return await asyncio.to_thread(self._read, sha256, offset, length)

    @contextlib.asynccontextmanager
    async def local_file(self, sha256: str) -> AsyncIterator[Path]:
        if not await self.exists(sha256):
            raise BlobError(f"attachment bytes {sha256} missing")
        yield self.path(sha256)

    async def erase(
        self, digests: Iterable[str], *, grace: float = DEFAULT_GRACE_SECONDS
    ) -> set[str]:
        return await asyncio.to_thread(self._erase, list(digests), grace)

    async def all_digests(self) -> set[str]:
        return await asyncio.to_thread(lambda: set(self._all_digests()))

    # -- on the file system (in a thread) ---------------------------------------------

    def _put_all(self, sources: Sequence[Source]) -> list[BlobRef | None]:
        out: list[BlobRef | None] = []
        for source in sources:
            if source is None:
                out.append(None)
            elif isinstance(source, bytes):
                out.append(self.put_bytes(source))
            else:
                out.append(self.put_file(source))
        return out

    def put_bytes(self, data: bytes) -> BlobRef:
        digest = hashlib.sha256(data).hexdigest()
        return self._commit(digest, len(data), lambda out: out.write(data))

    def put_file(self, source: Path) -> BlobRef:
        digest, size = _hash_file(source)

        def copy(out: BinaryIO) -> None:
            with source.open("rb") as src:
                shutil.copyfileobj(src, out, CHUNK)

        return self._commit(digest, size, copy)

    def _commit(self, digest: str, size: int, write: Callable[[BinaryIO], object]) -> BlobRef:
        final = self.path(digest)
        try:
            if final.is_file() and final.stat().st_size == size:
                os.utime(final)  # re-used: the sweeper's grace period starts again
                return BlobRef(digest, size)
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix=digest[:16])
            try:
                with os.fdopen(fd, "wb") as out:
                    write(out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp_name, final)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
            _fsync_dir(final.parent)
        except OSError as exc:
            raise BlobError(f"cannot store attachment bytes under {self.root}: {exc}") from exc
        return BlobRef(digest, size)

    def _read(self, sha256: str, offset: int, length: int) -> bytes:
        try:
            with self.path(sha256).open("rb") as source:
                source.seek(offset)
                return source.read(length)
        except OSError as exc:
            raise BlobError(f"attachment bytes {sha256} unreadable: {exc.strerror}") from exc

    def _erase(self, digests: Iterable[str], grace: float) -> set[str]:
        gone: set[str] = set()
        cutoff = time.time() - grace
        for digest in digests:
            path = self.path(digest)
            try:
                if path.stat().st_mtime <= cutoff:
                    path.unlink()
                    gone.add(digest)
            except FileNotFoundError:
                gone.add(digest)
        return gone

    def _all_digests(self) -> Iterator[str]:
        """Every blob on disk, after removing stale temporary files."""
        cutoff = time.time() - DEFAULT_GRACE_SECONDS
        for leftover in self._tmp.glob("*"):
            if leftover.stat().st_mtime <= cutoff:
                leftover.unlink(missing_ok=True)
        for sub in self.root.iterdir():
            if len(sub.name) == 2 and sub.is_dir():
                for blob in sub.iterdir():
                    yield blob.name


class DatabaseBlobStore:
    """The blob store in the mailbox database (PostgreSQL): one ``blobs`` row per blob
    and its bytes in ``blob_chunks`` rows of at most 1 MiB, written in one transaction.
    ``scratch`` holds the local copies ``local_file`` makes."""

    def __init__(self, db: Database, clock: Clock, scratch: Path) -> None:
        self._db = db
        self._clock = clock
        self.scratch = scratch

    def prepare(self) -> None:
        self.scratch.mkdir(parents=True, exist_ok=True)

    async def put_all(self, sources: Sequence[Source]) -> list[BlobRef | None]:
        out: list[BlobRef | None] = []
        for source in sources:
            if source is None:
                out.append(None)
            elif isinstance(source, bytes):
                digest = hashlib.sha256(source).hexdigest()
                out.append(await self._put(digest, len(source), _pieces_of(source)))
            else:
                digest, size = await asyncio.to_thread(_hash_file, source)
                out.append(await self._put(digest, size, _pieces_from(source)))
        return out

    async def _put(self, digest: str, size: int, pieces: AsyncIterator[bytes]) -> BlobRef:
        now = self._clock.now()
        async with self._db.write() as conn:
            touched = await conn.execute(
                sa.update(blobs)
                .where(blobs.c.sha256 == digest, blobs.c.size == size)
                .values(stored_at=now)
            )
            if touched.rowcount:  # re-used: the sweeper's grace period starts again
                await _close(pieces)
                return BlobRef(digest, size)
            await conn.execute(blobs.insert().values(sha256=digest, size=size, stored_at=now))
            seq = 0
            async for piece in pieces:
                await conn.execute(blob_chunks.insert().values(sha256=digest, seq=seq, data=piece))
                seq += 1
        return BlobRef(digest, size)

    async def exists(self, sha256: str) -> bool:
        async with self._db.read() as conn:
            found = await conn.scalar(sa.select(blobs.c.size).where(blobs.c.sha256 == sha256))
        return found is not None

    async def size(self, sha256: str) -> int:
        async with self._db.read() as conn:
            found = await conn.scalar(sa.select(blobs.c.size).where(blobs.c.sha256 == sha256))
        if found is None:
            raise BlobError(f"attachment bytes {sha256} missing")
        return int(found)

    async def read(self, sha256: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        first, last = offset // CHUNK, (offset + length - 1) // CHUNK
        c = blob_chunks.c
        async with self._db.read() as conn:
            rows = await conn.execute(
                sa.select(c.seq, c.data)
                .where(c.sha256 == sha256, c.seq >= first, c.seq <= last)
                .order_by(c.seq)
            )
            data = b"".join(bytes(row.data) for row in rows)
        start = offset - first * CHUNK
        return data[start : start + length]

    @contextlib.asynccontextmanager
    async def local_file(self, sha256: str) -> AsyncIterator[Path]:
        size = await self.size(sha256)
        handle, name = tempfile.mkstemp(dir=self.scratch, prefix=f"{sha256[:16]}-")
        os.close(handle)
        path = Path(name)
        try:
            out = await asyncio.to_thread(path.open, "wb")
            try:
                for offset in range(0, size, CHUNK):
                    piece = await self.read(sha256, offset, CHUNK)
                    await asyncio.to_thread(out.write, piece)
            finally:
                await asyncio.to_thread(out.close)
            yield path
        finally:
            await asyncio.to_thread(path.unlink, True)

    async def erase(
        self, digests: Iterable[str], *, grace: float = DEFAULT_GRACE_SECONDS
    ) -> set[str]:
        wanted = sorted(set(digests))
        if not wanted:
            return set()
        cutoff = self._clock.now() - timedelta(seconds=grace)
        async with self._db.write() as conn:
            deleted = await conn.execute(
                sa.delete(blobs)
                .where(blobs.c.sha256.in_(wanted), blobs.c.stored_at <= cutoff)
                .returning(blobs.c.sha256)
            )
            gone = {row.sha256 for row in deleted}
            left = await conn.execute(sa.select(blobs.c.sha256).where(blobs.c.sha256.in_(wanted)))
            still = {row.sha256 for row in left}
        return gone | (set(wanted) - still)

    async def all_digests(self) -> set[str]:
        async with self._db.read() as conn:
            return set((await conn.execute(sa.select(blobs.c.sha256))).scalars())

    async def stored_before(self, moment: datetime) -> None:
        """Make every blob look stored at ``moment`` (tests of the grace period)."""
        async with self._db.write() as conn:
            await conn.execute(sa.update(blobs).values(stored_at=moment))


async def _pieces_of(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]
    if not data:
        yield b""


async def _pieces_from(source: Path) -> AsyncIterator[bytes]:
    try:
        handle = await asyncio.to_thread(source.open, "rb")
    except OSError as exc:
        raise BlobError(f"cannot read {source}: {exc.strerror}") from exc
    try:
        first = True
        while True:
            piece = await asyncio.to_thread(handle.read, CHUNK)
            if not piece and not first:
                return
            first = False
            yield piece
            if not piece:
                return
    finally:
        await asyncio.to_thread(handle.close)


async def _close(pieces: AsyncIterator[bytes]) -> None:
    closing = getattr(pieces, "aclose", None)
    if closing is not None:
        await closing()
