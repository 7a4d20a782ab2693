"""Approvals: the human decision that a ``require_approval`` tool call may run, once.

Usage::

    store = SQLiteApprovalStore(Path(".veto") / "approvals.sqlite3", ttl=3600)
    pending = store.request(tool="execute_sql", arguments_sha256=digest, subject="user:alice",
                            approvers=["dba"], rule="prod_writes", reason="...",
                            decision_id=decision.decision_id)          # Veto.guard()
    store.approve(pending.approval_id, approver="bob", groups=["dba"],
                  justification="ticket OPS-1234")                    # a human, via the CLI
    grant = store.consume(tool="execute_sql", arguments_sha256=digest, subject="user:alice",
                          decision_id=retry.decision_id)              # Veto.guard(), later
    assert grant is not None and grant.status == "used"

**Life cycle.** ``pending`` → ``approved`` → ``used``, or ``pending`` → ``rejected``, or
``pending`` → ``expired`` when nobody decided before ``expires_at``. An approval is bound to
the key (tool, ``arguments_sha256``, subject) and lets exactly that call through once, before
``expires_at``; an approved grant that is never used keeps status ``approved`` (and its
verdict) but can no longer be consumed once ``expires_at`` has passed. Every transition keeps
what came before: an approval's row shows who asked (``requested_by_decision``, whose decision
record holds the arguments and context the approver is shown), who decided, under which of
their groups, when and why, and which decision used it — the human-oversight record that EU AI
Act Art. 14 reviewers look for. ``expired`` means nobody decided: ``decided_by`` stays None and
``expires_at`` is when it ran out.

**Atomicity.** Every method is one ``BEGIN IMMEDIATE`` transaction, which takes SQLite's write
lock before reading, so ``consume`` from any number of threads and processes hands an approval
to exactly one caller, ``request`` never creates two pending approvals for one key (and set of
approver groups), and a decision cannot race a use.

**Durability.** WAL journal with ``synchronous=FULL``: every method returns after its
transaction is committed and fsynced. ``FULL`` rather than the record store's default
``NORMAL`` because a used approval rolled back by a power loss would become usable a second
time; approvals are few, so the fsync per commit costs nothing that matters.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, get_args

from veto_opa._paths import ensure_home, ensure_private_file
from veto_opa._sqlite import begin_immediate, prepare
from veto_opa.errors import ApprovalError, ApprovalExpired
from veto_opa.records.model import HASH_PATTERN, format_timestamp
from veto_opa.records.store import default_home

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

STORE_FILE = "approvals.sqlite3"
SCHEMA_VERSION = 1

Status = Literal["pending", "approved", "rejected", "expired", "used"]
STATUSES: tuple[Status, ...] = get_args(Status)

_SCHEMA = """
CREATE TABLE approvals (
    seq                   INTEGER PRIMARY KEY,
    approval_id           TEXT NOT NULL UNIQUE,
    status                TEXT NOT NULL
                          CHECK (status IN ('pending', 'approved', 'rejected', 'expired', 'used')),
    tool                  TEXT NOT NULL,
    arguments_sha256      TEXT NOT NULL,
    subject               TEXT,
    approvers             TEXT NOT NULL,
    rule                  TEXT,
    reason                TEXT NOT NULL,
    requested_by_decision TEXT NOT NULL,
    requested_at          TEXT NOT NULL,
    expires_at            TEXT NOT NULL,
    decided_by            TEXT,
    decided_groups        TEXT NOT NULL DEFAULT '[]',
    decided_at            TEXT,
    justification         TEXT,
    used_by_decision      TEXT,
    used_at               TEXT,
    policy_revision       TEXT
);
CREATE INDEX approvals_by_key ON approvals (tool, arguments_sha256, subject, status, seq);
CREATE INDEX approvals_pending ON approvals (expires_at) WHERE status = 'pending';
CREATE INDEX approvals_by_status ON approvals (status, seq)
"""

# Columns in the order of the Approval fields; approvers and decided_groups hold JSON arrays.
_FIELDS = (
    "approval_id",
    "status",
    "tool",
    "arguments_sha256",
    "subject",
    "approvers",
    "rule",
    "reason",
    "requested_by_decision",
    "requested_at",
    "expires_at",
    "decided_by",
    "decided_groups",
    "decided_at",
    "justification",
    "used_by_decision",
    "used_at",
    "policy_revision",
)
_SELECT = f"SELECT {', '.join(_FIELDS)} FROM approvals"
_INSERT = f"INSERT INTO approvals ({', '.join(_FIELDS)}) VALUES ({', '.join('?' * len(_FIELDS))})"
# "subject IS ?" rather than "=": an unknown subject (NULL) is a key like any other.
_KEY = "tool = ? AND arguments_sha256 = ? AND subject IS ?"


def store_path(home: str | os.PathLike[str] | None = None) -> Path:
    """The approval database under a veto home: ``<home>/approvals.sqlite3``."""
    return Path(home if home is not None else default_home()) / STORE_FILE


@dataclass(frozen=True)
class Approval:
    """One approval request and everything that happened to it. Immutable; the store returns
    a new value after each transition.

    Attributes:
        approval_id: a UUID4.
        status: ``pending``, ``approved``, ``rejected``, ``expired`` or ``used``.
        tool, arguments_sha256, subject: the call it is bound to (``subject`` is
            ``context.subject`` or ``context.user``, None when unknown).
        approvers: groups that may decide; empty means any approver.
        rule, reason: the policy rule that asked for approval and its message.
        requested_by_decision: the decision record of the guard call that asked.
        requested_at, expires_at: RFC 3339 UTC timestamps with microseconds and ``Z``.
        decided_by: the approver's name (approved or rejected), else None.
        decided_groups: the approver's groups that qualified them (all the groups they gave
            when ``approvers`` is empty).
        decided_at, justification: when, and the approver's free-text reason.
        used_by_decision, used_at: the guard call that the approval let through, and when.
        policy_revision: the bundle revision that asked for approval, when the caller gave it.
    """

    approval_id: str
    status: Status
    tool: str
    arguments_sha256: str
    subject: str | None
    approvers: tuple[str, ...]
    rule: str | None
    reason: str
    requested_by_decision: str
    requested_at: str
    expires_at: str
    decided_by: str | None = None
    decided_groups: tuple[str, ...] = ()
    decided_at: str | None = None
    justification: str | None = None
    used_by_decision: str | None = None
    used_at: str | None = None
    policy_revision: str | None = None

    def document(self) -> dict[str, Any]:
        """The approval as a JSON object (groups as lists), for ``--json`` and exports."""
        document = asdict(self)
        document["approvers"] = list(self.approvers)
        document["decided_groups"] = list(self.decided_groups)
        return document


class ApprovalStore(Protocol):
    """Where approvals live; :class:`SQLiteApprovalStore` is the implementation."""

    def request(
        self,
        *,
        tool: str,
        arguments_sha256: str,
        subject: str | None,
        approvers: Sequence[str],
        rule: str | None,
        reason: str,
        decision_id: str,
        policy_revision: str | None = None,
    ) -> Approval: ...

    def consume(
        self, *, tool: str, arguments_sha256: str, subject: str | None, decision_id: str
    ) -> Approval | None: ...

    def approve(
        self,
        approval_id: str,
        *,
        approver: str,
        groups: Sequence[str],
        justification: str | None = None,
    ) -> Approval: ...

    def reject(
        self,
        approval_id: str,
        *,
        approver: str,
        groups: Sequence[str],
        justification: str | None = None,
    ) -> Approval: ...

    def get(self, approval_id: str) -> Approval | None: ...

    def list(self, *, status: str | None = None, limit: int = 100) -> list[Approval]: ...

    def close(self) -> None: ...


def _names(values: Sequence[str], what: str) -> tuple[str, ...]:
    # A bare string is a sequence too; "dba" must not become the groups d, b, a.
    if isinstance(values, str):
        raise TypeError(f"{what} must be a sequence of group names, not the string {values!r}")
    names = tuple(dict.fromkeys(values))
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{what} must be non-empty strings, found {name!r}")
    return names


def _approval(row: tuple[Any, ...]) -> Approval:
    fields = dict(zip(_FIELDS, row, strict=True))
    fields["approvers"] = tuple(json.loads(fields["approvers"]))
    fields["decided_groups"] = tuple(json.loads(fields["decided_groups"]))
    return Approval(**fields)


def _row(approval: Approval) -> tuple[Any, ...]:
    document = approval.document()
    document["approvers"] = json.dumps(document["approvers"], ensure_ascii=False)
    document["decided_groups"] = json.dumps(document["decided_groups"], ensure_ascii=False)
    return tuple(document[name] for name in _FIELDS)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SQLiteApprovalStore:
    """An :class:`ApprovalStore` in one SQLite file, safe for many threads and processes.

    Args:
        path: the database file (conventionally ``<VETO_HOME>/approvals.sqlite3``); parent
            directories are created.
        ttl: seconds from request to expiry (``VETO_APPROVAL_TTL``).
        clock: returns the current time (an aware datetime; naive means UTC). Tests inject
            one to move past expiry.
        busy_timeout: seconds to wait for another process's write lock before failing.
        create: create the database if it does not exist; with False a missing file is an
            error (the CLI, where a mistyped home must not look like "no approvals").

    Raises:
        ValueError: ``ttl`` is not a positive number of seconds.
        ApprovalError: the database cannot be opened or created.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        ttl: float = 3600.0,
        clock: Callable[[], datetime] | None = None,
        busy_timeout: float = 10.0,
        create: bool = True,
    ) -> None:
        if not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, found {ttl!r}")
        self.path = Path(path)
        self.ttl = float(ttl)
        self._clock = clock or _utc_now
        self._lock = threading.Lock()
        self._closed = False
        if not create and not self.path.is_file():
            raise ApprovalError(f"no approval store at {self.path}")
        try:
            ensure_home(self.path.parent)
            ensure_private_file(self.path)
        except OSError as exc:
            raise ApprovalError(f"cannot create {self.path}: {exc}") from exc
        self._busy_timeout = busy_timeout
        self._conn = self._open(busy_timeout)

    def _open(self, busy_timeout: float) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            prepare(conn, self.path, _SCHEMA, SCHEMA_VERSION, "approval", ApprovalError)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=0")   # _transaction waits, in finer steps
            return conn
        except (sqlite3.Error, ApprovalError) as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, ApprovalError):
                raise
            raise ApprovalError(f"cannot open the approval store {self.path}: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # One connection per store, one transaction at a time within the process; BEGIN
        # IMMEDIATE takes the database's write lock (waiting for other processes) before the
        # first read, so what is read cannot change before the transaction commits.
        with self._lock:
            if self._closed:
                raise ApprovalError(f"the approval store {self.path} is closed")
            conn = self._conn
            try:
                begin_immediate(conn, self._busy_timeout)
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                try:
                    if conn.in_transaction:
                        conn.rollback()
                except sqlite3.Error:
                    pass
                if isinstance(exc, sqlite3.Error):
                    raise ApprovalError(f"approval store {self.path} failed: {exc}") from exc
                raise

    def _now(self) -> str:
        return format_timestamp(self._clock())

    @staticmethod
    def _expire(
        conn: sqlite3.Connection, now: str, where: str = "", params: tuple[Any, ...] = ()
    ) -> None:
        conn.execute(
            "UPDATE approvals SET status = 'expired' "
            f"WHERE status = 'pending' AND expires_at <= ?{where}",
            (now, *params),
        )

    @staticmethod
    def _fetch(conn: sqlite3.Connection, approval_id: str) -> Approval | None:
        row = conn.execute(f"{_SELECT} WHERE approval_id = ?", (approval_id,)).fetchone()
        return _approval(row) if row is not None else None

    # -- the guard's side --------------------------------------------------------------

    def request(
        self,
        *,
        tool: str,
        arguments_sha256: str,
        subject: str | None,
        approvers: Sequence[str],
        rule: str | None,
        reason: str,
        decision_id: str,
        policy_revision: str | None = None,
    ) -> Approval:
        """The pending approval for this call: the existing one, or a new one.

        A model that retries a call must not pile up requests: while an unexpired pending
        approval exists for the same (tool, arguments_sha256, subject) and the same approver
        groups, it is returned unchanged (its ``requested_by_decision`` stays the first
        caller's). Different approver groups — the policy changed meanwhile — get a new one,
        so that an old request cannot be decided under groups the policy no longer names.

        Args:
            tool: the tool name.
            arguments_sha256: ``"sha256:<hex>"`` of the canonical arguments.
            subject: who the call is for, or None when unknown.
            approvers: groups that may approve; empty means any approver.
            rule, reason: the deciding rule and its message, shown to the approver.
            decision_id: the guard call asking.
            policy_revision: the bundle revision that decided, shown to the approver.

        Returns:
            A pending approval expiring ``ttl`` seconds after it was first requested.

        Raises:
            ValueError: ``arguments_sha256`` is not ``sha256:`` and 64 hex digits, or a group
                name is empty.
            ApprovalError: the database cannot be written.
        """
        if not re.match(HASH_PATTERN, arguments_sha256):
            raise ValueError(
                f"arguments_sha256 must be 'sha256:' and 64 hex digits, found {arguments_sha256!r}"
            )
        groups = tuple(sorted(_names(approvers, "approvers")))
        moment = self._clock()
        now = format_timestamp(moment)
        key = (tool, arguments_sha256, subject)
        with self._transaction() as conn:
            self._expire(conn, now, f" AND {_KEY}", key)
            row = conn.execute(
                f"{_SELECT} WHERE {_KEY} AND status = 'pending' AND approvers = ? "
                "ORDER BY seq LIMIT 1",
                (*key, json.dumps(groups, ensure_ascii=False)),
            ).fetchone()
            if row is not None:
                return _approval(row)
            approval = Approval(
                approval_id=str(uuid.uuid4()),
                status="pending",
                tool=tool,
                arguments_sha256=arguments_sha256,
                subject=subject,
                approvers=groups,
                rule=rule,
                reason=reason,
                requested_by_decision=decision_id,
                requested_at=now,
                expires_at=format_timestamp(moment + timedelta(seconds=self.ttl)),
                policy_revision=policy_revision,
            )
            conn.execute(_INSERT, _row(approval))
        return approval

    def consume(
        self, *, tool: str, arguments_sha256: str, subject: str | None, decision_id: str
    ) -> Approval | None:
        """Use the oldest approved, unexpired, unused approval for exactly this call.

        Atomic across threads and processes: of any number of concurrent callers for one
        approval, exactly one gets it.

        Args:
            tool, arguments_sha256, subject: the call, as in :meth:`request`.
            decision_id: the guard call that the approval lets through.

        Returns:
            The approval, now ``used`` by ``decision_id``; None when there is none.

        Raises:
            ApprovalError: the database cannot be written.
        """
        now = self._now()
        with self._transaction() as conn:
            rows = conn.execute(
                "UPDATE approvals SET status = 'used', used_by_decision = ?, used_at = ? "
                "WHERE seq = (SELECT seq FROM approvals "
                f"WHERE {_KEY} AND status = 'approved' AND used_at IS NULL AND expires_at > ? "
                f"ORDER BY seq LIMIT 1) RETURNING {', '.join(_FIELDS)}",
                (decision_id, now, tool, arguments_sha256, subject, now),
            ).fetchall()  # all rows read before COMMIT, which refuses a statement in progress
        return _approval(rows[0]) if rows else None

    # -- the approver's side -----------------------------------------------------------

    def approve(
        self,
        approval_id: str,
        *,
        approver: str,
        groups: Sequence[str],
        justification: str | None = None,
    ) -> Approval:
        """Grant a pending approval: the call it is bound to may run once.

        Args:
            approval_id: the approval.
            approver: who decides (recorded as ``decided_by``).
            groups: the approver's groups; one must be among the approval's ``approvers``
                unless that is empty.
            justification: why, in the approver's words.

        Returns:
            The approval, now ``approved``.

        Raises:
            ApprovalExpired: its time ran out (it is marked ``expired``).
            ApprovalError: no such approval, it is not pending, or the approver is in none of
                its groups; or the database cannot be written.
        """
        return self._decide(approval_id, "approved", approver, groups, justification)

    def reject(
        self,
        approval_id: str,
        *,
        approver: str,
        groups: Sequence[str],
        justification: str | None = None,
    ) -> Approval:
        """Refuse a pending approval; the call stays blocked. Arguments and errors as
        :meth:`approve`.

        Returns:
            The approval, now ``rejected``.
        """
        return self._decide(approval_id, "rejected", approver, groups, justification)

    def _decide(
        self,
        approval_id: str,
        verdict: Literal["approved", "rejected"],
        approver: str,
        groups: Sequence[str],
        justification: str | None,
    ) -> Approval:
        verb = "approve" if verdict == "approved" else "reject"
        if not isinstance(approver, str) or not approver.strip():
            raise ApprovalError(f"cannot {verb} {approval_id}: the approver's name is empty")
        given = _names(groups, "groups")
        now = self._now()
        with self._transaction() as conn:
            approval = self._fetch(conn, approval_id)
            if approval is None:
                raise ApprovalError(f"no approval {approval_id!r}")
            if approval.status == "pending" and approval.expires_at <= now:
                self._expire(conn, now, " AND approval_id = ?", (approval_id,))
                decided = replace(approval, status="expired")
            else:
                self._check_decidable(approval, verb, approver, given)
                qualifying = (
                    tuple(g for g in given if g in approval.approvers)
                    if approval.approvers
                    else given
                )
                decided = replace(
                    approval,
                    status=verdict,
                    decided_by=approver,
                    decided_groups=qualifying,
                    decided_at=now,
                    justification=justification,
                )
                conn.execute(
                    "UPDATE approvals SET status = ?, decided_by = ?, decided_groups = ?, "
                    "decided_at = ?, justification = ? WHERE approval_id = ? "
                    "AND status = 'pending'",
                    (
                        verdict,
                        approver,
                        json.dumps(qualifying, ensure_ascii=False),
                        now,
                        justification,
                        approval_id,
                    ),
                )
        if decided.status == "expired":  # raised after the commit, so that the expiry is kept
            raise ApprovalExpired(
                f"cannot {verb} {approval_id}: it expired at {decided.expires_at}"
            )
        return decided

    @staticmethod
    def _check_decidable(
        approval: Approval, verb: str, approver: str, groups: tuple[str, ...]
    ) -> None:
        if approval.status != "pending":
            by = (
                f" (by {approval.decided_by} at {approval.decided_at})"
                if approval.decided_by
                else ""
            )
            error = ApprovalExpired if approval.status == "expired" else ApprovalError
            raise error(
                f"cannot {verb} {approval.approval_id}: it is {approval.status}{by}, not pending"
            )
        if approval.approvers and not set(groups) & set(approval.approvers):
            raise ApprovalError(
                f"{approver} is not in any approver group of {approval.approval_id}: "
                f"{', '.join(approval.approvers)}"
            )

    # -- reading -----------------------------------------------------------------------

    def get(self, approval_id: str) -> Approval | None:
        """The approval with this id, or None; a pending one past its expiry is first marked
        ``expired``.

        Raises:
            ApprovalError: the database cannot be read or written.
        """
        now = self._now()
        with self._transaction() as conn:
            self._expire(conn, now, " AND approval_id = ?", (approval_id,))
            return self._fetch(conn, approval_id)

    def list(self, *, status: str | None = None, limit: int = 100) -> list[Approval]:
        """Approvals, newest first; pending ones past their expiry are first marked
        ``expired``.

        Args:
            status: only approvals with this status.
            limit: most approvals returned.

        Raises:
            ValueError: ``status`` is not one of :data:`STATUSES`.
            ApprovalError: the database cannot be read or written.
        """
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, found {status!r}")
        where, params = ("WHERE status = ? ", (status,)) if status is not None else ("", ())
        now = self._now()
        with self._transaction() as conn:
            self._expire(conn, now)
            rows = conn.execute(
                f"{_SELECT} {where}ORDER BY seq DESC LIMIT ?", (*params, max(0, int(limit)))
            ).fetchall()
        return [_approval(row) for row in rows]

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the database; later calls raise :class:`ApprovalError`. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteApprovalStore({str(self.path)!r}, ttl={self.ttl!r})"
