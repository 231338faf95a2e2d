"""``gatewayd messages list|show|cancel|retry|delete|restore``, ``gatewayd trace`` and
``gatewayd purge``: the mailbox for operators.

The actions take several ids and do what they can: each id gets a line (on stderr
when refused, with the reason), and the command exits 1 when any was refused. They
work on the mailbox directly, so also with the daemon stopped; a running daemon
notices at its next look at the queue (a fax at its carrier is taken back there by
its dispatcher, a retry is sent like any new message).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from gatewayd.cli import config_option, json_option, logs
from gatewayd.cli.output import CommandError, parse_id, print_json, table
from gatewayd.config.settings import SQLITE_FILE_NAME, Settings
from gatewayd.errors import InvalidTransition, MessageNotFound, StoreError
from gatewayd.mailbox import (
    EPOCH,
    Event,
    Mailbox,
    Message,
    MessagePage,
    MessageQuery,
    Part,
    SweepReport,
    iso,
)
from gatewayd.model import Availability, AvailabilityAction, MessageStatus, MessageType

E = TypeVar("E", bound=StrEnum)


def arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="messages_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="messages, newest first")
    config_option(listing)
    json_option(listing)
    listing.add_argument("--extension", metavar="N", help="extension number or id")
    listing.add_argument(
        "--type",
        metavar="T[,T]",
        type=_one_or_more(MessageType),
        help=f"one or more of {', '.join(t.value for t in MessageType)}",
    )
    listing.add_argument(
        "--status",
        metavar="S[,S]",
        type=_one_or_more(MessageStatus),
        help=f"one or more of {', '.join(s.value for s in MessageStatus)}",
    )
    listing.add_argument(
        "--since", metavar="T", help="created since: 10m, 2h, 1d, or an ISO 8601 time"
    )
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.set_defaults(handler=list_command)
    show = actions.add_parser("show", help="one message with its attachments")
    config_option(show)
    json_option(show)
    show.add_argument("id")
    show.set_defaults(handler=show_command)
    for name, help_text, handler in (
        ("cancel", "a Queued outbound SMS or fax: SendingFailed, cancelled", cancel_command),
        ("retry", "a failed outbound SMS or fax: sent again as a new message", retry_command),
        ("delete", "to Deleted (restorable; a Queued fax is cancelled)", delete_command),
        ("restore", "a Deleted message: Alive again", restore_command),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text)
        config_option(action)
        json_option(action)
        action.add_argument("ids", nargs="+", metavar="ID")
        if name in ("cancel", "retry"):
            action.add_argument("--reason", help="why (kept in the message's events)")
        if name == "delete":
            action.add_argument(
                "--purge", action="store_true", help="to Purged at once: the content is erased"
            )
        action.set_defaults(handler=handler)


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


def _one_or_more(kind: type[E]) -> Callable[[str], tuple[E, ...]]:
    """An argparse type: ``A,B`` as members of ``kind`` (wrong usage names the rest)."""

    def parse(text: str) -> tuple[E, ...]:
        found = []
        for word in (w.strip() for w in text.split(",")):
            try:
                found.append(kind(word))
            except ValueError:
                allowed = ", ".join(member.value for member in kind)
                raise argparse.ArgumentTypeError(f"{word!r} is not one of {allowed}") from None
        return tuple(found)

    return parse


def list_command(settings: Settings, args: argparse.Namespace) -> int:
    since = logs.parse_since(args.since, datetime.now(UTC)) if args.since else EPOCH
    query = MessageQuery(
        extension_id=_extension(settings, args.extension),
        availability=tuple(Availability),
        date_from=since,
        message_type=args.type or (),
        message_status=args.status or (),
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
            "EXT",
            "FROM",
            "TO",
            "CREATED",
            "ATTEMPTS",
            "NEXT ATTEMPT",
            "REASON",
            "SUBJECT",
        ],
        [
            [
                m.id,
                m.type,
                m.direction,
                m.message_status,
                m.availability,
                m.extension_id,
                _party(m, False),
                _party(m, True),
                iso(m.creation_time),
                m.attempts if m.type in (MessageType.SMS, MessageType.FAX) else None,
                iso(m.next_attempt_at),
                m.failure_reason,
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
    message, (parts, events) = asyncio.run(_message_and(settings, message_id, "parts"))
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
        data["gatewayd"].update(_retries(events))
        print_json(data)
        return 0
    _print_summary(message, parts, events)
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


def _retries(events: list[Event]) -> dict[str, Any]:
    """What the message was retried as, and what it is a retry of (its events)."""
    retried_as = [
        e.detail["retry"] for e in events if e.kind == "retry" and e.detail and "retry" in e.detail
    ]
    retry_of = next(
        (e.detail["retry_of"] for e in events if e.detail and "retry_of" in e.detail), None
    )
    return {"retriedAs": retried_as, "retryOf": retry_of}


def _carrier(message: Message, parts: list[Part]) -> str | None:
    """The carrier and its reference for the message: a fax's job, an SMS's part ids."""
    if message.carrier or message.carrier_ref:
        return f"{message.carrier or '?'}, reference {message.carrier_ref or '(not yet)'}"
    ids = [f"{p.link} {p.carrier_id}" for p in parts if p.carrier_id]
    return ", ".join(ids) if ids else None


def _print_summary(
    message: Message, parts: list[Part] | None = None, events: list[Event] | None = None
) -> None:
    retries = _retries(events or [])
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
        ("carrier", _carrier(message, parts or [])),
        ("error", message.fax_error_code or message.delivery_error_code),
        ("failure", message.failure_reason),
        ("retry of", retries["retryOf"]),
        ("retried as", ", ".join(str(i) for i in retries["retriedAs"]) or None),
    ]
    for label, value in fields:
        if value not in (None, ""):
            print(f"{label + ':':<14}{value}")


async def _find(settings: Settings, query: MessageQuery) -> MessagePage:
    async with open_mailbox(settings) as mailbox:
        return await mailbox.find(query)


async def _message_and(settings: Settings, message_id: int, what: str) -> tuple[Message, Any]:
    """The message and its parts and events, or its events; CommandError for an
    unknown id."""
    async with open_mailbox(settings) as mailbox:
        try:
            message = await mailbox.get(message_id)
        except MessageNotFound:
            raise CommandError(f"no message {message_id} in the mailbox") from None
        events = await mailbox.events(message_id)
        if what == "parts":
            return message, (await mailbox.parts(message_id), events)
        return message, events


# -- actions ----------------------------------------------------------------------------

Action = Callable[[Mailbox, int], Awaitable[Message]]


def _operator() -> str:
    """Who acts: the person behind sudo, else this process's user."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _act(
    settings: Settings,
    args: argparse.Namespace,
    action: Action,
    said: Callable[[int, Message], str],
) -> int:
    ids = [parse_id(text) for text in args.ids]
    results: list[dict[str, Any]] = []

    async def run() -> None:
        async with open_mailbox(settings) as mailbox:
            for message_id in ids:
                try:
                    message = await action(mailbox, message_id)
                except MessageNotFound:
                    results.append({"id": message_id, "ok": False, "error": "no such message"})
                except StoreError as exc:
                    results.append({"id": message_id, "ok": False, "error": _why(exc)})
                else:
                    results.append(
                        {
                            "id": message_id,
                            "ok": True,
                            "line": said(message_id, message),
                            "message": message.to_json(internal=True),
                        }
                    )

    asyncio.run(run())
    if args.json:
        print_json([{k: v for k, v in r.items() if k != "line"} for r in results])
    else:
        for result in results:
            if result["ok"]:
                print(result["line"])
            else:
                print(f"gatewayd: {result['id']}: {result['error']}", file=sys.stderr)
    return 0 if all(r["ok"] for r in results) else 1


