"""libspandsp through ctypes, with no network and no clock: two fax engines joined
back to back (audio through the G.711 coder, or T.38 IFP packets through UDPTL), as
fast as the CPU goes. The pages must arrive pixel for pixel."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gatewayd.fax.sip import engine, udptl
from tests.documents import dense_text_pdf
from tests.faxcheck import pages

LINE_LIMIT = 50 * 400  # 400 s of line time in 20 ms ticks


@pytest.fixture(scope="module")
def tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("engine")
    (work / "doc.pdf").write_bytes(dense_text_pdf(2))
    out = work / "fax.tif"
    argv = [sys.executable, "-m", "gatewayd", "render", str(work / "doc.pdf"), "-o", str(out)]
    made = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert made.returncode == 0, made.stderr
    return out


def same_pages(sent: Path, got: Path) -> None:
    before, after = pages(sent), pages(got)
    assert len(before) == len(after) == 2
    for page, copy in zip(before, after, strict=True):
        assert page.shape == copy.shape
        assert int(np.count_nonzero(page != copy)) == 0


@pytest.mark.parametrize(("law", "ecm"), [(engine.G711_ALAW, False), (engine.G711_ULAW, True)])
def test_audio_fax_through_g711(tiff: Path, tmp_path: Path, law: int, ecm: bool) -> None:
    caller = engine.AudioFax(calling=True, tiff=tiff, ident="+49 30 111", ecm=ecm)
    answerer = engine.AudioFax(calling=False, tiff=tmp_path / "rx.tif", ident="+49 40 222", ecm=ecm)
    there, back = engine.G711(law), engine.G711(law)
    try:
        for _ in range(LINE_LIMIT):
            if caller.done and answerer.done:
                break
            forward = there.encode(caller.tx())
            backward = back.encode(answerer.tx())
            answerer.rx(there.decode(forward))
            caller.rx(back.decode(backward))
        assert caller.outcome is not None
        assert answerer.outcome is not None
        assert (caller.outcome.code, caller.outcome.pages_tx) == (0, 2)
        assert (answerer.outcome.code, answerer.outcome.pages_rx) == (0, 2)
        assert caller.outcome.remote_ident == "+49 40 222"
        assert answerer.outcome.remote_ident == "+49 30 111"
        assert caller.outcome.ecm is ecm
        assert caller.outcome.bit_rate == 14400
        assert any("Phase" in line or "phase" in line for line in caller.log_lines)
    finally:
        caller.close()
        answerer.close()
    same_pages(tiff, tmp_path / "rx.tif")


def test_t38_fax_through_udptl_with_loss_and_redundancy(tiff: Path, tmp_path: Path) -> None:
    rng = random.Random(38)
    wire: dict[str, list[bytes]] = {"a": [], "b": []}
    senders = {"a": udptl.Sender(depth=4), "b": udptl.Sender(depth=4)}

    def send(side: str) -> Callable[[bytes, int], None]:
        def out(ifp: bytes, count: int) -> None:
            packet = senders[side].packet(ifp)
            wire[side] += [packet] * count

        return out

    caller = engine.T38Fax(calling=True, tiff=tiff, ident="A", ecm=True, send=send("a"))
    answerer = engine.T38Fax(
        calling=False, tiff=tmp_path / "rx.tif", ident="B", ecm=True, send=send("b")
    )
    receivers = {"a": udptl.Receiver(), "b": udptl.Receiver()}
    try:
        for _ in range(LINE_LIMIT):
            if caller.done and answerer.done:
                break
            caller.tick()
            answerer.tick()
            for side, target in (("a", answerer), ("b", caller)):
                for packet in wire[side]:
                    if rng.random() < 0.02:  # lost on the way
                        continue
                    for seq, ifp in receivers["b" if side == "a" else "a"].receive(packet):
                        target.receive(ifp, seq)
                wire[side].clear()
        assert caller.outcome is not None
        assert answerer.outcome is not None
        assert (caller.outcome.code, answerer.outcome.pages_rx) == (0, 2)
        assert receivers["b"].stats.recovered > 0
        assert receivers["b"].stats.lost == 0
    finally:
        caller.close()
        answerer.close()
    same_pages(tiff, tmp_path / "rx.tif")


def test_terminate_ends_a_stalled_exchange_at_phase_e(tiff: Path) -> None:
    """Nobody answers: terminate (the watchdog) gives phase E at once."""
    caller = engine.AudioFax(calling=True, tiff=tiff, ident="A", ecm=True)
    try:
        for _ in range(50):
            caller.tx()
            caller.fillin()
        assert not caller.done
        caller.terminate()
        assert caller.outcome is not None
        assert caller.outcome.terminated
        assert caller.outcome.code != 0
        assert caller.outcome.pages_tx == 0
    finally:
        caller.close()


def test_a_missing_library_is_a_clear_startup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    engine.load.cache_clear()
    monkeypatch.setattr(engine, "LIBRARY", "libspandsp-not-here.so.2")
    try:
        with pytest.raises(
            engine.EngineUnavailable, match="install the Debian package libspandsp2"
        ):
            engine.load()
    finally:
        monkeypatch.undo()
        engine.load.cache_clear()
    assert engine.load() is not None


def test_the_received_file_is_g3_with_the_far_station_in_it(tiff: Path, tmp_path: Path) -> None:
    test_audio_fax_through_g711(tiff, tmp_path, engine.G711_ALAW, False)
    argv = ["tiffinfo", str(tmp_path / "rx.tif")]
    info = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert "CCITT Group 3" in info
    assert "+49 30 111" in info


def test_check_config_names_the_trunk_and_the_fax_engine(tmp_path: Path) -> None:
    config = tmp_path / "gatewayd.toml"
    config.write_text(
        '[fax]\ncarrier = "sip"\n[fax.sip]\nproxy = "sip.example.net:5060"\ntransport = "tcp"\n'
        'username = "4930123"\npassword = "x"\nmedia_ports = "20000-20099"\nmax_calls = 8\n'
    )
    argv = [sys.executable, "-m", "gatewayd", "check-config", "--config", str(config)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (
        "  sip        tcp via sip.example.net:5060, registers as 4930123, listens on "
        "0.0.0.0:5060; T.38 on, ECM on, 8 calls at once, media ports 20000-20099\n"
    ) in result.stdout
    assert "  fax engine libspandsp 0.0.6 (" in result.stdout
