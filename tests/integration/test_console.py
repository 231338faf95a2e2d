"""The web console over real HTTP (the API's uvicorn on a loopback port, httpx as the
browser) on a real mailbox (SQLite and PostgreSQL): sign-in, sessions, CSRF and
lock-out; what each user may see (another extension's message is "not found"); the
dashboard and its data; the list, conversations, a message, its pages and actions;
sending an SMS and a fax (with a preview by the real render pool); escaping; the
security headers; and the console turned off."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from gatewayd.api.app import ApiServer, create_app
from gatewayd.api.auth import Authenticator
from gatewayd.api.deps import Context
from gatewayd.clock import ManualClock
from gatewayd.config.settings import (
    ApiSettings,
    ConsoleSettings,
    HostPort,
    LogSettings,
    MailboxSettings,
    Settings,
    User,
)
from gatewayd.console import mount
from gatewayd.credentials import hash_password
from gatewayd.mailbox import Mailbox, Message, PartAccepted, ReceiptIn
from gatewayd.metrics import Metrics
from gatewayd.model import (
    Availability,
    Direction,
    MessageStatus,
    MessageType,
    PartStatus,
    ReadStatus,
)
from gatewayd.render.job import Renderer
from tests import documents
from tests.conftest import ACCOUNT, EXTENSION, OTHER_EXTENSION, OUR_NUMBER, fax, sms
from tests.smtp_client import free_port

PASSWORD = "correct horse battery staple"
ADMIN_EXTENSION = 109
HASH = hash_password(PASSWORD)
USERS = (
    User(
        ("alice@example.com",),
        ACCOUNT,
        EXTENSION,
        "101",
        "Alice",
        sms_numbers=(OUR_NUMBER,),
        fax_number="+4930123457",
        smtp_password_hash=HASH,
    ),
    User(
        ("bob@example.com",),
        ACCOUNT,
        OTHER_EXTENSION,
        "102",
        "Bob",
        sms_numbers=("+4930123458",),
        smtp_password_hash=HASH,
    ),
    User(
        ("boss@example.com",),
        ACCOUNT,
        ADMIN_EXTENSION,
        "109",
        "Boss",
        smtp_password_hash=HASH,
        api_admin=True,
    ),
    User(("nopass@example.com",), ACCOUNT, 110, "110", "No password"),
)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def renderer() -> Iterator[Renderer]:
    import asyncio

    pool = Renderer(1)
    yield pool
    asyncio.run(pool.close())


@pytest.fixture
def settings(mailbox_settings: MailboxSettings, tmp_path: Path) -> Settings:
    return Settings(
        mailbox=mailbox_settings,
        api=ApiSettings(listen=HostPort("127.0.0.1", free_port()), rate_limits=False),
        console=ConsoleSettings(max_failures=3, lockout=600.0),
        log=LogSettings(file=tmp_path / "gatewayd.log"),
        users=USERS,
    )


class Console:
    """The console's address and what the test saw queued."""

    def __init__(self, base: str, queued: list[Message], context: Context) -> None:
        self.base = base
        self.queued = queued
        self.context = context

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, timeout=60, follow_redirects=False)


@pytest.fixture
async def console(
    mailbox: Mailbox, settings: Settings, renderer: Renderer
) -> AsyncIterator[Console]:
    queued: list[Message] = []
    context = Context(
        mailbox, Authenticator(settings, mailbox), on_queued=queued.extend, renderer=renderer
    )
    app = create_app(context, Metrics())
    mount(app, context)
    server = ApiServer(app, settings)
    await server.start()
    yield Console(f"http://127.0.0.1:{server.port}", queued, context)
    await server.stop()


async def csrf_of(client: httpx.AsyncClient, path: str) -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


@asynccontextmanager
async def signed_in(console: Console, email: str) -> AsyncIterator[httpx.AsyncClient]:
    async with console.client() as client:
        token = await csrf_of(client, "/console/login")
        answer = await client.post(
            "/console/login", data={"email": email, "password": PASSWORD, "csrf": token}
        )
        assert answer.status_code == 303, answer.text
        yield client


async def post(client: httpx.AsyncClient, path: str, page: str, **data: Any) -> httpx.Response:
    """POST a form of ``page`` (its CSRF token with it)."""
    return await client.post(path, data={"csrf": await csrf_of(client, page), **data})


