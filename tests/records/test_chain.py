"""The hash chain: concurrent appends, tampering caught by verify(), offline export checks."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veto_opa.records import GENESIS_HASH, SQLiteRecordStore, canonical_json, verify_export
from veto_opa.records.model import ChainChecker, record_hash, seal, sha256_digest

from .conftest import FieldsFactory, decision_fields


def test_eight_threads_append_one_gapless_chain(store: SQLiteRecordStore) -> None:
    threads, per_thread = 8, 2000
    returned: list[list[tuple[int, str]]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    start = threading.Barrier(threads)
    prepared = [decision_fields(tool=f"tool_{n}") for n in range(threads)]

    def work(slot: int) -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                record = store.append(prepared[slot])
                returned[slot].append((record.sequence, record.decision_id))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    assert store.count() == threads * per_thread
    with sqlite3.connect(store.path) as conn:
        sequences = [row[0] for row in conn.execute("SELECT sequence FROM records ORDER BY 1")]
        ids = {row[0] for row in conn.execute("SELECT decision_id FROM records")}
    assert sequences == list(range(1, threads * per_thread + 1))
    for slot, mine in enumerate(returned):
        assert len(mine) == per_thread
        assert [seq for seq, _ in mine] == sorted(seq for seq, _ in mine)  # each caller in order
        assert {decision_id for _, decision_id in mine} <= ids
        assert len(store.query(tool=f"tool_{slot}", limit=None)) == per_thread
    result = store.verify()
    assert result.ok, result
    assert result.count == threads * per_thread


def test_concurrent_decisions_and_outcomes(store: SQLiteRecordStore) -> None:
    decisions = [store.append(decision_fields(decision="allow", rule=None)) for _ in range(40)]

    def work(n: int) -> None:
        for i in range(50):
            if i % 5 == 0:   # each decision gets its one outcome
                store.append_outcome(decisions[n * 10 + i // 5].decision_id, "executed")
            else:
                store.append(decision_fields())

    workers = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert store.count() == 40 + 4 * 50
    assert sum(len(store.outcomes(d.decision_id)) for d in decisions) == 4 * 10
    assert store.verify().ok


def test_empty_store_verifies(store: SQLiteRecordStore) -> None:
    result = store.verify()
    assert (result.ok, result.count, result.head_hash) == (True, 0, None)


# -- tampering -------------------------------------------------------------------------------


def sql(store: SQLiteRecordStore, statement: str, *params: Any) -> None:
    with sqlite3.connect(store.path) as conn:
        conn.execute(statement, params)


def edit_json(store: SQLiteRecordStore, sequence: int, change: Callable[[dict], None]) -> None:
    with sqlite3.connect(store.path) as conn:
        (text,) = conn.execute(
            "SELECT json FROM records WHERE sequence = ?", (sequence,)
        ).fetchone()
        document = json.loads(text)
        change(document)
        conn.execute(
            "UPDATE records SET json = ? WHERE sequence = ?", (canonical_json(document), sequence)
        )


def rehash_from(store: SQLiteRecordStore, sequence: int) -> None:
    """A careful forger: recompute the hashes of ``sequence`` and every later row."""
    with sqlite3.connect(store.path) as conn:
        rows = conn.execute(
            "SELECT sequence, json FROM records WHERE sequence >= ? ORDER BY sequence", (sequence,)
        ).fetchall()
        prev = conn.execute(
            "SELECT record_hash FROM records WHERE sequence = ?", (sequence - 1,)
        ).fetchone()
        prev_hash = prev[0] if prev else GENESIS_HASH
        for seq, text in rows:
            document = json.loads(text)
            document["prev_hash"] = prev_hash
            body, prev_hash = seal(document)
            conn.execute(
                "UPDATE records SET json = ?, prev_hash = ?, record_hash = ? WHERE sequence = ?",
                (body, document["prev_hash"], prev_hash, seq),
            )


def swap_rows(store: SQLiteRecordStore) -> None:
    with sqlite3.connect(store.path) as conn:
        three = conn.execute("SELECT * FROM records WHERE sequence = 3").fetchone()
        four = conn.execute("SELECT * FROM records WHERE sequence = 4").fetchone()
        conn.execute("DELETE FROM records WHERE sequence IN (3, 4)")
        marks = ",".join("?" * len(three))
        conn.execute(f"INSERT INTO records VALUES ({marks})", (3, *four[1:]))
        conn.execute(f"INSERT INTO records VALUES ({marks})", (4, *three[1:]))


def insert_row(store: SQLiteRecordStore) -> None:
    """Slip a forged decision in at sequence 3, renumbering the rest (json untouched)."""
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE records SET sequence = -sequence WHERE sequence >= 3")
        conn.execute("UPDATE records SET sequence = 1 - sequence WHERE sequence < 0")
        row = conn.execute("SELECT * FROM records WHERE sequence = 2").fetchone()
        document = json.loads(row[-1])
        document.update(sequence=3, prev_hash=document["record_hash"], decision="allow")
        document["decision_id"] = "00000000-0000-4000-8000-000000000000"
        text, digest = seal(document)
        conn.execute(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                3,
                "decision",
                document["decision_id"],
                row[3],
                "allow",
                row[5],
                row[6],
                document["prev_hash"],
                digest,
                text,
            ),
        )


TAMPERING: dict[str, tuple[Callable[[SQLiteRecordStore], None], int, str]] = {
    "json decision edited": (
        lambda s: edit_json(s, 3, lambda d: d.update(decision="allow")),
        3,
        "does not match",
    ),
    "json arguments edited": (
        lambda s: edit_json(s, 4, lambda d: d["arguments"].update(database="prod")),
        4,
        "record_hash",
    ),
    "json reformatted only": (
        lambda s: sql(s, "UPDATE records SET json = json(' ' || json) WHERE sequence = 2"),
        None,
        "",
    ),
    "indexed decision column": (
        lambda s: sql(s, "UPDATE records SET decision = 'allow' WHERE sequence = 3"),
        3,
        "column decision='allow'",
    ),
    "indexed tool column": (
        lambda s: sql(s, "UPDATE records SET tool = 'read_file' WHERE sequence = 5"),
        5,
        "column tool='read_file'",
    ),
    "indexed timestamp column": (
        lambda s: sql(s, "UPDATE records SET timestamp = '2020-01-01' WHERE sequence = 1"),
        1,
        "column timestamp",
    ),
    "record_hash column": (
        lambda s: sql(s, "UPDATE records SET record_hash = ? WHERE sequence = 2", GENESIS_HASH),
        2,
        "column record_hash",
    ),
    "row deleted": (lambda s: sql(s, "DELETE FROM records WHERE sequence = 4"), 4, "missing"),
    "first row deleted": (lambda s: sql(s, "DELETE FROM records WHERE sequence = 1"), 1, "missing"),
    "rows swapped": (swap_rows, 3, "claims sequence 4"),
    "row inserted": (insert_row, 4, "claims sequence 3"),
    "invalid json": (
        lambda s: sql(s, "UPDATE records SET json = '{' WHERE sequence = 2"),
        2,
        "JSON",
    ),
    "forged row appended": (
        lambda s: sql(
            s,
            "INSERT INTO records SELECT 7, kind, '10000000-0000-4000-8000-000000000000', "
            "timestamp, decision, tool, rule, record_hash, record_hash, "
            "json_set(json, '$.sequence', 7) FROM records WHERE sequence = 6",
        ),
        7,
        "prev_hash",
    ),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_verify_names_the_tampered_sequence(store: SQLiteRecordStore, case: str) -> None:
    for _ in range(5):
        store.append(decision_fields())
    store.append_outcome(store.query(limit=1)[0].decision_id, "skipped")
    assert store.verify().ok
    tamper, bad_sequence, problem = TAMPERING[case]

    tamper(store)
    result = store.verify()

    if bad_sequence is None:  # whitespace is not content: the canonical text is re-derived
        assert result.ok, result
        return
    assert not result.ok
    assert result.first_bad_sequence == bad_sequence, result
    assert problem in (result.problem or "")
    assert result.count == bad_sequence - 1


def test_a_forger_who_rehashes_everything_changes_the_head(store: SQLiteRecordStore) -> None:
    """The limit of an unkeyed chain: rewriting every later hash passes verify() — but the
    head hash changes, so a head recorded earlier (an export's, a verify output) exposes it."""
    for _ in range(5):
        store.append(decision_fields())
    before = store.verify().head_hash

    edit_json(store, 3, lambda d: d.update(reason="fine"))
    rehash_from(store, 3)
    after = store.verify()

    assert after.ok
    assert after.head_hash != before


def test_an_anchor_catches_the_forger_who_rehashes_everything(
        store: SQLiteRecordStore) -> None:
    for _ in range(5):
        store.append(decision_fields())
    head = store.verify()
    with sqlite3.connect(store.path) as conn:
        (fifth,) = conn.execute("SELECT record_hash FROM records WHERE sequence = 5").fetchone()
    assert (head.head_sequence, head.head_hash) == (5, fifth)
    for _ in range(3):   # later records do not disturb an anchor
        store.append(decision_fields())
    assert store.verify(anchors={5: head.head_hash}).ok

    edit_json(store, 3, lambda d: d.update(reason="fine"))
    rehash_from(store, 3)
    assert store.verify().ok   # the chain alone cannot tell
    result = store.verify(anchors={5: head.head_hash})

    assert (result.ok, result.first_bad_sequence, result.count) == (False, 5, 4)
    assert result.problem is not None and "differs from the anchor " + head.head_hash in (
        result.problem)


def test_an_anchor_catches_a_chain_cut_short(store: SQLiteRecordStore) -> None:
    for _ in range(5):
        store.append(decision_fields())
    head = store.verify()
    sql(store, "DELETE FROM records WHERE sequence > 3")
    assert store.verify().ok   # what is left is a whole chain

    result = store.verify(anchors={head.head_sequence: head.head_hash})

    assert (result.ok, result.first_bad_sequence, result.count) == (False, 5, 3)
    assert result.problem == ("the chain ends at sequence 3, before the anchored sequence 5: "
                              "records were removed")


def test_an_anchor_with_another_hash_fails_there() -> None:
    checker = ChainChecker(anchors={2: "sha256:" + "0" * 64})
    prev = GENESIS_HASH
    for sequence in (1, 2, 3):
        document = {"kind": "decision", "sequence": sequence, "prev_hash": prev, "n": sequence}
        _, prev = seal(document)
        checker.feed(document)
    result = checker.result()
    assert (result.ok, result.first_bad_sequence, result.count) == (False, 2, 1)
    assert (result.head_sequence, result.head_hash) == (1, record_hash(
        {"kind": "decision", "sequence": 1, "prev_hash": GENESIS_HASH, "n": 1}))


def test_edit_of_a_middle_row_also_breaks_the_next_link() -> None:
    """A forger who rehashes only the edited row is caught at the following one."""
    checker = ChainChecker()
    documents = []
    prev = GENESIS_HASH
    for n in range(1, 4):
        document = {"kind": "outcome", "sequence": n, "prev_hash": prev, "status": "executed"}
        _, prev = seal(document)
        documents.append(document)
    documents[1]["status"] = "failed"
    seal(documents[1])
    results = [checker.feed(d) for d in documents]
    assert results == [True, True, False]
    assert checker.first_bad_sequence == 3


# -- seal == record_hash + canonical_json, whatever the content ------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=10,
)
tricky_text = st.sampled_from(
    [
        ',"record_hash":"' + GENESIS_HASH + '"',
        '"record_hash"',
        "\\",
        '\\",',
        "\u2028",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    context=st.dictionaries(
        st.text(max_size=12) | st.just("record_hash"), json_values | tricky_text
    ),
    reason=st.text(max_size=40) | tricky_text,
    rule=st.none() | st.text(max_size=20) | tricky_text,
)
def test_seal_matches_the_definition(context: dict, reason: str, rule: str | None) -> None:
    fields = decision_fields(context=context, reason=reason, rule=rule, tool=reason or "t")
    document = {**fields, "kind": "decision", "sequence": 9, "prev_hash": "sha256:" + "1" * 64}
    text, digest = seal(document)
    assert digest == record_hash(document)
    assert text == canonical_json(document)
    body = {k: v for k, v in document.items() if k != "record_hash"}
    assert digest == sha256_digest(document["prev_hash"] + canonical_json(body))


def test_seal_refuses_what_is_not_json() -> None:
    document = {**decision_fields(), "kind": "decision", "sequence": 1,
                "prev_hash": GENESIS_HASH, "latency_us": float("nan")}
    with pytest.raises(ValueError):
        seal(document)
    with pytest.raises(TypeError):
        seal({**document, "latency_us": 1, "context": {1: "a", "b": 2}})


def test_stored_hashes_follow_the_definition(store: SQLiteRecordStore) -> None:
    tricky = {"record_hash": GENESIS_HASH, "x": ',"record_hash":"' + GENESIS_HASH + '"'}
    record = store.append(decision_fields(context=tricky, reason=tricky["x"]))
    document = record.document()
    body = {k: v for k, v in document.items() if k != "record_hash"}
    assert record.record_hash == sha256_digest(record.prev_hash + canonical_json(body))
    assert store.verify().ok


# -- exports, offline ------------------------------------------------------------------------


@pytest.fixture
def export_file(store: SQLiteRecordStore, tmp_path: Path, make_fields: FieldsFactory) -> Path:
    decisions = [store.append(make_fields()) for _ in range(4)]
    store.append_outcome(decisions[1].decision_id, "skipped")
    path = tmp_path / "audit.jsonl"
    assert store.export(path) == 5
    return path


def rewrite_line(path: Path, number: int, change: Callable[[dict], None]) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    document = json.loads(lines[number - 1])
    change(document)
    lines[number - 1] = canonical_json(document)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_export_verifies_and_matches_the_store(store: SQLiteRecordStore, export_file: Path) -> None:
    result = verify_export(export_file)
    assert result.ok and result.count == 5
    assert result.head_hash == store.verify().head_hash


def test_verify_export_with_anchors(store: SQLiteRecordStore, export_file: Path) -> None:
    head = store.verify()
    assert verify_export(export_file, anchors={head.head_sequence: head.head_hash}).ok
    wrong = verify_export(export_file, anchors={1: "sha256:" + "1" * 64})
    assert (wrong.ok, wrong.first_bad_sequence) == (False, 1)
    # A filtered export may end before an anchor; a whole one may not.
    later = {head.head_sequence + 1: head.head_hash}
    assert verify_export(export_file, allow_gaps=True, anchors=later).ok
    assert not verify_export(export_file, anchors=later).ok


def test_verify_export_catches_an_edited_line(export_file: Path) -> None:
    rewrite_line(export_file, 3, lambda d: d.update(decision="allow"))
    result = verify_export(export_file)
    assert not result.ok
    assert result.first_bad_sequence == 3
    assert "record_hash" in (result.problem or "")


def test_verify_export_catches_a_removed_line(export_file: Path) -> None:
    lines = export_file.read_text(encoding="utf-8").splitlines()
    export_file.write_text("\n".join(lines[:1] + lines[2:]) + "\n", encoding="utf-8")
    result = verify_export(export_file)
    assert (result.ok, result.first_bad_sequence) == (False, 2)
    assert "missing" in (result.problem or "")


def test_verify_export_catches_truncation_with_the_manifest(export_file: Path) -> None:
    lines = export_file.read_text(encoding="utf-8").splitlines()
    export_file.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    result = verify_export(export_file)
    assert not result.ok
    assert result.first_bad_sequence is None
    assert "does not match audit.jsonl.sha256" in (result.problem or "")
    export_file.with_name("audit.jsonl.sha256").unlink()
    assert verify_export(export_file).ok  # without the manifest a prefix is a valid chain


def test_verify_export_catches_garbage(export_file: Path) -> None:
    with open(export_file, "a", encoding="utf-8") as handle:
        handle.write("not json\n")
    result = verify_export(export_file)
    assert (result.ok, result.first_bad_sequence) == (False, 6)
    assert "line 6 is not valid JSON" in (result.problem or "")


def test_verify_export_of_a_missing_file(tmp_path: Path) -> None:
    from veto_opa.errors import RecordError

    with pytest.raises(RecordError, match="cannot read export"):
        verify_export(tmp_path / "nothing.jsonl")
