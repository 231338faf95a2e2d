"""The ``gatewayd`` command.

Every subcommand takes ``--help`` and ``--config PATH``; ``--json`` on those with JSON
output. Global options work before or after the subcommand (``gatewayd --config F
check-config`` and ``gatewayd check-config --config F`` are the same).

Start-up costs what the command needs and no more: the parser is built from the table
below, and only the chosen command's module is imported (it adds its arguments and does
the work). ``gatewayd --help`` and ``--version`` import no third-party package;
``check-config`` reads the config without the daemon, the mailbox or the renderer.

Commands that use the service's state (``run``, ``messages``, ``trace``, ``logs``,
``purge``, ...) run as the owner of ``mailbox.data_dir`` when started by root, so
``sudo gatewayd messages list`` never leaves a root-owned file behind
(cli/privileges.py).

Exit codes: 0 done; 1 failed (unknown message id, a problem the operator can fix, ...);
2 wrong usage; 3 the config is invalid (every command); for ``run`` also 4 a part could
not start (another daemon holds the data directory, a port is taken, ...); 130 Ctrl-C;
141 the reader of the output went away (``gatewayd messages list | head``), quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from gatewayd import __version__
from gatewayd.cli.output import CommandError
from gatewayd.errors import ConfigError, GatewayError

if TYPE_CHECKING:
    from pathlib import Path

    from gatewayd.config.settings import Settings

EXIT_FAILED = 1
EXIT_CONFIG = 3  # the same code as gatewayd.daemon.EXIT_CONFIG (a test keeps them equal)
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 128 + signal.SIGPIPE

# name: ("module:function that adds the command's arguments", help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("gatewayd.cli.run:arguments", "run the daemon"),
    "check-config": (
        "gatewayd.cli.check:arguments",
        "validate the config; print every problem and warning with its key",
    ),
    "status": (
        "gatewayd.cli.status:arguments",
        "what the gateway is doing: links, carrier, queue, the last hour, failures, nodes",
    ),
    "messages": (
        "gatewayd.cli.messages:arguments",
        "the mailbox: list, show, cancel, retry, delete or restore messages",
    ),
    "trace": (
        "gatewayd.cli.messages:trace_arguments",
        "a message's timeline: every transition and its log lines",
    ),
    "logs": ("gatewayd.cli.logs:arguments", "filter the structured log file"),
    "purge": ("gatewayd.cli.messages:purge_arguments", "run the life-cycle sweep once"),
    "hash-secret": (
        "gatewayd.cli.secrets:arguments",
        "hash a password (or, with --token, an API token) for the config; the secret is "
        "read from the terminal or stdin, never from the command line",
    ),
    "token": ("gatewayd.cli.tokens:arguments", "API tokens"),
    "nodes": (
        "gatewayd.cli.nodes:arguments",
        "the nodes sharing the mailbox: heartbeat, state, what each holds",
    ),
    "render": (
        "gatewayd.cli.render:arguments",
        "render documents (and a cover page) into a fax TIFF, as the daemon would",
    ),
    "smsc-sim": (
        "gatewayd.cli.smsc_sim:arguments",
        "a local SMPP SMSC for trying the gateway and for tests",
    ),
}

# What a command's parser may set with set_defaults:
#   handler      the function doing the work: handler(settings, args) -> exit code, or
#                handler(args) with config_mode="none"
#   config_mode  "required" (the default), "optional" (the built-in defaults when there
#                is no config file at the default place) or "none" (the handler reads it)
#   json_output  the command has --json
#   as_caller    run as whoever started it, even root (render, hash-secret, ...)
#   logging      set up logging to stderr before the handler runs (False: the handler
#                calls operator_logging() itself if it needs it: the cost of structlog)
_DEFAULTS: dict[str, Any] = {
    "config_mode": "required",
    "json_output": False,
    "as_caller": False,
    "logging": True,
}


_CONFIG_HELP = "config file (default: $GATEWAYD_CONFIG, else /etc/gatewayd/gatewayd.toml)"


def config_option(parser: argparse.ArgumentParser) -> None:
    """``--config PATH`` on a subcommand. Its default is suppressed, so that a value
    given before the subcommand is not overwritten by the subcommand's default."""
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=_CONFIG_HELP)


def json_option(parser: argparse.ArgumentParser) -> None:
    """``--json`` on a subcommand that has JSON output (default suppressed, as above)."""
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="JSON instead of text"
    )
    parser.set_defaults(json_output=True)


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: the first word that is neither a global
    option nor its value."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatewayd",
        description="Email-to-fax and email-to-SMS gateway with a unified mailbox.",
        allow_abbrev=False,  # _chosen must know every spelling of a global option
    )
    parser.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)
    parser.add_argument(
        "--json", action="store_true", help="JSON output, for the commands that have it"
    )
    parser.add_argument("--version", action="version", version=f"gatewayd {__version__}")
    parser.set_defaults(**_DEFAULTS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen(argv)
    for name, (where, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            config_option(command)
            module, function = where.split(":")
            add_arguments: Callable[[argparse.ArgumentParser], None] = getattr(
                importlib.import_module(module), function
            )
            add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            parser = _parser(arguments)
            args = parser.parse_args(arguments)
            if args.json and not args.json_output:
                parser.error(f"{args.command} has no JSON output")
            result = _dispatch(args)
        finally:
            sys.stdout.flush()  # here, not at exit, where a closed pipe is a traceback
    except ConfigError as exc:
        _fail(_one_line(exc))
        return EXIT_CONFIG
    except (CommandError, GatewayError) as exc:
        _fail(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader is gone (`| head`): nothing more to say, and nobody to say it to.
        # Python would flush stdout again at exit and complain; point it at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_CLOSED_PIPE
    except OSError as exc:  # a file or directory the command needs: say which, and why
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}")
        return EXIT_FAILED
    return result


def _dispatch(args: argparse.Namespace) -> int:
    from gatewayd.config.loader import config_path

    args.config = config_path(args.config)
    if args.config_mode == "none":
        handled: int = args.handler(args)
        return handled
    settings = _settings(args)
    if not args.as_caller:
        from gatewayd.cli.privileges import become_owner

        become_owner(settings.mailbox.data_dir)
    if args.command != "run" and args.logging:
        operator_logging()
    result: int = args.handler(settings, args)
    return result


def operator_logging() -> None:
    """Logging for an operator command: stdout stays the command's output; warnings go
    to stderr, and nothing to the daemon's log file. What the mailbox logs of a change
    the command made (a message cancelled: SendingFailed) the command says itself."""
    import logging

    from gatewayd.config.settings import LogSettings
    from gatewayd.logging import configure_logging

    configure_logging(LogSettings(level="warning", format="console", file=None), stream=sys.stderr)
    logging.getLogger("gatewayd.mailbox").setLevel(logging.ERROR)


def _settings(args: argparse.Namespace) -> Settings:
    """The config; with ``config_mode="optional"``, the built-in defaults when no config
    file was named and there is none at the default place."""
    from gatewayd.config.loader import config_path, load_config
    from gatewayd.config.settings import Settings

    path: Path = args.config
    if args.config_mode == "optional" and not path.exists() and path == config_path(None):
        return Settings()
    return load_config(path)


def _one_line(exc: ConfigError) -> str:
    more = len(exc.problems) - 1
    return f"{exc.source}: {exc.problems[0]}" + (
        f" (and {more} more; see gatewayd check-config)" if more else ""
    )


def _fail(reason: str) -> None:
    print(f"gatewayd: {reason}", file=sys.stderr)
