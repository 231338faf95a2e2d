"""An SMPP 3.4 link to an SMSC, as an asyncio ESME: one transceiver bind, or a
transmitter and a receiver bind, kept up for as long as the daemon runs.

Each bind is a Session (an asyncio Protocol): it frames PDUs by command_length, numbers
requests, matches responses by sequence number, and answers what the SMSC sends:
enquire_link, unbind (unbind_resp, then the link reconnects), deliver_sm and data_sm
(handed to the link's handler; deliver_sm_resp goes back with the status the handler
returns, only after the handler is done), and anything else with generic_nack
ESME_RINVCMDID. A session with no traffic for ``inactivity_timeout``, or whose
enquire_link goes unanswered for ``response_timeout``, is closed and made again.

The link reconnects after ``reconnect_delay``, doubling to ``reconnect_delay_max``,
with jitter, and starts over at the first delay once bound. A bind refused for its
credentials or system_type (ESME_RINVPASWD, ESME_RINVSYSID, ESME_RINVSYSTYP) stops the
link with one error line and the state ``stopped``: retrying cannot help. Other bind
failures retry.

Submitting: at most ``window`` submit_sm wait for their response at once, no more than
``tps`` a second leave (a token bucket), and each waits at most ``response_timeout``.
An SMSC that answers ESME_RTHROTTLED or ESME_RMSGQFUL is given a pause (one second, as
Kannel does, doubling while it keeps saying so).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Protocol, cast

from gatewayd.config.settings import SmppLinkSettings
from gatewayd.errors import BindRefused, LinkDown, ResponseTimeout
from gatewayd.logging import get_logger
from gatewayd.sms import pdu
from gatewayd.sms.pdu import Command, Pdu, Status
from gatewayd.sms.receipts import IdFormat

log = get_logger("gatewayd.sms")

PERMANENT_BIND_ERRORS = frozenset({Status.RINVPASWD, Status.RINVSYSID, Status.RINVSYSTYP})
THROTTLING = frozenset({Status.RTHROTTLED, Status.RMSGQFUL})
THROTTLE_PAUSE = 1.0
THROTTLE_PAUSE_MAX = 30.0


class LinkState(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    BOUND = "bound"
    RECONNECTING = "reconnecting"  # waiting out the reconnect delay
    STOPPED = "stopped"  # the SMSC refused our credentials: an operator must act
    CLOSED = "closed"


_STATE_LEVELS = {LinkState.STOPPED: "error", LinkState.RECONNECTING: "warning"}
STATES = tuple(state.value for state in LinkState)


class Handler(Protocol):
    async def __call__(self, link: SmppLink, request: Pdu) -> int:
        """Handle a deliver_sm or data_sm; returns the command_status to answer with."""
        ...

    def soon(self, link: SmppLink, request: Pdu) -> asyncio.Future[int] | int | None:
        """The same without a task, where the handler can (receipts, thousands a
        second): the status now, or a future of it; None: call the handler."""
        ...


@dataclass(frozen=True, slots=True)
class Role:
    name: str  # "transceiver", "transmitter" or "receiver"
    bind: Command
    submits: bool
    receives: bool


TRANSCEIVER = Role("transceiver", Command.BIND_TRANSCEIVER, submits=True, receives=True)
TRANSMITTER = Role("transmitter", Command.BIND_TRANSMITTER, submits=True, receives=False)
RECEIVER = Role("receiver", Command.BIND_RECEIVER, submits=False, receives=True)


class TokenBucket:
    """At most ``rate`` a second, in bursts of at most ``burst``; rate 0: no cap."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate / 10)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def try_take(self) -> float:
        """Take a token: 0.0, or (none there) the seconds until there is one."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass(slots=True, eq=False)
class _Submit:
    """A submit_sm waiting for its place in the window, then for its answer."""

    build: Callable[[int], bytes]
    answer: asyncio.Future[Pdu]
    unless: asyncio.Event | None


@dataclass(slots=True, eq=False)
class _Outstanding:
    """A request sent and not yet answered."""

    answer: asyncio.Future[Pdu]
    deadline: float  # loop time
    within: float
    submit: bool  # a submit_sm: it holds a place in the link's window


class Session(asyncio.Protocol):
    """One connection and its bind."""

    def __init__(self, link: SmppLink, role: Role) -> None:
        self.link = link
        self.role = role
        self.transport: asyncio.Transport | None = None
        self.framer = pdu.Framer()
        self.pending: dict[int, _Outstanding] = {}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.bound = False
        self.last_heard = time.monotonic()
        self.tasks: set[asyncio.Task[None]] = set()
        self.close_reason = "the SMSC closed the connection"
        self._outbox: list[bytes] = []  # PDUs to write at the end of this loop turn
        # One timer for the soonest deadline of what is pending, not one per request.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.last_heard = time.monotonic()
        try:
            frames = self.framer.feed(data)
        except pdu.DecodeError as exc:
            self.close(f"the SMSC sent a broken stream ({exc})")
            return
        for frame in frames:
            self._handle(frame)
        self.flush()  # the submit_sm that took the places answers freed go out now

    def connection_lost(self, exc: Exception | None) -> None:
        self.bound = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        reason = self.close_reason if exc is None else f"connection lost ({exc})"
        for sequence in list(self.pending):
            item = self._settle(sequence)
            if item is not None and not item.answer.done():
                item.answer.set_exception(LinkDown(f"link {self.link.name}: {reason}"))
        if not self.closed.done():
            self.closed.set_result(None)

    # -- sending ------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue a PDU; everything queued in one turn of the event loop goes out in one
        write (one system call for many submit_sm and deliver_sm_resp, not one each)."""
        if self.transport is None or self.transport.is_closing():
            raise LinkDown(f"link {self.link.name} is not connected")
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self.flush)
        self._outbox.append(data)

    def flush(self) -> None:
        if not self._outbox:
            return
        data = b"".join(self._outbox)
        self._outbox.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _expect(
        self, sequence: int, answer: asyncio.Future[Pdu], within: float, *, submit: bool
    ) -> None:
        deadline = asyncio.get_running_loop().time() + within
        self.pending[sequence] = _Outstanding(answer, deadline, within, submit)
        if self._timer is None or deadline < self._timer_at:
            self._arm(deadline)

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(at, self._expire_due)
        self._timer_at = at

    def _settle(self, sequence: int) -> _Outstanding | None:
        """Take a request off the books (answered, timed out, or the connection gone),
        giving its place in the window back."""
        item = self.pending.pop(sequence, None)
        if item is not None and item.submit:
            self.link.place_freed()
        return item

    def _expire_due(self) -> None:
        """ResponseTimeout for every request past its deadline; the timer again for the
        soonest deadline left."""
        self._timer = None
        now = asyncio.get_running_loop().time()
        soonest: float | None = None
        for sequence, item in list(self.pending.items()):
            if item.deadline <= now:
                self._settle(sequence)
                if not item.answer.done():
                    item.answer.set_exception(
                        ResponseTimeout(
                            f"link {self.link.name}: no response within {item.within:g} s"
                        )
                    )
            elif soonest is None or item.deadline < soonest:
                soonest = item.deadline
        if soonest is not None and not self._armed_by(soonest):
            self._arm(soonest)

    def _armed_by(self, at: float) -> bool:
        """Whether the timer fires by ``at`` (a submit_sm sent while expiring others may
        have armed it, for its own later deadline)."""
        return self._timer is not None and self._timer_at <= at

    async def request(self, build: Callable[[int], bytes], within: float) -> Pdu:
        """Send a request made by ``build(sequence)`` (bind, unbind, enquire_link); its
        response, or ResponseTimeout after ``within`` seconds."""
        sequence = self.link.next_sequence()
        answer: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        self._expect(sequence, answer, within, submit=False)
        try:
            self.send(build(sequence))
            return await answer
        finally:
            self._settle(sequence)

    def submit(self, job: _Submit) -> None:
        """Send a submit_sm that has its place in the window (the link's pump)."""
        sequence = self.link.next_sequence()
        self._expect(sequence, job.answer, self.link.settings.response_timeout, submit=True)
        try:
            self.send(job.build(sequence))
        except LinkDown as exc:
            self._settle(sequence)
            if not job.answer.done():
                job.answer.set_exception(exc)

    def close(self, reason: str) -> None:
        self.flush()  # an unbind_resp, say, goes out before the connection closes
        self.bound = False
        self.close_reason = reason
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # -- what the SMSC sends ------------------------------------------------------------

    def _handle(self, frame: bytes) -> None:
        try:
            request = pdu.decode(frame)
        except pdu.DecodeError as exc:
            command, sequence = pdu.HEADER.unpack_from(frame)[1::2]
            log.warning(
                "sms.bad_pdu", link=self.link.name, command=f"0x{command:08X}", reason=str(exc)
            )
            if not command & pdu.RESPONSE:
                self.send(pdu.frame(Command.GENERIC_NACK, exc.status, sequence))
            return
        if request.is_response:
            item = self._settle(request.sequence)
            if item is not None and not item.answer.done():
                item.answer.set_result(request)
            elif request.command != Command.GENERIC_NACK or request.status:
                log.info(
                    "sms.unexpected_response",
                    link=self.link.name,
                    command=request.name,
                    sequence=request.sequence,
                )
            return
        command = request.command
        if command == Command.ENQUIRE_LINK:
            self.send(pdu.frame(Command.ENQUIRE_LINK_RESP, 0, request.sequence))
        elif command == Command.UNBIND:
            self.send(pdu.frame(Command.UNBIND_RESP, 0, request.sequence))
            log.warning("sms.smsc_unbind", link=self.link.name, bind=self.role.name)
            self.close("the SMSC unbound")
        elif command in (Command.DELIVER_SM, Command.DATA_SM) and self.role.receives:
            self.link.counts[request.name] += 1
            try:
                soon = self.link.handler.soon(self.link, request)
            except Exception:  # a bug in the handler: the SMSC retries later
                log.exception("sms.deliver_failed", link=self.link.name)
                soon = Status.RX_T_APPN
            if soon is None:
                task = asyncio.create_task(self._deliver(request))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            elif isinstance(soon, int):
                self._answer(request, soon)
            else:
                soon.add_done_callback(partial(self._answered, request))
        elif command == Command.ALERT_NOTIFICATION:
            log.info("sms.alert_notification", link=self.link.name, **request.fields)
        else:
            log.warning("sms.unsupported_command", link=self.link.name, command=request.name)
            self.send(pdu.frame(Command.GENERIC_NACK, Status.RINVCMDID, request.sequence))

    async def _deliver(self, request: Pdu) -> None:
        try:
            status = await self.link.handler(self.link, request)
        except Exception:  # a bug in the handler: the SMSC retries later
            log.exception("sms.deliver_failed", link=self.link.name)
            status = Status.RX_T_APPN
        self._answer(request, status)

    def _answered(self, request: Pdu, status: asyncio.Future[int]) -> None:
        if status.cancelled():
            return  # we are closing: the SMSC sends it again
        error = status.exception()
        if error is not None:
            log.error("sms.deliver_failed", link=self.link.name, error=repr(error))
        self._answer(request, Status.RX_T_APPN if error is not None else status.result())

    def _answer(self, request: Pdu, status: int) -> None:
        answer = (
            Command.DELIVER_SM_RESP
            if request.command == Command.DELIVER_SM
            else Command.DATA_SM_RESP
        )
        with contextlib.suppress(LinkDown):
            self.send(pdu.encode_resp(answer, request.sequence, status))


