"""The operators' side of the API over real HTTP on a real mailbox (SQLite and
PostgreSQL): tokens kept in the mailbox (in effect at once, revoked within the cache's
second), the admin routes under /gatewayd/v1, /healthz and /readyz, and the bearer
scheme in the OpenAPI document."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from gatewayd.api.app import ApiServer
from gatewayd.api.auth import TOKEN_CACHE_SECONDS
from gatewayd.clock import ManualClock
from gatewayd.config.settings import ApiSettings, HostPort, Settings
from gatewayd.credentials import hash_token, new_token
from gatewayd.mailbox import Mailbox, Message
from gatewayd.model import FaxErrorCode, MessageStatus
from tests.conftest import ACCOUNT, EXTENSION, OTHER_EXTENSION, fax, sms
from tests.integration.test_api import ADMIN, ALICE, MINE, USERS, app_for, auth, error_of
from tests.smtp_client import free_port

S = MessageStatus
OPS = "/gatewayd/v1"


@pytest.fixture
def settings() -> Settings:
    listen = HostPort("127.0.0.1", free_port())
    return Settings(api=ApiSettings(listen=listen, rate_limits=False), users=USERS)


@pytest.fixture
async def api(mailbox: Mailbox, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API as the daemon serves it, called as Alice; ``api.queued``: what was woken."""
    queued: list[Message] = []
    server = ApiServer(app_for(mailbox, settings, on_queued=queued.extend), settings)
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    async with httpx.AsyncClient(base_url=base, headers=auth(ALICE), timeout=30) as client:
        client.queued = queued  # type: ignore[attr-defined]
        yield client
    await server.stop()


async def keep_token(
    mailbox: Mailbox, extension_id: int = EXTENSION, **more: object
) -> tuple[str, int]:
    token = new_token()
    made = await mailbox.create_token(
        account_id=ACCOUNT,
        extension_id=extension_id,
        email="alice@example.com",
        name="test",
        token_hash=hash_token(token),
        **more,  # type: ignore[arg-type]
    )
    return token, made.id


# -- tokens in the mailbox ------------------------------------------------------------------


