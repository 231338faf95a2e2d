"""The daemon's local socket: ``<mailbox.data_dir>/gatewayd.sock``.

A running daemon listens there (gatewayd/status.py) and answers whoever connects with
its status, one JSON document, then closes. ``gatewayd status`` asks it with ``ask``.
Why a socket in the data directory rather than the API port: it needs no token and no
TLS, it works whatever address the API listens on (or if it listens on none a local
command can reach), and who may read it is decided by the file system, as for the
mailbox beside it (the socket is made 0660, inside a directory the service's user
owns; operator commands switch to that user, cli/privileges.py).

A Unix socket's path is limited to 107 bytes; a longer one is reached through the
directory's descriptor (``/proc/self/fd/N/gatewayd.sock``), which Linux resolves.

Only the standard library here: ``gatewayd status`` must start fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SOCKET_NAME = "gatewayd.sock"
MAX_ANSWER = 4 << 20  # bytes: a status document is a few kilobytes
_SUN_PATH_MAX = 100  # below the kernel's 108, with room for the terminating NUL


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME


class NotRunning(Exception):
    """Nothing answers on the socket (no daemon, or one that is not answering)."""


@contextlib.contextmanager
def reachable(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits a Unix socket address, valid inside the block."""
    if len(os.fsencode(path)) < _SUN_PATH_MAX:
        yield str(path)
        return
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


def ask(data_dir: Path, *, timeout: float = 10.0) -> dict[str, Any]:
    """The running daemon's status document; NotRunning when nobody answers."""
    path = socket_path(data_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as client:
        client.settimeout(timeout)
        try:
            with reachable(path) as name:
                client.connect(name)
        except FileNotFoundError:
            raise NotRunning(f"no daemon: {path} does not exist") from None
        except ConnectionRefusedError:
            raise NotRunning(f"no daemon answers on {path} (left by one that stopped)") from None
        except OSError as exc:
            raise NotRunning(f"cannot reach {path}: {exc.strerror or exc}") from None
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := client.recv(1 << 16):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise NotRunning(f"{path}: the answer is too long")
        except TimeoutError:
            raise NotRunning(f"the daemon on {path} did not answer within {timeout:g} s") from None
        except OSError as exc:
            raise NotRunning(f"{path}: {exc.strerror or exc}") from None
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        raise NotRunning(f"{path}: the answer is not a status document") from None
    if not isinstance(answer, dict):
        raise NotRunning(f"{path}: the answer is not a status document")
    return answer
