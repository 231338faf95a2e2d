"""The figures of bench/sms_vs_kannel.py: one run's outcome, the medians per system,
the ratio to Kannel, and the Markdown report."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

from sms_processes import PEER_DIR, ROOT, Meter

SYSTEMS = ("kannel", "api", "smtp", "queue")
GATEWAY = ("bearerbox", "smsbox", "gatewayd")  # the processes that are the gateway


# -- one run's figures ---------------------------------------------------------------------


def outcome(
    system: str,
    n: int,
    *,
    sent: dict[str, Any],
    done: float | None,
    seen: dict[str, Any],
    meter: Meter,
    ok: bool,
    extra: dict[str, Any],
) -> dict[str, Any]:
    first = sent.get("first_request")
    last_answer = sent.get("last_answer")
    checks = {
        "submits": seen["submits"],
        "destinations": seen["destinations"],
        "duplicate_submits": seen["duplicate_submits"],
        "receipts_acked": seen["receipts_acked"],
        "accepted": sent.get("accepted"),
        "failures": sent.get("failures", 0),
        "first_failure": sent.get("first_failure"),
    }
    exact = (
        seen["submits"] == n
        and seen["destinations"] == n
        and seen["receipts_acked"] == n
        and not checks["failures"]
    )
    spent = meter.spent
    gateway = [k for k in GATEWAY if k in spent]
    wall = round(done - first, 3) if done is not None and first is not None else None

    def share(seconds: dict[str, float], key: str) -> float | None:
        """``key``'s seconds as a share of the run (None: not measured)."""
        return round(seconds[key] / wall, 2) if wall and key in seconds else None

    return {
        "system": system,
        "ok": ok and exact,
        "wall_s": wall,
        "ingest_s": round(last_answer - first, 3) if last_answer and first else None,
        "ingest_p50_ms": sent.get("p50_ms"),
        "ingest_p99_ms": sent.get("p99_ms"),
        "submit_sm_per_s": round(seen["submit_sm_per_s_10_90"] or 0),
        "cpu_ms_per_message": meter.per_message_ms(n),
        "gateway_cpu_ms_per_message": round(sum(spent[k] for k in gateway) * 1000 / n, 3),
        "gateway_cores_busy": round(sum(spent[k] for k in gateway) / wall, 2) if wall else None,
        "peer_cores_busy": round(spent["peer"] / wall, 2) if wall else None,
        "waiting_for_a_core_s": {name: round(w, 2) for name, w in meter.waited.items()},
        "event_loop_busy": share(spent, Meter.LOOP),
        "event_loop_waiting": share(meter.waited, Meter.LOOP),
        "sms_loop_busy": share(spent, Meter.SMS_LOOP),
        "sms_loop_waiting": share(meter.waited, Meter.SMS_LOOP),
        "checks": checks,
        **extra,
    }


# -- report ----------------------------------------------------------------------------------

LABELS = {
    "kannel": "Kannel {kannel}: HTTP sendsms ({clients} clients) → SMPP, receipts → dlr-url "
    "callbacks, file store",
    "api": "gatewayd run: POST …/sms ({clients} clients) → SMPP, receipts into the mailbox",
    "smtp": "gatewayd run: SMTP ({smtp_clients} smtplib clients) → SMPP, receipts into the mailbox",
    "queue": "gatewayd run: the SMS service alone ({messages:,} already Queued)",
}
PROCESSES = (
    "bearerbox",
    "smsbox",
    "gatewayd",
    "gatewayd event loop",
    "gatewayd SMS process",
    "gatewayd SMS event loop",
    "peer",
    "clients",
    "DLR sink",
)


