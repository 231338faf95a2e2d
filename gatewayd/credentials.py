"""Hashes of user secrets: config files hold these, never the secrets themselves.

Two forms, both made by ``gatewayd hash-secret``:

- ``scrypt$16384$8$1$<salt>$<key>`` (base64) for passwords people choose: slow on purpose.
- ``sha256$<hex>`` for API tokens gatewayd generates (32 random bytes): a token has
  enough entropy that a fast hash is safe, and it is checked on every HTTP request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SCRYPT = re.compile(r"^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")
_SHA256 = re.compile(r"^sha256\$([0-9a-f]{64})$")
TOKEN_PREFIX = "gwd_"  # noqa: S105 - a prefix that marks gatewayd tokens, not a secret


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    key = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(key).decode()}"


def hash_token(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh API token: shown once to the operator, only its hash is kept."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def is_hash(text: str) -> bool:
    return bool(_SCRYPT.match(text) or _SHA256.match(text))


def verify(secret: str, stored: str) -> bool:
    """True when ``secret`` matches ``stored`` (either form), in constant time."""
    if match := _SHA256.match(stored):
        digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()
        return hmac.compare_digest(digest, match.group(1))
    if match := _SCRYPT.match(stored):
        n, r, p = (int(match.group(i)) for i in (1, 2, 3))
        salt = base64.b64decode(match.group(4))
        expected = base64.b64decode(match.group(5))
        key = hashlib.scrypt(
            secret.encode("utf-8"),
            salt=salt,
            n=n,
            r=r,
            p=p,
            dklen=len(expected),
            maxmem=2 * 128 * r * (n + p + 2),
        )
        return hmac.compare_digest(key, expected)
    return False
