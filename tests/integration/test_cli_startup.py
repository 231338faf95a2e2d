"""The ``gatewayd`` command as an operator meets it: global options before or after
the subcommand, start-up that imports only what the command needs, quiet ends on a
closed pipe, exit 3 for an invalid config everywhere, check-config's warnings, and
root's commands acting as the owner of the mailbox."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd import cli, daemon
from gatewayd.config.settings import MailboxSettings
from gatewayd.mailbox import Mailbox
from tests.conftest import ROOT, fax, gatewayd, sms

EXIT_CONFIG, EXIT_CLOSED_PIPE = 3, 141


def write_config(directory: Path, extra: str = "") -> Path:
    config = directory / "gatewayd.toml"
    config.write_text(
        f'[mailbox]\ndata_dir = "{directory / "data"}"\n'
        f'[log]\nfile = "{directory / "gatewayd.log"}"\n'
        '[[users]]\nemail = "alice@example.com"\naccount_id = 1\nextension_id = 101\n'
        'extension_number = "101"\nname = "Alice"\n' + extra
    )
    return config


def fill(data_dir: Path, count: int = 3) -> None:
    async def create() -> None:
        box = await Mailbox.open(MailboxSettings(data_dir=data_dir))
        try:
            for n in range(count):
                await box.create(sms(text=f"message {n}"))
                await box.create(fax())
        finally:
            await box.close()

    asyncio.run(create())


def imported(*args: str) -> set[str]:
    """The modules ``gatewayd ARGS`` imports (python -X importtime)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gatewayd", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    return {
        line.split("|")[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


HEAVY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "pypdfium2",
    "numpy",
    "PIL",
    "smpplib",
    "aiosmtpd",
    "prometheus_client",
)


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("--version",),
        ("check-config", "--config", str(ROOT / "config" / "gatewayd.toml")),
    ],
)
def test_quick_commands_import_no_heavy_package(args: tuple[str, ...]) -> None:
    modules = imported(*args)
    assert "gatewayd.cli" in modules  # the measurement works
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    if args[0] == "check-config":  # its font check uses reportlab, which loads Pillow
        heavy = [m for m in heavy if m.split(".")[0] != "PIL"]
    assert heavy == []
    if args[0].startswith("--"):
        assert not any(m.split(".")[0] in ("structlog", "reportlab", "PIL") for m in modules)


