"""An SMSC that misbehaves, against a real ``gatewayd run`` bound to an SMSC in the
test's event loop (gatewayd's simulator, sending the PDUs a broken SMSC sends):
malformed concatenation headers, and floods of deliver_sm with the daemon's memory
sampled after each."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Callable

import pytest

from gatewayd.config.settings import HostPort, SmppLinkSettings
from gatewayd.sms import pdu
from gatewayd.sms.link import SmppLink
from gatewayd.sms.pdu import ESM_UDHI, Command, Status
from gatewayd.sms.simulator import Smsc
from tests.conftest import gatewayd
from tests.hostile.conftest import Daemon

StartDaemon = Callable[..., Daemon]
OURS = "4930123456"  # the shipped config's user's SMS number


async def _bound(start_daemon: StartDaemon) -> tuple[Smsc, Daemon]:
    smsc = Smsc()
    port = await smsc.start("127.0.0.1", 0)
    daemon = await asyncio.to_thread(start_daemon, sim_port=port)
    for _ in range(300):
        if any(c.receives for c in smsc.connections):
            return smsc, daemon
        await asyncio.sleep(0.1)
    raise AssertionError("gatewayd did not bind to the SMSC")


async def _deliver(smsc: Smsc, short_message: bytes, *, udhi: bool, serial: int = 0) -> int:
    target = next(c for c in smsc.connections if c.receives)
    fields = {
        "source_addr": f"4915112{serial % 1000:06d}",
        "source_addr_ton": 1,
        "source_addr_npi": 1,
        "destination_addr": OURS,
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "esm_class": ESM_UDHI if udhi else 0,
        "data_coding": 0,
        "short_message": short_message,
    }
    answer = await target.request(
        lambda sequence: pdu.encode(Command.DELIVER_SM, sequence, fields), within=60
    )
    return answer.status


def _received(daemon: Daemon) -> list[dict[str, object]]:
    shown = gatewayd("messages", "list", "--json", "--type", "SMS", "--config", str(daemon.config))
    assert shown.returncode == 0, shown.stderr
    listed: list[dict[str, object]] = json.loads(shown.stdout)
    return listed


@pytest.mark.parametrize(
    "header",
    [bytes.fromhex("03000304"), bytes.fromhex("0408040007"), bytes.fromhex("050003070300")],
    ids=["8-bit cut short", "16-bit cut short", "part 0 of 3"],
)
async def test_a_broken_concatenation_header_is_a_single_part_sms(
    start_daemon: StartDaemon, header: bytes
) -> None:
    smsc, daemon = await _bound(start_daemon)
    try:
        status = await _deliver(smsc, header + b"Hello", udhi=True)
        assert status == Status.ROK  # not ESME_RX_T_APPN, which the SMSC retries forever
        received = await asyncio.to_thread(_received, daemon)
    finally:
        await smsc.close()
    assert len(received) == 1
    assert received[0]["direction"] == "Inbound"
    assert not daemon.events("sms.deliver_failed")


@pytest.mark.slow
async def test_floods_of_deliver_sm_do_not_grow_memory_without_bound(
    start_daemon: StartDaemon,
) -> None:
    """Three floods of 20,000 inbound SMS. What memory grows is SQLite's page cache
    (32 MiB a connection, docs/sms.md), not a leak: it settles, the third flood adds
    little."""
    smsc, daemon = await _bound(start_daemon)
    window = asyncio.Semaphore(50)
    statuses: Counter[int] = Counter()

    async def one(serial: int) -> None:
        async with window:
            statuses[await _deliver(smsc, b"flood %d" % serial, udhi=False, serial=serial)] += 1

    rss = [daemon.rss_mb()]
    try:
        for flood in range(3):
            await asyncio.gather(*(one(flood * 20_000 + n) for n in range(20_000)))
            await asyncio.sleep(2)
            rss.append(daemon.rss_mb())
    finally:
        await smsc.close()
    assert statuses == Counter({Status.ROK: 60_000})
    growth = [after - before for before, after in itertools.pairwise(rss)]
    assert rss[-1] - rss[0] < 150, rss
    assert growth[2] < max(growth[0], 10), rss  # settling, not growing by a flood's worth


async def test_a_bug_in_handling_a_deliver_sm_is_logged_with_its_traceback(
    json_log: Callable[[], list[dict[str, object]]],
) -> None:
    smsc = Smsc()
    port = await smsc.start("127.0.0.1", 0)

    class ABug:
        """A handler (sms/link.py's Handler) with a bug where it handles an SMS."""

        async def __call__(self, link: SmppLink, request: pdu.Pdu) -> int:
            raise RuntimeError("a bug in the handler")

        def soon(self, link: SmppLink, request: pdu.Pdu) -> None:
            return None  # not a receipt: to __call__

    # The handler stands in for a bug (nothing real fails on demand); the link, the
    # SMSC and the PDUs are real.
    link = SmppLink(SmppLinkSettings(address=HostPort("127.0.0.1", port)), ABug())
    link.start()
    try:
        assert await link.wait_bound(10)
        for _ in range(100):
            if any(c.receives for c in smsc.connections):
                break
            await asyncio.sleep(0.05)
        assert await _deliver(smsc, b"hello", udhi=False) == Status.RX_T_APPN
    finally:
        await link.close()
        await smsc.close()
    [line] = [x for x in json_log() if x["event"] == "sms.deliver_failed"]
    assert "Traceback" in str(line["exception"])
    assert "RuntimeError: a bug in the handler" in str(line["exception"])
