"""Fixtures for the decision record tests: a store in a temporary home and record fields."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from veto_opa.records import SQLiteRecordStore, arguments_digest

_counter = itertools.count()

FieldsFactory = Callable[..., dict[str, Any]]


def decision_fields(**overrides: Any) -> dict[str, Any]:
    """Fields of a plausible decision record; keyword arguments replace or add fields."""
    n = next(_counter)
    arguments = {"database": "analytics", "statement": f"SELECT {n}"}
    fields: dict[str, Any] = {
        "tool": "execute_sql",
        "arguments": arguments,
        "arguments_sha256": arguments_digest(arguments),
        "context": {"environment": "production", "subject": "user:alice"},
        "model": "mistral-large-latest",
        "call_id": f"call_{n}",
        "decision": "deny",
        "rule": "block_production_database_deletes",
        "reason": "Destructive SQL is not allowed on production databases",
        "matched": [{"rule": "block_production_database_deletes", "action": "deny"}],
        "policy_name": "sre",
        "policy_revision": "sha256:" + "ab" * 32,
        "engine": "embedded",
        "latency_us": 150,
    }
    fields.update(overrides)
    return fields


@pytest.fixture
def make_fields() -> FieldsFactory:
    return decision_fields


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / ".veto"


@pytest.fixture
def store(home: Path) -> Iterator[SQLiteRecordStore]:
    opened = SQLiteRecordStore(home / "records.sqlite3")
    yield opened
    opened.close()
