"""Where approvals live: a SQLite index of their state, and their events in the record chain.

Usage (the guard side, :class:`~veto_opa.approvals.service.ApprovalService`, and the
approver side, :class:`~veto_opa.approvals.approver.Approver`, each open one)::

    store = SQLiteApprovalStore(home / "approvals.sqlite3", records)
    settled = store.settle(request, decision_id=..., rule=..., reason=..., registry=registry)
    store.vote(approval_id, signer=signer, verdict="approved", justification="OPS-1234",
               registry=registry)

**Life cycle.** ``pending → approved → used``, ``pending → rejected``, ``pending → expired``
(nobody decided within ``ttl``), ``approved → expired`` (not used within ``grant_ttl`` of the
approval, or superseded when the policy changed). A rejected call stays denied for
``rejection_ttl``. With ``approvals: 2`` or several asking rules a request stays pending
until every rule has its count of distinct approvers from its own groups.

**The chain is the truth.** Every event (requested, approved, rejected, expired, used) is
first appended to the record chain (``SQLiteRecordStore.append_event``), then the row here is
updated in the same transaction of this database. A grant is honoured only if its chain
entries verify: each entry's hash and its link to the entry before it, the ``requested``
entry whose request digest is the approval's binding, no ``used``/``rejected``/``expired``
entry, and enough votes whose Ed25519 signatures verify against the approvers registry now.
A row flipped to ``approved`` or inserted by hand lets nothing through, and
:meth:`audit` (``veto-opa decisions verify``) reports it.

**Atomicity.** Every method is one ``BEGIN IMMEDIATE`` transaction of this database, so of
any number of threads and processes settling the same call, one uses a grant; a request is
never created twice for one binding. WAL with ``synchronous=FULL``: a used grant does not
come back after a power loss (the chain's ``used`` entry would refuse it anyway).
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from veto_opa._paths import APPROVALS_FILE, ensure_home, ensure_private_file
from veto_opa._sqlite import begin_immediate, prepare
from veto_opa.approvals.model import (
    STATUSES,
    Approval,
    Request,
    Status,
    Verdict,
    Vote,
    missing_approvals,
)
from veto_opa.errors import ApprovalError, ApprovalExpired, RecordError
from veto_opa.records.model import GENESIS_HASH, format_timestamp, record_hash

if TYPE_CHECKING:
    import os

    from veto_opa.approvals.registry import Registry, Signer
    from veto_opa.records.store import SQLiteRecordStore

log = logging.getLogger("veto_opa.approvals")

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE approvals (
    seq          INTEGER PRIMARY KEY,
    approval_id  TEXT NOT NULL UNIQUE,
    status       TEXT NOT NULL
                 CHECK (status IN ('pending', 'approved', 'rejected', 'expired', 'used')),
    binding      TEXT NOT NULL,
    call         TEXT NOT NULL,
    tool         TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    document     TEXT NOT NULL
);
CREATE INDEX approvals_binding ON approvals (binding, status, seq);
CREATE INDEX approvals_call ON approvals (call, status);
CREATE INDEX approvals_status ON approvals (status, seq)
"""
# Version 1 approvals were bound to (tool, arguments, subject) only and are not in the
# chain: they are kept aside, in approvals_v1, and honour nothing.
_MIGRATE_FROM_1 = """
ALTER TABLE approvals RENAME TO approvals_v1;
DROP INDEX IF EXISTS approvals_by_key;
DROP INDEX IF EXISTS approvals_pending;
DROP INDEX IF EXISTS approvals_by_status;
""" + _SCHEMA

_SELECT = "SELECT status, expires_at, binding, document FROM approvals"
_ENDED = ("used", "rejected", "expired")
GRANT_EXPIRED = "the grant expired"


def store_path(home: str | os.PathLike[str]) -> Path:
    """The approval database under a veto home: ``<home>/approvals.sqlite3``."""
    return Path(home) / APPROVALS_FILE


@dataclass(frozen=True)
class Settlement:
    """What the store made of a call that needs approval.

    Attributes:
        outcome: ``granted`` (a grant was used: the call may run), ``rejected`` (a
            rejection still holds), or ``pending`` (waiting for approvers).
        approval: the approval concerned.
        problems: grants that were found but do not verify, one sentence each.
    """

    outcome: Literal["granted", "rejected", "pending"]
    approval: Approval
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditResult:
    """The approvals checked against the record chain (``veto-opa decisions verify``)."""

    ok: bool
    checked: int
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _seconds(value: float, name: str) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, found {value!r}")
    return float(value)


