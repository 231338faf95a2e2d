"""The message-store API over real HTTP (uvicorn on a loopback port, httpx as the
client) on a real mailbox (SQLite and PostgreSQL): every endpoint, its error paths,
isolation between users, the life cycle through the API."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from gatewayd import __version__
from gatewayd.api.app import ApiServer, create_app
from gatewayd.api.auth import Authenticator
from gatewayd.api.deps import Context
from gatewayd.api.sms_route import SmsRoute
from gatewayd.clock import ManualClock
from gatewayd.config.settings import ApiSettings, HostPort, Settings, User
from gatewayd.credentials import hash_token
from gatewayd.mailbox import Mailbox, Message
from gatewayd.metrics import Metrics
from gatewayd.model import Direction, FaxErrorCode, MessageStatus, MessageType, ReadStatus
from tests import documents
from tests.conftest import ACCOUNT, EXTENSION, OTHER_EXTENSION, OUR_NUMBER, fax, sms
from tests.smtp_client import free_port

ALICE, BOB, ADMIN = "alice-token", "bob-token", "admin-token"
ADMIN_EXTENSION = 109
USERS = (
    User(("alice@example.com",), ACCOUNT, EXTENSION, "101", "Alice", sms_numbers=(OUR_NUMBER,),
         fax_number="+4930123457", api_token_hash=hash_token(ALICE)),
    User(("bob@example.com",), ACCOUNT, OTHER_EXTENSION, "102", "Bob",
         sms_numbers=("+4930123458",), api_token_hash=hash_token(BOB)),
    User(("boss@example.com",), ACCOUNT, ADMIN_EXTENSION, "109", "Boss",
         api_token_hash=hash_token(ADMIN), api_admin=True),
)  # fmt: skip
MINE = "/restapi/v1.0/account/~/extension/~"
ALICE_PATH = f"/restapi/v1.0/account/{ACCOUNT}/extension/{EXTENSION}"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def app_for(
    mailbox: Mailbox,
    settings: Settings,
    on_queued: Callable[[Sequence[Message]], None] = lambda _: None,
) -> FastAPI:
    """The API app as the daemon builds it, with metrics that read ``mailbox``."""
    metrics = Metrics()
    metrics.watch(mailbox=mailbox)
    mailbox.watch_status(metrics.status_entered)
    context = Context(mailbox, Authenticator(settings, mailbox), on_queued=on_queued)
    return create_app(context, metrics)


@pytest.fixture
def settings() -> Settings:
    return Settings(api=ApiSettings(listen=HostPort("127.0.0.1", free_port()),
                                    rate_limits=False), users=USERS)  # fmt: skip


@pytest.fixture
async def api(mailbox: Mailbox, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    queued: list[Message] = []
    server = ApiServer(app_for(mailbox, settings, on_queued=queued.extend), settings)
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    async with httpx.AsyncClient(base_url=base, headers=auth(ALICE), timeout=30) as client:
        client.queued = queued  # type: ignore[attr-defined]
        yield client
    await server.stop()


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["errorCode"] == code, body
    assert body["errors"][0]["errorCode"] == code
    assert isinstance(body["message"], str)
    return body


# -- who may call ------------------------------------------------------------------------


async def test_without_a_token_nothing_is_shown(api: httpx.AsyncClient) -> None:
    response = await api.get(f"{MINE}/message-store", headers={"Authorization": ""})
    error_of(response, 401, "CMN-405")
    assert response.headers["www-authenticate"] == "Bearer"
    error_of(await api.get(f"{MINE}/message-store", headers=auth("nope")), 401, "OAU-149")


async def test_users_see_only_their_own_mailbox(api: httpx.AsyncClient, mailbox: Mailbox) -> None:
    mine = await mailbox.create(sms())
    theirs = await mailbox.create(sms(extension_id=OTHER_EXTENSION))
    listed = (await api.get(f"{MINE}/message-store")).json()["records"]
    assert [m["id"] for m in listed] == [mine.id]
    error_of(await api.get(f"{MINE}/message-store/{theirs.id}"), 404, "CMN-102")
    bob = f"/restapi/v1.0/account/{ACCOUNT}/extension/{OTHER_EXTENSION}"
    error_of(await api.get(f"{bob}/message-store"), 403, "CMN-419")
    error_of(await api.get("/restapi/v1.0/account/999/extension/~/message-store"), 404, "CMN-102")
    error_of(await api.get("/restapi/v1.0/account/~/extension/555/message-store"), 404, "CMN-102")
    # the account's admin reads Bob's mailbox, and changes nothing in it
    as_admin = auth(ADMIN)
    seen = (await api.get(f"{bob}/message-store", headers=as_admin)).json()["records"]
    assert [m["id"] for m in seen] == [theirs.id]
    response = await api.delete(f"{bob}/message-store/{theirs.id}", headers=as_admin)
    error_of(response, 403, "CMN-419")


# -- listing ------------------------------------------------------------------------------


async def test_the_list_has_its_defaults_paging_and_navigation(
    api: httpx.AsyncClient, mailbox: Mailbox, clock: ManualClock
) -> None:
    old = await mailbox.create(sms(text="yesterday's"))
    clock.advance(hours=25)
    made = []
    for number in range(5):
        clock.advance(seconds=1)
        made.append(await mailbox.create(sms(text=f"n{number}")))
    response = await api.get(f"{MINE}/message-store", params={"perPage": 2, "page": 2})
    assert response.status_code == 200
    body = response.json()
    assert [m["id"] for m in body["records"]] == [made[2].id, made[1].id]  # newest first
    assert body["paging"] == {"page": 2, "perPage": 2, "totalPages": 3, "totalElements": 5,
                              "pageStart": 2, "pageEnd": 3}  # fmt: skip
    base = str(api.base_url)
    assert body["uri"].startswith(f"{base}{MINE}/message-store?availability=Alive&dateFrom=")
    assert set(body["navigation"]) == {"firstPage", "nextPage", "previousPage", "lastPage"}
    assert "page=3" in body["navigation"]["nextPage"]["uri"]
    record = body["records"][0]
    assert record["uri"] == f"{base}{ALICE_PATH}/message-store/{made[2].id}"
    assert record["conversation"]["id"] == str(record["conversationId"])
    assert record["creationTime"].endswith("Z")
    # the default window is the last 24 hours; an older dateFrom finds the old one
    ids = [m["id"] for m in (await api.get(f"{MINE}/message-store", params={
        "dateFrom": "2020-01-01T00:00:00Z"})).json()["records"]]  # fmt: skip
    assert old.id in ids
    empty = (await api.get(f"{MINE}/message-store", params={"page": 9})).json()
    assert empty["records"] == []
    assert "page" not in empty["paging"]


async def test_filters_take_several_values(api: httpx.AsyncClient, mailbox: Mailbox) -> None:
    text = await mailbox.create(sms())
    inbound = await mailbox.create(sms(direction=Direction.INBOUND))
    document = await mailbox.create(fax())
    params = [("messageType", "Fax"), ("messageType", "SMS"), ("direction", "Outbound")]
    found = (await api.get(f"{MINE}/message-store", params=params)).json()["records"]
    assert {m["id"] for m in found} == {text.id, document.id}
    wanted = {"readStatus": "Unread", "direction": "Inbound"}
    only = (await api.get(f"{MINE}/message-store", params=wanted)).json()
    assert [m["id"] for m in only["records"]] == [inbound.id]
    many = (await api.get(f"{MINE}/message-store", params={"perPage": 5000})).json()
    assert many["paging"]["perPage"] == 1000


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"messageType": "Telegram"}, "messageType"),
        ({"page": "0"}, "page"),
        ({"perPage": "lots"}, "perPage"),
        ({"dateFrom": "1700000000"}, "dateFrom"),
        ({"dateFrom": "2026-02-30T00:00:00Z"}, "dateFrom"),
        ({"availability": "Gone"}, "availability"),
        ({"distinctConversations": "maybe"}, "distinctConversations"),
    ],
)
async def test_bad_list_parameters_are_named(
    api: httpx.AsyncClient, params: dict[str, str], parameter: str
) -> None:
    body = error_of(await api.get(f"{MINE}/message-store", params=params), 400, "CMN-101")
    assert body["parameterName"] == parameter


# -- reading ------------------------------------------------------------------------------


async def test_one_message_and_several(api: httpx.AsyncClient, mailbox: Mailbox) -> None:
    first, second = await mailbox.create(sms()), await mailbox.create(fax())
    one = (await api.get(f"{MINE}/message-store/{first.id}")).json()
    assert (one["id"], one["type"], one["messageStatus"]) == (first.id, "SMS", "Queued")
    response = await api.get(f"{MINE}/message-store/{first.id},{second.id},12345")
    assert response.status_code == 207
    assert response.headers["content-type"] == "application/vnd.ringcentral.multipart+json"
    items = response.json()
    assert [(i["resourceId"], i["status"]) for i in items] == [
        (str(first.id), 200), (str(second.id), 200), ("12345", 404)]  # fmt: skip
    assert items[2]["body"]["errorCode"] == "CMN-102"
    error_of(await api.get(f"{MINE}/message-store/12345"), 404, "CMN-102")
    error_of(await api.get(f"{MINE}/message-store/abc"), 404, "CMN-102")


async def test_content_with_ranges(api: httpx.AsyncClient, mailbox: Mailbox) -> None:
    pdf = documents.dense_text_pdf(1)
    message = await mailbox.create(fax(document=pdf))
    [attachment] = message.attachments
    url = f"{MINE}/message-store/{message.id}/content/{attachment.id}"
    whole = await api.get(url)
    assert whole.status_code == 200
    assert whole.content == pdf
    assert whole.headers["content-type"] == "application/pdf"
    assert whole.headers["content-disposition"] == f"inline;filename={attachment.id}.pdf"
    part = await api.get(url, headers={"Range": "bytes=10-19"},
                         params={"contentDisposition": "Attachment"})  # fmt: skip
    assert part.status_code == 206
    assert part.content == pdf[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(pdf)}"
    assert part.headers["content-disposition"].startswith("attachment;")
    tail = await api.get(url, headers={"Range": "bytes=-5"})
    assert tail.content == pdf[-5:]
    refused = await api.get(url, headers={"Range": f"bytes={len(pdf)}-"})
    error_of(refused, 416, "CMN-107")
    assert refused.headers["content-range"] == f"bytes */{len(pdf)}"
    text = await mailbox.create(sms(text="Grüße"))
    body = await api.get(f"{MINE}/message-store/{text.id}/content/{text.attachments[0].id}")
    assert (body.text, body.headers["content-type"].split(";")[0]) == ("Grüße", "text/plain")
    error_of(await api.get(f"{MINE}/message-store/{message.id}/content/1"), 404, "CMN-102")


# -- changing -----------------------------------------------------------------------------


async def test_read_status_delete_restore_purge(api: httpx.AsyncClient, mailbox: Mailbox) -> None:
    message = await mailbox.create(sms(direction=Direction.INBOUND))
    url = f"{MINE}/message-store/{message.id}"
    read = await api.put(url, json={"readStatus": "Read"})
    assert read.json()["readStatus"] == "Read"
    error_of(await api.put(url, json={"readStatus": "Skimmed"}), 400, "CMN-101")
    error_of(await api.put(url, json={}), 400, "CMN-101")
    assert (await api.delete(url)).status_code == 204
    assert (await mailbox.get(message.id)).availability.value == "Deleted"
    listed = (await api.get(f"{MINE}/message-store", params={"availability": "Deleted"})).json()
    assert [m["id"] for m in listed["records"]] == [message.id]
    restored = await api.patch(url, json={"availability": "Alive", "readStatus": "Unread"})
    assert (restored.json()["availability"], restored.json()["readStatus"]) == ("Alive", "Unread")
    error_of(await api.patch(url, json={}), 400, "CMN-101")
    assert (await api.delete(url)).status_code == 204
    assert (await api.delete(url)).status_code == 204  # a second delete purges
    assert (await mailbox.get(message.id)).availability.value == "Purged"
    error_of(await api.patch(url, json={"availability": "Alive"}), 400, "CMN-101")
    other = await mailbox.create(sms())
    assert (await api.delete(f"{MINE}/message-store/{other.id}", params={"purge": "true"})
            ).status_code == 204  # fmt: skip
    assert (await mailbox.get(other.id)).availability.value == "Purged"


async def test_delete_by_type_or_conversation(
    api: httpx.AsyncClient, mailbox: Mailbox, clock: ManualClock
) -> None:
    old_sms = await mailbox.create(sms())
    old_fax = await mailbox.create(fax())
    clock.advance(hours=1)
    new_sms = await mailbox.create(sms(to="+4915199999999"))
    cut = (clock.now() - timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    response = await api.delete(f"{MINE}/message-store", params={"type": "SMS", "dateTo": cut})
    assert response.status_code == 204
    states = {m: (await mailbox.get(m)).availability.value
              for m in (old_sms.id, old_fax.id, new_sms.id)}  # fmt: skip
    assert states == {old_sms.id: "Deleted", old_fax.id: "Alive", new_sms.id: "Alive"}
    assert new_sms.conversation_id is not None
    response = await api.delete(f"{MINE}/message-store",
                                params={"conversationId": new_sms.conversation_id})  # fmt: skip
    assert response.status_code == 204
    assert (await mailbox.get(new_sms.id)).availability.value == "Deleted"
    both = {"conversationId": 1, "type": "SMS"}
    error_of(await api.delete(f"{MINE}/message-store", params=both), 400, "MSG-390")


async def test_the_life_cycle_runs_on_through_the_sweeper(
    api: httpx.AsyncClient, mailbox: Mailbox, clock: ManualClock
) -> None:
    message = await mailbox.create(sms())
    assert (await api.delete(f"{MINE}/message-store/{message.id}")).status_code == 204
    clock.advance(days=mailbox.settings.retention_deleted_days, seconds=1)
    await mailbox.sweep()
    shown = (await api.get(f"{MINE}/message-store/{message.id}")).json()
    assert shown["availability"] == "Purged"
    clock.advance(days=mailbox.settings.retention_purged_days, seconds=1)
    await mailbox.sweep()
    error_of(await api.get(f"{MINE}/message-store/{message.id}"), 404, "CMN-102")


# -- sync ---------------------------------------------------------------------------------


async def test_full_then_incremental_sync(
    api: httpx.AsyncClient, mailbox: Mailbox, clock: ManualClock
) -> None:
    kept, dropped = await mailbox.create(sms()), await mailbox.create(sms(to="+4915100000001"))
    clock.advance(minutes=1)  # past the 5 s overlap an incremental sync repeats
    full = (await api.get(f"{MINE}/message-sync", params={"syncType": "FSync"})).json()
    assert {m["id"] for m in full["records"]} == {kept.id, dropped.id}
    assert full["syncInfo"]["syncType"] == "FSync"
    assert full["syncInfo"]["olderRecordsExist"] is False
    token = full["syncInfo"]["syncToken"]
    clock.advance(minutes=10)
    added = await mailbox.create(sms(to="+4915100000002"))
    assert (await api.delete(f"{MINE}/message-store/{dropped.id}")).status_code == 204
    changes = (await api.get(f"{MINE}/message-sync",
                             params={"syncType": "ISync", "syncToken": token})).json()  # fmt: skip
    by_id = {m["id"]: m for m in changes["records"]}
    assert set(by_id) == {added.id, dropped.id}
    assert by_id[dropped.id] == {"id": dropped.id, "availability": "Deleted"}
    assert by_id[added.id]["messageStatus"] == "Queued"
    again = await api.get(f"{MINE}/message-sync", params={"syncType": "ISync", "syncToken": "x"})
    error_of(again, 400, "MSG-333")
    error_of(await api.get(f"{MINE}/message-sync", params={"syncType": "ISync"}), 400, "MSG-333")
    error_of(await api.get(f"{MINE}/message-sync", params={"syncType": "Full"}), 400, "CMN-101")


# -- sending ------------------------------------------------------------------------------


async def test_an_sms_is_queued_like_one_from_mail(api: httpx.AsyncClient) -> None:
    body = {"from": {"phoneNumber": OUR_NUMBER}, "to": [{"phoneNumber": "+4915112345678"}],
            "text": "Hello from the API"}  # fmt: skip
    response = await api.post(f"{MINE}/sms", json=body)
    assert response.status_code == 200, response.text
    made = response.json()
    assert (made["type"], made["direction"], made["messageStatus"]) == ("SMS", "Outbound", "Queued")
    assert made["to"] == [{"phoneNumber": "+4915112345678"}]
    assert made["subject"] == "Hello from the API"
    assert [m.id for m in api.queued] == [made["id"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"from": {"phoneNumber": "+4930999999"}, "to": [{"phoneNumber": "+4915112345678"}],
          "text": "hi"}, 403, "MSG-240"),
        ({"from": {"phoneNumber": OUR_NUMBER}, "to": [{"phoneNumber": "12"}], "text": "hi"},
         400, "CMN-101"),
        ({"from": {"phoneNumber": OUR_NUMBER}, "to": [], "text": "hi"}, 400, "CMN-101"),
        ({"from": {"phoneNumber": OUR_NUMBER}, "to": [{"phoneNumber": "+4915112345678"}]},
         400, "CMN-101"),
        ({"from": {"phoneNumber": OUR_NUMBER}, "to": [{"phoneNumber": "+4915112345678"}],
          "text": 5}, 400, "CMN-101"),
        ({"from": {"phoneNumber": OUR_NUMBER}, "to": [{"phoneNumber": "+4915112345678"}],
          "text": "x" * 1001}, 400, "CMN-101"),
    ],
)  # fmt: skip
async def test_bad_sms_requests(
    api: httpx.AsyncClient, body: dict[str, Any], status: int, code: str
) -> None:
    error_of(await api.post(f"{MINE}/sms", json=body), status, code)


async def test_bodies_that_are_not_json_or_too_large(api: httpx.AsyncClient) -> None:
    headers = {"Content-Type": "application/json"}
    error_of(await api.post(f"{MINE}/sms", content=b"{nope", headers=headers), 400, "CMN-103")
    error_of(await api.post(f"{MINE}/sms", content=b"[1, 2]", headers=headers), 400, "CMN-101")
    big = json.dumps({"text": "x" * 2_000_000}).encode()
    error_of(await api.post(f"{MINE}/sms", content=big, headers=headers), 413, "CMN-104")


async def test_a_fax_from_a_form(api: httpx.AsyncClient, mailbox: Mailbox) -> None:
    pdf = documents.dense_text_pdf(2)
    files = [("attachment", ("contract.pdf", io.BytesIO(pdf), "application/pdf")),
             ("attachment", ("note.txt", io.BytesIO(b"Please sign."), "text/plain"))]  # fmt: skip
    data = {"to": ["+4940123456", '{"phoneNumber": "+4940123457", "name": "Bob"}'],
            "faxResolution": "Low", "coverIndex": "0",
            "sendTime": "2099-01-01T10:00:00Z"}  # fmt: skip
    response = await api.post(f"{MINE}/fax", data=data, files=files)
    assert response.status_code == 200, response.text
    made = response.json()
    assert (made["type"], made["messageStatus"], made["faxResolution"]) == ("Fax", "Queued", "Low")
    assert made["coverIndex"] == 0
    assert [a["contentType"] for a in made["attachments"]] == ["application/pdf", "text/plain"]
    queued = api.queued  # type: ignore[attr-defined]
    assert sorted(m.to[0].phone_number for m in queued) == ["+4940123456", "+4940123457"]
    stored = await mailbox.get(made["id"])
    assert stored.send_time is not None
    assert stored.send_time.year == 2099


async def test_a_fax_as_multipart_mixed(api: httpx.AsyncClient) -> None:
    pdf = documents.dense_text_pdf(1)
    envelope = json.dumps({"to": [{"phoneNumber": "+4940123456"}], "coverIndex": 1,
                           "coverPageText": "For your eyes"})  # fmt: skip
    body = (b"--XYZ\r\nContent-Type: application/json\r\n\r\n" + envelope.encode()
            + b"\r\n--XYZ\r\nContent-Type: application/pdf\r\n"
            b'Content-Disposition: attachment; filename="a.pdf"\r\n\r\n' + pdf
            + b"\r\n--XYZ--\r\n")  # fmt: skip
    mixed = {"Content-Type": 'multipart/mixed; boundary="XYZ"'}
    response = await api.post(f"{MINE}/fax", content=body, headers=mixed)
    assert response.status_code == 200, response.text
    made = response.json()
    assert (made["coverIndex"], made["coverPageText"]) == (1, "For your eyes")
    assert made["attachments"][0]["fileName"] == "a.pdf"


async def test_faxes_that_cannot_be_sent(api: httpx.AsyncClient) -> None:
    exe = [("attachment", ("tool.exe", io.BytesIO(b"MZ\x90\x00" * 10), "application/x-msdos"))]
    error_of(await api.post(f"{MINE}/fax", data={"to": "+4940123456"}, files=exe), 415, "MSG-348")
    empty = [("attachment", ("a.pdf", io.BytesIO(b""), "application/pdf"))]
    error_of(await api.post(f"{MINE}/fax", data={"to": "+4940123456"}, files=empty), 400,
             "MSG-347")  # fmt: skip
    pdf = [("attachment", ("a.pdf", io.BytesIO(documents.dense_text_pdf(1)), "application/pdf"))]
    error_of(await api.post(f"{MINE}/fax", data={"to": "not a number"}, files=pdf), 400,
             "CMN-101")  # fmt: skip
    error_of(await api.post(f"{MINE}/fax", json={"to": ["+4940123456"]}), 415, "MSG-348")
    bad = [("attachment", ("a.pdf", io.BytesIO(documents.dense_text_pdf(1)), "application/pdf"))]
    error_of(await api.post(f"{MINE}/fax", data={"to": "+4940123456", "faxResolution": "Ultra"},
                            files=bad), 400, "CMN-101")  # fmt: skip


async def test_a_pager_message_and_its_reply(api: httpx.AsyncClient, mailbox: Mailbox) -> None:
    sent = await api.post(f"{MINE}/company-pager",
                          json={"to": [{"extensionNumber": "102"}], "text": "Lunch?"})  # fmt: skip
    assert sent.status_code == 200, sent.text
    mine = sent.json()
    assert (mine["type"], mine["direction"], mine["messageStatus"]) == ("Pager", "Outbound", "Sent")
    bob = "/restapi/v1.0/account/~/extension/~"
    inbox = (await api.get(f"{bob}/message-store", headers=auth(BOB))).json()["records"]
    assert [(m["direction"], m["messageStatus"], m["subject"]) for m in inbox] == [
        ("Inbound", "Received", "Lunch?")]  # fmt: skip
    assert inbox[0]["conversationId"] == mine["conversationId"]
    reply = await api.post(f"{bob}/company-pager", headers=auth(BOB),
                           json={"replyOn": inbox[0]["id"], "text": "Yes"})  # fmt: skip
    assert reply.status_code == 200, reply.text
    assert reply.json()["conversationId"] == mine["conversationId"]
    alice_sees = (await api.get(f"{MINE}/message-store", params={"messageType": "Pager"})).json()
    assert sorted((m["direction"], m["subject"]) for m in alice_sees["records"]) == [
        ("Inbound", "Yes"), ("Outbound", "Lunch?")]  # fmt: skip
    assert {m["conversationId"] for m in alice_sees["records"]} == {mine["conversationId"]}
    error_of(await api.post(f"{MINE}/company-pager",
                            json={"to": [{"extensionNumber": "999"}], "text": "x"}), 404,
             "CMN-102")  # fmt: skip


async def test_rate_limits_answer_429_with_retry_after(
    mailbox: Mailbox, settings: Settings
) -> None:
    limited = replace(settings, api=replace(settings.api, rate_limits=True))
    server = ApiServer(app_for(mailbox, limited), limited)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}",
                                     headers=auth(ALICE)) as client:  # fmt: skip
            answers = [await client.get(f"{MINE}/message-store") for _ in range(51)]
    finally:
        await server.stop()
    assert [a.status_code for a in answers[:50]] == [200] * 50
    first = answers[0].headers
    assert (first["x-rate-limit-group"], first["x-rate-limit-limit"],
            first["x-rate-limit-remaining"], first["x-rate-limit-window"]) == (
        "Light", "50", "49", "60")  # fmt: skip
    last = answers[50]
    error_of(last, 429, "CMN-301")
    assert last.headers["retry-after"] == "60"


async def test_a_trusted_integration_is_never_rate_limited(
    mailbox: Mailbox, settings: Settings
) -> None:
    trusted = replace(USERS[0], rate_limits=False)  # Alice: [[users]] rate_limits = false
    limited = replace(
        settings, api=replace(settings.api, rate_limits=True), users=(trusted, *USERS[1:])
    )
    server = ApiServer(app_for(mailbox, limited), limited)
    await server.start()
    base = f"http://127.0.0.1:{server.port}"

    def body(n: int, sender: str) -> dict[str, Any]:
        return {"from": {"phoneNumber": sender}, "to": [{"phoneNumber": f"+49151123456{n:02d}"}],
                "text": f"n{n}"}  # fmt: skip

    try:
        async with httpx.AsyncClient(base_url=base) as client:
            alice = [await client.post(f"{MINE}/sms", json=body(n, OUR_NUMBER),
                                       headers=auth(ALICE)) for n in range(45)]  # fmt: skip
            bob = [await client.post(f"{MINE}/sms", json=body(n, "+4930123458"),
                                     headers=auth(BOB)) for n in range(41)]  # fmt: skip
    finally:
        await server.stop()
    assert [a.status_code for a in alice] == [200] * 45  # past Medium's 40 a minute
    assert alice[-1].headers["x-rate-limit-remaining"] == "40"
    assert [b.status_code for b in bob[:40]] == [200] * 40
    error_of(bob[40], 429, "CMN-301")


async def test_an_sms_is_answered_alike_on_the_short_way_and_through_fastapi(
    api: httpx.AsyncClient, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The short way (api/sms_route.py) takes plain JSON; a JSON media type of another
    name is left to the FastAPI route. Both answers must be the same."""
    body = {"from": {"phoneNumber": OUR_NUMBER}, "to": [{"phoneNumber": "+4915112345678"}],
            "text": "Grüße"}  # fmt: skip
    taken: list[bool] = []  # per request: did the short way take it?
    admitted = SmsRoute._admitted

    def spied(self: SmsRoute, *args: Any) -> Any:
        batch = admitted(self, *args)
        taken.append(batch is not None)
        return batch

    monkeypatch.setattr(SmsRoute, "_admitted", spied)
    answers = [
        await api.post(f"{MINE}/sms", content=json.dumps(body), headers={"Content-Type": kind})
        for kind in ("application/json", "application/vnd.example+json")
    ]
    short, framework = (a.json() for a in answers)
    assert [a.status_code for a in answers] == [200, 200]
    assert taken == [True, False]  # the second left to FastAPI (its media type)
    for made in (short, framework):
        stored = await mailbox.get(made["id"])
        assert made == stored.to_json(str(api.base_url).rstrip("/"))
    differ = {"id", "uri", "creationTime", "lastModifiedTime", "attachments"}
    assert {k: v for k, v in short.items() if k not in differ} == {
        k: v for k, v in framework.items() if k not in differ
    }
    own = {"id", "uri"}  # each attachment's own; the rest must match
    assert [{k: v for k, v in a.items() if k not in own} for a in short["attachments"]] == [
        {k: v for k, v in a.items() if k not in own} for a in framework["attachments"]
    ]
    same = ("content-type", "x-rate-limit-group", "x-rate-limit-limit",
            "x-rate-limit-remaining", "x-rate-limit-window")  # fmt: skip
    assert [answers[0].headers[h] for h in same] == [answers[1].headers[h] for h in same]
    assert len(api.queued) == 2  # type: ignore[attr-defined]


