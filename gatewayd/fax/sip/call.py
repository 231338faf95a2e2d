"""One fax call, placed (``place``) or answered (``answer``): SIP signalling, the
media and the fax engine, to a ``CallEnd``.

Placing: INVITE through the proxy offering G.711 (PCMA, PCMU), digest credentials
when challenged (401/407), provisional responses logged, CANCEL after
``RING_TIMEOUT`` without an answer; a 2xx is ACKed (again for each retransmission)
and the fax runs on the answered codec. Answering: the offer's T.38 when allowed and
offered, else its first G.711 codec; 200 with our answer, resent until the ACK comes
(UDP); a CANCEL before that gets 487.

T.38: on an answered audio call the answering side (us, for inbound faxes, with
``t38``) re-INVITEs to image/t38 once the ACK is in; a 2xx moves the call to T.38, a
refusal (488, ...) keeps G.711. A far end's re-INVITE is answered the same way (T.38
taken when allowed, else 488; 491 while our own re-INVITE is pending, and ours is
tried once more after a pause when we get 491). BYE from the far end ends the fax
(the engine is terminated and reports phase E); after phase E the caller hangs up,
the answerer waits a few seconds for the caller's BYE and then sends its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass
from typing import Any

from gatewayd.fax.sip import engine, sdp
from gatewayd.fax.sip.dialog import Dialog
from gatewayd.fax.sip.media import Media, MediaError, PortPool, Role
from gatewayd.fax.sip.message import (
    NameAddr,
    Request,
    Response,
    new_call_id,
    new_tag,
    response_to,
)
from gatewayd.fax.sip.results import REFUSED
from gatewayd.fax.sip.transaction import ClientTransaction, ServerTransaction, TransactionTimeout
from gatewayd.fax.sip.transport import TransportError
from gatewayd.fax.sip.useragent import UserAgent
from gatewayd.logging import get_logger

log = get_logger("gatewayd.sip")

RING_TIMEOUT = 60.0
CANCEL_WAIT = 32.0
BYE_WAIT = 5.0  # the answerer waits this long for the caller's BYE after phase E
REINVITE_RETRY = (2.1, 4.0)  # after a 491 (RFC 3261 14.1)
SDP = "application/sdp"


HANGING_UP: set[asyncio.Task[None]] = set()  # BYEs sent as a cancelled call goes


@dataclass(slots=True)
class CallEnd:
    answered: bool = False
    status: int = 0  # the final SIP status that ended an unanswered call
    reason: str = ""
    refused: bool = False  # 401/407 after our credentials, or 403
    unreachable: str = ""  # no response or no connection
    outcome: engine.Outcome | None = None
    mode: str = ""  # "T.38", "G.711 PCMA", "G.711 PCMU"
    duration: float = 0.0  # answer to hang-up
    ended_by: str = ""
    remote_ident: str = ""


class FaxCall:
    def __init__(
        self, ua: UserAgent, pool: PortPool, role: Role, *, t38: bool, deadline: float
    ) -> None:
        self.ua = ua
        self.role = role
        self.t38 = t38
        self.deadline = deadline
        self.media = Media(pool, role)
        self.end = CallEnd()
        self.dialog: Dialog | None = None
        self.stop = asyncio.Event()
        self.log = log
        self._key: tuple[str, str] | None = None
        self._invite: ClientTransaction | None = None
        self._server_invite: ServerTransaction | None = None
        self._reinviting = False
        self._remote_bye = asyncio.Event()
        self._awaiting_ack: int | None = None
        self._acked = asyncio.Event()
        self._last_ack: Request | None = None
        self._sdp_session = sdp.new_session(ua.transport.advertised)
        self._answered_at = 0.0
        self._final_invite: Request | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- placing ---------------------------------------------------------------------

    async def place(self, number: str, caller_id: str) -> CallEnd:
        ua = self.ua
        loop = asyncio.get_running_loop()
        try:
            offer = self._offer([sdp.audio_media(await self.media.port("audio"), ["PCMA", "PCMU"])])
            call_id, tag = new_call_id(ua.transport.advertised), new_tag()
            identity = ua.identity
            caller = NameAddr(ua.uri_for(identity.from_user), caller_id)
            to = f"<{ua.uri_for(number)}>"
            request = ua.new_request(
                "INVITE",
                ua.uri_for(number),
                from_=f"{caller};tag={tag}",
                to=to,
                call_id=call_id,
                cseq=1,
            )
            if caller_id:
                request.headers.add("P-Asserted-Identity", f"<{ua.uri_for(caller_id)}>")
            request.headers.add("Content-Type", SDP)
            request.body = offer
            self._register((call_id, tag))
            self.log = log.bind(call_id=call_id, direction="out", number=number)
            self.log.info("sip.call_started", caller_id=caller_id or None)
            response = await self._invite_until_final(request, loop.time() + RING_TIMEOUT)
            if response is None:
                return self.end
            assert self._final_invite is not None
            request = self._final_invite
            self.dialog = Dialog.as_caller(request, response)
            await self._ack(response, request.cseq[0])
            try:
                chosen = sdp.chosen(sdp.parse(response.body), t38_offered=False)
                self.media.use(chosen)
            except sdp.SdpError as exc:
                self.log.warning("sip.answer_unusable", problem=str(exc))
                self.end.status, self.end.reason = 488, f"unusable SDP answer: {exc}"
                await self._bye()
                return self.end
            await self._run_fax(chosen)
            if not self._remote_bye.is_set():
                await self._bye()
            return self.end
        except asyncio.CancelledError:
            self._abandon()
            raise
        finally:
            self._finish()

    def _offer(self, media: list[sdp.Media]) -> bytes:
        self._sdp_session.version += 1
        self._sdp_session.media = media
        return sdp.render(self._sdp_session)

    async def _invite_until_final(self, request: Request, ring_until: float) -> Response | None:
        """Send the INVITE (again with credentials when challenged) until a final
        response; a 2xx is returned, anything else ends the call (None)."""
        attempt = 0
        loop = asyncio.get_running_loop()
        while True:
            self._final_invite = request
            transaction = self.ua.send(request)
            self._invite = transaction
            transaction.on_provisional = self._provisional
            final: Response | None
            try:
                final = await asyncio.wait_for(
                    asyncio.shield(transaction.final), max(ring_until - loop.time(), 0.1)
                )
            except TimeoutError:
                final = await self._cancel(transaction)
            except (TransactionTimeout, TransportError) as exc:
                self.end.unreachable = str(exc) or type(exc).__name__
                self.log.warning("sip.unreachable", reason=self.end.unreachable)
                return None
            if final is None:
                self.end.status, self.end.reason = 408, "no answer (ring timeout)"
                self.log.info("sip.no_answer", after=RING_TIMEOUT)
                return None
            response = final
            if response.status in (401, 407):
                again = self.ua.retry_with_credentials(request, response, attempt=attempt)
                if again is not None:
                    request, attempt = again, attempt + 1
                    continue
            if 200 <= response.status < 300:
                self.end.answered = True
                self._answered_at = loop.time()
                self.log.info("sip.call_answered")
                return response
            self.end.status, self.end.reason = response.status, response.reason
            self.end.refused = response.status in REFUSED
            self.log.info("sip.call_refused", status=response.status, reason=response.reason)
            return None

    def _provisional(self, response: Response) -> None:
        if response.status > 100:
            self.log.info("sip.provisional", status=response.status, reason=response.reason)

    async def _cancel(self, transaction: ClientTransaction) -> Response | None:
        """CANCEL an INVITE still ringing; the INVITE's final response (487, or a 2xx
        that crossed it), or None."""
        if transaction.provisional is None:
            with contextlib.suppress(TransactionTimeout, TransportError, TimeoutError):
                return await asyncio.wait_for(asyncio.shield(transaction.final), CANCEL_WAIT)
            return None
        self._send_cancel(transaction)
        with contextlib.suppress(TransactionTimeout, TransportError, TimeoutError):
            response = await asyncio.wait_for(asyncio.shield(transaction.final), CANCEL_WAIT)
            if 200 <= response.status < 300:
                self.dialog = Dialog.as_caller(transaction.request, response)
                await self._ack(response, transaction.request.cseq[0])
                await self._bye()
                return None
            return None if response.status == 487 else response
        return None

    def _send_cancel(self, transaction: ClientTransaction) -> None:
        invite = transaction.request
        cancel = Request("CANCEL", invite.uri, invite.headers.copy())
        for name in ("Contact", "Content-Type", "P-Asserted-Identity", "Allow", "User-Agent"):
            cancel.headers.remove(name)
        cancel.headers.set("CSeq", f"{invite.cseq[0]} CANCEL")
        # same branch as the INVITE (RFC 3261 9.1): not stamped anew
        self.ua.transactions.send(cancel, transaction.peer)

    def _abandon(self) -> None:
        """Cancelled (the fax was deleted, the daemon stops): CANCEL or BYE, not awaited."""
        if self.dialog is not None and self.end.answered and not self._remote_bye.is_set():
            task = asyncio.create_task(self._bye())
            HANGING_UP.add(task)
            task.add_done_callback(HANGING_UP.discard)
        elif (
            self._invite is not None
            and self._invite.provisional is not None
            and not self._invite.final.done()
        ):
            self._send_cancel(self._invite)

    async def _ack(self, response: Response, cseq: int) -> None:
        assert self.dialog is not None
        ack = self.ua.stamp(self.dialog.request("ACK", cseq=cseq))
        self._last_ack = ack
        self.ua.send_stateless(ack, await self.ua.peer_for(self.dialog.next_hop()))

    def on_stray_2xx(self, response: Response) -> None:
        if self._last_ack is not None and self.dialog is not None:
            self._spawn(self._resend_ack())

    async def _resend_ack(self) -> None:
        assert self._last_ack is not None
        assert self.dialog is not None
        self.ua.send_stateless(self._last_ack, await self.ua.peer_for(self.dialog.next_hop()))

    # -- answering -------------------------------------------------------------------

    async def answer(self, request: Request, transaction: ServerTransaction) -> CallEnd:
        self._server_invite = transaction
        tag = new_tag()
        self.dialog = Dialog.as_callee(request, tag)
        self._register(self.dialog.key)
        self.log = log.bind(call_id=request.call_id, direction="in")
        try:
            if not request.body:
                transaction.reply(488, "An SDP offer is required", to_tag=tag)
                self.end.status = 488
                return self.end
            try:
                offer = sdp.parse(request.body)
                answer, chosen = await self._answer_offer(offer)
            except sdp.SdpError as exc:
                self.log.info("sip.offer_refused", problem=str(exc))
                transaction.reply(488, to_tag=tag)
                self.end.status = 488
                return self.end
            except MediaError as exc:
                self.log.error("sip.no_media_port", error=str(exc))
                transaction.reply(503, to_tag=tag)
                self.end.status = 503
                return self.end
            if transaction.cancelled:
                return self.end
            self._ok(transaction, answer, request.cseq[0])
            self.end.answered = True
            self._answered_at = asyncio.get_running_loop().time()
            self.log.info("sip.call_answered", mode=_mode(chosen))
            self.media.use(chosen)
            if self.t38 and chosen.kind == "audio":
                self._spawn(self._switch_to_t38_after_ack())
            await self._run_fax(chosen)
            if not self._remote_bye.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._remote_bye.wait(), BYE_WAIT)
            if not self._remote_bye.is_set():
                await self._bye()
            return self.end
        except asyncio.CancelledError:
            if not transaction.final_sent:
                transaction.reply(503, to_tag=tag)
            self._abandon()
            raise
        finally:
            self._finish()

    async def _answer_offer(self, offer: sdp.Session) -> tuple[bytes, sdp.Chosen]:
        wants_image = self.t38 and any(sdp.is_t38(m) and m.port for m in offer.media)
        wants_audio = any(m.kind == "audio" and m.port for m in offer.media)
        audio_port = await self.media.port("audio") if wants_audio else 0
        image_port = await self.media.port("image") if wants_image else 0
        self._sdp_session.version += 1
        session, chosen = sdp.answer(
            offer,
            address=self.ua.transport.advertised,
            audio_port=audio_port,
            image_port=image_port,
            t38=self.t38,
            version=self._sdp_session.version,
        )
        session.session_id = self._sdp_session.session_id
        return sdp.render(session), chosen

    def _ok(self, transaction: ServerTransaction, body: bytes, cseq: int) -> None:
        assert self.dialog is not None
        response = response_to(transaction.request, 200, to_tag=self.dialog.local_tag)
        response.headers.add("Contact", self.ua.contact)
        for route in transaction.request.headers.get_all("Record-Route"):
            response.headers.add("Record-Route", route)
        response.headers.add("Content-Type", SDP)
        response.body = body
        self._awaiting_ack = cseq
        self._acked.clear()
        transaction.respond(response)
        if not self.ua.transport.reliable:
            self._spawn(self._resend_2xx(transaction, response, cseq))

    async def _resend_2xx(
        self, transaction: ServerTransaction, response: Response, cseq: int
    ) -> None:
        """RFC 3261 13.3.1.4: the 2xx again until its ACK (T1 doubling to T2)."""
        timers = self.ua.transactions.timers
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timers.timeout
        interval = timers.t1
        while self._awaiting_ack == cseq and loop.time() < give_up:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait(), interval)
            if self._awaiting_ack != cseq:
                return
            self.ua.transactions.send_soon(response, transaction.peer)
            interval = min(interval * 2, timers.t2)
        if self._awaiting_ack == cseq:
            self.log.warning("sip.no_ack", cseq=cseq)
            self.media.ended_by = "no ACK for our 200 OK"
            self.stop.set()

    async def _switch_to_t38_after_ack(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._acked.wait(), self.ua.transactions.timers.timeout)
        if not self._acked.is_set() or self.stop.is_set():
            return
        for attempt in range(2):
            outcome = await self._reinvite_t38()
            if outcome != 491 or attempt:
                return
            await asyncio.sleep(random.uniform(*REINVITE_RETRY))
            if self.media.mode == "t38" or self.stop.is_set():
                return

    async def _reinvite_t38(self) -> int:
        """Offer T.38 in a re-INVITE; the final status (0 when none came)."""
        assert self.dialog is not None
        if self._reinviting:
            return 0
        self._reinviting = True
        try:
            try:
                image_port = await self.media.port("image")
            except MediaError as exc:
                self.log.error("sip.no_media_port", error=str(exc))
                return 0
            body = self._offer([sdp.image_media(image_port, sdp.OUR_T38)])
            request = self.dialog.request("INVITE", contact=self.ua.contact)
            request.headers.add("Content-Type", SDP)
            request.body = body
            peer = await self.ua.peer_for(self.dialog.next_hop())
            self.log.info("sip.t38_offered")
            attempt = 0
            while True:
                transaction = self.ua.send(request, peer)
                try:
                    response = await transaction.final
                except (TransactionTimeout, TransportError) as exc:
                    self.log.warning("sip.t38_unanswered", problem=str(exc))
                    return 0
                if response.status in (401, 407):
                    again = self.ua.retry_with_credentials(request, response, attempt=attempt)
                    if again is not None:
                        request, attempt = again, attempt + 1
                        self.dialog.local_seq = request.cseq[0]
                        continue
                break
            if 200 <= response.status < 300:
                await self._ack(response, request.cseq[0])
                try:
                    chosen = sdp.chosen(sdp.parse(response.body), t38_offered=True)
                except sdp.SdpError as exc:
                    self.log.warning("sip.t38_answer_unusable", problem=str(exc))
                    return response.status
                self.media.use(chosen)
                self.end.mode = _mode(chosen)
                self.log.info("sip.t38", started_by="us", mode=self.end.mode)
            else:
                self.log.info("sip.t38_refused", status=response.status, reason=response.reason)
            return response.status
        finally:
            self._reinviting = False

    # -- requests in the dialog ------------------------------------------------------

    def on_request(self, request: Request, transaction: ServerTransaction | None) -> None:
        if request.method == "ACK":
            if self._awaiting_ack is not None and request.cseq[0] == self._awaiting_ack:
                self._awaiting_ack = None
                self._acked.set()
            return
        if request.method == "CANCEL":
            invite = self._server_invite
            if invite is not None and not invite.final_sent and self.dialog is not None:
                invite.reply(487, to_tag=self.dialog.local_tag)
                self.end.ended_by = "the caller cancelled"
                self.stop.set()
            return
        assert transaction is not None
        if self.dialog is None or not self.dialog.accepts(request):
            transaction.reply(500, "CSeq out of order")
            return
        if request.method == "BYE":
            transaction.reply(200)
            self.log.info("sip.bye_received")
            self.media.ended_by = self.media.ended_by or "the far end hung up"
            self._remote_bye.set()
            self.stop.set()
        elif request.method == "INVITE":
            if self._reinviting:
                transaction.reply(491)
                return
            self._spawn(self._answer_reinvite(request, transaction))
        elif request.method in ("OPTIONS", "INFO", "UPDATE") and not request.body:
            transaction.reply(200)
        else:
            transaction.reply(405, Allow="INVITE, ACK, BYE, CANCEL, OPTIONS")

    async def _answer_reinvite(self, request: Request, transaction: ServerTransaction) -> None:
        assert self.dialog is not None
        if not request.body:
            transaction.reply(488, "An SDP offer is required")
            return
        try:
            body, chosen = await self._answer_offer(sdp.parse(request.body))
        except sdp.SdpError as exc:
            self.log.info("sip.reinvite_refused", problem=str(exc))
            transaction.reply(488)
            return
        except MediaError as exc:
            self.log.error("sip.no_media_port", error=str(exc))
            transaction.reply(503)
            return
        self._ok(transaction, body, request.cseq[0])
        if chosen.kind == "image" and self.media.mode != "t38":
            self.log.info("sip.t38", started_by="far end", mode="T.38")
        self.media.use(chosen)
        self.end.mode = _mode(chosen)

    # -- the fax, the end ------------------------------------------------------------

    async def _run_fax(self, chosen: sdp.Chosen) -> None:
        self.end.mode = _mode(chosen)
        outcome = await self.media.run(self.deadline, self.stop)
        self.end.outcome = outcome
        self.end.duration = asyncio.get_running_loop().time() - self._answered_at
        self.end.ended_by = self.end.ended_by or self.media.ended_by
        if outcome is not None:
            self.end.remote_ident = outcome.remote_ident
        self.log.info(
            "sip.fax_done",
            mode=self.end.mode,
            code=outcome.code if outcome else None,
            result=outcome.text if outcome else "no phase E",
            pages_sent=outcome.pages_tx if outcome else 0,
            pages_received=outcome.pages_rx if outcome else 0,
            bit_rate=outcome.bit_rate if outcome else 0,
            ecm=outcome.ecm if outcome else False,
            remote_station=self.end.remote_ident or None,
            seconds=round(self.end.duration, 1),
            media_received=self.media.stats.received,
            rtp_lost=self.media.jitter.stats.lost,
            udptl_recovered=self.media.udptl_in.stats.recovered,
            udptl_lost=self.media.udptl_in.stats.lost,
            ended_by=self.end.ended_by or None,
            **({"dropped_for_test": drops} if (drops := self.media.stats.dropped_for_test) else {}),
        )
        if outcome is None or outcome.code != 0:
            self.log.info("sip.fax_log", lines=self.media.log_tail())

    async def _bye(self) -> None:
        if self.dialog is None:
            return
        request = self.dialog.request("BYE")
        with contextlib.suppress(TransactionTimeout, TransportError, TimeoutError):
            peer = await self.ua.peer_for(self.dialog.next_hop())
            attempt = 0
            while True:
                response = await asyncio.wait_for(
                    self.ua.send(request, peer).final, self.ua.transactions.timers.timeout + 1
                )
                if response.status in (401, 407):
                    again = self.ua.retry_with_credentials(request, response, attempt=attempt)
                    if again is not None:
                        request, attempt = again, attempt + 1
                        continue
                break
        self.log.info("sip.bye_sent")

    def hang_up(self, why: str) -> None:
        """End an answered call (the media stops, BYE follows)."""
        self.media.ended_by = self.media.ended_by or why
        self.stop.set()

    def _register(self, key: tuple[str, str]) -> None:
        self._key = key
        self.ua.dialogs[key] = self

    def _finish(self) -> None:
        if self._key is not None:
            self.ua.dialogs.pop(self._key, None)
        self.media.close()
        for task in self._tasks:
            task.cancel()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.log.error("sip.task_failed", error=repr(error), exc_info=error)


def _mode(chosen: sdp.Chosen) -> str:
    return "T.38" if chosen.kind == "image" else f"G.711 {chosen.codec}"
