"""The one list of Debian packages (packages/debian-*.txt) and packages/install-debian,
which `make run`, `make test` and the service install call: nothing happens when
everything is there; missing packages are installed as root (apt-get update, then a
noninteractive install without recommends), or the one command to run is printed.

apt-get itself is replaced by a recorder where the script would install something:
installing packages for real would change the machine the tests run on. dpkg-query,
the lists and the users are real."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ROOT / "packages"
INSTALL = "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends"
MISSING = "gatewayd-no-such-package"
DEBIAN = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian system")


def needs(*sets: str) -> list[list[str]]:
    """Each line of the lists: its alternatives."""
    found = []
    for name in sets:
        for line in (PACKAGES / f"debian-{name}.txt").read_text().splitlines():
            need = line.split("#")[0].strip()
            if need:
                found.append([x.strip() for x in need.split("|")])
    return found


@DEBIAN
def test_this_machine_has_every_listed_package() -> None:
    """`make test` installed them; a name apt does not know would have failed there."""
    wanted = [name for alternatives in needs("runtime", "service", "test") for name in alternatives]
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status} ${Package}\n", *wanted],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = {
        line.split()[1] for line in result.stdout.splitlines() if line.startswith("installed ")
    }
    missing = [alts for alts in needs("runtime", "service", "test") if not set(alts) & installed]
    assert missing == [], f"not installed: {missing}; run packages/install-debian runtime test"


def test_the_lists_name_what_the_issue_asks_for() -> None:
    runtime = {name for alts in needs("runtime") for name in alts}
    test = {name for alts in needs("test") for name in alts}
    assert {
        "python3-venv",
        "python3-dev",
        "gcc",
        "fonts-dejavu-core",
        "fonts-urw-base35",
        "libspandsp2",
    } <= runtime
    assert not {"postgresql", "hylafax-server", "ghostscript", "kannel"} & runtime
    assert {
        "postgresql",
        "libtiff-tools",
        "hylafax-server",
        "libreoffice-writer-nogui",
        "libreoffice-calc-nogui",
        "libreoffice-impress-nogui",
        "tesseract-ocr",
        "tesseract-ocr-eng",
        "kamailio",
        "chromium",
        "chromium-driver",
    } <= test
    assert "kannel" not in test  # bench-only: bench/sms_vs_kannel.py skips without it
    assert "ghostscript" in test  # the legibility tests compare our pages with its


@pytest.fixture
def script() -> Iterator[Path]:
    """packages/install-debian in a directory of its own, with a list 'extra' naming a
    package that does not exist, in a place every user may read."""
    directory = Path(tempfile.mkdtemp(prefix="gatewayd-packages-"))
    try:
        directory.chmod(0o755)
        shutil.copy(PACKAGES / "install-debian", directory)
        for name in ("runtime", "service", "test"):
            shutil.copy(PACKAGES / f"debian-{name}.txt", directory)
        (directory / "debian-extra.txt").write_text(f"# comment\n{MISSING}\nlibc6 | {MISSING}\n")
        yield directory / "install-debian"
    finally:
        shutil.rmtree(directory)


def recorder(directory: Path) -> dict[str, str]:
    """An environment whose apt-get writes its arguments (and DEBIAN_FRONTEND) to
    directory/apt.log instead of installing anything."""
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "apt-get"
    fake.write_text(f'#!/bin/sh\necho "$DEBIAN_FRONTEND $*" >> {directory}/apt.log\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("DEBIAN_FRONTEND", None)
    return env


@DEBIAN
def test_nothing_to_do_when_everything_is_installed(script: Path, tmp_path: Path) -> None:
    env = recorder(tmp_path)
    result = subprocess.run(
        [script, "runtime", "test"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert not (tmp_path / "apt.log").exists()


@DEBIAN
@pytest.mark.skipif(os.geteuid() != 0, reason="the root branch runs as root only")
def test_root_installs_what_is_missing(script: Path, tmp_path: Path) -> None:
    env = recorder(tmp_path)
    result = subprocess.run(
        [script, "runtime", "extra"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "apt.log").read_text().splitlines()
    # One missing need (the line with libc6 as an alternative is met).
    assert calls == [" update", f"noninteractive install -y --no-install-recommends {MISSING}"]


@DEBIAN
def test_without_root_or_sudo_it_names_the_command(script: Path) -> None:
    argv = [str(script), "runtime", "extra"]
    if os.geteuid() == 0:  # become somebody else, with a PATH without sudo
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", *argv]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/"}
    if shutil.which("sudo", path=env["PATH"]):
        pytest.skip("sudo is installed: the script would try it")
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].endswith(f"installing the missing Debian packages: {MISSING}")
    assert lines[-1] == f"    su root -c 'apt-get update && {INSTALL} {MISSING}'"


def test_make_installs_the_packages_before_the_environment() -> None:
    """`make run` asks for the runtime packages and installs gatewayd without extras;
    `make test` adds the test packages and the extras (a dry run: make -n -B)."""

    def dry(target: str) -> list[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
        result = subprocess.run(
            ["make", "--no-print-directory", "-n", "-B", target, "VENV=/nonexistent/venv"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.splitlines()

    run = dry("run")
    assert run[0] == "packages/install-debian runtime"
    venv = next(i for i, line in enumerate(run) if "-m venv" in line)
    assert any(line.endswith("pip install --quiet -e .") for line in run[venv:])
    assert not any("[test" in line for line in run)
    test = dry("test")
    assert "packages/install-debian runtime test" in test
    assert any(line.endswith("pip install --quiet -e '.[test,lint,postgres]'") for line in test)
    assert test[-1].endswith("-m pytest")
