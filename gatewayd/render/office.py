"""LibreOffice, for office documents (Word, Excel, PowerPoint, OpenDocument, RTF).

Office documents are accepted only when LibreOffice is installed: ``fax.libreoffice``
names its ``soffice``, or it is looked for on PATH.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from gatewayd.config.settings import FaxSettings
from gatewayd.errors import RenderError


def find_soffice(settings: FaxSettings) -> Path | None:
    if settings.libreoffice:
        path = Path(settings.libreoffice)
        return path if path.is_file() else None
    for name in ("soffice", "libreoffice"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def to_pdf(source: Path, soffice: Path, *, timeout: float, workdir: Path) -> Path:
    """Convert an office document with LibreOffice headless: a profile directory of its
    own (parallel runs would fight over a shared one), a timeout (a dialog or a bad
    file can hang it), and the output checked (it exits 0 even when it fails)."""
    profile = Path(tempfile.mkdtemp(prefix="lo-profile-", dir=workdir))
    outdir = Path(tempfile.mkdtemp(prefix="lo-out-", dir=workdir))
    command = [
        str(soffice),
        "--headless",
        "--norestore",
        "--nologo",
        "--nodefault",
        "--nolockcheck",
        f"-env:UserInstallation={profile.as_uri()}",
        "--convert-to",
        "pdf",
        "--outdir",
        str(outdir),
        str(source),
    ]
    # Its own session, so that a timeout kills soffice.bin too, not only the launcher.
    try:
        process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "HOME": str(profile)},
            start_new_session=True,
        )
    except OSError as exc:
        shutil.rmtree(profile, ignore_errors=True)
        raise RenderError(f"LibreOffice could not be started ({exc.strerror})") from exc
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired as exc:
        raise RenderError(
            f"LibreOffice took more than {timeout:g} s to convert the document"
        ) from exc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # anything it left running
        process.wait()
        shutil.rmtree(profile, ignore_errors=True)
    result = outdir / (source.stem + ".pdf")
    if not result.is_file() or not result.read_bytes()[:5] == b"%PDF-":
        raise RenderError("LibreOffice could not convert the document (is it damaged?)")
    return result
