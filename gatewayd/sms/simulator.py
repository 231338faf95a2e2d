"""An SMSC for development and tests: ``gatewayd smsc-sim [--listen HOST:PORT]``.

It binds ESMEs that give its system_id and password (transceiver, transmitter or
receiver), answers submit_sm with message ids (hex or decimal), and sends a delivery
receipt for each part after ``receipt_delay`` to a receiving bind of the same
system_id. What becomes of a message is chosen by the end of its destination number:

    ...0001  UNDELIV, err 001            ...0006  ACCEPTD
    ...0002  EXPIRED                     ...0007  the receipt comes before the submit_sm_resp
    ...0003  REJECTD, err 003            ...0008  ESME_RSYSERR on the first try, then as usual
    ...0004  ENROUTE, then DELIVRD       ...0009  submit_sm refused: ESME_RINVDSTADR
    ...0005  no receipt at all           ...0010  ESME_RTHROTTLED on the first try
    anything else: DELIVRD

Faults to inject (options, or attributes of ``SimSettings``): every Nth submit_sm
throttled or left unanswered, a disconnect or an SMSC-initiated unbind after N
submit_sm, receipts in other layouts (text only, TLVs only, in message_payload, fields
reordered and missing, lower-case) and with the id written the other way (hex/decimal,
zero-padded). Mobile-originated messages are sent with ``send_mo`` (tests) and are
concatenated by UDH or SAR when long. Ids, delays and outcomes are deterministic for a
seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

from gatewayd import gsm
from gatewayd.logging import get_logger
from gatewayd.sms import pdu
from gatewayd.sms.pdu import ESM_UDHI, Command, Pdu, Status, Tag

log = get_logger("gatewayd.smsc_sim")

OUTCOMES = {
    "0001": ("UNDELIV", "001"),
    "0002": ("EXPIRED", "000"),
    "0003": ("REJECTD", "003"),
    "0006": ("ACCEPTD", "000"),
}
STATE_OF = {"DELIVRD": 2, "EXPIRED": 3, "UNDELIV": 5, "ACCEPTD": 6, "REJECTD": 8, "ENROUTE": 1}
LAYOUTS = ("both", "text", "tlv", "payload", "odd")


@dataclass
class SimSettings:
    system_id: str = "gatewayd"
    password: str = "gatewayd"  # noqa: S105 - the simulator's documented default
    system_type: str | None = None  # when set, binds must give this system_type
    id_format: str = "hex"  # submit_sm_resp ids: "hex" or "decimal"
    receipt_id_format: str = "same"  # the receipt's id: "same", "decimal", "hex", "padded"
    receipt_layout: str = "both"  # one of LAYOUTS
    receipt_delay: float = 0.05
    seed: int = 0
    throttle_every: int = 0  # every Nth submit_sm: ESME_RTHROTTLED
    silent_every: int = 0  # every Nth submit_sm: no response at all
    disconnect_after: int = 0  # close the connection after N submit_sm
    unbind_after: int = 0  # send unbind after N submit_sm
    answer_enquire_link: bool = True


@dataclass
class Stats:
    binds: int = 0
    submits: int = 0
    receipts: int = 0
    mo: int = 0
    statuses: Counter[str] = field(default_factory=Counter)


class _Connection(asyncio.Protocol):
    def __init__(self, smsc: Smsc) -> None:
        self.smsc = smsc
        self.transport: asyncio.Transport | None = None
        self.framer = pdu.Framer()
        self.bind: Command | None = None
        self.sequence = 0
        self.pending: dict[int, asyncio.Future[Pdu]] = {}
        self.submits = 0
        self.unacked: dict[int, tuple[_Receipt, str, str]] = {}  # receipts sent, not answered

    @property
    def receives(self) -> bool:
        return self.bind in (Command.BIND_TRANSCEIVER, Command.BIND_RECEIVER)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.smsc.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.smsc.connections.discard(self)
        # As an SMSC does: receipts the ESME never answered go again on its next bind.
        self.smsc.requeue(list(self.unacked.values()))
        self.unacked.clear()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the ESME went away"))

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def next_sequence(self) -> int:
        self.sequence = self.sequence % 0x7FFFFFFF + 1
        return self.sequence

    async def request(self, data_for: Callable[[int], bytes], within: float = 10.0) -> Pdu:
        sequence = self.next_sequence()
        future: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        self.pending[sequence] = future
        self.send(data_for(sequence))
        try:
            return await asyncio.wait_for(future, within)
        finally:
            self.pending.pop(sequence, None)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.framer.feed(data)
        except pdu.DecodeError:
            if self.transport is not None:
                self.transport.close()
            return
        for frame in frames:
            self.smsc.handle(self, frame)


@dataclass(frozen=True, slots=True)
class _Receipt:
    """A receipt to send: for which submit_sm, on which connection."""

    connection: _Connection
    request: Pdu
    message_id: str
    submitted: datetime


class Smsc:
    def __init__(self, settings: SimSettings | None = None) -> None:
        self.settings = settings or SimSettings()
        self.random = random.Random(self.settings.seed)
        self.stats = Stats()
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._next_id = 1000 + self.random.randrange(1000)
        self._tries: Counter[str] = Counter()
        self._mo_reference = 0
        self.submitted: list[Pdu] = []  # every submit_sm, for tests
        self._undelivered: list[tuple[_Receipt, str, str]] = []
        self.keep_submitted = True

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(self), host, port
        )
        bound = self._server.sockets[0].getsockname()[1]
        log.info("smsc_sim.listening", host=host, port=bound)
        return int(bound)

    async def close(self) -> None:
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # -- requests from ESMEs ------------------------------------------------------------

    def handle(self, connection: _Connection, frame: bytes) -> None:
        try:
            request = pdu.decode(frame)
        except pdu.DecodeError as exc:
            connection.send(pdu.frame(Command.GENERIC_NACK, exc.status, 0))
            return
        self.stats.statuses[request.name] += 1
        if request.is_response:
            receipt = connection.unacked.pop(request.sequence, None)
            if receipt is not None and request.status != Status.ROK:  # try again later
                asyncio.get_running_loop().call_later(
                    max(self.settings.receipt_delay, 0.05), self.requeue, [receipt]
                )
            future = connection.pending.get(request.sequence)
            if future is not None and not future.done():
                future.set_result(request)
            return
        command = request.command
        if command in (Command.BIND_TRANSCEIVER, Command.BIND_TRANSMITTER, Command.BIND_RECEIVER):
            self._bind(connection, request)
        elif connection.bind is None:
            connection.send(pdu.frame(command | pdu.RESPONSE, Status.RINVBNDSTS, request.sequence))
        elif command == Command.SUBMIT_SM:
            self._submit(connection, request)
        elif command == Command.ENQUIRE_LINK:
            if self.settings.answer_enquire_link:
                connection.send(pdu.frame(Command.ENQUIRE_LINK_RESP, 0, request.sequence))
        elif command == Command.UNBIND:
            connection.send(pdu.frame(Command.UNBIND_RESP, 0, request.sequence))
            if connection.transport is not None:
                connection.transport.close()
        else:
            connection.send(pdu.frame(Command.GENERIC_NACK, Status.RINVCMDID, request.sequence))

    def _bind(self, connection: _Connection, request: Pdu) -> None:
        settings, fields = self.settings, request.fields
        status = Status.ROK
        if fields.get("system_id") != settings.system_id:
            status = Status.RINVSYSID
        elif fields.get("password") != settings.password:
            status = Status.RINVPASWD
        elif settings.system_type is not None and fields.get("system_type") != settings.system_type:
            status = Status.RINVSYSTYP
        answer = pdu.encode(
            request.command | pdu.RESPONSE,
            request.sequence,
            {"system_id": "gatewayd-sim"},
            status=status,
        )
        connection.send(answer)
        if status == Status.ROK:
            connection.bind = Command(request.command)
            self.stats.binds += 1
            if connection.receives and self._undelivered:
                waiting, self._undelivered = self._undelivered, []
                for job, stat, err in waiting:
                    self._send_receipt(replace(job, connection=connection), stat, err)

    def _new_id(self) -> str:
        self._next_id += 1
        return (
            format(self._next_id, "X") if self.settings.id_format == "hex" else str(self._next_id)
        )

    def _submit(self, connection: _Connection, request: Pdu) -> None:
        settings = self.settings
        self.stats.submits += 1
        connection.submits += 1
        count = self.stats.submits
        if self.keep_submitted:
            self.submitted.append(request)
        destination = request.fields.get("destination_addr", "")
        ending = destination[-4:]
        key = f"{destination}:{request.fields.get('short_message', b'')!r}"
        if settings.silent_every and count % settings.silent_every == 0:
            return
        status = Status.ROK
        if settings.throttle_every and count % settings.throttle_every == 0:
            status = Status.RTHROTTLED
        elif ending == "0009":
            status = Status.RINVDSTADR
        elif ending in ("0008", "0010") and self._tries[key] == 0:
            status = Status.RSYSERR if ending == "0008" else Status.RTHROTTLED
        self._tries[key] += 1
        if status != Status.ROK:
            connection.send(pdu.encode_resp(Command.SUBMIT_SM_RESP, request.sequence, status))
        else:
            message_id = self._new_id()
            receipt_first = ending == "0007"
            if not receipt_first:
                connection.send(
                    pdu.encode_resp(Command.SUBMIT_SM_RESP, request.sequence, 0, message_id)
                )
            if ending != "0005" and request.fields.get("registered_delivery", 0) & 0x03:
                self._schedule_receipts(connection, request, message_id, ending)
            if receipt_first:
                asyncio.get_running_loop().call_later(
                    settings.receipt_delay + 0.2,
                    connection.send,
                    pdu.encode_resp(Command.SUBMIT_SM_RESP, request.sequence, 0, message_id),
                )
        disconnect = settings.disconnect_after and connection.submits == settings.disconnect_after
        if disconnect and connection.transport is not None:
            connection.transport.close()
        if settings.unbind_after and connection.submits == settings.unbind_after:
            asyncio.get_running_loop().create_task(self._unbind(connection))

    async def _unbind(self, connection: _Connection) -> None:
        with contextlib.suppress(Exception):
            await connection.request(lambda s: pdu.frame(Command.UNBIND, 0, s), within=5)
        if connection.transport is not None:
            connection.transport.close()

    def _schedule_receipts(
        self, connection: _Connection, request: Pdu, message_id: str, ending: str
    ) -> None:
        loop = asyncio.get_running_loop()
        delay = self.settings.receipt_delay
        job = _Receipt(connection, request, message_id, datetime.now(UTC))
        if ending == "0004":
            loop.call_later(delay / 2, self._send_receipt, job, "ENROUTE", "000")
        stat, err = OUTCOMES.get(ending, ("DELIVRD", "000"))
        loop.call_later(delay, self._send_receipt, job, stat, err)

    def _receipt_id(self, message_id: str) -> str:
        fmt = self.settings.receipt_id_format
        number = int(message_id, 16) if self.settings.id_format == "hex" else int(message_id)
        if fmt == "decimal":
            return str(number)
        if fmt == "hex":
            return format(number, "x")
        if fmt == "padded":
            return message_id.rjust(10, "0")
        return message_id

    def _send_receipt(self, job: _Receipt, stat: str, err: str) -> None:
        connection, request, message_id, submitted = (
            job.connection,
            job.request,
            job.message_id,
            job.submitted,
        )
        target = (
            connection
            if connection.receives and connection in self.connections
            else next((c for c in self.connections if c.receives), None)
        )
        if target is None:  # kept for the next receiving bind, as an SMSC does
            self._undelivered.append((job, stat, err))
            return
        done = datetime.now(UTC)
        shown = self._receipt_id(message_id)
        original = request.fields.get("short_message", b"")[:20].decode("latin-1", "replace")
        layout = self.settings.receipt_layout
        if layout == "odd":
            text = (
                f"Stat:{stat} id:{shown} Err:{err} done date:{done:%y%m%d%H%M%S} "
                f"submit date:{submitted:%y%m%d%H%M}"
            )
        else:
            text = (
                f"id:{shown} sub:001 dlvrd:{1 if stat == 'DELIVRD' else 0:03d} "
                f"submit date:{submitted:%y%m%d%H%M} done date:{done:%y%m%d%H%M} "
                f"stat:{stat} err:{err} text:{original}"
            )
        fields = {
            "source_addr": request.fields.get("destination_addr", ""),
            "source_addr_ton": request.fields.get("dest_addr_ton", 1),
            "source_addr_npi": request.fields.get("dest_addr_npi", 1),
            "destination_addr": request.fields.get("source_addr", ""),
            "dest_addr_ton": request.fields.get("source_addr_ton", 1),
            "dest_addr_npi": request.fields.get("source_addr_npi", 1),
            "esm_class": 0x04,
        }
        tlvs: list[tuple[int, bytes]] = []
        if layout in ("both", "text", "odd"):
            fields["short_message"] = text.encode("latin-1")
        if layout == "payload":
            tlvs.append(pdu.tlv(Tag.MESSAGE_PAYLOAD, text.encode("latin-1")))
        if layout in ("both", "tlv", "payload"):
            tlvs += [
                pdu.tlv(Tag.RECEIPTED_MESSAGE_ID, shown),
                pdu.tlv(Tag.MESSAGE_STATE, STATE_OF.get(stat, 7)),
            ]
            if err != "000":
                tlvs.append(pdu.tlv(Tag.NETWORK_ERROR_CODE, b"\x03" + int(err).to_bytes(2, "big")))
        self.stats.receipts += 1
        sequence = target.next_sequence()
        target.unacked[sequence] = (job, stat, err)
        target.send(pdu.encode(Command.DELIVER_SM, sequence, fields, tlvs=tlvs))

    def requeue(self, receipts: list[tuple[_Receipt, str, str]]) -> None:
        """Receipts to send again: now on a receiving bind, else when one binds."""
        for job, stat, err in receipts:
            self._send_receipt(job, stat, err)

    # -- mobile-originated messages ---------------------------------------------------

    async def send_mo(
        self,
        source: str,
        destination: str,
        text: str,
        *,
        concatenation: str = "udh8",
        data_coding: int | None = None,
        parts_order: list[int] | None = None,
        skip_parts: tuple[int, ...] = (),
    ) -> list[int]:
        """Send an MO message (split when long) to a receiving bind; the
        deliver_sm_resp statuses, part by part."""
        target = next((c for c in self.connections if c.receives), None)
        if target is None:
            raise ConnectionError("no ESME is bound to receive")
        split = gsm.split(text, gsm.Concatenation(concatenation))
        coding = split.data_coding if data_coding is None else data_coding
        if coding == 3:
            encoded = [part.encode("latin-1") for part in split.parts]
        else:
            encoded = split.encoded()
        self._mo_reference = (self._mo_reference + 1) % 256
        total = len(encoded)
        order = parts_order or list(range(total))
        statuses = []
        for index in order:
            if index in skip_parts:
                continue
            body = encoded[index]
            fields = {
                "source_addr": source.lstrip("+"),
                "source_addr_ton": 1,
                "source_addr_npi": 1,
                "destination_addr": destination.lstrip("+"),
                "dest_addr_ton": 1,
                "dest_addr_npi": 1,
                "data_coding": coding,
            }
            tlvs: list[tuple[int, bytes]] = []
            if total > 1 and concatenation == "udh8":
                body = bytes((5, 0, 3, self._mo_reference, total, index + 1)) + body
                fields["esm_class"] = ESM_UDHI
            elif total > 1 and concatenation == "udh16":
                ref = 0x1200 + self._mo_reference
                body = bytes((6, 8, 4, ref >> 8, ref & 0xFF, total, index + 1)) + body
                fields["esm_class"] = ESM_UDHI
            elif total > 1 and concatenation == "sar":
                tlvs = [
                    pdu.tlv(Tag.SAR_MSG_REF_NUM, self._mo_reference, 2),
                    pdu.tlv(Tag.SAR_TOTAL_SEGMENTS, total),
                    pdu.tlv(Tag.SAR_SEGMENT_SEQNUM, index + 1),
                ]
            if concatenation == "payload":
                tlvs.append(pdu.tlv(Tag.MESSAGE_PAYLOAD, body))
            else:
                fields["short_message"] = body
            answer = await target.request(partial(_deliver_sm, fields=fields, tlvs=tlvs))
            statuses.append(answer.status)
            self.stats.mo += 1
        return statuses


def _deliver_sm(sequence: int, *, fields: dict[str, Any], tlvs: list[tuple[int, bytes]]) -> bytes:
    return pdu.encode(Command.DELIVER_SM, sequence, fields, tlvs=tlvs)


async def serve(host: str, port: int, settings: SimSettings) -> int:
    """Run until SIGINT or SIGTERM (``gatewayd smsc-sim``)."""
    smsc = Smsc(settings)
    smsc.keep_submitted = False
    bound = await smsc.start(host, port)
    print(
        f"gatewayd smsc-sim: listening on {host}:{bound} (system_id {settings.system_id!r})",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    await stop.wait()
    await smsc.close()
    print(
        f"gatewayd smsc-sim: {smsc.stats.binds} binds, {smsc.stats.submits} submit_sm, "
        f"{smsc.stats.receipts} receipts in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return 0
