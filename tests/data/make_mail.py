"""Writes the mail corpus in mail/ (run once; the outputs are committed).

Each file copies the MIME structure a real mail program sends (headers, nesting,
encodings, boundaries); the documents inside come from docs/. Senders are the test
users of tests/integration/test_smtp.py.

    python tests/data/make_mail.py
"""

from __future__ import annotations

import base64
import quopri
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE / "docs"
MAIL = HERE / "mail"


def b64(name: str) -> str:
    data = base64.b64encode((DOCS / name).read_bytes()).decode()
    return "\n".join(data[i : i + 76] for i in range(0, len(data), 76))


def qp(text: str, charset: str) -> str:
    return quopri.encodestring(text.encode(charset)).decode("ascii")


CORPUS: dict[str, str] = {}

OUTLOOK_TEXT = qp(
    "Sehr geehrte Damen und Herren,\r\n\r\nanbei der Vertrag zur Unterschrift.\r\n\r\n"
    "Mit freundlichen Grüßen\r\nAnna Müller\r\n[cid:image001.png@01DA1F2B.3C4D5E60]\r\n",
    "iso-8859-1",
)
OUTLOOK_HTML = qp(
    '<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
    '<style><!-- p.MsoNormal {margin:0cm;} --></style></head><body lang="DE">'
    '<div class="WordSection1"><p class="MsoNormal">Sehr geehrte Damen und Herren,</p>'
    '<p class="MsoNormal">anbei der Vertrag zur Unterschrift.</p><p class="MsoNormal">'
    "Mit freundlichen Grüßen<br>Anna Müller<br>"
    '<img width="120" height="40" src="cid:image001.png@01DA1F2B.3C4D5E60"></p></div>'
    "</body></html>",
    "iso-8859-1",
)
CORPUS["outlook_fax_pdf_with_logo.eml"] = f"""\
From: =?iso-8859-1?Q?M=FCller=2C_Anna?= <alice@example.com>
To: "+49 40 123456@fax.example.com" <+4940123456@fax.example.com>
Subject: Vertrag =?iso-8859-1?Q?f=FCr_K=F6ln?=
Thread-Topic: Vertrag =?iso-8859-1?Q?f=FCr_K=F6ln?=
Thread-Index: AdoZ3mQ1p3b0c1hZQ2yZQ0n1u3e2bw==
Date: Tue, 24 Nov 2026 09:12:33 +0000
Message-ID: <AM0PR05MB6754A1B2C3D4E5F6@AM0PR05MB6754.eurprd05.prod.outlook.com>
Accept-Language: de-DE, en-US
Content-Language: de-DE
X-MS-Has-Attach: yes
X-MS-TNEF-Correlator:
Content-Type: multipart/mixed;
\tboundary="_005_AM0PR05MB6754A1B2C3D4E5F6AM0PR05MB6754eurp_"
MIME-Version: 1.0

--_005_AM0PR05MB6754A1B2C3D4E5F6AM0PR05MB6754eurp_
Content-Type: multipart/related;
\tboundary="_004_AM0PR05MB6754A1B2C3D4E5F6AM0PR05MB6754eurp_";
\ttype="multipart/alternative"

--_004_AM0PR05MB6754A1B2C3D4E5F6AM0PR05MB6754eurp_
Content-Type: multipart/alternative;
\tboundary="_000_AM0PR05MB6754A1B2C3D4E5F6AM0PR05MB6754eurp_"

--_000_AM0PR05MB6754A1B2C3D4E5F6AM0PR05MB6754eurp_
Content-Type: text/plain; charset="iso-8859-1"
Content-Transfer-Encoding: quoted-printable

{OUTLOOK_TEXT}
--_000_AM0PR05MB6754A1B2C3D4E5F6AM0PR05MB6754eurp_
Content-Type: text/html; charset="iso-8859-1"
Content-Transfer-Encoding: quoted-printable

{OUTLOOK_HTML}
--_000_AM0PR05MB6754A1B2C3D4E5F6AM0PR05MB6754eurp_--

--_004_AM0PR05MB6754A1B2C3D4E5F6AM0PR05MB6754eurp_
Content-Type: image/png; name="image001.png"
Content-Description: image001.png
Content-Disposition: inline; filename="image001.png"; size=702;
\tcreation-date="Tue, 24 Nov 2026 09:12:32 GMT";
\tmodification-date="Tue, 24 Nov 2026 09:12:32 GMT"
Content-ID: <image001.png@01DA1F2B.3C4D5E60>
Content-Transfer-Encoding: base64

{b64("logo.png")}

--_004_AM0PR05MB6754A1B2C3D4E5F6AM0PR05MB6754eurp_--

--_005_AM0PR05MB6754A1B2C3D4E5F6AM0PR05MB6754eurp_
Content-Type: application/pdf; name="Vertrag.pdf"
Content-Description: Vertrag.pdf
Content-Disposition: attachment; filename="Vertrag.pdf"; size=789;
\tcreation-date="Tue, 24 Nov 2026 09:11:02 GMT";
\tmodification-date="Tue, 24 Nov 2026 09:11:02 GMT"
Content-Transfer-Encoding: base64

{b64("three-pages.pdf")}

--_005_AM0PR05MB6754A1B2C3D4E5F6AM0PR05MB6754eurp_--
"""