class SQLiteApprovalStore:
    """Approvals in one SQLite file, their events in a record chain; safe for many threads
    and processes.

    Args:
        path: the database (``<VETO_HOME>/approvals.sqlite3``).
        records: the record store whose chain holds the approval events.
        ttl: seconds a request stays pending (``VETO_APPROVAL_TTL``).
        grant_ttl: seconds an approved grant stays usable, from the approval
            (``VETO_APPROVAL_GRANT_TTL``).
        rejection_ttl: seconds a rejected call stays denied (``VETO_REJECTION_TTL``).
        clock: the current time (tests move it).
        busy_timeout: seconds to wait for another process's write lock.
        create: create the database when missing (False: the CLI, where a mistyped home
            must not look like "no approvals").

    Raises:
        ValueError: a time is not a positive number of seconds.
        ApprovalError: the database cannot be opened or created.
    """

    def __init__(self, path: str | os.PathLike[str], records: SQLiteRecordStore, *,
                 ttl: float = 3600.0, grant_ttl: float = 900.0, rejection_ttl: float = 3600.0,
                 clock: Callable[[], datetime] | None = None, busy_timeout: float = 10.0,
                 create: bool = True) -> None:
        self.ttl = _seconds(ttl, "ttl")
        self.grant_ttl = _seconds(grant_ttl, "grant_ttl")
        self.rejection_ttl = _seconds(rejection_ttl, "rejection_ttl")
        self.path = Path(path)
        self.records = records
        self._clock = clock or _utc_now
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._closed = False
        if not create and not self.path.is_file():
            raise ApprovalError(f"no approval store at {self.path}")
        conn: sqlite3.Connection | None = None
        try:
            ensure_home(self.path.parent)
            ensure_private_file(self.path)
            conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            prepare(conn, self.path, _SCHEMA, SCHEMA_VERSION, "approval", ApprovalError,
                    migrations={1: _MIGRATE_FROM_1})
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=0")   # begin_immediate waits, in finer steps
        except (OSError, sqlite3.Error) as exc:
            if conn is not None:
                conn.close()
            raise ApprovalError(f"cannot open the approval store {self.path}: {exc}") from exc
        except ApprovalError:
            if conn is not None:
                conn.close()
            raise
        self._conn = conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
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
                if isinstance(exc, RecordError):
                    raise ApprovalError(f"the approval event could not be chained: {exc}") \
                        from exc
                raise

    def _now(self) -> tuple[datetime, str]:
        moment = self._clock()
        return moment, format_timestamp(moment)

    # -- rows and events -------------------------------------------------------------------

    @staticmethod
    def _rows(conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> list[Approval]:
        # The columns are what the queries select on: they win over the document, so that
        # a row edited in one place or the other is judged by what was acted on (a grant
        # found under an edited binding column is checked against that binding).
        rows = conn.execute(f"{_SELECT} WHERE {where}", params).fetchall()
        return [replace(Approval.from_document(json.loads(text)), status=status,
                        expires_at=expires_at, binding=binding)
                for status, expires_at, binding, text in rows]

    @staticmethod
    def _write(conn: sqlite3.Connection, approval: Approval, *, insert: bool = False) -> None:
        text = json.dumps(approval.document(), ensure_ascii=False, sort_keys=True)
        if insert:
            conn.execute(
                "INSERT INTO approvals (approval_id, status, binding, call, tool, requested_at, "
                "expires_at, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (approval.approval_id, approval.status, approval.binding,
                 approval.request.call_digest(), approval.tool, approval.requested_at,
                 approval.expires_at, text))
        else:
            conn.execute("UPDATE approvals SET status = ?, expires_at = ?, document = ? "
                         "WHERE approval_id = ?",
                         (approval.status, approval.expires_at, text, approval.approval_id))

    def _chain(self, approval: Approval, event: str, status: Status, timestamp: str, *,
               detail: dict[str, Any] | None = None, vote: dict[str, Any] | None = None,
               signature: str | None = None) -> Approval:
        sequence, digest = self.records.append_event({
            "kind": "approval", "decision_id": approval.requested_by_decision,
            "timestamp": timestamp, "approval_id": approval.approval_id, "event": event,
            "status": status, "tool": approval.tool, "binding": approval.binding,
            "detail": detail or {}, "vote": vote, "signature": signature})
        return replace(approval, status=status,
                       events=(*approval.events, (event, sequence, digest)))

    def _expire(self, conn: sqlite3.Connection, approval: Approval, cause: str,
                now: str) -> Approval:
        expired = self._chain(approval, "expired", "expired", now, detail={"cause": cause})
        expired = replace(expired, expired_cause=cause)
        self._write(conn, expired)
        return expired

    def _expire_due(self, conn: sqlite3.Connection, now: str, where: str = "1",
                    params: tuple[Any, ...] = ()) -> None:
        for approval in self._rows(
                conn, f"status IN ('pending', 'approved') AND expires_at <= ? AND ({where}) "
                      "ORDER BY seq", (now, *params)):
            self._expire(conn, approval, "not_decided" if approval.status == "pending"
                         else "grant_unused", now)

    # -- the guard's side ------------------------------------------------------------------

    def settle(self, request: Request, *, decision_id: str, rule: str | None, reason: str,
               registry: Registry) -> Settlement:
        """Decide what a call that needs approval gets: its grant, its rejection, or a
        pending request (the existing one for the same binding, or a new one).

        Args:
            request: the call (its digest is the binding).
            decision_id: the guard call asking; it uses the grant, or becomes the requester.
            rule, reason: the deciding rule and its message, shown to approvers.
            registry: the approvers registry votes are verified against.

        Raises:
            ApprovalError: the database or the record chain cannot be written.
        """
        binding = request.digest()
        moment, now = self._now()
        problems: list[str] = []
        with self._transaction() as conn:
            self._expire_due(conn, now, "binding = ?", (binding,))
            # This side's rejection_ttl and grant_ttl count, from the votes' times: the
            # approver's process may be configured otherwise.
            hold = timedelta(seconds=self.rejection_ttl)
            for rejected in self._rows(conn, "binding = ? AND status = 'rejected' "
                                             "ORDER BY seq DESC", (binding,)):
                if rejected.decided_at is None or _parse_time(rejected.decided_at) + hold > moment:
                    return Settlement("rejected", rejected)
            for grant in self._rows(conn, "binding = ? AND status = 'approved' ORDER BY seq",
                                    (binding,)):
                problem = self.verify_grant(grant, registry, moment)
                if problem == GRANT_EXPIRED:
                    self._expire(conn, grant, "grant_unused", now)
                    continue
                if problem is not None:
                    problems.append(f"approval {grant.approval_id} is not honoured: {problem}")
                    log.error("veto-opa refused approval %s: %s", grant.approval_id, problem)
                    continue
                used = self._chain(grant, "used", "used", now,
                                   detail={"used_by_decision": decision_id})
                used = replace(used, used_by_decision=decision_id, used_at=now)
                self._write(conn, used)
                return Settlement("granted", used, tuple(problems))
            pending = self._rows(conn, "binding = ? AND status = 'pending' ORDER BY seq LIMIT 1",
                                 (binding,))
            if pending:
                return Settlement("pending", pending[0], tuple(problems))
            # The same call under another binding: the policy changed (other rules, approvers
            # or revision). Its old requests and grants no longer apply.
            for old in self._rows(conn, "call = ? AND binding != ? AND status IN "
                                        "('pending', 'approved') ORDER BY seq",
                                  (request.call_digest(), binding)):
                self._expire(conn, old, "policy_changed", now)
            approval = Approval(
                approval_id=str(uuid.uuid4()), status="pending", binding=binding,
                request=request, rule=rule, reason=reason, requested_by_decision=decision_id,
                requested_at=now,
                expires_at=format_timestamp(moment + timedelta(seconds=self.ttl)))
            approval = self._chain(approval, "requested", "pending", now, detail={
                "request": request.document(), "rule": rule, "reason": reason,
                "expires_at": approval.expires_at})
            self._write(conn, approval, insert=True)
            return Settlement("pending", approval, tuple(problems))

    def verify_grant(self, approval: Approval, registry: Registry,
                     moment: datetime | None = None) -> str | None:
        """Why the chain does not support using ``approval`` now, or None when it does.

        Raises:
            RecordError: the record store cannot be read.
        """
        entries = self._entries(approval)
        problem = _check_entries(approval, entries)
        if problem is not None:
            return problem
        events = [doc for doc, _ in entries]
        ended = [doc["event"] for doc in events if doc["event"] in _ENDED]
        if ended:
            return f"the record chain says it is {ended[0]}"
        try:
            request = Request.from_document(events[0]["detail"]["request"])
        except (KeyError, TypeError, ValueError):
            return "its requested entry holds no request"
        votes: list[Vote] = []
        for doc in events:
            if doc["event"] != "approved":
                continue
            vote, problem = _verified_vote(doc, approval, request, registry)
            if problem is not None:
                return problem
            assert vote is not None
            votes.append(vote)
        if missing_approvals(request.requirements, votes):
            return "the record chain holds too few valid approving votes"
        granted = _parse_time(max(v.at for v in votes))
        if (moment or self._clock()) >= granted + timedelta(seconds=self.grant_ttl):
            return GRANT_EXPIRED
        return None

    def _entries(self, approval: Approval) -> list[tuple[dict[str, Any], str | None]]:
        return [(doc, previous) for doc, previous in
                self.records.approval_entries(approval.requested_by_decision)
                if doc.get("approval_id") == approval.approval_id]

    def _as_chained(self, approval: Approval) -> Approval:
        """The approval with the request, rule and reason of its ``requested`` chain entry:
        what approvers are shown and vote on. The row's own copy can be edited by whoever
        can write the database file; the chain entry is hashed, linked, and its request
        digest is the binding the grant is checked against.

        Raises:
            ApprovalError: the chain does not support the row.
        """
        entries = self._entries(approval)
        problem = _check_entries(approval, entries)
        if problem is not None:
            raise ApprovalError(f"approval {approval.approval_id} is not supported by the "
                                f"record chain: {problem} (see veto-opa decisions verify)")
        detail = entries[0][0]["detail"]
        return replace(approval, request=Request.from_document(detail["request"]),
                       rule=detail.get("rule"), reason=str(detail.get("reason") or ""))

    # -- the approver's side ---------------------------------------------------------------

    def vote(self, approval_id: str, *, signer: Signer, verdict: Verdict,
             justification: str | None, registry: Registry) -> Approval:
        """Record one approver's signed vote.

        Args:
            approval_id: the approval.
            signer: the approver's key, authenticated against ``registry``.
            verdict: ``approved`` or ``rejected``.
            justification: why (required to reject: the agent is told it).
            registry: the approvers registry.

        Returns:
            The approval after the vote: ``approved`` once every asking rule has its
            approvals, ``rejected``, or still ``pending``.

        Raises:
            ApprovalExpired: its time ran out (it is marked ``expired``).
            ApprovalError: no such approval; not pending; the approver requested the call,
                already voted, or is in no group that can still count; a bad signature; the
                database or chain cannot be written.
        """
        verb = "approve" if verdict == "approved" else "reject"
        if verdict == "rejected" and not (justification or "").strip():
            raise ApprovalError("a rejection needs a justification: the agent is told it")
        moment, now = self._now()
        expired: Approval | None = None
        with self._transaction() as conn:
            found = self._rows(conn, "approval_id = ?", (approval_id,))
            if not found:
                raise ApprovalError(f"no approval {approval_id!r}")
            approval = self._as_chained(found[0])
            if approval.status == "pending" and approval.expires_at <= now:
                expired = self._expire(conn, approval, "not_decided", now)
            else:
                decided = self._decide(conn, approval, signer, verdict, justification,
                                       registry, moment, now, verb)
        if expired is not None:   # raised after the commit, so that the expiry is kept
            raise ApprovalExpired(f"cannot {verb} {approval_id}: it expired at "
                                  f"{expired.expires_at}")
        return decided

    def _decide(self, conn: sqlite3.Connection, approval: Approval, signer: Signer,
                verdict: Verdict, justification: str | None, registry: Registry,
                moment: datetime, now: str, verb: str) -> Approval:
        identity = registry.approvers.get(signer.identity.name)
        if identity is None or identity != signer.identity:
            raise ApprovalError(f"{signer.identity.name} is no longer registered as it was "
                                "when they signed in")
        if approval.status != "pending":
            error = ApprovalExpired if approval.status == "expired" else ApprovalError
            by = f" (by {', '.join(approval.decided_by)})" if approval.decided_by else ""
            raise error(f"cannot {verb} {approval.approval_id}: it is "
                        f"{approval.status}{by}, not pending")
        if identity.requested(approval.request):
            raise ApprovalError(f"{identity.name} requested this call and cannot {verb} it "
                                "(separation of duties)")
        if identity.name in {v.approver for v in approval.votes}:
            raise ApprovalError(f"{identity.name} has already voted on "
                                f"{approval.approval_id}; its approvals must come from "
                                "distinct approvers")
        requirements = approval.request.requirements
        if not any(r.admits(identity.groups) for r in requirements):
            raise ApprovalError(
                f"{identity.name} is not in any approver group of {approval.approval_id}: "
                + "; ".join(f"{r.label}: {', '.join(r.groups)}" for r in requirements))
        if verdict == "approved" and not any(r.admits(identity.groups)
                                             for r, _ in approval.missing()):
            raise ApprovalError(
                f"{identity.name}'s groups have given all they can to {approval.approval_id}; "
                "it still needs " + "; ".join(f"{n} more from {', '.join(r.groups)} "
                                              f"({r.label})" for r, n in approval.missing()))
        payload = {"approval_id": approval.approval_id, "binding": approval.binding,
                   "verdict": verdict, "approver": identity.name, "key_id": signer.key_id,
                   "justification": justification, "signed_at": now}
        signature = signer.sign(payload)
        registry.verify(identity.name, signer.key_id, payload, signature)
        vote = Vote(identity.name, verdict, identity.groups, justification, now, signer.key_id,
                    0)
        votes = (*approval.votes, vote)
        if verdict == "rejected":
            status: Status = "rejected"
            expires = moment + timedelta(seconds=self.rejection_ttl)
        elif missing_approvals(requirements, [v for v in votes if v.verdict == "approved"]):
            status, expires = "pending", _parse_time(approval.expires_at)
        else:
            status, expires = "approved", moment + timedelta(seconds=self.grant_ttl)
        decided = self._chain(approval, verdict, status, now, vote=payload,
                              signature=signature, detail={"groups": list(identity.groups)})
        vote = replace(vote, sequence=decided.events[-1][1])
        decided = replace(decided, votes=(*approval.votes, vote),
                          expires_at=format_timestamp(expires))
        self._write(conn, decided)
        return decided

    # -- reading ---------------------------------------------------------------------------

    def get(self, approval_id: str) -> Approval | None:
        """The approval with this id as its record chain has it, or None; one past its time
        is first marked expired.

        Raises:
            ApprovalError: the database or chain cannot be read or written; the chain does
                not support the row (it was edited or inserted by hand).
        """
        _, now = self._now()
        with self._transaction() as conn:
            self._expire_due(conn, now, "approval_id = ?", (approval_id,))
            found = self._rows(conn, "approval_id = ?", (approval_id,))
            return self._as_chained(found[0]) if found else None

    def list(self, *, status: str | None = None, limit: int = 100) -> list[Approval]:
        """Approvals as their record chain has them, newest first; those past their time
        are first marked expired. A row the chain does not support is left out and logged
        (``decisions verify`` reports it).

        Raises:
            ValueError: ``status`` is not one of :data:`~veto_opa.approvals.model.STATUSES`.
            ApprovalError: the database or chain cannot be read or written.
        """
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, found {status!r}")
        where, params = ("status = ?", (status,)) if status is not None else ("1", ())
        _, now = self._now()
        shown: list[Approval] = []
        with self._transaction() as conn:
            self._expire_due(conn, now)
            for approval in self._rows(conn, f"{where} ORDER BY seq DESC LIMIT ?",
                                       (*params, max(0, int(limit)))):
                try:
                    shown.append(self._as_chained(approval))
                except ApprovalError as exc:
                    log.error("veto-opa left out %s", exc)
        return shown

    def audit(self, registry: Registry | None) -> AuditResult:
        """Check every approval against the record chain.

        A problem (the result is not ok): a row the chain does not support (no ``requested``
        entry, another binding), a status the chain does not end in, an entry that does not
        hash or link, a vote whose signature does not verify. A note: what cannot be checked
        (an approver since removed from the registry) and chain events without a row.

        Raises:
            ApprovalError: the database cannot be read; RecordError: nor the records.
        """
        with self._transaction() as conn:
            approvals = self._rows(conn, "1 ORDER BY seq", ())
        by_id: dict[str, list[tuple[dict[str, Any], str | None]]] = {}
        for doc, previous in self.records.approval_entries():
            by_id.setdefault(str(doc.get("approval_id")), []).append((doc, previous))
        problems: list[str] = []
        notes: list[str] = []
        for approval in approvals:
            entries = [(d, p) for d, p in by_id.pop(approval.approval_id, [])
                       if d.get("decision_id") == approval.requested_by_decision]
            problem = _check_entries(approval, entries)
            if problem is None and entries[-1][0]["status"] != approval.status:
                problem = (f"its status is {approval.status} but the record chain says "
                           f"{entries[-1][0]['status']}")
            if problem is None:
                request = Request.from_document(entries[0][0]["detail"]["request"])
                for doc, _ in entries:
                    if doc["event"] not in ("approved", "rejected"):
                        continue
                    if registry is None or doc["vote"]["approver"] not in registry.approvers:
                        notes.append(f"approval {approval.approval_id}: the vote of "
                                     f"{doc['vote']['approver']} cannot be checked: not in "
                                     "the approvers registry")
                        continue
                    _, problem = _verified_vote(doc, approval, request, registry,
                                                check_requester=False)
                    if problem is not None:
                        break
            if problem is not None:
                problems.append(f"approval {approval.approval_id}: {problem}")
        for approval_id, entries in by_id.items():
            notes.append(f"approval {approval_id}: {len(entries)} chain event(s) without a row "
                         "in the approval store")
        return AuditResult(not problems, len(approvals), tuple(problems), tuple(notes))

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database (not the record store). Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteApprovalStore({str(self.path)!r})"


