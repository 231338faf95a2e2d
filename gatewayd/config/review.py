"""Warnings about a valid config: settings that load but are probably not meant.

``review(settings)`` is pure: it looks at loaded settings and returns what an operator
should hear about, each naming its key, in the order of the file. ``gatewayd
check-config`` prints them (and still exits 0: the config is valid); ``gatewayd run``
logs each as a ``config.warning`` line at start.

- no ``[[users]]``: every mail is refused and no API token works;
- an SMPP link with the SMSC simulator's default password (``gatewayd``);
- listeners that cannot all bind: the API on the port of an SMTP listener, or two SMTP
  listeners on one port where one address covers the other (``0.0.0.0:25`` and
  ``127.0.0.1:25``; exactly equal listeners are already an error of the loader).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from gatewayd.config.settings import HostPort, Settings, SmppLinkSettings

SIMULATOR_PASSWORD = SmppLinkSettings().password
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})  # noqa: S104 - names, not a bind
_LOOPBACK_NAMES = {"localhost": "127.0.0.1", "ip6-localhost": "::1"}


@dataclass(frozen=True, slots=True)
class Advice:
    key: str
    text: str

    def __str__(self) -> str:
        return f"{self.key}: {self.text}"


def review(settings: Settings) -> list[Advice]:
    found: list[Advice] = []
    smtp = [listener.address for listener in settings.smtp.listen]
    for a, b in combinations(smtp, 2):
        if a != b and overlap(a, b):
            found.append(
                Advice("smtp.listen", f"{a} and {b} overlap: the second cannot bind its port")
            )
    for index, link in enumerate(settings.sms.links):
        if link.password == SIMULATOR_PASSWORD:
            found.append(
                Advice(
                    f"sms.links[{index}].password",
                    f"the SMSC simulator's default password {SIMULATOR_PASSWORD!r}: fine for "
                    "`gatewayd smsc-sim`, not for a real SMSC (set password_env or "
                    "password_file)",
                )
            )
    for address in smtp:
        if overlap(settings.api.listen, address):
            found.append(
                Advice(
                    "api.listen",
                    f"{settings.api.listen} takes the port of the SMTP listener {address}: "
                    "one of them cannot bind",
                )
            )
    if not settings.users:
        found.append(
            Advice(
                "users",
                "no [[users]]: every mail is refused (550 5.7.1) and no API token works",
            )
        )
    return found


def overlap(a: HostPort, b: HostPort) -> bool:
    """Whether listening on ``a`` and on ``b`` would contend for one socket: the same
    port, and the same address or a wildcard on either side."""
    if a.port != b.port:
        return False
    host_a = _LOOPBACK_NAMES.get(a.host, a.host)
    host_b = _LOOPBACK_NAMES.get(b.host, b.host)
    return host_a == host_b or host_a in _WILDCARDS or host_b in _WILDCARDS
