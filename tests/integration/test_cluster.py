"""Three ``gatewayd run`` nodes on one PostgreSQL mailbox, each bound to one SMSC (the
simulator, in this process), sharing a spool directory with a fax machine behind it.
Mail comes in over SMTP to every node; one node is killed with SIGKILL half-way, or has
its database cut for ten seconds. Every message accepted reaches its final status, none
is lost, every SMS submitted twice was marked as in flight when its node stopped, and
each result email goes out once."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from gatewayd.config.settings import MailboxSettings
from gatewayd.mailbox import Mailbox, Message
from gatewayd.model import MessageStatus, MessageType
from gatewayd.sms.simulator import SimSettings, Smsc
from tests.cluster import FaxMachine, Node, Proxy, make_node
from tests.integration.test_notify import Sink
from tests.postgres import create_database
from tests.smtp_client import free_port, message, send

pytestmark = pytest.mark.slow

SMS_PER_MAIL = 25
FINAL = {
    MessageType.SMS: {
        MessageStatus.DELIVERED,
        MessageStatus.DELIVERY_FAILED,
        MessageStatus.SENDING_FAILED,
    },
    MessageType.FAX: {MessageStatus.SENT},
}
MARKED = re.compile(r"in flight when the gateway stopped|stopped; adopted by node")


def numbers(count: int, start: int) -> list[str]:
    """Destination numbers; a few end in 0001 and 0003 (the simulator fails those) and
    0009 (refused at once); none in the endings that retry on purpose."""
    out: list[str] = []
    i = start
    while len(out) < count:
        i += 1
        if f"{i:04d}"[-4:] in ("0005", "0006", "0008", "0010"):
            continue
        out.append(f"+4915{i:09d}")
    return out


@pytest.fixture
def database(postgres_base: str | None, request: pytest.FixtureRequest) -> str:
    if postgres_base is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    name = "c_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    return create_database(postgres_base, name)


@pytest.fixture
async def smsc() -> AsyncIterator[tuple[Smsc, int]]:
    sim = Smsc(SimSettings(receipt_delay=0.05))
    sim.keep_submitted = True
    port = await sim.start()
    try:
        yield sim, port
    finally:
        await sim.close()


@pytest.fixture
def relay() -> Iterator[tuple[Sink, int]]:
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def mail_sms(node: Node, destinations: list[str], body: str) -> list[int]:
    reply = send(
        node.smtp_port,
        "alice@example.com",
        [f"{d}@sms.example.com" for d in destinations],
        message(to=", ".join(f"{d}@sms.example.com" for d in destinations), body=body),
    )
    assert reply.code == 250, reply
    return [int(i) for i in reply.line.split("queued as ")[1].split()]


def mail_fax(node: Node, destination: str) -> list[int]:
    reply = send(
        node.smtp_port,
        "alice@example.com",
        [f"{destination}@fax.example.com"],
        message(to=f"{destination}@fax.example.com", body="Please sign.", subject="Contract"),
    )
    assert reply.code == 250, reply
    return [int(i) for i in reply.line.split("queued as ")[1].split()]


async def finals(url: str, ids: set[int], within: float) -> dict[int, Message]:
    """The accepted messages once all are final (or what they are at the deadline)."""
    box = await Mailbox.open(MailboxSettings(data_dir=Path("/tmp"), database_url=url))
    try:
        deadline = time.monotonic() + within
        while True:
            found = await box.get_many(ids)
            done = all(m.message_status in FINAL[m.type] for m in found.values())
            if (done and len(found) == len(ids)) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(1)
    finally:
        await box.close()


async def held_by(url: str, node: str) -> int:
    """How many Queued messages ``node`` holds now."""
    box = await Mailbox.open(MailboxSettings(data_dir=Path("/tmp"), database_url=url))
    try:
        found = {n.name: n for n in await box.nodes()}
        return sum(found[node].held.values()) if node in found else 0
    finally:
        await box.close()


async def marked(url: str, ids: set[int]) -> set[int]:
    """Messages with an event saying they were in flight when their node stopped."""
    box = await Mailbox.open(MailboxSettings(data_dir=Path("/tmp"), database_url=url))
    try:
        out = set()
        for message_id in ids:
            if any(MARKED.search(e.reason) for e in await box.events(message_id)):
                out.add(message_id)
        return out
    finally:
        await box.close()


async def mails_for(sink: Sink, found: dict[int, Message], within: float = 60) -> None:
    """Wait until the relay has a result email for every fax and every failed SMS."""
    wanted = sum(
        1
        for m in found.values()
        if m.type is MessageType.FAX or m.message_status is not MessageStatus.DELIVERED
    )
    for _ in range(int(within * 2)):
        if len(sink.mails) >= wanted:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(3)  # and a little longer: a second copy would come now


def check(
    found: dict[int, Message], accepted: set[int], smsc: Smsc, sink: Sink, marked_ids: set[int]
) -> None:
    assert set(found) == accepted, f"lost: {sorted(accepted - set(found))[:10]}"
    stuck = Counter(
        (m.type.value, m.message_status.value)
        for m in found.values()
        if m.message_status not in FINAL[m.type]
    )
    assert not stuck, stuck
    # every SMS submitted more than once was marked as in flight when its node stopped
    submits = Counter("+" + r.fields["destination_addr"] for r in smsc.submitted)
    by_number = {m.to[0].phone_number: m for m in found.values() if m.type is MessageType.SMS}
    twice = {by_number[n].id for n, count in submits.items() if count > 1}
    assert twice <= marked_ids, sorted(twice - marked_ids)[:10]
    # each fax result went out once
    results = Counter(
        str(mail["Subject"]) for mail in sink.mails if str(mail["Subject"]).startswith("Fax to")
    )
    faxes = [m for m in found.values() if m.type is MessageType.FAX]
    assert sum(results.values()) == len(faxes), results
    sms_failures = [m for m in found.values() if m.type is MessageType.SMS and m.message_status
                    is not MessageStatus.DELIVERED]  # fmt: skip
    failure_mails = [m for m in sink.mails if str(m["Subject"]).startswith("SMS to")]
    ids = Counter(str(m["Message-ID"]) for m in sink.mails)
    assert max(ids.values()) == 1, ids.most_common(3)
    assert len(failure_mails) == len(sms_failures)


async def test_a_node_killed_midway_loses_nothing(
    tmp_path: Path, database: str, smsc: tuple[Smsc, int], relay: tuple[Sink, int]
) -> None:
    sim, sim_port = smsc
    sink, relay_port = relay
    spool = tmp_path / "spool"
    nodes = [
        make_node(
            tmp_path, f"n{i}", database_url=database, sim_port=sim_port, spool=spool,
            relay_port=relay_port,
        )
        for i in (1, 2, 3)
    ]  # fmt: skip
    for node in nodes:
        node.start()
    try:
        for node in nodes:
            await asyncio.to_thread(node.wait_started)
        destinations = numbers(3000, 100_000)
        batches = [destinations[i : i + SMS_PER_MAIL] for i in range(0, 3000, SMS_PER_MAIL)]
        accepted: set[int] = set()
        held_at_death = 0
        with FaxMachine(spool):
            for index, batch in enumerate(batches):
                live = [n for n in nodes if n.process and n.process.poll() is None]
                node = live[index % len(live)]
                accepted |= set(await asyncio.to_thread(mail_sms, node, batch, "Meeting at 8"))
                if index % 4 == 0:
                    accepted |= set(await asyncio.to_thread(mail_fax, node, f"+49301{index:05d}"))
                if index == len(batches) // 2:
                    nodes[1].kill()  # while its SMS and faxes are in flight
                    held_at_death = await held_by(database, "n2")
            found = await finals(database, accepted, within=240)
        marked_ids = await marked(database, {m.id for m in found.values()})
        await mails_for(sink, found)
        check(found, accepted, sim, sink, marked_ids)
        assert len(accepted) == 3000 + 30
        adopted = [e for n in (nodes[0], nodes[2]) for e in n.events()
                   if e.get("event") in ("sms.adopted", "fax.adopted")]  # fmt: skip
        # what n2 held when it died (it may hold nothing at that instant) was adopted
        assert bool(adopted) == bool(held_at_death), (held_at_death, adopted)
    finally:
        for node in nodes:  # in a thread: the simulator and the proxy live in this loop
            await asyncio.to_thread(node.stop)


async def test_a_node_cut_from_the_database_reconnects(
    tmp_path: Path, database: str, smsc: tuple[Smsc, int], relay: tuple[Sink, int]
) -> None:
    sim, sim_port = smsc
    sink, relay_port = relay
    spool = tmp_path / "spool"
    match = re.match(r"postgresql\+asyncpg://([^@]+)@127\.0\.0\.1:(\d+)/(.+)", database)
    assert match is not None, database
    proxy = Proxy(int(match.group(2)))
    await proxy.start()
    through_proxy = database.replace(f":{match.group(2)}/", f":{proxy.port}/")
    nodes = [
        make_node(tmp_path, "n1", database_url=through_proxy, sim_port=sim_port, spool=spool,
                  relay_port=relay_port),
        make_node(tmp_path, "n2", database_url=database, sim_port=sim_port, spool=spool,
                  relay_port=relay_port),
    ]  # fmt: skip
    for node in nodes:
        node.start()
    try:
        for node in nodes:
            await asyncio.to_thread(node.wait_started)
        destinations = numbers(1000, 500_000)
        batches = [destinations[i : i + SMS_PER_MAIL] for i in range(0, 1000, SMS_PER_MAIL)]
        accepted: set[int] = set()
        refused = 0
        with FaxMachine(spool):
            for index, batch in enumerate(batches):
                if index == 10:
                    proxy.cut(10)
                try:
                    ids = await asyncio.to_thread(mail_sms, nodes[index % 2], batch, "Hi")
                except AssertionError:
                    refused += 1  # 451 while its database is cut: the client retries later
                    ids = await asyncio.to_thread(mail_sms, nodes[1], batch, "Hi")
                accepted |= set(ids)
                if index % 4 == 0:
                    accepted |= set(
                        await asyncio.to_thread(mail_fax, nodes[1], f"+49302{index:05d}")
                    )
                await asyncio.sleep(0.3)
            found = await finals(database, accepted, within=240)
        marked_ids = await marked(database, {m.id for m in found.values()})
        await mails_for(sink, found)
        check(found, accepted, sim, sink, marked_ids)
        assert refused, "no mail reached the node while its database was cut"
        events = nodes[0].events()
        assert any(e.get("event") == "node.heartbeat_failed" for e in events)
        assert any(e.get("event") == "node.heartbeat_back" for e in events)
        assert nodes[0].process is not None
        assert nodes[0].process.poll() is None  # still up
    finally:
        for node in nodes:  # in a thread: the simulator and the proxy live in this loop
            await asyncio.to_thread(node.stop)
        await proxy.close()
    assert all(e.get("event") != "daemon.task_failed" for e in nodes[0].events())


async def test_a_second_node_of_the_same_name_refuses_to_start(
    tmp_path: Path, database: str, smsc: tuple[Smsc, int]
) -> None:
    _, sim_port = smsc
    spool = tmp_path / "spool"
    first = make_node(tmp_path, "same", database_url=database, sim_port=sim_port, spool=spool)
    second = make_node(tmp_path / "b", "same", database_url=database, sim_port=sim_port,
                       spool=spool)  # fmt: skip
    first.start()
    try:
        await asyncio.to_thread(first.wait_started)
        second.start()
        assert second.process is not None
        code = await asyncio.to_thread(second.process.wait, 60)
        assert code == 4
        failed = [e for e in second.events() if e.get("event") == "daemon.startup_failed"]
        assert "node name 'same' is in use by a live node" in str(failed[0]["error"])
        assert not any(e.get("event") == "sms.bound" for e in second.events())
    finally:
        await asyncio.to_thread(first.stop)
