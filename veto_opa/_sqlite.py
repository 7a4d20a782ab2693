"""Opening a SQLite store in WAL mode with a versioned schema (records and approvals), and
waiting for another process's write lock.

SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20 ... ms between tries, when a write
transaction of these stores lasts about a tenth of a millisecond: processes sharing a file
spent most of their time asleep. So the stores' connections do not wait in SQLite
(``PRAGMA busy_timeout=0``); they try again after 0.1 ms, doubling up to 5 ms
(:func:`busy_waits`), until their own ``busy_timeout``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Mapping
from pathlib import Path


def prepare(conn: sqlite3.Connection, path: Path, schema: str, version: int, what: str,
            error: type[Exception], migrations: Mapping[int, str] | None = None) -> None:
    """Put ``conn`` in WAL mode and create ``schema`` on a new database, or check that an
    existing one has ``version`` (``PRAGMA user_version``).

    Args:
        migrations: ``{older version: SQL}`` that brings a database of that version to
            ``version``, run in the same transaction.

    Raises:
        error: WAL mode is not available, or the database has another schema version.
        sqlite3.Error: SQLite failed.
    """
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise error(f"cannot use WAL journal mode for {path} (got {mode})")
    conn.execute("BEGIN IMMEDIATE")
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found == 0:
        # One statement at a time: executescript() would commit the transaction.
        for statement in filter(str.strip, schema.split(";")):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={version}")
    elif found != version and migrations and found in migrations:
        for statement in filter(str.strip, migrations[found].split(";")):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={version}")
    elif found != version:
        conn.execute("ROLLBACK")
        raise error(f"{path} has {what} schema version {found}; this veto-opa reads "
                    f"version {version}")
    conn.execute("COMMIT")


def is_busy(exc: BaseException) -> bool:
    """Another connection holds the lock (SQLITE_BUSY or SQLITE_LOCKED, extended codes too)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return (isinstance(exc, sqlite3.OperationalError) and code is not None
            and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED))


def busy_waits(timeout: float) -> Iterator[None]:
    """One turn per try: the first at once, then after 0.1 ms, doubling up to 5 ms, until
    ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    delay = 0.0001
    yield
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.005)
        yield


def begin_immediate(conn: sqlite3.Connection, timeout: float) -> None:
    """``BEGIN IMMEDIATE`` on a connection with ``busy_timeout=0``, waiting up to ``timeout``
    seconds for another process's write lock.

    Raises:
        sqlite3.OperationalError: the lock was still held after ``timeout`` ("database is
            locked"), or SQLite failed otherwise.
    """
    busy: sqlite3.OperationalError | None = None
    for _ in busy_waits(timeout):
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            busy = exc
    assert busy is not None
    raise busy
