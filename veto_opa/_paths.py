"""Where veto-opa keeps its files, and how they are created: the home directory (``VETO_HOME``,
default ``.veto``) mode 0700 and every file in it mode 0600, since records and approvals hold
tool-call arguments and contexts that other local users must not read.

    home = ensure_home(default_home())
    records = home / RECORDS_FILE
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DEFAULT_HOME = ".veto"
RECORDS_FILE = "records.sqlite3"
APPROVALS_FILE = "approvals.sqlite3"
KEY_FILE = "record.key"

HOME_MODE = 0o700
FILE_MODE = 0o600


def default_home() -> Path:
    """``$VETO_HOME``, or ``.veto`` in the working directory."""
    return Path(os.environ.get("VETO_HOME") or DEFAULT_HOME)


def ensure_home(home: str | os.PathLike[str]) -> Path:
    """Create ``home`` (and its parents) if missing; a home veto-opa creates is mode 0700.

    An existing directory keeps its mode: it is the owner's choice, and may be shared on
    purpose (several agents of one team).

    Raises:
        OSError: it cannot be created, or exists and is not a directory.
    """
    path = Path(home)
    if not path.is_dir():
        path.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
        os.chmod(path, HOME_MODE)   # mkdir's mode is filtered by the umask
    return path


def ensure_private_file(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` empty with mode 0600 if it does not exist (SQLite then gives its
    journal and WAL files the same mode); an existing file is left as it is.

    Raises:
        OSError: it cannot be created.
    """
    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return target
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return target


def mode_of(path: str | os.PathLike[str]) -> int:
    """The permission bits of ``path`` (``0o600``)."""
    return stat.S_IMODE(os.stat(path).st_mode)
