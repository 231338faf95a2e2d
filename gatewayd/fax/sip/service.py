"""The SIP side of fax in one object, started and stopped by the fax service: the user
agent on ``[fax.sip] local_address``, its registration, the call slots
(``max_calls``, in and out together), placing calls for the carrier, and answering
calls for users' fax numbers.

An INVITE is answered only when it comes from the proxy or registrar (anything else
gets 403), is for a configured ``fax_number`` (else 404) and a slot is free (else 486
Busy Here). A fax waiting to go out takes the next free slot; inbound calls take a
slot only when one is free. ``trouble`` tells the carrier, before it places a call,
whether the trunk refuses us (CarrierRefused: the registrar or the last call refused
our credentials) or cannot be reached (CarrierUnavailable).

Start-up fails with a clear error (StartupError) when libspandsp is missing or the
SIP address cannot be bound. On stop, calls in progress are hung up (an outbound fax
is then retried after the restart, the far end retries an inbound one).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from datetime import UTC, datetime
from typing import Any

from gatewayd.config.settings import Settings, User
from gatewayd.errors import StartupError
from gatewayd.fax.carrier import (
    CarrierError,
    CarrierRefused,
    CarrierUnavailable,
    Failed,
    FaxJob,
    Result,
)
from gatewayd.fax.sip import call as call_module
from gatewayd.fax.sip import engine, results
from gatewayd.fax.sip.call import CallEnd, FaxCall
from gatewayd.fax.sip.inbound import InboundFaxes, Note
from gatewayd.fax.sip.media import MediaError, PortPool, Role
from gatewayd.fax.sip.message import Request
from gatewayd.fax.sip.registration import Registration
from gatewayd.fax.sip.transaction import ServerTransaction
from gatewayd.fax.sip.transport import Peer
from gatewayd.fax.sip.useragent import UserAgent
from gatewayd.logging import get_logger
from gatewayd.mailbox import Mailbox
from gatewayd.model import FaxErrorCode

log = get_logger("gatewayd.sip")

MAX_CALL = 2 * 3600.0
RECOVER_INTERVAL = 300.0


class CallSlots:
    """``max_calls`` lines: outbound faxes queue for one; inbound calls get one only
    if one is free now."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    def try_take(self) -> bool:
        if self.used < self.size:
            self.used += 1
            return True
        return False

    async def take(self) -> None:
        if not self._waiting and self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # it was handed to us as we were cancelled
            else:
                self._waiting.remove(waiter)
            raise

    def give(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on
                return
        self.used -= 1


class SipService:
    def __init__(self, mailbox: Mailbox, settings: Settings) -> None:
        sip = settings.fax.sip
        self.mailbox = mailbox
        self.settings = settings
        self.ua = UserAgent(sip)
        self.registration = Registration(self.ua, sip.register_interval) if sip.registers else None
        self.inbound = InboundFaxes(mailbox, settings)
        self.pool = PortPool(sip.local_address.host, *sip.media_ports)
        self.slots = CallSlots(sip.max_calls)
        self.boot = secrets.token_hex(4)
        self.refused = ""  # the last call refused for our credentials, until one goes
        self._calls: set[FaxCall] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()

    def reload(self, settings: Settings) -> None:
        """New users (fax numbers) after SIGHUP; the trunk settings need a restart."""
        self.settings = settings
        self.inbound.reload(settings)

    async def start(self) -> None:
        engine.load()  # EngineUnavailable (a StartupError) says what to install
        sip = self.settings.fax.sip
        try:
            await self.ua.start()
        except OSError as exc:
            raise StartupError(
                f"SIP: cannot use [fax.sip] local_address {sip.local_address} or proxy "
                f"{sip.proxy}: {exc}"
            ) from exc
        self.ua.on_invite = self._on_invite
        if self.registration is not None:
            self._spawn(self.registration.run(), "sip-registration")
        self._spawn(self._recover_forever(), "sip-inbound-recovery")
        log.info(
            "sip.started",
            transport=self.ua.kind,
            listen=f"{self.ua.transport.advertised}:{self.ua.transport.port}",
            proxy=str(sip.proxy),
            registers=self.registration is not None,
            t38=sip.t38,
            max_calls=sip.max_calls,
            sends=self.settings.fax.carrier == "sip",
        )

    async def close(self) -> None:
        self._stopping.set()
        self.ua.closing = True
        for call in list(self._calls):
            call.hang_up("gatewayd is stopping")
        for task in list(self._tasks):
            if task.get_name() != "sip-receive":
                task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)
        for task in list(self._tasks):
            task.cancel()
        if call_module.HANGING_UP:  # BYEs and CANCELs of calls just cut: let them go out
            await asyncio.wait(set(call_module.HANGING_UP), timeout=2)
        if self.registration is not None:
            await self.registration.stop()
        await self.ua.close()

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error("sip.task_failed", task=task.get_name(), error=repr(error), exc_info=error)

    async def _recover_forever(self) -> None:
        while not self._stopping.is_set():
            stored = await self.inbound.recover()
            if stored:
                log.info("sip.faxes_recovered", stored=stored)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), RECOVER_INTERVAL)

    # -- outbound --------------------------------------------------------------------

    def trouble(self) -> CarrierError | None:
        """Why a call should not be tried now, if there is a reason."""
        registration = self.registration
        if registration is not None and registration.state == "refused":
            return CarrierRefused(registration.problem)
        if registration is not None and registration.state == "unreachable":
            return CarrierUnavailable(registration.problem)
        if self.refused:
            return CarrierRefused(self.refused)
        return None

    async def place(self, job: FaxJob) -> Result:
        sip = self.settings.fax.sip
        await self.slots.take()
        log.info("sip.line_taken", in_use=self.slots.used, lines=self.slots.size)
        try:
            loop = asyncio.get_running_loop()
            left = (job.kill_at - datetime.now(UTC)).total_seconds()
            role = Role(calling=True, tiff=job.tiff, ident=job.station_id, ecm=sip.ecm)
            deadline = loop.time() + max(60.0, min(left, MAX_CALL))
            call = FaxCall(self.ua, self.pool, role, t38=sip.t38, deadline=deadline)
            self._calls.add(call)
            try:
                end = await call.place(job.destination, sip.caller_id or job.station_id)
            except MediaError as exc:
                log.error("sip.no_media_port", error=str(exc))
                return Failed(FaxErrorCode.CALL_FAILED, str(exc), True)
            finally:
                self._calls.discard(call)
        finally:
            self.slots.give()
        return self._outcome(end, job)

    def _outcome(self, end: CallEnd, job: FaxJob) -> Result:
        sip = self.settings.fax.sip
        if end.unreachable:
            return Failed(
                FaxErrorCode.CALL_FAILED,
                f"the SIP server {sip.proxy} did not answer the call ({end.unreachable})",
                True,
            )
        if end.refused:
            refusal = results.refused(end.status, end.reason, sip.username, str(sip.proxy))
            self.refused = refusal.reason
            log.error("sip.call_refused_by_trunk", reason=refusal.reason)
            return refusal
        self.refused = ""
        if not end.answered:
            return results.sip_failure(end.status, end.reason)
        outcome = end.outcome
        exchange = results.Exchange(
            code=outcome.code if outcome else None,
            text=(outcome.text if outcome else "") or end.ended_by or "no phase E",
            pages_sent=outcome.pages_tx if outcome else 0,
            pages_total=job.pages,
            duration=end.duration,
            mode=end.mode,
            remote_ident=end.remote_ident,
            bit_rate=outcome.bit_rate if outcome else 0,
            ecm=outcome.ecm if outcome else False,
        )
        return results.t30_result(exchange)

    # -- inbound ---------------------------------------------------------------------

    def _on_invite(self, request: Request, transaction: ServerTransaction, peer: Peer) -> None:
        if peer.host not in self.ua.trusted:
            log.warning("sip.invite_refused", reason="not from the proxy", peer=peer.host)
            transaction.reply(403)
            return
        found = self.inbound.owner(request)
        if found is None:
            to = request.headers.get("To")
            log.info("sip.invite_refused", reason="no fax number of ours", uri=request.uri, to=to)
            transaction.reply(404)
            return
        user, number = found
        if self._stopping.is_set():
            transaction.reply(503)
            return
        if not self.slots.try_take():
            log.info("sip.busy", number=number, max_calls=self.slots.size)
            transaction.reply(486)
            return
        self._spawn(self._receive(request, transaction, user, number), "sip-receive")

    async def _receive(
        self, request: Request, transaction: ServerTransaction, user: User, number: str
    ) -> None:
        sip = self.settings.fax.sip
        path = self.inbound.spool_path(request.call_id)
        caller = self.inbound.caller(request)
        try:
            role = Role(calling=False, tiff=path, ident=user.station_id or number, ecm=sip.ecm)
            deadline = asyncio.get_running_loop().time() + MAX_CALL
            call = FaxCall(self.ua, self.pool, role, t38=sip.t38, deadline=deadline)
            self._calls.add(call)
            log.info(
                "sip.call_offered",
                number=number,
                caller=caller or None,
                extension_id=user.extension_id,
                call_id=request.call_id,
            )
            try:
                end = await call.answer(request, transaction)
            finally:
                self._calls.discard(call)
        finally:
            self.slots.give()
        outcome = end.outcome
        if outcome is None or outcome.pages_rx == 0:
            path.unlink(missing_ok=True)
            why = (outcome.text if outcome else end.ended_by) or f"SIP {end.status}"
            log.info("sip.fax_not_received", number=number, call_id=request.call_id, reason=why)
            return
        note = Note(
            extension_id=user.extension_id,
            caller=caller,
            called=number,
            call_id=request.call_id,
            mode=end.mode,
            pages=outcome.pages_rx,
            seconds=round(end.duration, 1),
            remote_station=outcome.remote_ident,
            code=outcome.code,
            result=outcome.text,
            bad_rows=outcome.bad_rows,
        )
        await self.inbound.keep(path, note)
