"""Listing a mailbox with the message store's filters, defaults and paging."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gatewayd.clock import ManualClock
from gatewayd.mailbox import Mailbox, Message, MessageQuery
from gatewayd.model import (
    Availability,
    AvailabilityAction,
    Direction,
    MessageType,
    ReadStatus,
)
from tests.conftest import EXTENSION, OTHER_EXTENSION, fax, sms

A = Availability


def ids(messages: list[Message]) -> list[int]:
    return [m.id for m in messages]


@pytest.fixture
async def history(mailbox: Mailbox, clock: ManualClock) -> dict[str, Message]:
    """Messages one hour apart, newest last: made 30 h, 29 h, ... before the clock."""
    start = clock.now()
    made: dict[str, Message] = {}

    async def at(hours_ago: float, name: str, new):  # type: ignore[no-untyped-def]
        clock.set(start - timedelta(hours=hours_ago))
        made[name] = await mailbox.create(new)

    await at(30, "old_sms", sms("+4915100000001"))
    await at(5, "fax", fax("+4940111111"))
    await at(4, "sms_out", sms("+4915100000001", text="hi"))
    await at(3, "sms_in", sms("+4915100000001", direction=Direction.INBOUND, text="hey"))
    await at(2, "other_thread", sms("+4915100000002"))
    await at(1, "deleted", sms("+4915100000003"))
    await at(0.5, "other_extension", sms(extension_id=OTHER_EXTENSION))
    clock.set(start)
    await mailbox.change_availability(made["deleted"].id, AvailabilityAction.DELETE, reason="t")
    await mailbox.set_read_status(made["sms_in"].id, ReadStatus.READ)
    return made


async def find(mailbox: Mailbox, **query) -> list[int]:  # type: ignore[no-untyped-def]
    page = await mailbox.find(MessageQuery(extension_id=EXTENSION, **query))
    return ids(page.records)


async def test_defaults_alive_only_last_24_hours_newest_first(
    mailbox: Mailbox, history: dict[str, Message]
) -> None:
    assert await find(mailbox) == [
        history[n].id for n in ("other_thread", "sms_in", "sms_out", "fax")
    ]


async def test_date_window(
    mailbox: Mailbox, clock: ManualClock, history: dict[str, Message]
) -> None:
    now = clock.now()
    assert history["old_sms"].id in await find(mailbox, date_from=now - timedelta(days=2))
    # dateFrom defaults to 24 h before dateTo, not before now.
    assert await find(mailbox, date_to=now - timedelta(hours=7)) == [history["old_sms"].id]
    assert await find(mailbox, date_to=now - timedelta(hours=3, minutes=30)) == [
        history["sms_out"].id,
        history["fax"].id,
    ]


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ({"availability": (A.DELETED,)}, ["deleted"]),
        (
            {"availability": (A.ALIVE, A.DELETED)},
            ["deleted", "other_thread", "sms_in", "sms_out", "fax"],
        ),
        ({"message_type": (MessageType.FAX,)}, ["fax"]),
        (
            {"message_type": (MessageType.FAX, MessageType.SMS)},
            ["other_thread", "sms_in", "sms_out", "fax"],
        ),
        ({"direction": (Direction.INBOUND,)}, ["sms_in"]),
        ({"read_status": (ReadStatus.READ,)}, ["sms_in"]),
        ({"read_status": (ReadStatus.UNREAD,)}, ["other_thread", "sms_out", "fax"]),
        ({"phone_number": "+4915100000001"}, ["sms_in", "sms_out"]),
        ({"phone_number": "+4940111111"}, ["fax"]),
        ({"distinct_conversations": True}, ["other_thread", "sms_in", "fax"]),
    ],
)
async def test_filters(
    mailbox: Mailbox, history: dict[str, Message], query: dict[str, object], names: list[str]
) -> None:
    assert await find(mailbox, **query) == [history[n].id for n in names]


async def test_conversation_filter(mailbox: Mailbox, history: dict[str, Message]) -> None:
    thread = history["sms_out"].conversation_id
    assert await find(mailbox, conversation_id=thread) == [
        history["sms_in"].id,
        history["sms_out"].id,
    ]


async def test_an_extension_sees_only_its_own(
    mailbox: Mailbox, history: dict[str, Message]
) -> None:
    page = await mailbox.find(MessageQuery(extension_id=OTHER_EXTENSION))
    assert ids(page.records) == [history["other_extension"].id]


async def test_paging(mailbox: Mailbox, clock: ManualClock) -> None:
    for _ in range(7):
        await mailbox.create(sms())
        clock.advance(1)
    first = await mailbox.find(MessageQuery(extension_id=EXTENSION, per_page=3))
    assert first.total == 7
    assert first.paging() == {
        "page": 1,
        "totalPages": 3,
        "perPage": 3,
        "totalElements": 7,
        "pageStart": 0,
        "pageEnd": 2,
    }
    last = await mailbox.find(MessageQuery(extension_id=EXTENSION, per_page=3, page=3))
    assert last.paging() == {
        "page": 3,
        "totalPages": 3,
        "perPage": 3,
        "totalElements": 7,
        "pageStart": 6,
        "pageEnd": 6,
    }
    beyond = await mailbox.find(MessageQuery(extension_id=EXTENSION, per_page=3, page=4))
    assert beyond.records == []
    assert beyond.paging() == {"totalPages": 3, "perPage": 3, "totalElements": 7}
    every = set()
    for page in (1, 2, 3):
        every |= set(
            ids(
                (
                    await mailbox.find(MessageQuery(extension_id=EXTENSION, per_page=3, page=page))
                ).records
            )
        )
    assert len(every) == 7


async def test_per_page_is_cut_to_1000(mailbox: Mailbox) -> None:
    page = await mailbox.find(MessageQuery(extension_id=EXTENSION, per_page=5000))
    assert page.per_page == 1000


@pytest.mark.parametrize("bad", [{"page": 0}, {"per_page": 0}])
def test_invalid_paging_is_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="1 or more"):
        MessageQuery(extension_id=EXTENSION, **bad)  # type: ignore[arg-type]


async def test_records_carry_their_attachments(
    mailbox: Mailbox, history: dict[str, Message]
) -> None:
    page = await mailbox.find(MessageQuery(extension_id=EXTENSION, message_type=(MessageType.FAX,)))
    assert page.records[0].attachments == history["fax"].attachments
