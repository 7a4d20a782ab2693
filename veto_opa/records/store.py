"""The durable, hash-chained store of decision records (SQLite, stdlib only).

Usage::

    store = SQLiteRecordStore(Path(".veto") / "records.sqlite3")
    record = store.append({"tool": "execute_sql", "arguments": {...}, ...})   # committed
    store.append_outcome(record.decision_id, "executed")
    store.query(decision="deny", since="2026-11-25")
    assert store.verify().ok

**Durability.** ``append`` returns only after the record's transaction has committed. The
database runs in WAL mode; with ``synchronous="normal"`` (the default) a committed record
survives the process being killed at any instant (it is in the WAL, which SQLite replays),
and with ``synchronous="full"`` it also survives power loss or an OS crash (the WAL is fsynced
at every commit). Checkpoints — copying the WAL into the database, with fsyncs — run on a
background thread rather than inside some caller's append.

**Group commit.** Appends from many threads are gathered: the first thread to find no write
in progress becomes the leader, takes every pending record (up to ``max_batch``), writes them
in one ``BEGIN IMMEDIATE`` transaction, commits once and wakes every waiter; threads that
arrived meanwhile form the next batch. A leader never waits for writers to arrive (that put
the threads in lock step and left the CPUs idle). One commit (one fsync under
``"full"``) is shared by the whole batch, and the chain order is the order of sequence numbers.
Callers validate their own record before queueing; the leader only assigns sequence and
hashes, so little Python runs under the write lock.

**Several processes.** Processes appending to the same file extend one chain. The chain
head (last sequence and hash) is read inside a write transaction, after ``BEGIN IMMEDIATE``
has taken SQLite's write lock. After a write of its own the store remembers the head it left,
and the next batch inserts ``sequence + 1`` straight away (a lone record in a single
autocommitted ``INSERT``): ``sequence`` is the table's primary key, so if another process has
appended meanwhile the insert fails on that very row, nothing is written, and the batch is
written again from the head read under the lock (as are the next 64 batches: processes that
take turns would otherwise fail that insert almost every time). Rows are never updated, so a
remembered head that is still the last row is the real one.

**Layout.** One table, one row per entry (decision or outcome): every field in the ``json``
column (the canonical document, exactly what is hashed and exported) plus copies of the
fields used for filtering. ``verify`` checks that the copies agree with the document.
Indexed: the sequence (the table's key), decision ids (unique), outcomes by decision, and
timestamps. Every index costs each record a page write in the WAL, so the decision, tool and
rule filters have none: they are checked on the rows of the time range, newest first, where a
listing stops at its limit (the README's records table has the numbers). Stores created by
earlier versions also index decision, tool and rule; those indexes are kept.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
import uuid
from contextlib import closing, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import ValidationError

from veto_opa._paths import KEY_FILE, RECORDS_FILE, default_home, ensure_home, ensure_private_file
from veto_opa._sqlite import busy_waits, is_busy, prepare
from veto_opa.errors import RecordError
from veto_opa.records import export as export_files
from veto_opa.records.model import (
    CHAIN_FIELDS,
    GENESIS_HASH,
    ApprovalRecord,
    ChainChecker,
    DecisionRecord,
    OutcomeRecord,
    VerifyResult,
    OUTCOME_STATUSES,
    REFUSED,
    GuardRecord,
    new_decision_id,
    now_timestamp,
    parse_timestamp,
    seal,
)

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping

KEY_BYTES = 32
SCHEMA_VERSION = 2   # 2: approval events (kind 'approval') join the chain

TimeBound = datetime | str | None
Synchronous = Literal["normal", "full", "extra"]

_SCHEMA = """
CREATE TABLE records (
    sequence    INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('decision', 'outcome', 'approval')),
    decision_id TEXT NOT NULL,
    timestamp   TEXT NOT NULL,
    decision    TEXT,
    tool        TEXT,
    rule        TEXT,
    prev_hash   TEXT NOT NULL,
    record_hash TEXT NOT NULL,
    json        TEXT NOT NULL
);
CREATE UNIQUE INDEX records_decision_id ON records (decision_id) WHERE kind = 'decision';
CREATE INDEX records_outcomes ON records (decision_id, sequence) WHERE kind = 'outcome';
CREATE INDEX records_by_time ON records (timestamp) WHERE kind = 'decision';
CREATE INDEX records_approvals ON records (decision_id, sequence) WHERE kind = 'approval';
"""

# Version 1 refused kind 'approval' (a CHECK constraint cannot be altered): the table is
# copied into one that accepts it, rows and hashes unchanged.
_MIGRATE_FROM_1 = """
ALTER TABLE records RENAME TO records_v1;
DROP INDEX IF EXISTS records_decision_id;
DROP INDEX IF EXISTS records_outcomes;
DROP INDEX IF EXISTS records_by_time;
DROP INDEX IF EXISTS records_by_decision;
DROP INDEX IF EXISTS records_by_tool;
DROP INDEX IF EXISTS records_by_rule;
""" + _SCHEMA + """;
INSERT INTO records SELECT sequence, kind, decision_id, timestamp, decision, tool, rule,
    prev_hash, record_hash, json FROM records_v1;
