"""The pure parts of holding under load: how clients are counted, caps fitted into the
descriptors there are, failed logins counted by address, login names hidden, and
concatenation headers that do not hold together."""

from __future__ import annotations

import pytest

from gatewayd.guard.listener import Caps, ConnectionLimits, address_key
from gatewayd.guard.process import RESERVE, fit_caps
from gatewayd.ingress.throttle import WINDOW, AuthThrottle, delay, login_hint
from gatewayd.sms.inbound import Concatenated, split_udh


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        (("192.0.2.7", 4000), "192.0.2.7"),
        (("::ffff:192.0.2.7", 4000, 0, 0), "192.0.2.7"),
        (("2001:db8:1:2:aaaa::1", 4000, 0, 0), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 4000, 0, 0), "2001:db8:1:2::/64"),
        (("fe80::1%eth0", 4000, 0, 2), "fe80::/64"),
        ("/run/socket", "/run/socket"),
    ],
)
def test_clients_are_counted_by_address_and_ipv6_by_network(peer: object, key: str) -> None:
    assert address_key(peer) == key


def test_connection_limits_per_listener_and_per_address() -> None:
    limits = ConnectionLimits(Caps(per_listener=3, per_address=2))
    a1, a2 = limits.admit(("192.0.2.1", 1)), limits.admit(("192.0.2.1", 2))
    assert limits.admit(("192.0.2.1", 3)) == "address"
    b1 = limits.admit(("192.0.2.2", 1))
    assert limits.admit(("192.0.2.3", 1)) == "listener"
    assert not isinstance(a1, str)
    a1.release()
    a1.release()  # twice changes nothing
    assert (limits.open, limits.by_address) == (2, {"192.0.2.1": 1, "192.0.2.2": 1})
    assert not isinstance(limits.admit(("192.0.2.3", 1)), str)
    for slot in (a2, b1):
        assert not isinstance(slot, str)
        slot.release()
    assert limits.by_address == {"192.0.2.3": 1}


def test_caps_are_fitted_into_the_descriptors_there_are() -> None:
    wanted = [Caps(4000, 50), Caps(4000, 50), Caps(1000, 50)]
    assert fit_caps(wanted, 65536) == wanted
    fitted = fit_caps(wanted, 1024)
    assert sum(c.per_listener for c in fitted) <= 1024 - RESERVE
    assert fitted[0].per_listener == fitted[1].per_listener > fitted[2].per_listener
    tiny = fit_caps([Caps(4000, 50)], 300)
    assert tiny == [Caps(44, 44)]


def test_failed_logins_are_counted_by_address_with_tries_in_progress() -> None:
    now = [1000.0]
    throttle = AuthThrottle(3, clock=lambda: now[0])
    assert all(throttle.begin("a") for _ in range(3))
    assert not throttle.begin("a")  # three tries are still going on
    for _ in range(3):
        throttle.end("a", ok=False)
    assert not throttle.begin("a")
    assert throttle.begin("b")
    throttle.end("b", ok=True)
    now[0] += WINDOW + 1
    assert throttle.begin("a")  # the failures have aged out


def test_each_failure_waits_longer() -> None:
    assert [delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_login_names_are_never_shown() -> None:
    hint = login_hint("alice@Example.COM")
    assert hint["login_domain"] == "example.com"
    assert len(hint["login_hash"]) == 12
    assert "alice" not in str(hint)
    assert login_hint("hunter2") == {"login_hash": login_hint("hunter2")["login_hash"]}
    assert login_hint("alice@example.com") != login_hint("bob@example.com")


@pytest.mark.parametrize(
    ("user_data", "found", "text"),
    [
        ("050003070201" + "6869", Concatenated(7, 2, 1), b"hi"),
        ("0608041207" + "0302" + "78", Concatenated(0x1207, 3, 2), b"x"),
        ("03000304", None, b""),  # an 8-bit reference element cut short
        ("0408040007", None, b""),  # a 16-bit one
        ("09" + "0000", None, b"\x00\x00"),  # a header longer than the data
        ("050003070300" + "7a", None, b"z"),  # part 0
        ("050003070204" + "7a", None, b"z"),  # part 4 of 2
        ("0a" + "0a03000000" + "0003070302" + "7a", Concatenated(7, 3, 2), b"z"),
    ],
)
def test_concatenation_headers(user_data: str, found: Concatenated | None, text: bytes) -> None:
    assert split_udh(bytes.fromhex(user_data)) == (found, text)