def median(values: list[float]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for system in SYSTEMS:
        mine = [r for r in runs if r["system"] == system]
        if not mine:
            continue
        summary[system] = {
            "runs": len(mine),
            "all_ok": all(r["ok"] for r in mine),
            "wall_s": median([r["wall_s"] for r in mine]),
            "ingest_s": median([r["ingest_s"] for r in mine]),
            "submit_sm_per_s": median([r["submit_sm_per_s"] for r in mine]),
            "gateway_cpu_ms_per_message": median([r["gateway_cpu_ms_per_message"] for r in mine]),
            "gateway_cores_busy": median([r["gateway_cores_busy"] for r in mine]),
            "peer_cores_busy": median([r["peer_cores_busy"] for r in mine]),
            "event_loop_busy": median([r["event_loop_busy"] for r in mine]),
            "event_loop_waiting": median([r["event_loop_waiting"] for r in mine]),
            "cpu_ms_per_message": {
                name: median([r["cpu_ms_per_message"][name] for r in mine])
                for name in PROCESSES
                if name in mine[0]["cpu_ms_per_message"]
            },
        }
    kannel = summary.get("kannel")
    for figures in summary.values():
        if kannel and kannel["wall_s"] and figures["wall_s"]:
            figures["speed_vs_kannel"] = round(kannel["wall_s"] / figures["wall_s"], 2)
            figures["submit_sm_vs_kannel"] = round(
                figures["submit_sm_per_s"] / kannel["submit_sm_per_s"], 2
            )
    return summary


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown(report: dict[str, Any]) -> str:
    s, v = report["settings"], report["versions"]
    synchronous = s["sqlite_synchronous"]
    if synchronous == "full":
        synchronous += " as shipped"
    lines = [
        f"# gatewayd against Kannel on one SMSC peer ({report['when']})",
        "",
        f"{s['messages']:,} single-part SMS per run, one transceiver bind, window {s['window']}; "
        f"the SMSC peer is node-smpp {v['smpp']} on node {v['node']}, answering submit_sm at "
        f"once and sending the receipt {s['receipt_delay']} s later. {s['runs']} runs per "
        f"system, alternating; medians. gatewayd at {v['gatewayd']} (SQLite synchronous="
        f"{synchronous}), Kannel {v['kannel']}; {report['machine']['cpus']} cores.",
    ]
    if report["runs"]:
        lines += summary_table(report) + process_table(report) + runs_table(report)
    if report.get("kill"):
        lines += kill_table(report["kill"])
    return "\n".join(lines) + "\n"


def summary_table(report: dict[str, Any]) -> list[str]:
    s = report["settings"]
    names = {k: v.format(**s, kannel=report["versions"]["kannel"]) for k, v in LABELS.items()}
    lines = [
        "",
        "| | end to end | ingest (all answered) | submit_sm/s (10–90 %) | gateway CPU ms/msg "
        "| gateway cores busy | peer cores busy | speed vs Kannel | submit_sm/s vs Kannel "
        "| all checks |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for system, f in report["summary"].items():
        ingest = f"{fmt(f['ingest_s'])} s" if f["ingest_s"] is not None else "—"
        submits = round(f["submit_sm_per_s"]) if f["submit_sm_per_s"] else None
        speed = f"{f['speed_vs_kannel']:.2f}×" if "speed_vs_kannel" in f else "—"
        rate = f"{f['submit_sm_vs_kannel']:.2f}×" if "submit_sm_vs_kannel" in f else "—"
        lines.append(
            f"| {names[system]} | {fmt(f['wall_s'])} s | {ingest} | {fmt(submits)} | "
            f"{fmt(f['gateway_cpu_ms_per_message'], 3)} | {fmt(f['gateway_cores_busy'])} | "
            f"{fmt(f['peer_cores_busy'])} | {speed} | {rate} | "
            f"{'yes' if f['all_ok'] else 'NO'} |"
        )
    return [
        *lines,
        "",
        "End to end: from the first request (the SMS service alone: the first submit_sm) "
        "until every receipt is recorded (Kannel: the last final dlr-url callback; gatewayd: "
        "the peer has every receipt acknowledged and the mailbox shows all Delivered). "
        "Speed vs Kannel: Kannel's median end-to-end time divided by this row's (above 1 is "
        "faster than Kannel); submit_sm/s vs Kannel: this row's over Kannel's. Cores busy: "
        "CPU seconds over the end-to-end time (the gateway: bearerbox + smsbox, or gatewayd).",
    ]


def process_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "CPU ms per message, per process (medians; gatewayd is all of its processes: the "
        "daemon, whose main thread is its event loop (SMTP, API, group commit), and its SMS "
        "process (links, dispatcher, receipts), with that one's main thread; the clients "
        "measured themselves):",
        "",
        "| | " + " | ".join(PROCESSES) + " |",
        "| --- |" + " ---: |" * len(PROCESSES),
    ]
    for system, f in report["summary"].items():
        cells = [fmt(f["cpu_ms_per_message"].get(p), 3) for p in PROCESSES]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return lines


def runs_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "Every run, in order. Threads waiting for a core: seconds the gateway's threads were "
        "runnable while other programs had the cores (/proc schedstat). Event loops busy / "
        "waiting: the main thread of gatewayd's daemon process, and of its SMS process, on a "
        "core / waiting for one, as shares of the end-to-end time (the rest it was idle or "
        "blocked). Load average at the run's start:",
        "",
        "| # | system | end to end s | ingest s | ingest p50/p99 ms | submit_sm/s "
        "| gateway threads waiting for a core s | event loops busy / waiting | load 1/5/15 "
        "| checks |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for i, r in enumerate(report["runs"], 1):
        c = r["checks"]
        check = (
            f"{c['submits']} submits, {c['destinations']} destinations, "
            f"{c['receipts_acked']} receipts acked, {c['failures']} failures"
            + ("" if r["ok"] else " — NOT OK")
        )
        waits = r["waiting_for_a_core_s"]
        waited = sum(waits.get(k, 0.0) for k in GATEWAY)
        loop = (
            f"{r['event_loop_busy']:.0%} / {r['event_loop_waiting']:.0%}"
            if r["event_loop_busy"] is not None
            else "—"
        )
        if r.get("sms_loop_busy") is not None:
            loop += f"; SMS {r['sms_loop_busy']:.0%} / {r['sms_loop_waiting']:.0%}"
        lines.append(
            f"| {i} | {r['system']} | {fmt(r['wall_s'])} | {fmt(r['ingest_s'])} | "
            f"{fmt(r['ingest_p50_ms'])}/{fmt(r['ingest_p99_ms'])} | {fmt(r['submit_sm_per_s'])} | "
            f"{waited:.2f} | {loop} | {' '.join(str(x) for x in r['load']['loadavg'])} | "
            f"{check} |"
        )
    return lines


def kill_table(kill: dict[str, Any]) -> list[str]:
    return [
        "",
        "## kill -9 during a run",
        "",
        f"The SMS service alone on {kill['messages']:,} Queued SMS; gatewayd killed (SIGKILL) "
        f"after {kill['submits_at_kill']:,} submits at the peer, then started again on the "
        f"same mailbox (load {' '.join(str(x) for x in kill['load']['loadavg'])}).",
        "",
        "| figure | value |",
        "| --- | ---: |",
        f"| submits at the peer in all | {fmt(kill['submits'])} |",
        f"| destinations submitted | {fmt(kill['destinations'])} |",
        f"| destinations submitted twice or more | {fmt(kill['duplicated_destinations'])} |",
        f"| duplicate submits | {fmt(kill['duplicate_submits'])} |",
        f"| messages marked in flight when the gateway stopped | {fmt(kill['marked_in_flight'])} |",
        f"| duplicates NOT among the marked | {fmt(kill['duplicates_not_marked'])} |",
        f"| mailbox at the end | {kill['mailbox']} |",
        f"| all checks | {'yes' if kill['ok'] else 'NO'} |",
    ]


def versions() -> dict[str, str]:
    def out(*command: str, cwd: Path = ROOT) -> str:
        done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, check=False)
        return done.stdout.strip()

    smpp = json.loads((PEER_DIR / "node_modules" / "smpp" / "package.json").read_text())
    kannel = out("dpkg-query", "-W", "-f=${Version}", "kannel") or "(not from a Debian package)"
    return {
        "kannel": kannel,
        "node": out("node", "--version"),
        "smpp": smpp["version"],
        "python": platform.python_version(),
        "gatewayd": out("git", "rev-parse", "--short", "HEAD"),
    }
