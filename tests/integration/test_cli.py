"""The operator commands, run as the real ``gatewayd`` program on a real mailbox."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from gatewayd import credentials
from gatewayd.config.settings import LogSettings, MailboxSettings
from gatewayd.logging import bound_message, configure_logging, get_logger
from gatewayd.mailbox import Mailbox, Message, PartAccepted, ReceiptIn, iso
from gatewayd.model import MessageStatus, MessageType, PartStatus
from gatewayd.render import pdf_fonts
from gatewayd.render.fonts import DEJAVU, find
from tests.conftest import ROOT, fax, gatewayd, sms

EXIT_CONFIG = 3


def write_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "gatewayd.toml"
    config.write_text(
        f'[mailbox]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[log]\nfile = "{tmp_path / "gatewayd.log"}"\n'
        '[[users]]\nemail = "alice@example.com"\naccount_id = 1\nextension_id = 101\n'
        'extension_number = "101"\nname = "Alice"\n' + extra
    )
    return config


@pytest.fixture
def populated(tmp_path: Path) -> tuple[Path, dict[str, Message]]:
    """A config, and a mailbox holding a delivered SMS, a queued fax and a failed fax
    (with log lines about the SMS in the log file)."""
    config = write_config(tmp_path)

    async def fill() -> dict[str, Message]:
        box = await Mailbox.open(MailboxSettings(data_dir=tmp_path / "data"))
        try:
            delivered = await box.create(sms(text="see you at 8"))
            await box.record_acceptance(PartAccepted(delivered.id, 0, 1, "simulator", "5A1F"))
            await box.record_receipt(ReceiptIn("simulator", ("5A1F",), PartStatus.DELIVERED))
            queued = await box.create(fax())
            failed = await box.create(fax("+4940999999"))
            await box.transition(
                failed.id, MessageStatus.SENDING_FAILED, reason="no answer after 3 tries"
            )
            return {
                "sms": await box.get(delivered.id),
                "queued": queued,
                "failed": await box.get(failed.id),
            }
        finally:
            await box.close()

    made = asyncio.run(fill())
    configure_logging(LogSettings(format="json", file=tmp_path / "gatewayd.log"))
    log = get_logger("gatewayd.test")
    with bound_message(made["sms"].id):
        log.info("sms.submitted", link="simulator")
        log.warning("sms.slow_receipt", seconds=12)
    log.info("unrelated.line")
    for handler in __import__("logging").getLogger().handlers:
        handler.flush()
    return config, made


def test_check_config_on_the_documented_file() -> None:
    result = gatewayd("check-config", "--config", str(ROOT / "config" / "gatewayd.toml"))
    assert result.returncode == 0, result.stderr
    assert "gatewayd.toml: OK" in result.stdout
    assert "users      1: alice@example.com" in result.stdout
    office = "LibreOffice at" if shutil.which("soffice") else "LibreOffice not found"
    assert office in result.stdout
    fonts = "fonts      DejaVu at" if find(DEJAVU["sans"][0]) else "DejaVu not found"
    assert fonts in result.stdout
    standard = pdf_fonts.find()
    for family, found in standard.families.items():
        expected = f"{family} as {found[0].name}" if found else f"no face for {family}"
        assert expected in result.stdout


def test_check_config_names_every_broken_key(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(
        '[smtp]\nlisten = "127.0.0.1:99999"\nmax_recipients = "many"\n'
        '[log]\nlevel = "loud"\n[mailbx]\n'
    )
    result = gatewayd("check-config", "--config", str(broken))
    assert result.returncode == EXIT_CONFIG
    lines = result.stderr.splitlines()
    assert lines[0] == f"{broken}: 4 problems"
    assert lines[1:] == [
        '  smtp.listen: "127.0.0.1:99999" is not a valid port (expected HOST:PORT, PORT 1-65535)',
        '  smtp.max_recipients: "many" is not a whole number from 1 to 1000',
        '  log.level: "loud" is not one of "debug", "info", "warning", "error"',
        '  mailbx: unknown key; did you mean "mailbox"?',
    ]


def test_the_config_comes_from_the_environment_too(tmp_path: Path) -> None:
    result = gatewayd("check-config", env={"GATEWAYD_CONFIG": str(write_config(tmp_path))})
    assert result.returncode == 0
    missing = gatewayd("check-config", env={"GATEWAYD_CONFIG": str(tmp_path / "nope.toml")})
    assert missing.returncode == EXIT_CONFIG
    assert "the config file does not exist" in missing.stderr


def test_other_commands_refuse_a_broken_config_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[log]\nlevel = "loud"\nformat = "xml"\n')
    result = gatewayd("messages", "list", "--config", str(broken))
    assert result.returncode == EXIT_CONFIG
    assert result.stderr.strip() == (
        f'gatewayd: {broken}: log.level: "loud" is not one of "debug", "info", "warning", '
        '"error" (and 1 more; see gatewayd check-config)'
    )


def test_messages_list_table_and_json(populated: tuple[Path, dict[str, Message]]) -> None:
    config, made = populated
    table = gatewayd("messages", "list", "--config", str(config))
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
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
        "NEXT",
        "ATTEMPT",
        "REASON",
        "SUBJECT",
    ]
    assert len(rows) == 3
    assert rows[0].split()[:4] == [str(made["failed"].id), "Fax", "Outbound", "SendingFailed"]
    assert "no answer after 3 tries" in rows[0]  # the reason
    queued = made["queued"]
    assert queued.next_attempt_at is not None
    assert f" 0         {iso(queued.next_attempt_at)}" in rows[1]  # attempts, next attempt
    listed = json.loads(
        gatewayd(
            "messages",
            "list",
            "--json",
            "--type",
            "Fax",
            "--status",
            "Queued",
            "--config",
            str(config),
        ).stdout
    )
    assert [m["id"] for m in listed] == [made["queued"].id]
    assert listed[0]["messageStatus"] == "Queued"
    assert listed[0]["gatewayd"]["origin"] == "test"
    by_number = json.loads(
        gatewayd("messages", "list", "--json", "--extension", "101", "--config", str(config)).stdout
    )
    assert len(by_number) == 3
    assert (
        json.loads(
            gatewayd(
                "messages", "list", "--json", "--extension", "999", "--config", str(config)
            ).stdout
        )
        == []
    )


def test_messages_show(populated: tuple[Path, dict[str, Message]]) -> None:
    config, made = populated
    shown = gatewayd("messages", "show", str(made["sms"].id), "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    assert "status:       Delivered · Alive · Unread" in shown.stdout
    assert "Attachments" in shown.stdout
    assert "text/plain" in shown.stdout
    assert "5A1F" in shown.stdout
    data = json.loads(
        gatewayd(
            "messages", "show", str(made["failed"].id), "--json", "--config", str(config)
        ).stdout
    )
    assert data["messageStatus"] == "SendingFailed"
    assert data["gatewayd"]["failureReason"] == "no answer after 3 tries"
    assert data["attachments"][0]["contentType"] == "application/pdf"


@pytest.mark.parametrize("command", [["messages", "show"], ["trace"]])
def test_an_unknown_id_is_one_line_and_exit_1(
    populated: tuple[Path, dict[str, Message]], command: list[str]
) -> None:
    config, _ = populated
    result = gatewayd(*command, "4242", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr == "gatewayd: no message 4242 in the mailbox\n"
    assert result.stdout == ""
    garbage = gatewayd(*command, "x1", "--config", str(config))
    assert (garbage.returncode, garbage.stderr) == (
        1,
        "gatewayd: 'x1' is not a message id (a number)\n",
    )


def test_trace_shows_the_timeline_and_the_log_lines(
    populated: tuple[Path, dict[str, Message]],
) -> None:
    config, made = populated
    result = gatewayd("trace", str(made["sms"].id), "--config", str(config))
    assert result.returncode == 0, result.stderr
    timeline = result.stdout.split("Timeline", 1)[1]
    assert (
        timeline.index("-       Queued")
        < timeline.index("Queued  Sent")
        < timeline.index("Sent    Delivered")
    )
    assert "accepted by the SMSC" in timeline
    assert "sms.submitted" in timeline
    assert "sms.slow_receipt" in timeline
    assert "unrelated.line" not in timeline
    data = json.loads(
        gatewayd("trace", str(made["sms"].id), "--json", "--config", str(config)).stdout
    )
    assert [e["to"] for e in data["events"] if e["kind"] == "status"] == [
        "Queued",
        "Sent",
        "Delivered",
    ]
    assert [line["event"] for line in data["log"]] == ["sms.submitted", "sms.slow_receipt"]


def test_logs_filters(populated: tuple[Path, dict[str, Message]]) -> None:
    config, made = populated
    every = gatewayd("logs", "--json", "--config", str(config))
    assert {"sms.submitted", "sms.slow_receipt", "unrelated.line"} <= {
        line["event"] for line in json.loads(every.stdout)
    }
    about = json.loads(
        gatewayd("logs", "--json", "--message", str(made["sms"].id), "--config", str(config)).stdout
    )
    assert [line["event"] for line in about] == ["sms.submitted", "sms.slow_receipt"]
    warnings = json.loads(
        gatewayd("logs", "--json", "--level", "warning", "--config", str(config)).stdout
    )
    assert [line["event"] for line in warnings] == ["sms.slow_receipt"]
    assert (
        json.loads(
            gatewayd(
                "logs", "--json", "--since", "2099-01-01T00:00:00Z", "--config", str(config)
            ).stdout
        )
        == []
    )
    recent = json.loads(
        gatewayd("logs", "--json", "--since", "10m", "--config", str(config)).stdout
    )
    assert len(recent) == len(json.loads(every.stdout))
    text = gatewayd("logs", "--message", str(made["sms"].id), "--config", str(config)).stdout
    assert "warning sms.slow_receipt" in text
    assert "seconds=12" in text
    bad = gatewayd("logs", "--since", "yesterday-ish", "--config", str(config))
    assert bad.returncode == 1
    assert "--since 'yesterday-ish' is neither a duration" in bad.stderr


def test_reading_commands_do_not_create_a_mailbox(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = gatewayd("messages", "list", "--config", str(config))
    assert result.returncode == 1
    assert "no mailbox at" in result.stderr
    assert not (tmp_path / "data").exists()


def test_purge_runs_the_sweep_once(populated: tuple[Path, dict[str, Message]]) -> None:
    config, _ = populated
    result = gatewayd("purge", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("purged 0, removed 0, auto-deleted 0")


def test_hash_secret_reads_stdin_never_argv() -> None:
    result = gatewayd("hash-secret", stdin="correct horse\n")
    assert result.returncode == 0, result.stderr
    stored = result.stdout.strip()
    assert credentials.verify("correct horse", stored)
    token = gatewayd("hash-secret", "--token", stdin="gwd_abc\n").stdout.strip()
    assert credentials.verify("gwd_abc", token)
    assert token.startswith("sha256$")
    fresh = gatewayd("hash-secret", "--new-token").stdout.splitlines()
    new_token = fresh[0].removeprefix("token: ")
    assert credentials.verify(new_token, fresh[1].split('"')[1])
    empty = gatewayd("hash-secret", stdin="\n")
    assert empty.returncode == 1


def test_a_token_for_the_config_is_still_possible(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = gatewayd(
        "token", "create", "--config-hash", "--user", "ALICE@example.com", "--config", str(config)
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    token = lines[0].removeprefix("token: ")
    assert f'api_token_hash = "{credentials.hash_token(token)}"' in lines
    other = gatewayd("token", "create", "--user", "nobody@example.com", "--config", str(config))
    assert other.returncode == 1
    assert "no user has the address 'nobody@example.com'" in other.stderr


def test_every_command_has_help() -> None:
    for command in (
        ["run"],
        ["check-config"],
        ["messages", "list"],
        ["messages", "show"],
        ["trace"],
        ["logs"],
        ["purge"],
        ["hash-secret"],
        ["token", "create"],
        ["token", "list"],
        ["token", "revoke"],
        ["status"],
        ["messages", "cancel"],
        ["messages", "retry"],
        ["messages", "delete"],
        ["messages", "restore"],
        ["render"],
    ):
        result = gatewayd(*command, "--help")
        assert result.returncode == 0
        assert "--config PATH" in result.stdout


def test_message_types_in_the_cli_match_the_model() -> None:
    result = gatewayd("messages", "list", "--type", "Carrier-pigeon")
    assert result.returncode == 2
    assert all(t.value in result.stderr for t in MessageType)


def test_messages_list_since_and_several_statuses(
    populated: tuple[Path, dict[str, Message]],
) -> None:
    config, made = populated
    listed = json.loads(
        gatewayd(
            "messages",
            "list",
            "--json",
            "--status",
            "Queued,SendingFailed",
            "--since",
            "1h",
            "--config",
            str(config),
        ).stdout
    )
    assert {m["id"] for m in listed} == {made["queued"].id, made["failed"].id}
    assert listed[0]["gatewayd"]["failureReason"] == "no answer after 3 tries"
    later = gatewayd(
        "messages", "list", "--json", "--since", "2099-01-01T00:00:00Z", "--config", str(config)
    )
    assert json.loads(later.stdout) == []
    wrong = gatewayd("messages", "list", "--status", "Queued,Lost", "--config", str(config))
    assert wrong.returncode == 2
    assert "'Lost' is not one of Queued, Sent, Delivered" in wrong.stderr
    bad_time = gatewayd("messages", "list", "--since", "yesterday", "--config", str(config))
    assert (bad_time.returncode, bad_time.stderr.count("\n")) == (1, 1)
    assert "--since 'yesterday' is neither a duration" in bad_time.stderr


def test_cancel_retry_delete_restore_from_the_command_line(
    populated: tuple[Path, dict[str, Message]],
) -> None:
    config, made = populated
    queued, failed, delivered = made["queued"], made["failed"], made["sms"]
    cancel = gatewayd(
        "messages",
        "cancel",
        str(queued.id),
        str(delivered.id),
        "4242",
        "--reason",
        "wrong number",
        "--config",
        str(config),
    )
    assert cancel.returncode == 1  # one of the three was done
    assert cancel.stdout == (f"{queued.id}: cancelled (SendingFailed: cancelled: wrong number)\n")
    assert cancel.stderr.splitlines() == [
        f"gatewayd: {delivered.id}: refused, it is Delivered: only a Queued outbound SMS "
        "or fax can be cancelled",
        "gatewayd: 4242: no such message",
    ]
    retry = gatewayd("messages", "retry", str(failed.id), "--json", "--config", str(config))
    assert retry.returncode == 0, retry.stderr
    (result,) = json.loads(retry.stdout)
    new = result["message"]
    assert (result["id"], result["ok"], new["messageStatus"]) == (failed.id, True, "Queued")
    assert new["id"] != failed.id
    shown = gatewayd("messages", "show", str(failed.id), "--config", str(config)).stdout
    assert f"retried as:   {new['id']}" in shown
    shown_new = json.loads(
        gatewayd("messages", "show", str(new["id"]), "--json", "--config", str(config)).stdout
    )
    assert shown_new["gatewayd"]["retryOf"] == failed.id
    trace = gatewayd("trace", str(new["id"]), "--config", str(config)).stdout
    assert f"a retry of {failed.id}: asked by an operator" in trace
    deleted = gatewayd("messages", "delete", str(failed.id), "--config", str(config))
    assert (deleted.returncode, deleted.stdout) == (0, f"{failed.id}: Deleted\n")
    restored = gatewayd("messages", "restore", str(failed.id), "--config", str(config))
    assert (restored.returncode, restored.stdout) == (0, f"{failed.id}: Alive\n")
    purged = gatewayd("messages", "delete", "--purge", str(failed.id), "--config", str(config))
    assert purged.stdout == f"{failed.id}: Purged\n"
    again = gatewayd("messages", "restore", str(failed.id), "--config", str(config))
    assert again.returncode == 1
    assert "a Purged message cannot be restored" in again.stderr


def test_show_names_the_carrier_and_its_reference(tmp_path: Path) -> None:
    config = write_config(tmp_path)

    async def fill() -> tuple[int, int]:
        box = await Mailbox.open(MailboxSettings(data_dir=tmp_path / "data"))
        try:
            document = await box.create(fax())
            await box.lease("fax@test", types=[MessageType.FAX], limit=1)
            await box.set_carrier(
                document.id, "fax@test", carrier="hylafax", ref="417", reason="submitted"
            )
            text = await box.create(sms())
            await box.record_acceptance(PartAccepted(text.id, 0, 2, "smsc1", "9F00A1"))
            return document.id, text.id
        finally:
            await box.close()

    fax_id, sms_id = asyncio.run(fill())
    shown = gatewayd("messages", "show", str(fax_id), "--config", str(config)).stdout
    assert "carrier:      hylafax, reference 417" in shown
    shown = gatewayd("messages", "show", str(sms_id), "--config", str(config)).stdout
    assert "carrier:      smsc1 9F00A1" in shown


def test_tokens_kept_in_the_mailbox(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    before = gatewayd("token", "create", "--user", "alice@example.com", "--config", str(config))
    assert before.returncode == 1
    assert "has gatewayd run with this config?" in before.stderr  # no mailbox yet
    asyncio.run(_make_mailbox(tmp_path / "data"))
    made = gatewayd(
        "token",
        "create",
        "--user",
        "Alice@Example.com",
        "--name",
        "ci",
        "--expires",
        "90d",
        "--config",
        str(config),
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith(credentials.TOKEN_PREFIX)
    assert made.stdout == token + "\n"  # alone: TOKEN=$(gatewayd token create ...)
    assert "API token 1 for alice@example.com (extension 101), 'ci': in effect now" in (made.stderr)
    second = gatewayd(
        "token", "create", "--user", "alice@example.com", "--json", "--config", str(config)
    )
    assert json.loads(second.stdout)["id"] == 2
    listed = json.loads(gatewayd("token", "list", "--json", "--config", str(config)).stdout)
    assert [(t["id"], t["name"], t["state"]) for t in listed] == [
        (1, "ci", "active"),
        (2, "", "active"),
    ]
    assert listed[0]["expiresAt"] is not None
    assert listed[1]["expiresAt"] is None
    assert token not in json.dumps(listed)
    revoked = gatewayd("token", "revoke", "1", "7", "--config", str(config))
    assert revoked.returncode == 1
    assert revoked.stdout.startswith("1: revoked at ")
    assert revoked.stderr == "gatewayd: 7: no such token\n"
    table = gatewayd("token", "list", "--config", str(config)).stdout.splitlines()
    assert table[0].split() == [
        "ID",
        "USER",
        "EXT",
        "NAME",
        "STATE",
        "CREATED",
        "EXPIRES",
        "REVOKED",
    ]
    assert table[1].split()[:5] == ["1", "alice@example.com", "101", "ci", "revoked"]
    bad = gatewayd(
        "token",
        "create",
        "--user",
        "alice@example.com",
        "--expires",
        "soon",
        "--config",
        str(config),
    )
    assert (bad.returncode, bad.stderr) == (
        1,
        "gatewayd: --expires 'soon': not a duration (12h, 30d, 90d)\n",
    )


async def _make_mailbox(data_dir: Path) -> None:
    box = await Mailbox.open(MailboxSettings(data_dir=data_dir))
    await box.close()


def test_status_without_a_daemon_reads_the_mailbox(
    populated: tuple[Path, dict[str, Message]],
) -> None:
    config, made = populated
    text = gatewayd("status", "--config", str(config))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].endswith(": NOT RUNNING")
    assert "does not exist" in lines[1]
    assert "  What follows is from the mailbox alone." in lines
    assert "no answer after 3 tries" in text.stdout  # the latest failure
    document = json.loads(gatewayd("status", "--json", "--config", str(config)).stdout)
    assert (document["source"], document["daemon"]["running"], document["ready"]) == (
        "mailbox",
        False,
        False,
    )
    assert {q["type"]: q["depth"] for q in document["queue"]} == {"SMS": 0, "Fax": 1}
    counts = {(c["type"], c["status"]): c["count"] for c in document["lastHour"]["counts"]}
    assert counts[("Fax", "SendingFailed")] == 1
    assert counts[("SMS", "Delivered")] == 1
    assert [f["id"] for f in document["failures"]] == [made["failed"].id]
    assert document["links"][0]["state"] == "unknown"
    (config.parent / "empty").mkdir()
    nothing = gatewayd("status", "--config", str(write_config(config.parent / "empty")))
    assert nothing.returncode == 1
    assert "has gatewayd run with this config?" in nothing.stderr
