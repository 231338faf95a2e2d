"""Digest authentication, client side (RFC 3261 22, RFC 2617, RFC 7616, RFC 8760).

A 401 (WWW-Authenticate) or 407 (Proxy-Authenticate) carries one or more challenges;
``Challenge.parse`` reads one, ``choose`` takes the strongest we can answer (SHA-256
before MD5, as RFC 7616 asks of clients), ``answer`` computes the Authorization (or
Proxy-Authorization) value with qop "auth" when offered (a fresh cnonce, nc counting
per nonce) or the RFC 2069 form without qop. "auth-int" is answered too (it hashes
the body). The password never leaves this module except inside the hash.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from gatewayd.fax.sip.message import split_values

ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
PREFERENCE = ("SHA-256", "SHA-256-sess", "MD5", "MD5-sess")


class AuthError(ValueError):
    """A challenge we cannot answer; the text says why."""


@dataclass(frozen=True, slots=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False  # from Proxy-Authenticate (answer in Proxy-Authorization)

    @classmethod
    def parse(cls, value: str, *, proxy: bool = False) -> Challenge:
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "digest":
            raise AuthError(f"the {scheme!r} scheme is not supported (only Digest)")
        fields: dict[str, str] = {}
        for item in split_values(rest):
            name, _, raw = item.partition("=")
            raw = raw.strip()
            if len(raw) >= 2 and raw[0] == raw[-1] == '"':
                raw = raw[1:-1]
            fields[name.strip().lower()] = raw
        if "realm" not in fields or "nonce" not in fields:
            raise AuthError("the challenge has no realm or no nonce")
        algorithm = fields.get("algorithm", "MD5")
        canonical = next((a for a in PREFERENCE if a.lower() == algorithm.lower()), algorithm)
        qop = tuple(q.strip().lower() for q in fields.get("qop", "").split(",") if q.strip())
        return cls(
            realm=fields["realm"],
            nonce=fields["nonce"],
            algorithm=canonical,
            qop=qop,
            opaque=fields.get("opaque"),
            stale=fields.get("stale", "").lower() == "true",
            proxy=proxy,
        )

    @property
    def supported(self) -> bool:
        base = self.algorithm.removesuffix("-sess")
        return base in ALGORITHMS and (not self.qop or bool({"auth", "auth-int"} & set(self.qop)))

    @property
    def header(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"


def choose(challenges: Iterable[Challenge]) -> Challenge:
    """The challenge to answer: the strongest algorithm we support."""
    usable = [c for c in challenges if c.supported]
    if not usable:
        raise AuthError("no Digest challenge with an algorithm we support (MD5, SHA-256)")
    return min(usable, key=lambda c: PREFERENCE.index(c.algorithm))


def _hash(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm.removesuffix("-sess")](text.encode("utf-8")).hexdigest()


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def answer(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    body: bytes = b"",
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The Authorization / Proxy-Authorization header value for this request."""
    if not challenge.supported:
        raise AuthError(f"algorithm {challenge.algorithm} or qop {challenge.qop} not supported")
    algorithm = challenge.algorithm
    cnonce = cnonce or secrets.token_hex(8)
    ha1 = _hash(algorithm, f"{username}:{challenge.realm}:{password}")
    if algorithm.endswith("-sess"):
        ha1 = _hash(algorithm, f"{ha1}:{challenge.nonce}:{cnonce}")
    qop = ""
    if challenge.qop:
        qop = "auth" if "auth" in challenge.qop else "auth-int"
    if qop == "auth-int":
        body_hash = ALGORITHMS[algorithm.removesuffix("-sess")](body).hexdigest()
        ha2 = _hash(algorithm, f"{method}:{uri}:{body_hash}")
    else:
        ha2 = _hash(algorithm, f"{method}:{uri}")
    count = f"{nc:08x}"
    if qop:
        response = _hash(algorithm, f"{ha1}:{challenge.nonce}:{count}:{cnonce}:{qop}:{ha2}")
    else:
        response = _hash(algorithm, f"{ha1}:{challenge.nonce}:{ha2}")
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={algorithm}",
    ]
    if qop:
        parts += [f"cnonce={_quote(cnonce)}", f"nc={count}", f"qop={qop}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)
