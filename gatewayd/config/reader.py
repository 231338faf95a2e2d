"""Reading one TOML table into typed values, collecting problems instead of stopping.

Every problem names the key path, the value found and what was expected, e.g.
``smtp.listen: "127.0.0.1:99999" is not a valid port (expected HOST:PORT, PORT 1-65535)``.
A reader returns the default after recording a problem, so one pass finds them all.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gatewayd.config.settings import HostPort

T = TypeVar("T")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    None: 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def show(value: object) -> str:
    """A value as it would be written in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


def parse_duration(text: str) -> float | None:
    match = _DURATION.match(text)
    if not match:
        return None
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(text: str) -> int | None:
    match = _SIZE.match(text)
    if not match:
        return None
    unit = match.group(2).lower() if match.group(2) else None
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_host_port(text: str) -> tuple[HostPort | None, str]:
    """(HostPort, "") or (None, what is wrong)."""
    expected = "(expected HOST:PORT, PORT 1-65535)"
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            return None, f"is not HOST:PORT {expected}"
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None, f"is not a valid IPv6 address {expected}"
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            return None, f"is not HOST:PORT {expected}"
        if ":" in host:
            return None, f"has an IPv6 host without brackets {expected.replace('HOST', '[HOST]')}"
        if not _HOSTNAME.match(host):
            return None, f"is not a valid host name {expected}"
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        return None, f"is not a valid port {expected}"
    return HostPort(host, int(port_text)), ""


