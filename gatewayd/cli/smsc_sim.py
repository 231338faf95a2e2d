"""``gatewayd smsc-sim``: the SMSC simulator (gatewayd/sms/simulator.py) on a port."""

from __future__ import annotations

import argparse
import asyncio

from gatewayd.cli.output import CommandError
from gatewayd.config.settings import Settings
from gatewayd.sms.simulator import LAYOUTS, SimSettings, serve


def arguments(sim: argparse.ArgumentParser) -> None:
    sim.description = (
        "An SMSC simulator. Outcomes by the destination's last four digits: "
        "0001 UNDELIV, 0002 EXPIRED, 0003 REJECTD, 0004 ENROUTE then DELIVRD, 0005 no "
        "receipt, 0006 ACCEPTD, 0007 receipt before the submit_sm_resp, 0008 ESME_RSYSERR "
        "once, 0009 ESME_RINVDSTADR, 0010 ESME_RTHROTTLED once; else DELIVRD."
    )
    defaults = SimSettings()
    sim.add_argument("--listen", default="127.0.0.1:2775", metavar="HOST:PORT")
    sim.add_argument("--system-id", default=defaults.system_id)
    sim.add_argument("--password", default=defaults.password)
    sim.add_argument("--id-format", choices=("hex", "decimal"), default=defaults.id_format)
    sim.add_argument(
        "--receipt-id-format",
        choices=("same", "decimal", "hex", "padded"),
        default=defaults.receipt_id_format,
    )
    sim.add_argument("--receipt-layout", choices=LAYOUTS, default=defaults.receipt_layout)
    sim.add_argument(
        "--receipt-delay", type=float, default=defaults.receipt_delay, metavar="SECONDS"
    )
    sim.add_argument("--seed", type=int, default=defaults.seed)
    for name, what in (
        ("throttle-every", "answer every Nth submit_sm with ESME_RTHROTTLED"),
        ("silent-every", "leave every Nth submit_sm unanswered"),
        ("disconnect-after", "drop the connection after N submit_sm"),
        ("unbind-after", "unbind after N submit_sm"),
    ):
        sim.add_argument(f"--{name}", type=int, default=0, metavar="N", help=what)
    sim.set_defaults(handler=command, config_mode="optional", as_caller=True)


def command(settings: Settings, args: argparse.Namespace) -> int:
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise CommandError(f"--listen {args.listen!r}: expected HOST:PORT")
    sim = SimSettings(
        system_id=args.system_id,
        password=args.password,
        id_format=args.id_format,
        receipt_id_format=args.receipt_id_format,
        receipt_layout=args.receipt_layout,
        receipt_delay=args.receipt_delay,
        seed=args.seed,
        throttle_every=args.throttle_every,
        silent_every=args.silent_every,
        disconnect_after=args.disconnect_after,
        unbind_after=args.unbind_after,
    )
    return asyncio.run(serve(host, int(port), sim))