def tiff(pages: int = 2) -> bytes:
    images = [Image.new("1", (1728, 1146), 1) for _ in range(pages)]
    out = io.BytesIO()
    images[0].save(
        out,
        format="TIFF",
        compression="group4",
        dpi=(204, 98),
        save_all=True,
        append_images=images[1:],
    )
    return out.getvalue()


# -- signing in ---------------------------------------------------------------------------


async def test_sign_in_sets_a_safe_cookie_and_sign_out_ends_the_session(console: Console) -> None:
    async with console.client() as client:
        schema = (await client.get("/openapi.json")).json()
        assert schema["paths"]
        assert not [p for p in schema["paths"] if p.startswith("/console")]
        first = await client.get("/console/messages")
        assert first.status_code == 303
        assert first.headers["location"] == "/console/login?next=%2Fconsole%2Fmessages"
        token = await csrf_of(client, "/console/login")
        answer = await client.post(
            "/console/login",
            data={
                "email": "Alice@Example.com",
                "password": PASSWORD,
                "csrf": token,
                "next": "/console/messages",
            },
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/messages"
        cookie = next(c for c in answer.headers.get_list("set-cookie") if "gwd_session=" in c)
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Path=/console/" in cookie
        assert "Secure" not in cookie  # plain HTTP here
        listed = await client.get("/console/messages")
        assert listed.status_code == 200
        assert "Alice" in listed.text
        session = client.cookies["gwd_session"]
        signed_out = await post(client, "/console/logout", "/console/messages")
        assert signed_out.status_code == 303
        client.cookies.set("gwd_session", session, path="/console/")  # a copy kept
        again = await client.get("/console/messages")
        assert again.status_code == 303  # the session is gone on the server too


async def test_a_user_whose_password_is_taken_away_is_signed_out(
    console: Console, settings: Settings
) -> None:
    async with signed_in(console, "bob@example.com") as bob:
        assert (await bob.get("/console/messages")).status_code == 200
        users = tuple(
            replace(u, smtp_password_hash="") if u.extension_id == OTHER_EXTENSION else u
            for u in settings.users
        )
        console.context.auth.reload(replace(settings, users=users))  # what SIGHUP does
        assert (await bob.get("/console/messages")).status_code == 303


async def test_wrong_passwords_lock_the_address_out(console: Console) -> None:
    async with console.client() as client:
        for _ in range(3):
            token = await csrf_of(client, "/console/login")
            wrong = await client.post(
                "/console/login",
                data={"email": "alice@example.com", "password": "nope", "csrf": token},
            )
            assert wrong.status_code == 401
            assert "Wrong e-mail address or password." in wrong.text
        token = await csrf_of(client, "/console/login")
        locked = await client.post(
            "/console/login",
            data={"email": "alice@example.com", "password": PASSWORD, "csrf": token},
        )
        assert locked.status_code == 429
        assert "Too many failed sign-ins" in locked.text
        assert "gwd_session" not in client.cookies
    # another address is not locked, and an unknown one is answered like a wrong password
    async with signed_in(console, "bob@example.com") as bob:
        assert (await bob.get("/console/messages")).status_code == 200
    async with console.client() as client:
        for email in ("nobody@example.com", "nopass@example.com"):
            token = await csrf_of(client, "/console/login")
            answer = await client.post(
                "/console/login", data={"email": email, "password": PASSWORD, "csrf": token}
            )
            assert answer.status_code == 401
            assert "Wrong e-mail address or password." in answer.text


async def test_a_form_without_its_token_is_refused(console: Console, mailbox: Mailbox) -> None:
    message = await mailbox.create(sms(direction=Direction.INBOUND))
    async with console.client() as client:
        await client.get("/console/login")
        refused = await client.post(
            "/console/login",
            data={"email": "alice@example.com", "password": PASSWORD, "csrf": "guess"},
        )
        assert refused.status_code == 403
        assert "gwd_session" not in client.cookies
    async with signed_in(console, "alice@example.com") as alice:
        for data in ({}, {"csrf": "0" * 40}):
            answer = await alice.post(f"/console/messages/{message.id}/delete", data=data)
            assert answer.status_code == 403
            assert "This form has expired" in answer.text
        assert (await mailbox.get(message.id)).availability is Availability.ALIVE
        # the token from a page, or as htmx sends it, is accepted
        page = await alice.get("/console/messages")
        token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        done = await alice.post(
            f"/console/messages/{message.id}/delete", headers={"X-CSRF-Token": token}
        )
        assert done.status_code == 303
    assert (await mailbox.get(message.id)).availability is Availability.DELETED


# -- who sees what ------------------------------------------------------------------------


async def test_another_extensions_message_is_not_found(console: Console, mailbox: Mailbox) -> None:
    mine = await mailbox.create(sms(text="for alice"))
    theirs = await mailbox.create(fax(extension_id=OTHER_EXTENSION))
    async with signed_in(console, "alice@example.com") as alice:
        listed = await alice.get("/console/messages")
        assert f'data-message="{mine.id}"' in listed.text
        assert f'data-message="{theirs.id}"' not in listed.text
        [document] = theirs.attachments
        for path in (
            f"/console/messages/{theirs.id}",
            f"/console/messages/{theirs.id}/attachments/{document.id}",
            f"/console/messages/{theirs.id}/pages/1.png",
            "/console/messages/12345",
            "/console/messages/abc",
        ):
            answer = await alice.get(path)
            assert answer.status_code == 404, path
            assert "not yours to see" in answer.text
        for what in ("read", "delete", "cancel"):
            answer = await post(alice, f"/console/messages/{theirs.id}/{what}", "/console/messages")
            assert answer.status_code == 404
        assert (await alice.get("/console/dashboard")).status_code == 404  # operators only
        filtered = await alice.get("/console/messages", params={"extension": OTHER_EXTENSION})
        assert f'data-message="{theirs.id}"' not in filtered.text
    assert (await mailbox.get(theirs.id)).message_status is MessageStatus.QUEUED
    async with signed_in(console, "boss@example.com") as boss:
        listed = await boss.get("/console/messages", params={"extension": OTHER_EXTENSION})
        assert f'data-message="{theirs.id}"' in listed.text
        assert f'data-message="{mine.id}"' not in listed.text
        shown = await boss.get(f"/console/messages/{theirs.id}")
        assert shown.status_code == 200
        assert "extension 102 (Bob)" in shown.text
        # an administrator looking does not mark someone else's message read
        assert (await mailbox.get(theirs.id)).read_status is ReadStatus.UNREAD


async def test_message_text_is_escaped_everywhere(console: Console, mailbox: Mailbox) -> None:
    evil = "<script>alert(1)</script>"
    message = await mailbox.create(sms(text=evil, direction=Direction.INBOUND))
    async with signed_in(console, "alice@example.com") as alice:
        for path in (
            "/console/messages",
            "/console/conversations",
            f"/console/conversations/{message.conversation_id}",
            f"/console/messages/{message.id}",
        ):
            page = await alice.get(path)
            assert page.status_code == 200, path
            assert "<script>alert(1)" not in page.text, path
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "style-src 'self'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
        # no inline script or style anywhere in the page
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)
        assert "<style" not in page.text
        assert " style=" not in page.text


