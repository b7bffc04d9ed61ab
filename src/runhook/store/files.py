"""The database file and its -wal and -shm: private to the daemon's user (they hold history)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("runhook.store")


def create_private(path: Path) -> None:
    """Create the database 0600 before SQLite opens it: SQLite gives its -wal and -shm
    the database's mode whatever the umask, so they are private too (the socket's
    mode is set on its own). From a file an older version left readable by every
    user, that access is taken away (the group's is the operator's choice)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            try:
                mode = stat.S_IMODE(name.stat().st_mode)
                if mode & 0o007:
                    os.chmod(name, mode & ~0o007)
                    log.warning("%s was open to every user; now %o", name, mode & ~0o007)
            except FileNotFoundError:
                continue
            except PermissionError as exc:  # not ours to change; say so, and go on
                log.warning("%s is open to every user: %s", name, exc.strerror)
        return
    try:
        os.fchmod(fd, 0o600)  # a umask cannot have taken the owner's bits either
    finally:
        os.close(fd)
