"""The mailbox as several nodes share it: node names and heartbeats, adopting what a
gone node held, one node per role, rate limits counted together, receipts that come
before their part, attachment bytes every node reads. On SQLite and on a real
PostgreSQL (where the cluster runs); the roles and the blobs also with two mailbox
objects on one PostgreSQL database, as two nodes have."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from gatewayd.clock import ManualClock
from gatewayd.config import parse_config
from gatewayd.config.settings import MailboxSettings
from gatewayd.errors import ConfigError, NodeNameInUse
from gatewayd.mailbox import Mailbox, NewAttachment, PartAccepted, ReceiptIn
from gatewayd.model import AttachmentType, MessageStatus, MessageType, PartStatus
from tests.conftest import fax, gatewayd, sms

STALE = 30.0


async def join(mailbox: Mailbox, name: str, pid: int = 1) -> str:
    return await mailbox.join_cluster(
        name, stale_after=STALE, host="host-a", pid=pid, version="test"
    )


async def test_a_live_name_is_refused_a_gone_one_taken(
    mailbox: Mailbox, clock: ManualClock
) -> None:
    first = await join(mailbox, "alpha")
    with pytest.raises(NodeNameInUse, match="'alpha' is in use by a live node"):
        await join(mailbox, "alpha", pid=2)
    assert await mailbox.heartbeat("alpha", first, {"links": {"sim": "bound"}})
    clock.advance(STALE + 1)
    assert await mailbox.gone_nodes(stale_after=STALE) == ["alpha"]
    second = await join(mailbox, "alpha", pid=2)  # its heartbeat is stale: taken
    assert second != first
    # the first life wakes up: its heartbeat no longer counts, it must stop
    assert not await mailbox.heartbeat("alpha", first, {})
    assert await mailbox.heartbeat("alpha", second, {})
    [node] = await mailbox.nodes()
    assert (node.name, node.pid, node.instance) == ("alpha", 2, second)
    assert await mailbox.gone_nodes(stale_after=STALE) == []


async def test_a_node_that_stopped_may_be_joined_at_once(mailbox: Mailbox) -> None:
    first = await join(mailbox, "beta")
    await mailbox.leave_cluster("beta", first)
    assert await mailbox.gone_nodes(stale_after=STALE) == ["beta"]
    await join(mailbox, "beta")


async def test_what_a_gone_node_held_is_adopted_once(mailbox: Mailbox) -> None:
    created = await mailbox.create_many([sms(), sms("+4915112345679"), fax()])
    leased = await mailbox.lease("sms@alpha", types=[MessageType.SMS], limit=10)
    assert len(leased) == 2
    await mailbox.lease("fax@alpha", types=[MessageType.FAX], limit=10)
    adopted = await mailbox.adopt(
        "sms@alpha", "sms@beta", types=[MessageType.SMS], reason="node alpha stopped"
    )
    assert sorted(m.id for m in adopted) == sorted(m.id for m in created[:2])
    assert all(m.lease_owner == "sms@beta" and m.attempts == 1 for m in adopted)
    again = await mailbox.adopt(
        "sms@alpha", "sms@gamma", types=[MessageType.SMS], reason="node alpha stopped"
    )
    assert again == []  # each message goes to one adopter
    events = await mailbox.events(created[0].id)
    assert events[-1].detail == {"previous_owner": "sms@alpha", "owner": "sms@beta"}
    await join(mailbox, "alpha")
    nodes = {n.name: n for n in await mailbox.nodes()}
    assert nodes["alpha"].held == {"Fax": 1}


async def test_rates_count_in_windows_and_penalties_stick(
    mailbox: Mailbox, clock: ManualClock
) -> None:
    assert (await mailbox.rate_add("k", window=60)).count == 1
    assert (await mailbox.rate_add("k", window=60, n=3)).count == 4
    assert (await mailbox.rate_peek("k", window=60)).count == 4
    until = clock.now() + timedelta(seconds=60)
    await mailbox.rate_penalise("k", until)
    clock.advance(61)
    assert (await mailbox.rate_peek("k", window=60)).count == 0  # a new window
    state = await mailbox.rate_add("k", window=60)
    assert (state.count, state.penalty_until) == (1, until)


async def test_a_receipt_before_its_part_is_parked_then_applied(mailbox: Mailbox) -> None:
    message = await mailbox.create(sms())
    early = ReceiptIn("sim", ("A1",), PartStatus.DELIVERED)
    assert await mailbox.record_receipt(early) is None  # no part has that id yet
    await mailbox.park_receipt(early)
    assert await mailbox.apply_parked(expire_after=3600) == (0, [])  # still unknown
    await mailbox.record_acceptance(PartAccepted(message.id, 0, 1, "sim", "A1"))
    assert await mailbox.apply_parked(expire_after=3600) == (1, [])
    assert (await mailbox.get(message.id)).message_status is MessageStatus.DELIVERED
    assert await mailbox.apply_parked(expire_after=3600) == (0, [])  # applied once


async def test_a_parked_receipt_for_nothing_is_given_up(
    mailbox: Mailbox, clock: ManualClock
) -> None:
    stray = ReceiptIn("sim", ("FFFF",), PartStatus.DELIVERED)
    await mailbox.park_receipt(stray)
    clock.advance(3601)
    applied, expired = await mailbox.apply_parked(expire_after=3600)
    assert (applied, [r.carrier_ids for r in expired]) == (0, [("FFFF",)])
    assert await mailbox.apply_parked(expire_after=3600) == (0, [])


# -- two nodes on one PostgreSQL database -------------------------------------------------


@pytest.fixture
async def two_nodes(
    mailbox_settings: MailboxSettings, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[tuple[Mailbox, Mailbox]]:
    if mailbox_settings.is_sqlite:
        pytest.skip("several nodes share a PostgreSQL mailbox only")
    other = dataclasses.replace(mailbox_settings, data_dir=tmp_path / "node-b")
    a = await Mailbox.open(mailbox_settings, clock=clock)
    b = await Mailbox.open(other, clock=clock)
    try:
        yield a, b
    finally:
        await b.close()
        await a.close()


async def test_one_node_plays_a_role_the_next_takes_over(
    two_nodes: tuple[Mailbox, Mailbox],
) -> None:
    a, b = two_nodes
    assert await a.hold_role("sweeper")
    assert await a.hold_role("sweeper")  # kept
    assert not await b.hold_role("sweeper")
    assert await b.hold_role("notifier")
    await a.close()  # node a dies: its connections close
    assert await b.hold_role("sweeper")


async def test_a_fax_stored_by_one_node_is_read_by_another(
    two_nodes: tuple[Mailbox, Mailbox], tmp_path: Path
) -> None:
    a, b = two_nodes
    document = tmp_path / "big.pdf"
    document.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 12_000)  # 3 MB: 3 chunks
    new = dataclasses.replace(
        fax(),
        attachments=(
            NewAttachment(AttachmentType.SOURCE_DOCUMENT, "application/pdf", path=document),
        ),
    )
    created = await a.create(new)
    digest = created.attachments[0].sha256
    assert digest is not None
    assert not (tmp_path / "data" / "blobs").exists()  # not a file on node a
    async with b.blob_file(digest) as copy:
        assert copy.read_bytes() == document.read_bytes()
        assert copy.is_relative_to(tmp_path / "node-b")
    assert not copy.exists()  # the local copy goes with the block
    _, content = await b.attachment(created.id, created.attachments[0].id)
    assert await content.read_all() == document.read_bytes()


def test_gatewayd_nodes_lists_them(tmp_path: Path) -> None:
    config = tmp_path / "gatewayd.toml"
    config.write_text(f'[mailbox]\ndata_dir = "{tmp_path / "data"}"\n[log]\nfile = ""\n')

    async def fill() -> None:
        box = await Mailbox.open(MailboxSettings(data_dir=tmp_path / "data"))
        try:
            instance = await join(box, "gw1", pid=4242)
            await box.heartbeat("gw1", instance, {"links": {"sim": "bound"}})
            await box.create(sms())
            await box.lease("sms@gw1", types=[MessageType.SMS], limit=1)
            await box.leave_cluster("gw2", await join(box, "gw2", pid=4343))
        finally:
            await box.close()

    asyncio.run(fill())
    listed = gatewayd("nodes", "--json", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    nodes = {n["name"]: n for n in json.loads(listed.stdout)}
    assert (nodes["gw1"]["state"], nodes["gw1"]["pid"], nodes["gw1"]["held"]) == (
        "live",
        4242,
        {"SMS": 1},
    )
    assert nodes["gw2"]["state"] == "stopped"
    table = gatewayd("nodes", "--config", str(config))
    assert "1 SMS" in table.stdout
    assert "sim bound" in table.stdout


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ('name = "two words"', "node.name"),
        ('stale_after = "1s"', "node.stale_after"),
        ('heartbeat_interval = "10s"\nstale_after = "20s"', "three heartbeat_interval"),
    ],
)
def test_node_settings_are_checked(written: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_config(f"[node]\n{written}\n")


async def test_a_crashed_life_on_this_host_gives_its_name_back_at_once(mailbox: Mailbox) -> None:
    await join(mailbox, "gw", pid=999_999)  # its process is gone

    async def take() -> str:
        return await mailbox.join_cluster(
            "gw", stale_after=STALE, host="host-a", pid=2, version="t", alive=lambda p: False
        )

    assert await take()  # same host, dead pid: taken without waiting for stale_after
    with pytest.raises(NodeNameInUse):  # from another host it must wait
        await mailbox.join_cluster(
            "gw", stale_after=STALE, host="host-b", pid=3, version="t", alive=lambda p: False
        )
