"""A throwaway HylaFAX server for the tests: Debian's hfaxd and faxq on a private spool
in a temp dir, hfaxd on a loopback port, a hosts.hfaxd that admits one user with a
password. No modem is configured, so submitted jobs wait (state W or B) until they
are killed or their kill time passes; nothing is dialled and no mail is sent (the
notify command only logs).

Needs root (both servers start as root and switch to the fax user, ``uucp`` in the
Debian build) and the hylafax-server package (.ci/run installs it)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.smtp_client import free_port

HFAXD = Path("/usr/sbin/hfaxd")
FAXQ = Path("/usr/sbin/faxq")
FAX_USER = "uucp"
SPOOL_DIRS = ("archive", "bin", "client", "config", "dev", "docq", "doneq", "etc", "info",
              "lock", "log", "pollq", "recvq", "sendq", "status", "tmp")  # fmt: skip


@dataclass(frozen=True)
class Hylafax:
    port: int
    spool: Path
    username: str
    password: str


def available() -> str | None:
    """Why a HylaFAX server cannot run here, or None."""
    if not (HFAXD.exists() and FAXQ.exists()):
        return "hylafax-server is not installed (.ci/run installs it)"
    if os.geteuid() != 0:
        return "hfaxd and faxq must start as root"
    return None


def _build_spool(username: str, password: str) -> Path:
    # Not under pytest's tmp_path: its parent is private to root, and the servers run
    # as the fax user, who must reach the spool.
    spool = Path(tempfile.mkdtemp(prefix="gatewayd-hylafax-"))
    fax = pwd.getpwnam(FAX_USER)
    spool.chmod(0o755)
    os.chown(spool, fax.pw_uid, fax.pw_gid)
    for name in SPOOL_DIRS:
        path = spool / name
        path.mkdir()
        os.chown(path, fax.pw_uid, fax.pw_gid)
        path.chmod(0o1777 if name == "tmp" else 0o755)
    # faxq will not start without setup.cache; point it at this spool.
    cache = Path("/etc/hylafax/setup.cache").read_text()
    (spool / "etc" / "setup.cache").write_text(re.sub(r"(?m)^SPOOL=.*$", f"SPOOL='{spool}'", cache))
    notify = spool / "bin" / "notify-log"
    notify.write_text(f'#!/bin/sh\necho "$*" >> {spool}/log/notify.log\n')
    notify.chmod(0o755)
    (spool / "etc" / "config").write_text(
        "ServerTracing: 1\n"
        "NotifyCmd: bin/notify-log\n"
        "SendFaxCmd: /usr/lib/hylafax/bin/faxsend\n"
        "SendUUCPCmd: /bin/false\n"
        f"UUCPLockDir: {spool}/lock\n"
    )
    hosts = spool / "etc" / "hosts.hfaxd"
    # hosts.hfaxd holds crypt(3) hashes (Python's crypt module is gone in 3.13)
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    hosts.write_text(f"^{re.escape(username)}@127\\.0\\.0\\.1$:100:{hashed}:\n")
    os.chown(hosts, fax.pw_uid, fax.pw_gid)
    hosts.chmod(0o600)  # hfaxd ignores an access file others can read
    return spool


@contextmanager
def hylafax_server(
    username: str = "gatewayd",
    password: str = "fax-secret",  # noqa: S107 (a throwaway server's)
) -> Iterator[Hylafax]:
    spool = _build_spool(username, password)
    port = free_port()
    log = (spool / "log" / "servers.out").open("ab")
    faxq = subprocess.Popen([FAXQ, "-D", "-q", spool], stdout=log, stderr=subprocess.STDOUT)
    hfaxd = subprocess.Popen(
        [HFAXD, "-d", "-q", spool, "-l", "127.0.0.1", "-i", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        fifo = spool / "FIFO"
        while True:
            for process, name in ((faxq, "faxq"), (hfaxd, "hfaxd")):
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}")
            try:
                ready = stat.S_ISFIFO(fifo.stat().st_mode)
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                ready = False
            if ready:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("HylaFAX did not come up within 15 s")
            time.sleep(0.05)
        yield Hylafax(port, spool, username, password)
    finally:
        hfaxd.terminate()
        try:  # what faxquit(8) does: "Q" on the FIFO
            handle = os.open(spool / "FIFO", os.O_WRONLY | os.O_NONBLOCK)
            os.write(handle, b"Q")
            os.close(handle)
        except OSError:
            faxq.terminate()
        for process in (faxq, hfaxd):
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
        shutil.rmtree(spool, ignore_errors=True)
