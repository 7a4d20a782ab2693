"""The guard's unvalidated path to the store (decision_document + append_document) stores
exactly what the validated path (DecisionRecord + append) stores, and fails the same way."""

from __future__ import annotations

import os
import re
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veto_opa.errors import RecordError
from veto_opa.records import (
    DecisionRecord,
    SQLiteRecordStore,
    decision_document,
    new_decision_id,
    now_timestamp,
)
from veto_opa.records.model import CHAIN_FIELDS, GENESIS_HASH, format_timestamp

from .conftest import decision_fields

json_scalars = (st.none() | st.booleans() | st.integers() | st.text(max_size=10)
                | st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=10,
)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
optional_text = st.none() | st.text(max_size=12)
hex_id = lambda digits: st.none() | st.text("0123456789abcdef", min_size=digits,  # noqa: E731
                                            max_size=digits)
entries = st.fixed_dictionaries({
    "rule": st.text(max_size=8), "action": st.sampled_from(["allow", "deny"]),
    "message": st.text(max_size=8), "policy": st.text(max_size=8)})

fields = st.fixed_dictionaries({
    "decision_id": st.uuids(version=4).map(str),
    "tool": st.text(min_size=1, max_size=12),
    "arguments": st.none() | objects,
    "arguments_sha256": st.text("0123456789abcdef", min_size=64, max_size=64).map(
        lambda h: "sha256:" + h),
    "erased": st.lists(st.text(max_size=8), max_size=2),
    "context": objects,
    "model": optional_text,
    "call_id": optional_text,
    "decision": st.sampled_from(["allow", "deny", "require_approval"]),
    "rule": optional_text,
    "reason": st.text(max_size=20),
    "approvers": st.lists(st.text(max_size=6), max_size=3),
    "matched": st.lists(entries, max_size=2),
    "errors": st.lists(st.fixed_dictionaries({"rule": st.text(max_size=5),
                                              "detail": st.text(max_size=8)}), max_size=2),
    "approval_id": optional_text,
    "policy_name": optional_text,
    "policy_revision": optional_text,
    "engine": st.sampled_from(["embedded", "rest"]),
    "cause": optional_text,
    "latency_us": st.integers(min_value=0, max_value=10**7),
    "trace_id": hex_id(32),
    "span_id": hex_id(16),
    "opa_decision_id": optional_text,
})


@given(fields)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_the_document_is_the_validated_records_document(values: dict) -> None:
    timestamp = now_timestamp()
    document = decision_document(timestamp=timestamp, **values)
    placeholder = {"sequence": 1, "prev_hash": GENESIS_HASH, "record_hash": GENESIS_HASH}
    validated = DecisionRecord.model_validate({**values, "timestamp": timestamp, **placeholder})
    expected = validated.document()
    for name in CHAIN_FIELDS:
        del expected[name]
    assert document == expected
    assert list(document) == list(expected)   # the same field order, too


def test_now_timestamp_is_the_record_format_of_now() -> None:
    before = format_timestamp(datetime.now(UTC))
    stamps = [now_timestamp() for _ in range(2000)]
    after = format_timestamp(datetime.now(UTC))
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", s) for s in stamps)
    assert before <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= after


def test_an_unknown_decision_is_refused() -> None:
    with pytest.raises(ValueError, match="allow, deny or require_approval"):
        decision_document(**{**_values(), "decision": "maybe"})


def _values(**changes: object) -> dict:
    values = {
        "decision_id": str(uuid.uuid4()), "timestamp": now_timestamp(), "tool": "execute_sql",
        "arguments": {"statement": "SELECT 1"}, "arguments_sha256": "sha256:" + "ab" * 32,
        "erased": [], "context": {"environment": "production"}, "model": None,
        "call_id": None, "decision": "allow", "rule": None, "reason": "no rule applies",
        "approvers": [], "matched": [], "errors": [], "approval_id": None,
        "policy_name": "seed", "policy_revision": "r1", "engine": "embedded", "cause": None,
        "latency_us": 12, "trace_id": None, "span_id": None, "opa_decision_id": None,
    }
    values.update(changes)
    return values