# -- the mailbox ----------------------------------------------------------------------------


async def test_the_list_filters_pages_and_shows_unread_in_bold(
    console: Console, mailbox: Mailbox, clock: ManualClock
) -> None:
    made = []
    for number in range(30):
        clock.advance(seconds=1)
        made.append(await mailbox.create(sms(text=f"n{number}")))
    inbound = await mailbox.create(sms(to="+4915199999999", direction=Direction.INBOUND))
    document = await mailbox.create(fax())
    async with signed_in(console, "alice@example.com") as alice:
        first = (await alice.get("/console/messages")).text
        assert "32 messages · page 1 of 2" in first
        assert f'data-message="{made[0].id}"' not in first  # the oldest is on page 2
        second = (await alice.get("/console/messages", params={"page": 2})).text
        assert f'data-message="{made[0].id}"' in second
        only_fax = (await alice.get("/console/messages", params={"type": "Fax"})).text
        assert re.findall(r'data-message="(\d+)"', only_fax) == [str(document.id)]
        by_number = (await alice.get("/console/messages", params={"phone": "0151 99999999"})).text
        assert re.findall(r'data-message="(\d+)"', by_number) == [str(inbound.id)]
        unread = await alice.get(
            "/console/messages", params={"direction": "Inbound", "read": "Unread"}
        )
        assert f'class="unread alive" data-message="{inbound.id}"' in unread.text
        bad = await alice.get("/console/messages", params={"type": "Telegram", "from": "soon"})
        assert "type: &#39;Telegram&#39; is not one of" in bad.text
        assert "from: &#39;soon&#39; is not a date (YYYY-MM-DD)" in bad.text
        tomorrow = (clock.now() + timedelta(days=1)).date().isoformat()
        none = await alice.get("/console/messages", params={"from": tomorrow})
        assert "No messages." in none.text
        rows = await alice.get("/console/messages", params={"type": "Fax", "part": "rows"})
        assert rows.text.startswith('<div id="rows" hx-get="/console/messages?type=Fax')
        assert "<html" not in rows.text