def _check_entries(approval: Approval,
                   entries: list[tuple[dict[str, Any], str | None]]) -> str | None:
    """Why the chain entries of an approval do not hold together, or None."""
    if not entries:
        return "the record chain has no entry for it"
    for doc, previous in entries:
        sequence = doc.get("sequence")
        try:
            if record_hash(doc) != doc.get("record_hash"):
                return f"its chain entry {sequence} does not match its record_hash"
        except (KeyError, TypeError, ValueError):
            return f"its chain entry {sequence} cannot be hashed"
        expected = GENESIS_HASH if sequence == 1 else previous
        if doc.get("prev_hash") != expected:
            return f"its chain entry {sequence} is not linked to the entry before it"
        if doc.get("binding") != approval.binding:
            return f"its chain entry {sequence} is for another binding"
    first = entries[0][0]
    if first.get("event") != "requested":
        return "the record chain has no requested entry for it"
    try:
        digest = Request.from_document(first["detail"]["request"]).digest()
    except (KeyError, TypeError, ValueError):
        return "its requested entry holds no request"
    if digest != approval.binding:
        return "its requested entry is for another call"
    return None


def _verified_vote(doc: dict[str, Any], approval: Approval, request: Request,
                   registry: Registry, *, check_requester: bool = True
                   ) -> tuple[Vote | None, str | None]:
    vote = doc.get("vote")
    if not isinstance(vote, dict):
        return None, f"its chain entry {doc.get('sequence')} holds no vote"
    if (vote.get("approval_id") != approval.approval_id
            or vote.get("binding") != approval.binding or vote.get("verdict") != doc["event"]):
        return None, f"the vote in chain entry {doc.get('sequence')} is for another approval"
    try:
        identity = registry.verify(str(vote.get("approver")), str(vote.get("key_id")), vote,
                                   doc.get("signature"))
    except ApprovalError as exc:
        return None, str(exc)
    if check_requester and identity.requested(request):
        return None, f"{identity.name} requested the call and cannot approve it"
    return Vote(identity.name, vote["verdict"], identity.groups, vote.get("justification"),
                str(vote["signed_at"]), str(vote["key_id"]), int(doc["sequence"])), None


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def audit_home(records: SQLiteRecordStore, home: str | os.PathLike[str],
               approvers: str | os.PathLike[str] | None = None) -> AuditResult | None:
    """:meth:`SQLiteApprovalStore.audit` of the approval store under ``home`` against
    ``records``; None when there is no approval store. The registry is ``approvers``, else
    ``VETO_APPROVERS``, else ``<home>/approvers.yaml``; an unreadable one is a problem.
    """
    import os as _os

    from veto_opa.approvals.registry import Registry, registry_path

    path = store_path(home)
    if not path.is_file():
        return None
    try:
        store = SQLiteApprovalStore(path, records, create=False)
    except ApprovalError as exc:
        return AuditResult(False, 0, (str(exc),))
    try:
        try:
            registry: Registry | None = Registry.load(
                registry_path(home, approvers or _os.environ.get("VETO_APPROVERS")))
        except ApprovalError as exc:
            return AuditResult(False, 0, (str(exc),))
        return store.audit(registry)
    finally:
        store.close()
