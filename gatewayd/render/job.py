"""A fax job rendered: an optional cover page and documents, in order, into one
multi-page TIFF, by a pool of worker processes (or, for a short job, in this process).

Documents are prepared in parallel (pages counted; text, HTML and office documents
made into PDFs), the page total checked against ``max_pages``, then page ranges of
every document drawn in parallel, the cover page last (it states the total). Each
call into a worker has a processor-time budget and a wall-clock deadline; a worker
that misses the deadline is killed with its pool, which is started again; a worker
over its budget kills itself (see worker.py).

Starting the pool costs about a second (a fork server, and every worker imports the
renderer), more than a short job takes to draw. A Renderer made with ``in_process=S``
makes its calls, one after the other, in one worker forked from its own process (a
few milliseconds; it has what this process imported), until they have taken S
seconds; only then does it start the pool, for the rest. The forked worker has the
same limits as the pool's, and its death is told apart the same way (over memory,
over its processor time, crashed), so the process that renders stays up to say why.
That is for a process that runs no threads (``gatewayd render``): forking one that
does can copy a held lock. The daemon keeps the default, 0: every call in the pool.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gatewayd.config.settings import Compression, FaxSettings, Paper, Resolution
from gatewayd.errors import RenderError
from gatewayd.logging import get_logger
from gatewayd.model import FaxErrorCode
from gatewayd.render import limits, tiff, worker
from gatewayd.render.cover import CoverSheet
from gatewayd.render.limits import MemoryLimits
from gatewayd.render.office import find_soffice
from gatewayd.render.raster import FaxFormat
from gatewayd.render.worker import Call, Limits, Prepared, Source

log = get_logger("gatewayd.render")
T = TypeVar("T")

CHUNK = 12  # pages per call into a worker, at most


@dataclass(frozen=True, slots=True)
class RenderOptions:
    fax: FaxFormat
    max_pages: int = 200
    max_input_bytes: int = 50_000_000
    limits: Limits = field(default_factory=lambda: Limits(100_000_000, 120.0, None, 120.0))

    @classmethod
    def from_settings(
        cls,
        settings: FaxSettings,
        *,
        resolution: Resolution | None = None,
        paper: Paper | None = None,
        compression: Compression | None = None,
    ) -> RenderOptions:
        fax = FaxFormat.named(
            paper or settings.paper,
            resolution or settings.resolution,
            compression or settings.compression,
        )
        limits = Limits(
            settings.max_image_pixels,
            settings.render_cpu_seconds,
            find_soffice(settings),
            settings.office_timeout,
            max_pages=settings.max_pages,
        )
        return cls(fax, settings.max_pages, settings.max_input_bytes, limits)


@dataclass(frozen=True, slots=True)
class Rendered:
    path: Path
    pages: int
    size: int


class Renderer:
    """Renders fax jobs with ``workers`` processes."""

    def __init__(
        self,
        workers: int,
        *,
        scratch: Path | None = None,
        in_process: float = 0.0,
        memory: MemoryLimits | None = None,
    ) -> None:
        self.workers = workers
        self.scratch = scratch
        self.memory = memory or MemoryLimits()
        self._recycling = limits.Recycling(self.memory)
        self._pool: ProcessPoolExecutor | None = None
        self._forked_left = in_process  # seconds of calls still made in the forked worker
        self._forked: ProcessPoolExecutor | None = None
        self._forked_turn = asyncio.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=worker.initialize,
                initargs=(self.memory.address_space,),
            )
        return self._pool

    def _recycle(self) -> None:
        """Replace the pool (its workers finish what they have) when it is due."""
        pool = self._pool
        if pool is None:
            return
        why = self._recycling.due(p.pid for p in getattr(pool, "_processes", {}).values())
        if why is not None:
            self._pool = None
            pool.shutdown(wait=False)
            log.info("render.workers_replaced", reason=why)

    def _kill(self, pool: ProcessPoolExecutor) -> None:
        """Stop every worker of ``pool`` now (one hangs, or the pool broke); the next
        call starts a new pool. A pool already replaced is left to its successor."""
        if self._pool is pool:
            self._pool = None
        if self._forked is pool:
            self._forked = None
        for process in list(getattr(pool, "_processes", {}).values()):  # no public way
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        pools = (self._forked, self._pool)
        self._forked = self._pool = None
        for pool in pools:
            if pool is not None:
                await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)

    def _forked_worker(self) -> ProcessPoolExecutor:
        if self._forked is None:
            self._forked = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("fork"),
                initializer=worker.initialize,
                initargs=(self.memory.address_space,),
            )
        return self._forked

    async def _call(self, call: Call, function: Callable[..., T], *args: Any) -> T:
        if self._forked_left > 0:
            async with self._forked_turn:  # one call at a time, while the budget lasts
                if self._forked_left > 0:
                    started = time.perf_counter()
                    try:
                        return await self._in(self._forked_worker, call, function, *args)
                    finally:
                        self._forked_left -= time.perf_counter() - started
                        if self._forked_left <= 0 and self._forked is not None:
                            self._forked.shutdown(wait=False)
                            self._forked = None
        return await self._in(self._executor, call, function, *args)

    async def _in(
        self,
        executor: Callable[[], ProcessPoolExecutor],
        call: Call,
        function: Callable[..., T],
        *args: Any,
    ) -> T:
        deadline = call.limits.cpu_seconds * 2 + 10
        for attempt in (1, 2):
            pool = executor()
            if pool is self._pool:
                self._recycling.called()
            future = asyncio.get_running_loop().run_in_executor(pool, function, *args)
            try:
                return await asyncio.wait_for(future, deadline)
            except MemoryError:
                raise RenderError(limits.TOO_LARGE) from None
            except TimeoutError:
                self._kill(pool)
                raise RenderError(f"rendering did not finish within {deadline:g} s") from None
            except BrokenProcessPool:
                # A worker died: over this job's budget (its marker says so), or while
                # rendering another job, or it crashed. Start again, once.
                self._kill(pool)
                if await asyncio.to_thread(limits.over_memory, call.workdir):
                    raise RenderError(limits.TOO_LARGE) from None
                if await asyncio.to_thread(call.over_budget_marker.exists):
                    raise RenderError(
                        f"rendering took more than {call.limits.cpu_seconds:g} s of processor "
                        "time; the document may be damaged or too complex"
                    ) from None
                if attempt == 2:
                    raise RenderError("the renderer crashed on this document") from None
        raise AssertionError("unreachable")

    async def render(
        self, sources: Sequence[Source], cover: CoverSheet | None, options: RenderOptions, out: Path
    ) -> Rendered:
        """Render the job into ``out`` (a TIFF), or RenderError saying why not."""
        size = sum(s.path.stat().st_size for s in sources)
        if size > options.max_input_bytes:
            raise RenderError(
                f"the documents are too large: {size:,} bytes, at most {options.max_input_bytes:,}"
            )
        if not sources and cover is None:
            raise RenderError("nothing to fax: no document and no cover page")
        workdir = Path(tempfile.mkdtemp(prefix="gatewayd-render-", dir=self.scratch))
        overlap = self.workers < (os.cpu_count() or 1)
        call = Call(workdir, options.fax, options.limits, overlap)
        try:
            prepared = await asyncio.gather(
                *(self._named(s.name, self._call(call, worker.prepare, s, call)) for s in sources)
            )
            total = sum(p.pages for p in prepared) + (1 if cover else 0)
            if total > options.max_pages:
                raise RenderError(
                    f"too many pages: {total}, at most {options.max_pages}",
                    fax_error_code=FaxErrorCode.TOO_MANY_PAGES,
                )
            chunks = await asyncio.gather(
                *(
                    self._named(p.name, self._call(call, worker.render_pages, p, pages, call))
                    for p in prepared
                    for pages in self._chunks(p.pages)
                )
            )
            pages = [page for chunk in chunks for page in chunk]
            if cover is not None:
                sheet = await self._call(call, worker.render_cover, cover, total, call)
                pages.insert(0, sheet)
            written = await asyncio.to_thread(tiff.write_file, pages, out)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)
            self._recycle()
        log.info(
            "fax.rendered",
            pages=len(pages),
            bytes=written,
            documents=len(sources),
            cover=cover is not None,
        )
        return Rendered(out, len(pages), written)

    def _chunks(self, pages: int) -> list[range]:
        """A document's pages in calls of at most CHUNK pages, smaller towards the end
        so that the workers finish together."""
        chunks, first = [], 0
        while first < pages:
            count = min(CHUNK, max(1, -(-(pages - first) // (2 * self.workers))))
            chunks.append(range(first, first + count))
            first += count
        return chunks

    @staticmethod
    async def _named(name: str, call: Any) -> Any:
        """The result of ``call``; a RenderError names the document it came from."""
        try:
            return await call
        except RenderError as exc:
            if exc.reason.startswith(f"{name}:"):
                raise
            raise RenderError(f"{name}: {exc.reason}", fax_error_code=exc.fax_error_code) from exc


__all__ = ["CoverSheet", "Prepared", "RenderOptions", "Rendered", "Renderer", "Source"]
