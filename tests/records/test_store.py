"""SQLiteRecordStore: append, get, query, outcomes, export, failures, the key file."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veto_opa.errors import RecordError
from veto_opa.records import (
    CSV_COLUMNS,
    GENESIS_HASH,
    DecisionRecord,
    SQLiteRecordStore,
    load_or_create_key,
    store_path,
    verify_export,
)
from veto_opa.records.model import entry_from_document, record_hash
from veto_opa.records.store import default_home

from .conftest import FieldsFactory, decision_fields

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def stored_json(store: SQLiteRecordStore, sequence: int) -> dict:
    with sqlite3.connect(store.path) as conn:
        (text,) = conn.execute(
            "SELECT json FROM records WHERE sequence = ?", (sequence,)
        ).fetchone()
    return json.loads(text)


# -- append and get --------------------------------------------------------------------------


def test_append_assigns_the_chain_and_returns_the_stored_record(
    store: SQLiteRecordStore, make_fields: FieldsFactory
) -> None:
    first = store.append(make_fields())
    second = store.append(make_fields())

    assert (first.sequence, second.sequence) == (1, 2)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.record_hash
    document = stored_json(store, 1)
    assert document == first.document()
    assert record_hash(document) == first.record_hash
    assert store.get(first.decision_id) == first
    assert store.get(second.decision_id) == second


def test_append_fills_in_decision_id_and_timestamp(
    store: SQLiteRecordStore, make_fields: FieldsFactory
) -> None:
    record = store.append(make_fields())

    assert uuid.UUID(record.decision_id).version == 7
    assert TIMESTAMP.match(record.timestamp)
    stamped = datetime.strptime(record.timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - stamped) < timedelta(minutes=1)


def test_append_keeps_and_normalises_caller_values(
    store: SQLiteRecordStore, make_fields: FieldsFactory
) -> None:
    decision_id = str(uuid.uuid4())
    when = datetime(2026, 11, 25, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    record = store.append(
        make_fields(decision_id=decision_id, timestamp=when, trace_id=1, span_id=2)
    )

    assert record.decision_id == decision_id
    assert record.timestamp == "2026-11-25T10:00:00.000005Z"
    assert record.trace_id == "0" * 31 + "1"
    assert record.span_id == "0" * 15 + "2"
    assert store.get(decision_id) == record


def test_get_unknown_id_is_none(store: SQLiteRecordStore) -> None:
    assert store.get(str(uuid.uuid4())) is None


@pytest.mark.parametrize("name", ["sequence", "prev_hash", "record_hash"])
def test_chain_fields_are_the_stores_to_assign(
    store: SQLiteRecordStore, make_fields: FieldsFactory, name: str
) -> None:
    with pytest.raises(RecordError, match=f"{name} are assigned by the store"):
        store.append(make_fields(**{name: 7 if name == "sequence" else GENESIS_HASH}))


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"decision": "maybe"}, "decision"),
        ({"reason": None}, "reason"),
        ({"arguments_sha256": "md5:abc"}, "arguments_sha256"),
        ({"decision_id": "not-a-uuid"}, "decision_id must be a UUID"),
        ({"trace_id": "xyz"}, "trace_id"),
        ({"latency_us": -1}, "latency_us"),
        ({"timestamp": "yesterday"}, "ISO 8601"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_invalid_fields_raise_record_error_and_write_nothing(
    store: SQLiteRecordStore, make_fields: FieldsFactory, overrides: dict, complaint: str
) -> None:
    with pytest.raises(RecordError, match="invalid decision record") as caught:
        store.append(make_fields(**overrides))
    assert complaint in str(caught.value)
    assert store.count() == 0


def test_duplicate_decision_id_is_refused_without_a_gap(
    store: SQLiteRecordStore, make_fields: FieldsFactory
) -> None:
    first = store.append(make_fields())
    with pytest.raises(RecordError, match="already recorded"):
        store.append(make_fields(decision_id=first.decision_id))
    nxt = store.append(make_fields())

    assert nxt.sequence == 2
    assert store.verify().ok


def test_reopening_continues_the_chain(home: Path, make_fields: FieldsFactory) -> None:
    with SQLiteRecordStore(store_path(home)) as store:
        last = [store.append(make_fields()) for _ in range(3)][-1]
    with SQLiteRecordStore(store_path(home)) as store:
        record = store.append(make_fields())
        assert record.sequence == 4
        assert record.prev_hash == last.record_hash
        assert store.verify().ok



def test_stores_sharing_a_file_extend_one_chain(home: Path, make_fields: FieldsFactory) -> None:
    # Each store remembers the head it left and inserts after it without reading it; when the
    # other one has appended meanwhile that insert must fail and be redone from the real head.
    with SQLiteRecordStore(store_path(home)) as a, SQLiteRecordStore(store_path(home)) as b:
        written = [a.append(make_fields()), a.append(make_fields()), b.append(make_fields()),
                   a.append(make_fields()), a.append(make_fields()), b.append(make_fields()),
                   b.append(make_fields()), a.append(make_fields())]

        assert [r.sequence for r in written] == list(range(1, 9))
        for before, after in zip(written, written[1:]):
            assert after.prev_hash == before.record_hash
        assert [stored_json(a, r.sequence) for r in written] == [r.document() for r in written]
        assert a.verify().ok and b.verify().ok


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 3)), min_size=1, max_size=12))
def test_any_interleaving_of_writers_keeps_one_chain(
    tmp_path: Path, make_fields: FieldsFactory, order: list[tuple[int, int]]
) -> None:
    """Three stores on one file take turns, each writing a lone record or a batch (several
    threads at once); whatever the order, the sequences are 1..n and the chain verifies."""
    path = tmp_path / uuid.uuid4().hex / "records.sqlite3"
    stores = [SQLiteRecordStore(path) for _ in range(3)]
    try:
        total = 0
        for which, count in order:
            threads = [threading.Thread(target=stores[which].append, args=(make_fields(),))
                       for _ in range(count)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            total += count
        with sqlite3.connect(path) as conn:
            sequences = [row[0] for row in conn.execute("SELECT sequence FROM records")]
        assert sorted(sequences) == list(range(1, total + 1))
        result = stores[0].verify()
        assert result.ok and result.count == total
    finally:
        for store in stores:
            store.close()

# -- query -----------------------------------------------------------------------------------


@pytest.fixture
def populated(store: SQLiteRecordStore) -> dict[str, DecisionRecord]:
    """Five decisions an hour apart, on 2026-11-25 from 08:00 UTC."""
    rows = [
        ("a", "deny", "execute_sql", "block_deletes"),
        ("b", "allow", "read_file", None),
        ("c", "require_approval", "execute_sql", "scope_database_access"),
        ("d", "deny", "send_email", "block_external_mail"),
        ("e", "deny", "execute_sql", "block_deletes"),
    ]
    records = {}
    for hour, (name, decision, tool, rule) in enumerate(rows, start=8):
        records[name] = store.append(
            decision_fields(
                decision=decision,
                tool=tool,
                rule=rule,
                timestamp=f"2026-11-25T{hour:02d}:00:00Z",
                approvers=["platform-team"] if decision == "require_approval" else [],
            )
        )
    return records


def names(records: list[DecisionRecord], populated: dict[str, DecisionRecord]) -> str:
    by_id = {record.decision_id: name for name, record in populated.items()}
    return "".join(by_id[record.decision_id] for record in records)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, "edcba"),
        ({"decision": "deny"}, "eda"),
        ({"decision": "allow"}, "b"),
        ({"decision": "require_approval"}, "c"),
        ({"tool": "execute_sql"}, "eca"),
        ({"tool": "nothing"}, ""),
        ({"rule": "block_deletes"}, "ea"),
        ({"since": "2026-11-25T10:00:00Z"}, "edc"),
        ({"until": "2026-11-25T10:00:00Z"}, "ba"),
        ({"since": "2026-11-25T09:00:00Z", "until": "2026-11-25T11:00:00Z"}, "cb"),
        ({"since": datetime(2026, 11, 25, 11, tzinfo=UTC)}, "ed"),
        ({"since": datetime(2026, 11, 25, 11)}, "ed"),  # naive means UTC
        ({"since": "2026-11-25T12:00:00+02:00"}, "edc"),  # 10:00 UTC
        ({"until": "2026-11-25"}, ""),
        ({"since": "2026-11-26"}, ""),
        ({"decision": "deny", "tool": "execute_sql"}, "ea"),
        ({"decision": "deny", "tool": "execute_sql", "since": "2026-11-25T09:00:00Z"}, "e"),
        ({"limit": 2}, "ed"),
        ({"decision": "deny", "limit": 1}, "e"),
        ({"limit": None}, "edcba"),
    ],
)
def test_query_filters_newest_first(
    store: SQLiteRecordStore, populated: dict[str, DecisionRecord], filters: dict, expected: str
) -> None:
    assert names(store.query(**filters), populated) == expected


def test_query_returns_whole_records(
    store: SQLiteRecordStore, populated: dict[str, DecisionRecord]
) -> None:
    (record,) = store.query(decision="require_approval")
    assert record == populated["c"]
    assert record.approvers == ["platform-team"]


def test_query_default_limit_is_100(store: SQLiteRecordStore, make_fields: FieldsFactory) -> None:
    for _ in range(105):
        store.append(make_fields())
    records = store.query()
    assert len(records) == 100
    assert [r.sequence for r in records] == list(range(105, 5, -1))


def test_query_rejects_a_bad_time(store: SQLiteRecordStore) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        store.query(since="last tuesday")


# -- outcomes --------------------------------------------------------------------------------


def test_outcome_is_its_own_chained_entry(
    store: SQLiteRecordStore, make_fields: FieldsFactory
) -> None:
    decision = store.append(make_fields(decision="allow", rule=None))
    executed = store.append_outcome(decision.decision_id, "executed")
    other = store.append(make_fields())
    skipped = store.append_outcome(other.decision_id, "skipped")

    assert executed.sequence == 2 and executed.prev_hash == decision.record_hash
    assert other.prev_hash == executed.record_hash
    assert skipped.sequence == 4 and skipped.prev_hash == other.record_hash
    assert store.outcomes(decision.decision_id) == [executed]
    assert store.outcomes(other.decision_id) == [skipped]
    assert store.get(decision.decision_id) == decision  # never updated
    assert [r.sequence for r in store.query()] == [3, 1]  # outcomes are not decisions
    assert stored_json(store, 2)["kind"] == "outcome"
    assert store.verify().ok


@pytest.mark.parametrize("decision, first, second, problem", [
    ("deny", "executed", None, "the decision was 'deny': a tool that was not allowed"),
    ("require_approval", "failed", None, "the decision was 'require_approval'"),
    ("allow", "executed", "failed", "the decision already has the outcome 'executed'"),
    ("allow", "executed", "executed", "the decision already has the outcome 'executed'"),
    ("deny", "skipped", "skipped", "the decision already has the outcome 'skipped'"),
])
def test_an_outcome_the_decision_does_not_allow_is_refused_and_recorded(
    store: SQLiteRecordStore, make_fields: FieldsFactory, decision: str, first: str,
    second: str | None, problem: str
) -> None:
    # A model (or a buggy dispatcher) claiming a denied call ran, or two outcomes for one call:
    # the claim is refused, and the attempt itself is evidence, kept in the chain.
    record = store.append(make_fields(decision=decision))
    attempts = [first] if second is None else [first, second]
    if second is not None:
        store.append_outcome(record.decision_id, first)
    with pytest.raises(RecordError, match=re.escape(problem)):
        store.append_outcome(record.decision_id, attempts[-1])
    outcomes = store.outcomes(record.decision_id)
    assert outcomes[-1].status == "refused" and problem in (outcomes[-1].error or "")
    assert [o.status for o in outcomes[:-1]] == attempts[:-1]
    assert store.verify().ok


def test_a_refused_attempt_does_not_count_as_the_outcome(
    store: SQLiteRecordStore, make_fields: FieldsFactory
) -> None:
    record = store.append(make_fields(decision="allow", rule=None))
    with pytest.raises(RecordError, match="unknown status"):
        store.append_outcome(record.decision_id, "exploded")
    assert store.append_outcome(record.decision_id, "failed", "boom").status == "failed"
    assert [o.status for o in store.outcomes(record.decision_id)] == ["refused", "failed"]


def test_outcome_for_unknown_decision_raises_and_takes_no_sequence(
    store: SQLiteRecordStore, make_fields: FieldsFactory
) -> None:
    store.append(make_fields())
    with pytest.raises(RecordError, match="unknown decision_id"):
        store.append_outcome(str(uuid.uuid4()), "executed")
    assert store.append(make_fields()).sequence == 2


@pytest.mark.parametrize("status", ["Executed", "", "ran ok", "x" * 40, "1st", "approved"])
def test_outcome_status_is_one_of_the_known_statuses(
    store: SQLiteRecordStore, make_fields: FieldsFactory, status: str
) -> None:
    decision = store.append(make_fields())
    with pytest.raises(RecordError, match="unknown status; expected one of executed, failed, "
                                          "skipped"):
        store.append_outcome(decision.decision_id, status)
    refused, = store.outcomes(decision.decision_id)
    assert refused.status == "refused" and repr(status) in (refused.error or "")


# -- export ----------------------------------------------------------------------------------


def test_jsonl_export_round_trip(
    store: SQLiteRecordStore, make_fields: FieldsFactory, tmp_path: Path
) -> None:
    decisions = [store.append(make_fields()) for _ in range(3)]
    outcome = store.append_outcome(decisions[0].decision_id, "skipped")
    path = tmp_path / "out" / "audit.jsonl"

    assert store.export(path) == 4

    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [line["kind"] for line in lines] == ["decision"] * 3 + ["outcome"]
    assert lines[:3] == [d.document() for d in decisions]
    assert lines[3] == outcome.document()
    assert [entry_from_document(line) for line in lines] == [*decisions, outcome]
    manifest = path.with_name("audit.jsonl.sha256").read_text(encoding="utf-8")
    assert manifest.endswith("  audit.jsonl\n")
    assert verify_export(path).ok
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file was renamed


def test_filtered_export_brings_the_outcomes_of_selected_decisions(
    store: SQLiteRecordStore, populated: dict[str, DecisionRecord], tmp_path: Path
) -> None:
    store.append_outcome(populated["a"].decision_id, "skipped")
    store.append_outcome(populated["b"].decision_id, "executed")
    path = tmp_path / "denies.jsonl"

    assert store.export(path, decision="deny", until="2026-11-25T12:00:00Z") == 3

    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [(x["kind"], x["decision_id"]) for x in lines] == [
        ("decision", populated["a"].decision_id),
        ("decision", populated["d"].decision_id),
        ("outcome", populated["a"].decision_id),
    ]
    assert verify_export(path, allow_gaps=True).ok
    strict = verify_export(path)
    assert not strict.ok and strict.first_bad_sequence == 2


def test_csv_export_round_trip(
    store: SQLiteRecordStore, make_fields: FieldsFactory, tmp_path: Path
) -> None:
    decision = store.append(
        make_fields(reason='=HYPERLINK("http://evil")', approvers=["a", "b"], rule=None,
                    decision="allow")
    )
    store.append_outcome(decision.decision_id, "failed", "exit status 2")
    path = tmp_path / "audit.csv"

    assert store.export(path, "csv") == 2

    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    first, second = rows
    assert first["kind"] == "decision" and first["sequence"] == "1"
    assert first["decision_id"] == decision.decision_id
    assert first["rule"] == ""  # null
    assert json.loads(first["approvers"]) == ["a", "b"]
    assert json.loads(first["arguments"]) == decision.arguments
    assert json.loads(first["context"]) == decision.context
    assert first["reason"] == '\'=HYPERLINK("http://evil")'  # no formula in a spreadsheet
    assert first["record_hash"] == decision.record_hash
    assert (second["kind"], second["status"], second["error"]) == (
        "outcome",
        "failed",
        "exit status 2",
    )
    assert second["tool"] == ""


def test_export_rejects_an_unknown_format(store: SQLiteRecordStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="jsonl"):
        store.export(tmp_path / "x.xml", "xml")  # type: ignore[arg-type]


def test_export_to_an_unwritable_place_raises_record_error(
    store: SQLiteRecordStore, make_fields: FieldsFactory, tmp_path: Path
) -> None:
    store.append(make_fields())
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RecordError, match="cannot write the export"):
        store.export(blocker / "audit.jsonl")


# -- failures --------------------------------------------------------------------------------


def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "records.sqlite3").mkdir()
    with pytest.raises(RecordError, match="cannot open decision records"):
        SQLiteRecordStore(tmp_path / "records.sqlite3")


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite3"
    path.write_bytes(b"definitely not SQLite " * 100)
    with pytest.raises(RecordError, match="cannot open decision records"):
        SQLiteRecordStore(path)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(RecordError, match="schema version 99"):
        SQLiteRecordStore(path)


def test_a_foreign_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE records (x)")
    with pytest.raises(RecordError, match="already exists"):
        SQLiteRecordStore(path)


def test_missing_store_without_create(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="no decision record store"):
        SQLiteRecordStore(tmp_path / "records.sqlite3", create=False)
    assert not (tmp_path / "records.sqlite3").exists()


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], None]]:
    """Makes a file read-only, for root too (chattr +i), and undoes it afterwards."""
    undo: list[Callable[[], None]] = []

    def make(path: Path) -> None:
        if os.geteuid() != 0:
            mode = path.stat().st_mode
            path.chmod(0o444)
            undo.append(lambda: path.chmod(mode))
            return
        chattr = shutil.which("chattr")
        if chattr is None or subprocess.run([chattr, "+i", str(path)], check=False).returncode:
            pytest.skip("running as root without chattr +i: cannot make a file read-only")
        undo.append(lambda: subprocess.run([chattr, "-i", str(path)], check=True))

    yield make
    for step in reversed(undo):
        step()


def test_read_only_database_raises_record_error(
    home: Path, make_fields: FieldsFactory, read_only: Callable[[Path], None]
) -> None:
    with SQLiteRecordStore(store_path(home)) as store:
        store.append(make_fields())
    read_only(store_path(home))

    with (
        pytest.raises(RecordError, match=r"readonly|read-only|cannot open"),
        SQLiteRecordStore(store_path(home)) as store,
    ):
        store.append(make_fields())


def test_locked_database_raises_record_error_then_recovers(
    home: Path, make_fields: FieldsFactory
) -> None:
    with SQLiteRecordStore(store_path(home), busy_timeout=0.05) as store:
        store.append(make_fields())
        other = sqlite3.connect(store_path(home), isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(RecordError, match="database is locked"):
                store.append(make_fields())
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert store.append(make_fields()).sequence == 2
        assert store.verify().ok


def test_a_write_waits_for_another_writer_to_finish(
    home: Path, make_fields: FieldsFactory
) -> None:
    # The store's connection does not use SQLite's busy handler; it retries itself until
    # busy_timeout. Another connection holds the write lock for a while, then lets go: the
    # append waits for it and lands on the chain.
    with SQLiteRecordStore(store_path(home), busy_timeout=10) as store:
        first = store.append(make_fields())
        other = sqlite3.connect(store_path(home), isolation_level=None,
                                check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        released = threading.Event()

        def release() -> None:
            time.sleep(0.2)
            other.execute("COMMIT")
            released.set()

        thread = threading.Thread(target=release)
        thread.start()
        try:
            second = store.append(make_fields())
        finally:
            thread.join()
            other.close()

        assert released.is_set()
        assert (second.sequence, second.prev_hash) == (2, first.record_hash)
        assert store.verify().ok


def test_full_disk_raises_record_error_then_recovers(
    store: SQLiteRecordStore, make_fields: FieldsFactory
) -> None:
    store.append(make_fields())
    # SQLite's page limit produces exactly the error of a full disk (SQLITE_FULL).
    pages = store._writer.execute("PRAGMA page_count").fetchone()[0]
    store._writer.execute(f"PRAGMA max_page_count = {pages}")
    big = {"blob": "x" * 200_000}
    with pytest.raises(RecordError, match="full"):
        store.append(make_fields(arguments=big))
    store._writer.execute("PRAGMA max_page_count = 1073741823")

    assert store.append(make_fields()).sequence == 2
    assert store.verify().ok


def test_closed_store_refuses_everything(home: Path, make_fields: FieldsFactory) -> None:
    store = SQLiteRecordStore(store_path(home))
    record = store.append(make_fields())
    store.close()
    store.close()  # idempotent
    with pytest.raises(RecordError, match="closed"):
        store.append(make_fields())
    with pytest.raises(RecordError, match="closed"):
        store.append_outcome(record.decision_id, "executed")
    with pytest.raises(RecordError, match="closed"):
        store.get(record.decision_id)
    with pytest.raises(RecordError, match="closed"):
        store.verify()


def test_bad_synchronous_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteRecordStore(tmp_path / "r.sqlite3", synchronous="sometimes")  # type: ignore[arg-type]


def test_full_synchronous_mode_works(tmp_path: Path, make_fields: FieldsFactory) -> None:
    with SQLiteRecordStore(tmp_path / "r.sqlite3", synchronous="full") as store:
        store.append(make_fields())
        assert store.verify().ok
        journal = store._writer.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = store._writer.execute("PRAGMA synchronous").fetchone()[0]
    assert (journal, synchronous) == ("wal", 2)


# -- home and key ----------------------------------------------------------------------------


def test_default_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VETO_HOME", raising=False)
    assert default_home() == Path(".veto")
    assert store_path() == Path(".veto") / "records.sqlite3"
    monkeypatch.setenv("VETO_HOME", str(tmp_path))
    assert store_path() == tmp_path / "records.sqlite3"


def test_key_is_created_once_with_mode_0600(home: Path) -> None:
    key = load_or_create_key(home)

    assert len(key) == 32
    assert stat.S_IMODE((home / "record.key").stat().st_mode) == 0o600
    assert load_or_create_key(home) == key
    assert [p.name for p in home.iterdir()] == ["record.key"]  # no temporary file left


def test_concurrent_key_creation_agrees(home: Path) -> None:
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        keys.append(load_or_create_key(home))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1


def test_a_key_of_the_wrong_size_is_refused(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "record.key").write_bytes(b"short")
    with pytest.raises(RecordError, match="expected 32 bytes, found 5"):
        load_or_create_key(home)


def test_package_exports() -> None:
    import veto_opa.records as package

    assert package.__all__ == sorted(package.__all__)
    for name in package.__all__:
        assert getattr(package, name) is not None