async def test_read_delete_restore_from_the_list(console: Console, mailbox: Mailbox) -> None:
    message = await mailbox.create(sms(direction=Direction.INBOUND))
    async with signed_in(console, "alice@example.com") as alice:
        for what, check in (
            ("read", lambda m: m.read_status is ReadStatus.READ),
            ("unread", lambda m: m.read_status is ReadStatus.UNREAD),
            ("delete", lambda m: m.availability is Availability.DELETED),
            ("restore", lambda m: m.availability is Availability.ALIVE),
        ):
            answer = await post(
                alice,
                f"/console/messages/{message.id}/{what}",
                "/console/messages",
                next="/console/messages?type=SMS",
            )
            assert answer.status_code == 303
            assert answer.headers["location"] == "/console/messages?type=SMS"
            assert check(await mailbox.get(message.id)), what
        elsewhere = await post(
            alice,
            f"/console/messages/{message.id}/read",
            "/console/messages",
            next="https://evil.example/",
        )
        assert elsewhere.headers["location"] == f"/console/messages/{message.id}"
        deleted = await post(alice, f"/console/messages/{message.id}/delete", "/console/messages")
        assert deleted.status_code == 303
        shown = await alice.get("/console/messages", params={"availability": "Deleted"})
        assert f'data-message="{message.id}"' in shown.text
        assert 'data-action="restore"' in shown.text


async def test_conversations_thread_sms_both_ways(
    console: Console, mailbox: Mailbox, clock: ManualClock
) -> None:
    out = await mailbox.create(sms(to="+4915100000001", text="Are you there?"))
    clock.advance(seconds=1)
    back = await mailbox.create(sms(to="+4915100000001", text="Yes!", direction=Direction.INBOUND))
    other = await mailbox.create(sms(to="+4915100000002", text="Other thread"))
    assert out.conversation_id == back.conversation_id != other.conversation_id
    async with signed_in(console, "alice@example.com") as alice:
        threads = (await alice.get("/console/conversations")).text
        assert threads.count("<li class=") == 2
        assert "Yes!" in threads
        assert "Are you there?" not in threads
        thread = (await alice.get(f"/console/conversations/{out.conversation_id}")).text
        assert thread.index("Are you there?") < thread.index("Yes!")
        assert 'class="bubble out' in thread
        assert 'class="bubble in' in thread
        assert 'name="to" value="+4915100000001"' in thread  # the reply form
    async with signed_in(console, "bob@example.com") as bob:
        assert (await bob.get(f"/console/conversations/{out.conversation_id}")).status_code == 404


