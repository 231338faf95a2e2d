"""The log lines about one message, for an administrator's view of its timeline: the
JSON lines of ``[log] file`` bound to its ``message_id`` (as ``gatewayd trace`` shows
them). Only the last ``TAIL_BYTES`` of the file are read, and at most ``MAX_LINES``
lines kept, so a large log never stalls a page; blocking: call it in a thread."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TAIL_BYTES = 32 * 1024 * 1024
MAX_LINES = 300
_SHOWN_APART = ("timestamp", "level", "event", "logger", "message_id")


@dataclass(frozen=True, slots=True)
class LogLine:
    timestamp: str
    level: str
    event: str
    rest: str  # the other keys, key=value


def lines_for(path: Path, message_id: int) -> list[LogLine]:
    """The lines bound to ``message_id``, oldest first; [] when the file is missing."""
    needle = str(message_id).encode()
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            start = max(0, size - TAIL_BYTES)
            handle.seek(start)
            data = handle.read()
    except OSError:
        return []
    if start:
        data = data.partition(b"\n")[2]  # the first line is cut
    found: list[LogLine] = []
    for raw in data.splitlines():
        if needle not in raw:
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("message_id") == message_id:
            found.append(_line(entry))
    return found[-MAX_LINES:]


def _line(entry: dict[str, Any]) -> LogLine:
    rest = " ".join(f"{k}={v}" for k, v in entry.items() if k not in _SHOWN_APART)
    return LogLine(
        str(entry.get("timestamp", "")),
        str(entry.get("level", "")),
        str(entry.get("event", "")),
        rest,
    )
