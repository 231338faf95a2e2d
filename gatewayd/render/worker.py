"""What runs in the render worker processes: preparing documents (counting pages,
making PDFs of text, HTML and office files) and turning page ranges into coded fax
pages. Every call runs under a processor-time budget: past it, the worker is killed
(a C call cannot be interrupted otherwise) and leaves a marker that tells the parent
why; the pool starts another worker.

Inside a worker, PDF pages are drawn in the main thread (PDFium wants one thread);
when the pool has fewer workers than the machine has processors, the previous page is
coded in a second thread meanwhile, so that one worker keeps two processors busy.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import resource
import shutil
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gatewayd.errors import RenderError
from gatewayd.render import cover, images, office, pdf_sysfonts, textdoc
from gatewayd.render import limits as memory_limits
from gatewayd.render.kinds import IMAGES, OFFICE, Kind
from gatewayd.render.pdf import Drawn, PdfPages
from gatewayd.render.raster import FaxFormat, encode_grey
from gatewayd.render.tiff import CodedPage

# The file name extension LibreOffice reads each office kind by (".docx" for DOCX).
_EXTENSIONS = {kind: f".{kind.name.lower()}" for kind in OFFICE}


@dataclass(frozen=True, slots=True)
class Source:
    """A document to fax: a file of a known kind."""

    name: str
    kind: Kind
    path: Path


@dataclass(frozen=True, slots=True)
class Prepared:
    """A document ready to draw: a PDF or an image file, and its page count."""

    name: str
    drawn_as: str  # "pdf" or "image"
    path: Path
    pages: int


@dataclass(frozen=True, slots=True)
class Limits:
    max_image_pixels: int
    cpu_seconds: float
    soffice: Path | None
    office_timeout: float
    max_pages: int = 0  # text and HTML documents stop here (0: no limit)


@dataclass(frozen=True, slots=True)
class Call:
    """What every call into a worker needs: the job's scratch directory, the fax's
    format, the limits, and whether to code pages in a second thread."""

    workdir: Path
    fax: FaxFormat
    limits: Limits
    overlap: bool = False

    @property
    def over_budget_marker(self) -> Path:
        return self.workdir / OVER_BUDGET


# -- the processor-time budget ----------------------------------------------------------
#
# A document can keep PDFium busy for minutes inside one C call, where no Python signal
# handler runs. A watchdog thread compares the process's processor time with the
# current call's budget; past it, it leaves a marker in the job's directory (so the
# parent can tell the job why) and kills the process. The parent's pool starts a new
# worker. RLIMIT_CPU, a little higher, kills the process should the watchdog not run.

OVER_BUDGET = "over-budget"
_budget: tuple[float, Path] | None = None  # (processor-time deadline, marker)


def initialize(memory: int | None = None) -> None:
    """Runs once in each worker process; ``memory``: its address-space limit."""
    memory_limits.apply(memory)
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)  # RLIMIT_CPU: on to its hard limit
    pdf_sysfonts.install()  # PDFium's standard fonts, per process
    threading.Thread(target=_watchdog, name="cpu-watchdog", daemon=True).start()
    atexit.register(close_documents)  # before PDFium's own handler, which warns


def _watchdog() -> None:
    while True:
        time.sleep(0.05)
        budget = _budget
        if budget is not None and time.process_time() > budget[0]:
            with contextlib.suppress(OSError):
                budget[1].touch()
            os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def _cpu_budget(call: Call) -> Iterator[None]:
    global _budget  # noqa: PLW0603 - one budget per worker process, set per call
    spent = time.process_time()
    _budget = (spent + call.limits.cpu_seconds, call.over_budget_marker)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    used = resource.getrusage(resource.RUSAGE_SELF)
    backstop = int(used.ru_utime + used.ru_stime + call.limits.cpu_seconds) + 3
    if hard != resource.RLIM_INFINITY:
        backstop = min(backstop, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (backstop, hard))
    memory_limits.watch(call.workdir)
    try:
        yield
    except MemoryError:
        raise RenderError(memory_limits.TOO_LARGE) from None
    finally:
        memory_limits.watch(None)
        _budget = None
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))


# -- preparing ----------------------------------------------------------------------------

_open: OrderedDict[Path, PdfPages] = OrderedDict()


def _pdf(path: Path) -> PdfPages:
    """Open PDFs are kept (two at most): a document's page ranges come one by one."""
    if path in _open:
        _open.move_to_end(path)
        return _open[path]
    pages = PdfPages(path)
    _open[path] = pages
    while len(_open) > 2:
        _open.popitem(last=False)[1].close()
    return pages