@pytest.fixture
def store(tmp_path: Path):
    s = SQLiteRecordStore(tmp_path / "records.sqlite3")
    yield s
    s.close()


def test_append_document_chains_with_validated_appends(store: SQLiteRecordStore) -> None:
    first = store.append({k: v for k, v in _values().items() if k != "timestamp"})
    document = store.append_document(decision_document(**_values()))
    assert document["sequence"] == first.sequence + 1
    assert document["prev_hash"] == first.record_hash
    stored = store.get(document["decision_id"])
    assert stored is not None and stored.document() == document
    assert store.verify().ok and store.verify().count == 2


def test_append_document_refuses_chain_fields_and_other_kinds(store: SQLiteRecordStore) -> None:
    with pytest.raises(RecordError, match="sequence are assigned by the store"):
        store.append_document({**decision_document(**_values()), "sequence": 7})
    with pytest.raises(RecordError, match="decision documents"):
        store.append_document({"kind": "outcome", "decision_id": str(uuid.uuid4())})
    assert store.count() == 0


def test_a_document_that_is_not_json_fails_alone(store: SQLiteRecordStore) -> None:
    import threading

    bad = decision_document(**_values(context={"at": object()}))
    good = [decision_document(**_values()) for _ in range(3)]
    errors: list[Exception] = []

    def append(document: dict) -> None:
        try:
            store.append_document(document)
        except RecordError as e:
            errors.append(e)

    threads = [threading.Thread(target=append, args=(d,)) for d in [good[0], bad, *good[1:]]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1 and "not JSON" in str(errors[0])
    assert store.count() == 3 and store.verify().ok
    with sqlite3.connect(store.path) as conn:
        assert [r[0] for r in conn.execute("SELECT sequence FROM records")] == [1, 2, 3]


def test_a_decision_id_recorded_twice_is_refused(store: SQLiteRecordStore) -> None:
    document = decision_document(**_values())
    store.append_document(dict(document))
    with pytest.raises(RecordError, match="already recorded"):
        store.append_document(dict(document))
    assert store.count() == 1 and store.verify().ok


# -- decision ids ----------------------------------------------------------------------------


def test_decision_ids_are_version_7_uuids_that_begin_with_the_time() -> None:
    before = datetime.now(UTC).timestamp() * 1000
    ids = [new_decision_id() for _ in range(2000)]
    after = datetime.now(UTC).timestamp() * 1000

    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text                     # lowercase, hyphenated
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before - 1 <= parsed.int >> 80 <= after + 1   # Unix time in ms
    DecisionRecord.model_validate(decision_fields(  # the record's own check accepts them
        decision_id=ids[0], timestamp=now_timestamp(), sequence=1, prev_hash=GENESIS_HASH,
        record_hash=GENESIS_HASH))
    # Ids from different milliseconds sort in time order.
    stamps = [uuid.UUID(text).int >> 80 for text in ids]
    assert all(ids[i] < ids[j] for i in range(0, len(ids), 97) for j in range(len(ids))
               if stamps[i] < stamps[j])


def test_the_store_fills_in_a_version_7_id(tmp_path: Path) -> None:
    with SQLiteRecordStore(tmp_path / "records.sqlite3") as store:
        record = store.append(decision_fields())

    assert uuid.UUID(record.decision_id).version == 7


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    # Random bits are read ahead; a child that kept the parent's would make the same ids.
    new_decision_id()
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(writer, ",".join(new_decision_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(writer)
    parents = [new_decision_id() for _ in range(5)]
    os.waitpid(pid, 0)
    with os.fdopen(reader) as pipe:
        childs = pipe.read().split(",")

    def random_bits(text: str) -> int:
        return uuid.UUID(text).int & ((1 << 80) - 1)

    assert len(childs) == 5
    assert not {random_bits(t) for t in parents} & {random_bits(t) for t in childs}
