"""Approvals: requests, decisions by approver groups, expiry, single use under concurrency, and
``veto-opa approvals list|show|approve|reject``."""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from veto_opa.approvals import STATUSES, Approval, SQLiteApprovalStore, store_path
from veto_opa.approvals_cli import main, register
from veto_opa.errors import ApprovalError, ApprovalExpired
from veto_opa.records import SQLiteRecordStore, arguments_digest
from veto_opa.records import store_path as records_store_path

from .records.conftest import decision_fields

if TYPE_CHECKING:
    from collections.abc import Iterator

START = datetime(2026, 11, 25, 8, 0, 0, tzinfo=UTC)
ARGS = {"database": "production", "statement": "DELETE FROM users WHERE id = 7"}
DIGEST = arguments_digest(ARGS)
OTHER_DIGEST = arguments_digest({**ARGS, "statement": "DELETE FROM users WHERE id = 8"})
KEY = {"tool": "execute_sql", "arguments_sha256": DIGEST, "subject": "user:bob"}


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / ".veto"


@pytest.fixture
def store(home: Path, clock: Clock) -> Iterator[SQLiteApprovalStore]:
    opened = SQLiteApprovalStore(store_path(home), ttl=600, clock=clock)
    yield opened
    opened.close()


def ask(store: SQLiteApprovalStore, **overrides: Any) -> Approval:
    """``store.request`` for :data:`KEY`, approvers ``security-team`` and ``dba``."""
    fields: dict[str, Any] = {
        **KEY,
        "approvers": ["security-team", "dba"],
        "rule": "approve_production_writes",
        "reason": "Writes to production need a DBA's approval",
        "decision_id": "5603b8ea-7b12-4535-a05f-a71712cbe37a",
    }
    fields.update(overrides)
    return store.request(**fields)


def approved(store: SQLiteApprovalStore, **overrides: Any) -> Approval:
    """A new approval for :data:`KEY` (or ``overrides``), approved by alice of ``dba``."""
    pending = ask(store, **overrides)
    assert pending.status == "pending"
    return store.approve(pending.approval_id, approver="alice", groups=["dba"])


def use(store: SQLiteApprovalStore, decision_id: str = "d-use", **key: Any) -> Approval | None:
    return store.consume(**{**KEY, **key}, decision_id=decision_id)


# -- request ------------------------------------------------------------------------------


def test_request_creates_a_pending_approval(store: SQLiteApprovalStore, clock: Clock) -> None:
    approval = ask(store, policy_revision="sha256:" + "ab" * 32)

    assert approval.status == "pending"
    assert len(approval.approval_id) == 36 and approval.approval_id.count("-") == 4
    assert (approval.tool, approval.arguments_sha256, approval.subject) == (
        "execute_sql",
        DIGEST,
        "user:bob",
    )
    assert approval.approvers == ("dba", "security-team")  # sorted, as stored
    assert approval.rule == "approve_production_writes"
    assert approval.requested_by_decision == "5603b8ea-7b12-4535-a05f-a71712cbe37a"
    assert approval.requested_at == "2026-11-25T08:00:00.000000Z"
    assert approval.expires_at == "2026-11-25T08:10:00.000000Z"  # ttl 600
    assert approval.decided_by is None and approval.decided_groups == ()
    assert approval.used_by_decision is None and approval.used_at is None
    assert approval.policy_revision == "sha256:" + "ab" * 32
    assert store.get(approval.approval_id) == approval


def test_request_returns_the_pending_approval_of_the_same_call(
    store: SQLiteApprovalStore, clock: Clock
) -> None:
    first = ask(store, decision_id="d1")
    clock.advance(30)
    again = ask(store, decision_id="d2", approvers=["dba", "security-team", "dba"])

    assert again == first  # same id, first requester, first expiry
    assert len(store.list()) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"arguments_sha256": OTHER_DIGEST},
        {"subject": "user:carol"},
        {"subject": None},
        {"tool": "execute_sql_readonly"},
        {"approvers": ["dba"]},  # the policy changed: not decidable under the old groups
    ],
)
def test_request_does_not_share_across_calls(
    store: SQLiteApprovalStore, change: dict[str, Any]
) -> None:
    first = ask(store)
    other = ask(store, **change)
    assert other.approval_id != first.approval_id
    assert ask(store, **change) == other  # ... and that one dedupes in turn
    assert len(store.list(status="pending")) == 2


