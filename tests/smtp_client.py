"""A real SMTP client (smtplib) for the tests, recording the reply to each command,
and a gatewayd SMTP door (mailbox + listeners) running in the test's event loop."""

from __future__ import annotations

import asyncio
import email.policy
import smtplib
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from gatewayd.config import Settings, parse_config
from gatewayd.ingress.handler import IngressHandler
from gatewayd.ingress.server import SmtpListeners
from gatewayd.mailbox import Mailbox


@dataclass(frozen=True)
class Reply:
    stage: str  # the command that got it: EHLO, STARTTLS, AUTH, MAIL, RCPT or DATA
    code: int
    text: str

    @property
    def line(self) -> str:
        return f"{self.code} {self.text}"


# Every port handed out in this test run: the system may give a port again as soon as
# the probing socket is closed, and two picks for one test (the SMTP and API listeners,
# two gateways' ports picked before either binds) must not be the same port.
HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback TCP port free now and not handed out before in this test run."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in HANDED_OUT:
            HANDED_OUT.add(port)
            return port


def message(
    to: str = "+4915112345678@sms.example.com",
    body: str = "Hello Bob",
    *,
    sender: str = "alice@example.com",
    subject: str = "Hi",
    attachments: Iterable[tuple[bytes, str, str]] = (),
    headers: dict[str, str] | None = None,
) -> bytes:
    """An email as a mail program writes it; attachments are (data, content type, name)."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    for name, value in (headers or {}).items():
        mail[name] = value
    mail.set_content(body)
    for data, content_type, filename in attachments:
        maintype, subtype = content_type.split("/")
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return mail.as_bytes(policy=email.policy.SMTP)  # CRLF line ends, as on the wire


def send(
    port: int,
    mail_from: str,
    recipients: Sequence[str],
    data: bytes,
    *,
    tls: ssl.SSLContext | None = None,
    login: tuple[str, str] | None = None,
    mail_options: Sequence[str] = (),
) -> Reply:
    """One SMTP transaction; the first refusal, or the reply to DATA."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30) as client:
        code, text = client.ehlo()
        if tls is not None:
            code, text = client.starttls(context=tls)
            if code != 220:
                return Reply("STARTTLS", code, text.decode())
            client.ehlo()
        if login is not None:
            try:
                code, text = client.login(*login)
            except smtplib.SMTPAuthenticationError as exc:
                return Reply("AUTH", exc.smtp_code, exc.smtp_error.decode())
            except smtplib.SMTPNotSupportedError:
                return Reply("AUTH", 0, "AUTH not offered")
        code, text = client.mail(mail_from, list(mail_options))
        if code != 250:
            return Reply("MAIL", code, text.decode())
        for recipient in recipients:
            code, text = client.rcpt(recipient)
            if code != 250:
                return Reply("RCPT", code, text.decode())
        code, text = client.data(data)
        return Reply("DATA", code, text.decode())


def ehlo(port: int, tls: ssl.SSLContext | None = None) -> list[str]:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30) as client:
        if tls is not None:
            client.ehlo()
            client.starttls(context=tls)
        client.ehlo()
        return [line.split(" ")[0].upper() for line in client.ehlo_resp.decode().splitlines()]


class Door:
    """A mailbox and SMTP listeners for one test."""

    def __init__(self, settings: Settings, *, office: bool = False) -> None:
        self.settings = settings
        self.office = office
        self.port = settings.smtp.listen[0].address.port
        self.mailbox: Mailbox
        self.listeners: SmtpListeners

    async def __aenter__(self) -> Door:
        self.mailbox = await Mailbox.open(self.settings.mailbox)
        handler = IngressHandler(self.settings, self.mailbox, office=self.office)
        self.listeners = SmtpListeners(self.settings, handler)
        await self.listeners.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        self.listeners.stop_accepting()
        self.listeners.hang_up()
        await self.mailbox.close()

    async def send(self, *args: object, **kwargs: object) -> Reply:
        return await asyncio.to_thread(send, self.port, *args, **kwargs)  # type: ignore[arg-type]


def door_settings(
    data_dir: Path, port: int, *, smtp: str = "", extra: str = "", users: str = ""
) -> Settings:
    """Settings for a door on 127.0.0.1:``port``; ``smtp`` goes into [smtp], ``extra``
    and ``users`` after it."""
    return parse_config(
        f'[mailbox]\ndata_dir = "{data_dir}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{port}"\n{smtp}\n{extra}\n{users}'
    )