async def test_a_message_page_has_its_timeline_parts_and_log_lines(
    console: Console, mailbox: Mailbox, settings: Settings, tmp_path: Path
) -> None:
    message = await mailbox.create(sms(text="Tracked"))
    await mailbox.record_acceptance(PartAccepted(message.id, 0, 1, "simulator", "ab12"))
    await mailbox.record_receipt(ReceiptIn("simulator", ("ab12",), PartStatus.DELIVERED))
    assert settings.log.file is not None
    log_file = settings.log.file
    log_file.write_text(
        f'{{"timestamp": "2026-01-05T09:00:00Z", "level": "info", "event": "sms.submitted", '
        f'"message_id": {message.id}, "link": "simulator"}}\n'
        f'{{"timestamp": "2026-01-05T09:00:01Z", "level": "info", "event": "sms.other", '
        f'"message_id": {message.id + 1}}}\nnot json\n'
    )
    async with signed_in(console, "alice@example.com") as alice:
        page = (await alice.get(f"/console/messages/{message.id}")).text
        assert "accepted by the SMSC" in page
        assert "receipt: Delivered" in page
        assert "simulator ab12" in page
        assert "Log lines" not in page  # for administrators only
        assert "hx-trigger" not in page.split('id="message"')[1].split(">")[0]  # final: still
    assert (await mailbox.get(message.id)).read_status is ReadStatus.READ  # opened: read
    async with signed_in(console, "boss@example.com") as boss:
        page = (await boss.get(f"/console/messages/{message.id}")).text
        assert "Log lines" in page
        assert "sms.submitted  link=simulator" in page
        assert "sms.other" not in page


async def test_cancel_and_retry_from_a_message(console: Console, mailbox: Mailbox) -> None:
    message = await mailbox.create(sms(text="Oops"))
    async with signed_in(console, "alice@example.com") as alice:
        page = (await alice.get(f"/console/messages/{message.id}")).text
        assert 'data-action="cancel"' in page
        assert 'data-action="retry"' not in page
        cancelled = await post(
            alice, f"/console/messages/{message.id}/cancel", f"/console/messages/{message.id}"
        )
        assert cancelled.status_code == 303
        failed = await mailbox.get(message.id)
        assert failed.message_status is MessageStatus.SENDING_FAILED
        assert failed.failure_reason == "cancelled: by alice@example.com in the console"
        again = await post(
            alice, f"/console/messages/{message.id}/cancel", f"/console/messages/{message.id}"
        )
        assert again.status_code == 409
        assert "only a Queued outbound SMS or fax can be cancelled" in again.text
        retried = await post(
            alice, f"/console/messages/{message.id}/retry", f"/console/messages/{message.id}"
        )
        assert retried.status_code == 303
        new_id = int(retried.headers["location"].rsplit("/", 1)[1])
        assert [m.id for m in console.queued] == [new_id]  # the dispatchers were woken
        new = await mailbox.get(new_id)
        assert (new.message_status, new.subject) == (MessageStatus.QUEUED, "Oops")
        shown = (await alice.get(f"/console/messages/{new_id}")).text
        assert f"retry of {message.id}" in shown


async def test_fax_pages_and_attachments(
    console: Console, mailbox: Mailbox, tmp_path: Path
) -> None:
    pdf = documents.dense_text_pdf(1)
    message = await mailbox.create(fax(document=pdf))
    async with signed_in(console, "alice@example.com") as alice:
        page = (await alice.get(f"/console/messages/{message.id}")).text
        assert "The pages appear here once the fax is rendered." in page
        path = tmp_path / "fax.tif"
        path.write_bytes(tiff(2))
        await mailbox.add_rendered(message.id, path, 2)
        page = (await alice.get(f"/console/messages/{message.id}")).text
        thumbs = re.findall(r'<img src="([^"]+)"', page)
        assert len(thumbs) == 2
        thumb = await alice.get(thumbs[1].replace("&amp;", "&"))
        assert thumb.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(thumb.content))
        assert image.width == 220
        true_height = round(1146 * 204 / 98)  # 98 rows an inch drawn as 204: about twice
        assert abs(image.height - 220 * true_height / 1728) < 1.5
        full = await alice.get(f"/console/messages/{message.id}/pages/1.png?size=full")
        assert Image.open(io.BytesIO(full.content)).size == (1728, true_height)
        again = await alice.get(thumbs[1].replace("&amp;", "&"))  # from the disk cache
        assert again.content == thumb.content
        assert (await alice.get(f"/console/messages/{message.id}/pages/3.png")).status_code == 404
        source = next(a for a in message.attachments if a.file_name == "contract.pdf")
        download = await alice.get(f"/console/messages/{message.id}/attachments/{source.id}")
        assert download.content == pdf
        assert (
            download.headers["content-disposition"] == "attachment; filename*=UTF-8''contract.pdf"
        )
        assert download.headers["content-security-policy"].startswith("sandbox")