def close_documents() -> None:
    """Close the PDFs kept open: when a worker exits, and after a job rendered in the
    calling process (PDFium warns of documents still open when it shuts down)."""
    while _open:
        _open.popitem(last=False)[1].close()


def prepare(source: Source, call: Call) -> Prepared:
    workdir, paper, limits = call.workdir, call.fax.paper, call.limits
    with _cpu_budget(call):
        kind = source.kind
        if kind is Kind.PDF:
            return Prepared(source.name, "pdf", source.path, len(_pdf(source.path)))
        if kind in IMAGES:
            pages = images.count(source.path, limits.max_image_pixels)
            return Prepared(source.name, "image", source.path, pages)
        target = workdir / f"{source.path.stem}-{kind.name.lower()}.pdf"
        if kind in (Kind.TEXT, Kind.HTML):
            text = textdoc.decode(source.path.read_bytes())
            make = textdoc.plain_text_pdf if kind is Kind.TEXT else textdoc.html_pdf
            target.write_bytes(make(text, paper, limits.max_pages))
        elif kind in OFFICE:
            if limits.soffice is None:
                raise RenderError("office documents need LibreOffice, which is not installed")
            named = workdir / f"{source.path.stem}{_EXTENSIONS[kind]}"
            shutil.copyfile(source.path, named)
            converted = office.to_pdf(
                named, limits.soffice, timeout=limits.office_timeout, workdir=workdir
            )
            converted.replace(target)
        else:
            raise RenderError(f"{source.name}: cannot render {kind.value}")
        return Prepared(source.name, "pdf", target, len(_pdf(target)))


# -- drawing --------------------------------------------------------------------------------

_coder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fax-coder")


def render_pages(prepared: Prepared, indexes: range, call: Call) -> list[CodedPage]:
    """Pages ``indexes`` (counted from 0) of a prepared document. With ``call.overlap``,
    a page is coded in a second thread while the next is drawn (worth it when the pool
    leaves a processor idle)."""
    fax, limits = call.fax, call.limits
    with _cpu_budget(call):
        if prepared.drawn_as == "image":
            return [images.render(prepared.path, i, fax, limits.max_image_pixels) for i in indexes]
        pages = _pdf(prepared.path)
        if not call.overlap:
            return [_code(pages.draw(index, fax), fax) for index in indexes]
        done: list[CodedPage] = []
        pending: Future[CodedPage] | None = None
        for n, index in enumerate(indexes):
            drawn = pages.draw(index, fax, buffer=n % 2)
            if pending is not None:
                done.append(pending.result())  # its buffer is drawn into next
            pending = _coder.submit(_code, drawn, fax)
        if pending is not None:
            done.append(pending.result())
        return done


def _code(drawn: Drawn, fax: FaxFormat) -> CodedPage:
    return encode_grey(drawn.pixels, fax, regions=drawn.photos)


def render_cover(sheet: cover.CoverSheet, total_pages: int, call: Call) -> CodedPage:
    with _cpu_budget(call):
        pages = PdfPages(cover.cover_pdf(sheet, total_pages, call.fax.paper))
        try:
            return pages.render(0, call.fax)
        finally:
            pages.close()
