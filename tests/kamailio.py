"""A private Kamailio (Debian package ``kamailio``) as the SIP trunk of the tests:
registrar and proxy with digest authentication on 127.0.0.1, started from
tests/sip/kamailio.cfg with its own runtime directory; ``stop`` and ``start`` take it
down and bring it back on the same port (the "server down" tests)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.smtp_client import HANDED_OUT

TEMPLATE = Path(__file__).parent / "sip" / "kamailio.cfg"
BINARY = shutil.which("kamailio") or "/usr/sbin/kamailio"


def modules() -> Path:
    """Kamailio's module directory (Debian: /usr/lib/<multiarch>/kamailio/modules)."""
    found = [
        *sorted(Path("/usr/lib").glob("*/kamailio/modules")),
        Path("/usr/lib/kamailio/modules"),
    ]
    return next((path for path in found if (path / "tm.so").exists()), found[0])


def free_port_udp_and_tcp() -> int:
    """A loopback port free for both UDP and TCP, not handed out before in this run."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            if port in HANDED_OUT:
                continue
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                HANDED_OUT.add(port)
                return port
    raise RuntimeError("no port free for both UDP and TCP")


@dataclass
class Trunk:
    work: Path
    port: int
    config: Path
    tls_port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def tls_address(self) -> str:
        return f"127.0.0.1:{self.tls_port}"

    def start(self) -> None:
        if not Path(BINARY).exists() or not (modules() / "tm.so").exists():
            pytest.fail("kamailio is missing: apt-get install kamailio")
        run = self.work / "run"
        run.mkdir(exist_ok=True)
        log = self.work / f"kamailio-{len(self.logs)}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            argv = [BINARY, "-f", str(self.config), "-DD", "-E", "-Y", str(run)]
            argv += ["-P", str(run / "kamailio.pid"), "-m", "48", "-M", "8"]
            # its own process group: stopping it takes its children along
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        options = (
            f"OPTIONS sip:127.0.0.1:{self.port} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKready\r\nMax-Forwards: 70\r\n"
            "From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\n"
            "Call-ID: ready@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        deadline = time.monotonic() + 20
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            probe.settimeout(0.2)
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    pytest.fail(f"kamailio exited: {self.logs[-1].read_text()[-3000:]}")
                here = f":{probe.getsockname()[1]};".encode()
                probe.sendto(options.replace(b":9;", here), ("127.0.0.1", self.port))
                try:
                    if probe.recv(4096).startswith(b"SIP/2.0 200"):
                        return
                except TimeoutError:
                    continue
        pytest.fail(f"kamailio did not answer OPTIONS: {self.logs[-1].read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        group = self.process.pid  # the session leader's pid is the group's id
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)  # children left behind, if any
        self.process = None

    def log_text(self) -> str:
        return "".join(log.read_text(errors="replace") for log in self.logs)


@contextmanager
def kamailio(
    work: Path,
    *,
    users: dict[str, str],
    dids: dict[str, str],
    debug: int = 2,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[Trunk]:
    """Kamailio with ``users`` (name -> password) and ``dids`` (number -> user); with
    ``tls`` (certificate, key) also SIP over TLS on ``tls_port`` (Debian package
    kamailio-tls-modules)."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port_udp_and_tcp()
    tls_port = free_port_udp_and_tcp() if tls else None
    tls_lines = {"%TLS_LISTEN%": "", "%TLS_MODULE%": "", "%TLS_PARAMS%": ""}
    if tls is not None:
        if not (modules() / "tls.so").exists():
            pytest.fail("kamailio's TLS module is missing: apt-get install kamailio-tls-modules")
        certificate, key = tls
        tls_config = work / "tls.cfg"
        tls_config.write_text(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
            f"require_certificate = no\nprivate_key = {key}\ncertificate = {certificate}\n"
            "[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
            "require_certificate = no\n"
        )
        tls_lines = {
            "%TLS_LISTEN%": f"enable_tls=yes\nlisten=tls:127.0.0.1:{tls_port}",
            "%TLS_MODULE%": 'loadmodule "tls.so"',
            "%TLS_PARAMS%": f'modparam("tls", "config", "{tls_config}")',
        }
    text = TEMPLATE.read_text()
    replacements = {
        "%PORT%": str(port),
        "%MODULES%": f"{modules()}/",
        "%DEBUG%": str(debug),
        "%USERS%": "\n".join(f'    $sht(users=>{u}) = "{p}";' for u, p in users.items()),
        "%DIDS%": "\n".join(f'    $sht(dids=>{n}) = "{u}";' for n, u in dids.items()),
        **tls_lines,
    }
    for name, value in replacements.items():
        text = text.replace(name, value)
    config = work / "kamailio.cfg"
    config.write_text(text)
    trunk = Trunk(work, port, config, tls_port)
    trunk.start()
    try:
        yield trunk
    finally:
        trunk.stop()
