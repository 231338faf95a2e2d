"""A T.30 fax call between two libspandsp fax terminals, in memory: the test-only
binding the legibility tests use to send our TIFFs the way Asterisk and FreeSWITCH do
(Debian libspandsp2, 0.0.6's ABI, by ctypes; nothing is compiled).

The caller sends a TIFF, the answerer receives it; their audio (16-bit linear, 8 kHz)
is passed between them 20 ms at a time until both reach phase E, much faster than
real time. The production binding (the SIP carrier's) is a separate piece of work;
this one does only what the tests need.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from pathlib import Path

SAMPLES = 160  # 20 ms at 8 kHz
T30_ERR_OK = 0
_PhaseE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)


class _Stats(ctypes.Structure):
    """t30_stats_t of spandsp 0.0.6 (room left at the end for later fields)."""

    _fields_ = [
        ("bit_rate", ctypes.c_int),
        ("error_correcting_mode", ctypes.c_int),
        ("pages_tx", ctypes.c_int),
        ("pages_rx", ctypes.c_int),
        ("pages_in_file", ctypes.c_int),
        ("x_resolution", ctypes.c_int),
        ("y_resolution", ctypes.c_int),
        ("width", ctypes.c_int),
        ("length", ctypes.c_int),
        ("image_size", ctypes.c_int),
        ("encoding", ctypes.c_int),
        ("bad_rows", ctypes.c_int),
        ("longest_bad_row_run", ctypes.c_int),
        ("error_correcting_mode_retries", ctypes.c_int),
        ("current_status", ctypes.c_int),
        ("spare", ctypes.c_int * 16),
    ]


def load() -> ctypes.CDLL | None:
    """libspandsp.so.2, or None when it is not installed."""
    name = ctypes.util.find_library("spandsp") or "libspandsp.so.2"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.fax_init.restype = ctypes.c_void_p
    lib.fax_init.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.fax_get_t30_state.restype = ctypes.c_void_p
    lib.fax_get_t30_state.argtypes = [ctypes.c_void_p]
    for name in ("fax_tx", "fax_rx"):
        getattr(lib, name).restype = ctypes.c_int
        getattr(lib, name).argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_int16),
            ctypes.c_int,
        ]
    for name in ("fax_set_transmit_on_idle", "fax_set_tep_mode"):
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.t30_set_tx_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    lib.t30_set_rx_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.t30_set_tx_ident.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.t30_set_ecm_capability.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.t30_set_phase_e_handler.argtypes = [ctypes.c_void_p, _PhaseE, ctypes.c_void_p]
    lib.t30_get_transfer_statistics.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Stats)]
    lib.t30_completion_code_to_str.restype = ctypes.c_char_p
    lib.t30_completion_code_to_str.argtypes = [ctypes.c_int]
    lib.fax_free.argtypes = [ctypes.c_void_p]
    return lib


@dataclass(frozen=True, slots=True)
class Call:
    """How a call ended, for each side."""

    caller: str  # phase E completion, as spandsp words it ("OK")
    answerer: str
    pages_sent: int
    pages_received: int
    seconds: float  # line time simulated
    bit_rate: int


def send(
    lib: ctypes.CDLL, tiff: Path, received: Path, *, ecm: bool = False, limit_seconds: float = 900
) -> Call:
    """Send ``tiff`` from a calling terminal to an answering one, which writes what it
    receives to ``received``; both ended in phase E, or the limit of line time hit."""
    codes: dict[str, int] = {}

    def ended(side: str) -> _PhaseE:  # type: ignore[valid-type]
        return _PhaseE(lambda _state, _user, code: codes.__setitem__(side, code))

    handlers = {side: ended(side) for side in ("caller", "answerer")}  # kept for the call
    caller, answerer = lib.fax_init(None, 1), lib.fax_init(None, 0)
    try:
        for side, fax in (("caller", caller), ("answerer", answerer)):
            t30 = lib.fax_get_t30_state(fax)
            lib.fax_set_transmit_on_idle(fax, 1)
            lib.fax_set_tep_mode(fax, 0)
            lib.t30_set_tx_ident(t30, side.encode())
            lib.t30_set_ecm_capability(t30, 1 if ecm else 0)
            lib.t30_set_phase_e_handler(t30, handlers[side], None)
        lib.t30_set_tx_file(lib.fax_get_t30_state(caller), str(tiff).encode(), -1, -1)
        lib.t30_set_rx_file(lib.fax_get_t30_state(answerer), str(received).encode(), -1)
        one, two = (ctypes.c_int16 * SAMPLES)(), (ctypes.c_int16 * SAMPLES)()
        blocks = 0
        while len(codes) < 2 and blocks * SAMPLES / 8000 < limit_seconds:
            n = lib.fax_tx(caller, one, SAMPLES)
            for i in range(n, SAMPLES):
                one[i] = 0
            lib.fax_rx(answerer, one, SAMPLES)
            n = lib.fax_tx(answerer, two, SAMPLES)
            for i in range(n, SAMPLES):
                two[i] = 0
            lib.fax_rx(caller, two, SAMPLES)
            blocks += 1
        sent, got = _Stats(), _Stats()
        lib.t30_get_transfer_statistics(lib.fax_get_t30_state(caller), ctypes.byref(sent))
        lib.t30_get_transfer_statistics(lib.fax_get_t30_state(answerer), ctypes.byref(got))
    finally:
        lib.fax_free(caller)
        lib.fax_free(answerer)

    def word(side: str) -> str:
        if side not in codes:
            return "no phase E"
        return (lib.t30_completion_code_to_str(codes[side]) or b"?").decode()

    return Call(
        word("caller"),
        word("answerer"),
        sent.pages_tx,
        got.pages_rx,
        blocks * SAMPLES / 8000,
        got.bit_rate,
    )
