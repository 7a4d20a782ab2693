"""The approval store: the life cycle at its time boundaries, the events in the record chain,
one grant for one caller under threads, the audit, and stores of the previous version."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from veto_opa.approvals.model import Request, Requirement, build_request
from veto_opa.approvals.registry import Registry, Signer
from veto_opa.approvals.store import SQLiteApprovalStore, Settlement, store_path
from veto_opa.errors import ApprovalError, ApprovalExpired
from veto_opa.records import SQLiteRecordStore
from veto_opa.records.model import ApprovalRecord, entry_from_document

START = datetime(2026, 11, 25, 8, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def records(home: Path) -> Iterator[SQLiteRecordStore]:
    with SQLiteRecordStore(home / "records.sqlite3") as store:
        yield store


@pytest.fixture
def registry(home: Path) -> Registry:
    return Registry.load(home / "approvers.yaml")


@pytest.fixture
def signers(registry: Registry, tokens: dict[str, str]) -> dict[str, Signer]:
    return {name: registry.signer_for_token(tokens[name]) for name in ("alice", "dana", "pria")}


@pytest.fixture
def store(home: Path, records: SQLiteRecordStore, clock: Clock) -> Iterator[SQLiteApprovalStore]:
    opened = SQLiteApprovalStore(store_path(home), records, ttl=600, grant_ttl=300,
                                 rejection_ttl=900, clock=clock)
    yield opened
    opened.close()


def call(environment: str = "production", *requirements: Requirement) -> Request:
    return build_request(tool="deploy", arguments_text='{"v":1}',
                         context={"environment": environment, "user": "carol"}, key=b"k" * 32,
                         bound_keys=["environment"],
                         requirements=requirements
                         or (Requirement("ops", "prod", ("sre-oncall",)),),
                         policy_revision="sha256:" + "a" * 64)


def settle(store: SQLiteApprovalStore, registry: Registry, request: Request | None = None,
           decision: str = "0190f0a0-0000-7000-8000-000000000001") -> Settlement:
    return store.settle(request or call(), decision_id=decision, rule="prod",
                        reason="Production needs an SRE", registry=registry)


def test_the_life_cycle_is_in_the_record_chain(store: SQLiteApprovalStore, registry: Registry,
                                               signers: dict[str, Signer],
                                               records: SQLiteRecordStore) -> None:
    pending = settle(store, registry).approval
    assert pending.status == "pending" and pending.expires_at == "2026-11-25T08:10:00.000000Z"
    approved = store.vote(pending.approval_id, signer=signers["alice"], verdict="approved",
                          justification="OPS-1", registry=registry)
    assert approved.status == "approved" and approved.decided_by == ("alice",)
    used = settle(store, registry, decision="0190f0a0-0000-7000-8000-000000000002")
    assert used.outcome == "granted"
    assert used.approval.used_by_decision == "0190f0a0-0000-7000-8000-000000000002"
    entries = [doc for doc, _ in records.approval_entries(pending.requested_by_decision)]
    assert [(e["event"], e["status"]) for e in entries] == [
        ("requested", "pending"), ("approved", "approved"), ("used", "used")]
    assert [seq for _, seq, _ in used.approval.events] == [e["sequence"] for e in entries]
    assert all(isinstance(entry_from_document(e), ApprovalRecord) for e in entries)
    assert entries[1]["vote"]["approver"] == "alice" and entries[1]["signature"]
    assert entries[0]["detail"]["request"]["arguments_mac"].startswith("hmac-sha256:")
    assert records.verify().ok and store.audit(registry).ok


def test_a_request_expires_at_its_ttl(store: SQLiteApprovalStore, registry: Registry,
                                     signers: dict[str, Signer], clock: Clock) -> None:
    pending = settle(store, registry).approval
    clock.advance(599.999)
    assert settle(store, registry).approval.approval_id == pending.approval_id
    clock.advance(0.001)
    with pytest.raises(ApprovalExpired, match="expired at 2026-11-25T08:10:00.000000Z"):
        store.vote(pending.approval_id, signer=signers["alice"], verdict="approved",
                   justification=None, registry=registry)
    expired = store.get(pending.approval_id)
    assert (expired.status, expired.expired_cause) == ("expired", "not_decided")
    assert settle(store, registry).approval.approval_id != pending.approval_id


def test_the_grant_time_counts_from_the_approval(store: SQLiteApprovalStore, registry: Registry,
                                                 signers: dict[str, Signer],
                                                 clock: Clock) -> None:
    pending = settle(store, registry).approval
    clock.advance(590)                                   # 10 s before the request expires
    store.vote(pending.approval_id, signer=signers["alice"], verdict="approved",
               justification=None, registry=registry)
    clock.advance(299)                                   # long past the request's expiry
    assert settle(store, registry).outcome == "granted"
    other = settle(store, registry, call("staging")).approval
    store.vote(other.approval_id, signer=signers["alice"], verdict="approved",
               justification=None, registry=registry)
    clock.advance(300)
    lapsed = settle(store, registry, call("staging"))
    assert lapsed.outcome == "pending" and lapsed.approval.approval_id != other.approval_id
    assert store.get(other.approval_id).expired_cause == "grant_unused"


def test_a_rejection_holds_for_its_ttl(store: SQLiteApprovalStore, registry: Registry,
                                       signers: dict[str, Signer], clock: Clock) -> None:
    pending = settle(store, registry).approval
    store.vote(pending.approval_id, signer=signers["alice"], verdict="rejected",
               justification="not today", registry=registry)
    clock.advance(899)
    held = settle(store, registry)
    assert held.outcome == "rejected" and held.approval.justification == "not today"
    clock.advance(1)
    assert settle(store, registry).outcome == "pending"


def test_votes_that_cannot_count_are_refused(store: SQLiteApprovalStore, registry: Registry,
                                             signers: dict[str, Signer]) -> None:
    both = call("production", Requirement("ops", "big", ("dba",), 1),
                Requirement("ops", "pii", ("privacy-office",), 1))
    pending = settle(store, registry, both).approval
    with pytest.raises(ApprovalError, match="alice is not in any approver group .* ops/big: "
                                            "dba; ops/pii: privacy-office"):
        store.vote(pending.approval_id, signer=signers["alice"], verdict="approved",
                   justification=None, registry=registry)
    store.vote(pending.approval_id, signer=signers["dana"], verdict="approved",
               justification=None, registry=registry)
    decided = store.vote(pending.approval_id, signer=signers["pria"], verdict="approved",
                         justification=None, registry=registry)
    assert decided.status == "approved" and decided.decided_by == ("dana", "pria")
    with pytest.raises(ApprovalError, match="it is approved \\(by dana, pria\\), not pending"):
        store.vote(pending.approval_id, signer=signers["pria"], verdict="rejected",
                   justification="x", registry=registry)
    with pytest.raises(ApprovalError, match="no approval 'nope'"):
        store.vote("nope", signer=signers["pria"], verdict="rejected", justification="x",
                   registry=registry)


def test_a_removed_approvers_vote_stops_counting(store: SQLiteApprovalStore, registry: Registry,
                                                 signers: dict[str, Signer], home: Path) -> None:
    pending = settle(store, registry).approval
    store.vote(pending.approval_id, signer=signers["alice"], verdict="approved",
               justification=None, registry=registry)
    without = registry.without("alice")
    refused = settle(store, without)
    assert refused.outcome == "pending"
    assert refused.problems == (f"approval {pending.approval_id} is not honoured: 'alice' with "
                                f"key {signers['alice'].key_id!r} is not a registered approver",)
    audit = store.audit(without)
    assert audit.ok and audit.notes == (f"approval {pending.approval_id}: the vote of alice "
                                        "cannot be checked: not in the approvers registry",)


def test_threads_with_their_own_stores_use_a_grant_once(home: Path, records: SQLiteRecordStore,
                                                        registry: Registry,
                                                        signers: dict[str, Signer]) -> None:
    stores = [SQLiteApprovalStore(store_path(home), records) for _ in range(6)]
    try:
        for round in range(4):
            request = call(f"env{round}")
            pending = settle(stores[0], registry, request).approval
            stores[1].vote(pending.approval_id, signer=signers["alice"], verdict="approved",
                           justification=None, registry=registry)
            barrier = threading.Barrier(len(stores))
            outcomes: list[str] = []

            def work(store: SQLiteApprovalStore, i: int) -> None:
                barrier.wait()
                outcomes.append(settle(store, registry, request,
                                       f"0190f0a0-0000-7000-8000-00000000{round}{i:03d}").outcome)

            threads = [threading.Thread(target=work, args=(s, i)) for i, s in enumerate(stores)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(outcomes) == ["granted"] + ["pending"] * 5
        assert records.verify().ok and stores[0].audit(registry).ok
    finally:
        for store in stores:
            store.close()


def test_concurrent_requests_for_one_call_make_one_approval(
        home: Path, records: SQLiteRecordStore, registry: Registry) -> None:
    stores = [SQLiteApprovalStore(store_path(home), records) for _ in range(6)]
    try:
        barrier = threading.Barrier(len(stores))
        made: list[str] = []

        def work(store: SQLiteApprovalStore) -> None:
            barrier.wait()
            made.append(settle(store, registry).approval.approval_id)

        threads = [threading.Thread(target=work, args=(s,)) for s in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(made)) == 1 and len(stores[0].list()) == 1
    finally:
        for store in stores:
            store.close()


def test_a_failing_chain_write_fails_closed(store: SQLiteApprovalStore, registry: Registry,
                                            records: SQLiteRecordStore, home: Path) -> None:
    records.close()
    with pytest.raises(ApprovalError, match="could not be chained"):
        settle(store, registry)
    with SQLiteRecordStore(home / "records.sqlite3") as reopened:   # nothing was kept
        again = SQLiteApprovalStore(store_path(home), reopened)
        try:
            assert again.list() == [] and reopened.count() == 0
        finally:
            again.close()


def test_the_database_is_private(store: SQLiteApprovalStore, registry: Registry,
                                 home: Path) -> None:
    import stat

    settle(store, registry)
    for name in ("approvals.sqlite3", "approvals.sqlite3-wal"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600


def test_times_must_be_positive(home: Path, records: SQLiteRecordStore) -> None:
    for name in ("ttl", "grant_ttl", "rejection_ttl"):
        for bad in (0, -1, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=f"{name} must be a positive number"):
                SQLiteApprovalStore(store_path(home), records, **{name: bad})


V1_RECORDS = """
CREATE TABLE records (
    sequence INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('decision', 'outcome')),
    decision_id TEXT NOT NULL, timestamp TEXT NOT NULL, decision TEXT, tool TEXT, rule TEXT,
    prev_hash TEXT NOT NULL, record_hash TEXT NOT NULL, json TEXT NOT NULL);
