"""Admission from plain values: every refusal code, what each carries for a door to
word, the messages admitted, and how each door words every code (no sockets)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gatewayd.admission import Channel, Code, Refusal, destination, destinations, fax, sms
from gatewayd.admission.fax import COVER_TEXT_LIMIT, FaxOptions, Upload
from gatewayd.admission.mime import MimeLimits, parse
from gatewayd.api.send import _error as api_error
from gatewayd.config.settings import DestinationPolicy, FaxSettings, Settings, SmsSettings, User
from gatewayd.destinations import parse_number
from gatewayd.ingress import replies
from gatewayd.mailbox import NewMessage
from gatewayd.model import Direction, FaxResolution, MessageType
from gatewayd.render.kinds import describe, supported

DOCS = Path(__file__).resolve().parents[1] / "data" / "docs"
MOBILE = "+4915112345678"
FAX_TO = "+4940123456"
ALICE = User(
    emails=("alice@example.com",),
    account_id=1,
    extension_id=101,
    extension_number="101",
    name="Alice",
    sms_numbers=("+4930123456", "+4930123499"),
    fax_number="+4930123457",
)
BOB = User(
    emails=("bob@example.com",), account_id=1, extension_id=102, extension_number="102", name=""
)
SETTINGS = Settings(
    sms=SmsSettings(max_parts=10),
    fax=FaxSettings(max_attachments=2, max_pages=6, max_input_bytes=200_000),
    users=(ALICE, BOB),
)


def doc(name: str) -> bytes:
    return (DOCS / name).read_bytes()


def pdf(name: str = "one-page.pdf") -> Upload:
    return Upload(name, "application/pdf", doc(name))


async def send_sms(
    text: str = "Hello",
    numbers: Sequence[str] = (MOBILE,),
    *,
    user: User = ALICE,
    settings: Settings = SETTINGS,
    **options: Any,
) -> list[NewMessage]:
    return sms.messages(text, list(numbers), user=user, settings=settings, origin="test", **options)


async def send_fax(
    uploads: Sequence[Upload] = (),
    numbers: Sequence[str] = (FAX_TO,),
    *,
    settings: Settings = SETTINGS,
    office: bool = False,
    **options: Any,
) -> list[NewMessage]:
    return await fax.messages(
        list(uploads),
        list(numbers),
        user=ALICE,
        settings=settings,
        options=FaxOptions(**options),
        office=office,
        origin="test",
    )


async def parse_mime(raw: bytes, limits: MimeLimits) -> object:
    return parse(raw, limits)


def nested(levels: int) -> bytes:
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
        for n in range(levels)
    )
    return head + b"Content-Type: text/plain\r\n\r\nhello\r\n"


def many_parts(count: int) -> bytes:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(count))
    return b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"


async def refused(attempt: Awaitable[object]) -> Refusal:
    with pytest.raises(Refusal) as caught:
        await attempt
    return caught.value


# Each code, from plain values: (the code, an attempt, what the refusal carries).
CASES: list[tuple[Code, Callable[[], Awaitable[object]], dict[str, Any]]] = [
    (Code.NO_SMS_NUMBER, lambda: send_sms(user=BOB), {"value": "bob@example.com"}),
    (Code.NOT_YOUR_NUMBER, lambda: send_sms(from_number="+4930999999"), {"value": "+4930999999"}),
    (Code.NO_DESTINATION, lambda: send_sms(numbers=()), {}),
    (
        Code.TOO_MANY_DESTINATIONS,
        lambda: send_sms(numbers=(MOBILE, FAX_TO), max_destinations=1),
        {"count": 2, "limit": 1},
    ),
    (Code.BAD_NUMBER, lambda: send_sms(numbers=("12",)), {"value": "12"}),
    (
        Code.DESTINATION_REFUSED,
        lambda: send_fax([pdf()], numbers=("09001234567",)),
        {"value": "09001234567"},
    ),
    (Code.NO_TEXT, lambda: send_sms(""), {}),
    (Code.TEXT_TOO_LONG, lambda: send_sms("a" * 153 * 11), {"count": 11, "limit": 10}),
    (
        Code.TOO_MANY_UNITS,
        lambda: send_sms("😀" * 501, max_units=1000),
        {"count": 1002, "limit": 1000},
    ),
    (
        Code.COVER_TEXT_TOO_LONG,
        lambda: send_fax([pdf()], cover_text="x" * (COVER_TEXT_LIMIT + 1)),
        {"count": COVER_TEXT_LIMIT + 1, "limit": COVER_TEXT_LIMIT},
    ),
    (Code.NO_FAX_CONTENT, lambda: send_fax(cover_index=1), {}),
    (Code.TOO_MANY_DOCUMENTS, lambda: send_fax([pdf(), pdf(), pdf()]), {"count": 3, "limit": 2}),
    (Code.EMPTY_DOCUMENT, lambda: send_fax([pdf(), Upload("a.pdf", "application/pdf", b"")]), {}),
    (
        Code.DOCUMENT_TOO_LARGE,
        lambda: send_fax([Upload("big.txt", "text/plain", b"x" * 200_001)]),
        {"count": 200_001, "limit": 200_000},
    ),
    (
        Code.UNSUPPORTED_DOCUMENT,
        lambda: send_fax([Upload("archive.zip", "application/zip", doc("archive.zip"))]),
        {"reason": "PDF, PNG, JPEG, GIF, TIFF, BMP, WebP, plain text and HTML"},
    ),
    (
        Code.UNREADABLE_DOCUMENT,
        lambda: send_fax([pdf(), pdf("encrypted.pdf")]),
        {"reason": "the PDF is password-protected"},
    ),
    (
        Code.TOO_MANY_PAGES,
        lambda: send_fax([pdf("three-pages.pdf"), pdf("three-pages.pdf")]),
        {"count": 7, "limit": 6},
    ),
    (
        Code.NESTED_TOO_DEEPLY,
        lambda: parse_mime(nested(1000), MimeLimits(depth=30, parts=1000)),
        {"limit": 30},
    ),
    (
        Code.TOO_MANY_PARTS,
        lambda: parse_mime(many_parts(20), MimeLimits(depth=30, parts=10)),
        {"limit": 10},
    ),
]


def test_every_code_has_a_case() -> None:
    assert [code for code, _, _ in CASES] == list(Code)


@pytest.mark.parametrize(("code", "attempt", "carried"), CASES, ids=[c for c, _, _ in CASES])
async def test_each_refusal(
    code: Code, attempt: Callable[[], Awaitable[object]], carried: dict[str, Any]
) -> None:
    refusal = await refused(attempt())
    assert refusal.code is code
    for name, value in carried.items():
        assert getattr(refusal, name) == value


async def test_a_refusal_names_the_document() -> None:
    empty = await refused(send_fax([pdf(), Upload(None, "application/pdf", b"")]))
    assert empty.document is not None
    assert (empty.document.index, empty.document.label) == (1, "attachment 2")
    broken = await refused(send_fax([pdf("damaged.pdf")]))
    assert broken.document is not None
    assert (broken.document.label, broken.reason) == ("damaged.pdf", "the PDF is damaged")


def test_numbers_are_parsed_checked_and_counted_once() -> None:
    found = destinations(["+49 151 1234 5678", "0151-12345678", FAX_TO], Channel.SMS, SETTINGS)
    assert [d.e164 for d in found] == [MOBILE, FAX_TO]
    policy = DestinationPolicy(allowed_countries=(49,))
    strict = replace(SETTINGS, sms=replace(SETTINGS.sms, policy=policy))
    abroad = parse_number("+33612345678", "DE")  # parsed already, as the SMTP door has it
    with pytest.raises(Refusal) as caught:
        destination(abroad, Channel.SMS, strict)
    assert caught.value.code is Code.DESTINATION_REFUSED
    assert "sms.policy.allowed_countries" in caught.value.reason
    assert destination(abroad, Channel.FAX, strict) == abroad  # the fax policy allows it


async def test_sms_checks_the_sender_then_the_numbers_then_the_text() -> None:
    first = await refused(send_sms("", ("12",), from_number="+4930999999"))
    assert first.code is Code.NOT_YOUR_NUMBER
    assert (await refused(send_sms("", ("12",)))).code is Code.BAD_NUMBER


async def test_sms_admitted() -> None:
    made = await send_sms("Hi", (MOBILE, "0151 12345678", FAX_TO), sender_email="a@example.com")
    assert [m.to[0].phone_number for m in made] == [MOBILE, FAX_TO]
    assert {(m.from_.phone_number, m.subject, m.type, m.direction) for m in made} == {
        ("+4930123456", "Hi", MessageType.SMS, Direction.OUTBOUND)
    }
    assert made[0].sender_email == "a@example.com"
    (chosen,) = await send_sms("Hi", from_number="+4930123499", max_destinations=1)
    assert chosen.from_.phone_number == "+4930123499"
    assert len(await send_sms("😀" * 33 * 10)) == 1  # ten UCS-2 parts of 33 emoji fit


async def test_fax_admitted_with_defaults_and_options() -> None:
    (plain,) = await send_fax([pdf()])
    assert (plain.fax_resolution, plain.cover_index, plain.cover_page_text) == (
        FaxResolution.HIGH,
        1,
        None,
    )
    when = datetime(2099, 1, 1, tzinfo=UTC)
    made = await send_fax(
        [pdf(), Upload("note.txt", "text/plain", b"Sign.")],
        numbers=(FAX_TO, "040 123456", "+4940123457"),
        resolution=FaxResolution.LOW,
        cover_index=3,
        cover_text="Hi",
        cover_subject="Q3",
        send_time=when,
    )
    assert [m.to[0].phone_number for m in made] == [FAX_TO, "+4940123457"]
    m = made[0]
    assert (m.fax_resolution, m.cover_index, m.cover_page_text, m.subject, m.send_time) == (
        FaxResolution.LOW,
        3,
        "Hi",
        "Q3",
        when,
    )
    assert [(a.content_type, a.file_name) for a in m.attachments] == [
        ("application/pdf", "one-page.pdf"),
        ("text/plain", "note.txt"),
    ]
    assert m.from_.phone_number == "+4930123457"
    docx = Upload("letter.docx", "application/octet-stream", doc("letter.docx"))
    unsupported = await refused(send_fax([docx]))
    assert unsupported.reason == describe(supported(False))
    (office,) = await send_fax([docx], office=True)
    assert office.attachments[0].content_type.endswith("wordprocessingml.document")


async def test_a_mail_text_the_cover_cannot_carry_becomes_a_document() -> None:
    long = "x" * (COVER_TEXT_LIMIT + 1)
    (moved,) = await send_fax([pdf()], cover_text=long, text_as_document=True)
    assert [a.file_name for a in moved.attachments] == ["message.txt", "one-page.pdf"]
    assert moved.cover_page_text is None
    (alone,) = await send_fax(cover_index=0, cover_text="Call me", text_as_document=True)
    assert [(a.file_name, a.content_type) for a in alone.attachments] == [
        ("message.txt", "text/plain")
    ]
    # The text page counts: three pages and three pages and the text are seven.
    six = [pdf("three-pages.pdf"), pdf("three-pages.pdf")]
    (fits,) = await send_fax(six, cover_index=0)
    assert fits.cover_index == 0
    over = await refused(send_fax(six, cover_index=0, cover_text="x", text_as_document=True))
    assert (over.code, over.count) == (Code.TOO_MANY_PAGES, 7)
    # The API keeps a cover text without a cover page, as the platform does.
    (kept,) = await send_fax([pdf()], cover_index=0, cover_text="Hi")
    assert (kept.cover_page_text, len(kept.attachments)) == ("Hi", 1)
    assert (await refused(send_fax(cover_index=0, cover_text="Hi"))).code is Code.NO_FAX_CONTENT
    (cover_only,) = await send_fax(cover_index=1, cover_text="Hi")
    assert (cover_only.attachments, cover_only.cover_page_text) == ((), "Hi")


# How each door words each code: SMTP reply, API (status, errorCode, parameterName).
SMTP_REPLIES = {
    Code.NO_SMS_NUMBER: replies.no_sms_number("bob@example.com"),
    Code.NOT_YOUR_NUMBER: replies.not_an_sms_number("+4930999999"),
    Code.NO_DESTINATION: replies.NO_SUBJECT_NUMBER,
    Code.TOO_MANY_DESTINATIONS: replies.too_many_destinations(2, 1),
    Code.NO_TEXT: replies.NO_TEXT,
    Code.TEXT_TOO_LONG: replies.text_too_long(11, 10),
    Code.TOO_MANY_UNITS: replies.text_too_many_units(1002, 1000),
    Code.COVER_TEXT_TOO_LONG: replies.cover_text_too_long(1025, 1024),
    Code.NO_FAX_CONTENT: replies.NO_FAX_CONTENT,
    Code.TOO_MANY_DOCUMENTS: replies.too_many_documents(3, 2),
    Code.EMPTY_DOCUMENT: replies.empty_document("a.pdf"),
    Code.DOCUMENT_TOO_LARGE: replies.document_too_large("big.txt", 200_000),
    Code.UNSUPPORTED_DOCUMENT: replies.unsupported_document(
        "archive.zip", "PDF, PNG, JPEG, GIF, TIFF, BMP, WebP, plain text and HTML"
    ),
    Code.UNREADABLE_DOCUMENT: replies.unreadable_document(
        "encrypted.pdf", "the PDF is password-protected"
    ),
    Code.TOO_MANY_PAGES: replies.too_many_pages(7, 6),
    Code.NESTED_TOO_DEEPLY: replies.nested_too_deeply(30),
    Code.TOO_MANY_PARTS: replies.too_many_parts(10),
}
API_ERRORS = {
    Code.NO_SMS_NUMBER: (403, "MSG-240", "from.phoneNumber"),
    Code.NOT_YOUR_NUMBER: (403, "MSG-240", "from.phoneNumber"),
    Code.NO_DESTINATION: (400, "CMN-101", "to"),
    Code.TOO_MANY_DESTINATIONS: (400, "CMN-101", "to"),
    Code.BAD_NUMBER: (400, "CMN-101", "to.phoneNumber"),
    Code.DESTINATION_REFUSED: (403, "MSG-384", "to"),
    Code.NO_TEXT: (400, "CMN-101", "text"),
    Code.TEXT_TOO_LONG: (400, "CMN-101", "text"),
    Code.TOO_MANY_UNITS: (400, "CMN-101", "text"),
    Code.COVER_TEXT_TOO_LONG: (400, "CMN-101", "coverPageText"),
    Code.NO_FAX_CONTENT: (400, "MSG-347", "attachment"),
    Code.TOO_MANY_DOCUMENTS: (400, "CMN-101", "attachment"),
    Code.EMPTY_DOCUMENT: (400, "MSG-347", "attachment"),
    Code.DOCUMENT_TOO_LARGE: (413, "MSG-337", "attachment"),
    Code.UNSUPPORTED_DOCUMENT: (415, "MSG-348", "attachment"),
    Code.UNREADABLE_DOCUMENT: (400, "MSG-349", "attachment"),
    Code.TOO_MANY_PAGES: (400, "CMN-101", "attachment"),
    Code.NESTED_TOO_DEEPLY: (400, "MSG-349", None),
    Code.TOO_MANY_PARTS: (400, "MSG-349", None),
}


@pytest.mark.parametrize(("code", "attempt", "carried"), CASES, ids=[c for c, _, _ in CASES])
async def test_each_door_words_each_refusal(
    code: Code, attempt: Callable[[], Awaitable[object]], carried: dict[str, Any]
) -> None:
    refusal = await refused(attempt())
    if code is Code.BAD_NUMBER:  # where the number was written decides the SMTP reply
        address = "12@sms.example.com"
        assert replies.refused(refusal, address=address) == replies.bad_local_number(
            address, refusal.reason
        )
        assert replies.refused(refusal) == replies.bad_subject_number(refusal.reason)
    elif code is Code.DESTINATION_REFUSED:
        assert replies.refused(refusal) == replies.policy_refused(refusal.reason)
    else:
        assert replies.refused(refusal) == SMTP_REPLIES[code]
    channel = Channel.FAX if code is Code.DESTINATION_REFUSED else Channel.SMS
    error = api_error(refusal, channel)
    assert (error.status, error.code, error.parameter) == API_ERRORS[code]
    assert error.message.strip()


def test_the_api_words_fax_destinations_as_fax_parameters() -> None:
    error = api_error(Refusal(Code.BAD_NUMBER, reason="no", value="x"), Channel.FAX)
    assert (error.status, error.code, error.parameter) == (400, "CMN-101", "to")
    error = api_error(Refusal(Code.NO_DESTINATION), Channel.FAX)
    assert (error.code, error.parameter, error.message) == (
        "CMN-101",
        "to",
        "Parameter [to] value is invalid. Give at least one destination.",
    )
