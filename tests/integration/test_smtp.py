"""The SMTP door with a real SMTP client (smtplib) over TCP: every path, with the exact
reply, and what lands in the mailbox."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import trustme
from aiosmtpd.smtp import Envelope, Session

from gatewayd import credentials
from gatewayd.ingress import replies
from gatewayd.ingress.handler import IngressHandler
from gatewayd.mailbox import Mailbox, MessageQuery
from gatewayd.mailbox._schema import EPOCH
from gatewayd.model import AttachmentType, Availability, FaxResolution, MessageStatus, MessageType
from tests.smtp_client import Door, Reply, door_settings, ehlo, free_port, message

DATA = Path(__file__).resolve().parents[1] / "data"
ALICE_PASSWORD = "correct horse battery"
BOB_PASSWORD = "bobs secret"
USERS = f"""
[[users]]
email = ["alice@example.com", "alice@alias.example"]
account_id = 1
extension_id = 101
extension_number = "101"
name = "Alice Example"
sms_numbers = ["+4930123456"]
fax_number = "+4930123457"
station_id = "+49 30 123457"
smtp_password_hash = "{credentials.hash_password(ALICE_PASSWORD)}"

[[users]]
email = "bob@example.com"
account_id = 1
extension_id = 102
extension_number = "102"
name = "Bob"
smtp_password_hash = "{credentials.hash_password(BOB_PASSWORD)}"