GMAIL_TEXT = qp(
    "Passt, bis morgen um 9 – ich bringe die Unterlagen mit.\n\n-- \nAlice Example\n"
    "ACME GmbH | Tel. +49 30 123456\n\nOn Wed, Nov 25, 2026 at 6:00 PM "
    "<+4915112345678@sms.example.com> wrote:\n\n> Können wir den Termin auf 9 Uhr legen?\n",
    "utf-8",
)
GMAIL_HTML = qp(
    '<div dir="ltr">Passt, bis morgen um 9 – ich bringe die Unterlagen mit.<br clear="all">'
    '<div><br></div>-- <br><div dir="ltr" class="gmail_signature">Alice Example<br>'
    'ACME GmbH | Tel. +49 30 123456</div></div><br><div class="gmail_quote">'
    '<div dir="ltr" class="gmail_attr">On Wed, Nov 25, 2026 at 6:00 PM '
    "&lt;+4915112345678@sms.example.com&gt; wrote:<br></div>"
    '<blockquote class="gmail_quote">Können wir den Termin auf 9 Uhr legen?</blockquote></div>',
    "utf-8",
)
CORPUS["gmail_sms_reply.eml"] = f"""\
MIME-Version: 1.0
Date: Wed, 25 Nov 2026 18:03:11 +0100
Message-ID: <CAF1b2c3d4e5f6g7h8i9j0kLMNOPqrstUVwxyz@mail.gmail.com>
In-Reply-To: <20261125170001.12345@sms.example.com>
Subject: Re: Termin morgen
From: Alice Example <alice@example.com>
To: +4915112345678@sms.example.com
Content-Type: multipart/alternative; boundary="000000000000f1e2d3c4b5a69788"

--000000000000f1e2d3c4b5a69788
Content-Type: text/plain; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

{GMAIL_TEXT}
--000000000000f1e2d3c4b5a69788
Content-Type: text/html; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

{GMAIL_HTML}
--000000000000f1e2d3c4b5a69788--
"""

CORPUS["apple_mail_iphone_sms.eml"] = """\
Content-Type: text/plain;
\tcharset=utf-8
Content-Transfer-Encoding: 8bit
Mime-Version: 1.0 (1.0)
Subject: 
Message-Id: <A1B2C3D4-E5F6-4711-8899-AABBCCDDEEFF@example.com>
Date: Thu, 26 Nov 2026 07:45:02 +0100
From: Alice Example <alice@example.com>
To: +4915112345678@sms.example.com
X-Mailer: iPhone Mail (22B91)

Bin in 10 Minuten da 🚗

Von meinem iPhone gesendet
"""

