"""``gatewayd status``: what the gateway is doing, at a glance.

Asked of the running daemon on its socket in the data directory (gatewayd/control.py):
readiness, links and their states, the fax carrier, the queue, the statuses of the
last hour, the latest failures, the nodes. When no daemon answers, the same from the
mailbox alone, and the first line says so. ``--json`` prints the document as it came
(docs/operations.md describes it). Exit 0 whenever a status could be read (``ready``
in the document says whether the daemon is ready), 1 when there is neither a daemon
nor a mailbox.

Asking the daemon needs nothing but the standard library: the command starts fast.
"""

from __future__ import annotations

import argparse
from typing import Any

from gatewayd import control, lockfile
from gatewayd.cli import json_option, operator_logging
from gatewayd.cli.output import print_json, table
from gatewayd.config.settings import Settings

STATUS_ORDER = ("Queued", "Sent", "Delivered", "DeliveryFailed", "SendingFailed", "Received")


def arguments(parser: argparse.ArgumentParser) -> None:
    json_option(parser)
    parser.set_defaults(handler=command, logging=False)  # asking the daemon logs nothing


def command(settings: Settings, args: argparse.Namespace) -> int:
    data_dir = settings.mailbox.data_dir
    try:
        document = control.ask(data_dir)
    except control.NotRunning as exc:
        why = str(exc)
        pid = lockfile.holder(data_dir)
        if pid is not None:
            why = f"a daemon (pid {pid or '?'}) holds {data_dir} but does not answer: {why}"
        import asyncio

        operator_logging()
        document = asyncio.run(_offline(settings, why))
    if args.json:
        print_json(document)
    else:
        show(document)
    return 0


async def _offline(settings: Settings, why: str) -> dict[str, Any]:
    from gatewayd.cli.messages import open_mailbox
    from gatewayd.status import offline_snapshot

    async with open_mailbox(settings) as mailbox:
        return await offline_snapshot(mailbox, settings, why)


# -- text -------------------------------------------------------------------------------


def show(document: dict[str, Any]) -> None:
    _heading(document)
    if "error" in document:
        print(f"\n{document['error']}")
        return
    if document.get("checks"):
        print("\nChecks")
        table(
            ["CHECK", "", "DETAIL"],
            [[c["name"], "ok" if c["ok"] else "FAIL", c["detail"]] for c in document["checks"]],
            width=None,
        )
    _links(document)
    _fax(document)
    _mailbox(document)


def _heading(document: dict[str, Any]) -> None:
    daemon = document.get("daemon", {})
    version = document.get("version", "?")
    if not daemon.get("running"):
        print(f"gatewayd {version} on node {daemon.get('node', '?')}: NOT RUNNING")
        print(f"  {daemon.get('why', '')}")
        print("  What follows is from the mailbox alone.")
        return
    ready = "ready" if document.get("ready") else "NOT READY"
    if daemon.get("stopping"):
        ready = "STOPPING"
    print(
        f"gatewayd {version} on node {daemon['node']} ({daemon['host']}, pid {daemon['pid']}): "
        f"{ready}, up {duration(daemon['uptimeSeconds'])} (since {daemon['startedAt']})"
    )
    print(f"  SMTP on {', '.join(daemon['smtp'])}; API on {daemon['api']}")


def _links(document: dict[str, Any]) -> None:
    links = document.get("links", [])
    print("\nSMPP links")
    if not links:
        print("  (none configured)")
        return
    if document.get("daemon", {}).get("running"):
        rows = [
            [
                link["name"],
                link["address"],
                link["state"] if link["bound"] else link["state"].upper(),
                link["windowInUse"],
                link["error"],
            ]
            for link in links
        ]
        table(["LINK", "ADDRESS", "STATE", "WINDOW", "LAST ERROR"], rows, width=None)
        return
    rows = [
        [link["name"], link["address"], link["lastReported"], link["lastReportedAt"]]
        for link in links
    ]
    table(["LINK", "ADDRESS", "AT THE LAST HEARTBEAT", "HEARTBEAT"], rows, width=None)


def _fax(document: dict[str, Any]) -> None:
    fax = document.get("fax", {})
    line = f"\nFax carrier: {fax.get('carrier')}, {fax.get('state')}"
    if fax.get("reason"):
        line += f" ({fax['reason']})"
    if "following" in fax:
        line += f"; following {fax['following']} job{'s' if fax['following'] != 1 else ''}"
    print(line)


def _mailbox(document: dict[str, Any]) -> None:
    mailbox = document.get("mailbox", {})
    if not mailbox.get("reachable"):
        print(f"\nMailbox {mailbox.get('database')}: UNREACHABLE ({mailbox.get('error')})")
        return
    print("\nQueue")
    table(
        ["TYPE", "QUEUED", "OLDEST"],
        [
            [q["type"], q["depth"], duration(q["oldestAgeSeconds"])]
            for q in document.get("queue", [])
        ],
    )
    history = document.get("lastHour", {})
    print(f"\nLast hour (since {history.get('since')})")
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for item in history.get("counts", []):
        counts.setdefault((item["type"], item["direction"]), {})[item["status"]] = item["count"]
    for (kind, direction), by_status in sorted(counts.items()):
        said = ", ".join(f"{by_status[s]} {s}" for s in sorted(by_status, key=_status_rank))
        print(f"  {kind} {direction}: {said}")
    if not counts:
        print("  (nothing)")
    failures = document.get("failures", [])
    print("\nLatest failures")
    if failures:
        table(
            ["AT", "ID", "TYPE", "STATUS", "TO", "CODE", "REASON"],
            [
                [f["at"], f["id"], f["type"], f["status"], f["to"], f["code"], f["reason"]]
                for f in failures
            ],
            width=60,
        )
    else:
        print("  (none)")
    nodes = document.get("nodes", [])
    if nodes:
        print("\nNodes")
        table(
            ["NODE", "STATE", "HEARTBEAT", "HOST", "PID", "VERSION", "LINKS", "HOLDS"],
            [
                [
                    n["name"],
                    n["state"],
                    f"{n['heartbeatAgeSeconds']:.0f} s ago",
                    n["host"],
                    n["pid"],
                    n["version"],
                    ", ".join(f"{k} {v}" for k, v in sorted(n["links"].items())) or None,
                    ", ".join(f"{c} {k}" for k, c in sorted(n["held"].items())) or None,
                ]
                for n in nodes
            ],
        )


def _status_rank(status: str) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def duration(seconds: float | None) -> str | None:
    """``3d 4h``, ``2h 05m``, ``4m 10s``, ``12s``."""
    if seconds is None:
        return None
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
