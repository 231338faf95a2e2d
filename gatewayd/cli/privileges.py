"""Commands started by root act as the service's user.

The service runs as the owner of ``mailbox.data_dir`` (the ``gatewayd`` system user of
the documented install, docs/install.md). An operator who types ``sudo gatewayd
messages list`` or ``sudo gatewayd purge`` reads and writes that mailbox as that user:
a file root made there (a SQLite journal, a blob directory, the lock file) would be one
the service cannot open afterwards. So a process running as root whose data directory
exists and belongs to another user takes that user's uid, gid, groups and home
directory before it opens anything. Started by anyone else, or on a data directory that
root owns or that does not exist yet, nothing changes.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path


def become_owner(data_dir: Path) -> int | None:
    """Switch to the owner of ``data_dir`` if we are root and it is someone else's;
    the uid switched to, or None when nothing changed."""
    if os.geteuid() != 0:
        return None
    try:
        owner = data_dir.stat()
    except OSError:
        return None  # not there yet: the command says what it needs
    if owner.st_uid == 0:
        return None
    try:
        user: pwd.struct_passwd | None = pwd.getpwuid(owner.st_uid)
    except KeyError:  # a uid without a name: its group is the directory's
        user = None
    if user is not None:
        os.initgroups(user.pw_name, user.pw_gid)
        os.setgid(user.pw_gid)
        os.environ.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    else:
        os.setgroups([])
        os.setgid(owner.st_gid)
    os.setuid(owner.st_uid)
    return owner.st_uid
