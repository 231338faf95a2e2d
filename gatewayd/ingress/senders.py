"""Who may send: the envelope sender (and the login, when there is one) must be a
configured user, the From header must be that user's (anti-spoofing), and each user
sends at most ``rate_per_minute`` messages a minute (counted in the mailbox, so the
nodes of a cluster count together)."""

from __future__ import annotations

from gatewayd import credentials
from gatewayd.config.settings import Settings, User
from gatewayd.errors import RejectedMessage
from gatewayd.ingress import replies
from gatewayd.ingress.mime import Mail
from gatewayd.mailbox import Mailbox


def identify(settings: Settings, mail_from: str, logged_in: User | None) -> User:
    """The user an envelope sender speaks for, or RejectedMessage (550 5.7.1)."""
    if mail_from == "<>":
        mail_from = ""  # the null reverse-path
    if logged_in is not None:
        if mail_from.lower() not in logged_in.emails:
            raise RejectedMessage(replies.not_your_address(mail_from, logged_in.emails[0]))
        return logged_in
    user = settings.user_by_email(mail_from) if mail_from else None
    if user is None:
        raise RejectedMessage(replies.unknown_sender(mail_from))
    return user


def check_from_header(settings: Settings, mail: Mail, user: User, mail_from: str) -> None:
    if settings.smtp.allow_from_mismatch:
        return
    if not mail.from_addresses:
        raise RejectedMessage(replies.from_mismatch("(none)", mail_from))
    for address in mail.from_addresses:
        if address not in user.emails:
            raise RejectedMessage(replies.from_mismatch(address, mail_from))


def login(settings: Settings, username: str, password: str) -> User | None:
    """The user these credentials belong to, or None. Slow on purpose (scrypt): call it
    in a thread."""
    user = settings.user_by_email(username)
    if user is None or not user.smtp_password_hash:
        credentials.hash_password(password)  # the same time either way
        return None
    return user if credentials.verify(password, user.smtp_password_hash) else None


class RateLimiter:
    """At most ``per_minute`` messages per user in each minute's window (0: no limit;
    a user with ``rate_limits = false`` is not counted)."""

    WINDOW = 60.0

    def __init__(self, mailbox: Mailbox, per_minute: int) -> None:
        self.mailbox = mailbox
        self.per_minute = per_minute

    @staticmethod
    def _key(user: User) -> str:
        return f"smtp:{user.extension_id}"

    async def exceeded(self, user: User) -> bool:
        if not self.per_minute or not user.rate_limits:
            return False
        state = await self.mailbox.rate_peek(self._key(user), window=self.WINDOW)
        return state.count >= self.per_minute

    async def record(self, user: User, count: int = 1) -> None:
        if self.per_minute and user.rate_limits:
            await self.mailbox.rate_add(self._key(user), window=self.WINDOW, n=count)