def test_request_with_unknown_subject_dedupes(store: SQLiteApprovalStore) -> None:
    assert ask(store, subject=None) == ask(store, subject=None)


def test_request_after_expiry_or_decision_makes_a_new_one(
    store: SQLiteApprovalStore, clock: Clock
) -> None:
    first = ask(store)
    clock.advance(600)  # exactly at expires_at: expired
    second = ask(store)
    assert second.approval_id != first.approval_id
    assert store.get(first.approval_id).status == "expired"  # type: ignore[union-attr]

    store.reject(second.approval_id, approver="alice", groups=["dba"])
    third = ask(store)
    assert third.approval_id not in (first.approval_id, second.approval_id)
    assert third.status == "pending"


def test_request_validates_its_input(store: SQLiteApprovalStore) -> None:
    with pytest.raises(ValueError, match="arguments_sha256 must be 'sha256:' and 64 hex"):
        ask(store, arguments_sha256="deadbeef")
    with pytest.raises(TypeError, match="not the string 'dba'"):
        ask(store, approvers="dba")
    with pytest.raises(ValueError, match="non-empty strings"):
        ask(store, approvers=["dba", " "])
    assert store.list() == []


def test_ttl_must_be_positive(tmp_path: Path) -> None:
    for ttl in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="ttl must be a positive number"):
            SQLiteApprovalStore(tmp_path / "a.sqlite3", ttl=ttl)


# -- approve and reject -------------------------------------------------------------------


def test_approve_by_a_member_of_an_approver_group(store: SQLiteApprovalStore, clock: Clock) -> None:
    pending = ask(store)
    clock.advance(60)
    decided = store.approve(
        pending.approval_id,
        approver="alice",
        groups=["engineering", "dba"],
        justification="ticket OPS-1234",
    )

    assert decided.status == "approved"
    assert decided.decided_by == "alice"
    assert decided.decided_groups == ("dba",)  # the group that qualified her
    assert decided.decided_at == "2026-11-25T08:01:00.000000Z"
    assert decided.justification == "ticket OPS-1234"
    assert store.get(pending.approval_id) == decided


def test_reject_by_a_member(store: SQLiteApprovalStore) -> None:
    pending = ask(store)
    decided = store.reject(
        pending.approval_id, approver="sam", groups=["security-team"], justification="no"
    )
    assert (decided.status, decided.decided_by, decided.decided_groups) == (
        "rejected",
        "sam",
        ("security-team",),
    )
    assert store.get(pending.approval_id) == decided


def test_any_approver_when_the_approval_names_no_group(store: SQLiteApprovalStore) -> None:
    pending = ask(store, approvers=[])
    assert pending.approvers == ()
    decided = store.approve(pending.approval_id, approver="alice", groups=[])
    assert decided.status == "approved" and decided.decided_groups == ()
    other = ask(store, approvers=[], subject="user:carol")
    assert store.approve(other.approval_id, approver="bo", groups=["ops"]).decided_groups == (
        "ops",
    )


@pytest.mark.parametrize("decide", ["approve", "reject"])
@pytest.mark.parametrize("groups", [["engineering"], [], ["DBA"]])
def test_refused_for_a_non_member(
    store: SQLiteApprovalStore, decide: str, groups: list[str]
) -> None:
    pending = ask(store)
    with pytest.raises(ApprovalError) as caught:
        getattr(store, decide)(pending.approval_id, approver="alice", groups=groups)
    assert str(caught.value) == (
        f"alice is not in any approver group of {pending.approval_id}: dba, security-team"
    )
    assert type(caught.value) is ApprovalError
    assert store.get(pending.approval_id) == pending  # nothing recorded


