"""Mail as the mail programs send it, taken apart: the corpus in tests/data/mail."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.ingress.mime import parse_mail
from gatewayd.render.kinds import Kind, describe, sniff, supported

DATA = Path(__file__).resolve().parents[1] / "data"


def corpus(name: str) -> bytes:
    return (DATA / "mail" / name).read_bytes()


def doc(name: str) -> bytes:
    return (DATA / "docs" / name).read_bytes()


def test_outlook_signature_logo_is_not_a_document() -> None:
    mail = parse_mail(corpus("outlook_fax_pdf_with_logo.eml"))
    assert mail.from_addresses == ("alice@example.com",)
    assert mail.subject == "Vertrag für Köln"
    assert [(d.content_type, d.file_name) for d in mail.documents] == [
        ("application/pdf", "Vertrag.pdf")
    ]
    assert mail.documents[0].data == doc("three-pages.pdf")
    assert mail.text.endswith("Mit freundlichen Grüßen\nAnna Müller")  # no [cid:...] line


def test_apple_mail_text_image_text() -> None:
    mail = parse_mail(corpus("apple_mail_fax_inline_image.eml"))
    assert [d.file_name for d in mail.documents] == ["photo.jpg"]
    assert mail.text == "Here is the sketch:\n\nand the measurements are on page two."


def test_thunderbird_flowed_text_and_two_documents() -> None:
    mail = parse_mail(corpus("thunderbird_fax_two_documents.eml"))
    assert mail.text == (
        "Dear colleagues, the invoice and the delivery note, as agreed on the phone yesterday."
    )
    assert [d.file_name for d in mail.documents] == ["invoice.pdf", "delivery-note.tif"]
    assert mail.subject == "+49 40 123456; 040 654321"


def test_nested_forwards_become_documents_in_print_order() -> None:
    mail = parse_mail(corpus("nested_forward_fax.eml"))
    assert mail.text == "Bitte an die Buchhaltung faxen."
    names = [(d.file_name, d.forwarded) for d in mail.documents]
    assert names == [("forwarded.txt", True), ("forwarded.txt", True), ("Angebot.pdf", True)]
    first = mail.documents[0].data.decode()
    assert "From: Bob <bob@partner.example>" in first
    assert "Siehe unten." in first
    assert "Subject: Angebot" in mail.documents[1].data.decode()


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("latin1_sms.eml", "Grüße aus Köln! Das Paket kommt übermorgen."),
        ("windows1252_sms.eml", "Der Preis beträgt 12 € – „inklusive“ Versand.\n\n"
                                "Sent from Mail for Windows"),
        ("html_only_sms.eml", "Hallo Bob,\n\nder Code ist 4711 & gilt 10 Minuten."),
        ("apple_mail_iphone_sms.eml", "Bin in 10 Minuten da 🚗\n\nVon meinem iPhone gesendet"),
    ],
)  # fmt: skip
def test_charsets_and_encodings(name: str, text: str) -> None:
    assert parse_mail(corpus(name)).text == text


def test_rfc2047_subject_and_name() -> None:
    mail = parse_mail(corpus("latin1_sms.eml"))
    assert mail.subject == "+49 151 8765 4321"
    assert mail.from_addresses == ("alice@example.com",)


def test_winmail_dat_is_noted() -> None:
    mail = parse_mail(corpus("outlook_winmail_dat.eml"))
    assert mail.tnef
    assert mail.documents == ()


def test_a_signature_part_is_skipped() -> None:
    mail = parse_mail(corpus("smime_signed_fax.eml"))
    assert [d.file_name for d in mail.documents] == ["contract.pdf"]
    assert mail.text == "Signed and sealed."


def test_fax_headers_and_a_text_attachment() -> None:
    message = EmailMessage()
    message["From"] = "alice@example.com"
    message["X-Fax-Resolution"] = "Normal"
    message["X-Fax-Cover"] = "no"
    message.set_content("note")
    message.add_attachment("a text file\n", filename="notes.txt")
    mail = parse_mail(message.as_bytes())
    assert mail.headers == {"x-fax-resolution": "Normal", "x-fax-cover": "no"}
    assert mail.text == "note"
    assert [(d.content_type, d.data) for d in mail.documents] == [("text/plain", b"a text file\n")]


def test_an_unknown_charset_still_gives_the_text() -> None:
    raw = b"From: a@b.c\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\nplain words\r\n"
    assert parse_mail(raw).text == "plain words"


def test_a_mail_without_from_or_body() -> None:
    mail = parse_mail(b"Subject: nothing\r\n\r\n")
    assert mail.from_addresses == ()
    assert mail.text == ""
    assert mail.documents == ()


@pytest.mark.parametrize(
    ("name", "declared", "kind"),
    [
        ("one-page.pdf", "application/octet-stream", Kind.PDF),
        ("logo.png", "image/jpeg", Kind.PNG),  # the bytes win over the label
        ("photo.jpg", "application/octet-stream", Kind.JPEG),
        ("drawing.gif", "image/gif", Kind.GIF),
        ("two-page.tif", "image/tiff", Kind.TIFF),
        ("drawing.bmp", "image/bmp", Kind.BMP),
        ("drawing.webp", "image/webp", Kind.WEBP),
        ("letter.docx", "application/octet-stream", Kind.DOCX),
        ("archive.zip", "application/zip", None),
    ],
)
def test_sniffing_by_content(name: str, declared: str, kind: Kind | None) -> None:
    assert sniff(doc(name), declared) is kind


def test_sniffing_text() -> None:
    assert sniff("Grüße\n".encode(), "text/plain") is Kind.TEXT
    assert sniff("Grüße\n".encode("cp1252"), "text/plain") is Kind.TEXT
    assert sniff(b"<html><body>x</body></html>", "text/plain") is Kind.HTML
    assert sniff(b"<p>x</p>", "text/html") is Kind.HTML
    assert sniff(b"\x00\x01\x02binary", "text/plain") is None
    assert sniff(b"MZ\x90\x00 an executable", "application/octet-stream") is None
    assert sniff(b"{\\rtf1\\ansi hello}", "application/rtf") is Kind.RTF


def test_what_is_supported_depends_on_libreoffice() -> None:
    assert Kind.DOCX not in supported(libreoffice=False)
    assert Kind.DOCX in supported(libreoffice=True)
    assert describe(supported(libreoffice=False)) == (
        "PDF, PNG, JPEG, GIF, TIFF, BMP, WebP, plain text and HTML"
    )


def test_raw_utf8_headers_and_encoded_file_names() -> None:
    raw = (
        "From: Jörg <jörg@bücher.example>\r\nSubject: Grüße\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        "Content-Type: text/plain; charset=utf-8\r\n\r\nHallo\r\n--b\r\n"
        "Content-Type: application/pdf\r\n"
        'Content-Disposition: attachment; filename="=?utf-8?q?Rechnung_M=C3=A4rz.pdf?="\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n--b\r\n"
        "Content-Type: image/png\r\n"
        "Content-Disposition: attachment; filename*=utf-8''Gr%C3%BC%C3%9Fe.png\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n"
    ).encode()
    mail = parse_mail(raw)
    assert mail.from_addresses == ("jörg@bücher.example",)
    assert mail.subject == "Grüße"
    assert [d.file_name for d in mail.documents] == ["Rechnung März.pdf", "Grüße.png"]


_ATOM = st.text(alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=6)
_LABEL = st.text(alphabet="abcXYZ019-", min_size=1, max_size=6)


@given(
    local=st.lists(_ATOM, min_size=1, max_size=3).map(".".join),
    domain=st.lists(_LABEL, min_size=1, max_size=3).map(".".join),
)
def test_a_bare_from_address_is_what_getaddresses_finds(local: str, domain: str) -> None:
    """A From of one bare dot-atom address is not parsed (a shortcut): what it gives
    is what the stdlib's getaddresses gives."""
    address = f"{local}@{domain}"
    mail = parse_mail(f"From: {address}\r\n\r\nx\r\n".encode())
    expected = tuple(a.lower() for _, a in getaddresses([address]) if "@" in a)
    assert mail.from_addresses == expected == (address.lower(),)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Alice <Alice@Example.com>", ("alice@example.com",)),
        (
            '"Smith, Bob" <bob@example.com>, carol@example.com',
            ("bob@example.com", "carol@example.com"),
        ),
        ("alice@example.com (Alice)", ("alice@example.com",)),
        ("not an address", ()),
    ],
)
def test_other_from_headers_are_parsed(header: str, expected: tuple[str, ...]) -> None:
    assert parse_mail(f"From: {header}\r\n\r\nx\r\n".encode()).from_addresses == expected


def test_a_text_part_named_in_its_content_type_is_a_document() -> None:
    """get_filename reads Content-Type's name too: such a text part is an attachment."""
    mail = parse_mail(
        b"From: alice@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nPlease fax.\r\n"
        b'--b\r\nContent-Type: text/plain; name="notes.txt"\r\n\r\nline one\r\n'
        b'--b\r\nContent-Type: text/plain\r\nContent-Disposition: inline; filename="x.txt"\r\n'
        b"\r\nand more\r\n--b--\r\n"
    )
    assert [(d.content_type, d.file_name, d.data) for d in mail.documents] == [
        ("text/plain", "notes.txt", b"line one")
    ]
    assert mail.text == "Please fax.\n\nand more"