CORPUS["apple_mail_fax_inline_image.eml"] = f"""\
From: Alice Example <alice@example.com>
Content-Type: multipart/mixed;
\tboundary="Apple-Mail=_8F1D2C3B-4A59-4E6F-9D7C-0B1A2C3D4E5F"
Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3826.200.121\\))
Subject: Skizze
Date: Thu, 26 Nov 2026 10:01:44 +0100
Message-Id: <0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0@example.com>
To: +4940123456@fax.example.com
X-Mailer: Apple Mail (2.3826.200.121)


--Apple-Mail=_8F1D2C3B-4A59-4E6F-9D7C-0B1A2C3D4E5F
Content-Transfer-Encoding: 7bit
Content-Type: text/plain;
\tcharset=us-ascii

Here is the sketch:

--Apple-Mail=_8F1D2C3B-4A59-4E6F-9D7C-0B1A2C3D4E5F
Content-Disposition: inline;
\tfilename=photo.jpg
Content-Type: image/jpeg;
\tx-unix-mode=0644;
\tname="photo.jpg"
Content-Transfer-Encoding: base64

{b64("photo.jpg")}
--Apple-Mail=_8F1D2C3B-4A59-4E6F-9D7C-0B1A2C3D4E5F
Content-Transfer-Encoding: 7bit
Content-Type: text/plain;
\tcharset=us-ascii

and the measurements are on page two.
--Apple-Mail=_8F1D2C3B-4A59-4E6F-9D7C-0B1A2C3D4E5F--
"""

CORPUS["thunderbird_fax_two_documents.eml"] = f"""\
Content-Type: multipart/mixed; boundary="------------f0e1d2c3b4a5968778695a4b"
Message-ID: <4c3b2a19-0817-4f6e-9d5c-4b3a29180706@example.com>
Date: Thu, 26 Nov 2026 11:20:05 +0100
MIME-Version: 1.0
User-Agent: Mozilla Thunderbird
Content-Language: en-US
To: fax@example.com
From: Alice Example <alice@example.com>
Subject: +49 40 123456; 040 654321

This is a multi-part message in MIME format.
--------------f0e1d2c3b4a5968778695a4b
Content-Type: text/plain; charset=UTF-8; format=flowed
Content-Transfer-Encoding: 7bit

Dear colleagues, the invoice and the delivery note, as agreed on the 
phone yesterday.

--------------f0e1d2c3b4a5968778695a4b
Content-Type: application/pdf; name="invoice.pdf"
Content-Disposition: attachment; filename="invoice.pdf"
Content-Transfer-Encoding: base64

{b64("one-page.pdf")}

--------------f0e1d2c3b4a5968778695a4b
Content-Type: image/tiff; name="delivery-note.tif"
Content-Disposition: attachment; filename="delivery-note.tif"
Content-Transfer-Encoding: base64

{b64("two-page.tif")}

--------------f0e1d2c3b4a5968778695a4b--
"""

LATIN1_TEXT = qp("Grüße aus Köln! Das Paket kommt übermorgen.\n", "iso-8859-1")
CORPUS["latin1_sms.eml"] = f"""\
From: =?ISO-8859-1?Q?J=F6rg_Wei=DF?= <alice@example.com>
To: sms@example.com
Subject: =?ISO-8859-1?Q?+49_151_8765_4321?=
MIME-Version: 1.0
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: quoted-printable

{LATIN1_TEXT}"""

CORPUS["windows1252_sms.eml"] = (
    b"From: Alice Example <alice@example.com>\n"
    b"To: +4915112345678@sms.example.com\n"
    b"Subject: Preis\n"
    b"MIME-Version: 1.0\n"
    b'Content-Type: text/plain; charset="windows-1252"\n'
    b"Content-Transfer-Encoding: 8bit\n"
    b"X-Mailer: Microsoft Outlook 16.0\n"
    b"\n"
) + "Der Preis beträgt 12 € – „inklusive“ Versand.\r\n\r\nSent from Mail for Windows\r\n".encode(
    "cp1252"
)  # type: ignore[assignment]

