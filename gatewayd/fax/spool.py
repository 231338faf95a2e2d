"""The spool carrier: faxes as files for another fax system to send.

For each job it writes, into ``outbox``, ``<ref>.tif`` (the pages) and then
``<ref>.json`` (how to send them), each through a temporary name, fsync and rename:
a ``.json`` that exists is whole, and its ``.tif`` is already there. ``ref`` is
``<message id>-<attempt>``. The sender takes both files away (or leaves them), sends
the fax, and writes ``<ref>.result.json`` into ``results`` (also whole: write it under
another name and rename). The gateway reads it, records the outcome, and deletes it.
A result that cannot be read is moved to ``results/rejected/`` with an error log line;
the job stays pending until a good result comes. To cancel, the gateway deletes the
job's files from the outbox if they are still there, else writes ``<ref>.cancel``
there for the sender to honour. The format is in docs/fax.md.

Permissions: the other fax system reads and removes jobs and writes results, so the
spool is shared with it through a group (``[fax.spool] group``; empty: the daemon's
own) and never with anyone else, whatever the daemon's umask: directories gatewayd
makes get ``dir_mode`` (2770: the setgid bit keeps the group on what either side
writes), files it writes ``file_mode`` (0640).
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatewayd.config.settings import SpoolSettings
from gatewayd.errors import StartupError
from gatewayd.fax.carrier import CarrierUnavailable, FaxJob, Result, Sent, failed
from gatewayd.logging import get_logger
from gatewayd.model import FaxErrorCode

log = get_logger("gatewayd.fax")

FORMAT_VERSION = 1
VERTICAL_DPI = {"fine": 196, "normal": 98}


class Malformed(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Modes:
    """How the spool's files and directories are shared: their group (-1: as made)."""

    file: int = 0o640
    directory: int = 0o2770
    gid: int = -1

    @classmethod
    def from_settings(cls, settings: SpoolSettings) -> Modes:
        gid = -1
        if settings.group:
            try:
                gid = grp.getgrnam(settings.group).gr_gid
            except KeyError:
                raise StartupError(
                    f"fax.spool.group: there is no group {settings.group!r}"
                ) from None
        return cls(settings.file_mode, settings.dir_mode, gid)

    def directory_at(self, path: Path) -> None:
        """Make ``path`` (and its parents) if it is not there; what is made is shared."""
        if path.is_dir():
            return
        if not path.parent.is_dir():
            self.directory_at(path.parent)
        with contextlib.suppress(FileExistsError):
            path.mkdir()
            if self.gid != -1:
                os.chown(path, -1, self.gid)
            os.chmod(path, self.directory)  # after chown, which clears setgid


def _write_whole(path: Path, data: bytes, modes: Modes) -> None:
    temporary = path.with_name(f".{path.name}.part")
    with open(temporary, "wb") as out:
        if modes.gid != -1:
            os.fchown(out.fileno(), -1, modes.gid)
        os.fchmod(out.fileno(), modes.file)
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def _fsync_dir(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def job_document(ref: str, job: FaxJob) -> dict[str, Any]:
    return {
        "version": FORMAT_VERSION,
        "ref": ref,
        "message_id": job.message_id,
        "attempt": job.attempt,
        "document": f"{ref}.tif",
        "destination": job.destination,
        "pages": job.pages,
        "resolution": job.resolution,
        "vertical_dpi": VERTICAL_DPI[job.resolution],
        "paper": job.paper,
        "station_id": job.station_id,
        "header": job.header,
        "kill_at": job.kill_at.isoformat(),
        "options": job.options,
        "node": job.node,
    }


def parse_result(data: bytes) -> Result:
    """A result file's content; Malformed names what is wrong."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Malformed(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Malformed("not a JSON object")
    status = value.get("status")
    pages, duration = value.get("pages"), value.get("duration")
    if pages is not None and (not isinstance(pages, int) or isinstance(pages, bool) or pages < 0):
        raise Malformed(f"pages: {pages!r} is not a count")
    if duration is not None and (
        not isinstance(duration, int | float) or isinstance(duration, bool) or duration < 0
    ):
        raise Malformed(f"duration: {duration!r} is not a number of seconds")
    reason = value.get("reason", "")
    if not isinstance(reason, str):
        raise Malformed("reason: not a string")
    if status == "sent":
        return Sent(pages, float(duration) if duration is not None else None, reason)
    if status != "failed":
        raise Malformed(f"status: {status!r} is neither 'sent' nor 'failed'")
    code = value.get("error_code")
    try:
        error = FaxErrorCode(str(code))
    except ValueError:
        raise Malformed(f"error_code: {code!r} is not a faxErrorCode") from None
    return failed(error, reason or f"the fax sender reported {error}", pages)


class SpoolCarrier:
    name = "spool"

    def __init__(self, settings: SpoolSettings) -> None:
        self.outbox = settings.outbox
        self.results = settings.results
        self.modes = Modes.from_settings(settings)

    def ref_for(self, job: FaxJob) -> str:
        return f"{job.message_id}-{job.attempt}"

    async def submit(self, job: FaxJob) -> str:
        ref = self.ref_for(job)
        try:
            await asyncio.to_thread(self._write, ref, job)
        except OSError as exc:
            raise CarrierUnavailable(
                f"cannot write to the fax outbox {self.outbox}: {exc}"
            ) from exc
        return ref

    def _write(self, ref: str, job: FaxJob) -> None:
        self.modes.directory_at(self.outbox)
        self.modes.directory_at(self.results)
        _write_whole(self.outbox / f"{ref}.tif", job.tiff.read_bytes(), self.modes)
        document = json.dumps(job_document(ref, job), indent=2).encode() + b"\n"
        _write_whole(self.outbox / f"{ref}.json", document, self.modes)
        _fsync_dir(self.outbox)

    async def find(self, job: FaxJob) -> str | None:
        """The ref of this job if an earlier life of the gateway handed it over."""
        ref = self.ref_for(job)
        paths = (self.outbox / f"{ref}.json", self.results / f"{ref}.result.json")
        found = await asyncio.to_thread(lambda: any(p.exists() for p in paths))
        return ref if found else None

    async def status(self, refs: Sequence[str]) -> dict[str, Result]:
        return await asyncio.to_thread(self._read_results, refs)

    def _read_results(self, refs: Sequence[str]) -> dict[str, Result]:
        out: dict[str, Result] = {}
        for ref in refs:
            path = self.results / f"{ref}.result.json"
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise CarrierUnavailable(f"cannot read {path}: {exc}") from exc
            try:
                out[ref] = parse_result(data)
            except Malformed as exc:
                rejected = self.results / "rejected"
                self.modes.directory_at(rejected)
                os.replace(path, rejected / path.name)
                log.error(
                    "fax.spool_result_rejected",
                    file=str(path),
                    moved_to=str(rejected / path.name),
                    problem=str(exc),
                )
        return out

    async def done(self, ref: str) -> None:
        """The outcome is recorded: the result file has served."""
        path = self.results / f"{ref}.result.json"
        await asyncio.to_thread(path.unlink, True)

    async def cancel(self, ref: str) -> None:
        await asyncio.to_thread(self._cancel, ref)

    def _cancel(self, ref: str) -> None:
        job = self.outbox / f"{ref}.json"
        try:
            job.unlink()
        except FileNotFoundError:  # the sender has it: ask it to stop
            _write_whole(self.outbox / f"{ref}.cancel", b"", self.modes)
            return
        (self.outbox / f"{ref}.tif").unlink(missing_ok=True)

    async def close(self) -> None:
        return None
