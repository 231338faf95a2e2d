"""``gatewayd messages list|show``, ``gatewayd trace`` and ``gatewayd purge``: the
mailbox for operators."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from gatewayd.cli import config_option, json_option, logs
from gatewayd.cli.output import CommandError, parse_id, print_json, table
from gatewayd.config.settings import SQLITE_FILE_NAME, Settings
from gatewayd.errors import MessageNotFound
from gatewayd.mailbox import EPOCH, Mailbox, Message, MessagePage, MessageQuery, SweepReport, iso
from gatewayd.model import Availability, MessageStatus, MessageType


def arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="messages_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="messages, newest first")
    config_option(listing)
    json_option(listing)
    listing.add_argument("--extension", metavar="N", help="extension number or id")
    listing.add_argument("--type", choices=[t.value for t in MessageType])
    listing.add_argument("--status", choices=[s.value for s in MessageStatus])
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.set_defaults(handler=list_command)
    show = actions.add_parser("show", help="one message with its attachments")
    config_option(show)
    json_option(show)
    show.add_argument("id")
    show.set_defaults(handler=show_command)


def trace_arguments(parser: argparse.ArgumentParser) -> None:
    json_option(parser)
    parser.add_argument("id")
    parser.set_defaults(handler=trace_command)


def purge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=purge_command)


@asynccontextmanager
async def open_mailbox(settings: Settings) -> AsyncIterator[Mailbox]:
    """The mailbox, which must already exist: reading commands never create one."""
    mailbox_settings = settings.mailbox
    if mailbox_settings.is_sqlite and not mailbox_settings.database_url:
        path = mailbox_settings.data_dir / SQLITE_FILE_NAME
        if not path.exists():
            raise CommandError(
                f"no mailbox at {path} (mailbox.data_dir); has gatewayd run with this config?"
            )
    mailbox = await Mailbox.open(mailbox_settings)
    try:
        yield mailbox
    finally:
        await mailbox.close()


def _extension(settings: Settings, text: str | None) -> int | None:
    """An extension number from [[users]] ("101") or an extension id."""
    if text is None:
        return None
    for user in settings.users:
        if user.extension_number == text:
            return user.extension_id
    return parse_id(text, "extension number or id")


def _party(message: Message, to: bool) -> str:
    parties = message.to if to else (message.from_,)
    names = [p.phone_number or p.extension_number or p.name or "?" for p in parties]
    return ", ".join(names)


def list_command(settings: Settings, args: argparse.Namespace) -> int:
    query = MessageQuery(
        extension_id=_extension(settings, args.extension),
        availability=tuple(Availability),
        date_from=EPOCH,
        message_type=(MessageType(args.type),) if args.type else (),
        message_status=(MessageStatus(args.status),) if args.status else (),
        per_page=args.limit,
    )
    page = asyncio.run(_find(settings, query))
    if args.json:
        print_json([m.to_json(internal=True) for m in page.records])
        return 0
    table(
        [
            "ID",
            "TYPE",
            "DIRECTION",
            "STATUS",
            "AVAILABILITY",
            "READ",
            "EXT",
            "FROM",
            "TO",
            "CREATED",
            "SUBJECT",
        ],
        [
            [
                m.id,
                m.type,
                m.direction,
                m.message_status,
                m.availability,
                m.read_status,
                m.extension_id,
                _party(m, False),
                _party(m, True),
                iso(m.creation_time),
                m.subject,
            ]
            for m in page.records
        ],
    )
    if page.total > len(page.records):
        print(f"({len(page.records)} of {page.total}; --limit shows more)", file=sys.stderr)
    return 0


def show_command(settings: Settings, args: argparse.Namespace) -> int:
    message_id = parse_id(args.id)
    message, parts = asyncio.run(_message_and(settings, message_id, "parts"))
    if args.json:
        data = message.to_json(internal=True)
        data["gatewayd"]["parts"] = [
            {
                "part": p.index,
                "status": p.status.value,
                "link": p.link,
                "carrierId": p.carrier_id,
                "errorCode": p.error_code,
                "submittedAt": iso(p.submitted_at),
                "doneAt": iso(p.done_at),
            }
            for p in parts
        ]
        print_json(data)
        return 0
    _print_summary(message)
    if message.attachments:
        print("\nAttachments")
        table(
            ["ID", "TYPE", "CONTENT TYPE", "SIZE", "FILE NAME"],
            [[a.id, a.type, a.content_type, a.size, a.file_name] for a in message.attachments],
        )
    if parts:
        print("\nParts")
        table(
            ["PART", "STATUS", "LINK", "CARRIER ID", "ERROR", "SUBMITTED", "DONE"],
            [
                [
                    p.index,
                    p.status,
                    p.link,
                    p.carrier_id,
                    p.error_code,
                    iso(p.submitted_at),
                    iso(p.done_at),
                ]
                for p in parts
            ],
        )
    return 0


def _print_summary(message: Message) -> None:
    fields = [
        ("message", f"{message.id}  {message.type} {message.direction}"),
        ("mailbox", f"account {message.account_id}, extension {message.extension_id}"),
        ("from", _party(message, False)),
        ("to", _party(message, True)),
        ("status", f"{message.message_status} · {message.availability} · {message.read_status}"),
        ("created", iso(message.creation_time)),
        ("modified", iso(message.last_modified_time)),
        ("subject", message.subject),
        ("attempts", message.attempts),
        ("next attempt", iso(message.next_attempt_at)),
        ("lease owner", message.lease_owner),
        ("carrier", " ".join(x for x in (message.carrier, message.carrier_ref) if x) or None),
        ("error", message.fax_error_code or message.delivery_error_code),
        ("failure", message.failure_reason),
    ]
    for label, value in fields:
        if value not in (None, ""):
            print(f"{label + ':':<14}{value}")


async def _find(settings: Settings, query: MessageQuery) -> MessagePage:
    async with open_mailbox(settings) as mailbox:
        return await mailbox.find(query)


async def _message_and(settings: Settings, message_id: int, what: str) -> tuple[Message, Any]:
    """The message and its parts or events; CommandError for an unknown id."""
    async with open_mailbox(settings) as mailbox:
        try:
            message = await mailbox.get(message_id)
        except MessageNotFound:
            raise CommandError(f"no message {message_id} in the mailbox") from None
        more = await (mailbox.parts(message_id) if what == "parts" else mailbox.events(message_id))
        return message, more


def trace_command(settings: Settings, args: argparse.Namespace) -> int:
    message_id = parse_id(args.id)
    message, events = asyncio.run(_message_and(settings, message_id, "events"))
    log_path: Path | None = settings.log.file
    lines = (
        list(logs.select(log_path, message_id=message_id)) if log_path and log_path.exists() else []
    )
    if args.json:
        print_json(
            {
                "message": message.to_json(internal=True),
                "events": [e.to_json() for e in events],
                "log": lines,
            }
        )
        return 0
    _print_summary(message)
    print("\nTimeline")
    table(
        ["AT", "KIND", "FROM", "TO", "REASON", "DETAIL"],
        [
            [iso(e.at), e.kind, e.from_value, e.to_value, e.reason, _detail(e.detail)]
            for e in events
        ],
        width=None,
    )
    if log_path is None:
        print("\n(no log file: log.file is not set)")
    else:
        print(f"\nLog lines ({log_path})")
        for entry in lines:
            print("  " + logs.format_line(entry))
        if not lines:
            print("  (none)")
    return 0


def _detail(detail: dict[str, Any] | None) -> str | None:
    shown = " ".join(f"{k}={v}" for k, v in (detail or {}).items() if v is not None)
    return shown or None


def purge_command(settings: Settings, args: argparse.Namespace) -> int:
    report = asyncio.run(_sweep_once(settings))
    print(
        f"purged {report.purged}, removed {report.removed}, auto-deleted "
        f"{report.auto_deleted}, attachment files erased "
        f"{report.blobs_erased + report.orphans_erased}"
    )
    return 0


async def _sweep_once(settings: Settings) -> SweepReport:
    async with open_mailbox(settings) as mailbox:
        return await mailbox.sweep(orphans=True)