# -- sending ----------------------------------------------------------------------------


async def test_sending_an_sms_counts_parts_and_queues_it(
    console: Console, mailbox: Mailbox
) -> None:
    async with signed_in(console, "alice@example.com") as alice:
        form = (await alice.get("/console/send/sms")).text
        assert f'<option value="{OUR_NUMBER}"' in form
        token = CSRF.search(form).group(1)  # type: ignore[union-attr]
        for text, expected in (
            ("Hello", 'data-parts="1" data-alphabet="GSM-7"'),
            ("x" * 161, 'data-parts="2" data-alphabet="GSM-7"'),
            ("Grüße €", 'data-parts="1" data-alphabet="GSM-7"'),
            ("Привет", 'data-parts="1" data-alphabet="UCS-2"'),
            ("я" * 71, 'data-parts="2" data-alphabet="UCS-2"'),
            ("x" * 1600, 'data-parts="11" data-alphabet="GSM-7"'),
        ):
            count = await alice.post(
                "/console/send/sms/count",
                data={"text": text},
                headers={"X-CSRF-Token": token, "HX-Request": "true"},
            )
            assert expected in count.text, text
        assert "too long: at most 10 parts" in count.text
        refused = await alice.post("/console/send/sms/count", data={"text": "x"})
        assert refused.status_code == 403
        bad = await alice.post(
            "/console/send/sms",
            data={"csrf": token, "from": OUR_NUMBER, "to": "+999", "text": "Hi"},
        )
        assert bad.status_code == 400
        assert "+999:" in bad.text
        not_mine = await alice.post(
            "/console/send/sms",
            data={"csrf": token, "from": "+4930123458", "to": "+4915112345678", "text": "Hi"},
        )
        assert "+4930123458 is not one of your SMS numbers." in not_mine.text
        sent = await alice.post(
            "/console/send/sms",
            data={"csrf": token, "from": OUR_NUMBER, "to": "015112345678", "text": "Hi <b>Bob</b>"},
        )
        assert sent.status_code == 303
        [made] = console.queued
        assert sent.headers["location"] == f"/console/conversations/{made.conversation_id}"
        stored = await mailbox.get(made.id)
        assert (stored.type, stored.message_status, stored.origin) == (
            MessageType.SMS,
            MessageStatus.QUEUED,
            "console",
        )
        assert stored.to[0].phone_number == "+4915112345678"
        assert stored.subject == "Hi <b>Bob</b>"
        assert stored.sender_email == "alice@example.com"


async def test_a_fax_is_previewed_then_sent(console: Console, mailbox: Mailbox) -> None:
    pdf = documents.dense_text_pdf(2)
    async with signed_in(console, "alice@example.com") as alice:
        token = await csrf_of(alice, "/console/send/fax")
        fields = {
            "csrf": token,
            "to": "+4940123456, +4989123456",
            "note": "Please sign",
            "cover": "on",
            "resolution": "Low",
        }
        files = [("documents", ("contract.pdf", pdf, "application/pdf"))]
        preview = await alice.post(
            "/console/send/fax",
            data={**fields, "action": "preview"},
            files=files,
            headers={"HX-Request": "true"},
        )
        assert preview.status_code == 200, preview.text
        assert "Preview: 3 pages" in preview.text  # the cover page and two
        assert "<html" not in preview.text  # the fragment htmx swaps in
        images = re.findall(r'<img src="([^"]+)"', preview.text)
        assert len(images) == 3
        cover = await alice.get(images[0])
        assert Image.open(io.BytesIO(cover.content)).width == 220
        async with signed_in(console, "bob@example.com") as bob:
            assert (await bob.get(images[0])).status_code == 404  # not his preview
        assert console.queued == []  # nothing queued by a preview
        refused = await alice.post(
            "/console/send/fax",
            data={**fields, "to": "+4940123456", "action": "send"},
            files=[("documents", ("x.exe", b"MZ\x90\x00", "x/y"))],
        )
        assert refused.status_code == 400
        assert "x.exe cannot be faxed" in refused.text
        sent = await alice.post("/console/send/fax", data={**fields, "action": "send"}, files=files)
        assert sent.status_code == 303
        assert len(console.queued) == 2  # one per number
        made = await mailbox.get(console.queued[0].id)
        assert (made.type, made.cover_page_text, made.origin) == (
            MessageType.FAX,
            "Please sign",
            "console",
        )
        assert made.fax_resolution is not None
        assert made.fax_resolution.value == "Low"
        assert [a.file_name for a in made.attachments] == ["contract.pdf"]