def test_global_options_before_or_after_the_subcommand(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    other = {"GATEWAYD_CONFIG": str(tmp_path / "not-this.toml")}
    for args in (
        ("--config", str(config), "check-config"),
        ("check-config", "--config", str(config)),
        (f"--config={config}", "check-config"),
    ):
        result = gatewayd(*args, env=other)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout.startswith(f"{config}: OK")
    fill(tmp_path / "data")
    before = gatewayd("--json", "--config", str(config), "messages", "list")
    after = gatewayd("messages", "list", "--json", "--config", str(config))
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert len(json.loads(before.stdout)) == len(json.loads(after.stdout)) == 6
    # The subcommand's default does not undo a value given before it.
    assert gatewayd("--config", str(config), "messages", "list").returncode == 0


def test_json_where_there_is_none_is_wrong_usage() -> None:
    result = gatewayd("--json", "hash-secret", "--new-token")
    assert result.returncode == 2
    assert "hash-secret has no JSON output" in result.stderr
    assert gatewayd("hash-secret", "--json").returncode == 2


def test_check_config_json(tmp_path: Path) -> None:
    good = gatewayd("check-config", "--json", "--config", str(write_config(tmp_path)))
    assert good.returncode == 0, good.stderr
    report = json.loads(good.stdout)
    assert report["valid"] is True
    assert [w["key"] for w in report["warnings"]] == ["sms.links[0].password"]
    broken = tmp_path / "broken.toml"
    broken.write_text('[log]\nlevel = "loud"\n')
    bad = gatewayd("--json", "check-config", "--config", str(broken))
    assert bad.returncode == EXIT_CONFIG
    assert json.loads(bad.stdout)["problems"] == [
        'log.level: "loud" is not one of "debug", "info", "warning", "error"'
    ]


def test_an_invalid_config_exits_3_for_every_command(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[mailbox\n")
    for args in (
        ("check-config",),
        ("run",),
        ("messages", "list"),
        ("trace", "1"),
        ("logs",),
        ("purge",),
        ("token", "create", "--user", "a@example.com"),
    ):
        result = gatewayd(*args, "--config", str(broken))
        assert result.returncode == EXIT_CONFIG, (args, result.stderr)
        assert "not valid TOML" in result.stderr
    assert cli.EXIT_CONFIG == daemon.EXIT_CONFIG == EXIT_CONFIG


def test_check_config_warns_of_what_loads_but_cannot_be_meant(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    result = gatewayd("check-config", "--config", str(empty))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{empty}: OK, 2 warnings"
    warnings = [line.strip() for line in result.stdout.splitlines() if "warning: " in line]
    assert warnings == [
        "warning: sms.links[0].password: the SMSC simulator's default password 'gatewayd': "
        "fine for `gatewayd smsc-sim`, not for a real SMSC (set password_env or password_file)",
        "warning: users: no [[users]]: every mail is refused (550 5.7.1) and no API token works",
    ]
    clash = write_config(
        tmp_path,
        '[smtp]\nlisten = ["0.0.0.0:2525", "127.0.0.1:2525"]\n[api]\nlisten = "127.0.0.1:2525"\n',
    )
    result = gatewayd("check-config", "--config", str(clash))
    assert result.returncode == 0, result.stderr
    assert "  warning: smtp.listen: 0.0.0.0:2525 and 127.0.0.1:2525 overlap" in result.stdout
    assert (
        "  warning: api.listen: 127.0.0.1:2525 takes the port of the SMTP listener 0.0.0.0:2525"
        in result.stdout
    )


def _closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """Run gatewayd with stdout a pipe whose reader is already gone (``| head`` done)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "gatewayd", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=60,
        )
    finally:
        os.close(write)


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    fill(tmp_path / "data")
    (tmp_path / "gatewayd.log").write_text(
        "".join(json.dumps({"event": "x", "level": "info", "n": n}) + "\n" for n in range(5000))
    )
    for args in (("messages", "list"), ("messages", "list", "--json"), ("logs",)):
        result = _closed_pipe(*args, "--config", str(config))
        assert result.returncode == EXIT_CLOSED_PIPE, (args, result.stderr)
        assert result.stderr == "", args


def test_render_leaves_no_pdf_open(tmp_path: Path) -> None:
    out = tmp_path / "fax.tif"
    result = gatewayd(
        "render",
        str(ROOT / "tests/data/docs/three-pages.pdf"),
        "-o",
        str(out),
        "--cover",
        "--to",
        "+4940123456",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # PDFium's "object was still open" would be here
    assert "4 pages" in result.stdout


# -- root acts as the owner of the mailbox -----------------------------------------------


@pytest.fixture
def service_user_mailbox() -> Iterator[tuple[Path, pwd.struct_passwd]]:
    """A config and a mailbox owned by ``nobody``, in a directory anyone may enter
    (pytest's own temporary directories are root's alone)."""
    if os.geteuid() != 0:
        pytest.skip("root is needed to act as another user (CI runs as root)")
    nobody = pwd.getpwnam("nobody")
    runs = subprocess.run(
        ["runuser", "-u", "nobody", "--", sys.executable, "-c", "import json"],
        capture_output=True,
        check=False,
    )
    if runs.returncode != 0:
        pytest.skip(f"{sys.executable} cannot be run by another user (a Python under /root)")
    top = Path(tempfile.mkdtemp(prefix="gatewayd-owner-"))
    try:
        top.chmod(0o755)
        config = write_config(top)
        config.chmod(0o644)
        fill(top / "data")
        for path in [top / "data", *(top / "data").rglob("*")]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        yield config, nobody
    finally:
        shutil.rmtree(top)


def test_root_reads_and_sweeps_the_mailbox_as_its_owner(
    service_user_mailbox: tuple[Path, pwd.struct_passwd],
) -> None:
    config, nobody = service_user_mailbox
    data = config.parent / "data"
    listing = gatewayd("messages", "list", "--json", "--config", str(config))
    assert listing.returncode == 0, listing.stderr
    assert len(json.loads(listing.stdout)) == 6
    purge = gatewayd("purge", "--config", str(config))
    assert purge.returncode == 0, purge.stderr
    owners = {path: path.stat().st_uid for path in [data, *data.rglob("*")]}
    assert set(owners.values()) == {nobody.pw_uid}, owners


def test_commands_for_the_caller_stay_root(
    service_user_mailbox: tuple[Path, pwd.struct_passwd], tmp_path: Path
) -> None:
    config, _ = service_user_mailbox
    out = tmp_path / "fax.tif"  # root's directory: only root may write here
    result = gatewayd(
        "render",
        str(ROOT / "tests/data/docs/one-page.pdf"),
        "-o",
        str(out),
        "--config",
        str(config),
    )
    assert result.returncode == 0, result.stderr
    assert out.stat().st_uid == 0