DROP TABLE records_v1
"""

# The columns that mirror document fields, in table order after ``sequence``.
_MIRRORED = (
    "kind",
    "decision_id",
    "timestamp",
    "decision",
    "tool",
    "rule",
    "prev_hash",
    "record_hash",
)
_INSERT = (
    "INSERT INTO records (sequence, kind, decision_id, timestamp, decision, tool, rule, "
    "prev_hash, record_hash, json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_HEAD = "SELECT sequence, record_hash FROM records ORDER BY sequence DESC LIMIT 1"
# Group commits between two background WAL checkpoints (a commit writes about ten pages;
# SQLite's own default is a checkpoint per 1000 pages).
_CHECKPOINT_EVERY = 100
_STALE_HEAD_PAUSE = 64   # batches that read the head after another process was found writing
# WAL size (in pages) at which a leader completes the checkpoint so that the WAL rewinds.
_RESET_FRAMES = 4096
# Seconds without a checkpoint request after which the checkpoint thread ends.
_CHECKPOINTER_IDLE = 10.0
# The WAL file is truncated back to this size when it rewinds after a burst.
_WAL_SIZE_LIMIT = 64 * 1024 * 1024


def store_path(home: str | os.PathLike[str] | None = None) -> Path:
    """The record database under a veto home: ``<home>/records.sqlite3``."""
    return Path(home if home is not None else default_home()) / RECORDS_FILE


def load_or_create_key(home: str | os.PathLike[str]) -> bytes:
    """The redaction HMAC key, ``<home>/record.key``: 32 random bytes, created mode 0600.

    Creation is atomic (written to a temporary file, then hard-linked into place), so processes
    starting at the same time agree on one key.

    Raises:
        RecordError: the key cannot be read or created, or the file is not a key.
    """
    home = Path(home)
    path = home / KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    try:
        ensure_home(home)
        temp = home / f".{KEY_FILE}.{os.getpid()}.{uuid.uuid4().hex}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, secrets.token_bytes(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another process won the race; use its key
        finally:
            os.unlink(temp)
        return _read_key(path)
    except OSError as exc:
        raise RecordError(f"cannot create the record key {path}: {exc}") from exc


def _read_key(path: Path) -> bytes:
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise RecordError(f"cannot read the record key {path}: {exc}") from exc
    if len(key) != KEY_BYTES:
        raise RecordError(
            f"{path} is not a record key: expected {KEY_BYTES} bytes, found {len(key)}"
        )
    return key


class RecordStore(Protocol):
    """Where decision records go: everything ``Veto.guard()`` and the CLI call. Append-only:
    there is no update and no delete."""

    def append_decision(self, record: GuardRecord) -> None:
        """Chain and commit one guard call's record; returns once it is durable.

        Raises:
            RecordError: the record cannot be stored (the guard then denies the call).
        """
        ...

    def append_outcome(
        self, decision_id: str, status: str, error: str | None = None
    ) -> OutcomeRecord:
        """Record what happened after a decision (see :data:`OUTCOME_STATUSES`).

        Raises:
            RecordError: unknown decision, unknown status, an outcome that contradicts the
                decision or follows another (the attempt is recorded as ``refused``).
        """
        ...

    def query(
        self,
        *,
        decision: str | None = None,
        tool: str | None = None,
        rule: str | None = None,
        since: TimeBound = None,
        until: TimeBound = None,
        limit: int | None = 100,
    ) -> list[DecisionRecord]: ...

    def get(self, decision_id: str) -> DecisionRecord | None: ...

    def outcomes(self, decision_id: str) -> list[OutcomeRecord]: ...

    def export(
        self,
        path: str | os.PathLike[str],
        format: Literal["jsonl", "csv"] = "jsonl",
        *,
        decision: str | None = None,
        tool: str | None = None,
        rule: str | None = None,
        since: TimeBound = None,
        until: TimeBound = None,
    ) -> int: ...

    def verify(self, *, anchors: Mapping[int, str] | None = None) -> VerifyResult: ...

    def close(self) -> None: ...


@dataclass(eq=False)
class _Pending:
    """One entry waiting for the group commit, and then its outcome.

    ``record`` is the validated model, or None for a guard's record appended as it is
    (:meth:`SQLiteRecordStore.append_decision`); ``result`` is then the stored document.
    """

    document: dict[str, Any]
    record: DecisionRecord | OutcomeRecord | ApprovalRecord | None
    result: DecisionRecord | OutcomeRecord | ApprovalRecord | dict[str, Any] | None = None
    error: str | None = None
    refusal: str | None = None   # an outcome written as "refused": raised once it is stored
    cause: BaseException | None = None
    done: bool = False


def _filters(
    decision: str | None,
    tool: str | None,
    rule: str | None,
    since: TimeBound,
    until: TimeBound,
) -> tuple[str, list[Any]]:
    clauses = ["kind = 'decision'"]
    params: list[Any] = []
    for column, value in (("decision", decision), ("tool", tool), ("rule", rule)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        clauses.append("timestamp >= ?")
        params.append(parse_timestamp(since))
    if until is not None:
        clauses.append("timestamp < ?")
        params.append(parse_timestamp(until))
    return " AND ".join(clauses), params


@dataclass(eq=False)
class _Known:
    """A recorded decision, as the leader checks an outcome against it."""

    decision: str
    outcome: str | None = None


def _check_outcome(item: _Pending, known: _Known) -> None:
    """Turn an outcome that the decision does not allow into a ``refused`` entry: the attempt
    is kept in the chain, and the caller gets the reason as a :class:`RecordError`."""
    document = item.document
    status = document["status"]
    problem = None
    if item.refusal is not None:
        return   # refused before queueing (an unknown status)
    if known.outcome is not None:
        problem = f"the decision already has the outcome {known.outcome!r}"
    elif status in ("executed", "failed") and known.decision != "allow":
        problem = (f"the decision was {known.decision!r}: a tool that was not allowed "
                   "cannot have run")
    if problem is None:
        known.outcome = status
        return
    item.refusal = (f"refused outcome {status!r} for decision {document['decision_id']}: "
                    f"{problem}")
    document["status"], document["error"] = REFUSED, item.refusal


class SQLiteRecordStore:
    """A :class:`RecordStore` in one SQLite file, safe for many threads and processes.

    Args:
        path: the database file (conventionally ``<VETO_HOME>/records.sqlite3``); parent
            directories are created.
        synchronous: ``"normal"`` — durable against a killed process; ``"full"`` — also
            against power loss, at the cost of an fsync per group commit.
        busy_timeout: seconds to wait for another process's write lock before failing.
        create: create the database if it does not exist; with False a missing file is an
            error (the CLI's read commands).
        max_batch: most entries written in one group-commit transaction.

    Raises:
        RecordError: the database cannot be opened, created or written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "normal",
        busy_timeout: float = 10.0,
        create: bool = True,
        max_batch: int = 1024,
    ) -> None:
        if synchronous not in ("normal", "full", "extra"):
            raise ValueError(
                f"synchronous must be 'normal', 'full' or 'extra', found {synchronous!r}"
            )
        self.path = Path(path)
        self.synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._max_batch = max(1, max_batch)
        self._cond = threading.Condition(threading.Lock())  # batch done / leader free
        self._queue: list[_Pending] = []
        self._writing = False
        self._closed = False
        self._read_lock = threading.Lock()
        self._checkpoint_due = threading.Event()
        self._commits_since_checkpoint = 0
        self._restart_due = False
        # (sequence, record_hash) of the last entry this store wrote, while no failed write
        # has made it doubtful; leaders only (see _write_batch).
        self._head: tuple[int, str] | None = None
        self._trust_head_in = 0   # batches to go before remembering the head again
        if not create and not self.path.is_file():
            raise RecordError(f"no decision record store at {self.path}")
        try:
            ensure_home(self.path.parent)
            ensure_private_file(self.path)
        except OSError as exc:
            raise RecordError(f"cannot create {self.path}: {exc}") from exc
        self._writer = self._open_writer()
        try:
            self._reader = self._connect()
        except sqlite3.Error as exc:
            self._writer.close()
            raise RecordError(f"cannot open decision records {self.path}: {exc}") from exc
        self._checkpointer: threading.Thread | None = None

    # -- connections -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            prepare(conn, self.path, _SCHEMA, SCHEMA_VERSION, "record", RecordError,
                    migrations={1: _MIGRATE_FROM_1})
            # Checkpoints (copying the WAL into the database, with fsyncs) run on their own
            # thread, not inside some caller's append; see _checkpoint_loop.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
            # Writes wait for another process's write lock in _write_batch, in finer steps
            # than SQLite's own busy handler (veto_opa._sqlite).
            conn.execute("PRAGMA busy_timeout=0")
            return conn
        except (sqlite3.Error, RecordError) as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, RecordError):
                raise
            raise RecordError(f"cannot open decision records {self.path}: {exc}") from exc

    # -- writing -----------------------------------------------------------------------

    def append(self, record_fields: Mapping[str, Any]) -> DecisionRecord:
        """Record one decision; returns once it is committed.

        ``decision_id`` (a new UUID4) and ``timestamp`` (now) are filled in when absent; the
        store assigns ``sequence``, ``prev_hash`` and ``record_hash``.

        Args:
            record_fields: the :class:`DecisionRecord` fields, arguments already redacted.

        Returns:
            The record as stored.

        Raises:
            RecordError: the fields are invalid, the decision id is already recorded, or the
                database cannot be written (full disk, locked, closed store).
        """
        fields = dict(record_fields)
        supplied = [name for name in CHAIN_FIELDS if name in fields]
        if supplied:
            raise RecordError(f"{', '.join(supplied)} are assigned by the store, not the caller")
        if fields.get("decision_id") is None:
            fields["decision_id"] = new_decision_id()
        if fields.get("timestamp") is None:
            fields["timestamp"] = now_timestamp()
        record = self._submit(self._pending(DecisionRecord, fields))
        assert isinstance(record, DecisionRecord)
        return record

    def append_decision(self, record: GuardRecord) -> None:
        """Record one guard call; returns once committed.

        ``guard()``'s path: every field of a :class:`GuardRecord` was built from checked
        values, so its document is stored without validating it again; a value that is not
        JSON still fails here, as a :class:`RecordError`, and so does a decision id that is
        already recorded.
        """
        self._submit(_Pending(record.document(), None))

    def append_outcome(
        self, decision_id: str, status: str, error: str | None = None
    ) -> OutcomeRecord:
        """Record what happened after a decision, as its own chained entry.

        Args:
            decision_id: the decision this outcome belongs to.
            status: ``executed`` (the tool ran), ``failed`` (it ran and failed) or ``skipped``
                (it was not run).
            error: what went wrong, for a failure.

        Raises:
            RecordError: unknown decision id, or the write failed; or an outcome the decision
                does not allow — an unknown status, ``executed``/``failed`` after a deny or
                before an approval, a second outcome — which is recorded as a ``refused``
                entry naming the attempt before this is raised.
        """
        fields: dict[str, Any] = {"decision_id": decision_id, "status": status, "error": error,
                                  "timestamp": now_timestamp()}
        refusal = None
        if status not in OUTCOME_STATUSES:
            refusal = (f"refused outcome {status!r} for decision {decision_id}: unknown status; "
                       f"expected one of {', '.join(OUTCOME_STATUSES)}")
            fields.update(status=REFUSED, error=refusal)
        item = self._pending(OutcomeRecord, fields)
        item.refusal = refusal
        outcome = self._submit(item)
        assert isinstance(outcome, OutcomeRecord)
        return outcome

    def append_event(self, document: dict[str, Any]) -> tuple[int, str]:
        """Chain one approval event (an :class:`ApprovalRecord` document without its chain
        fields), validated; returns ``(sequence, record_hash)`` once it is committed.

        Raises:
            RecordError: the document is not a valid approval event, or the write failed.
        """
        if document.get("kind") != "approval":
            raise RecordError("append_event takes approval events (kind 'approval')")
        supplied = [name for name in CHAIN_FIELDS if name in document]
        if supplied:
            raise RecordError(f"{', '.join(supplied)} are assigned by the store, not the caller")
        item = self._pending(ApprovalRecord, dict(document))
        stored = self._submit(item)
        return stored.sequence, stored.record_hash   # type: ignore[union-attr]

    def approval_entries(
        self, decision_id: str | None = None
    ) -> list[tuple[dict[str, Any], str | None]]:
        """The approval events of the request made by ``decision_id`` (of every request when
        None), in chain order, each with the ``record_hash`` of the entry before it (None
        before the first entry), for checking that it is linked into the chain."""
        where, params = ("AND r.decision_id = ? ", (decision_id,)) if decision_id else ("", ())
        rows = self._read(
            "SELECT r.json, p.record_hash FROM records r LEFT JOIN records p "
            f"ON p.sequence = r.sequence - 1 WHERE r.kind = 'approval' {where}"
            "ORDER BY r.sequence",
            params,
        )
        return [(json.loads(text), previous) for text, previous in rows]

    @staticmethod
    def _pending(
        model: type[DecisionRecord] | type[OutcomeRecord] | type[ApprovalRecord],
        fields: dict[str, Any],
    ) -> _Pending:
        # Validate here, in the caller's thread, with placeholder chain fields; the leader
        # fills in the real ones.
        placeholder = {"sequence": 1, "prev_hash": GENESIS_HASH, "record_hash": GENESIS_HASH}
        try:
            record = model.model_validate({**fields, **placeholder})
            return _Pending(record.document(), record)
        except ValidationError as exc:
            kind = {DecisionRecord: "decision", OutcomeRecord: "outcome"}.get(model, "approval")
            raise RecordError(f"invalid {kind} record: {exc}") from exc

    def _submit(
        self, item: _Pending
    ) -> DecisionRecord | OutcomeRecord | ApprovalRecord | dict[str, Any]:
        cond = self._cond
        with cond:
            if self._closed:
                raise RecordError(f"the record store {self.path} is closed")
            self._queue.append(item)
        while True:
            with cond:
                while self._writing and not item.done:
                    cond.wait()
                if item.done:
                    break
                if self._closed:
                    for pending in self._queue:
                        pending.error = f"the record store {self.path} is closed"
                        pending.done = True
                    self._queue.clear()
                    cond.notify_all()
                    break
                self._writing = True
                batch = self._queue[: self._max_batch]
                del self._queue[: len(batch)]
            try:
                self._write_batch(batch)
            finally:
                restart = self._restart_due
                with cond:
                    for pending in batch:
                        if pending.result is None and pending.error is None:
                            pending.error = "the write was interrupted"
                        pending.done = True
                    self._writing = restart  # still ours while the WAL is reset
                    cond.notify_all()
                if restart:
                    try:
                        self._reset_wal()
                    finally:
                        with cond:
                            self._writing = False
                            cond.notify_all()
        if item.error is not None:
            raise RecordError(item.error) from item.cause
        if item.refusal is not None:
            raise RecordError(item.refusal)
        assert item.result is not None
        return item.result

    def _write_batch(self, batch: list[_Pending], checked: bool = False) -> None:
        # While another process holds the write lock, try again in short steps (see
        # veto_opa._sqlite) until busy_timeout.
        busy = None
        for _ in busy_waits(self._busy_timeout):
            busy = self._write_once(batch, checked)
            if busy is None:
                return
        message = f"cannot write decision records to {self.path}: {busy}"
        for item in batch:
            item.error = item.error or message
            item.cause = busy

    def _write_once(self, batch: list[_Pending], checked: bool) -> sqlite3.Error | None:
        """Write the batch in one transaction; None when done (each entry stored or failed),
        or the error when another connection held the write lock (nothing written)."""
        conn = self._writer
        written: list[_Pending] = []
        # With the head this store left last time, a batch of decisions skips reading it: if
        # another process appended meanwhile, inserting sequence + 1 fails on the primary key
        # (an IntegrityError, handled below by writing the batch again from the real head).
        remembered = self._head if not checked else None
        self._head = None
        lone = False
        try:
            if conn.in_transaction:  # left open by an interrupted leader
                conn.rollback()
            if remembered is not None and len(batch) == 1:
                lone = True   # one autocommitted INSERT is the whole transaction
                sequence, prev_hash = remembered
            else:
                conn.execute("BEGIN IMMEDIATE")
                if remembered is not None:
                    sequence, prev_hash = remembered
                else:
                    head = conn.execute(_HEAD).fetchone()
                    sequence, prev_hash = head if head is not None else (0, GENESIS_HASH)
            # Outcomes must name a recorded decision: one lookup for the whole batch, under the
            # write lock, so no other writer can change the answer meanwhile. A batch of
            # decisions only (the guard's case) skips it: their ids are new UUIDs, and the
            # unique index still refuses a duplicate (then the batch is retried with the
            # lookup, which fails that one record alone).
            if checked or any(item.document["kind"] == "outcome" for item in batch):
                known = self._known_decisions(conn,
                                              [item.document["decision_id"] for item in batch])
            else:
                known = {}
            rows = []
            for item in batch:
                document = item.document
                decision_id = document["decision_id"]
                if document["kind"] == "approval":
                    pass   # names its request's decision, which may be recorded after it
                elif document["kind"] == "outcome":
                    facts = known.get(decision_id)
                    if facts is None:
                        item.error = f"unknown decision_id {decision_id!r}"
                        continue
                    _check_outcome(item, facts)
                elif decision_id in known:
                    item.error = f"decision_id {decision_id!r} is already recorded"
                    continue
                else:
                    known[decision_id] = _Known(document["decision"])
                sequence += 1
                document["sequence"] = sequence
                document["prev_hash"] = prev_hash
                try:
                    text, prev_hash = seal(document)
                except (TypeError, ValueError) as exc:  # not JSON: only this entry fails
                    sequence -= 1
                    prev_hash = document["prev_hash"]
                    for name in CHAIN_FIELDS:
                        document.pop(name, None)
                    item.error = f"the record is not JSON: {exc}"
                    continue
                rows.append((sequence, *[document.get(c) for c in _MIRRORED], text))
                written.append(item)
            if len(rows) == 1:   # a lone caller's batch (cheaper than executemany)
                conn.execute(_INSERT, rows[0])
            else:
                conn.executemany(_INSERT, rows)
            if not lone:
                conn.execute("COMMIT")
        except Exception as exc:  # sqlite3.Error above all; anything else must not escape either
            if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
                self._undo(batch)
                self._trust_head_in = _STALE_HEAD_PAUSE   # another process is writing
                return exc
            if isinstance(exc, sqlite3.IntegrityError) and not checked:
                self._undo(batch)
                # A remembered head may be stale (another process appended): read it under the
                # lock, and for the next batches too, as that process is likely to append again.
                # Otherwise a decision id is already recorded: write with the lookup.
                if remembered is not None:
                    self._trust_head_in = _STALE_HEAD_PAUSE
                self._write_batch(batch, checked=remembered is None)
                return None
            try:
                if conn.in_transaction:
                    conn.rollback()
            except sqlite3.Error:
                pass
            message = f"cannot write decision records to {self.path}: {exc}"
            for item in batch:
                item.error = item.error or message
                item.cause = exc
            return None
        for item in written:
            if item.record is None:
                item.result = item.document
                continue
            # Equal to what was stored (for the JSON values a record holds).
            chain = {name: item.document[name] for name in CHAIN_FIELDS}
            item.result = item.record.model_copy(update=chain)
        if self._trust_head_in > 0:
            self._trust_head_in -= 1
        elif written:
            self._head = (sequence, prev_hash)
        elif remembered is not None:
            self._head = remembered
        self._commits_since_checkpoint += 1
        if self._commits_since_checkpoint >= _CHECKPOINT_EVERY:
            self._commits_since_checkpoint = 0
            self._request_checkpoint()
        return None

    def _undo(self, batch: list[_Pending]) -> None:
        """Roll back the writer's transaction and clear what the attempt set on the batch."""
        with suppress(sqlite3.Error):
            if self._writer.in_transaction:
                self._writer.rollback()
        for item in batch:
            for name in CHAIN_FIELDS:
                item.document.pop(name, None)
            item.error = None

    def _request_checkpoint(self) -> None:
        # Leaders only (one at a time). The thread starts on first need and ends when idle,
        # so a store that is seldom written, or never closed, holds no thread.
        self._checkpoint_due.set()
        if self._checkpointer is None or not self._checkpointer.is_alive():
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop,
                name=f"veto-records-checkpoint:{self.path.name}",
                daemon=True,
            )
            self._checkpointer.start()

    @staticmethod
    def _known_decisions(conn: sqlite3.Connection, decision_ids: list[str]) -> dict[str, _Known]:
        """The recorded decisions among ``decision_ids``, with the outcome each already has."""
        known: dict[str, _Known] = {}
        unique = list(dict.fromkeys(decision_ids))
        for start in range(0, len(unique), 500):  # stay far below SQLite's variable limit
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for decision_id, decision in conn.execute(
                    f"SELECT decision_id, decision FROM records WHERE kind = 'decision' "
                    f"AND decision_id IN ({marks})", chunk):
                known[decision_id] = _Known(decision)
            for decision_id, text in conn.execute(
                    f"SELECT decision_id, json FROM records WHERE kind = 'outcome' "
                    f"AND decision_id IN ({marks}) ORDER BY sequence", chunk):
                status = json.loads(text).get("status")
                if decision_id in known and status != REFUSED:
                    known[decision_id].outcome = status
        return known

    def _checkpoint_loop(self) -> None:
        # WAL checkpoints copy committed pages into the database file and fsync both files
        # (also under synchronous=NORMAL). Done inside an append, as SQLite's auto-checkpoint
        # does, they cost every few hundredth caller milliseconds; here a PASSIVE checkpoint,
        # which never blocks writers or readers, runs on this thread every _CHECKPOINT_EVERY
        # commits. A failed checkpoint is simply retried later: the WAL keeps the data.
        #
        # A checkpoint running beside a busy writer never catches up with the last frames, and
        # SQLite only rewinds the WAL when a write starts with every frame copied back. So once
        # the WAL holds _RESET_FRAMES frames, the next leader finishes the job itself between
        # two batches (_reset_wal), which keeps the file bounded.
        conn: sqlite3.Connection | None = None
        try:
            while self._checkpoint_due.wait(_CHECKPOINTER_IDLE):
                self._checkpoint_due.clear()
                if self._closed:
                    return
                try:
                    if conn is None:
                        conn = self._connect()
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    continue
                if row is not None and row[1] >= _RESET_FRAMES:
                    self._restart_due = True
        finally:
            if conn is not None:
                conn.close()

    def _reset_wal(self) -> None:
        # The leader, between batches: no write of this process runs, so this checkpoint
        # copies the WAL to its end and the next transaction starts it over.
        self._restart_due = False
        with suppress(sqlite3.Error):
            self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    # -- reading -----------------------------------------------------------------------

    def _read(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            if self._closed:
                raise RecordError(f"the record store {self.path} is closed")
            try:
                return self._reader.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise RecordError(f"cannot read decision records {self.path}: {exc}") from exc

    @staticmethod
    def _decisions(rows: list[tuple[Any, ...]]) -> list[DecisionRecord]:
        return [DecisionRecord.model_validate(json.loads(text)) for (text,) in rows]

    def query(
        self,
        *,
        decision: str | None = None,
        tool: str | None = None,
        rule: str | None = None,
        since: TimeBound = None,
        until: TimeBound = None,
        limit: int | None = 100,
    ) -> list[DecisionRecord]:
        """Decision records matching every given filter, newest (highest sequence) first.

        Args:
            decision, tool, rule: exact matches.
            since: earliest timestamp, inclusive (datetime or ISO 8601 text; naive means UTC).
            until: latest timestamp, exclusive.
            limit: most records returned; None for all.

        Raises:
            ValueError: ``since`` or ``until`` is not a date-time.
            RecordError: the database cannot be read.
        """
        where, params = _filters(decision, tool, rule, since, until)
        sql = f"SELECT json FROM records WHERE {where} ORDER BY sequence DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        return self._decisions(self._read(sql, params))

    def get(self, decision_id: str) -> DecisionRecord | None:
        """The decision record with this id, or None. Its outcomes: :meth:`outcomes`."""
        rows = self._read(
            "SELECT json FROM records WHERE kind = 'decision' AND decision_id = ?", (decision_id,)
        )
        return self._decisions(rows)[0] if rows else None

    def decision_ids_starting_with(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Decision ids that begin with ``prefix`` (lowercase hex digits and hyphens), oldest
        first, at most ``limit``; none for a prefix that no id can begin with."""
        if not prefix or any(c not in "0123456789abcdef-" for c in prefix):
            return []
        rows = self._read(
            "SELECT decision_id FROM records WHERE kind = 'decision' AND decision_id >= ? "
            "AND decision_id < ? ORDER BY decision_id LIMIT ?",
            (prefix, prefix + "\uffff", max(0, limit)))
        return [decision_id for (decision_id,) in rows]

    def outcomes(self, decision_id: str) -> list[OutcomeRecord]:
        """The outcomes recorded for a decision, oldest first."""
        rows = self._read(
            "SELECT json FROM records WHERE kind = 'outcome' AND decision_id = ? ORDER BY sequence",
            (decision_id,),
        )
        return [OutcomeRecord.model_validate(json.loads(text)) for (text,) in rows]

    def count(self) -> int:
        """How many entries (decisions and outcomes) the chain holds."""
        return int(self._read("SELECT COUNT(*) FROM records")[0][0])

    def _scan(
        self, sql: str, params: list[Any] | tuple[Any, ...] = ()
    ) -> Generator[tuple[Any, ...], None, None]:
        # Long reads (export, verify) use their own connection: one consistent snapshot, and
        # query() is not held up meanwhile.
        if self._closed:
            raise RecordError(f"the record store {self.path} is closed")
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise RecordError(f"cannot read decision records {self.path}: {exc}") from exc
        try:
            yield from conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise RecordError(f"cannot read decision records {self.path}: {exc}") from exc
        finally:
            conn.close()

    def export(
        self,
        path: str | os.PathLike[str],
        format: Literal["jsonl", "csv"] = "jsonl",
        *,
        decision: str | None = None,
        tool: str | None = None,
        rule: str | None = None,
        since: TimeBound = None,
        until: TimeBound = None,
    ) -> int:
        """Write matching decisions and their outcomes, in sequence order, atomically.

        Args:
            path: the file to write; ``jsonl`` also writes ``<path>.sha256``.
            format: ``"jsonl"`` (verifiable, see :func:`verify_export`) or ``"csv"``.
            decision, tool, rule, since, until: the filters of :meth:`query`; the outcomes
                of the selected decisions come along.

        Returns:
            The number of entries written (decisions plus outcomes).

        Raises:
            RecordError: the database cannot be read or the file cannot be written.
        """
        if format not in ("jsonl", "csv"):
            raise ValueError(f"format must be 'jsonl' or 'csv', found {format!r}")
        where, params = _filters(decision, tool, rule, since, until)
        if params:
            sql = (
                f"SELECT json FROM records WHERE ({where}) OR (kind = 'outcome' AND decision_id "
                f"IN (SELECT decision_id FROM records WHERE {where})) ORDER BY sequence"
            )
            params = params + params
        else:
            sql = "SELECT json FROM records ORDER BY sequence"
        with closing(self._scan(sql, params)) as rows:
            texts = (text for (text,) in rows)
            try:
                if format == "jsonl":
                    return export_files.write_jsonl(path, texts)
                return export_files.write_csv(path, (json.loads(text) for text in texts))
            except OSError as exc:
                raise RecordError(f"cannot write the export {path}: {exc}") from exc

    def verify(self, *, anchors: Mapping[int, str] | None = None) -> VerifyResult:
        """Recompute the whole chain in sequence order.

        Checks each entry's hash against its content, each ``prev_hash`` against the entry
        before, that sequences run from 1 without gaps, and that the indexed columns agree
        with the stored document — so an edit to any column, a deleted, inserted or moved row
        is reported with its sequence.

        Args:
            anchors: ``{sequence: record_hash}``, heads of earlier verifications kept
                elsewhere (see :class:`~veto_opa.records.model.ChainChecker`): they also
                catch a chain rewritten with new hashes, or cut short, before them.

        Raises:
            RecordError: the database cannot be read.
        """
        checker = ChainChecker(anchors=anchors)
        columns = ", ".join(("sequence", *_MIRRORED, "json"))
        with closing(self._scan(f"SELECT {columns} FROM records ORDER BY sequence")) as rows:
            for row in rows:
                sequence, text = row[0], row[-1]
                try:
                    document = json.loads(text)
                except (TypeError, ValueError) as exc:
                    checker.fail(sequence, f"stored JSON is not valid: {exc}")
                    break
                mirrored = dict(zip(_MIRRORED, row[1:-1], strict=True))
                if not checker.feed(document, expected_sequence=sequence, columns=mirrored):
                    break
        return checker.result()

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Finish the write in progress, fail the appends still waiting, close the files."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            while self._writing:
                self._cond.wait()
            self._cond.notify_all()
        self._checkpoint_due.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        with suppress(sqlite3.Error):  # SQLite checkpoints again when the connection closes
            self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._writer.close()
        with self._read_lock:
            self._reader.close()

    def __enter__(self) -> SQLiteRecordStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteRecordStore({str(self.path)!r}, synchronous={self.synchronous!r})"