# -- the dashboard ----------------------------------------------------------------------


async def test_the_dashboard_shows_queue_failures_and_charts_from_events(
    console: Console, mailbox: Mailbox, clock: ManualClock
) -> None:
    queued = await mailbox.create(fax())
    clock.advance(seconds=90)
    failed = await mailbox.create(sms(text="doomed", to="+4915100000009"))
    await mailbox.cancel(failed.id, reason="test")
    theirs_elsewhere = replace(sms(), account_id=ACCOUNT + 1)
    await mailbox.create(theirs_elsewhere)
    async with signed_in(console, "boss@example.com") as boss:
        page = (await boss.get("/console/dashboard")).text
        assert 'hx-get="/console/dashboard/live"' in page
        assert 'data-series="/console/dashboard/series?range=hour"' in page
        live = (await boss.get("/console/dashboard/live")).text
        assert re.search(r'data-queue="Fax"><td>Fax</td><td>1</td>\s*<td>90 s</td>', live)
        assert f'href="/console/messages/{failed.id}">SMS to +4915100000009' in live
        assert "cancelled: test" in live
        assert f'data-message="{queued.id}"' in live
        assert "No SMPP link runs in this process." in live  # no LiveView in this test
        series = (await boss.get("/console/dashboard/series", params={"range": "hour"})).json()
        assert len(series["x"]) == 60
        assert series["bucket"] == 60
        totals = {s["label"]: sum(s["values"]) for s in series["series"]}
        assert totals == {
            "Queued": 2,
            "Sent": 0,
            "Delivered": 0,
            "DeliveryFailed": 0,
            "SendingFailed": 1,
            "Received": 0,
        }  # account 2's SMS not counted
        day = (await boss.get("/console/dashboard/series", params={"range": "day"})).json()
        assert len(day["x"]) == 96
        assert (
            await boss.get("/console/dashboard/series", params={"range": "year"})
        ).status_code == 404


# -- the console turned off ------------------------------------------------------------------


async def test_the_console_can_be_turned_off(tmp_path: Path, mailbox: Mailbox) -> None:
    from gatewayd.daemon import Daemon

    settings = Settings(
        mailbox=MailboxSettings(data_dir=tmp_path / "off"),
        api=ApiSettings(listen=HostPort("127.0.0.1", free_port())),
        console=ConsoleSettings(enabled=False),
        smtp=replace(Settings().smtp, listen=()),
        users=USERS,
    )
    del mailbox
    daemon = Daemon(settings)
    await daemon.startup()
    try:
        assert daemon.api is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.api.port}") as client:
            assert (await client.get("/console/login")).status_code == 404
            assert (await client.get("/metrics")).status_code == 200
    finally:
        await daemon.shutdown()


async def test_over_tls_the_session_cookie_is_secure(
    mailbox: Mailbox, settings: Settings, tmp_path: Path
) -> None:
    import ssl

    import trustme

    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert))
    certificate.private_key_pem.write_to_path(str(key))
    secured = replace(settings, api=replace(settings.api, tls_cert=cert, tls_key=key))
    context = Context(mailbox, Authenticator(secured, mailbox))
    app = create_app(context, Metrics())
    mount(app, context)
    server = ApiServer(app, secured)
    await server.start()
    trusted = ssl.create_default_context()
    authority.configure_trust(trusted)
    try:
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{server.port}", verify=trusted
        ) as client:
            token = await csrf_of(client, "/console/login")
            answer = await client.post(
                "/console/login",
                data={"email": "alice@example.com", "password": PASSWORD, "csrf": token},
            )
            assert answer.status_code == 303
            cookie = next(c for c in answer.headers.get_list("set-cookie") if "gwd_session=" in c)
            assert "; Secure" in cookie
            assert "HttpOnly" in cookie
    finally:
        await server.stop()
