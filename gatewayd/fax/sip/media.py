"""A call's media: one stream at a time (G.711 audio over RTP, or T.38 over UDPTL)
feeding the fax engine every 20 ms by the event loop's monotonic clock.

- Ports come from ``[fax.sip] media_ports`` (``PortPool``): an audio port when the
  call starts, an image port when it moves to T.38.
- Symmetric RTP (NAT-friendly): we send to the address the SDP gave until a packet
  arrives from elsewhere, then to where the far end's packets come from.
- Audio: each tick sends one 20 ms RTP packet (the engine's samples, A-law or µ-law)
  and gives the engine one received block from the jitter buffer (or a fill-in for a
  lost one). Ticks late because the loop was busy are caught up, up to half a second.
- T.38: each tick advances the engine's clock; IFP packets go out in UDPTL with
  redundancy as the engine makes them (repeated as it asks, same sequence number);
  received ones go in as they arrive, in order, gaps filled from redundancy.
- ``use_t38`` replaces the audio engine with a T.38 one (T.30 starts over, as
  gateways do on a T.38 switch).
- Watchdogs, because T.30 alone may wait forever under loss: nothing received for
  ``NO_MEDIA`` seconds (``NO_MEDIA_T38`` on T.38, which is silent one way while a
  page goes), no T.30 progress (phase B or a page) for ``STALL`` seconds, or the
  call's deadline passed: the engine is terminated, which ends it at phase E.

``GATEWAYD_TEST_MEDIA_DROP`` (a fraction, with ``GATEWAYD_TEST_MEDIA_SEED``) drops
that share of received media packets: a test-only switch for the loss tests, never
set in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatewayd.fax.sip import engine, rtp, udptl
from gatewayd.fax.sip.sdp import Chosen, T38Params
from gatewayd.logging import get_logger

log = get_logger("gatewayd.sip")

TICK = 0.02
MAX_CATCH_UP = 25  # ticks (0.5 s)
NO_MEDIA = 30.0  # audio: the far end sends RTP all the time, silence included
NO_MEDIA_T38 = 150.0  # T.38 is quiet while the other side sends a page
STALL = 600.0
AFTER_PHASE_E = 0.5  # keep sending this long after phase E (the last frames go out)
REDUNDANCY = 4


class MediaError(OSError):
    """No media port could be opened."""


class PortPool:
    """UDP ports for media from the configured range; a port in use is skipped."""

    def __init__(self, host: str, low: int, high: int) -> None:
        self.host, self.low, self.high = host, low, high
        self._used: set[int] = set()

    async def open(
        self, factory: Callable[[], asyncio.DatagramProtocol]
    ) -> tuple[asyncio.DatagramTransport, int]:
        loop = asyncio.get_running_loop()
        candidates = [p for p in range(self.low, self.high + 1) if p not in self._used]
        random.shuffle(candidates)
        for port in candidates:
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    factory, local_addr=(self.host, port)
                )
            except OSError:
                continue
            self._used.add(port)
            return transport, port
        raise MediaError(f"no free UDP port in media_ports {self.low}-{self.high}")

    def release(self, port: int) -> None:
        self._used.discard(port)


def _test_drop() -> tuple[float, random.Random]:
    share = float(os.environ.get("GATEWAYD_TEST_MEDIA_DROP", "0") or 0)
    seed = int(os.environ.get("GATEWAYD_TEST_MEDIA_SEED", "0") or 0)
    return share, random.Random(seed or None)


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, media: Media, kind: str) -> None:
        self.media, self.kind = media, kind

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.media.received(self.kind, data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("sip.media_error", error=str(exc))


@dataclass(frozen=True, slots=True)
class Role:
    calling: bool
    tiff: Path  # the pages to send (calling) or the file to receive into
    ident: str  # our station id
    ecm: bool


@dataclass(slots=True)
class MediaStats:
    sent: int = 0
    received: int = 0
    dropped_for_test: int = 0


class Media:
    def __init__(self, pool: PortPool, role: Role) -> None:
        self.pool = pool
        self.role = role
        self.mode = ""  # "", "audio", "t38"
        self.fax: engine.AudioFax | engine.T38Fax | None = None
        self.stats = MediaStats()
        self.ended_by = ""
        self._sockets: dict[str, tuple[asyncio.DatagramTransport, int]] = {}
        self._remote: dict[str, tuple[str, int]] = {}
        self._latched: set[str] = set()
        self._codec: engine.G711 | None = None
        self._rtp: rtp.Sender | None = None
        self._payload_type = -1
        self.jitter = rtp.JitterBuffer()
        self.udptl_out = udptl.Sender()
        self.udptl_in = udptl.Receiver()
        self._last_heard = 0.0
        self._progress = (0, 0)
        self._progress_at = 0.0
        self._drop, self._rng = _test_drop()
        self._wake = asyncio.Event()

    # -- ports -----------------------------------------------------------------------

    async def port(self, kind: str) -> int:
        """Our port for ``kind`` ("audio" or "image"), opened on first use."""
        if kind not in self._sockets:
            self._sockets[kind] = await self.pool.open(lambda: _Socket(self, kind))
        return self._sockets[kind][1]

    def close(self) -> None:
        for transport, port in self._sockets.values():
            transport.close()
            self.pool.release(port)
        self._sockets.clear()
        if self.fax is not None:
            self.fax.close()
        if self._codec is not None:
            self._codec.close()

    # -- streams ---------------------------------------------------------------------

    def use(self, chosen: Chosen) -> None:
        if chosen.kind == "image":
            assert chosen.t38 is not None
            self.use_t38(chosen.address, chosen.port, chosen.t38)
        else:
            self.use_audio(chosen.address, chosen.port, chosen.codec, chosen.payload_type)

    def use_audio(self, address: str, port: int, codec: str, payload_type: int) -> None:
        self._remote["audio"] = (address, port)
        if self.mode == "audio":
            return
        self.mode = "audio"
        self._payload_type = payload_type
        self._codec = engine.G711(engine.G711_ALAW if codec == "PCMA" else engine.G711_ULAW)
        self._rtp = rtp.Sender(payload_type)
        role = self.role
        self.fax = engine.AudioFax(
            calling=role.calling, tiff=role.tiff, ident=role.ident, ecm=role.ecm
        )
        self._heard_now()

    def use_t38(self, address: str, port: int, theirs: T38Params) -> None:
        self._remote["image"] = (address, port)
        if self.mode == "t38":
            return
        old = self.fax
        self.mode = "t38"
        depth = 0 if theirs.udp_ec == "t38UDPNoEC" else REDUNDANCY
        self.udptl_out = udptl.Sender(depth=depth, max_datagram=theirs.max_datagram)
        role = self.role
        self.fax = engine.T38Fax(
            calling=role.calling,
            tiff=role.tiff,
            ident=role.ident,
            ecm=role.ecm,
            send=self._send_ifp,
            version=theirs.version,
        )
        if old is not None:
            old.close()
        if "audio" in self._sockets:
            transport, audio_port = self._sockets.pop("audio")
            transport.close()
            self.pool.release(audio_port)
        self._heard_now()

    def _heard_now(self) -> None:
        self._last_heard = asyncio.get_running_loop().time()
        self._progress_at = self._last_heard

    # -- in and out ------------------------------------------------------------------

    def received(self, kind: str, data: bytes, source: tuple[str, int]) -> None:
        if self._drop and self._rng.random() < self._drop:
            self.stats.dropped_for_test += 1
            return
        if kind not in self._latched and source != self._remote.get(kind):
            self._remote[kind] = source  # symmetric RTP: answer where it comes from
        self._latched.add(kind)
        self.stats.received += 1
        self._last_heard = asyncio.get_running_loop().time()
        if kind == "audio" and self.mode == "audio":
            packet = rtp.parse(data)
            if packet is not None and packet.payload_type == self._payload_type:
                self.jitter.push(packet)
        elif kind == "image" and self.mode == "t38" and isinstance(self.fax, engine.T38Fax):
            for seq, ifp in self.udptl_in.receive(data):
                self.fax.receive(ifp, seq)

    def _sendto(self, kind: str, data: bytes) -> None:
        socket, remote = self._sockets.get(kind), self._remote.get(kind)
        if socket is not None and remote is not None:
            socket[0].sendto(data, remote)
            self.stats.sent += 1

    def _send_ifp(self, ifp: bytes, count: int) -> None:
        data = self.udptl_out.packet(ifp)
        for _ in range(min(count, 4)):
            self._sendto("image", data)

    def _tick(self) -> None:
        fax = self.fax
        if isinstance(fax, engine.AudioFax):
            assert self._codec is not None
            assert self._rtp is not None
            self._sendto("audio", self._rtp.packet(self._codec.encode(fax.tx())))
            block = self.jitter.pop()
            if block is None:
                fax.fillin()
            else:
                fax.rx(self._codec.decode(block))
        elif isinstance(fax, engine.T38Fax):
            fax.tick()

    # -- the clock -------------------------------------------------------------------

    async def run(self, deadline: float, stop: asyncio.Event) -> engine.Outcome | None:
        """Tick until phase E (then a little longer), ``stop`` or a watchdog; returns
        the engine's outcome (None if no stream was ever set up)."""
        loop = asyncio.get_running_loop()
        start, ticks = loop.time(), 0
        done_at: float | None = None
        while True:
            now = loop.time()
            fax = self.fax
            if fax is None:
                if stop.is_set() or now > deadline:
                    return None
            else:
                if fax.done and done_at is None:
                    done_at = now
                if done_at is not None and (now - done_at >= AFTER_PHASE_E or stop.is_set()):
                    return fax.outcome
                if done_at is None:
                    self._watch(fax, now, deadline, stop)
                due = int((now - start) / TICK)
                if due - ticks > MAX_CATCH_UP:
                    ticks = due - MAX_CATCH_UP
                while ticks < due:
                    ticks += 1
                    self._tick()
                    if self.fax is not fax:
                        break
            next_at = start + (ticks + 1) * TICK
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(next_at - loop.time(), 0.001))

    def _watch(
        self, fax: engine.AudioFax | engine.T38Fax, now: float, deadline: float, stop: asyncio.Event
    ) -> None:
        progress = (fax.phase_b_count, fax.pages_done)
        if progress != self._progress:
            self._progress, self._progress_at = progress, now
        reason = ""
        if stop.is_set():
            reason = self.ended_by or "the call ended"
        elif now - self._last_heard > (quiet := NO_MEDIA_T38 if self.mode == "t38" else NO_MEDIA):
            reason = f"no media from the far end for {quiet:g} s"
        elif now - self._progress_at > STALL:
            reason = f"no fax progress for {STALL:g} s"
        elif now > deadline:
            reason = "the call ran past its time limit"
        if reason:
            self.ended_by = self.ended_by or reason
            log.warning("sip.fax_terminated", reason=reason, mode=self.mode)
            fax.terminate()

    def log_tail(self, lines: int = 20) -> list[str]:
        return list(self.fax.log_lines)[-lines:] if self.fax is not None else []
