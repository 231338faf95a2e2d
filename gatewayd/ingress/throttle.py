"""Failed SMTP logins, slowed down and then refused.

On one connection the n-th failed AUTH waits ``delay(n)`` (0.5 s, 1 s, 2 s, ... 8 s
at most) before its 535; after ``smtp.auth_failures_per_connection`` failures the
connection gets ``421 4.7.0`` and is closed. From one client address (an IPv6 client
by its /64) at most ``smtp.auth_failures_per_address`` failures in ``WINDOW`` seconds,
attempts in progress included (so that a hundred parallel connections do not each get
a try): past it, AUTH is answered ``421 4.7.0`` at once until the window has passed.

Login names are not logged (a password typed as the user name would be): ``login_hint``
is a keyed hash (the key is new in each process, so it cannot be looked up offline)
and the domain when there is one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable

WINDOW = 900.0
FIRST_DELAY = 0.5
MAX_DELAY = 8.0
MAX_ADDRESSES = 10_000  # addresses remembered at most; the oldest are forgotten first

_KEY = secrets.token_bytes(16)


def delay(failures: int) -> float:
    """Seconds to wait before answering the ``failures``-th failed login."""
    return float(min(MAX_DELAY, FIRST_DELAY * 2 ** max(0, failures - 1)))


def login_hint(login: str) -> dict[str, str]:
    """What the log may say about a login name: a keyed hash, and its domain."""
    digest = hmac.new(_KEY, login.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
    hint = {"login_hash": digest[:12]}
    local, at, domain = login.rpartition("@")
    if at and local and domain and " " not in domain:
        hint["login_domain"] = domain.lower()[:100]
    return hint


class AuthThrottle:
    """Failed logins by client address, within ``WINDOW`` seconds."""

    def __init__(self, per_address: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_address = per_address
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._trying: dict[str, int] = {}

    def _recent(self, key: str) -> int:
        failures = self._failures.get(key)
        if failures is None:
            return 0
        horizon = self._clock() - WINDOW
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0
        return len(failures)

    def begin(self, key: str) -> bool:
        """May ``key`` try to log in now? If so, the try counts until ``end``."""
        if self._recent(key) + self._trying.get(key, 0) >= self.per_address:
            return False
        self._trying[key] = self._trying.get(key, 0) + 1
        return True

    def end(self, key: str, *, ok: bool) -> None:
        left = self._trying.get(key, 1) - 1
        if left > 0:
            self._trying[key] = left
        else:
            self._trying.pop(key, None)
        if ok:
            return
        self._failures.setdefault(key, deque()).append(self._clock())
        while len(self._failures) > MAX_ADDRESSES:
            del self._failures[next(iter(self._failures))]
