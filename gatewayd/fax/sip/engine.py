"""The fax engine: libspandsp 0.0.6 (Debian ``libspandsp2``) through ctypes.

spandsp is the T.30 / T.38 / fax-modem engine inside Asterisk and FreeSWITCH. Only the
runtime library is needed: every state is allocated by the library itself
(``fax_init(NULL, ...)``), so no struct layout is assumed except ``t30_stats_t``, a
public struct of 15 ints in 0.0.6.

- ``load()`` finds ``libspandsp.so.2`` and checks it is the 0.0.6 ABI (the "3.x" fork
  renamed parts of the T.30/T.4 API and changed ``t30_stats_t``); a missing or foreign
  library is ``EngineUnavailable`` with what to install.
- ``AudioFax``: T.30 over the fax modems (V.17, V.29, V.27ter) on 8 kHz linear audio;
  one 20 ms block (160 samples) out and one in per tick, ``fillin`` for a lost block.
- ``T38Fax``: T.30 over T.38 IFP packets; ``tick`` every 20 ms, received IFP packets
  with their sequence numbers in, outgoing ones out through ``send`` (with spandsp's
  repeat count).
- ``G711``: A-law or µ-law to and from linear, by spandsp's own coder.
- Both fax kinds report phase E (``done``), the completion code, pages, bit rate, ECM,
  bad rows and the far end's station id; ``terminate`` ends a stalled exchange (T.30
  alone may never reach phase E under heavy T.38 loss: the caller keeps a watchdog).

The library calls back (phase E, outgoing T.38 packets, log lines) only from inside our
own calls into it, on the event loop's thread; a callback never raises into C.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gatewayd.errors import StartupError

LIBRARY = "libspandsp.so.2"
SAMPLES_PER_TICK = 160  # 20 ms at 8 kHz

# T.30 options (spandsp/t30.h)
SUPPORT_V27TER, SUPPORT_V29, SUPPORT_V17 = 0x01, 0x02, 0x04
SUPPORT_T4_1D, SUPPORT_T4_2D, SUPPORT_T6 = 0x02, 0x04, 0x08
G711_ALAW, G711_ULAW = 0, 1
# Logging (spandsp/logging.h)
LOG_WARNING, LOG_PROTOCOL_WARNING, LOG_FLOW = 2, 4, 5
LOG_SHOW_PROTOCOL, LOG_SHOW_TAG = 0x0800, 0x2000
LOG_LINES_KEPT = 300

# Symbols that tell 0.0.6 from the later fork (which dropped the first two and added
# the third, along with a longer t30_stats_t).
ABI_PRESENT = ("t30_set_rx_encoding", "t4_rx_set_rx_encoding", "t38_terminal_init")
ABI_ABSENT = ("t30_set_supported_output_compressions",)


class EngineUnavailable(StartupError):
    """libspandsp is missing or is not the 0.0.6 ABI."""


STATS_FIELDS = (
    "bit_rate",
    "error_correcting_mode",
    "pages_tx",
    "pages_rx",
    "pages_in_file",
    "x_resolution",
    "y_resolution",
    "width",
    "length",
    "image_size",
    "encoding",
    "bad_rows",
    "longest_bad_row_run",
    "error_correcting_mode_retries",
    "current_status",
)


class T30Stats(ctypes.Structure):
    _fields_: ClassVar[list[tuple[str, Any]]] = [(name, ctypes.c_int) for name in STATS_FIELDS]


PHASE_E = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
PHASE_BD = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
T38_TX = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint8),
    ctypes.c_int,
    ctypes.c_int,
)
LOG_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p)


class _Running:
    """The fax whose call into the library is running: its log lines go to it."""

    fax: Any = None


RUNNING = _Running()


def _declare(lib: ctypes.CDLL) -> None:
    p, i, c = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "fax_init": (p, [p, i]),
        "fax_free": (i, [p]),
        "fax_get_t30_state": (p, [p]),
        "fax_get_logging_state": (p, [p]),
        "fax_set_transmit_on_idle": (None, [p, i]),
        "fax_set_tep_mode": (None, [p, i]),
        "fax_tx": (i, [p, p, i]),
        "fax_rx": (i, [p, p, i]),
        "fax_rx_fillin": (i, [p, i]),
        "t38_terminal_init": (p, [p, i, T38_TX, p]),
        "t38_terminal_free": (i, [p]),
        "t38_terminal_get_t30_state": (p, [p]),
        "t38_terminal_get_t38_core_state": (p, [p]),
        "t38_terminal_get_logging_state": (p, [p]),
        "t38_terminal_send_timeout": (i, [p, i]),
        "t38_terminal_set_config": (None, [p, i]),
        "t38_terminal_set_tep_mode": (None, [p, i]),
        "t38_terminal_set_fill_bit_removal": (None, [p, i]),
        "t38_core_rx_ifp_packet": (i, [p, p, i, ctypes.c_uint16]),
        "t38_core_get_logging_state": (p, [p]),
        "t38_set_t38_version": (None, [p, i]),
        "t38_set_max_datagram_size": (None, [p, i]),
        "t30_get_logging_state": (p, [p]),
        "t30_set_tx_ident": (i, [p, c]),
        "t30_get_rx_ident": (c, [p]),
        "t30_set_tx_file": (None, [p, c, i, i]),
        "t30_set_rx_file": (None, [p, c, i]),
        "t30_set_ecm_capability": (i, [p, i]),
        "t30_set_supported_modems": (i, [p, i]),
        "t30_set_supported_compressions": (i, [p, i]),
        "t30_set_phase_b_handler": (None, [p, PHASE_BD, p]),
        "t30_set_phase_d_handler": (None, [p, PHASE_BD, p]),
        "t30_set_phase_e_handler": (None, [p, PHASE_E, p]),
        "t30_get_transfer_statistics": (None, [p, ctypes.POINTER(T30Stats)]),
        "t30_completion_code_to_str": (c, [i]),
        "t30_terminate": (None, [p]),
        "span_log_set_level": (i, [p, i]),
        "span_log_set_message_handler": (None, [p, LOG_HANDLER]),
        "g711_init": (p, [p, i]),
        "g711_free": (i, [p]),
        "g711_encode": (i, [p, p, p, i]),
        "g711_decode": (i, [p, p, p, i]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes


@functools.cache
def load() -> ctypes.CDLL:
    """The library, loaded and checked once; EngineUnavailable says what is wrong."""
    try:
        lib = ctypes.CDLL(LIBRARY)
    except OSError as exc:
        found = ctypes.util.find_library("spandsp")
        other = f" (found {found}, which is not the 0.0.6 ABI)" if found else ""
        raise EngineUnavailable(
            f"the fax engine libspandsp 0.0.6 ({LIBRARY}) cannot be loaded{other}: {exc}; "
            "install the Debian package libspandsp2"
        ) from exc
    missing = [name for name in ABI_PRESENT if not hasattr(lib, name)]
    foreign = [name for name in ABI_ABSENT if hasattr(lib, name)]
    if missing or foreign:
        raise EngineUnavailable(
            f"{LIBRARY} is not libspandsp 0.0.6 (missing {missing or 'nothing'}, "
            f"unexpected {foreign or 'nothing'}); install Debian's libspandsp2 0.0.6"
        )
    _declare(lib)
    return lib


def describe() -> str:
    """One line for ``gatewayd check-config``; raises EngineUnavailable."""
    load()
    path = ctypes.util.find_library("spandsp") or LIBRARY
    return f"libspandsp 0.0.6 ({path})"


@dataclass(frozen=True, slots=True)
class Outcome:
    """Phase E: what the T.30 exchange achieved."""

    code: int  # T.30 completion code, 0 = OK
    text: str  # spandsp's words for it
    pages_tx: int
    pages_rx: int
    pages_in_file: int
    bit_rate: int
    ecm: bool
    bad_rows: int
    ecm_retries: int
    remote_ident: str
    terminated: bool  # ended by ``terminate`` (the watchdog), not by the protocol


def _on_log(level: int, text: bytes | None) -> None:
    fax = RUNNING.fax
    if fax is not None and text:
        fax.log_lines.append(text.decode("latin-1", "replace").rstrip())


_LOG_CALLBACK = LOG_HANDLER(_on_log)


class _Fax:
    """What audio and T.38 faxes share: the T.30 side."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.t30: int | None = None
        self.outcome: Outcome | None = None
        self.log_lines: deque[str] = deque(maxlen=LOG_LINES_KEPT)
        self.phase_b_count = 0
        self.pages_done = 0
        self._terminated = False
        self._callbacks: list[Any] = []  # keeps the CFUNCTYPE objects alive

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def _setup_t30(
        self, *, calling: bool, tiff: Path, ident: str, ecm: bool, logging: list[int]
    ) -> None:
        lib, t30 = self.lib, self.t30
        for state in logging:
            lib.span_log_set_message_handler(state, _LOG_CALLBACK)
        lib.span_log_set_level(lib.t30_get_logging_state(t30), LOG_FLOW | LOG_SHOW_TAG)
        lib.t30_set_tx_ident(t30, ident.encode("ascii", "replace")[:20])
        if calling:
            lib.t30_set_tx_file(t30, str(tiff).encode(), -1, -1)
        else:
            lib.t30_set_rx_file(t30, str(tiff).encode(), -1)
        lib.t30_set_ecm_capability(t30, int(ecm))
        lib.t30_set_supported_modems(t30, SUPPORT_V27TER | SUPPORT_V29 | SUPPORT_V17)
        lib.t30_set_supported_compressions(
            t30, SUPPORT_T4_1D | SUPPORT_T4_2D | (SUPPORT_T6 if ecm else 0)
        )
        phase_b = PHASE_BD(self._phase_b)
        phase_d = PHASE_BD(self._phase_d)
        phase_e = PHASE_E(self._phase_e)
        self._callbacks += [phase_b, phase_d, phase_e]
        lib.t30_set_phase_b_handler(t30, phase_b, None)
        lib.t30_set_phase_d_handler(t30, phase_d, None)
        lib.t30_set_phase_e_handler(t30, phase_e, None)

    def _phase_b(self, _t30: int, _user: int, _result: int) -> int:
        self.phase_b_count += 1
        return 0

    def _phase_d(self, _t30: int, _user: int, _result: int) -> int:
        self.pages_done += 1
        return 0

    def _phase_e(self, t30: int, _user: int, code: int) -> None:
        try:
            stats = T30Stats()
            self.lib.t30_get_transfer_statistics(t30, ctypes.byref(stats))
            text = self.lib.t30_completion_code_to_str(code) or b""
            ident = self.lib.t30_get_rx_ident(t30) or b""
            self.outcome = Outcome(
                code=code,
                text=text.decode("latin-1"),
                pages_tx=stats.pages_tx,
                pages_rx=stats.pages_rx,
                pages_in_file=stats.pages_in_file,
                bit_rate=stats.bit_rate,
                ecm=bool(stats.error_correcting_mode),
                bad_rows=stats.bad_rows,
                ecm_retries=stats.error_correcting_mode_retries,
                remote_ident=ident.decode("latin-1").strip(),
                terminated=self._terminated,
            )
        except Exception as exc:  # never raise into C: record instead
            self.outcome = Outcome(
                code, f"phase E unreadable: {exc!r}", 0, 0, 0, 0, False, 0, 0, "", self._terminated
            )

    def terminate(self) -> None:
        """End the exchange now (the watchdog, a hang-up): phase E follows at once."""
        if self.t30 is None or self.done:
            return
        self._terminated = True
        RUNNING.fax = self
        try:
            self.lib.t30_terminate(self.t30)
        finally:
            RUNNING.fax = None

    def close(self) -> None:
        raise NotImplementedError


