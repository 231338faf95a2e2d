"""How much memory rendering may use, and when a render worker is replaced.

In each worker (``apply``, from the pool's initializer):
- RLIMIT_AS (soft) is ``fax.render_memory``: an allocation past it fails, as a
  MemoryError in Python (the call answers TOO_LARGE) or inside PDFium, which then
  usually kills the process;
- a thread looks at the process's address space every ``POLL`` seconds; near the
  limit it leaves a marker (``OVER_MEMORY``) in the current call's scratch directory,
  so that the parent can tell a worker that died of it from one that crashed.

In the parent (``Recycling``): a worker keeps what it allocated (a 7.5 GB worker stays
7.5 GB when idle), so the pool is replaced, between calls, after ``render_worker_calls``
calls or once a worker holds more than ``render_worker_rss``. (Not
``ProcessPoolExecutor(max_tasks_per_child=...)``: on CPython 3.11 to 3.13 it hangs once
a worker retires with tasks queued, gh-115634.)
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gatewayd.config.settings import FaxSettings

OVER_MEMORY = "over-memory"
POLL = 0.05
NEAR = 0.9  # of the limit: where the marker is left
TOO_LARGE = "too large to render: it needs more memory than fax.render_memory allows"

_PAGE = os.sysconf("SC_PAGE_SIZE")
_limit = 0
_marker: Path | None = None


@dataclass(frozen=True, slots=True)
class MemoryLimits:
    """``fax.render_memory``, ``render_worker_calls`` and ``render_worker_rss``."""

    address_space: int | None = None  # bytes; None: no limit
    calls_per_worker: int = 0  # 0: never replaced for the number of calls
    max_rss: int = 0  # bytes; 0: never replaced for its size

    @classmethod
    def from_settings(cls, fax: FaxSettings) -> MemoryLimits:
        return cls(fax.render_memory, fax.render_worker_calls, fax.render_worker_rss)


def apply(address_space: int | None) -> None:
    """In a worker: the address-space limit and the thread that watches it."""
    global _limit  # noqa: PLW0603 - one limit per worker process
    if not address_space:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = address_space if hard == resource.RLIM_INFINITY else min(address_space, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    _limit = limit
    threading.Thread(target=_watch, name="memory-watchdog", daemon=True).start()


def watch(workdir: Path | None) -> None:
    """The call now running leaves its marker in ``workdir`` (None: no call)."""
    global _marker  # noqa: PLW0603 - the one call a worker runs at a time
    _marker = workdir / OVER_MEMORY if workdir is not None else None


def address_space() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[0]) * _PAGE


def _watch() -> None:
    while True:
        time.sleep(POLL)
        marker = _marker
        if marker is not None and address_space() > _limit * NEAR:
            with contextlib.suppress(OSError):
                marker.touch()


def over_memory(workdir: Path) -> bool:
    """Whether a call with this scratch directory came near the limit (blocking)."""
    return (workdir / OVER_MEMORY).exists()


def rss(pids: Iterable[int]) -> int:
    """The largest resident size of these processes, in bytes (0 for gone ones)."""
    largest = 0
    for pid in pids:
        with (
            contextlib.suppress(OSError, ValueError, IndexError),
            open(f"/proc/{pid}/statm", "rb") as statm,
        ):
            largest = max(largest, int(statm.read().split()[1]) * _PAGE)
    return largest


class Recycling:
    """Counts a pool's calls and says when it should be replaced."""

    def __init__(self, limits: MemoryLimits) -> None:
        self.limits = limits
        self.calls = 0

    def called(self) -> None:
        self.calls += 1

    def due(self, pids: Iterable[int]) -> str | None:
        """Why the pool should be replaced now (and the count starts again), or None."""
        limits = self.limits
        why = None
        if limits.calls_per_worker and self.calls >= limits.calls_per_worker:
            why = "calls"
        elif limits.max_rss and rss(pids) > limits.max_rss:
            why = "memory"
        if why is not None:
            self.calls = 0
        return why
