"""Opening a SQLite store in WAL mode with a versioned schema (records and approvals)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def prepare(conn: sqlite3.Connection, path: Path, schema: str, version: int, what: str,
            error: type[Exception]) -> None:
    """Put ``conn`` in WAL mode and create ``schema`` on a new database, or check that an
    existing one has ``version`` (``PRAGMA user_version``).

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
    elif found != version:
        conn.execute("ROLLBACK")
        raise error(f"{path} has {what} schema version {found}; this veto-opa reads "
                    f"version {version}")
    conn.execute("COMMIT")
