"""The SIP carrier (``[fax] carrier = "sip"``): the Carrier protocol over calls placed
by this process.

- ``submit`` refuses at once when the trunk refuses us (CarrierRefused) or cannot be
  reached (CarrierUnavailable), as the registration or the last call found; else the
  call becomes a task (waiting for a free line, ``max_calls``) and the ref
  ``<message id>-<attempt>-<boot>`` is returned at once.
- ``status`` reports a finished call's Result (results.py maps SIP responses and T.30
  completion codes); a ref of an earlier life of the daemon (another boot token) is a
  call that died with it: a temporary failure, so the dispatcher tries again.
- ``find`` (the message names this carrier but records no ref): if the fax's events
  show this attempt was being handed over, an earlier life died during the hand-over
  and may have placed the call: it answers with a lost ref, so the dispatcher counts
  the attempt as failed and retries after the usual delay. Otherwise the attempt was
  never handed over (an earlier attempt's hand-over was refused): None.
- ``cancel`` hangs up (CANCEL or BYE); ``done`` forgets a recorded outcome; ``close``
  hangs up everything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from gatewayd.fax.carrier import Failed, FaxJob, Result
from gatewayd.fax.sip.service import SipService
from gatewayd.logging import get_logger
from gatewayd.model import FaxErrorCode

log = get_logger("gatewayd.sip")

LOST = Failed(
    FaxErrorCode.CALL_FAILED,
    "the call was lost: gatewayd stopped while placing it or during it",
    True,
)


class SipCarrier:
    name = "sip"

    def __init__(self, service: SipService) -> None:
        self.service = service
        self.calls: dict[str, asyncio.Task[Result]] = {}

    async def submit(self, job: FaxJob) -> str:
        trouble = self.service.trouble()
        if trouble is not None:
            raise trouble
        ref = f"{job.message_id}-{job.attempt}-{self.service.boot}"
        self.calls[ref] = asyncio.create_task(self._call(job), name=f"sip-call-{ref}")
        return ref

    async def _call(self, job: FaxJob) -> Result:
        try:
            return await self.service.place(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a defect must not leave the fax waiting forever
            log.error("sip.call_crashed", message_id=job.message_id, error=repr(exc), exc_info=exc)
            return Failed(FaxErrorCode.INTERNAL_ERROR, f"the SIP call failed: {exc!r}", True)

    async def find(self, job: FaxJob) -> str | None:
        events = await self.service.mailbox.events(job.message_id)
        handed = any(
            e.kind == "carrier"
            and e.reason.startswith("handing over")
            and (e.detail or {}).get("attempt") == job.attempt
            for e in events
        )
        return f"{job.message_id}-{job.attempt}-lost" if handed else None

    async def status(self, refs: Sequence[str]) -> dict[str, Result]:
        out: dict[str, Result] = {}
        for ref in refs:
            task = self.calls.get(ref)
            if task is None:
                out[ref] = LOST
            elif task.done() and not task.cancelled():
                out[ref] = task.result()
        return out

    async def done(self, ref: str) -> None:
        self.calls.pop(ref, None)

    async def cancel(self, ref: str) -> None:
        task = self.calls.pop(ref, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        tasks = [t for t in self.calls.values() if not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.calls.clear()
