"""``gatewayd nodes``: the nodes sharing this mailbox, their heartbeats and what they
hold (docs/scaling.md)."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

from gatewayd.cli import json_option
from gatewayd.cli.messages import open_mailbox
from gatewayd.cli.output import print_json, table
from gatewayd.config.settings import Settings
from gatewayd.mailbox import Node, iso


def arguments(parser: argparse.ArgumentParser) -> None:
    json_option(parser)
    parser.set_defaults(handler=command)


def command(settings: Settings, args: argparse.Namespace) -> int:
    async def read() -> list[Node]:
        async with open_mailbox(settings) as mailbox:
            return await mailbox.nodes()

    found = asyncio.run(read())
    now = datetime.now(UTC)
    stale = settings.node.stale_after
    if getattr(args, "json", False):
        print_json(
            [
                {
                    "name": n.name,
                    "state": n.state(now, stale),
                    "host": n.host,
                    "pid": n.pid,
                    "version": n.version,
                    "startedAt": iso(n.started_at),
                    "heartbeatAt": iso(n.heartbeat_at),
                    "heartbeatAgeSeconds": round(n.age(now), 1),
                    "held": n.held,
                    "info": n.info,
                }
                for n in found
            ]
        )
        return 0
    table(
        ["NODE", "STATE", "HEARTBEAT", "HOST", "PID", "HOLDS", "LINKS"],
        [
            [
                n.name,
                n.state(now, stale),
                f"{n.age(now):.0f} s ago",
                n.host,
                n.pid,
                ", ".join(f"{count} {kind}" for kind, count in sorted(n.held.items())) or "-",
                ", ".join(f"{k} {v}" for k, v in sorted(n.info.get("links", {}).items())) or "-",
            ]
            for n in found
        ],
    )
    return 0
