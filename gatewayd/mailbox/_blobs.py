"""Attachment bytes as files, named by their SHA-256, under ``<data_dir>/blobs``.

A blob is written to a temporary file, fsynced, renamed into place and its directory
fsynced, all before the database row that points at it commits; a crash at any point
leaves either no row or a row with its file. Identical bytes are stored once.

Erasing is the other half: a file is removed only when no attachment row refers to it
and it has not been written (or re-used, which touches it) within ``grace`` seconds,
so a writer that is about to commit a row for an existing blob never loses it.
Files orphaned by a crash between write and commit are found by ``orphans()``.

All methods block on disk I/O; callers on the event loop run them in a thread.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from gatewayd.errors import BlobError

_CHUNK = 1 << 20
DEFAULT_GRACE_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class BlobRef:
    sha256: str
    size: int


class BlobStore(Protocol):
    def put_bytes(self, data: bytes) -> BlobRef: ...

    def put_file(self, source: Path) -> BlobRef: ...

    def open(self, sha256: str) -> BinaryIO: ...

    def path(self, sha256: str) -> Path: ...

    def read_range(self, sha256: str, offset: int, length: int) -> bytes: ...

    def exists(self, sha256: str) -> bool: ...

    def erase(self, digests: Iterable[str], *, grace: float = ...) -> set[str]: ...

    def all_digests(self) -> Iterator[str]: ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBlobStore:
    """The blob store on the local file system."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"

    def prepare(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put_bytes(self, data: bytes) -> BlobRef:
        digest = hashlib.sha256(data).hexdigest()
        return self._commit(digest, len(data), lambda out: out.write(data))

    def put_file(self, source: Path) -> BlobRef:
        digest = hashlib.sha256()
        size = 0
        try:
            with source.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)

            def copy(out: BinaryIO) -> None:
                with source.open("rb") as src:
                    shutil.copyfileobj(src, out, _CHUNK)

        except OSError as exc:
            raise BlobError(f"cannot read {source}: {exc.strerror}") from exc
        return self._commit(digest.hexdigest(), size, copy)

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

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self.path(sha256).open("rb")
        except OSError as exc:
            raise BlobError(f"attachment bytes {sha256} missing: {exc.strerror}") from exc

    def read_range(self, sha256: str, offset: int, length: int) -> bytes:
        try:
            with self.path(sha256).open("rb") as source:
                source.seek(offset)
                return source.read(length)
        except OSError as exc:
            raise BlobError(f"attachment bytes {sha256} unreadable: {exc.strerror}") from exc

    def erase(self, digests: Iterable[str], *, grace: float = DEFAULT_GRACE_SECONDS) -> set[str]:
        """Remove these blobs unless written or re-used within ``grace`` seconds; the
        caller has checked that no row refers to them. Returns the digests now gone."""
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

    def all_digests(self) -> Iterator[str]:
        """Every blob on disk (for the orphan scan), plus stale temporary files removed."""
        cutoff = time.time() - DEFAULT_GRACE_SECONDS
        for leftover in self._tmp.glob("*"):
            if leftover.stat().st_mtime <= cutoff:
                leftover.unlink(missing_ok=True)
        for sub in self.root.iterdir():
            if len(sub.name) == 2 and sub.is_dir():
                for blob in sub.iterdir():
                    yield blob.name