async def test_openapi_describes_every_endpoint(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert operations >= {
        "listMessages", "readMessage", "readMessageContent", "updateMessage", "patchMessage",
        "deleteMessage", "deleteMessageByFilter", "syncMessages", "createSMSMessage",
        "createFaxMessage", "createInternalTextMessage",
    }  # fmt: skip
    for path in schema["paths"].values():
        for operation in path.values():
            assert "422" not in operation["responses"]


_ = (MessageType, ReadStatus)


async def test_metrics_follow_prometheus_conventions(
    api: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await mailbox.create(sms())
    await mailbox.create(sms(to="+4915100000009"))
    busy = await mailbox.create(fax())
    await mailbox.transition(
        busy.id, MessageStatus.SENDING_FAILED, reason="busy", fax_error_code=FaxErrorCode.LINE_BUSY
    )
    taken_back = await mailbox.create(fax())
    await mailbox.cancel(taken_back.id, reason="wrong number")
    response = await api.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200
    text = response.text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[name, tuple(sorted(labels.items()))]

    # what the mailbox holds now (gauges), every series there even at 0
    assert value("gatewayd_mailbox_messages", type="SMS", status="Queued") == 2
    assert value("gatewayd_mailbox_messages", type="SMS", status="Delivered") == 0
    assert value("gatewayd_queue_depth", type="SMS") == 2
    assert value("gatewayd_queue_depth", type="Fax") == 0
    assert value("gatewayd_queue_oldest_age_seconds", type="SMS") == 0.0
    assert value("gatewayd_queue_oldest_age_seconds", type="Fax") == 0.0
    # outcomes counted as they happen; the ones that did not happen yet are 0
    out = {"direction": "Outbound"}
    assert value("gatewayd_messages_total", type="SMS", outcome="Queued", **out) == 2
    assert value("gatewayd_messages_total", type="Fax", outcome="Queued", **out) == 2
    assert value("gatewayd_messages_total", type="Fax", outcome="SendingFailed", **out) == 2
    assert value("gatewayd_messages_total", type="SMS", outcome="DeliveryFailed", **out) == 0
    assert (
        value("gatewayd_messages_total", type="SMS", outcome="Received", direction="Inbound") == 0
    )
    assert value("gatewayd_fax_failures_total", code="LineBusy") == 1
    assert value("gatewayd_fax_failures_total", code="Cancelled") == 1
    assert "# TYPE gatewayd_sms_failures_total counter" in text  # no SMS failed yet
    # the conventions
    assert value("gatewayd_build_info", version=__version__) == 1
    assert value("process_cpu_seconds_total") > 0
    assert value("process_resident_memory_bytes") > 0
    assert "gatewayd_render_seconds_bucket" in text
    assert "_created" not in text
    names = {name for name, _ in samples}
    assert all(n.startswith(("gatewayd_", "process_")) for n in names), names
    assert all(
        n.endswith(("_total", "_seconds", "_bytes", "_fds", "_info", "_bucket", "_count", "_sum"))
        or n
        in (
            "gatewayd_mailbox_messages",
            "gatewayd_queue_depth",
            "gatewayd_node_held_messages",
            "gatewayd_smpp_link_up",
            "gatewayd_smpp_link_state",
            "gatewayd_smpp_window_in_use",
        )
        for n in names
    ), names


async def test_metrics_can_want_a_token(mailbox: Mailbox, settings: Settings) -> None:
    token = "metrics-scraper-token"
    guarded = replace(settings, api=replace(settings.api, metrics_token_hash=hash_token(token)))
    server = ApiServer(app_for(mailbox, guarded), guarded)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            error_of(await client.get("/metrics"), 401, "OAU-149")
            error_of(await client.get("/metrics", headers=auth("wrong")), 401, "OAU-149")
            error_of(await client.get("/metrics", headers=auth(ALICE)), 401, "OAU-149")
            scraped = await client.get("/metrics", headers=auth(token))
            assert scraped.status_code == 200
            assert "gatewayd_build_info" in scraped.text
    finally:
        await server.stop()
