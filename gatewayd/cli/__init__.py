"""The ``gatewayd`` command. Every subcommand takes ``--config PATH`` and ``--help``
and exits non-zero with a one-line reason on error.

Exit codes: 0 done; 1 failed (check-config found problems, unknown message id, ...);
2 wrong usage; for ``run``: 3 the config is invalid, 4 a part could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gatewayd import __version__, credentials
from gatewayd.cli import logs, messages, nodes, render, smsc_sim
from gatewayd.cli.output import CommandError
from gatewayd.config import Settings, config_path, load_config
from gatewayd.config.settings import LogSettings
from gatewayd.daemon import DEFAULT_GRACE, EXIT_CONFIG, Daemon
from gatewayd.errors import ConfigError, GatewayError
from gatewayd.logging import configure_logging
from gatewayd.mailbox import SweepReport
from gatewayd.model import MessageStatus, MessageType
from gatewayd.render import fonts
from gatewayd.render.office import find_soffice


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $GATEWAYD_CONFIG, else /etc/gatewayd/gatewayd.toml)",
    )
    parser = argparse.ArgumentParser(
        prog="gatewayd",
        parents=[common],
        description="Email-to-fax and email-to-SMS gateway with a unified mailbox.",
    )
    parser.add_argument("--version", action="version", version=f"gatewayd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run the daemon")
    run.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"how long a stop waits for work in flight (default {DEFAULT_GRACE:g})",
    )
    run.set_defaults(handler=_run)

    check = sub.add_parser(
        "check-config",
        parents=[common],
        help="validate the config; print every problem with its key",
    )
    check.set_defaults(handler=None)

    hash_secret = sub.add_parser(
        "hash-secret",
        parents=[common],
        help="hash a password (or, with --token, an API token) for the config; the secret "
        "is read from the terminal or stdin, never from the command line",
    )
    hash_secret.add_argument(
        "--token", action="store_true", help="hash an API token (fast sha256) instead of a password"
    )
    hash_secret.add_argument(
        "--new-token",
        action="store_true",
        help="make a new random API token, print it once with its hash",
    )
    hash_secret.set_defaults(handler=None)

    msgs = sub.add_parser("messages", parents=[common], help="the mailbox: list or show messages")
    msg_sub = msgs.add_subparsers(dest="messages_command", required=True, metavar="ACTION")
    listing = msg_sub.add_parser("list", parents=[common], help="messages, newest first")
    listing.add_argument("--extension", metavar="N", help="extension number or id")
    listing.add_argument("--type", choices=[t.value for t in MessageType])
    listing.add_argument("--status", choices=[s.value for s in MessageStatus])
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(handler=messages.list_command)
    show = msg_sub.add_parser("show", parents=[common], help="one message with its attachments")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=messages.show_command)

    trace = sub.add_parser(
        "trace", parents=[common], help="a message's timeline: every transition and its log lines"
    )
    trace.add_argument("id")
    trace.add_argument("--json", action="store_true")
    trace.set_defaults(handler=messages.trace_command)

    log_cmd = sub.add_parser("logs", parents=[common], help="filter the structured log file")
    log_cmd.add_argument("--message", metavar="ID", help="only lines about this message")
    log_cmd.add_argument("--level", choices=logs.LEVELS, help="this level and above")
    log_cmd.add_argument("--since", metavar="T", help="10m, 2h, 1d, or an ISO 8601 time")
    log_cmd.add_argument("--file", metavar="PATH", help="read this file instead of log.file")
    log_cmd.add_argument("--json", action="store_true", help="JSON array of the matching lines")
    log_cmd.set_defaults(handler=logs.command)

    purge = sub.add_parser("purge", parents=[common], help="run the life-cycle sweep once")
    purge.set_defaults(handler=_purge)

    token = sub.add_parser("token", parents=[common], help="API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="create")
    create = token_sub.add_parser(
        "create", parents=[common],
        help="a new API token for a user: printed once, with the hash for the config",
    )  # fmt: skip
    create.add_argument(
        "--user", required=True, metavar="EMAIL", help="one of the user's addresses"
    )
    create.set_defaults(handler=_token_create)

    render.add_parser(sub, common)
    smsc_sim.add_parser(sub, common)
    nodes.add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = config_path(args.config)
    try:
        if args.command == "check-config":
            return _check_config(path)
        if args.command == "hash-secret":
            return _hash_secret(args)
        try:
            settings = _settings(args, path)
        except ConfigError as exc:
            _fail(
                f"{exc.source}: {exc.problems[0]}"
                + (
                    f" (and {len(exc.problems) - 1} more; see gatewayd check-config)"
                    if len(exc.problems) > 1
                    else ""
                )
            )
            return EXIT_CONFIG if args.command == "run" else 1
        if args.command != "run":
            # Operator commands keep stdout for their output; warnings go to stderr.
            configure_logging(LogSettings(level="warning", format="console"), stream=sys.stderr)
        result: int = args.handler(settings, args)
        return result
    except CommandError as exc:
        _fail(str(exc))
        return 1
    except GatewayError as exc:
        _fail(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


def _settings(args: argparse.Namespace, path: Path) -> Settings:
    """The config; ``render`` and ``smsc-sim`` also run without one, on the built-in
    defaults."""
    if args.command in ("render", "smsc-sim") and not path.exists() and path == config_path(None):
        return Settings()
    return load_config(path)


def _fail(reason: str) -> None:
    print(f"gatewayd: {reason}", file=sys.stderr)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    import uvloop  # noqa: PLC0415  (only the daemon needs it)

    stop_logging = configure_logging(settings.log, background=True)
    daemon = Daemon(settings, grace=args.grace, config_path=config_path(args.config))
    try:
        # uvloop: the event loop in C (libuv); every socket and timer costs less.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(daemon.run())
    finally:
        stop_logging()


def _check_config(path: Any) -> int:
    try:
        settings = load_config(path)
    except ConfigError as exc:
        print(
            f"{path}: {len(exc.problems)} problem{'s' if len(exc.problems) > 1 else ''}",
            file=sys.stderr,
        )
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    s = settings
    print(f"{path}: OK")
    print(
        f"  mailbox    {s.mailbox.url if s.mailbox.database_url else s.mailbox.data_dir}"
        f" (deleted kept {s.mailbox.retention_deleted_days} d, purged kept "
        f"{s.mailbox.retention_purged_days} d, at most {s.mailbox.max_messages or 'unlimited'}"
        " messages per extension)"
    )
    print(
        f"  smtp       {', '.join(str(x.address) for x in s.smtp.listen)}; fax "
        f"@{s.smtp.fax_domain}, sms @{s.smtp.sms_domain}"
    )
    print(f"  sms        {', '.join(f'{x.name} ({x.address})' for x in s.sms.links)}")
    print(f"  fax        {s.fax.carrier} carrier, {s.fax.resolution}, {s.fax.paper}")
    engine_ok = _check_sip(s)
    office = find_soffice(s.fax)
    print(
        f"  office     LibreOffice at {office}: Word, Excel, PowerPoint, OpenDocument and RTF "
        "documents are faxed"
        if office
        else "  office     LibreOffice not found (fax.libreoffice, PATH): Word, Excel, PowerPoint, "
        "OpenDocument and RTF documents are refused"
    )
    dejavu = fonts.find(fonts.DEJAVU["sans"][0])
    print(
        f"  fonts      DejaVu at {dejavu.parent}: text pages and cover pages"
        if dejavu
        else "  fonts      warning: DejaVu not found (install fonts-dejavu-core): text and cover "
        "pages use reportlab's Vera, which has Western European letters only; other "
        "characters print as [U+XXXX]"
    )
    print(f"  api        {s.api.listen}")
    print(
        f"  log        {s.log.level}, {s.log.format}"
        + (f", file {s.log.file}" if s.log.file else "")
    )
    print(f"  notify     {'relay ' + str(s.notify.relay) if s.notify.enabled else 'off'}")
    print(f"  users      {len(s.users)}: " + ", ".join(u.emails[0] for u in s.users))
    return 0 if engine_ok else 1


def _check_sip(s: Settings) -> bool:
    """The [fax.sip] line; False when the fax engine (libspandsp) cannot be loaded."""
    if not s.fax.sip_runs:
        return True
    from gatewayd.fax.sip import engine  # noqa: PLC0415 - only this command needs it

    sip = s.fax.sip
    who = f"registers as {sip.username}" if sip.registers else "does not register"
    print(
        f"  sip        {sip.transport} via {sip.proxy}, {who}, listens on {sip.local_address}; "
        f"T.38 {'on' if sip.t38 else 'off'}, ECM {'on' if sip.ecm else 'off'}, "
        f"{sip.max_calls} calls at once, media ports {sip.media_ports[0]}-{sip.media_ports[1]}"
        + ("" if s.fax.carrier == "sip" else " (receiving only)")
    )
    try:
        print(f"  fax engine {engine.describe()}")
    except engine.EngineUnavailable as exc:
        print(f"  fax engine error: {exc}")
        return False
    return True


def _read_secret(prompt: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("again: ") != first:
            raise CommandError("the two entries differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _hash_secret(args: argparse.Namespace) -> int:
    if args.new_token:
        token = credentials.new_token()
        print(f"token: {token}")
        print(f'api_token_hash = "{credentials.hash_token(token)}"')
        return 0
    secret = _read_secret("token: " if args.token else "password: ")
    if not secret:
        raise CommandError("empty secret: nothing to hash")
    print(credentials.hash_token(secret) if args.token else credentials.hash_password(secret))
    return 0


def _token_create(settings: Settings, args: argparse.Namespace) -> int:
    user = settings.user_by_email(args.user)
    if user is None:
        raise CommandError(f"no user has the address {args.user!r} in the config")
    token = credentials.new_token()
    print(f"token: {token}")
    print(f"# in the [[users]] entry of {user.emails[0]} (extension {user.extension_number}):")
    print(f'api_token_hash = "{credentials.hash_token(token)}"')
    print("# then reload or restart gatewayd; the token is not stored anywhere else")
    return 0


def _purge(settings: Settings, args: argparse.Namespace) -> int:
    report = asyncio.run(_sweep_once(settings))
    print(
        f"purged {report.purged}, removed {report.removed}, auto-deleted "
        f"{report.auto_deleted}, attachment files erased "
        f"{report.blobs_erased + report.orphans_erased}"
    )
    return 0


async def _sweep_once(settings: Settings) -> SweepReport:
    async with messages.open_mailbox(settings) as mailbox:
        return await mailbox.sweep(orphans=True)