class AudioFax(_Fax):
    """T.30 over fax modems on linear audio."""

    def __init__(self, *, calling: bool, tiff: Path, ident: str, ecm: bool) -> None:
        lib = load()
        super().__init__(lib)
        self.state: int | None = lib.fax_init(None, int(calling))
        if not self.state:
            raise EngineUnavailable("libspandsp could not create a fax state (fax_init)")
        self.t30 = lib.fax_get_t30_state(self.state)
        lib.fax_set_transmit_on_idle(self.state, 1)
        lib.fax_set_tep_mode(self.state, 0)
        logging = [lib.fax_get_logging_state(self.state), lib.t30_get_logging_state(self.t30)]
        lib.span_log_set_level(logging[0], LOG_WARNING | LOG_SHOW_TAG)
        self._setup_t30(calling=calling, tiff=tiff, ident=ident, ecm=ecm, logging=logging)
        self._out = (ctypes.c_int16 * SAMPLES_PER_TICK)()
        self._in = (ctypes.c_int16 * SAMPLES_PER_TICK)()

    def tx(self) -> ctypes.Array[ctypes.c_int16]:
        """The next 20 ms to send (always a whole block: idle is silence)."""
        RUNNING.fax = self
        try:
            made = self.lib.fax_tx(self.state, self._out, SAMPLES_PER_TICK)
        finally:
            RUNNING.fax = None
        for index in range(made, SAMPLES_PER_TICK):
            self._out[index] = 0
        return self._out

    def rx(self, samples: ctypes.Array[ctypes.c_int16], count: int = SAMPLES_PER_TICK) -> None:
        RUNNING.fax = self
        try:
            self.lib.fax_rx(self.state, samples, count)
        finally:
            RUNNING.fax = None

    def fillin(self, count: int = SAMPLES_PER_TICK) -> None:
        """A block that never came: the modems bridge it, T.30's timers run on."""
        RUNNING.fax = self
        try:
            self.lib.fax_rx_fillin(self.state, count)
        finally:
            RUNNING.fax = None

    def close(self) -> None:
        if self.state:
            self.lib.fax_free(self.state)
            self.state = None
            self.t30 = None