@pytest.mark.parametrize(
    ("first", "then", "status"),
    [
        ("approve", "approve", "approved"),
        ("approve", "reject", "approved"),
        ("reject", "approve", "rejected"),
        ("reject", "reject", "rejected"),
    ],
)
def test_refused_when_not_pending(
    store: SQLiteApprovalStore, first: str, then: str, status: str
) -> None:
    pending = ask(store)
    decided = getattr(store, first)(pending.approval_id, approver="alice", groups=["dba"])
    with pytest.raises(ApprovalError, match=f"it is {status} \\(by alice at .*\\), not pending"):
        getattr(store, then)(pending.approval_id, approver="bob", groups=["dba"])
    assert store.get(pending.approval_id) == decided


def test_refused_when_used(store: SQLiteApprovalStore) -> None:
    grant = approved(store)
    assert use(store) is not None
    with pytest.raises(ApprovalError, match="it is used .*, not pending"):
        store.reject(grant.approval_id, approver="bob", groups=["dba"])


@pytest.mark.parametrize("decide", ["approve", "reject"])
def test_refused_when_expired_and_marked_expired(
    store: SQLiteApprovalStore, clock: Clock, decide: str
) -> None:
    pending = ask(store)
    clock.advance(600.5)
    with pytest.raises(ApprovalExpired, match="expired at 2026-11-25T08:10:00.000000Z"):
        getattr(store, decide)(pending.approval_id, approver="alice", groups=["dba"])
    expired = store.get(pending.approval_id)
    assert expired is not None and expired.status == "expired"
    assert expired.decided_by is None and expired.decided_at is None
    # ... and stays refused as expired, whatever the clock says later
    clock.now = START
    with pytest.raises(ApprovalExpired, match="it is expired, not pending"):
        store.approve(pending.approval_id, approver="alice", groups=["dba"])


def test_decided_just_before_expiry(store: SQLiteApprovalStore, clock: Clock) -> None:
    pending = ask(store)
    clock.advance(599.999999)
    assert store.approve(pending.approval_id, approver="a", groups=["dba"]).status == "approved"


def test_refused_for_an_unknown_id_or_empty_approver(store: SQLiteApprovalStore) -> None:
    with pytest.raises(ApprovalError, match="no approval 'nope'"):
        store.approve("nope", approver="alice", groups=["dba"])
    pending = ask(store)
    with pytest.raises(ApprovalError, match="the approver's name is empty"):
        store.approve(pending.approval_id, approver=" ", groups=["dba"])
    with pytest.raises(TypeError):
        store.approve(pending.approval_id, approver="alice", groups="dba")


# -- consume ------------------------------------------------------------------------------


def test_consume_uses_an_approval_once(store: SQLiteApprovalStore, clock: Clock) -> None:
    grant = approved(store)
    clock.advance(5)

    used = use(store, decision_id="d-retry")
    assert used is not None
    assert used.approval_id == grant.approval_id
    assert used.status == "used"
    assert used.used_by_decision == "d-retry"
    assert used.used_at == "2026-11-25T08:00:05.000000Z"
    assert (used.decided_by, used.decided_groups) == ("alice", ("dba",))  # verdict kept
    assert store.get(grant.approval_id) == used

    assert use(store, decision_id="d-again") is None
    assert store.get(grant.approval_id) == used


def test_consume_takes_the_oldest_grant_first(store: SQLiteApprovalStore) -> None:
    first = approved(store)
    second = approved(store)  # the first is no longer pending, so a new request
    assert first.approval_id != second.approval_id
    assert use(store).approval_id == first.approval_id  # type: ignore[union-attr]
    assert use(store).approval_id == second.approval_id  # type: ignore[union-attr]
    assert use(store) is None


