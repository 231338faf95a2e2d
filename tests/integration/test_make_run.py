"""README's first command on a copy of this checkout without a .venv: `make run`
installs the runtime (no test, lint or PostgreSQL extras) and starts the daemon beside
the SMSC simulator on the shipped config. The install runs first (it needs the package
index); the daemon then runs in a network namespace of its own, so that the shipped
ports (2525, 8080, 2775) are free whatever else runs on this machine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.test_readme_tour import namespace

pytestmark = pytest.mark.slow


GENERATED = (
    ".git",
    ".venv",
    "var",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "results",
    "build",
    "dist",
    "*.egg-info",
    "*.so",
)


def copy_of_checkout(where: Path) -> Path:
    """This checkout's files, without what make, pip and the tools made in it."""
    shutil.copytree(ROOT, where, symlinks=True, ignore=shutil.ignore_patterns(*GENERATED))
    return where


def test_make_run_installs_the_runtime_only_and_starts(tmp_path: Path) -> None:
    checkout = copy_of_checkout(tmp_path / "gatewayd")
    python = f"PYTHON={sys._base_executable}"  # the Python this suite runs on, not its venv
    install = subprocess.run(
        ["make", python, ".venv/.installed-runtime"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    venv = checkout / ".venv" / "bin"
    assert (venv / "gatewayd").exists()
    for extra in ("pytest", "ruff", "mypy"):
        assert not (venv / extra).exists(), f"make run installed {extra}"
    assert (
        subprocess.run(
            [venv / "python", "-c", "import asyncpg"], capture_output=True, check=False
        ).returncode
        != 0
    )
    prefix = namespace()
    if prefix is None:
        pytest.skip("no network namespace here for the shipped ports (unshare)")
    run = subprocess.Popen(
        [*prefix, "make", python, "run"],
        cwd=checkout,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert run.stdout is not None
        events: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not {"daemon.started", "sms.link_state"} <= set(
            events
        ):
            line = run.stdout.readline()
            if not line:
                break
            if line.startswith("{"):
                entry = json.loads(line)
                events.append(entry["event"])
                if entry["event"] == "sms.link_state" and entry["state"] != "bound":
                    events.pop()
        assert "daemon.started" in events, events
        assert "sms.link_state" in events, events  # bound to the simulator make started
    finally:
        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C, as README says: stops both
        out, err = run.communicate(timeout=120)
    assert run.returncode in (0, 2, -signal.SIGINT), err  # make ends as Ctrl-C ends it
    stopped = [json.loads(x) for x in out.splitlines() if '"daemon.stopped"' in x]
    assert [entry["exit_code"] for entry in stopped] == [0]
    assert "Traceback" not in err