[[users]]
email = "jörg@bücher.example"
account_id = 1
extension_id = 103
extension_number = "103"
sms_numbers = ["+4930999888"]
"""
SMS_TO = "+4915112345678@sms.example.com"
FAX_TO = "+4940123456@fax.example.com"

DoorFactory = Callable[..., Door]


@pytest.fixture
def make_door(tmp_path: Path) -> Callable[..., Door]:
    doors: list[Door] = []

    def make(smtp: str = "", extra: str = "", *, office: bool = False, users: str = USERS) -> Door:
        settings = door_settings(tmp_path / f"data{len(doors)}", free_port(), smtp=smtp,
                                 extra=extra, users=users)  # fmt: skip
        door = Door(settings, office=office)
        doors.append(door)
        return door

    return make


@pytest.fixture
async def door(make_door: DoorFactory) -> AsyncIterator[Door]:
    async with make_door() as opened:
        yield opened


async def all_messages(mailbox: Mailbox) -> list:  # type: ignore[type-arg]
    page = await mailbox.find(MessageQuery(extension_id=None, availability=tuple(Availability),
                                           date_from=EPOCH))  # fmt: skip
    return page.records


def queued_ids(reply: Reply) -> list[int]:
    assert reply.stage == "DATA"
    assert reply.text.startswith("2.0.0 queued as ")
    return [int(x) for x in reply.text.removeprefix("2.0.0 queued as ").split()]


# -- the conversation ---------------------------------------------------------------------


async def test_ehlo_advertises_the_extensions(door: Door) -> None:
    features = await asyncio.to_thread(ehlo, door.port)
    for wanted in ("SIZE", "8BITMIME", "SMTPUTF8", "PIPELINING", "ENHANCEDSTATUSCODES"):
        assert wanted in features
    assert "STARTTLS" not in features  # no certificate configured
    assert "AUTH" not in features  # never without TLS, unless the listener allows it


async def test_builtin_replies_carry_enhanced_codes(door: Door) -> None:
    def talk() -> list[bytes]:
        with (
            socket.create_connection(("127.0.0.1", door.port), timeout=10) as sock,
            sock.makefile("rwb") as stream,
        ):
            lines = [stream.readline()]
            for command in (b"EHLO client.example", b"NOOP", b"RSET", b"VRFY x", b"BOGUS",
                            b"DATA", b"QUIT"):  # fmt: skip
                stream.write(command + b"\r\n")
                stream.flush()
                line = stream.readline()
                while line[3:4] == b"-":
                    line = stream.readline()
                lines.append(line)
            return lines

    greeting, ehlo_last, noop, rset, vrfy, bogus, data, quit_ = await asyncio.to_thread(talk)
    assert greeting.startswith(b"220 ")
    assert ehlo_last == b"250 HELP\r\n"
    assert noop == b"250 2.0.0 OK\r\n"
    assert rset == b"250 2.0.0 OK\r\n"
    assert vrfy.startswith(b"252 2.5.0 ")
    assert bogus.startswith(b"500 5.5.2 ")
    assert data == b"503 5.5.1 Error: need RCPT command\r\n"
    assert quit_ == b"221 2.0.0 Bye\r\n"


async def test_help_lists_every_command(door: Door) -> None:
    """The commands gatewayd overrides (EHLO, NOOP, RSET, HELP, VRFY, DATA) keep their
    place in HELP."""

    def help_reply() -> bytes:
        with (
            socket.create_connection(("127.0.0.1", door.port), timeout=10) as sock,
            sock.makefile("rwb") as stream,
        ):
            stream.readline()
            stream.write(b"HELP\r\n")
            stream.flush()
            return stream.readline()

    line = (await asyncio.to_thread(help_reply)).decode()
    assert line.startswith("250 ")
    for command in ("DATA", "EHLO", "HELO", "HELP", "MAIL", "NOOP", "QUIT", "RCPT", "RSET"):
        assert command in line.split(), line


async def test_pipelined_commands(door: Door) -> None:
    body = message()

    def pipeline() -> list[bytes]:
        with (
            socket.create_connection(("127.0.0.1", door.port), timeout=10) as sock,
            sock.makefile("rwb") as stream,
        ):
            stream.readline()
            stream.write(b"EHLO client.example\r\n")
            stream.flush()
            while stream.readline()[3:4] == b"-":
                pass
            stream.write(b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<" + SMS_TO.encode()
                         + b">\r\nDATA\r\n")  # fmt: skip
            stream.flush()
            got = [stream.readline() for _ in range(3)]
            stream.write(body + b"\r\n.\r\n")
            stream.flush()
            got.append(stream.readline())
            return got

    mail, rcpt, data, done = await asyncio.to_thread(pipeline)
    assert mail == f"{replies.SENDER_OK}\r\n".encode()
    assert rcpt == f"{replies.RECIPIENT_OK}\r\n".encode()
    assert data.startswith(b"354 ")
    assert done.startswith(b"250 2.0.0 queued as ")


# -- SMS and fax in ---------------------------------------------------------------------


async def test_an_sms_by_number_is_queued_with_every_field(door: Door) -> None:
    body = "See you at 8!\n\n-- \nAlice\nACME"
    reply = await door.send("alice@example.com", [SMS_TO], message(body=body))
    (message_id,) = queued_ids(reply)
    stored = await door.mailbox.get(message_id)
    assert stored.type is MessageType.SMS
    assert stored.message_status is MessageStatus.QUEUED
    assert stored.extension_id == 101
    assert stored.from_.phone_number == "+4930123456"
    assert stored.from_.name == "Alice Example"
    assert [p.phone_number for p in stored.to] == ["+4915112345678"]
    assert stored.subject == "See you at 8!"
    assert stored.sender_email == "alice@example.com"
    assert stored.origin == "smtp"
    (text,) = stored.attachments
    assert (text.type, text.content_type, text.size) == (AttachmentType.TEXT, "text/plain", 13)
    _, content = await door.mailbox.attachment(message_id, text.id)
    assert await content.read_all() == b"See you at 8!"


async def test_several_recipients_one_message_per_number(door: Door) -> None:
    recipients = [SMS_TO, "004915187654321@sms.example.com", "0151.1234.5678@sms.example.com",
                  "+49-151-12345678@sms.example.com"]  # fmt: skip
    reply = await door.send("alice@example.com", recipients, message())
    ids = queued_ids(reply)
    assert len(ids) == 2  # the first, third and fourth are the same number
    numbers = sorted([(await door.mailbox.get(i)).to[0].phone_number for i in ids])
    assert numbers == ["+4915112345678", "+4915187654321"]


async def test_numbers_in_the_subject_for_sms_at_domain(door: Door) -> None:
    raw = (DATA / "mail" / "latin1_sms.eml").read_bytes()
    reply = await door.send("alice@example.com", ["sms@example.com"], raw)
    (message_id,) = queued_ids(reply)
    stored = await door.mailbox.get(message_id)
    assert stored.to[0].phone_number == "+4915187654321"
    assert stored.subject == "Grüße aus Köln! Das Paket kommt übermorgen."


async def test_a_fax_by_number_with_a_pdf(door: Door) -> None:
    pdf = (DATA / "docs" / "three-pages.pdf").read_bytes()
    raw = message(FAX_TO, "Please sign and return.", subject="Contract",
                  attachments=[(pdf, "application/pdf", "contract.pdf")])  # fmt: skip
    (message_id,) = queued_ids(await door.send("alice@example.com", [FAX_TO], raw))
    stored = await door.mailbox.get(message_id)
    assert stored.type is MessageType.FAX
    assert stored.to[0].phone_number == "+4940123456"
    assert stored.from_.phone_number == "+4930123457"
    assert stored.subject == "Contract"
    assert stored.cover_index == 1
    assert stored.cover_page_text == "Please sign and return."
    assert stored.fax_resolution is FaxResolution.HIGH
    (document,) = stored.attachments
    assert (document.type, document.content_type, document.file_name) == (
        AttachmentType.SOURCE_DOCUMENT, "application/pdf", "contract.pdf")  # fmt: skip
    assert door.mailbox._blobs.path(document.sha256).read_bytes() == pdf


async def test_fax_headers_override_the_config(door: Door) -> None:
    raw = message(FAX_TO, "Text only, no cover",
                  headers={"X-Fax-Resolution": "normal", "X-Fax-Cover": "no"})  # fmt: skip
    (message_id,) = queued_ids(await door.send("alice@example.com", [FAX_TO], raw))
    stored = await door.mailbox.get(message_id)
    assert stored.fax_resolution is FaxResolution.LOW
    assert stored.cover_index == 0
    assert stored.cover_page_text is None
    (page,) = stored.attachments  # without a cover, the text is the document
    assert (page.content_type, page.file_name) == ("text/plain", "message.txt")


@pytest.mark.parametrize(
    ("headers", "reply"),
    [
        ({"X-Fax-Resolution": "ultra"},
         replies.bad_header("X-Fax-Resolution", "ultra", "fine or normal")),
        ({"X-Fax-Cover": "maybe"}, replies.bad_header("X-Fax-Cover", "maybe", "yes or no")),
    ],
)  # fmt: skip
async def test_bad_fax_headers(door: Door, headers: dict[str, str], reply: str) -> None:
    result = await door.send("alice@example.com", [FAX_TO], message(FAX_TO, "x", headers=headers))
    assert result.line == reply


async def test_mixed_sms_and_fax_recipients_are_stored_together(door: Door) -> None:
    reply = await door.send("alice@example.com", [SMS_TO, FAX_TO], message(body="Both"))
    ids = queued_ids(reply)
    kinds = sorted([(await door.mailbox.get(i)).type.value for i in ids])
    assert kinds == ["Fax", "SMS"]


# -- the corpus --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "recipients", "texts"),
    [
        ("gmail_sms_reply.eml", [SMS_TO],
         ["Passt, bis morgen um 9 – ich bringe die Unterlagen mit."]),
        ("apple_mail_iphone_sms.eml", [SMS_TO], ["Bin in 10 Minuten da 🚗"]),
        ("windows1252_sms.eml", [SMS_TO], ["Der Preis beträgt 12 € – „inklusive“ Versand."]),
        ("html_only_sms.eml", [SMS_TO], ["Hallo Bob,\n\nder Code ist 4711 & gilt 10 Minuten."]),
    ],
)  # fmt: skip
async def test_corpus_sms(door: Door, name: str, recipients: list[str], texts: list[str]) -> None:
    reply = await door.send("alice@example.com", recipients, (DATA / "mail" / name).read_bytes())
    stored = [await door.mailbox.get(i) for i in queued_ids(reply)]
    assert [m.subject for m in stored] == texts


@pytest.mark.parametrize(
    ("name", "recipients", "documents", "note"),
    [
        ("outlook_fax_pdf_with_logo.eml", [FAX_TO], [("application/pdf", "Vertrag.pdf")],
         "Sehr geehrte Damen und Herren,\n\nanbei der Vertrag zur Unterschrift.\n\n"
         "Mit freundlichen Grüßen\nAnna Müller"),
        ("apple_mail_fax_inline_image.eml", [FAX_TO], [("image/jpeg", "photo.jpg")],
         "Here is the sketch:\n\nand the measurements are on page two."),
        ("smime_signed_fax.eml", [FAX_TO], [("application/pdf", "contract.pdf")],
         "Signed and sealed."),
        ("nested_forward_fax.eml", [FAX_TO],
         [("text/plain", "forwarded.txt"), ("text/plain", "forwarded.txt"),
          ("application/pdf", "Angebot.pdf")], "Bitte an die Buchhaltung faxen."),
    ],
)  # fmt: skip
async def test_corpus_fax(
    door: Door, name: str, recipients: list[str], documents: list[tuple[str, str]], note: str
) -> None:
    reply = await door.send("alice@example.com", recipients, (DATA / "mail" / name).read_bytes())
    (message_id,) = queued_ids(reply)
    stored = await door.mailbox.get(message_id)
    assert [(a.content_type, a.file_name) for a in stored.attachments] == documents
    assert stored.cover_page_text == note


async def test_corpus_fax_to_subject_numbers(door: Door) -> None:
    raw = (DATA / "mail" / "thunderbird_fax_two_documents.eml").read_bytes()
    ids = queued_ids(await door.send("alice@example.com", ["fax@example.com"], raw))
    stored = [await door.mailbox.get(i) for i in ids]
    assert sorted(m.to[0].phone_number for m in stored) == ["+4940123456", "+4940654321"]
    assert all(m.subject is None for m in stored)  # the subject held the numbers
    assert [a.file_name for a in stored[0].attachments] == ["invoice.pdf", "delivery-note.tif"]


async def test_corpus_winmail_dat_is_refused(door: Door) -> None:
    raw = (DATA / "mail" / "outlook_winmail_dat.eml").read_bytes()
    reply = await door.send("alice@example.com", [FAX_TO], raw)
    assert reply.line == replies.winmail_dat()
    assert await all_messages(door.mailbox) == []


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipient", "reply"),
    [
        ("bob@elsewhere.example", replies.relaying_denied("bob@elsewhere.example")),
        ("fax@elsewhere.example", replies.relaying_denied("fax@elsewhere.example")),
        ("postmaster@example.com", replies.relaying_denied("postmaster@example.com")),
        ("12@fax.example.com", replies.bad_local_number(
            "12@fax.example.com",
            "'12' is not a valid phone number (a local number without its area code)")),
        ("call-me@sms.example.com", replies.bad_local_number(
            "call-me@sms.example.com", "'call-me' is not a phone number (only digits, spaces, "
            ". - ( ) and a leading + belong in one)")),
        ("09001234567@fax.example.com", replies.policy_refused(
            "+499001234567 is a premium rate number (fax.policy.refused_number_types)")),
        ("+491805123456@sms.example.com", replies.policy_refused(
            "+491805123456 is a shared cost number (sms.policy.refused_number_types)")),
    ],
)  # fmt: skip
async def test_refused_at_rcpt(door: Door, recipient: str, reply: str) -> None:
    result = await door.send("alice@example.com", [recipient], message(recipient))
    assert (result.stage, result.line) == ("RCPT", reply)


async def test_country_and_deny_rules(make_door: DoorFactory) -> None:
    extra = '[fax.policy]\nallowed_countries = [49]\ndeny = ["+4940*"]\n'
    async with make_door(extra=extra) as door:
        us = await door.send("alice@example.com", ["+12025550143@fax.example.com"], message())
        assert us.line == replies.policy_refused(
            "+12025550143: country code +1 is not allowed (fax.policy.allowed_countries: +49)"
        )
        denied = await door.send("alice@example.com", [FAX_TO], message())
        assert denied.line == replies.policy_refused(
            "+4940123456 is on the deny list (fax.policy.deny: +4940*)"
        )
        assert (await door.send("alice@example.com", ["+4930555555@fax.example.com"],
                                message(body="ok"))).code == 250  # fmt: skip


@pytest.mark.parametrize(
    ("subject", "reply"),
    [
        ("", replies.NO_SUBJECT_NUMBER),
        ("call Bob", replies.bad_subject_number(
            "'call Bob' is not a phone number (only digits, spaces, . - ( ) and a leading + "
            "belong in one)")),
        ("+4915112345678, 12", replies.bad_subject_number(
            "'12' is not a valid phone number (a local number without its area code)")),
        ("0900 1234567", replies.policy_refused(
            "+499001234567 is a premium rate number (sms.policy.refused_number_types)")),
    ],
)  # fmt: skip
async def test_refused_subject_numbers(door: Door, subject: str, reply: str) -> None:
    result = await door.send("alice@example.com", ["sms@example.com"],
                             message("sms@example.com", subject=subject))  # fmt: skip
    assert (result.stage, result.line) == ("DATA", reply)


@pytest.mark.parametrize(
    ("sender", "reply"),
    [
        ("mallory@example.com", replies.unknown_sender("mallory@example.com")),
        ("", replies.unknown_sender("")),
    ],
)
async def test_unknown_senders(door: Door, sender: str, reply: str) -> None:
    result = await door.send(sender, [SMS_TO], message(sender=sender or "x@y.example"))
    assert (result.stage, result.line) == ("MAIL", reply)


async def test_the_from_header_must_be_the_senders(door: Door, make_door: DoorFactory) -> None:
    spoofed = message(sender="ceo@example.com")
    result = await door.send("alice@example.com", [SMS_TO], spoofed)
    assert result.line == replies.from_mismatch("ceo@example.com", "alice@example.com")
    alias = await door.send("alice@example.com", [SMS_TO], message(sender="alice@alias.example"))
    assert alias.code == 250
    async with make_door(smtp="allow_from_mismatch = true") as lenient:
        assert (await lenient.send("alice@example.com", [SMS_TO], spoofed)).code == 250


async def test_limits(make_door: DoorFactory) -> None:
    smtp = 'max_recipients = 2\nmax_message_size = "20KiB"\nrate_per_minute = 3'
    async with make_door(smtp=smtp) as door:
        three = [SMS_TO, "+4915100000002@sms.example.com", "+4915100000003@sms.example.com"]
        too_many = await door.send("alice@example.com", three, message())
        assert (too_many.stage, too_many.line) == ("RCPT", replies.too_many_recipients(2))
        big = message(body="x" * 30_000)
        too_big = await door.send("alice@example.com", [SMS_TO], big)
        assert (too_big.stage, too_big.line) == ("DATA", replies.message_too_big(20 * 1024))
        declared = await door.send("alice@example.com", [SMS_TO], big,
                                   mail_options=["SIZE=30000"])  # fmt: skip
        assert (declared.stage, declared.line) == ("MAIL", replies.message_too_big(20 * 1024))
        for _ in range(3):
            assert (await door.send("alice@example.com", [SMS_TO], message())).code == 250
        limited = await door.send("alice@example.com", [SMS_TO], message())
        assert (limited.stage, limited.line) == ("MAIL", replies.rate_limited(3))
        other = await door.send("jörg@bücher.example", [SMS_TO],
                                message(sender="jörg@bücher.example"),
                                mail_options=["SMTPUTF8"])  # fmt: skip
        assert other.code == 250, other  # the limit is per user


async def test_a_trusted_sender_is_never_rate_limited(make_door: DoorFactory) -> None:
    trusted = USERS + "rate_limits = false\n"  # the last user, Jörg: a trusted integration
    async with make_door(smtp="rate_per_minute = 2", users=trusted) as door:
        jorg = [await door.send("jörg@bücher.example", [SMS_TO],
                                message(sender="jörg@bücher.example"),
                                mail_options=["SMTPUTF8"]) for _ in range(4)]  # fmt: skip
        assert [r.code for r in jorg] == [250] * 4
        alice = [await door.send("alice@example.com", [SMS_TO], message()) for _ in range(3)]
        assert [r.code for r in alice[:2]] == [250, 250]
        assert (alice[2].stage, alice[2].line) == ("MAIL", replies.rate_limited(2))


async def test_sms_text_limits(door: Door) -> None:
    too_long = await door.send("alice@example.com", [SMS_TO], message(body="a" * 153 * 11))
    assert too_long.line == replies.text_too_long(11, 10)
    unicode_long = await door.send("alice@example.com", [SMS_TO], message(body="😀" * 336))
    assert unicode_long.line == replies.text_too_long(11, 10)  # 33 emoji fit in a part
    empty = await door.send("alice@example.com", [SMS_TO], message(body="\n-- \nAlice", subject=""))
    assert empty.line == replies.NO_TEXT
    from_subject = await door.send("alice@example.com", [SMS_TO],
                                   message(body="", subject="Call me"))  # fmt: skip
    (message_id,) = queued_ids(from_subject)
    assert (await door.mailbox.get(message_id)).subject == "Call me"


async def test_a_user_without_an_sms_number(door: Door) -> None:
    reply = await door.send("bob@example.com", [SMS_TO], message(sender="bob@example.com"))
    assert (reply.stage, reply.line) == ("RCPT", replies.no_sms_number("bob@example.com"))
    fax = await door.send("bob@example.com", [FAX_TO], message(FAX_TO, sender="bob@example.com"))
    assert fax.code == 250  # faxing needs no SMS number


@pytest.mark.parametrize(
    ("document", "content_type", "name", "reply"),
    [
        ("archive.zip", "application/zip", "archive.zip", replies.unsupported_document(
            "archive.zip", "PDF, PNG, JPEG, GIF, TIFF, BMP, WebP, plain text and HTML")),
        ("letter.docx", "application/octet-stream", "letter.docx", replies.unsupported_document(
            "letter.docx", "PDF, PNG, JPEG, GIF, TIFF, BMP, WebP, plain text and HTML")),
        ("encrypted.pdf", "application/pdf", "secret.pdf",
         replies.unreadable_document("secret.pdf", "the PDF is password-protected")),
        ("damaged.pdf", "application/pdf", "broken.pdf",
         replies.unreadable_document("broken.pdf", "the PDF is damaged")),
    ],
)  # fmt: skip
async def test_documents_that_cannot_be_faxed(
    door: Door, document: str, content_type: str, name: str, reply: str
) -> None:
    data = (DATA / "docs" / document).read_bytes()
    raw = message(FAX_TO, "x", attachments=[(data, content_type, name)])
    assert (await door.send("alice@example.com", [FAX_TO], raw)).line == reply


async def test_office_documents_with_libreoffice(make_door: DoorFactory) -> None:
    data = (DATA / "docs" / "letter.docx").read_bytes()
    raw = message(FAX_TO, "x", attachments=[(data, "application/octet-stream", "letter.docx")])
    async with make_door(office=True) as door:
        (message_id,) = queued_ids(await door.send("alice@example.com", [FAX_TO], raw))
        (stored,) = (await door.mailbox.get(message_id)).attachments
        assert stored.content_type.endswith("wordprocessingml.document")


async def test_fax_limits(make_door: DoorFactory) -> None:
    pdf = (DATA / "docs" / "three-pages.pdf").read_bytes()
    async with make_door(extra="[fax]\nmax_attachments = 2\nmax_pages = 6") as door:
        three = message(FAX_TO, "x", attachments=[(pdf, "application/pdf", f"{i}.pdf")
                                                  for i in range(3)])  # fmt: skip
        assert (await door.send("alice@example.com", [FAX_TO], three)).line == (
            replies.too_many_documents(3, 2)
        )
        two = message(FAX_TO, "x", attachments=[(pdf, "application/pdf", f"{i}.pdf")
                                                for i in range(2)])  # fmt: skip
        assert (await door.send("alice@example.com", [FAX_TO], two)).line == (
            replies.too_many_pages(7, 6)
        )  # the cover page counts
        nothing = message(FAX_TO, "", headers={"X-Fax-Cover": "yes"})
        assert (await door.send("alice@example.com", [FAX_TO], nothing)).line == (
            replies.NO_FAX_CONTENT
        )


# -- who may send ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ssl.SSLContext]:
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    issued.private_key_and_cert_chain_pem.write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    client = ssl.create_default_context()
    authority.configure_trust(client)
    return cert, key, client


async def test_starttls_then_auth(
    make_door: DoorFactory, certificates: tuple[Path, Path, ssl.SSLContext]
) -> None:
    cert, key, client = certificates
    smtp = f'tls_cert = "{cert}"\ntls_key = "{key}"\nrequire_auth = true'
    async with make_door(smtp=smtp) as door:
        plain = await asyncio.to_thread(ehlo, door.port)
        assert "STARTTLS" in plain
        assert "AUTH" not in plain
        secure = await asyncio.to_thread(ehlo, door.port, client)
        assert "AUTH" in secure
        assert "STARTTLS" not in secure
        anonymous = await door.send("alice@example.com", [SMS_TO], message(), tls=client)
        assert (anonymous.stage, anonymous.line) == ("MAIL", replies.AUTH_REQUIRED)
        wrong = await door.send("alice@example.com", [SMS_TO], message(), tls=client,
                                login=("alice@example.com", "wrong"))  # fmt: skip
        assert (wrong.stage, wrong.line) == ("AUTH", replies.AUTH_FAILED)
        good = await door.send("alice@example.com", [SMS_TO], message(), tls=client,
                               login=("alice@example.com", ALICE_PASSWORD))  # fmt: skip
        assert good.code == 250, good
        as_someone_else = await door.send("alice@example.com", [SMS_TO], message(), tls=client,
                                          login=("bob@example.com", BOB_PASSWORD))  # fmt: skip
        assert as_someone_else.line == replies.not_your_address("alice@example.com",
                                                                 "bob@example.com")  # fmt: skip


async def test_auth_without_tls_only_where_allowed(make_door: DoorFactory) -> None:
    smtp = "require_auth = true\nauth_without_tls = true"
    async with make_door(smtp=smtp) as door:
        assert "AUTH" in await asyncio.to_thread(ehlo, door.port)
        reply = await door.send("alice@example.com", [SMS_TO], message(),
                                login=("alice@example.com", ALICE_PASSWORD))  # fmt: skip
        assert reply.code == 250


async def test_an_untrusted_network_must_log_in(make_door: DoorFactory) -> None:
    async with make_door(smtp='trusted_networks = ["10.0.0.0/8"]') as door:
        reply = await door.send("alice@example.com", [SMS_TO], message())
        assert (reply.stage, reply.line) == ("MAIL", replies.untrusted_peer("127.0.0.1"))


# -- durability ------------------------------------------------------------------------------


async def test_a_mailbox_failure_is_a_temporary_refusal(door: Door) -> None:
    async with door.mailbox._db.write() as conn:
        await conn.exec_driver_sql("ALTER TABLE message_events RENAME TO broken")
    pdf = (DATA / "docs" / "one-page.pdf").read_bytes()
    raw = message(FAX_TO, "x", attachments=[(pdf, "application/pdf", "a.pdf")])
    reply = await door.send("alice@example.com", [SMS_TO, FAX_TO], raw)
    assert reply.line == replies.MAILBOX_UNAVAILABLE
    async with door.mailbox._db.write() as conn:
        await conn.exec_driver_sql("ALTER TABLE broken RENAME TO message_events")
    assert await all_messages(door.mailbox) == []  # nothing half-written
    assert door.mailbox._lifecycle.pending_erase  # its files go with the next sweep


async def test_a_client_gone_before_the_end_of_data_leaves_nothing(door: Door) -> None:
    def hang_up_in_data() -> None:
        with (
            socket.create_connection(("127.0.0.1", door.port), timeout=10) as sock,
            sock.makefile("rwb") as stream,
        ):
            stream.readline()
            for command in (b"EHLO c.example", b"MAIL FROM:<alice@example.com>",
                            b"RCPT TO:<" + SMS_TO.encode() + b">", b"DATA"):  # fmt: skip
                stream.write(command + b"\r\n")
                stream.flush()
                while stream.readline()[3:4] == b"-":
                    pass
            stream.write(message()[:60])
            stream.flush()

    await asyncio.to_thread(hang_up_in_data)
    await asyncio.sleep(0.2)
    assert await all_messages(door.mailbox) == []
    blobs = [p for p in door.mailbox._blobs.root.rglob("*") if p.is_file()]
    assert blobs == []


async def test_while_draining_new_clients_are_told_421(door: Door) -> None:
    door.listeners.stop_accepting()

    def greet() -> tuple[int, bytes]:
        with socket.create_connection(("127.0.0.1", door.port), timeout=10) as raw:
            line = raw.makefile("rb").readline()
        return int(line[:3]), line

    code, line = await asyncio.to_thread(greet)
    assert code == 421
    assert line.startswith(b"421 4.3.2 ")


async def test_a_client_gone_while_its_sms_are_committed_leaves_them_stored(door: Door) -> None:
    """aiosmtpd cancels the session's task when the client hangs up: the write of a
    mail's SMS, asked for, is the group commit's and goes on (a mail with faxes is
    shielded from where its commit is asked for); its messages are stored as if the
    client had waited for the 250."""
    handler = IngressHandler(door.settings, door.mailbox)
    envelope = Envelope()
    envelope.mail_from = "alice@example.com"
    envelope.rcpt_tos = [SMS_TO]
    envelope.original_content = message(SMS_TO, "gone")
    session = Session(asyncio.get_running_loop())
    session.peer = ("127.0.0.1", 40000)
    server = SimpleNamespace(processing=False)
    accepting = asyncio.create_task(handler.handle_DATA(server, session, envelope))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # the mail read and its commit asked for: the task waits
    assert server.processing
    accepting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await accepting
    for _ in range(500):
        stored = await all_messages(door.mailbox)
        if stored:
            break
        await asyncio.sleep(0.01)
    assert [(m.type, m.message_status) for m in stored] == [(MessageType.SMS, MessageStatus.QUEUED)]
    assert await handler.drained(5)
