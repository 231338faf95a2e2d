"""README's short tour, run as printed: every ``sh`` block of the section, in order, in
one bash (so ``export`` and ``ID=`` carry over, as in a terminal), from a directory that
looks like a checkout (``.venv``, ``config/gatewayd.toml``, ``tests/data/docs``).

Only two things are added around the blocks: the ``gatewayd run`` line, which a person
leaves running in its terminal, is started in the background with a wait for its ports,
and at the end the test waits for the outcomes a person would watch for (the SMS
Delivered, the fax Sent). The tour's ports are the shipped config's (2525, 8080, 2775):
it runs in a network namespace of its own, where nothing else listens (unshare, as root
or in a user namespace). Where no namespace can be made the ports are moved to free
ones, in the commands and the config alike, and the test says so in its output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.smtp_client import free_port

PORTS = (2525, 8080, 2775)
LONG_RUNNING = re.compile(r"^\.venv/bin/gatewayd run\b")
LOOPBACK_UP = """
import fcntl, os, socket, struct, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    flags = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, struct.pack("16sH14x", b"lo", 0)))[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))
os.execvp(sys.argv[1], sys.argv[1:])
"""
PROLOGUE = """set -euo pipefail
trap 'echo "tour: block $__block failed (line $LINENO)" >&2' ERR
trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT
__wait_port() {
    for _ in $(seq 600); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done
    echo "tour: nothing listens on port $1" >&2; return 1
}
"""
EPILOGUE = """
__block=outcomes
for _ in $(seq 120); do
    if .venv/bin/gatewayd messages list --json | .venv/bin/python -c '
import json, sys
statuses = sorted((m["type"], m["messageStatus"]) for m in json.load(sys.stdin))
print(statuses, file=sys.stderr)
sys.exit(0 if statuses == [("Fax", "Sent"), ("SMS", "Delivered"), ("SMS", "Delivered")] else 1)
' 2>/dev/null; then echo; echo "tour: outcomes reached"; exit 0; fi
    sleep 0.5
done
.venv/bin/gatewayd messages list >&2
exit 1
"""


def tour_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## A short tour\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 6, "README's tour lost its commands"
    return blocks


def script(blocks: list[str]) -> str:
    lines = [PROLOGUE]
    for number, block in enumerate(blocks, 1):
        lines.append(f"__block={number}")
        for line in block.splitlines():
            if LONG_RUNNING.match(line):
                backgrounded = re.sub(r"(\s+#.*)?$", r" &\1", line, count=1)  # before a comment
                lines += [backgrounded, *(f"__wait_port {port}" for port in PORTS)]
            else:
                lines.append(line)
    lines.append(EPILOGUE)
    return "\n".join(lines) + "\n"


def checkout_like(where: Path) -> None:
    (where / "config").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "gatewayd.toml", where / "config" / "gatewayd.toml")
    (where / "tests" / "data").mkdir(parents=True)
    (where / "tests" / "data" / "docs").symlink_to(ROOT / "tests" / "data" / "docs")
    (where / ".venv").symlink_to(Path(sys.executable).parent.parent)


def namespace() -> list[str] | None:
    """The command prefix that runs the tour in a network namespace of its own."""
    for unshare in (["unshare", "--net"], ["unshare", "--map-root-user", "--net"]):
        probe = subprocess.run([*unshare, "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [*unshare, sys.executable, "-c", LOOPBACK_UP]
    return None


def test_the_readme_tour_runs_as_printed(tmp_path: Path) -> None:
    missing = [tool for tool in ("swaks", "curl") if shutil.which(tool) is None]
    assert missing == [], f"{missing}: packages/debian-test.txt (make test installs them)"
    checkout_like(tmp_path)
    text = script(tour_blocks())
    prefix = namespace()
    if prefix is None:
        print("no network namespace here: the tour's ports are moved to free ones")
        config = tmp_path / "config" / "gatewayd.toml"
        moved = config.read_text()
        for port in PORTS:
            new = free_port()
            text = re.sub(rf"\b{port}\b", str(new), text)
            moved = re.sub(rf"\b{port}\b", str(new), moved)
        config.write_text(moved)
        prefix = []
    (tmp_path / "tour.sh").write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "GATEWAYD_CONFIG"}
    tour = subprocess.Popen(
        [*prefix, "bash", "tour.sh"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: nothing outlives a failed tour
    )
    try:
        stdout, stderr = tour.communicate("correct horse battery\n", timeout=300)  # hash-secret
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(tour.pid, signal.SIGKILL)
        tour.communicate()
    assert tour.returncode == 0, stdout[-4000:] + stderr[-4000:]
    out = stdout.splitlines()
    assert "tour: outcomes reached" in out
    assert "config/gatewayd.toml: OK, 1 warning" in out  # check-config
    assert any(": ready, up " in line for line in out), stdout  # status: the daemon answers
    assert any(re.match(r"^simulator\s+127\.0\.0\.1:\d+\s+bound\s", line) for line in out)
    assert " -> RCPT TO:<+4915112345678@sms.example.com>" in out  # swaks, with its +
    assert any(line.startswith("scrypt$") for line in out)  # hash-secret read the password
    assert "fax.tif: 5 pages, " in "\n".join(out)  # render: cover, three pages, the photo
    assert "OK" in out  # tiffcheck's verdict
    (answer,) = [json.loads(line) for line in out if line.startswith('{"uri":')]  # curl
    assert [(m["type"], m["messageStatus"]) for m in answer["records"]] == [
        ("SMS", "Delivered"),
        ("SMS", "Delivered"),
    ]
    # token create: the token alone on stdout (into $TOKEN), in effect at once; token list
    assert "in effect now, until revoked" in stderr
    assert any(re.match(r"^1\s+alice@example\.com\s+101\s+tour\s+active\s", line) for line in out)