CREATE UNIQUE INDEX records_decision_id ON records (decision_id) WHERE kind = 'decision';
CREATE INDEX records_outcomes ON records (decision_id, sequence) WHERE kind = 'outcome';
CREATE INDEX records_by_time ON records (timestamp) WHERE kind = 'decision';
CREATE INDEX records_by_decision ON records (decision, sequence) WHERE kind = 'decision';
PRAGMA user_version=1;
"""


def test_a_version_1_record_store_is_migrated(tmp_path: Path, home: Path) -> None:
    from tests.records.conftest import decision_fields

    path = tmp_path / "records.sqlite3"
    with SQLiteRecordStore(path) as store:        # a chain of three entries ...
        first = store.append(decision_fields())
        store.append_outcome(first.decision_id, "skipped")
        store.append(decision_fields())
        head = store.verify()
    rows = sqlite3.connect(path).execute("SELECT * FROM records ORDER BY sequence").fetchall()
    path.unlink()
    old = sqlite3.connect(path)                   # ... as version 1 stored it
    old.executescript(V1_RECORDS)
    old.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    old.commit()
    old.close()
    with SQLiteRecordStore(path) as store:
        assert store.verify() == head
        approvals = SQLiteApprovalStore(tmp_path / "approvals.sqlite3", store)
        try:
            settle(approvals, Registry.load(home / "approvers.yaml"))
        finally:
            approvals.close()
        assert store.verify().ok and store.count() == 4
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2


def test_version_1_approvals_are_set_aside(tmp_path: Path, records: SQLiteRecordStore) -> None:
    path = tmp_path / "approvals.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("CREATE TABLE approvals (seq INTEGER PRIMARY KEY, approval_id TEXT, "
                      "status TEXT); CREATE INDEX approvals_by_status ON approvals (status, seq);"
                      "INSERT INTO approvals VALUES (1, 'ghost', 'approved');"
                      "PRAGMA user_version=1;")
    old.close()
    store = SQLiteApprovalStore(path, records)
    try:
        assert store.list() == []
    finally:
        store.close()
    kept = sqlite3.connect(path).execute("SELECT approval_id, status FROM approvals_v1")
    assert kept.fetchall() == [("ghost", "approved")]


def test_the_row_document_is_json_of_the_approval(store: SQLiteApprovalStore,
                                                  registry: Registry, home: Path) -> None:
    pending = settle(store, registry).approval
    stored = sqlite3.connect(store_path(home)).execute("SELECT document FROM approvals")
    assert json.loads(stored.fetchone()[0]) == pending.document()