def test_consume_ignores_pending_rejected_and_expired(
    store: SQLiteApprovalStore, clock: Clock
) -> None:
    ask(store)
    assert use(store) is None  # pending

    rejected = ask(store, subject="user:carol")
    store.reject(rejected.approval_id, approver="alice", groups=["dba"])
    assert use(store, subject="user:carol") is None

    grant = approved(store, subject="user:dave")
    clock.advance(600)  # approved but never used before expires_at
    assert use(store, subject="user:dave") is None
    assert store.get(grant.approval_id).status == "approved"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "other",
    [
        {"tool": "drop_table"},
        {"arguments_sha256": OTHER_DIGEST},
        {"subject": "user:mallory"},
        {"subject": None},
    ],
)
def test_consume_does_not_take_another_calls_approval(
    store: SQLiteApprovalStore, other: dict[str, Any]
) -> None:
    grant = approved(store)
    assert use(store, **other) is None
    assert store.get(grant.approval_id).status == "approved"  # type: ignore[union-attr]
    assert use(store) is not None


def test_consume_with_unknown_subject(store: SQLiteApprovalStore) -> None:
    approved(store, subject=None)
    assert use(store) is None
    assert use(store, subject=None) is not None


def _race(consume: list[Any], count: int) -> list[Approval]:
    barrier = threading.Barrier(count)
    results: list[Approval | None] = [None] * count
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            results[i] = consume[i](**KEY, decision_id=f"d{i}")
        except Exception as exc:  # noqa: BLE001 -- reported below, not as a thread warning
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return [result for result in results if result is not None]


def test_consume_from_8_threads_sharing_a_store(store: SQLiteApprovalStore) -> None:
    for _ in range(20):
        grant = approved(store)
        winners = _race([store.consume] * 8, 8)
        assert [w.approval_id for w in winners] == [grant.approval_id]


def test_consume_from_8_threads_with_their_own_stores(home: Path, clock: Clock) -> None:
    stores = [SQLiteApprovalStore(store_path(home), clock=clock) for _ in range(8)]
    try:
        for _ in range(10):
            grant = approved(stores[0])
            winners = _race([s.consume for s in stores], 8)
            assert [w.approval_id for w in winners] == [grant.approval_id]
            assert stores[3].get(grant.approval_id) == winners[0]
    finally:
        for opened in stores:
            opened.close()


