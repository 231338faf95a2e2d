"""``gatewayd render``: documents into a fax TIFF, with the daemon's own renderer.

    gatewayd render report.pdf photo.jpg -o fax.tif --resolution normal --cover \\
        --to +4930123456 --subject "Q3 report" --note "Two documents, as promised."

The kind of each file is told by its bytes, as at the SMTP door (a ``.txt`` or ``.html``
name says which text it is). Defaults come from ``[fax]`` in the config when there is
one; without a config file the built-in defaults apply.

A short job is drawn in this process: the render pool starts only after a second of
drawing (IN_PROCESS_SECONDS), when the rest of a long job is worth its start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from gatewayd.cli.output import CommandError
from gatewayd.config.settings import Settings
from gatewayd.render.kinds import LABELS, OFFICE, Kind, is_tnef, sniff
from gatewayd.render.limits import MemoryLimits

if TYPE_CHECKING:
    from gatewayd.render.job import CoverSheet, Rendered, RenderOptions, Source

_DECLARED = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".htm": "text/html",
    ".html": "text/html",
    ".doc": Kind.DOC.value,
    ".xls": Kind.XLS.value,
    ".ppt": Kind.PPT.value,
}
# Drawing time after which the rest of a job goes to a pool of render processes: about
# what starting the pool costs (bench/cli.py measures both).
IN_PROCESS_SECONDS = 1.0


def arguments(render: argparse.ArgumentParser) -> None:
    render.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        type=Path,
        help="PDF, image, text, HTML or office documents, in order",
    )
    render.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.tif")
    render.add_argument(
        "--resolution",
        choices=("fine", "normal"),
        help="196 (fine) or 98 (normal) lines per inch; default fax.resolution",
    )
    render.add_argument("--paper", choices=("a4", "letter"), help="default fax.paper")
    render.add_argument("--compression", choices=("g4", "g3"), help="default fax.compression")
    render.add_argument(
        "--workers", type=int, metavar="N", help="render processes (default fax.render_workers)"
    )
    cover = render.add_argument_group("cover page")
    cover.add_argument("--cover", action="store_true", help="put a cover page first")
    cover.add_argument("--to", metavar="NUMBER", default="", help="the recipient's fax number")
    cover.add_argument("--to-name", metavar="NAME", default="")
    cover.add_argument("--from-name", metavar="NAME", default="")
    cover.add_argument("--from-email", metavar="ADDRESS", default="")
    cover.add_argument("--from-fax", metavar="NUMBER", default="")
    cover.add_argument("--subject", default="")
    cover.add_argument("--note", default="", help="the note's text ('-' reads it from stdin)")
    render.set_defaults(handler=command, config_mode="optional", as_caller=True)


def _source(path: Path, index: int) -> Source:
    from gatewayd.render.job import Source

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"{path}: cannot be read ({exc.strerror})") from exc
    if is_tnef(data):
        raise CommandError(f"{path}: a winmail.dat (Outlook TNEF) cannot be faxed")
    kind = sniff(data, _DECLARED.get(path.suffix.lower(), "text/plain"))
    if kind is None:
        raise CommandError(f"{path}: not a document gatewayd can fax")
    return Source(f"{path.name} (document {index})", kind, path)


def command(settings: Settings, args: argparse.Namespace) -> int:
    from gatewayd.render.job import CoverSheet, RenderOptions

    if not args.files and not args.cover:
        raise CommandError("nothing to render: give files, --cover, or both")
    if args.cover and not args.to:
        raise CommandError("--cover needs --to NUMBER")
    if args.workers is not None and args.workers < 1:
        raise CommandError("--workers must be at least 1")
    sources = [_source(path, n) for n, path in enumerate(args.files, 1)]
    options = RenderOptions.from_settings(
        settings.fax, resolution=args.resolution, paper=args.paper, compression=args.compression
    )
    if options.limits.soffice is None:
        for source in sources:
            if source.kind in OFFICE:
                raise CommandError(
                    f"{source.path}: {LABELS[source.kind]} documents need "
                    "LibreOffice, which is not installed"
                )
    sheet = None
    if args.cover:
        note = sys.stdin.read() if args.note == "-" else args.note
        sheet = CoverSheet(
            args.to,
            sender_name=args.from_name,
            sender_email=args.from_email,
            sender_fax=args.from_fax,
            recipient_name=args.to_name,
            subject=args.subject,
            note=note,
            sent_at=datetime.now().astimezone(),
        )
    workers = args.workers or settings.fax.render_workers
    memory = MemoryLimits.from_settings(settings.fax)
    rendered = asyncio.run(_render(sources, sheet, options, args.output, workers, memory=memory))
    print(
        f"{args.output}: {rendered.pages} page{'s' if rendered.pages != 1 else ''}, "
        f"{rendered.size:,} bytes ({options.fax.describe()})"
    )
    return 0


async def _render(
    sources: list[Source],
    sheet: CoverSheet | None,
    options: RenderOptions,
    out: Path,
    workers: int,
    *,
    memory: MemoryLimits,
) -> Rendered:
    from gatewayd.render.job import Renderer

    renderer = Renderer(
        min(workers, os.cpu_count() or 1), in_process=IN_PROCESS_SECONDS, memory=memory
    )
    try:
        return await renderer.render(sources, sheet, options, out)
    finally:
        await renderer.close()