def _why(exc: StoreError) -> str:
    text = str(exc)
    if isinstance(exc, InvalidTransition) and " refused: " in text:
        return f"refused, it is {exc.current}: {text.split(' refused: ', 1)[1]}"
    return text


def cancel_command(settings: Settings, args: argparse.Namespace) -> int:
    reason = args.reason or f"by an operator ({_operator()}, command line)"

    async def cancel(mailbox: Mailbox, message_id: int) -> Message:
        return await mailbox.cancel(message_id, reason=reason)

    return _act(
        settings,
        args,
        cancel,
        lambda i, m: f"{i}: cancelled ({m.message_status}: {m.failure_reason})",
    )


def retry_command(settings: Settings, args: argparse.Namespace) -> int:
    reason = args.reason or f"asked by an operator ({_operator()}, command line)"

    async def retry(mailbox: Mailbox, message_id: int) -> Message:
        return await mailbox.retry(message_id, reason=reason)

    return _act(settings, args, retry, lambda i, m: f"{i}: retried as {m.id} ({m.message_status})")


def delete_command(settings: Settings, args: argparse.Namespace) -> int:
    action = AvailabilityAction.PURGE if args.purge else AvailabilityAction.DELETE
    reason = f"{'purged' if args.purge else 'deleted'} by an operator ({_operator()}, command line)"

    async def delete(mailbox: Mailbox, message_id: int) -> Message:
        return await mailbox.change_availability(message_id, action, reason=reason)

    return _act(settings, args, delete, lambda i, m: f"{i}: {m.availability}")


def restore_command(settings: Settings, args: argparse.Namespace) -> int:
    reason = f"restored by an operator ({_operator()}, command line)"

    async def restore(mailbox: Mailbox, message_id: int) -> Message:
        return await mailbox.change_availability(
            message_id, AvailabilityAction.RESTORE, reason=reason
        )

    return _act(settings, args, restore, lambda i, m: f"{i}: {m.availability}")


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
    _print_summary(message, None, events)
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
