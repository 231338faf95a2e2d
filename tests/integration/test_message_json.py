"""The list page's JSON, written by the database (``Mailbox.find_json``), is exactly
``Message.to_json`` of the records ``Mailbox.find`` returns: the same keys in the same
order, the same keys left out, for every kind of message, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from gatewayd.api.app import ApiServer
from gatewayd.clock import ManualClock
from gatewayd.config.settings import ApiSettings, HostPort, Settings
from gatewayd.errors import StoreError
from gatewayd.mailbox import (
    JsonPage,
    Mailbox,
    Message,
    MessageQuery,
    NewAttachment,
    NewMessage,
    Party,
    _rows,
)
from gatewayd.mailbox._schema import attachments, messages
from gatewayd.model import (
    AttachmentType,
    Availability,
    AvailabilityAction,
    Direction,
    FaxResolution,
    MessageStatus,
    MessageType,
    Priority,
    ReadStatus,
    VmTranscriptionStatus,
)
from tests.conftest import ACCOUNT, EXTENSION, OTHER_EXTENSION, fax, pager, sms
from tests.integration.test_api import ALICE, USERS, app_for, auth
from tests.smtp_client import free_port

EVER = datetime(1960, 1, 1, tzinfo=UTC)
BASES = ("http://127.0.0.1:8080", "https://example.com/gateway/", "")
ODD_TEXT = 'quotes " and \\ backslash, tab\t, line\nbreak, \x01, \u2028, é, 😀, </script>'


async def _set(mailbox: Mailbox, message_id: int, **values: Any) -> None:
    """Columns the dispatchers and carriers fill in, set directly so that every field
    of the JSON is covered with odd values too."""
    async with mailbox._db.write() as conn:
        await conn.execute(sa.update(messages).where(messages.c.id == message_id).values(values))


async def _reverse_positions(mailbox: Mailbox, message_id: int) -> None:
    """Positions opposite to the ids' order, so that an order by id would show."""
    a = attachments.c
    async with mailbox._db.write() as conn:
        found = (
            await conn.execute(sa.select(a.id).where(a.message_id == message_id).order_by(a.id))
        ).scalars()
        ids = list(found)
        for position, attachment_id in enumerate(reversed(ids)):
            await conn.execute(
                sa.update(attachments).where(a.id == attachment_id).values(position=position)
            )


@pytest.fixture
async def varied(mailbox: Mailbox, clock: ManualClock) -> list[Message]:
    """One of every kind of message, and of every field the JSON can carry."""
    made: list[Message] = []

    async def create(new: NewMessage) -> Message:
        clock.advance(seconds=1)
        made.append(await mailbox.create(new))
        return made[-1]

    await create(sms())
    delivered = await create(sms("+4915100000009", text=ODD_TEXT))
    await _set(
        mailbox,
        delivered.id,
        message_status=MessageStatus.DELIVERED.value,
        sms_delivery_time=clock.now() + timedelta(microseconds=999_999),
        delivery_error_code="000",
        attempts=3,
    )
    await create(sms(direction=Direction.INBOUND, read_status=ReadStatus.READ))
    documents = (
        NewAttachment(
            AttachmentType.SOURCE_DOCUMENT,
            "application/pdf",
            data=b"%PDF-1.4 a",
            file_name='contract "final".pdf',
        ),
        NewAttachment(AttachmentType.SOURCE_DOCUMENT, "text/plain", data=b"no name"),
        NewAttachment(
            AttachmentType.RENDERED_DOCUMENT,
            "image/tiff",
            data=b"II*\x00",
            file_name="fax.tif",
            width=1728,
            height=2292,
        ),
        NewAttachment(
            AttachmentType.SOURCE_DOCUMENT,
            "image/png",
            data=b"\x89PNG",
            file_name="photo.png",
            width=640,
            height=480,
        ),
    )
    failed = await create(
        replace(
            fax(
                fax_resolution=FaxResolution.LOW,
                cover_index=3,
                cover_page_text=ODD_TEXT,
                priority=Priority.HIGH,
            ),
            attachments=documents,
        )
    )
    await _set(
        mailbox,
        failed.id,
        message_status=MessageStatus.SENDING_FAILED.value,
        fax_error_code="LineBusy",
        fax_page_count=4,
        to_parties=[
            {"phoneNumber": "+4940123456", "name": "Bob"},
            {"phoneNumber": "+4940123457", "location": "Hamburg"},
            {},
        ],
    )
    await _reverse_positions(mailbox, failed.id)
    empty_error = await create(fax(fax_resolution=FaxResolution.HIGH))
    await _set(mailbox, empty_error.id, fax_error_code="", fax_page_count=0, cover_index=0)
    await create(
        NewMessage(
            account_id=ACCOUNT,
            extension_id=EXTENSION,
            type=MessageType.FAX,
            direction=Direction.INBOUND,
            from_=Party(phone_number="+4940999999"),
            to=(Party(phone_number="+4930123457"),),
            origin="test",
            attachments=(
                NewAttachment(
                    AttachmentType.RENDERED_DOCUMENT,
                    "image/tiff",
                    data=b"II*\x00 in",
                    file_name="in.tif",
                ),
            ),
            fax_page_count=2,
            fax_resolution=FaxResolution.HIGH,
        )
    )
    await create(
        pager(
            Party(extension_number="102", extension_id=OTHER_EXTENSION, name="Bob"),
            pg_to_department=True,
        )
    )
    await create(pager(Party(extension_number="103", location="2nd floor"), pg_to_department=False))
    await create(pager(Party(extension_number="104")))
    await create(
        NewMessage(
            account_id=ACCOUNT,
            extension_id=EXTENSION,
            type=MessageType.VOICEMAIL,
            direction=Direction.INBOUND,
            from_=Party(phone_number="+4915100000005", name="Carol"),
            to=(Party(extension_number="101", extension_id=EXTENSION),),
            origin="test",
            attachments=(
                NewAttachment(
                    AttachmentType.AUDIO_RECORDING, "audio/wav", data=b"RIFF", vm_duration=17
                ),
            ),
            vm_transcription_status=VmTranscriptionStatus.NOT_AVAILABLE,
        )
    )
    deleted = await create(sms("+4915100000007", text="deleted"))
    await mailbox.change_availability(deleted.id, AvailabilityAction.DELETE, reason="t")
    purged = await create(fax("+4940777777"))
    await mailbox.change_availability(purged.id, AvailabilityAction.PURGE, reason="t")
    # Before 1970, and the last microsecond of a millisecond: cut, never rounded.
    old = await create(sms("+4915100000008", text="old"))
    await _set(
        mailbox,
        old.id,
        creation_time=datetime(1969, 12, 31, 23, 59, 59, 999_500, UTC),
        last_modified_time=datetime(1969, 7, 20, 20, 17, 40, 1, UTC),
    )
    return made


