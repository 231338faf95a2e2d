from __future__ import annotations

from gatewayd import credentials


def test_password_hash_round_trip() -> None:
    stored = credentials.hash_password("correct horse")
    assert stored.startswith("scrypt$16384$8$1$")
    assert credentials.is_hash(stored)
    assert credentials.verify("correct horse", stored)
    assert not credentials.verify("correct horsf", stored)


def test_the_same_password_hashes_differently_each_time() -> None:
    assert credentials.hash_password("pw") != credentials.hash_password("pw")


def test_token_hash_round_trip() -> None:
    token = credentials.new_token()
    assert token.startswith("gwd_")
    assert len(token) > 40
    stored = credentials.hash_token(token)
    assert credentials.verify(token, stored)
    assert not credentials.verify(token + "x", stored)


def test_garbage_never_verifies() -> None:
    assert not credentials.is_hash("hunter2")
    assert not credentials.verify("hunter2", "hunter2")
