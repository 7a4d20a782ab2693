"""Decision records: one durable, hash-chained entry per guard call, and what happened next.

    from veto_opa.records import SQLiteRecordStore, load_or_create_key, prepare_arguments

    key = load_or_create_key(".veto")
    store = SQLiteRecordStore(".veto/records.sqlite3")
    args = prepare_arguments('{"password": "hunter2"}', ["args.password"], key)
    record = store.append({"tool": "login", **args.fields(), "decision": "allow", ...})

Modules: :mod:`~veto_opa.records.model` (record shapes, hashing, the chain rule),
:mod:`~veto_opa.records.redaction` (``args.*`` paths and keyed digests),
:mod:`~veto_opa.records.store` (the SQLite store with group commit),
:mod:`~veto_opa.records.export` (JSONL/CSV files and offline verification),
:mod:`~veto_opa.records.cli` (``veto-opa decisions ...``).
"""

from __future__ import annotations

from veto_opa.records.export import CSV_COLUMNS, verify_export
from veto_opa.records.model import (
    GENESIS_HASH,
    DecisionRecord,
    OutcomeRecord,
    VerifyResult,
    arguments_digest,
    canonical_json,
    decision_document,
    new_decision_id,
    now_timestamp,
    sha256_digest,
)
from veto_opa.records.redaction import (
    PreparedArguments,
    parse_redact_path,
    prepare_arguments,
    redact,
)
from veto_opa.records.store import (
    RecordStore,
    SQLiteRecordStore,
    default_home,
    load_or_create_key,
    store_path,
)

__all__ = [
    "CSV_COLUMNS",
    "DecisionRecord",
    "GENESIS_HASH",
    "OutcomeRecord",
    "PreparedArguments",
    "RecordStore",
    "SQLiteRecordStore",
    "VerifyResult",
    "arguments_digest",
    "canonical_json",
    "decision_document",
    "default_home",
    "load_or_create_key",
    "new_decision_id",
    "now_timestamp",
    "parse_redact_path",
    "prepare_arguments",
    "redact",
    "sha256_digest",
    "store_path",
    "verify_export",
]
