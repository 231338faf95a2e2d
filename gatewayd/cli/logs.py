"""``gatewayd logs``: filter the JSON-lines log file that ``[log] file`` names."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gatewayd.cli import json_option
from gatewayd.cli.output import CommandError, parse_id, print_json
from gatewayd.config.reader import parse_duration
from gatewayd.config.settings import Settings

LEVELS = ("debug", "info", "warning", "error", "critical")
_SKIP_KEYS = ("timestamp", "level", "event", "logger")


def arguments(parser: argparse.ArgumentParser) -> None:
    json_option(parser)
    parser.add_argument("--message", metavar="ID", help="only lines about this message")
    parser.add_argument("--level", choices=LEVELS, help="this level and above")
    parser.add_argument("--since", metavar="T", help="10m, 2h, 1d, or an ISO 8601 time")
    parser.add_argument("--file", metavar="PATH", help="read this file instead of log.file")
    parser.set_defaults(handler=command)


def log_file(settings: Settings, override: str | None) -> Path:
    if override:
        return Path(override)
    if settings.log.file is None:
        raise CommandError(
            "log.file is not set in the config, so there is no log file to read "
            "(under systemd: journalctl -u gatewayd)"
        )
    return settings.log.file


def parse_since(text: str, now: datetime) -> datetime:
    """``10m``, ``2h``, ``1d`` ago, or an ISO 8601 time (UTC when no zone is given)."""
    seconds = parse_duration(text)
    if seconds is not None:
        return now - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(
            f"--since {text!r} is neither a duration (10m, 2h, 1d) nor an ISO 8601 time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Every JSON object in the log file; lines that are not JSON objects are skipped."""
    try:
        handle = path.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CommandError(f"cannot read the log file {path}: {exc.strerror}") from exc
    with handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield entry


def _when(entry: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(entry.get("timestamp", "")).replace("Z", "+00:00"))
    except ValueError:
        return None


def select(
    path: Path,
    *,
    message_id: int | None = None,
    level: str | None = None,
    since: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    floor = LEVELS.index(level) if level else 0
    for entry in read_lines(path):
        if message_id is not None and entry.get("message_id") != message_id:
            continue
        entry_level = str(entry.get("level", "info")).lower()
        if entry_level in LEVELS and LEVELS.index(entry_level) < floor:
            continue
        if since is not None:
            when = _when(entry)
            if when is None or when < since:
                continue
        yield entry


def format_line(entry: dict[str, Any]) -> str:
    rest = " ".join(f"{k}={v}" for k, v in entry.items() if k not in _SKIP_KEYS)
    return (
        f"{entry.get('timestamp', '?')} {entry.get('level', '?')!s:<7} "
        f"{entry.get('event', '?')}  {rest}".rstrip()
    )


def command(settings: Settings, args: argparse.Namespace) -> int:
    path = log_file(settings, args.file)
    message_id = parse_id(args.message) if args.message else None
    since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    entries = select(path, message_id=message_id, level=args.level, since=since)
    if args.json:
        print_json(list(entries))
    else:
        for entry in entries:
            print(format_line(entry))
    return 0