def test_concurrent_requests_for_one_call_make_one_approval(home: Path, clock: Clock) -> None:
    stores = [SQLiteApprovalStore(store_path(home), clock=clock) for _ in range(8)]
    try:
        barrier = threading.Barrier(8)
        made: list[Approval] = []

        def work(opened: SQLiteApprovalStore) -> None:
            barrier.wait()
            made.append(ask(opened))

        threads = [threading.Thread(target=work, args=(opened,)) for opened in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(made) == 8 and len({a.approval_id for a in made}) == 1
        assert len(stores[0].list()) == 1
    finally:
        for opened in stores:
            opened.close()


# Consumes until there is nothing left; prints each approval id it got.
CONSUMER = textwrap.dedent(
    """
    import os, sys, time
    from veto_opa.approvals import SQLiteApprovalStore

    path, tool, digest, subject, go = sys.argv[1:]
    store = SQLiteApprovalStore(path)
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    while (grant := store.consume(tool=tool, arguments_sha256=digest, subject=subject,
                                  decision_id=str(os.getpid()))) is not None:
        print(grant.approval_id, flush=True)
    store.close()
    """
)


@pytest.mark.parametrize("count", [1, 40])
def test_consume_from_2_processes(home: Path, tmp_path: Path, count: int) -> None:
    # Real time here: the processes use the system clock.
    with SQLiteApprovalStore(store_path(home)) as store:
        grants = {approved(store, decision_id=f"r{i}").approval_id for i in range(count)}
        assert len(grants) == count
    go = tmp_path / "go"
    argv = [sys.executable, "-c", CONSUMER, str(store_path(home)), *KEY.values(), str(go)]
    processes = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n", process.communicate()[1]
    go.touch()
    taken: list[str] = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        taken += out.split()
    assert sorted(taken) == sorted(grants)  # each exactly once, none lost
    with SQLiteApprovalStore(store_path(home)) as store:
        assert {a.status for a in store.list()} == {"used"}


# -- get, list, lifecycle -----------------------------------------------------------------


def test_get_unknown_is_none(store: SQLiteApprovalStore) -> None:
    assert store.get("f0000000-0000-4000-8000-000000000000") is None
    assert store.get("not even a uuid") is None


def test_list_newest_first_with_status_and_limit(store: SQLiteApprovalStore, clock: Clock) -> None:
    a = ask(store, subject="user:a")
    clock.advance(1)
    b = approved(store, subject="user:b")
    clock.advance(1)
    c = ask(store, subject="user:c")

    assert [x.approval_id for x in store.list()] == [c.approval_id, b.approval_id, a.approval_id]
    assert [x.approval_id for x in store.list(status="approved")] == [b.approval_id]
    assert [x.approval_id for x in store.list(limit=2)] == [c.approval_id, b.approval_id]
    assert store.list(status="used") == []
    with pytest.raises(ValueError, match="status must be one of pending, approved"):
        store.list(status="granted")


def test_list_marks_expired_pending_ones(store: SQLiteApprovalStore, clock: Clock) -> None:
    old = ask(store, subject="user:old")
    grant = approved(store, subject="user:granted")
    clock.advance(300)
    young = ask(store, subject="user:young")
    clock.advance(300)

    statuses = {x.approval_id: x.status for x in store.list()}
    assert statuses == {
        old.approval_id: "expired",
        grant.approval_id: "approved",  # a verdict is kept; consume checks expires_at
        young.approval_id: "pending",
    }
    assert [x.approval_id for x in store.list(status="expired")] == [old.approval_id]


def test_document_is_json(store: SQLiteApprovalStore) -> None:
    grant = approved(store)
    document = json.loads(json.dumps(grant.document()))
    assert document["approvers"] == ["dba", "security-team"]
    assert document["decided_groups"] == ["dba"]
    assert list(document) == [
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
    ]
    assert set(STATUSES) == {"pending", "approved", "rejected", "expired", "used"}


def test_durable_in_wal_mode_and_survives_reopening(home: Path, clock: Clock) -> None:
    with SQLiteApprovalStore(store_path(home), clock=clock) as store:
        grant = approved(store)
    with sqlite3.connect(store_path(home)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with SQLiteApprovalStore(store_path(home), clock=clock) as store:
        assert store.get(grant.approval_id) == grant
        assert use(store) is not None


def test_closed_store_and_missing_store(home: Path, tmp_path: Path) -> None:
    store = SQLiteApprovalStore(store_path(home))
    store.close()
    store.close()
    with pytest.raises(ApprovalError, match="is closed"):
        store.list()
    with pytest.raises(ApprovalError, match="no approval store at"):
        SQLiteApprovalStore(tmp_path / "nowhere" / "approvals.sqlite3", create=False)
    assert not (tmp_path / "nowhere").exists()


def test_newer_schema_is_refused(home: Path) -> None:
    SQLiteApprovalStore(store_path(home)).close()
    conn = sqlite3.connect(store_path(home))
    conn.execute("PRAGMA user_version=2")
    conn.close()
    with pytest.raises(ApprovalError, match="has approval schema version 2"):
        SQLiteApprovalStore(store_path(home))


def hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Another connection takes the database's write lock and lets it go after ``seconds``."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")

    def release() -> None:
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def test_a_request_waits_for_another_writer(home: Path, clock: Clock) -> None:
    with SQLiteApprovalStore(store_path(home), ttl=600, clock=clock, busy_timeout=10) as store:
        holder = hold_write_lock(store_path(home), 0.2)
        try:
            pending = ask(store)
        finally:
            holder.join()
        assert store.get(pending.approval_id) == pending


def test_a_lock_held_past_busy_timeout_is_an_approval_error(home: Path, clock: Clock) -> None:
    with SQLiteApprovalStore(store_path(home), ttl=600, clock=clock,
                             busy_timeout=0.05) as store:
        holder = hold_write_lock(store_path(home), 0.5)
        try:
            with pytest.raises(ApprovalError, match="database is locked"):
                ask(store)
        finally:
            holder.join()
        assert ask(store).status == "pending"


# -- CLI ----------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def requested(home: Path) -> dict[str, Approval]:
    """Three approvals in a home, with real timestamps (the CLI uses the system clock), and a
    decision record for the first; plus one that expired long ago."""
    record = decision_fields(
        tool="execute_sql",
        arguments=ARGS,
        arguments_sha256=DIGEST,
        decision="require_approval",
        rule="approve_production_writes",
        reason="Writes to production need a DBA's approval",
    )
    with SQLiteRecordStore(records_store_path(home)) as records:
        decision_id = records.append(record).decision_id
    with SQLiteApprovalStore(store_path(home), clock=Clock(START - timedelta(days=1))) as past:
        stale = ask(past, subject="user:stale")
    with SQLiteApprovalStore(store_path(home)) as store:
        made = {
            "stale": stale,
            "pending": ask(store, decision_id=decision_id, policy_revision="sha256:" + "cd" * 32),
            "anyone": ask(
                store,
                tool="send_email\x1b[31m",
                subject=None,
                approvers=[],
                reason="External mail,\nto a customer, needs a human to read it first: "
                "every single time",
            ),
        }
    return made


def test_cli_list_table(
    capsys: pytest.CaptureFixture[str], home: Path, requested: dict[str, Approval]
) -> None:
    code, out, err = run(capsys, "approvals", "list", "--home", str(home))

    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == [
        "approval_id",
        "status",
        "tool",
        "approvers",
        "requested_at",
        "expires_at",
        "reason",
    ]
    ids = [requested[name].approval_id for name in ("anyone", "pending", "stale")]
    assert [row.split()[0] for row in rows] == ids  # newest first
    assert [row.split()[1] for row in rows] == ["pending", "pending", "expired"]
    assert "dba, security-team" in rows[1] and "(any)" in rows[0]
    assert "2026-11-24T08:00:00Z  2026-11-24T09:00:00Z" in rows[2]  # ttl 3600 by default
    assert "\x1b" not in out and "send_email?[31m" in out
    reason = rows[0][header.index("reason") :]
    assert reason.startswith("External mail,?to a customer, needs")  # newline neutralised
    assert reason.endswith("…") and len(reason) == 48
    column = header.index("status")
    assert all(row[column:].startswith(("pending", "expired")) for row in rows)


def test_cli_list_status_and_json(
    capsys: pytest.CaptureFixture[str], home: Path, requested: dict[str, Approval]
) -> None:
    code, out, _ = run(capsys, "approvals", "list", "--home", str(home), "--status", "expired")
    assert code == 0
    assert [row.split()[0] for row in out.splitlines()[1:]] == [requested["stale"].approval_id]

    code, out, _ = run(capsys, "approvals", "list", "--home", str(home), "--json", "--limit", "1")
    assert code == 0
    assert json.loads(out) == [requested["anyone"].document()]

    code, out, _ = run(capsys, "approvals", "list", "--home", str(home), "--status", "used")
    assert (code, out) == (0, "no matching approvals\n")


def test_cli_list_uses_veto_home(
    capsys: pytest.CaptureFixture[str],
    home: Path,
    requested: dict[str, Approval],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VETO_HOME", str(home))
    code, out, _ = run(capsys, "approvals", "list", "--json")
    assert code == 0 and len(json.loads(out)) == 3

    monkeypatch.delenv("VETO_HOME")
    monkeypatch.chdir(home.parent)
    assert home.name == ".veto"
    code, out, _ = run(capsys, "approvals", "list", "--json")
    assert code == 0 and len(json.loads(out)) == 3


def test_cli_missing_store_is_an_error_and_creates_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "approvals", "list", "--home", str(tmp_path / "nowhere"))
    assert (code, out) == (1, "")
    assert err.startswith("veto-opa: error: no approval store at ")
    assert not (tmp_path / "nowhere").exists()


def test_cli_show_text_with_the_requested_call(
    capsys: pytest.CaptureFixture[str], home: Path, requested: dict[str, Approval]
) -> None:
    pending = requested["pending"]
    code, out, err = run(capsys, "approvals", "show", pending.approval_id, "--home", str(home))

    assert (code, err) == (0, "")
    lines = out.splitlines()
    fields = dict(line.split(None, 1) for line in lines if not line.startswith(" "))
    assert fields["approval_id"] == pending.approval_id
    assert fields["status"] == "pending"
    assert fields["approvers"] == "dba, security-team"
    assert fields["decided_by"] == "-"
    assert fields["policy_revision"] == "sha256:" + "cd" * 32
    assert f"requested call (decision record {pending.requested_by_decision}):" in lines
    call = dict(line.split(None, 1) for line in lines if line.startswith("  "))
    assert json.loads(call["arguments"]) == ARGS  # what the approver is approving
    assert json.loads(call["context"])["environment"] == "production"
    assert "WARNING" not in out


def test_cli_show_without_a_decision_record(
    capsys: pytest.CaptureFixture[str], home: Path, requested: dict[str, Approval]
) -> None:
    stale = requested["stale"]
    code, out, _ = run(capsys, "approvals", "show", stale.approval_id, "--home", str(home))
    assert code == 0
    assert "status                 expired" in out
    assert f"  unavailable: decision {stale.requested_by_decision} is not in " in out


def test_cli_show_json(
    capsys: pytest.CaptureFixture[str], home: Path, requested: dict[str, Approval]
) -> None:
    pending = requested["pending"]
    code, out, _ = run(
        capsys, "approvals", "show", pending.approval_id, "--json", "--home", str(home)
    )
    assert code == 0
    shown = json.loads(out)
    assert shown["approval"] == pending.document()
    assert shown["decision_record"]["decision_id"] == pending.requested_by_decision
    assert shown["decision_record"]["arguments_sha256"] == pending.arguments_sha256

    code, out, err = run(capsys, "approvals", "show", "nope", "--home", str(home))
    assert (code, out, err) == (1, "", "veto-opa: error: no approval 'nope'\n")


def test_cli_approve_then_consume_then_refuse(
    capsys: pytest.CaptureFixture[str], home: Path, requested: dict[str, Approval]
) -> None:
    pending = requested["pending"]
    code, out, err = run(
        capsys,
        "approvals", "approve", pending.approval_id, "--home", str(home),
        "--as", "alice", "--group", "engineering", "--group", "dba",
        "--justification", "ticket OPS-1234",
    )  # fmt: skip

    assert (code, err) == (0, "")
    first, second = out.splitlines()
    assert first.startswith(
        f"approved {pending.approval_id}: execute_sql for user:bob, by alice (dba) at 20"
    )
    assert second == f"the same call may run once, until {pending.expires_at}"
    with SQLiteApprovalStore(store_path(home)) as store:
        grant = store.get(pending.approval_id)
        assert grant is not None
        assert (grant.status, grant.decided_by, grant.justification) == (
            "approved",
            "alice",
            "ticket OPS-1234",
        )
        used = use(store, decision_id="d-run")
        assert used is not None
        assert (used.approval_id, used.status, used.used_by_decision, used.decided_by) == (
            pending.approval_id,
            "used",
            "d-run",
            "alice",
        )

    code, out, err = run(
        capsys, "approvals", "reject", pending.approval_id, "--home", str(home),
        "--as", "bob", "--group", "dba",
    )  # fmt: skip
    assert (code, out) == (1, "")
    assert err == (
        f"veto-opa: error: cannot reject {pending.approval_id}: it is used "
        f"(by alice at {grant.decided_at}), not pending\n"
    )


def test_cli_reject_json(
    capsys: pytest.CaptureFixture[str], home: Path, requested: dict[str, Approval]
) -> None:
    anyone = requested["anyone"]
    code, out, _ = run(
        capsys, "approvals", "reject", anyone.approval_id, "--home", str(home),
        "--as", "sam", "--justification", "not to customers", "--json",
    )  # fmt: skip
    assert code == 0
    document = json.loads(out)
    assert (document["status"], document["decided_by"], document["decided_groups"]) == (
        "rejected",
        "sam",
        [],
    )
    assert document["justification"] == "not to customers"


def test_cli_refusals_exit_1_with_a_message(
    capsys: pytest.CaptureFixture[str], home: Path, requested: dict[str, Approval]
) -> None:
    pending, stale = requested["pending"], requested["stale"]
    base = ("--home", str(home), "--as", "alice")

    code, out, err = run(capsys, "approvals", "approve", pending.approval_id, *base)
    assert (code, out) == (1, "")
    assert err == (
        f"veto-opa: error: alice is not in any approver group of {pending.approval_id}: "
        "dba, security-team\n"
    )
    code, _, err = run(capsys, "approvals", "approve", stale.approval_id, *base, "--group", "dba")
    assert code == 1
    assert err == (
        f"veto-opa: error: cannot approve {stale.approval_id}: it expired at "
        "2026-11-24T09:00:00.000000Z\n"
    )
    code, _, err = run(capsys, "approvals", "reject", stale.approval_id, *base, "--group", "dba")
    assert (code, err) == (
        1,
        f"veto-opa: error: cannot reject {stale.approval_id}: it is expired, not pending\n",
    )
    code, _, err = run(capsys, "approvals", "approve", "nope", *base, "--group", "dba")
    assert (code, err) == (1, "veto-opa: error: no approval 'nope'\n")
    code, _, err = run(capsys, "approvals", "approve", pending.approval_id, *base, "--group", "")
    assert code == 1 and "groups must be non-empty strings" in err

    with SQLiteApprovalStore(store_path(home)) as store:
        assert store.get(pending.approval_id) == pending


def test_cli_approve_expiring_between_list_and_approve(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    with SQLiteApprovalStore(store_path(home), ttl=0.05) as store:
        pending = ask(store)
    time.sleep(0.1)
    code, _, err = run(
        capsys, "approvals", "approve", pending.approval_id, "--home", str(home),
        "--as", "alice", "--group", "dba",
    )  # fmt: skip
    assert code == 1
    assert err == (
        f"veto-opa: error: cannot approve {pending.approval_id}: it expired at "
        f"{pending.expires_at}\n"
    )
    with SQLiteApprovalStore(store_path(home)) as store:
        assert store.get(pending.approval_id).status == "expired"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("argv", "example"),
    [
        ([], "veto-opa approvals list --status pending"),
        (["list"], "veto-opa approvals list --json --home"),
        (["show"], "veto-opa approvals show 0b6f3c1e"),
        (["approve"], "--as alice --group dba --justification"),
        (["reject"], "--as alice --group security-team --justification"),
    ],
)
def test_cli_help_has_an_example(
    capsys: pytest.CaptureFixture[str], argv: list[str], example: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["approvals", *argv, "--help"])
    assert exited.value.code == 0
    assert example in capsys.readouterr().out


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["approvals"]) == 2
    assert "COMMAND" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["approvals", "approve", "some-id", "--group", "dba"])  # no --as
    assert exited.value.code == 2
    assert "--as" in capsys.readouterr().err


def test_register_adds_the_group_to_another_parser(home: Path) -> None:
    parser = argparse.ArgumentParser(prog="veto-opa")
    commands = parser.add_subparsers(metavar="COMMAND")
    register(commands)
    args = parser.parse_args(["approvals", "list", "--home", str(home), "--status", "pending"])
    assert (args.status, args.home, args.json) == ("pending", str(home), False)
    assert args.func.__name__ == "cmd_list"


def test_digest_matches_the_records(store: SQLiteApprovalStore) -> None:
    # The guard binds approvals with the records' digest of the canonical arguments.
    canonical = json.dumps(ARGS, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert DIGEST == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert ask(store).arguments_sha256 == DIGEST