async def test_a_stored_token_works_at_once_and_a_revoked_one_stops(
    api: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    token, token_id = await keep_token(mailbox)
    mine = await mailbox.create(sms())
    seen = await api.get(f"{MINE}/message-store", headers=auth(token))
    assert seen.status_code == 200, seen.text
    assert [m["id"] for m in seen.json()["records"]] == [mine.id]  # alice's mailbox
    await mailbox.revoke_token(token_id)
    loop = asyncio.get_running_loop()
    revoked_at = loop.time()
    while (await api.get(f"{MINE}/message-store", headers=auth(token))).status_code == 200:
        assert loop.time() - revoked_at < TOKEN_CACHE_SECONDS + 1, "still accepted"
        await asyncio.sleep(0.05)
    error_of(await api.get(f"{MINE}/message-store", headers=auth(token)), 401, "OAU-149")
    # the tokens of the config keep working beside them
    assert (await api.get(f"{MINE}/message-store", headers=auth(ALICE))).status_code == 200


async def test_an_expired_token_or_one_for_a_user_gone_fails(
    api: httpx.AsyncClient, mailbox: Mailbox, clock: ManualClock
) -> None:
    expiring, _ = await keep_token(mailbox, expires_at=clock.now() + timedelta(hours=1))
    orphan, _ = await keep_token(mailbox, extension_id=555)  # no such user in the config
    assert (await api.get(f"{MINE}/message-store", headers=auth(expiring))).status_code == 200
    error_of(await api.get(f"{MINE}/message-store", headers=auth(orphan)), 401, "OAU-149")
    clock.advance(hours=2)
    await asyncio.sleep(TOKEN_CACHE_SECONDS + 0.1)
    error_of(await api.get(f"{MINE}/message-store", headers=auth(expiring)), 401, "OAU-149")


# -- the operators' routes ----------------------------------------------------------------------


async def test_an_admin_cancels_retries_deletes_and_restores(
    api: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    as_admin = auth(ADMIN)
    queued = await mailbox.create(fax())
    done = await api.post(
        f"{OPS}/messages/{queued.id}/cancel", json={"reason": "wrong number"}, headers=as_admin
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["id"], body["messageStatus"]) == (queued.id, "SendingFailed")
    assert body["gatewayd"]["failureReason"] == "cancelled: wrong number (boss@example.com, API)"
    assert done.headers["x-rate-limit-group"] == "Medium"
    again = await api.post(f"{OPS}/messages/{queued.id}/retry", headers=as_admin)
    assert again.status_code == 201, again.text
    new = again.json()
    assert (new["messageStatus"], new["type"]) == ("Queued", "Fax")
    assert new["id"] != queued.id
    assert again.headers["location"].endswith(f"{OPS}/messages/{new['id']}")
    assert [m.id for m in api.queued] == [new["id"]]  # type: ignore[attr-defined]  # woken
    events = await mailbox.events(queued.id)
    assert events[-1].detail == {"retry": new["id"]}
    gone = await api.delete(f"{OPS}/messages/{queued.id}", headers=as_admin)
    assert (gone.status_code, gone.json()["availability"]) == (200, "Deleted")
    back = await api.post(f"{OPS}/messages/{queued.id}/restore", headers=as_admin)
    assert (back.status_code, back.json()["availability"]) == (200, "Alive")
    purged = await api.delete(f"{OPS}/messages/{queued.id}?purge=true", headers=as_admin)
    assert purged.json()["availability"] == "Purged"


async def test_what_operators_may_not_do(api: httpx.AsyncClient, mailbox: Mailbox) -> None:
    as_admin = auth(ADMIN)
    sent = await mailbox.create(fax())
    await mailbox.transition(sent.id, S.SENT, reason="sent")
    body = error_of(
        await api.post(f"{OPS}/messages/{sent.id}/cancel", headers=as_admin), 400, "CMN-101"
    )
    assert body["parameterName"] == "messageStatus"
    error_of(await api.post(f"{OPS}/messages/{sent.id}/retry", headers=as_admin), 400, "CMN-101")
    # not an admin: 403, whoever's the message
    mine = await mailbox.create(fax())
    error_of(await api.post(f"{OPS}/messages/{mine.id}/cancel"), 403, "CMN-408")
    error_of(await api.get(f"{OPS}/status"), 403, "CMN-408")
    error_of(await api.get(f"{OPS}/status", headers={"Authorization": ""}), 401, "CMN-405")
    # any extension of the admin's account; no such message: 404
    bobs = await mailbox.create(sms(extension_id=OTHER_EXTENSION))
    cancelled = await api.post(f"{OPS}/messages/{bobs.id}/cancel", headers=as_admin)
    assert cancelled.json()["messageStatus"] == "SendingFailed"
    error_of(await api.post(f"{OPS}/messages/12345/cancel", headers=as_admin), 404, "CMN-102")
    error_of(await api.post(f"{OPS}/messages/abc/cancel", headers=as_admin), 404, "CMN-102")
    body = error_of(
        await api.post(f"{OPS}/messages/{mine.id}/cancel", json={"reason": ""}, headers=as_admin),
        400,
        "CMN-101",
    )
    assert (await mailbox.get(mine.id)).message_status is S.QUEUED


async def test_another_accounts_message_is_not_found(
    mailbox: Mailbox,
    settings: Settings,
) -> None:
    ours = await mailbox.create(fax())
    other = await mailbox.create(replace(fax(), account_id=ACCOUNT + 1))  # the admin's is 1
    server = ApiServer(app_for(mailbox, settings), settings)
    await server.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server.port}", headers=auth(ADMIN)
        ) as client:
            error_of(await client.post(f"{OPS}/messages/{other.id}/cancel"), 404, "CMN-102")
            assert (await client.post(f"{OPS}/messages/{ours.id}/cancel")).status_code == 200
    finally:
        await server.stop()
    assert (await mailbox.get(other.id)).message_status is S.QUEUED


async def test_the_status_and_health_endpoints(api: httpx.AsyncClient, mailbox: Mailbox) -> None:
    failed = await mailbox.create(fax())
    await mailbox.transition(
        failed.id, S.SENDING_FAILED, reason="no answer", fax_error_code=FaxErrorCode.NO_ANSWER
    )
    status = await api.get(f"{OPS}/status", headers=auth(ADMIN))
    assert status.status_code == 200, status.text
    document = status.json()
    assert document["source"] == "mailbox"  # no daemon behind this app
    assert document["daemon"]["running"] is False
    (failure,) = document["failures"]
    assert (failure["id"], failure["code"], failure["reason"]) == (
        failed.id,
        "NoAnswer",
        "no answer",
    )
    queue = {q["type"]: q["depth"] for q in document["queue"]}
    assert queue == {"SMS": 0, "Fax": 0}
    healthy = await api.get("/healthz", headers={"Authorization": ""})
    assert (healthy.status_code, healthy.json()) == (200, {"status": "ok"})
    ready = await api.get("/readyz", headers={"Authorization": ""})
    assert (ready.status_code, ready.json()) == (
        200,
        {"ready": True, "checks": [{"name": "mailbox", "ok": True}]},
    )


async def test_openapi_declares_the_bearer_token_on_every_operation(
    api: httpx.AsyncClient,
) -> None:
    schema = (await api.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["bearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token: `gatewayd token create --user EMAIL` (docs/api.md)",
    }
    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert operations
    assert all(op["security"] == [{"bearerToken": []}] for op in operations)
    ids = {op["operationId"] for op in operations}
    assert ids >= {
        "getGatewayStatus",
        "cancelMessage",
        "retryMessage",
        "restoreMessage",
        "operatorDeleteMessage",
    }
    assert all(path.startswith(("/restapi/v1.0/", "/gatewayd/v1/")) for path in schema["paths"])
    assert not {"/metrics", "/healthz", "/readyz"} & set(schema["paths"])