class T38Fax(_Fax):
    """T.30 over T.38 IFP packets (UDPTL framing is the caller's: udptl.py)."""

    def __init__(
        self,
        *,
        calling: bool,
        tiff: Path,
        ident: str,
        ecm: bool,
        send: Callable[[bytes, int], None],
        version: int = 0,
        fill_bit_removal: bool = False,
    ) -> None:
        lib = load()
        super().__init__(lib)
        self._send = send
        self.send_error: BaseException | None = None
        handler = T38_TX(self._tx_packet)
        self._callbacks.append(handler)
        self.state: int | None = lib.t38_terminal_init(None, int(calling), handler, None)
        if not self.state:
            raise EngineUnavailable("libspandsp could not create a T.38 state")
        self.core = lib.t38_terminal_get_t38_core_state(self.state)
        self.t30 = lib.t38_terminal_get_t30_state(self.state)
        lib.t38_set_t38_version(self.core, version)
        lib.t38_terminal_set_config(self.state, 0)
        lib.t38_terminal_set_tep_mode(self.state, 0)
        lib.t38_terminal_set_fill_bit_removal(self.state, int(fill_bit_removal))
        logging = [
            lib.t38_terminal_get_logging_state(self.state),
            lib.t38_core_get_logging_state(self.core),
            lib.t30_get_logging_state(self.t30),
        ]
        for state in logging[:2]:
            lib.span_log_set_level(state, LOG_PROTOCOL_WARNING | LOG_SHOW_TAG)
        self._setup_t30(calling=calling, tiff=tiff, ident=ident, ecm=ecm, logging=logging)

    def _tx_packet(self, _core: int, _user: int, buf: Any, length: int, count: int) -> int:
        try:
            self._send(ctypes.string_at(buf, length), max(1, count))
        except Exception as exc:  # never raise into C: the call ends
            self.send_error = exc
        return 0

    def tick(self, samples: int = SAMPLES_PER_TICK) -> None:
        RUNNING.fax = self
        try:
            self.lib.t38_terminal_send_timeout(self.state, samples)
        finally:
            RUNNING.fax = None

    def receive(self, ifp: bytes, seq: int) -> None:
        RUNNING.fax = self
        try:
            self.lib.t38_core_rx_ifp_packet(self.core, ifp, len(ifp), seq & 0xFFFF)
        finally:
            RUNNING.fax = None

    def close(self) -> None:
        if self.state:
            self.lib.t38_terminal_free(self.state)
            self.state = None
            self.t30 = None


class G711:
    """A-law (PCMA) or µ-law (PCMU) to and from 160-sample linear blocks."""

    def __init__(self, law: int) -> None:
        self.lib = load()
        self.state: int | None = self.lib.g711_init(None, law)
        self._linear = (ctypes.c_int16 * SAMPLES_PER_TICK)()
        self._coded = (ctypes.c_uint8 * SAMPLES_PER_TICK)()

    def encode(self, samples: ctypes.Array[ctypes.c_int16]) -> bytes:
        made = self.lib.g711_encode(self.state, self._coded, samples, SAMPLES_PER_TICK)
        return bytes(self._coded)[:made]

    def decode(self, payload: bytes) -> ctypes.Array[ctypes.c_int16]:
        """Up to 160 samples (the rest of the block is silence)."""
        count = min(len(payload), SAMPLES_PER_TICK)
        made = self.lib.g711_decode(self.state, self._linear, payload, count)
        for index in range(made, SAMPLES_PER_TICK):
            self._linear[index] = 0
        return self._linear

    def close(self) -> None:
        if self.state:
            self.lib.g711_free(self.state)
            self.state = None
