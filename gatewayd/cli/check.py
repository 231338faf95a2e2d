"""``gatewayd check-config``: every problem of the config with its key (exit 3), or a
summary of what it sets up and the warnings of config/review.py (exit 0). With faxes
over SIP, it also loads the fax engine (libspandsp) and says which: exit 1 when it
cannot be loaded."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gatewayd.cli import EXIT_CONFIG, json_option
from gatewayd.cli.output import print_json
from gatewayd.config.loader import load_config
from gatewayd.config.review import review
from gatewayd.config.settings import Settings
from gatewayd.errors import ConfigError


def arguments(parser: argparse.ArgumentParser) -> None:
    json_option(parser)
    parser.set_defaults(handler=command, config_mode="none", as_caller=True)


def command(args: argparse.Namespace) -> int:
    path: Path = args.config
    try:
        settings = load_config(path)
    except ConfigError as exc:
        if args.json:
            print_json(
                {
                    "config": str(path),
                    "valid": False,
                    "problems": list(exc.problems),
                    "warnings": [],
                }
            )
            return EXIT_CONFIG
        count = len(exc.problems)
        print(f"{path}: {count} problem{'s' if count > 1 else ''}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    warnings = review(settings)
    engine = _fax_engine(settings)
    result = 0 if engine is None or engine[0] else 1
    if args.json:
        document = {
            "config": str(path),
            "valid": True,
            "problems": [],
            "warnings": [{"key": w.key, "text": w.text} for w in warnings],
        }
        if engine is not None:
            document["faxEngine"] = {"ok": engine[0], "detail": engine[1]}
        print_json(document)
        return result
    count = len(warnings)
    print(f"{path}: OK" + (f", {count} warning{'s' if count > 1 else ''}" if count else ""))
    for line in _summary(settings):
        print(f"  {line}")
    if engine is not None:
        print(f"  {_sip_line(settings)}")
        print(f"  fax engine {engine[1]}" if engine[0] else f"  fax engine error: {engine[1]}")
    for warning in warnings:
        print(f"  warning: {warning}")
    return result


def _fax_engine(s: Settings) -> tuple[bool, str] | None:
    """With faxes over SIP: whether libspandsp loads, and which it is (or why not)."""
    if not s.fax.sip_runs:
        return None
    from gatewayd.fax.sip import engine

    try:
        return True, engine.describe()
    except engine.EngineUnavailable as exc:
        return False, str(exc)


def _sip_line(s: Settings) -> str:
    sip = s.fax.sip
    who = f"registers as {sip.username}" if sip.registers else "does not register"
    return (
        f"sip        {sip.transport} via {sip.proxy}, {who}, listens on {sip.local_address}; "
        f"T.38 {'on' if sip.t38 else 'off'}, ECM {'on' if sip.ecm else 'off'}, "
        f"{sip.max_calls} calls at once, media ports {sip.media_ports[0]}-{sip.media_ports[1]}"
        + ("" if s.fax.carrier == "sip" else " (receiving only)")
    )


def _summary(s: Settings) -> list[str]:
    from gatewayd.render import fonts, pdf_fonts
    from gatewayd.render.office import find_soffice

    office = find_soffice(s.fax)
    dejavu = fonts.find(fonts.DEJAVU["sans"][0])
    standard = pdf_fonts.find()
    faces = [
        f"{family} as {found[0].name} ({found[1]})"
        for family, found in standard.families.items()
        if found
    ]
    extra = []
    if faces:
        extra.append(f"pdf fonts  not embedded: {', '.join(faces)}")
    if standard.missing:
        extra.append(
            f"pdf fonts  warning: no face for {', '.join(standard.missing)} (install "
            "fonts-urw-base35 and fonts-liberation): PDFs that do not embed them are drawn "
            "with PDFium's built-in substitutes, which read worse on fax"
        )
    return [
        f"mailbox    {s.mailbox.url if s.mailbox.database_url else s.mailbox.data_dir}"
        f" (deleted kept {s.mailbox.retention_deleted_days} d, purged kept "
        f"{s.mailbox.retention_purged_days} d, at most {s.mailbox.max_messages or 'unlimited'}"
        " messages per extension)",
        f"smtp       {', '.join(str(x.address) for x in s.smtp.listen)}; fax "
        f"@{s.smtp.fax_domain}, sms @{s.smtp.sms_domain}",
        f"sms        {', '.join(f'{x.name} ({x.address})' for x in s.sms.links)}",
        f"fax        {s.fax.carrier} carrier, {s.fax.resolution}, {s.fax.paper}",
        f"office     LibreOffice at {office}: Word, Excel, PowerPoint, OpenDocument and RTF "
        "documents are faxed"
        if office
        else "office     LibreOffice not found (fax.libreoffice, PATH): Word, Excel, "
        "PowerPoint, OpenDocument and RTF documents are refused",
        f"fonts      DejaVu at {dejavu.parent}: text pages and cover pages"
        if dejavu
        else "fonts      warning: DejaVu not found (install fonts-dejavu-core): text and "
        "cover pages use reportlab's Vera, which has Western European letters only; other "
        "characters print as [U+XXXX]",
        *extra,
        f"api        {s.api.listen}",
        f"log        {s.log.level}, {s.log.format}"
        + (f", file {s.log.file}" if s.log.file else ""),
        f"notify     {'relay ' + str(s.notify.relay) if s.notify.enabled else 'off'}",
        f"users      {len(s.users)}: " + ", ".join(u.emails[0] for u in s.users),
    ]