HTML_ONLY = base64.encodebytes(
    b"<!DOCTYPE html><html><head><style>body {color:red}</style><script>alert(1)</script>"
    b"</head><body><p>Hallo&nbsp;Bob,</p><p>der Code ist <b>4711</b> &amp; gilt "
    b"10&nbsp;Minuten.</p></body></html>"
).decode()
CORPUS["html_only_sms.eml"] = f"""\
From: Alice Example <alice@example.com>
To: +4915112345678@sms.example.com
Subject: Link
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

{HTML_ONLY}"""

CORPUS["nested_forward_fax.eml"] = f"""\
From: Alice Example <alice@example.com>
To: +4940123456@fax.example.com
Subject: Fwd: Fwd: Angebot
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: text/plain; charset=utf-8

Bitte an die Buchhaltung faxen.

--outer
Content-Type: message/rfc822

From: Bob <bob@partner.example>
To: Alice Example <alice@example.com>
Subject: Fwd: Angebot
Date: Mon, 23 Nov 2026 16:00:00 +0100
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="middle"

--middle
Content-Type: text/plain; charset=utf-8

Siehe unten.

--middle
Content-Type: message/rfc822

From: Carol <carol@supplier.example>
To: Bob <bob@partner.example>
Subject: Angebot
Date: Mon, 23 Nov 2026 09:30:00 +0100
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="inner"

--inner
Content-Type: text/plain; charset=utf-8

Anbei unser Angebot.

--inner
Content-Type: application/pdf; name="Angebot.pdf"
Content-Disposition: attachment; filename="Angebot.pdf"
Content-Transfer-Encoding: base64

{b64("one-page.pdf")}
--inner--

--middle--

--outer--
"""

CORPUS["outlook_winmail_dat.eml"] = """\
From: Alice Example <alice@example.com>
To: +4940123456@fax.example.com
Subject: Rich text
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="_002_tnef_"
X-MS-Has-Attach:
X-MS-TNEF-Correlator: <AM0PR05MB6754B1@AM0PR05MB6754.eurprd05.prod.outlook.com>

--_002_tnef_
Content-Type: text/plain; charset="us-ascii"

See the attachment.

--_002_tnef_
Content-Type: application/ms-tnef; name="winmail.dat"
Content-Disposition: attachment; filename="winmail.dat"
Content-Transfer-Encoding: base64

eJ8+IhQQAQaQCAAEAAAAAAABAAEAAQeQBgAIAAAA5AQAAAAAAADoAAEIgAcAGAAAAElQTS5NaWNy
--_002_tnef_--
"""

CORPUS["smime_signed_fax.eml"] = f"""\
From: Alice Example <alice@example.com>
To: +4940123456@fax.example.com
Subject: Signed contract
MIME-Version: 1.0
Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;
\tboundary="----=_signed_7F3A"

This is an S/MIME signed message

------=_signed_7F3A
Content-Type: multipart/mixed; boundary="----=_mixed_7F3A"

------=_mixed_7F3A
Content-Type: text/plain; charset=utf-8

Signed and sealed.

------=_mixed_7F3A
Content-Type: application/pdf; name="contract.pdf"
Content-Disposition: attachment; filename="contract.pdf"
Content-Transfer-Encoding: base64

{b64("one-page.pdf")}
------=_mixed_7F3A--

------=_signed_7F3A
Content-Type: application/pkcs7-signature; name="smime.p7s"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="smime.p7s"

MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwEAAKCCA
------=_signed_7F3A--
"""


def main() -> None:
    MAIL.mkdir(exist_ok=True)
    for name, body in CORPUS.items():
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        (MAIL / name).write_bytes(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


if __name__ == "__main__":
    main()
