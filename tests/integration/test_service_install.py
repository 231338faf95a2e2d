"""The documented service install (docs/install.md), run as printed into a temporary
root: ``make install-service DESTDIR=...``. The unit passes ``systemd-analyze verify``
and starts the program the install put there; that program reads the installed config,
whose paths are the directories the install made, with the owners and modes that let a
fax system under another user take the jobs and write the results (checked by acting as
those users with setpriv); the logrotate snippet rotates, and the daemon's log handler
follows the rotation. No systemd is needed: sysusers and tmpfiles work on the root."""

from __future__ import annotations

import grp
import io
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd.config import load_config
from gatewayd.config.settings import LogSettings
from gatewayd.logging import configure_logging, get_logger
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
PREFIX = "/opt/gatewayd"
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="owners and users need root (CI is root)")


@pytest.fixture(scope="module")
def staged() -> Iterator[Path]:
    """The install under a temporary root that every user may enter (setpriv below)."""
    root = Path(tempfile.mkdtemp(prefix="gatewayd-stage-"))
    root.chmod(0o755)
    try:
        result = subprocess.run(
            ["make", "--no-print-directory", "install-service", f"DESTDIR={root}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        yield root
    finally:
        shutil.rmtree(root)


def passwd(root: Path, file: str, name: str) -> list[str]:
    for line in (root / "etc" / file).read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    raise AssertionError(f"no {name} in {root}/etc/{file}")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
def test_the_unit_verifies_and_starts_the_installed_program(staged: Path) -> None:
    unit = (staged / "etc/systemd/system/gatewayd.service").read_text()
    (exec_start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    program = exec_start.removeprefix("ExecStart=").split()[0]
    assert program == f"{PREFIX}/bin/gatewayd"
    assert os.access(staged / program.lstrip("/"), os.X_OK)
    # verify wants the ExecStart program on this machine's own paths: the staged one
    local = staged / "verify" / "gatewayd.service"
    local.parent.mkdir()
    local.write_text(unit.replace(PREFIX, f"{staged}{PREFIX}"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if "gatewayd" in line] == []
    version = subprocess.run(
        [staged / program.lstrip("/"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("gatewayd ")


def test_the_installed_config_names_the_installed_directories(staged: Path) -> None:
    config = staged / "etc/gatewayd/gatewayd.toml"
    program = staged / PREFIX.lstrip("/") / "bin/gatewayd"
    check = subprocess.run(
        [program, "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    settings = load_config(config)
    paths = {
        settings.mailbox.data_dir,
        settings.fax.spool.outbox,
        settings.fax.spool.results,
        settings.log.file.parent if settings.log.file else None,
    }
    assert paths == {
        Path("/var/lib/gatewayd"),
        Path("/var/spool/gatewayd/outbox"),
        Path("/var/spool/gatewayd/results"),
        Path("/var/log/gatewayd"),
    }
    made = {
        Path(line.split()[1])
        for line in (staged / "etc/tmpfiles.d/gatewayd.conf").read_text().splitlines()
        if line.startswith("d ")
    }
    assert paths <= made
    unit = (staged / "etc/systemd/system/gatewayd.service").read_text()
    assert "ReadWritePaths=/var/spool/gatewayd\n" in unit
    assert "StateDirectory=gatewayd\n" in unit
    assert "LogsDirectory=gatewayd\n" in unit
    assert (staged / "usr/local/bin/gatewayd").readlink() == Path(f"{PREFIX}/bin/gatewayd")


@AS_ROOT
def test_users_directories_owners_and_modes(staged: Path) -> None:
    user = passwd(staged, "passwd", "gatewayd")
    uid, gid = int(user[2]), int(user[3])
    fax_gid = int(passwd(staged, "group", "gatewayd-fax")[2])
    assert user[5:] == ["/var/lib/gatewayd", "/usr/sbin/nologin"]
    expected = {
        "var/lib/gatewayd": (uid, gid, 0o750),
        "var/log/gatewayd": (uid, gid, 0o750),
        "var/spool/gatewayd": (uid, fax_gid, 0o750),
        "var/spool/gatewayd/outbox": (uid, fax_gid, 0o2770),
        "var/spool/gatewayd/results": (uid, fax_gid, 0o2770),
        "etc/gatewayd": (0, gid, 0o750),
        "etc/gatewayd/gatewayd.toml": (0, gid, 0o640),
    }
    for path, (owner, group, mode) in expected.items():
        info = (staged / path).stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (owner, group, mode), path


def as_user(uid: int, gid: int, groups: list[int], script: str) -> subprocess.CompletedProcess[str]:
    """``sh -c script`` as that uid, gid and supplementary groups."""
    group_option = ["--groups=" + ",".join(map(str, groups))] if groups else ["--clear-groups"]
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", *group_option, "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )


@AS_ROOT
def test_a_fax_system_in_gatewayd_fax_takes_jobs_and_writes_results(staged: Path) -> None:
    uid, gid = (int(x) for x in passwd(staged, "passwd", "gatewayd")[2:4])
    fax_gid = int(passwd(staged, "group", "gatewayd-fax")[2])
    sender, outsider = 64001, 64002  # a fax system's user, and somebody else
    spool = staged / "var/spool/gatewayd"
    # The daemon writes a job as the unit does: UMask=0027.
    daemon = as_user(uid, gid, [], f"umask 0027 && echo tiff > {spool}/outbox/7-1.tif")
    assert daemon.returncode == 0, daemon.stderr
    # The fax system reads and takes it, and writes its result (temporary name, rename).
    taken = as_user(
        sender,
        sender,
        [fax_gid],
        f"cat {spool}/outbox/7-1.tif && rm {spool}/outbox/7-1.tif && umask 0022 && "
        f'echo \'{{"status": "sent"}}\' > '
        f"{spool}/results/.7-1.part && mv {spool}/results/.7-1.part "
        f"{spool}/results/7-1.result.json",
    )
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout == "tiff\n"
    # The daemon reads the result and deletes it.
    done = as_user(
        uid, gid, [], f"cat {spool}/results/7-1.result.json && rm {spool}/results/7-1.result.json"
    )
    assert done.returncode == 0, done.stderr
    assert '"sent"' in done.stdout
    # Nobody else sees the spool, and the fax system does not see the mailbox.
    assert as_user(outsider, outsider, [], f"ls {spool}/outbox").returncode != 0
    assert as_user(sender, sender, [fax_gid], f"ls {staged}/var/lib/gatewayd").returncode != 0


def test_the_logrotate_snippet_rotates_a_log_the_daemon_follows(
    staged: Path, tmp_path: Path
) -> None:
    assert shutil.which("logrotate"), "logrotate: packages/debian-test.txt (make test installs it)"
    logs = tmp_path / "log"
    logs.mkdir(mode=0o750)
    # The installed snippet, pointed at this directory, as this test's user.
    me = grp.getgrgid(os.getgid()).gr_name
    user = os.environ.get("USER") or ("root" if os.geteuid() == 0 else str(os.geteuid()))
    snippet = (staged / "etc/logrotate.d/gatewayd").read_text()
    assert "/var/log/gatewayd/*.log {" in snippet
    assert "su gatewayd gatewayd" in snippet
    local = tmp_path / "gatewayd.logrotate"
    local.write_text(
        snippet.replace("/var/log/gatewayd/", f"{logs}/")
        .replace("su gatewayd gatewayd", f"su {user} {me}")
        .replace("create 0640 gatewayd gatewayd", f"create 0640 {user} {me}")
    )
    log_file = logs / "gatewayd.log"
    stop = configure_logging(LogSettings(format="json", file=log_file), stream=io.StringIO())
    try:
        log = get_logger("gatewayd.test")
        log.info("before.rotation")
        result = subprocess.run(
            ["logrotate", "--force", "--state", str(tmp_path / "state"), str(local)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        log.info("after.rotation")
        for handler in logging.getLogger().handlers:
            handler.flush()
    finally:
        stop()
        for handler in logging.getLogger().handlers[:]:
            logging.getLogger().removeHandler(handler)
            handler.close()
    assert "before.rotation" in (logs / "gatewayd.log.1").read_text()
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o640
    assert "after.rotation" in log_file.read_text()
    assert "before.rotation" not in log_file.read_text()