class SmppLink:
    """One configured SMPP link: its binds, kept up; submit_sm through it."""

    def __init__(self, settings: SmppLinkSettings, handler: Handler) -> None:
        self.settings = settings
        self.name = settings.name
        self.handler = handler
        self.id_format = IdFormat(settings.smsc_id_format)  # how its SMSC writes ids
        self.state = LinkState.IDLE
        self.error: str | None = None  # why it is stopped, or the last failure
        roles = [TRANSCEIVER] if settings.bind == "transceiver" else [TRANSMITTER, RECEIVER]
        self._roles = roles
        self._sessions: dict[str, Session | None] = {role.name: None for role in roles}
        self._places = settings.window  # free places in the window
        self._waiting: deque[_Submit] = deque()  # submit_sm waiting for a place
        self._pump_later: asyncio.TimerHandle | None = None  # a pause or the tps cap
        self._bucket = TokenBucket(settings.tps)
        self._sequence = 0
        self._paused_until = 0.0
        self._throttle = THROTTLE_PAUSE
        self._bound = asyncio.Event()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._concat_reference = random.Random(settings.name).randrange(65536)
        # PDUs by command: submit_sm sent, deliver_sm and data_sm received
        self.counts: Counter[str] = Counter({"submit_sm": 0, "deliver_sm": 0})
        # submit_sm answers by command_status name (ESME_ROK, ESME_RTHROTTLED, ...)
        self.responses: Counter[str] = Counter({pdu.status_name(Status.ROK): 0})

    # -- state ----------------------------------------------------------------------------

    @property
    def bound(self) -> bool:
        return self._bound.is_set()

    @property
    def state_name(self) -> str:
        return self.state.value

    @property
    def states(self) -> tuple[str, ...]:
        """Every state a link can be in (for the metrics' enum)."""
        return STATES

    async def wait_bound(self, within: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._bound.wait(), within)
        return self.bound

    def _set_state(self, state: LinkState, **fields: object) -> None:
        if state is self.state:
            return
        previous, self.state = self.state, state
        # stopped for good: error; waiting to reconnect (a bind lost or failed): warning
        level = _STATE_LEVELS.get(state, "info")
        getattr(log, level)(
            "sms.link_state", link=self.name, previous=previous.value, state=state.value, **fields
        )

    def _update_bound(self) -> None:
        up = all(s is not None and s.bound for s in self._sessions.values())
        if up:
            self._bound.set()
            self._set_state(LinkState.BOUND)
        else:
            self._bound.clear()

    def _stopping(self) -> bool:
        return self._closing

    def next_sequence(self) -> int:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    def next_reference(self, bits: int) -> int:
        """The next concatenation reference (counted per link, not drawn at random)."""
        self._concat_reference = (self._concat_reference + 1) % 65536
        return self._concat_reference % (1 << bits)

    # -- running ----------------------------------------------------------------------

    def start(self) -> None:
        for role in self._roles:
            self._tasks.append(asyncio.create_task(self._keep(role), name=f"smpp-{self.name}"))

    async def close(self, within: float = 5.0) -> None:
        """Unbind politely, then close."""
        self._closing = True
        for session in self._sessions.values():
            if session is not None and session.bound:
                with contextlib.suppress(LinkDown, OSError):
                    await session.request(
                        lambda s: pdu.frame(Command.UNBIND, 0, s),
                        min(within, self.settings.response_timeout),
                    )
                session.close("unbound")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._bound.clear()
        self._set_state(LinkState.CLOSED)

    async def _keep(self, role: Role) -> None:
        delay = self.settings.reconnect_delay
        while not self._closing:
            self._set_state(LinkState.CONNECTING)
            try:
                session = await self._open(role)
            except BindRefused as exc:
                if exc.status in PERMANENT_BIND_ERRORS:
                    self.error = (
                        f"{exc}: check sms.links {self.name!r} system_id, password and system_type"
                    )
                    self._set_state(LinkState.STOPPED, reason=self.error)
                    return
                self.error = str(exc)
            except (OSError, LinkDown, TimeoutError) as exc:
                self.error = f"{role.name} bind to {self.settings.address}: {exc}"
            else:
                delay = self.settings.reconnect_delay
                self.error = None
                self._sessions[role.name] = session
                self._update_bound()
                log.info(
                    "sms.bound", link=self.name, bind=role.name, address=str(self.settings.address)
                )
                await self._watch(session)
                self._sessions[role.name] = None
                self._update_bound()
                if self._stopping():
                    return
                self.error = session.close_reason
                log.error(
                    "sms.link_lost", link=self.name, bind=role.name, reason=session.close_reason
                )
            self._set_state(LinkState.RECONNECTING, reason=self.error, retry_in=round(delay, 1))
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.settings.reconnect_delay_max)

    async def _open(self, role: Role) -> Session:
        settings = self.settings
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if settings.tls else None
        session = Session(self, role)
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: session, settings.address.host, settings.address.port, ssl=context
                ),
                settings.bind_timeout,
            )
        except TimeoutError:
            raise LinkDown(f"no connection within {settings.bind_timeout:g} s") from None
        values = {
            "system_id": settings.system_id,
            "password": settings.password,
            "system_type": settings.system_type,
            "interface_version": pdu.INTERFACE_VERSION,
            "address_range": settings.addr_range,
        }
        try:
            answer = await session.request(
                lambda s: pdu.encode(role.bind, s, values), settings.bind_timeout
            )
        except BaseException:
            session.close("bind failed")
            raise
        if answer.status != Status.ROK:
            session.close("bind refused")
            raise BindRefused(answer.status, pdu.status_name(answer.status))
        session.bound = True
        return session

    async def _watch(self, session: Session) -> None:
        """Keep the session alive with enquire_link until it closes."""
        interval = self.settings.enquire_link_interval
        while not session.closed.done():
            done, _ = await asyncio.wait({session.closed}, timeout=interval)
            if done:
                return
            if time.monotonic() - session.last_heard > self.settings.inactivity_timeout:
                session.close(f"nothing heard for {self.settings.inactivity_timeout:g} s")
                continue
            try:
                await session.request(
                    lambda s: pdu.frame(Command.ENQUIRE_LINK, 0, s), self.settings.response_timeout
                )
            except ResponseTimeout:
                session.close("enquire_link unanswered")
            except LinkDown:
                pass

    # -- submitting ---------------------------------------------------------------------

    def _submitter(self) -> Session:
        for role in self._roles:
            session = self._sessions[role.name]
            if role.submits and session is not None and session.bound:
                return session
        raise LinkDown(f"link {self.name} is {self.state.value}")

    async def submit(
        self, build: Callable[[int], bytes], *, unless: asyncio.Event | None = None
    ) -> Pdu:
        """Send one submit_sm made by ``build(sequence)``; its submit_sm_resp (or
        generic_nack). LinkDown when the link is down or goes down meanwhile, or when
        ``unless`` is set while the submit_sm still waits for its turn (once sent, its
        answer is always awaited); ResponseTimeout when the SMSC does not answer in
        time.

        The window is a queue here, not a lock: the submit_sm waiting for a place are
        sent by the link itself as soon as places come free (an answer read, a timeout,
        the connection lost), in the same turn of the event loop that freed them, and
        in the order they came. The tps cap and a throttling pause hold the queue."""
        return await self.submit_nowait(build, unless=unless)

    def submit_nowait(
        self, build: Callable[[int], bytes], *, unless: asyncio.Event | None = None
    ) -> asyncio.Future[Pdu]:
        """``submit`` as a future (its exception is the future's), for callers that
        chain callbacks rather than await."""
        job = _Submit(build, asyncio.get_running_loop().create_future(), unless)
        job.answer.add_done_callback(self._note_answer)
        self._waiting.append(job)
        self._pump()
        return job.answer

    def _note_answer(self, answer: asyncio.Future[Pdu]) -> None:
        if answer.cancelled() or answer.exception() is not None:
            return
        status = answer.result().status
        self.responses[pdu.status_name(status)] += 1
        if status in THROTTLING:
            self._paused_until = time.monotonic() + self._throttle
            log.info(
                "sms.throttled",
                link=self.name,
                status=pdu.status_name(status),
                pause=self._throttle,
            )
            self._throttle = min(self._throttle * 2, THROTTLE_PAUSE_MAX)
        elif status == Status.ROK:
            self._throttle = THROTTLE_PAUSE

    def place_freed(self) -> None:
        self._places += 1
        if self._waiting:
            self._pump()

    def abandon_waiting(self) -> None:
        """Fail the submit_sm still waiting for a place whose ``unless`` is set (the
        dispatcher stops): LinkDown, as the SMSC never saw them."""
        for job in [j for j in self._waiting if j.unless is not None and j.unless.is_set()]:
            self._waiting.remove(job)
            if not job.answer.done():
                job.answer.set_exception(LinkDown(f"link {self.name}: stopping"))

    def _pump(self) -> None:
        """Send waiting submit_sm while there are places, tokens and no pause."""
        while self._waiting and self._places > 0:
            job = self._waiting[0]
            if job.answer.done():  # its caller gave up
                self._waiting.popleft()
                continue
            if job.unless is not None and job.unless.is_set():
                self._waiting.popleft()
                job.answer.set_exception(LinkDown(f"link {self.name}: stopping"))
                continue
            wait = self._paused_until - time.monotonic()
            if wait <= 0:
                wait = self._bucket.try_take()
            if wait > 0:
                if self._pump_later is None:
                    self._pump_later = asyncio.get_running_loop().call_later(wait, self._pump_again)
                return
            self._waiting.popleft()
            try:
                session = self._submitter()
            except LinkDown as exc:
                job.answer.set_exception(exc)
                continue
            self._places -= 1
            self.counts["submit_sm"] += 1
            session.submit(job)

    def _pump_again(self) -> None:
        self._pump_later = None
        self._pump()

    @property
    def window_in_use(self) -> int:
        """submit_sm sent and not yet answered, on every bind of the link."""
        return self.settings.window - self._places
