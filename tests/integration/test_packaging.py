"""The source distribution carries what it takes to set up, install and run gatewayd
as documented, and the license: built as a release would be (python -m build --sdist,
here without network: --no-isolation, with the build backend of the test extras)."""

from __future__ import annotations

import stat
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.conftest import ROOT


def test_the_sdist_has_the_license_config_unit_docs_and_changelog(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--sdist",
            "--no-isolation",
            "--outdir",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (archive,) = tmp_path.glob("gatewayd-*.tar.gz")
    with tarfile.open(archive) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
        info = tar.extractfile(next(m for n, m in members.items() if n == "PKG-INFO"))
        assert info is not None
        metadata = info.read().decode()
    for name in (
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "Makefile",
        "config/gatewayd.toml",
        "systemd/gatewayd.service",
        "systemd/gatewayd.sysusers",
        "systemd/gatewayd.tmpfiles",
        "systemd/gatewayd.logrotate",
        "docs/DESIGN.md",
        "docs/install.md",
        "packages/debian-runtime.txt",
        "packages/debian-test.txt",
        "gatewayd/render/_fax.c",
    ):
        assert name in members, name
    for script in ("systemd/install-service", "packages/install-debian"):
        assert members[script].mode & stat.S_IXUSR, script
    assert not [n for n in members if n.endswith((".so", ".pyc"))]
    assert "License-Expression: Apache-2.0" in metadata
    assert "License-File: LICENSE" in metadata
    assert "Apache License\n" in (ROOT / "LICENSE").read_text()
    assert "Version 2.0, January 2004" in (ROOT / "LICENSE").read_text()
