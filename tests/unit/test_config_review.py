"""check-config's warnings: settings that load but that nobody means."""

from __future__ import annotations

from gatewayd.config import parse_config
from gatewayd.config.review import overlap, review
from gatewayd.config.settings import HostPort

ALICE = (
    '[[users]]\nemail = "alice@example.com"\naccount_id = 1\nextension_id = 101\n'
    'extension_number = "101"\nname = "Alice"\n'
)
LINK = '[[sms.links]]\nname = "smsc"\naddress = "10.0.0.1:2775"\nsystem_id = "gw"\n'


def keys(text: str) -> list[str]:
    return [advice.key for advice in review(parse_config(text))]


def test_a_considered_config_has_no_warnings() -> None:
    assert keys(ALICE + LINK + 'password = "s3cret"\n') == []


def test_no_users_and_the_simulators_password() -> None:
    assert keys("") == ["sms.links[0].password", "users"]
    assert keys(ALICE + LINK + 'password = "gatewayd"\n') == ["sms.links[0].password"]


def test_listeners_that_cannot_all_bind() -> None:
    clash = '[smtp]\nlisten = ["127.0.0.1:2525", "[::]:2526"]\n[api]\nlisten = "localhost:2525"\n'
    assert keys(ALICE + LINK + 'password = "x"\n' + clash) == ["api.listen"]
    wildcard = '[smtp]\nlisten = ["0.0.0.0:25", "127.0.0.1:25", "127.0.0.1:587"]\n'
    assert keys(ALICE + LINK + 'password = "x"\n' + wildcard) == ["smtp.listen"]


def test_overlap() -> None:
    assert overlap(HostPort("127.0.0.1", 25), HostPort("0.0.0.0", 25))  # noqa: S104
    assert overlap(HostPort("::", 25), HostPort("127.0.0.1", 25))
    assert overlap(HostPort("localhost", 8080), HostPort("127.0.0.1", 8080))
    assert not overlap(HostPort("127.0.0.1", 25), HostPort("127.0.0.2", 25))
    assert not overlap(HostPort("0.0.0.0", 25), HostPort("0.0.0.0", 587))  # noqa: S104
