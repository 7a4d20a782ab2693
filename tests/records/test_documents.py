"""The guard's path to the store (a GuardRecord + append_decision) stores exactly what the
validated path (DecisionRecord + append) stores, and fails the same way."""

from __future__ import annotations

import re
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veto_opa.decision import Match, RuleError, Verdict
from veto_opa.errors import RecordError
from veto_opa.records import (
    DecisionRecord,
    GuardRecord,
    RecordedCall,
    SQLiteRecordStore,
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
hex_digits = st.text("0123456789abcdef", min_size=64, max_size=64)
hex_id = lambda digits: st.none() | st.text("0123456789abcdef", min_size=digits,  # noqa: E731
                                            max_size=digits)
actions = st.sampled_from(["allow", "deny", "require_approval"])
names = st.lists(st.text(max_size=6), max_size=3).map(tuple)

calls = st.builds(
    RecordedCall, tool=st.text(min_size=1, max_size=12), arguments=st.none() | objects,
    arguments_digest=st.sampled_from(["sha256:", "hmac-sha256:"]).flatmap(
        lambda prefix: hex_digits.map(lambda h: prefix + h)),
    erased=st.lists(st.text(max_size=8), max_size=2).map(tuple), context=objects,
    context_digest=st.none() | hex_digits.map(lambda h: "sha256:" + h),
    model=optional_text, call_id=optional_text)
verdicts = st.builds(
    Verdict, decision=actions, reason=st.text(max_size=20), rule=optional_text,
    approvers=names,
    matched=st.lists(st.builds(Match, rule=st.text(max_size=8), action=actions,
                               message=st.text(max_size=8), policy=optional_text,
                               approvers=names), max_size=2).map(tuple),
    errors=st.lists(st.builds(RuleError, rule=st.text(max_size=5), detail=st.text(max_size=8),
                              policy=optional_text), max_size=2).map(tuple),
    policy_name=optional_text, policy_revision=optional_text)
records = st.builds(
    GuardRecord, decision_id=st.uuids(version=4).map(str), timestamp=st.just(now_timestamp()),
    call=calls, verdict=verdicts, engine=st.sampled_from(["embedded", "rest"]),
    latency_us=st.integers(min_value=0, max_value=10**7), approval_id=optional_text,
    cause=optional_text, trace_id=hex_id(32), span_id=hex_id(16), opa_decision_id=optional_text)


@given(records)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_the_document_is_the_validated_records_document(record: GuardRecord) -> None:
    document = record.document()
    placeholder = {"sequence": 1, "prev_hash": GENESIS_HASH, "record_hash": GENESIS_HASH}
    expected = DecisionRecord.model_validate({**document, **placeholder}).document()
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


def _record(**changes: object) -> GuardRecord:
    call = RecordedCall("execute_sql", {"statement": "SELECT 1"}, "sha256:" + "ab" * 32,
                        context={"environment": "production"})
    values: dict = {"decision_id": new_decision_id(), "timestamp": now_timestamp(),
                    "call": call, "verdict": Verdict("allow", "no rule applies",
                                                     policy_name="seed", policy_revision="r1"),
                    "engine": "embedded", "latency_us": 12}
    values.update(changes)
    return GuardRecord(**values)


@pytest.fixture
def store(tmp_path: Path):
    s = SQLiteRecordStore(tmp_path / "records.sqlite3")
    yield s
    s.close()


def test_append_decision_chains_with_validated_appends(store: SQLiteRecordStore) -> None:
    first = store.append(decision_fields())
    record = _record()
    store.append_decision(record)
    stored = store.get(record.decision_id)
    assert stored is not None
    assert stored.sequence == first.sequence + 1 and stored.prev_hash == first.record_hash
    assert {k: v for k, v in stored.document().items() if k not in CHAIN_FIELDS} == (
        record.document())
    assert store.verify().ok and store.verify().count == 2


def test_a_record_that_is_not_json_fails_alone(store: SQLiteRecordStore) -> None:
    bad = _record(call=RecordedCall("t", {"at": object()}, "sha256:" + "ab" * 32))
    good = [_record() for _ in range(3)]
    errors: list[Exception] = []

    def append(record: GuardRecord) -> None:
        try:
            store.append_decision(record)
        except RecordError as e:
            errors.append(e)

    threads = [threading.Thread(target=append, args=(r,)) for r in [good[0], bad, *good[1:]]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1 and "not JSON" in str(errors[0])
    assert store.count() == 3 and store.verify().ok
    with sqlite3.connect(store.path) as conn:
        assert [r[0] for r in conn.execute("SELECT sequence FROM records")] == [1, 2, 3]


def test_a_decision_id_recorded_twice_is_refused(store: SQLiteRecordStore) -> None:
    record = _record()
    store.append_decision(record)
    with pytest.raises(RecordError, match="already recorded"):
        store.append_decision(record)
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
