"""The SMTP conversation's decisions, as aiosmtpd handler hooks.

MAIL: the sender must be a configured user (after login, one of that user's
addresses), allowed to send unauthenticated only from a trusted network on a listener
that does not require AUTH, and under their rate limit.
RCPT: a fax or SMS address with a valid, permitted number, or fax@/sms@ for numbers in
the subject; anything else is relaying and refused.
DATA: the mail is taken apart, checked (From header, content, limits) and stored as one
Queued message per destination; 250 names their ids, and is sent only after the rows
and files are committed. Reading a mail is work in proportion to its size (MIME, the
SMS text, the subject's numbers): from PARSE_IN_THREAD_BYTES on it runs in a thread,
and the documents of a fax are always looked at in one (gatewayd/admission/fax.py).
Anything unforeseen is logged with its traceback and answered 451, never with Python's
words.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import Envelope, Session

from gatewayd import gsm
from gatewayd.admission import Channel, Code, Refusal, fax, sms
from gatewayd.admission.mime import MimeLimits
from gatewayd.config.settings import Settings, User
from gatewayd.destinations import Destination
from gatewayd.errors import RejectedMessage, StoreError
from gatewayd.ingress import compose, replies, senders
from gatewayd.ingress.addressing import Recipient, recipient, subject_destinations
from gatewayd.ingress.mime import Mail, parse_mail
from gatewayd.ingress.server import GatewaySMTP
from gatewayd.logging import get_logger
from gatewayd.mailbox import Mailbox, Message, NewMessage

log = get_logger("gatewayd.smtp")

# Past this many characters an SMS text takes more than the 255 parts any SMS may have:
# refused whatever it says, so a mail's body is not read further (compose.sms_text).
TEXT_READ_LIMIT = gsm.most_characters(gsm.MAX_PARTS)
TRUST_MEMORY = 4096  # peer addresses whose trust _is_trusted keeps
PARSE_IN_THREAD_BYTES = 128 * 1024  # smaller mails are read on the loop: it is quicker


@dataclass(frozen=True, slots=True)
class _Read:
    """A mail read and checked, up to its faxes."""

    mail: Mail
    recipients: list[Recipient]
    to_fax: list[Destination]
    sms: list[NewMessage]


class IngressHandler:
    def __init__(
        self,
        settings: Settings,
        mailbox: Mailbox,
        *,
        office: bool = False,
        on_queued: Callable[[Sequence[Message]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.mailbox = mailbox
        self.office = office
        self.limiter = senders.RateLimiter(mailbox, settings.smtp.rate_per_minute)
        self._trusted = [ipaddress.ip_network(n) for n in settings.smtp.trusted_networks]
        self._trust: dict[str, bool] = {}  # the answers of _is_trusted, by peer address
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Called with the new messages once committed (the daemon wakes its dispatchers).
        self.on_queued = on_queued

    def reload(self, settings: Settings) -> None:
        """New users and policies (SIGHUP); sessions in progress use them at once."""
        self.settings = settings

    # -- hooks -------------------------------------------------------------------------

    async def handle_EHLO(
        self,
        server: GatewaySMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(
        self,
        server: GatewaySMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        logged_in = self._logged_in(session)
        if logged_in is None:
            if server.listener.require_auth:
                return self._refused(session, address, replies.AUTH_REQUIRED)
            host = _host(session)
            if not self._is_trusted(host):
                return self._refused(session, address, replies.untrusted_peer(host))
        try:
            user = senders.identify(self.settings, address, logged_in)
        except RejectedMessage as exc:
            return self._refused(session, address, exc.reply)
        if await self.limiter.exceeded(user):
            return self._refused(session, address, replies.rate_limited(self.limiter.per_minute))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.SENDER_OK

    async def handle_RCPT(
        self,
        server: GatewaySMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        limit = self.settings.smtp.max_recipients
        if len(envelope.rcpt_tos) >= limit:
            return self._refused(session, address, replies.too_many_recipients(limit))
        try:
            found = recipient(address, self.settings)
            if found.channel is Channel.SMS:
                logged_in = self._logged_in(session)
                sms.sender(senders.identify(self.settings, envelope.mail_from or "", logged_in))
        except RejectedMessage as exc:
            return self._refused(session, address, exc.reply)
        except Refusal as exc:
            return self._refused(session, address, replies.refused(exc))
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return replies.RECIPIENT_OK

    async def handle_DATA(self, server: GatewaySMTP, session: Session, envelope: Envelope) -> str:
        self.in_flight += 1
        self._idle.clear()
        server.processing = True  # no idle or session timeout cuts a commit short
        try:
            return await self._accept(session, envelope)
        except RejectedMessage as exc:
            return self._refused(session, envelope.mail_from or "", exc.reply)
        except Refusal as exc:
            return self._refused(session, envelope.mail_from or "", replies.refused(exc))
        except StoreError as exc:
            log.error("smtp.store_failed", sender=envelope.mail_from, error=str(exc))
            return replies.MAILBOX_UNAVAILABLE
        finally:
            server.processing = False
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()

    async def handle_exception(self, error: Exception) -> str:
        """A bug, not the client's doing: logged with its traceback; the client is told
        to try again later, in words of ours."""
        log.error("smtp.internal_error", error=type(error).__name__, exc_info=error)
        return replies.INTERNAL_ERROR

    async def drained(self, seconds: float) -> bool:
        """Wait until no mail is being stored (at most ``seconds``)."""
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except TimeoutError:
            return False
        return True

    # -- DATA --------------------------------------------------------------------------

    async def _accept(self, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        mail_from = envelope.mail_from or ""
        user = senders.identify(self.settings, mail_from, self._logged_in(session))
        if len(raw) < PARSE_IN_THREAD_BYTES:
            read = self._read(raw, envelope.rcpt_tos, user, mail_from)
        else:
            read = await asyncio.to_thread(self._read, raw, envelope.rcpt_tos, user, mail_from)
        batch, to_fax = read.sms, read.to_fax
        # A client that hangs up now must not cut a commit in half. SMS alone are
        # written by the group commit whatever becomes of the future awaited here (no
        # task and no shield to make); with faxes, shield the task.
        if to_fax:
            faxes = await self._fax(read.mail, read.recipients, to_fax, user, mail_from)
            created = await asyncio.shield(self.mailbox.create_many([*batch, *faxes]))
        else:
            created = await self.mailbox.create_texts(batch, eager=False)
        await self.limiter.record(user, len(created))
        if self.on_queued is not None:
            self.on_queued(created)
        ids = [m.id for m in created]
        log.info(
            "smtp.accepted",
            sender=mail_from,
            peer=_host(session),
            message_ids=ids,
            sms=len(read.sms),
            fax=len(to_fax),
            size=len(raw),
        )
        return replies.queued(ids)

    def _read(self, raw: bytes, addresses: Sequence[str], user: User, mail_from: str) -> _Read:
        """The mail taken apart and checked, its SMS admitted: everything up to the faxes,
        which need the render workers' page counts. Pure; in a thread for a large mail."""
        settings = self.settings
        mail = parse_mail(raw, MimeLimits.from_settings(settings.smtp))
        senders.check_from_header(settings, mail, user, mail_from)
        recipients = [recipient(address, settings) for address in addresses]
        to_sms = self._destinations(mail, recipients, Channel.SMS)
        to_fax = self._destinations(mail, recipients, Channel.FAX)
        # The envelope's limit, counted once the subjects' numbers are read.
        total, limit = len(to_sms) + len(to_fax), settings.smtp.max_recipients
        if total > limit:
            raise RejectedMessage(replies.too_many_destinations(total, limit))
        batch: list[NewMessage] = []
        if to_sms:
            by_number = any(r.destination for r in recipients if r.channel is Channel.SMS)
            text = compose.sms_text(mail, number_in_address=by_number, enough=TEXT_READ_LIMIT)
            try:
                batch = sms.messages(
                    text,
                    to_sms,
                    user=user,
                    settings=settings,
                    origin=compose.ORIGIN,
                    sender_email=mail_from,
                )
            except Refusal as refusal:
                if refusal.code is Code.TEXT_TOO_LONG and len(text) > TEXT_READ_LIMIT:
                    # Counted on the part read: say what is certain.
                    limit = settings.sms.max_parts
                    raise RejectedMessage(
                        replies.text_too_long(gsm.MAX_PARTS, limit, more=True)
                    ) from None
                raise
        return _Read(mail, recipients, to_fax, batch)

    def _destinations(
        self, mail: Mail, recipients: Sequence[Recipient], channel: Channel
    ) -> list[Destination]:
        """Every destination number of a channel, each once, in order."""
        out: dict[str, Destination] = {}
        for r in recipients:
            if r.channel is not channel:
                continue
            found = (
                [r.destination]
                if r.destination
                else subject_destinations(
                    mail.subject, self.settings, channel, limit=self.settings.smtp.max_recipients
                )
            )
            for destination in found:
                out.setdefault(destination.e164, destination)
        return list(out.values())

    async def _fax(
        self,
        mail: Mail,
        recipients: Sequence[Recipient],
        destinations: list[Destination],
        user: User,
        mail_from: str,
    ) -> list[NewMessage]:
        # The subject is the cover's subject, unless it held the numbers (fax@...).
        by_number = any(r.destination for r in recipients if r.channel is Channel.FAX)
        options = compose.fax_options(mail, cover_subject=mail.subject if by_number else None)
        return await fax.messages(
            compose.fax_uploads(mail),
            destinations,
            user=user,
            settings=self.settings,
            options=options,
            office=self.office,
            origin=compose.ORIGIN,
            sender_email=mail_from,
        )

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _logged_in(session: Session) -> User | None:
        data: Any = session.auth_data if session.authenticated else None
        return data if isinstance(data, User) else None

    def _is_trusted(self, host: str) -> bool:
        """Whether ``host`` is in ``smtp.trusted_networks``: asked at every MAIL, the
        answer is kept by address (a few thousand at most, then forgotten at once)."""
        trusted = self._trust.get(host)
        if trusted is None:
            if len(self._trust) >= TRUST_MEMORY:
                self._trust.clear()
            trusted = self._trust[host] = self._in_trusted_networks(host)
        return trusted

    def _in_trusted_networks(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return any(address.ipv4_mapped in network for network in self._trusted)
        return any(address in network for network in self._trusted)

    @staticmethod
    def _refused(session: Session, address: str, reply: str) -> str:
        log.info("smtp.refused", sender=address, peer=_host(session), reply=reply)
        return reply


def _host(session: Session) -> str:
    peer: Any = session.peer  # (host, port, ...) as asyncio gives it
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
