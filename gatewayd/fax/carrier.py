"""What a fax carrier is to the dispatcher: submit a rendered TIFF, learn what became
of it, cancel it.

A carrier job is named by the carrier (its ``ref``), stored with the message before
the submission is acknowledged to anyone, so that a restart asks the carrier about the
job instead of sending the fax again. Results:

- ``Sent``: pages sent and the call's duration.
- ``Failed``: a ``faxErrorCode`` from the RingCentral enum and a reason a person can
  act on; ``temporary`` says whether another attempt may succeed (busy, no answer).
- None from ``status``: still waiting or being sent.

A carrier that cannot be reached raises CarrierUnavailable (temporary: the fax waits);
one that refuses us (a bad login) raises CarrierRefused (the operator must act; the
fax waits too, and the error is logged once per poll).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from gatewayd.config.settings import Paper, Resolution
from gatewayd.errors import CarrierError, CarrierRefused, CarrierUnavailable
from gatewayd.model import FaxErrorCode

__all__ = [
    "TEMPORARY_CODES",
    "Carrier",
    "CarrierError",
    "CarrierRefused",
    "CarrierUnavailable",
    "Failed",
    "FaxJob",
    "Result",
    "Sent",
    "failed",
]

# Outcomes worth another attempt: the line, not the document or the number.
TEMPORARY_CODES = frozenset(
    {
        FaxErrorCode.LINE_BUSY,
        FaxErrorCode.NO_ANSWER,
        FaxErrorCode.ALL_LINES_IN_USE,
        FaxErrorCode.CALL_FAILED,
        FaxErrorCode.CALLER_HUNG_UP,
        FaxErrorCode.TOO_MANY_CALLS_PER_LINE,
        FaxErrorCode.SENT_PARTIALLY,
        FaxErrorCode.RETURN_TO_DB_QUEUE,
        FaxErrorCode.NO_CALL_TIME,
        FaxErrorCode.INTERNAL_ERROR,
    }
)


@dataclass(frozen=True, slots=True)
class FaxJob:
    """One fax for the carrier: the rendered TIFF and how to send it."""

    message_id: int
    attempt: int
    tiff: Path
    destination: str  # E.164
    pages: int
    resolution: Resolution  # "fine" (196 lines/inch) or "normal" (98)
    paper: Paper
    station_id: str  # the sender's fax number, as the receiving machine shows it
    header: str  # the page header line (tagline)
    kill_at: datetime  # give up on the call after this
    handed_at: datetime  # now, by the mailbox's clock (kill_at - handed_at: time left)
    options: dict[str, Any] = field(default_factory=dict)
    node: str = ""  # the node handing it over (a cluster's nodes share carriers)


@dataclass(frozen=True, slots=True)
class Sent:
    pages: int | None
    duration: float | None  # seconds
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Failed:
    code: FaxErrorCode
    reason: str
    temporary: bool
    pages: int | None = None


Result = Sent | Failed


def failed(code: FaxErrorCode, reason: str, pages: int | None = None) -> Failed:
    return Failed(code, reason, temporary=code in TEMPORARY_CODES, pages=pages)


class Carrier(Protocol):
    name: str

    async def submit(self, job: FaxJob) -> str:
        """Hand the fax over; the carrier's name for the job."""
        ...

    async def find(self, job: FaxJob) -> str | None:
        """The ref of ``job`` (same message, same attempt) if it was handed over before
        (a restart between handing it over and recording the ref)."""
        ...

    async def status(self, refs: Sequence[str]) -> dict[str, Result]:
        """What became of these jobs; a ref missing from the answer is still going."""
        ...

    async def done(self, ref: str) -> None:
        """The outcome of ``ref`` is recorded: the carrier may forget the job."""
        ...

    async def cancel(self, ref: str) -> None:
        """Stop the job if it has not been sent yet (no error if it is gone)."""
        ...

    async def close(self) -> None: ...
