"""One daemon per data directory: ``<mailbox.data_dir>/gatewayd.lock``.

``gatewayd run`` takes an exclusive ``flock`` on the file before it opens the mailbox,
binds a port or follows a fax, and holds it while it runs. A second daemon on the same
data directory fails at once with ``AlreadyRunning``, which names the file and the pid
of the holder (written into the file), and never gets as far as binding the SMPP links
or adopting the first daemon's faxes. The kernel drops the lock when the holder's
process ends, however it ends, so a crash leaves nothing stale behind; the file itself
stays (removing it would let a third process lock a new file while a second still
holds the old one). The descriptor is not inherited by programs the daemon starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from gatewayd.errors import AlreadyRunning, StartupError

LOCK_NAME = "gatewayd.lock"


class DataDirLock:
    """The held lock; ``release()`` (or the end of the process) lets it go."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock


def acquire(data_dir: Path) -> DataDirLock:
    """Lock ``data_dir`` for this process, or AlreadyRunning / StartupError."""
    path = data_dir / LOCK_NAME
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StartupError(f"cannot open the lock file {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise AlreadyRunning(path, holder) from None
    except OSError as exc:
        os.close(fd)
        raise StartupError(f"cannot lock {path}: {exc.strerror}") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DataDirLock(path, fd)


def _holder(fd: int) -> int | None:
    """The pid the holder wrote, if it has yet."""
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None


def holder(data_dir: Path) -> int | None:
    """The pid of the daemon holding ``data_dir`` now (0 when it has not written it
    yet), or None when no daemon holds it. Creates nothing."""
    try:
        fd = os.open(data_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(fd) or 0
    except OSError:
        return None
    finally:
        os.close(fd)  # drops our shared lock, if we got it
    return None
