"""``gatewayd run``: the daemon in the foreground (under systemd: Type=notify)."""

from __future__ import annotations

import argparse
import asyncio

from gatewayd.config.review import review
from gatewayd.config.settings import Settings
from gatewayd.daemon import DEFAULT_GRACE, Daemon
from gatewayd.logging import configure_logging, get_logger

log = get_logger("gatewayd.config")


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"how long a stop waits for work in flight (default {DEFAULT_GRACE:g})",
    )
    parser.set_defaults(handler=command)


def command(settings: Settings, args: argparse.Namespace) -> int:
    import uvloop

    from gatewayd.guard.process import private_files

    private_files()  # before the log file is made: what the daemon creates is its own
    stop_logging = configure_logging(settings.log, background=True)
    try:
        for advice in review(settings):
            log.warning("config.warning", key=advice.key, problem=advice.text)
        daemon = Daemon(settings, grace=args.grace, config_path=args.config)
        # uvloop: the event loop in C (libuv); every socket and timer costs less.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(daemon.run())
    finally:
        stop_logging()