def _everything(**more: Any) -> MessageQuery:
    every = (Availability.ALIVE, Availability.DELETED, Availability.PURGED)
    return MessageQuery(
        **{"extension_id": EXTENSION, "availability": every, "date_from": EVER, **more}
    )


async def _both(mailbox: Mailbox, query: MessageQuery, base: str) -> JsonPage:
    """The JSON page, checked against the records' JSON byte for byte (orjson writes
    keys in the order given, so equal bytes mean the same keys in the same order)."""
    page = await mailbox.find(query)
    fast = await mailbox.find_json(query, base)
    expected = [m.to_json(base) for m in page.records]
    assert orjson.loads(fast.records) == expected
    assert fast.records == orjson.dumps(expected)  # the bytes the API serves as they are
    assert (fast.size, fast.total, fast.paging()) == (
        len(page.records),
        page.total,
        page.paging(),
    )
    return fast


@pytest.mark.parametrize("base", BASES)
async def test_every_kind_of_message_is_written_as_to_json(
    mailbox: Mailbox, varied: list[Message], base: str
) -> None:
    fast = await _both(mailbox, _everything(), base)
    assert fast.size == len(varied)
    records = orjson.loads(fast.records)
    # what the comparison covers is really there
    by_id = {r["id"]: r for r in records}
    failed = by_id[varied[3].id]
    ids = [a["id"] for a in failed["attachments"]]  # by position: the reverse of the ids
    assert len(ids) == 4
    assert ids == sorted(ids, reverse=True)
    assert failed["to"][2] == {"messageStatus": "SendingFailed", "faxErrorCode": "LineBusy"}
    assert failed["coverPageText"] == ODD_TEXT
    assert by_id[varied[4].id]["faxErrorCode"] == ""
    assert "faxErrorCode" not in by_id[varied[4].id]["to"][0]
    assert by_id[varied[6].id]["pgToDepartment"] is True
    assert by_id[varied[7].id]["pgToDepartment"] is False
    assert by_id[varied[9].id]["attachments"][0]["vmDuration"] == 17
    assert by_id[varied[11].id]["availability"] == "Purged"
    assert by_id[varied[12].id]["creationTime"] == "1969-12-31T23:59:59.999Z"
    assert by_id[varied[1].id]["smsDeliveryTime"].endswith(".999Z")


