"""Queued faxes out through the configured carrier.

The dispatcher leases due Queued faxes (a fax with a send time is not due before it),
renders each (in the renderer's worker processes) unless an earlier attempt did,
hands the TIFF to the carrier and records the carrier's job id on the message before
anything else, then follows the job until the carrier says what became of it:

- Sent: the message is Sent (with the pages and the call's duration in its event).
- a permanent failure (no fax machine, invalid number, ...): SendingFailed at once
  with the faxErrorCode and the carrier's reason.
- a temporary failure (busy, no answer, call failed, carrier unreachable): back to
  the queue, due after ``fax.retry_delay`` doubling per attempt; SendingFailed after
  ``fax.max_attempts`` attempts or ``fax.max_age`` after the fax was due.
- deleted while Queued: cancelled at the carrier, SendingFailed ("cancelled").
- cancelled (``Mailbox.cancel``: SendingFailed "cancelled: ...", by an operator, from
  any process or node), or otherwise no longer Queued, while the carrier still has
  it: cancelled at the carrier. A fax cancelled while it was being handed over is
  taken back from the carrier as soon as the hand-over is refused (LeaseLost).
- still pending past its kill time: cancelled, SendingFailed.

``carrier_state`` says how the carrier is doing ("ok", "unavailable", "refused" and
the reason) for ``gatewayd status``.

Restart safety: the dispatcher's lease owner is the same across restarts of the
daemon on one host, so a new process finds the faxes its previous life held. One
with a carrier job id is followed again (the carrier is asked), never submitted
again. One that was being handed over when the process died is looked for at the
carrier by its message id and attempt (``find``) before it is submitted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from gatewayd.cluster import Cluster
from gatewayd.config.settings import Settings
from gatewayd.errors import CarrierError, CarrierRefused, GatewayError, LeaseLost
from gatewayd.fax.carrier import Carrier, FaxJob, Result, Sent
from gatewayd.fax.rendering import Rendered, render_fax
from gatewayd.logging import bound_message, get_logger
from gatewayd.mailbox import Mailbox, Message
from gatewayd.model import Availability, FaxErrorCode, FaxResolution, MessageStatus, MessageType
from gatewayd.render.job import Renderer
from gatewayd.worker import LeaseLoop, backoff

log = get_logger("gatewayd.fax")
T = TypeVar("T")

LEASE_SECONDS = 600.0
IDLE_POLL = 2.0
MAX_RETRY_DELAY = 6 * 3600.0
KILL_SLACK = 300.0  # a carrier that keeps a job past its kill time this long: we stop it
DELETED = "cancelled: the fax was deleted before it was sent"


@dataclass(slots=True)
class Tracked:
    message_id: int
    attempt: int
    ref: str
    kill_at: datetime
    renewed: float  # loop time of the last lease renewal


class FaxDispatcher(LeaseLoop[Message]):
    name = "fax"
    idle_poll = IDLE_POLL
    busy_poll = IDLE_POLL

    def __init__(
        self,
        mailbox: Mailbox,
        settings: Settings,
        carrier: Carrier,
        renderer: Renderer,
        *,
        poll_interval: float,
        observe_render: Callable[[float], None] | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        node = cluster.name if cluster else settings.node.resolved_name
        super().__init__(
            mailbox, f"fax@{node}", [MessageType.FAX], lease_for=LEASE_SECONDS, cluster=cluster
        )
        self.settings = settings
        self.carrier = carrier
        self.renderer = renderer
        self.poll_interval = poll_interval
        self.observe_render = observe_render
        self.tracked: dict[str, Tracked] = {}
        self._starting: set[int] = set()  # leased, being rendered or handed over
        self._carrier_error: str | None = None
        self._carrier_refused = False

    def reload(self, settings: Settings) -> None:
        self.settings = settings

    async def run(self) -> None:
        """Adopt what an earlier life held, then lease and follow until ``stop``."""
        follow = asyncio.create_task(self._follow_forever(), name="fax-follow")
        try:
            await super().run()
        finally:
            self.stop()
            await follow

    @property
    def carrier_name(self) -> str:
        return self.carrier.name

    @property
    def following(self) -> int:
        """Jobs at the carrier followed now."""
        return len(self.tracked)

    @property
    def carrier_state(self) -> tuple[str, str | None]:
        """("ok", None), or ("unavailable" | "refused", the carrier's last reason)."""
        if self._carrier_error is None:
            return "ok", None
        return ("refused" if self._carrier_refused else "unavailable"), self._carrier_error

    def room(self) -> int:
        return max(1, self.settings.fax.render_workers) * 2 - len(self._starting)

    async def adopt(self, held: Sequence[Message]) -> None:
        for message in held:
            log.info(
                "fax.adopted",
                message_id=message.id,
                carrier_ref=message.carrier_ref,
                attempt=message.attempts,
            )
            self.start(message)

    async def take(self, limit: int) -> list[Message]:
        return await self.lease(limit)

    def start(self, message: Message) -> None:
        if message.id in self._starting or any(
            t.message_id == message.id for t in self.tracked.values()
        ):
            return  # ours already (its lease ran out under us: the clock jumped)
        self._starting.add(message.id)
        self.spawn(self._begin(message), name=f"fax-{message.id}")

    # -- one fax: render, hand over ---------------------------------------------------

    async def _begin(self, message: Message) -> None:
        with bound_message(message.id):
            try:
                await self._hand_over(message)
            except LeaseLost:
                log.warning("fax.lease_lost", message_id=message.id)
            except GatewayError as exc:
                # The mailbox failed: the lease runs out and the fax comes back.
                log.error("fax.dispatch_failed", message_id=message.id, error=str(exc))
            finally:
                self._starting.discard(message.id)

    def _due(self, message: Message) -> datetime:
        return max(message.creation_time, message.send_time or message.creation_time)

    async def _hand_over(self, message: Message) -> None:
        fax = self.settings.fax
        now = self.mailbox.clock.now()
        if message.availability is not Availability.ALIVE:
            await self._fail(message.id, DELETED, None)
            return
        if message.carrier_ref and message.carrier == self.carrier.name:
            # An earlier life handed it over: follow it, with the kill time it was given.
            earlier = message.carrier_ref
            events = await self.mailbox.events(message.id)
            kill_at = next(
                (
                    datetime.fromisoformat(e.detail["kill_at"])
                    for e in reversed(events)
                    if e.kind == "carrier"
                    and e.detail
                    and e.detail.get("carrier_ref") == earlier
                    and "kill_at" in e.detail
                ),
                None,
            )
            self._track(message, earlier, kill_at=kill_at)
            return
        due = self._due(message)
        if now - due > timedelta(seconds=fax.max_age):
            await self._fail(
                message.id,
                f"not sent within {fax.max_age:g} s of being due",
                FaxErrorCode(message.fax_error_code or FaxErrorCode.CALL_FAILED),
            )
            return
        if not message.to or not message.to[0].phone_number:
            await self._fail(
                message.id, "the fax has no destination number", FaxErrorCode.INVALID_NUMBER
            )
            return
        rendered = await render_fax(
            self.mailbox,
            self.renderer,
            self.settings,
            message,
            lease_owner=self.owner,
            observe=self.observe_render,
        )
        if rendered is None:
            return  # SendingFailed (RenderingFailed or TooManyPages), logged
        async with self.mailbox.blob_file(rendered.sha256) as tiff:
            await self._submit(message, self._job(rendered, tiff, now))

    async def _submit(self, message: Message, job: FaxJob) -> None:
        """Hand a rendered fax to the carrier (unless an earlier life did) and follow it."""
        ref = None
        if message.carrier == self.carrier.name:  # handed over, ref not recorded?
            try:
                ref = await self.carrier.find(job)
            except CarrierError as exc:  # cannot tell: do not risk sending it twice
                self._carrier_trouble(exc)
                await self.mailbox.retry_later(
                    message.id, self.owner, delay=self.poll_interval, reason=exc.reason
                )
                return
            if ref is not None:
                log.info("fax.found_at_carrier", message_id=message.id, carrier_ref=ref)
        if ref is None:
            await self.mailbox.set_carrier(
                message.id,
                self.owner,
                carrier=self.carrier.name,
                ref=None,
                reason=f"handing over to {self.carrier.name}",
                detail={"attempt": job.attempt},
            )
            try:
                ref = await self.carrier.submit(job)
            except CarrierError as exc:
                await self._retry_or_fail(message, FaxErrorCode.CALL_FAILED, exc.reason)
                self._carrier_trouble(exc)
                return
        try:
            updated = await self.mailbox.set_carrier(
                message.id,
                self.owner,
                carrier=self.carrier.name,
                ref=ref,
                reason=f"submitted to {self.carrier.name} as {ref}",
                detail={
                    "attempt": job.attempt,
                    "pages": job.pages,
                    "kill_at": job.kill_at.isoformat(),
                },
            )
        except LeaseLost:
            # Cancelled (or taken by another worker) while the carrier took it: it must
            # not be sent on our account.
            await self._carrier_call(self.carrier.cancel(ref))
            log.warning(
                "fax.cancelled_at_carrier",
                message_id=message.id,
                carrier_ref=ref,
                reason="the fax was no longer ours when the carrier took it",
            )
            raise
        log.info(
            "fax.submitted",
            message_id=message.id,
            carrier=self.carrier.name,
            carrier_ref=ref,
            pages=job.pages,
            destination=job.destination,
        )
        self._track(updated, ref, kill_at=job.kill_at)

    def _job(self, rendered: Rendered, tiff: Path, now: datetime) -> FaxJob:
        message, fax = rendered.message, self.settings.fax
        user = self.settings.user_by_extension(message.extension_id)
        station = message.from_.phone_number or ""
        sender = user.name if user else (message.from_.name or "")
        kill_at = min(
            now + timedelta(seconds=fax.hylafax.kill_time),
            self._due(message) + timedelta(seconds=fax.max_age),
        )
        destination = message.to[0].phone_number if message.to else None
        assert destination is not None  # checked before rendering
        return FaxJob(
            message_id=message.id,
            attempt=message.attempts,
            tiff=tiff,
            destination=destination,
            pages=rendered.pages,
            resolution="normal" if message.fax_resolution is FaxResolution.LOW else "fine",
            paper=fax.paper,
            station_id=station,
            header=" ".join(part for part in (sender, station) if part),
            kill_at=kill_at,
            handed_at=now,
            options={"sender_email": message.sender_email} if message.sender_email else {},
            node=self.owner.partition("@")[2],
        )

    def _track(self, message: Message, ref: str, *, kill_at: datetime | None = None) -> None:
        limit = self._due(message) + timedelta(seconds=self.settings.fax.max_age)
        self.tracked[ref] = Tracked(
            message.id, message.attempts, ref, kill_at or limit, asyncio.get_running_loop().time()
        )
        self.wake()

    # -- following jobs at the carrier ------------------------------------------------

    async def _follow_forever(self) -> None:
        while True:
            if self.tracked:
                try:
                    await self.follow()
                except GatewayError as exc:
                    log.error("fax.follow_failed", error=str(exc))
            if self.stopping and not self.busy:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self.poll_interval)

    async def follow(self) -> None:
        """Ask the carrier about every job followed; record what is final."""
        refs = list(self.tracked)
        answer = await self._carrier_call(self.carrier.status(refs))
        if answer is not None:
            self._carrier_ok()
        results = answer or {}
        now = self.mailbox.clock.now()
        loop_now = asyncio.get_running_loop().time()
        current = await self.mailbox.get_many([t.message_id for t in self.tracked.values()])
        for ref in refs:
            item = self.tracked.get(ref)
            if item is None:
                continue
            message = current.get(item.message_id)
            if message is None or message.message_status is not MessageStatus.QUEUED:
                # Cancelled, gone, or finished elsewhere. Once the carrier has answered:
                # a job it still has is stopped there; a finished one forgotten.
                if answer is None:
                    continue  # the carrier cannot say now: ask again at the next poll
                self.tracked.pop(ref, None)
                await self._let_go(item, message, results.get(ref))
                continue
            with bound_message(item.message_id):
                try:
                    await self._follow_one(item, message, results.get(ref), now, loop_now)
                except LeaseLost:
                    log.warning("fax.lease_lost", message_id=item.message_id)
                    self.tracked.pop(ref, None)

    async def _let_go(self, item: Tracked, message: Message | None, result: Result | None) -> None:
        """A job whose message is no longer Queued: stop it at the carrier if it is
        still going; if it went out after all, say so on the message."""
        if result is None:
            await self._carrier_call(self.carrier.cancel(item.ref))
            log.info(
                "fax.cancelled_at_carrier",
                message_id=item.message_id,
                carrier_ref=item.ref,
                status=message.message_status.value if message else "removed",
                reason=message.failure_reason if message else None,
            )
            return
        await self._carrier_call(self.carrier.done(item.ref))
        if message is not None and isinstance(result, Sent):
            with bound_message(item.message_id):
                await self.mailbox.record_event(
                    item.message_id,
                    "carrier",
                    f"{self.carrier.name} had already sent it",
                    {"carrier_ref": item.ref, "pages": result.pages},
                )

    async def _follow_one(
        self,
        item: Tracked,
        message: Message,
        result: Result | None,
        now: datetime,
        loop_now: float,
    ) -> None:
        if result is not None:
            await self._finish(item, message, result)
            return
        if message.availability is not Availability.ALIVE:
            await self._carrier_call(self.carrier.cancel(item.ref))
            self.tracked.pop(item.ref, None)
            await self._fail(item.message_id, DELETED, None)
            return
        if now > item.kill_at + timedelta(seconds=KILL_SLACK):
            await self._carrier_call(self.carrier.cancel(item.ref))
            self.tracked.pop(item.ref, None)
            await self._fail(
                item.message_id,
                "the carrier did not send it before its kill time "
                f"({item.kill_at:%Y-%m-%d %H:%M} UTC)",
                FaxErrorCode.CALL_FAILED,
            )
            return
        if loop_now - item.renewed > LEASE_SECONDS / 3:
            await self.mailbox.renew_lease(item.message_id, self.owner, lease_for=LEASE_SECONDS)
            item.renewed = loop_now

    async def _finish(self, item: Tracked, message: Message, result: Result) -> None:
        self.tracked.pop(item.ref, None)
        if isinstance(result, Sent):
            detail = {"carrier_ref": item.ref, "pages": result.pages, "duration": result.duration}
            await self.mailbox.transition(
                item.message_id,
                MessageStatus.SENT,
                lease_owner=self.owner,
                reason=f"sent by {self.carrier.name}{': ' if result.detail else ''}{result.detail}",
                detail=detail,
            )
            log.info("fax.sent", message_id=item.message_id, **detail)
        elif result.temporary:
            await self._retry_or_fail(message, result.code, result.reason, clear_ref=True)
        else:
            await self._fail(item.message_id, result.reason, result.code)
        await self._carrier_call(self.carrier.done(item.ref))

    # -- outcomes ---------------------------------------------------------------------

    async def _retry_or_fail(
        self, message: Message, code: FaxErrorCode, reason: str, *, clear_ref: bool = False
    ) -> None:
        fax = self.settings.fax
        now = self.mailbox.clock.now()
        delay = backoff(fax.retry_delay, message.attempts, cap=MAX_RETRY_DELAY)
        too_old = now + timedelta(seconds=delay) - self._due(message) > timedelta(
            seconds=fax.max_age
        )
        if message.attempts >= fax.max_attempts or too_old:
            why = (
                f"gave up after {message.attempts} attempts"
                if message.attempts >= fax.max_attempts
                else f"the next attempt would be past max_age ({fax.max_age:g} s)"
            )
            await self._fail(message.id, f"{reason} ({why})", code)
            return
        if clear_ref:
            await self.mailbox.set_carrier(
                message.id,
                self.owner,
                carrier=None,
                ref=None,
                reason=f"attempt {message.attempts} failed: {reason}",
                detail={"fax_error_code": code.value},
            )
        await self.mailbox.retry_later(
            message.id,
            self.owner,
            delay=delay,
            reason=reason,
            detail={"fax_error_code": code.value},
        )

    async def _fail(self, message_id: int, reason: str, code: FaxErrorCode | None) -> None:
        await self.mailbox.transition(
            message_id,
            MessageStatus.SENDING_FAILED,
            reason=reason,
            lease_owner=self.owner,
            fax_error_code=code,
        )
        log.warning(
            "fax.sending_failed",
            message_id=message_id,
            reason=reason,
            fax_error_code=code.value if code else None,
        )

    # -- the carrier's health ---------------------------------------------------------

    @property
    def carrier_problem(self) -> str | None:
        """Why the carrier cannot be used now (unreachable, refusing us), or None."""
        return self._carrier_error

    @property
    def jobs(self) -> int:
        """Faxes this node has at the carrier, and ones being rendered or handed over."""
        return len(self.tracked) + len(self._starting)

    async def _carrier_call(self, call: Awaitable[T]) -> T | None:
        """``call``'s answer; None (and one log line per new problem) if the carrier
        cannot be reached or refuses us."""
        try:
            return await call
        except CarrierError as exc:
            self._carrier_trouble(exc)
            return None

    def _carrier_trouble(self, exc: CarrierError) -> None:
        if exc.reason == self._carrier_error:
            return
        self._carrier_error = exc.reason
        self._carrier_refused = isinstance(exc, CarrierRefused)
        event = (
            "fax.carrier_refused" if isinstance(exc, CarrierRefused) else "fax.carrier_unavailable"
        )
        log.error(event, carrier=self.carrier.name, reason=exc.reason)

    def _carrier_ok(self) -> None:
        if self._carrier_error is not None:
            log.info("fax.carrier_back", carrier=self.carrier.name)
            self._carrier_error = None