class Problems:
    """Problems found while loading, in the order found."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{key}: {message}")


class TableReader:
    """Typed access to one TOML table; records a problem and returns the default on error."""

    def __init__(self, table: Mapping[str, Any], prefix: str, problems: Problems) -> None:
        self._table = table
        self._prefix = prefix
        self._problems = problems
        self._known: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self._prefix}.{name}" if self._prefix else name

    def problem(self, name: str, message: str) -> None:
        self._problems.add(self.key(name), message)

    def has(self, name: str) -> bool:
        self._known.add(name)
        return name in self._table

    def raw(self, name: str) -> Any:
        self._known.add(name)
        return self._table.get(name)

    def _get(self, name: str, default: T, convert: Callable[[Any], T | None], expected: str) -> T:
        self._known.add(name)
        if name not in self._table:
            return default
        value = self._table[name]
        result = convert(value)
        if result is None:
            self.problem(name, f"{show(value)} {expected}")
            return default
        return result

    def string(
        self,
        name: str,
        default: str,
        *,
        pattern: re.Pattern[str] | None = None,
        expected: str = "is not a string",
    ) -> str:
        def convert(v: Any) -> str | None:
            if not isinstance(v, str):
                return None
            return v if pattern is None or pattern.match(v) else None

        return self._get(name, default, convert, expected)

    def choice(self, name: str, default: T, choices: Sequence[str]) -> T:
        listed = ", ".join(json.dumps(c) for c in choices)
        return self._get(
            name, default, lambda v: v if v in choices else None, f"is not one of {listed}"
        )

    def boolean(self, name: str, default: bool) -> bool:
        return self._get(
            name, default, lambda v: v if isinstance(v, bool) else None, "is not true or false"
        )

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        if minimum is not None and maximum is not None:
            expected = f"is not a whole number from {minimum} to {maximum}"
        elif minimum is not None:
            expected = f"is not a whole number of at least {minimum}"
        else:
            expected = "is not a whole number"

        def convert(v: Any) -> int | None:
            if isinstance(v, bool) or not isinstance(v, int):
                return None
            if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
                return None
            return v

        return self._get(name, default, convert, expected)

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        def convert(v: Any) -> float | None:
            if isinstance(v, bool) or not isinstance(v, int | float):
                return None
            return float(v) if v >= minimum else None

        return self._get(name, default, convert, f"is not a number of at least {minimum:g}")

    def duration(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        """Seconds, from a number or a string such as "250ms", "30s", "5m", "2h", "1d"."""

        def convert(v: Any) -> float | None:
            if isinstance(v, bool):
                return None
            if isinstance(v, int | float):
                return float(v)
            return parse_duration(v) if isinstance(v, str) else None

        expected = 'is not a duration (expected e.g. "250ms", "30s", "5m", "2h", "1d" or seconds)'
        return self._at_least(
            name, self._get(name, default, convert, expected), default, minimum, f"{minimum:g}s"
        )

    def size(self, name: str, default: int, *, minimum: int = 1) -> int:
        """Bytes, from a number or a string such as "25MB" or "512KiB"."""

        def convert(v: Any) -> int | None:
            if isinstance(v, bool):
                return None
            return v if isinstance(v, int) else parse_size(v) if isinstance(v, str) else None

        expected = 'is not a size (expected e.g. "25MB", "512KiB" or bytes)'
        return self._at_least(
            name, self._get(name, default, convert, expected), default, minimum, f"{minimum} bytes"
        )

    def _at_least(self, name: str, value: T, default: T, minimum: Any, shown: str) -> T:
        if value < minimum:
            self.problem(name, f"{show(self._table[name])} is less than the minimum, {shown}")
            return default
        return value

    def path(self, name: str, default: Path | None) -> Path | None:
        """A path; the empty string means none."""

        def convert(v: Any) -> Path | None:
            return Path(v) if isinstance(v, str) and v else None

        if self.raw(name) == "":
            return None
        return self._get(name, default, convert, "is not a path")

    def host_port(self, name: str, default: HostPort) -> HostPort:
        self._known.add(name)
        if name not in self._table:
            return default
        return self.parse_address(name, self._table[name], default)

    def parse_address(self, name: str, value: Any, default: HostPort) -> HostPort:
        if not isinstance(value, str):
            self.problem(name, f"{show(value)} is not HOST:PORT")
            return default
        address, why = parse_host_port(value)
        if address is None:
            self.problem(name, f"{show(value)} {why}")
            return default
        return address

    def string_list(
        self,
        name: str,
        default: tuple[str, ...],
        *,
        item: Callable[[str], str | None] | None = None,
        expected: str = "is not a string",
    ) -> tuple[str, ...]:
        """A list of strings; a single string is taken as a list of one."""
        self._known.add(name)
        if name not in self._table:
            return default
        value = self._table[name]
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list):
            self.problem(name, f"{show(value)} is not a list of strings")
            return default
        out: list[str] = []
        for index, entry in enumerate(values):
            checked = (item(entry) if item else entry) if isinstance(entry, str) else None
            if checked is None:
                where = self.key(name) if isinstance(value, str) else f"{self.key(name)}[{index}]"
                self._problems.add(where, f"{show(entry)} {expected}")
            else:
                out.append(checked)
        return tuple(out)

    def secret(self, name: str, default: str) -> str:
        """A secret given as ``name``, ``name_env`` (an environment variable) or
        ``name_file`` (a file holding it); at most one of the three."""
        given = [n for n in (name, f"{name}_env", f"{name}_file") if self.has(n)]
        if len(given) > 1:
            self.problem(name, f"set only one of {', '.join(given)}")
            return default
        if f"{name}_env" in given:
            variable = self.string(f"{name}_env", "")
            if variable not in os.environ:
                self.problem(f"{name}_env", f"{show(variable)}: environment variable is not set")
                return default
            return os.environ[variable]
        if f"{name}_file" in given:
            path = self.string(f"{name}_file", "")
            try:
                return Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                self.problem(f"{name}_file", f"{show(path)} cannot be read ({exc.strerror})")
                return default
        return self.string(name, default)

    def table(self, name: str) -> TableReader:
        self._known.add(name)
        value = self._table.get(name, {})
        if not isinstance(value, Mapping):
            self.problem(name, f"{show(value)} is not a table")
            value = {}
        return TableReader(value, self.key(name), self._problems)

    def child(self, value: Mapping[str, Any], name: str) -> TableReader:
        """A reader for a table found inside this one (e.g. an inline table in a list)."""
        return TableReader(value, self.key(name), self._problems)

    def tables(self, name: str) -> list[TableReader] | None:
        """An array of tables, or None when the key is absent."""
        self._known.add(name)
        if name not in self._table:
            return None
        value = self._table[name]
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            self.problem(name, f"{show(value)} is not an array of tables ([[{self.key(name)}]])")
            return []
        return [
            TableReader(v, f"{self.key(name)}[{i}]", self._problems) for i, v in enumerate(value)
        ]

    def finish(self) -> None:
        """Report keys nobody asked for: typos and settings that do not exist."""
        for name in self._table:
            if name in self._known:
                continue
            close = difflib.get_close_matches(name, sorted(self._known), n=1)
            hint = f'; did you mean "{close[0]}"?' if close else ""
            self.problem(name, f"unknown key{hint}")