@pytest.mark.parametrize(
    "query",
    [
        {"per_page": 4},
        {"per_page": 4, "page": 2},
        {"per_page": 4, "page": 4},
        {"per_page": 4, "page": 40},
        {"distinct_conversations": True},
        {"distinct_conversations": True, "per_page": 2, "page": 2},
        {"message_type": (MessageType.FAX, MessageType.PAGER)},
        {"message_type": (MessageType.SMS, MessageType.SMS)},
        {"direction": (Direction.INBOUND,), "read_status": (ReadStatus.UNREAD,)},
        {"phone_number": "+4915100000009"},
        {"availability": (Availability.DELETED,)},
    ],
)
async def test_every_filter_and_page_gives_the_same_page(
    mailbox: Mailbox, varied: list[Message], query: dict[str, Any]
) -> None:
    fast = await _both(mailbox, _everything(**query), BASES[0])
    # Both lists share the plan and its conditions: a page of nothing would compare
    # equal too, so each case must find something (page 40 of 4 is past the end).
    assert (fast.size == 0) == (query.get("page") == 40), (query, fast.size)


async def test_a_conversation_and_every_mailbox(mailbox: Mailbox, varied: list[Message]) -> None:
    thread = varied[0].conversation_id
    assert thread is not None
    fast = await _both(mailbox, _everything(conversation_id=thread), BASES[0])
    assert fast.size == 2  # the outbound and the inbound SMS with the same number
    operator = MessageQuery(extension_id=None, account_id=ACCOUNT, date_from=EVER)
    assert (await _both(mailbox, operator, BASES[0])).size > 0


async def test_an_empty_mailbox(mailbox: Mailbox) -> None:
    fast = await _both(mailbox, _everything(), BASES[0])
    assert (fast.records, fast.total) == (b"[]", 0)


async def test_distinct_conversations_break_ties_by_id(
    mailbox: Mailbox, clock: ManualClock
) -> None:
    """Messages created in the same microsecond: the highest id is the newest."""
    same = [await mailbox.create(sms("+4915100000001", text=f"n{n}")) for n in range(3)]
    other = [await mailbox.create(sms("+4915100000002", text=f"m{n}")) for n in range(2)]
    clock.advance(seconds=1)
    alone = await mailbox.create(fax())
    query = MessageQuery(extension_id=EXTENSION, distinct_conversations=True)
    page = await mailbox.find(query)
    newest = max(m.id for m in same), max(m.id for m in other)
    assert page.records[0].id == alone.id
    assert sorted(m.id for m in page.records[1:]) == sorted(newest)
    assert page.total == 3
    await _both(mailbox, query, BASES[0])


async def test_a_long_page_keeps_its_order(mailbox: Mailbox, clock: ManualClock) -> None:
    """Newest first, then the highest id, for messages made out of time order and in
    the same microsecond (the page is one aggregate on SQLite: its order matters)."""
    start = clock.now()
    rng = random.Random(5)
    batch = []
    for number in range(240):
        made = start - timedelta(seconds=rng.randrange(60))  # about four a second
        batch.append(sms(f"+49151000{number % 7:05d}", text=f"n{number}", creation_time=made))
        if len(batch) == 40:
            await mailbox.create_many(batch)
            batch = []
    for query in ({"per_page": 1000}, {"per_page": 100, "page": 2}):
        fast = await _both(mailbox, _everything(**query), BASES[0])
        assert fast.size == {1000: 240, 100: 100}[query["per_page"]]


async def test_a_database_error_is_a_store_error(mailbox: Mailbox) -> None:
    with pytest.raises(StoreError, match=r"no such table|does not exist"):
        async with mailbox._db.read() as conn:
            await _rows.fetch_plain(conn, "SELECT * FROM nowhere", ())


@pytest.fixture
async def api(mailbox: Mailbox) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        api=ApiSettings(listen=HostPort("127.0.0.1", free_port()), rate_limits=False), users=USERS
    )
    server = ApiServer(app_for(mailbox, settings), settings)
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    async with httpx.AsyncClient(base_url=base, headers=auth(ALICE), timeout=30) as client:
        yield client
    await server.stop()


async def test_the_api_list_is_what_reading_each_message_gives(
    api: httpx.AsyncClient, varied: list[Message]
) -> None:
    path = "/restapi/v1.0/account/~/extension/~/message-store"
    params = {
        "dateFrom": "1960-01-01T00:00:00Z",
        "perPage": 5,
        "page": 2,
        "availability": ["Alive", "Deleted", "Purged"],
    }
    response = await api.get(path, params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["uri", "navigation", "records", "paging"]
    assert body["paging"] == {
        "page": 2,
        "perPage": 5,
        "totalPages": 3,
        "totalElements": len(varied),
        "pageStart": 5,
        "pageEnd": 9,
    }
    assert len(body["records"]) == 5
    for record in body["records"]:
        single = await api.get(f"{path}/{record['id']}")
        assert single.json() == record
        assert single.content == orjson.dumps(record)
