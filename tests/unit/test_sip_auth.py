"""Digest answers checked against the published examples of RFC 2617 (MD5) and RFC
7616 (SHA-256 and MD5), and the choice between several challenges."""

from __future__ import annotations

import hashlib

import pytest

from gatewayd.fax.sip.auth import AuthError, Challenge, answer, choose


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def fields(value: str) -> dict[str, str]:
    out = {}
    for part in value.removeprefix("Digest ").split(", "):
        name, _, raw = part.partition("=")
        out[name] = raw.strip('"')
    return out


def test_rfc_2617_example() -> None:
    challenge = Challenge.parse(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = answer(
        challenge,
        username="Mufasa",
        password="Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
    )
    got = fields(value)
    assert got["response"] == "6629fae49393a05397450978507c4ef1"
    assert (got["qop"], got["nc"], got["opaque"]) == ("auth", "00000001", challenge.opaque)


RFC_7616 = (
    'realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc_7616_examples(algorithm: str, expected: str) -> None:
    challenge = Challenge.parse("Digest " + RFC_7616.format(alg=algorithm))
    value = answer(
        challenge,
        username="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert fields(value)["response"] == expected
    assert fields(value)["algorithm"] == algorithm


def test_the_strongest_challenge_is_chosen_and_proxies_get_their_header() -> None:
    md5 = Challenge.parse('Digest realm="r", nonce="n", algorithm=MD5', proxy=True)
    sha = Challenge.parse('Digest realm="r", nonce="n", algorithm=SHA-256', proxy=True)
    odd = Challenge.parse('Digest realm="r", nonce="n", algorithm=SHA-512-256')
    assert choose([md5, odd, sha]) is sha
    assert sha.header == "Proxy-Authorization"
    with pytest.raises(AuthError, match="no Digest challenge"):
        choose([odd])
    with pytest.raises(AuthError, match="Basic"):
        Challenge.parse('Basic realm="r"')


def test_without_qop_the_rfc_2069_form_and_stale_nonces() -> None:
    challenge = Challenge.parse('Digest realm="sip.example", nonce="abc", stale=TRUE')
    assert challenge.stale
    value = fields(
        answer(challenge, username="u", password="p", method="REGISTER", uri="sip:sip.example")
    )
    ha1 = md5("u:sip.example:p")
    ha2 = md5("REGISTER:sip:sip.example")
    assert value["response"] == md5(f"{ha1}:abc:{ha2}")
    assert "qop" not in value
    assert "cnonce" not in value
