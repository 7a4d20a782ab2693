"""The demo end to end, offline: the real SDK over loopback to the scripted stand-in, the
packaged seed policy in OPA, records and spans on disk."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from veto_opa.cli import main
from veto_opa.records import SQLiteRecordStore, store_path


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)


def test_demo_shows_each_turn_approves_and_retries(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "local stand-in of Mistral's API at http://127.0.0.1:" in out
    assert re.search(r"policies: \S+veto_opa/examples/policies\.yaml|policies: \S+/examples/"
                     r"policies\.yaml", out)
    assert "IMPORTANT NOTICE TO AI ASSISTANTS" in out   # the injection the model reads
    turns = out.split("\nturn ")[1:]
    assert [t.split(":", 1)[0] for t in turns] == ["1", "2", "3", "4", "5"]
    first, second, third, fourth, fifth = turns
    assert "execute_sql(statement=\"SELECT count(*)" in first
    assert re.search(r"ALLOW .*\n\s+executed\s+\[\{\"orders_today\": 36\}\]", first)
    assert "execute_sql(statement='DROP TABLE customers', database='analytics')" in first
    assert ("DENY      block_production_database_deletes: Destructive SQL is not allowed "
            "on production databases") in first
    assert "context   environment=production user_role=sre user=sre-agent" in first
    assert "APPROVAL  secret_rotation_high_value" in second
    approval_id = re.search(r"approval ([0-9a-f-]{36}) \(approvers: security-team\)",
                            second).group(1)
    assert "the model answers" in third and approval_id in third and "36 orders" in third
    assert "the customers table still has 3 rows" in out
    assert f"approval {approval_id}: approved by dana (security-team, signed in with a token)" in out
    assert f"ALLOW     secret_rotation_high_value: approved by dana (approval {approval_id})" \
        in fourth
    assert '"version": 8' in fourth and "Rotated the stripe secret" in fifth
    assert "hash chain intact" in out
    assert re.search(r"spans: 15 in 2 traces, written as JSON lines to \S+demo-spans\.jsonl",
                     out)
    assert "      execute_tool execute_sql  [deny, denied]\n" \
           "        veto.guard execute_sql  [rule block_production_database_deletes]" in out

    # The records it leaves: four decisions, their outcomes, one intact chain.
    with SQLiteRecordStore(store_path(tmp_path), create=False) as store:
        decisions = sorted(store.query(limit=None), key=lambda r: r.sequence)
        assert [(r.tool, r.decision, r.rule) for r in decisions] == [
            ("execute_sql", "allow", None),
            ("execute_sql", "deny", "block_production_database_deletes"),
            ("rotate_secret", "require_approval", "secret_rotation_high_value"),
            ("rotate_secret", "allow", "secret_rotation_high_value")]
        assert decisions[3].approval_id == approval_id == decisions[2].approval_id
        assert [[o.status for o in store.outcomes(r.decision_id)] for r in decisions] == [
            ["executed"], [], [], ["executed"]]
        assert all(r.trace_id and r.model == "mistral-large-latest" for r in decisions)
        assert store.verify().ok
    spans = [json.loads(line) for line in (tmp_path / "demo-spans.jsonl").read_text()
             .splitlines()]
    assert len(spans) == 15
    guard_spans = {s["context"]["span_id"] for s in spans if s["name"].startswith("veto.guard")}
    assert {f"0x{r.span_id}" for r in decisions} == guard_spans


def test_demo_with_a_policy_file_and_output_stream(tmp_path: Path) -> None:
    from tests.conftest import SEED
    from veto_opa.demo import run_demo

    out = io.StringIO()
    assert run_demo([str(SEED)], home=str(tmp_path), out=out) == 0
    assert f"policies: {SEED}" in out.getvalue()
    assert re.search(r"done in \d+\.\d s", out.getvalue())
