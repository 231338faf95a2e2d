"""The daemon process's own limits: descriptors and file modes.

- ``raise_nofile``: the soft RLIMIT_NOFILE raised to the hard limit at start (a plain
  systemd unit gives soft 1024; the unit ships ``LimitNOFILE=65536``).
- ``fit_caps``: listener caps scaled down, with a warning, when the descriptors left
  cannot hold them all (``RESERVE`` are kept for the database, files, the SMPP links,
  render workers and LibreOffice).
- ``private_files``: umask 077, so what the daemon creates (the database and its
  -wal/-shm, the data directory, the log, temporary files) is its own alone whatever
  the umask it was started with. The fax spool, which another fax system reads, sets
  its modes explicitly (gatewayd/fax/spool.py).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence

from gatewayd.guard.listener import Caps
from gatewayd.logging import get_logger

log = get_logger("gatewayd.daemon")

RESERVE = 256
PRIVATE_UMASK = 0o077


def raise_nofile() -> int:
    """The soft descriptor limit, raised to the hard one if it was lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            log.warning("daemon.nofile_not_raised", soft=soft, hard=hard, error=str(exc))
            return soft
        if wanted != soft:
            log.info("daemon.nofile_raised", soft=wanted, was=soft)
        return wanted
    return soft


def fit_caps(caps: Sequence[Caps], nofile: int) -> list[Caps]:
    """``caps`` as they are if their connections fit in ``nofile`` descriptors with
    ``RESERVE`` to spare; else scaled down in proportion (and said so)."""
    wanted = sum(c.per_listener for c in caps)
    room = max(len(caps), nofile - RESERVE)
    if wanted <= room:
        return list(caps)
    fitted = []
    for c in caps:
        per_listener = max(1, c.per_listener * room // wanted)
        fitted.append(Caps(per_listener, min(c.per_address, per_listener)))
    log.warning(
        "daemon.connection_caps_lowered",
        nofile=nofile,
        wanted=wanted,
        caps=[f.per_listener for f in fitted],
        hint="raise LimitNOFILE (or ulimit -n) or lower the max_connections settings",
    )
    return fitted


def private_files() -> None:
    os.umask(PRIVATE_UMASK)
