"""The HylaFAX carrier: the HylaFAX client protocol, spoken to hfaxd (port 4559).

The protocol is FTP's, with job commands (hfaxd(8)); a session here is short: connect,
USER/PASS, TZONE GMT, do one thing, QUIT. Submitting:

    TYPE I, MODE S, STRU F, FORM TIFF, PASV + STOT   -> "/tmp/docN.tif" (the upload)
    JNEW                                             -> "jobid: N"
    JPARM FROMUSER / NOTIFY NONE / DIALSTRING / MAXDIALS / MAXTRIES / LASTTIME DDHHMM
          PAGEWIDTH, PAGELENGTH (mm) / VRES (98 or 196) / JOBINFO <tag> / TSI /
          FAXNUMBER (the station id) / MODEM
          DOCUMENT /tmp/docN.tif
    JSUBM

The job's tag is ``gatewayd-<message id>-<attempt>@<node>``: after a restart, ``find`` looks
for it in the send and done queues instead of sending the fax again. Following jobs:
JOBFMT "%j|%a|%p|%y|%t|%u|%d|%x|%J|%s", then LIST sendq and LIST doneq over a passive
data connection; one line per job. The job state letter (%a) and the status text
(%s) give the outcome (docs/fax.md has the table):

    D (done)                 -> Sent, pages %p
    F (failed)               -> Failed, faxErrorCode from the status text
    anything else (T P S B W R, or ? undefined) -> still going

Cancelling: JKILL <id> (the job goes to the done queue as "Job aborted by request").
A job already gone is no error. A refused login (530) is CarrierRefused: the operator
must fix ``[fax.hylafax]`` or hosts.hfaxd; a connection that fails is
CarrierUnavailable.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gatewayd.config.settings import HylafaxSettings
from gatewayd.fax.carrier import (
    CarrierError,
    CarrierRefused,
    CarrierUnavailable,
    FaxJob,
    Result,
    Sent,
    failed,
)
from gatewayd.logging import get_logger
from gatewayd.model import FaxErrorCode

log = get_logger("gatewayd.fax")

TIMEOUT = 30.0
JOB_FORMAT = "%j|%a|%p|%y|%t|%u|%d|%x|%J|%s"
PAPER_MM = {"a4": (209, 296), "letter": (216, 279)}  # as HylaFAX's pagesizes file has them
VRES = {"fine": 196, "normal": 98}

# HylaFAX's status texts (faxsend, faxq) -> faxErrorCode, first match wins. Texts
# vary a little between versions and modems; they are matched loosely, in lower case.
STATUS_CODES: tuple[tuple[str, FaxErrorCode], ...] = (
    ("busy", FaxErrorCode.LINE_BUSY),
    ("no answer", FaxErrorCode.NO_ANSWER),
    ("ringback", FaxErrorCode.NO_ANSWER),
    ("no carrier", FaxErrorCode.NO_FAX_MACHINE),
    ("no remote fax", FaxErrorCode.NO_FAX_MACHINE),
    ("voice", FaxErrorCode.NO_FAX_MACHINE),
    ("data connection", FaxErrorCode.NO_FAX_MACHINE),
    ("invalid dialstring", FaxErrorCode.INVALID_NUMBER),
    ("invalid phone number", FaxErrorCode.INVALID_NUMBER),
    ("phone number rejected", FaxErrorCode.PROHIBITED_NUMBER),
    ("kill time expired", FaxErrorCode.NO_CALL_TIME),
    ("job aborted by request", FaxErrorCode.CALL_FAILED),
    ("no local dialtone", FaxErrorCode.CALL_FAILED),
    ("document", FaxErrorCode.CONVERT_ERROR),
    ("convert", FaxErrorCode.CONVERT_ERROR),
    ("disconnected", FaxErrorCode.CALLER_HUNG_UP),
    ("hung up", FaxErrorCode.CALLER_HUNG_UP),
    ("too many attempts", FaxErrorCode.CALL_FAILED),
)
# Outcomes HylaFAX reached by itself after its own retries that another attempt of
# ours cannot change: the kill time passed, or someone removed the job.
FINAL_STATUSES = ("kill time expired", "job aborted by request")


def code_for(status: str) -> FaxErrorCode:
    text = status.lower()
    for needle, code in STATUS_CODES:
        if needle in text:
            return code
    return FaxErrorCode.CALL_FAILED


@dataclass(frozen=True, slots=True)
class JobLine:
    """One line of a queue listing in JOB_FORMAT."""

    job_id: str
    state: str
    pages_sent: int
    pages_total: int
    tries: int
    max_tries: int
    dials: int
    max_dials: int
    tag: str
    status: str

    @classmethod
    def parse(cls, line: str) -> JobLine | None:
        fields = line.rstrip("\r\n").split("|", 9)
        if len(fields) != 10 or not fields[0].strip().isdigit():
            return None

        def number(value: str) -> int:
            value = value.strip()
            return int(value) if value.isdigit() else 0

        job, state, sent, total, tries, max_tries, dials, max_dials, tag, status = fields
        return cls(
            job.strip(),
            state.strip(),
            number(sent),
            number(total),
            number(tries),
            number(max_tries),
            number(dials),
            number(max_dials),
            tag.strip(),
            status.strip(),
        )

    def result(self) -> Result | None:
        """Sent, Failed, or None while HylaFAX is still at it."""
        if self.state == "D":
            return Sent(self.pages_sent or self.pages_total or None, None, self.status)
        if self.state != "F":
            return None
        status = self.status or "failed"
        reason = (
            f"HylaFAX: {status} (after {self.dials} dials and {self.tries} tries; "
            f"{self.pages_sent} of {self.pages_total} pages sent)"
        )
        outcome = failed(code_for(status), reason, self.pages_sent)
        if any(final in status.lower() for final in FINAL_STATUSES):
            return type(outcome)(outcome.code, reason, temporary=False, pages=outcome.pages)
        return outcome


def lasttime(kill_at: datetime, now: datetime) -> str:
    """JPARM LASTTIME's argument: the time left, as DDHHMM (at least a minute)."""
    minutes = max(1, int((kill_at - now).total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    return f"{min(days, 99):02d}{rest // 60:02d}{rest % 60:02d}"


class ProtocolError(CarrierUnavailable):
    pass


class Session:
    """One logged-in control connection to hfaxd."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self) -> tuple[int, str]:
        """The next reply: its code and its text (every line of a multi-line one)."""
        first = await self._line()
        if len(first) < 3 or not first[:3].isdigit():
            raise ProtocolError(f"hfaxd said something unexpected: {first!r}")
        lines = [first]
        if first[3:4] == "-":  # multi-line, up to "NNN text"
            while not (
                lines[-1].startswith(first[:3]) and lines[-1][3:4] != "-" and len(lines) > 1
            ):
                lines.append(await self._line())
        return int(first[:3]), "\n".join(lines)

    async def _line(self) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        if not raw:
            raise ProtocolError("hfaxd closed the connection")
        return raw.decode("latin-1").rstrip("\r\n")

    async def command(self, line: str, *expected: int) -> str:
        """Send ``line``; the reply's text if its code is one of ``expected``."""
        if "\n" in line or "\r" in line:
            raise ValueError("a protocol line cannot hold a line break")
        self.writer.write(line.encode("latin-1", "replace") + b"\r\n")
        await self.writer.drain()
        code, text = await self.reply()
        if code not in expected:
            verb = line.split(maxsplit=1)[0]
            raise ProtocolError(f"hfaxd answered {verb} with {text.splitlines()[-1]}")
        return text

    async def passive(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        text = await self.command("PASV", 227)
        match = re.search(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", text)
        if not match:
            raise ProtocolError(f"cannot read the PASV answer {text!r}")
        numbers = [int(n) for n in match.groups()]
        host = ".".join(str(n) for n in numbers[:4])
        port = numbers[4] * 256 + numbers[5]
        return await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)

    async def upload(self, data: bytes) -> str:
        """STOT: the file as a new temporary document; its name on the server."""
        reader, writer = await self.passive()
        try:
            self.writer.write(b"STOT\r\n")
            await self.writer.drain()
            code, text = await self.reply()
            if code not in (125, 150):
                raise ProtocolError(f"hfaxd refused the upload: {text}")
            writer.write(data)
            await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()
        del reader
        code, done = await self.reply()
        if code != 226:
            raise ProtocolError(f"the upload failed: {done}")
        match = re.search(r"FILE: ([^\s)]+)", f"{text}\n{done}")
        if not match:
            raise ProtocolError(f"hfaxd did not name the uploaded file: {text!r}")
        return match.group(1)

    async def listing(self, queue: str) -> list[str]:
        reader, writer = await self.passive()
        try:
            self.writer.write(f"LIST {queue}\r\n".encode())
            await self.writer.drain()
            code, text = await self.reply()
            if code not in (125, 150):
                raise ProtocolError(f"hfaxd refused LIST {queue}: {text}")
            data = await asyncio.wait_for(reader.read(), TIMEOUT)
        finally:
            writer.close()
        code, text = await self.reply()
        if code != 226:
            raise ProtocolError(f"LIST {queue} failed: {text}")
        return data.decode("latin-1").splitlines()

    async def close(self) -> None:
        try:
            self.writer.write(b"QUIT\r\n")
            await self.writer.drain()
            await asyncio.wait_for(self.reply(), 5)
        except (OSError, TimeoutError, CarrierError):
            pass
        finally:
            self.writer.close()


class HylafaxCarrier:
    name = "hylafax"

    def __init__(self, settings: HylafaxSettings) -> None:
        self.settings = settings

    async def _session(self) -> Session:
        address = self.settings.address
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address.host, address.port), TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            raise CarrierUnavailable(f"cannot reach hfaxd at {address}: {exc}") from exc
        session = Session(reader, writer)
        try:
            code, text = await session.reply()
            if code != 220:
                raise CarrierUnavailable(f"hfaxd at {address} is not ready: {text}")
            code, text = await self._send(session, f"USER {self.settings.username}")
            if code == 331:
                code, text = await self._send(session, f"PASS {self.settings.password}")
            if code != 230:
                raise CarrierRefused(
                    f"hfaxd at {address} refused the login of {self.settings.username!r} "
                    f"({text.splitlines()[-1]}): check [fax.hylafax] username and password, "
                    "and the server's hosts.hfaxd"
                )
            await session.command("TZONE GMT", 200)
        except BaseException:
            session.writer.close()
            raise
        return session

    @staticmethod
    async def _send(session: Session, line: str) -> tuple[int, str]:
        session.writer.write(line.encode("latin-1", "replace") + b"\r\n")
        await session.writer.drain()
        return await session.reply()

    @staticmethod
    def tag_for(job: FaxJob) -> str:
        """``gatewayd-<id>-<attempt>@<node>``: ``find`` matches the part before the @,
        so a node that adopts another's fax finds the job that node handed over."""
        tag = f"gatewayd-{job.message_id}-{job.attempt}"
        return f"{tag}@{job.node}" if job.node else tag

    async def submit(self, job: FaxJob) -> str:
        data = await asyncio.to_thread(job.tiff.read_bytes)
        session = await self._session()
        try:
            for line in ("TYPE I", "MODE S", "STRU F", "FORM TIFF"):
                await session.command(line, 200)
            document = await session.upload(data)
            text = await session.command("JNEW", 200)
            match = re.search(r"jobid: (\d+)", text)
            if not match:
                raise ProtocolError(f"cannot read the job id in {text!r}")
            job_id = match.group(1)
            width, length = PAPER_MM[job.paper]
            parameters = [
                ("FROMUSER", _quoted(job.header or "gatewayd")),
                ("NOTIFY", "NONE"),
                ("DIALSTRING", job.destination),
                ("MAXDIALS", str(self.settings.max_dials)),
                ("MAXTRIES", str(self.settings.max_tries)),
                ("LASTTIME", lasttime(job.kill_at, job.handed_at)),
                ("PAGEWIDTH", str(width)),
                ("PAGELENGTH", str(length)),
                ("VRES", str(VRES[job.resolution])),
                ("JOBINFO", self.tag_for(job)),
            ]
            if job.station_id:  # the number the receiving machine shows, and the tagline's
                parameters += [
                    ("TSI", _quoted(job.station_id)),
                    ("FAXNUMBER", _quoted(job.station_id)),
                ]
            if self.settings.modem and self.settings.modem != "any":
                parameters.append(("MODEM", self.settings.modem))
            for name, value in parameters:
                await session.command(f"JPARM {name} {value}", 200, 213)
            await session.command(f"JPARM DOCUMENT {document}", 200)
            await session.command("JSUBM", 200)
        except (OSError, TimeoutError) as exc:
            raise CarrierUnavailable(f"hfaxd: {exc}") from exc
        finally:
            await session.close()
        log.info(
            "fax.hylafax_submitted", message_id=job.message_id, job_id=job_id, document=document
        )
        return job_id

    async def _jobs(self) -> list[JobLine]:
        session = await self._session()
        try:
            await session.command(f'JOBFMT "{JOB_FORMAT}"', 200)
            lines = await session.listing("sendq") + await session.listing("doneq")
        except (OSError, TimeoutError) as exc:
            raise CarrierUnavailable(f"hfaxd: {exc}") from exc
        finally:
            await session.close()
        return [job for job in map(JobLine.parse, lines) if job is not None]

    async def find(self, job: FaxJob) -> str | None:
        tag = self.tag_for(job).partition("@")[0]
        return next(
            (line.job_id for line in await self._jobs() if line.tag.partition("@")[0] == tag),
            None,
        )

    async def status(self, refs: Sequence[str]) -> dict[str, Result]:
        wanted = set(refs)
        out: dict[str, Result] = {}
        for line in await self._jobs():
            if line.job_id in wanted:
                result = line.result()
                if result is not None:
                    out[line.job_id] = result
        return out

    async def cancel(self, ref: str) -> None:
        session = await self._session()
        try:
            code, text = await self._send(session, f"JKILL {ref}")
            gone = "does not exist" in text or "already done" in text
            if code != 200 and not gone:
                raise ProtocolError(f"hfaxd would not kill job {ref}: {text}")
        except (OSError, TimeoutError) as exc:
            raise CarrierUnavailable(f"hfaxd: {exc}") from exc
        finally:
            await session.close()

    async def done(self, ref: str) -> None:
        return None  # the done queue is HylaFAX's to clean (faxqclean)

    async def close(self) -> None:
        return None


def _quoted(value: str) -> str:
    return '"' + value.replace('"', "'") + '"'
