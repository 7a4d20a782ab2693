"""Decision records: one durable, hash-chained entry per guard call, and what happened next.

    from veto_opa.records import SQLiteRecordStore

    with SQLiteRecordStore(".veto/records.sqlite3") as store:
        store.query(decision="deny", since="2026-11-25")
        assert store.verify().ok

Modules: :mod:`~veto_opa.records.model` (record shapes, hashing, the chain rule),
:mod:`~veto_opa.records.redaction` (``args.*`` paths and keyed digests),
:mod:`~veto_opa.records.store` (the SQLite store with group commit),
:mod:`~veto_opa.records.export` (JSONL/CSV files and offline verification),
:mod:`~veto_opa.records.cli` (``veto-opa decisions ...``).
"""

from __future__ import annotations

from veto_opa._json import canonical_json, sha256_digest
from veto_opa.records.export import CSV_COLUMNS, verify_export
from veto_opa.records.model import (
    GENESIS_HASH,
    OUTCOME_STATUSES,
    DecisionRecord,
    GuardRecord,
    OutcomeRecord,
    RecordedCall,
    VerifyResult,
    arguments_digest,
    new_decision_id,
    now_timestamp,
)
from veto_opa.records.redaction import (
    PreparedArguments,
    Redactor,
    prepare_arguments,
    redact,
)
from veto_opa.records.store import (
    RecordStore,
    SQLiteRecordStore,
    load_or_create_key,
    store_path,
)

__all__ = [
    "CSV_COLUMNS",
    "DecisionRecord",
    "GENESIS_HASH",
    "GuardRecord",
    "OUTCOME_STATUSES",
    "OutcomeRecord",
    "PreparedArguments",
    "RecordStore",
    "RecordedCall",
    "Redactor",
    "SQLiteRecordStore",
    "VerifyResult",
    "arguments_digest",
    "canonical_json",
    "load_or_create_key",
    "new_decision_id",
    "now_timestamp",
    "prepare_arguments",
    "redact",
    "sha256_digest",
    "store_path",
    "verify_export",
]
