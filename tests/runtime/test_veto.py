"""Veto: configuration, guard(), records, approvals, reload, the decorator."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import SEED
from veto_opa import ApprovalRequired, Decision, Denied, PolicyError, Veto
from veto_opa.engines import EmbeddedEngine, RestEngine
from veto_opa.engines.fake import FakeEngine
from veto_opa.records import SQLiteRecordStore, canonical_json, sha256_digest

PROD = {"environment": "production", "user_role": "sre"}
DROP = {"statement": "DROP TABLE customers", "database": "analytics"}
SELECT = {"statement": "SELECT 1", "database": "analytics"}


@pytest.fixture
def veto(tmp_path: Path):
    v = Veto([SEED], home=tmp_path / ".veto", reload_interval=0)
    yield v
    v.close()


def test_default_loads_veto_policies_yaml_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "veto").mkdir()
    shutil.copy(SEED, tmp_path / "veto" / "policies.yaml")
    monkeypatch.chdir(tmp_path)
    with Veto(reload_interval=0) as v:
        assert isinstance(v.engine, EmbeddedEngine)
        assert v.guard("execute_sql", DROP, PROD).decision == "deny"
        assert v.settings.home == Path(".veto")
    assert (tmp_path / ".veto" / "records.sqlite3").exists()


def test_environment_configures_policies_home_and_records(tmp_path, monkeypatch):
    monkeypatch.setenv("VETO_POLICIES", f"{SEED}")
    monkeypatch.setenv("VETO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VETO_RECORDS", "false")
    monkeypatch.setenv("VETO_RELOAD_INTERVAL", "0")
    with Veto() as v:
        assert v.records is None
        assert v.guard("execute_sql", DROP, PROD).rule == "block_production_database_deletes"
    assert not (tmp_path / "home").exists()


def test_opa_url_selects_the_rest_engine(tmp_path, seed_bundle, monkeypatch):
    from tests.opa_standin import OpaStandin

    with OpaStandin(seed_bundle) as url:
        monkeypatch.setenv("VETO_OPA_URL", url)
        with Veto(home=tmp_path) as v:
            assert isinstance(v.engine, RestEngine)
            d = v.guard("execute_sql", DROP, PROD)
            assert d.decision == "deny" and d.rule == "block_production_database_deletes"
            assert v.records.get(d.decision_id).engine == "rest"


def test_bad_policy_files_fail_at_construction_with_positions(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    action: nope\n")
    with pytest.raises(PolicyError) as info:
        Veto([bad], home=tmp_path)
    assert str(info.value).startswith(f"{bad}:3:13: action must be one of")


def test_guard_returns_the_decision(veto: Veto) -> None:
    d = veto.guard("execute_sql", DROP, PROD, model="mistral-large-latest", call_id="D681PevKs")
    assert isinstance(d, Decision)
    assert (d.decision, d.allowed, d.rule) == ("deny", False, "block_production_database_deletes")
    assert d.reason == "Destructive SQL is not allowed on production databases"
    assert uuid.UUID(d.decision_id).version == 7
    assert d.policy_name == "policies" and d.policy_revision.startswith("sha256:")
    assert d.matched[0].rule == "block_production_database_deletes"
    assert d.cause is None and d.approval_id is None
    allowed = veto.guard("execute_sql", SELECT, PROD)
    assert allowed.allowed and allowed.decision == "allow" and allowed.rule is None


def test_arguments_as_mistral_json_text(veto: Veto) -> None:
    d = veto.guard("execute_sql", json.dumps(DROP), PROD)
    assert d.decision == "deny"
    # No arguments at all: both rotate_secret rules are in error; the deny one fails closed.
    empty = veto.guard("rotate_secret", "", {})
    assert empty.decision == "deny" and empty.rule == "block_root_secret_paths"
    assert [e.rule for e in empty.errors] == ["secret_rotation_high_value",
                                                 "block_root_secret_paths"]


ALLOW = {"decision": "allow", "rule": None, "reason": "ok", "approvers": [], "matched": [],
         "errors": [], "policy": {"name": "p", "revision": "r"}}


@pytest.mark.parametrize("arguments", [
    {"statement": "SELECT 'é'", "database": "analytics", "n": [1, 2.5, None]},
    '{"n": [1, 2.5, null],  "statement": "SELECT \'\\u00e9\'", "database": "analytics"}',
])
def test_engine_gets_the_input_document(tmp_path: Path, arguments: object) -> None:
    engine = FakeEngine(lambda input: ALLOW)
    with Veto(engine=engine, home=tmp_path) as veto:
        d = veto.guard("execute_sql", arguments, PROD, model="m", call_id="c1")
    (input, _), = engine.calls
    assert input == {
        "tool": "execute_sql", "args": {"statement": "SELECT 'é'", "database": "analytics",
                                        "n": [1, 2.5, None]},
        "context": PROD, "model": "m", "call_id": "c1"}
    # The record's digest is of the canonical arguments, whichever form the model sent.
    assert veto_record_digest(tmp_path, d.decision_id) == sha256_digest(
        canonical_json(input["args"]))


def veto_record_digest(home: Path, decision_id: str) -> str:
    with SQLiteRecordStore(home / "records.sqlite3") as store:
        return store.get(decision_id).arguments_sha256


def test_record_is_committed_before_guard_returns(veto: Veto) -> None:
    d = veto.guard("execute_sql", DROP, PROD, model="mistral-small", call_id="abcdefghi")
    record = veto.records.get(d.decision_id)
    assert record is not None
    assert (record.tool, record.decision, record.rule) == ("execute_sql", "deny", d.rule)
    assert record.arguments == DROP and record.arguments_sha256.startswith("sha256:")
    assert (record.model, record.call_id, record.context) == ("mistral-small", "abcdefghi", PROD)
    assert record.policy_revision == d.policy_revision and record.engine == "embedded"
    assert record.latency_us > 0
    assert veto.records.verify().ok


def test_redaction_from_the_policy_file_and_settings(tmp_path: Path) -> None:
    policy = tmp_path / "secrets.yaml"
    policy.write_text("redact: [args.password]\nrules:\n  - name: r\n    tool: login\n"
                      "    when: args.password == 'hunter2'\n    action: deny\n")
    with Veto([policy], home=tmp_path / "h", redact=["args.otp"], reload_interval=0) as v:
        d = v.guard("login", {"user": "bob", "password": "hunter2", "otp": "123456"})
        assert d.decision == "deny"   # decided on the real value
        record = v.records.get(d.decision_id)
        assert record.arguments["user"] == "bob"
        assert record.arguments["password"].startswith("hmac-sha256:")
        assert record.arguments["otp"].startswith("hmac-sha256:")
        assert sorted(record.erased) == ["args.otp", "args.password"]
        stored = (tmp_path / "h" / "records.sqlite3").read_bytes()
        assert b"hunter2" not in stored and b"123456" not in stored


def test_record_outcome(veto: Veto) -> None:
    d = veto.guard("execute_sql", SELECT, PROD)
    veto.record_outcome(d.decision_id, "executed")
    assert [o.status for o in veto.records.outcomes(d.decision_id)] == ["executed"]
    assert veto.records.verify().ok


def test_records_query_and_export(veto: Veto, tmp_path: Path) -> None:
    veto.guard("execute_sql", DROP, PROD)
    veto.guard("execute_sql", SELECT, PROD)
    veto.guard("rotate_secret", {"secret_path": "/x", "service": "stripe"}, {})
    assert [r.decision for r in veto.records.query(decision="deny")] == ["deny"]
    assert len(veto.records.query(tool="execute_sql")) == 2
    # three decisions and the "requested" event of rotate_secret's approval request
    assert veto.records.export(tmp_path / "out.jsonl") == 4


def test_approval_lets_the_same_call_through_once(veto: Veto, tmp_path: Path) -> None:
    from veto_opa.approvals import Approver, Identity, Registry
    from veto_opa.approvals.registry import new_token_key

    token, key = new_token_key()
    Registry({}).with_approver(Identity("sam", ("security-team",), (), (key,))).save(
        tmp_path / ".veto" / "approvers.yaml")
    args = {"secret_path": "/secrets/app/stripe", "service": "stripe"}
    ctx = {"user": "alice"}
    first = veto.guard("rotate_secret", args, ctx)
    assert first.decision == "require_approval" and first.approval_id
    assert first.approvers == ("security-team",)
    again = veto.guard("rotate_secret", args, ctx)
    assert again.approval_id == first.approval_id   # one pending request, not two
    with Approver(tmp_path / ".veto", token=token) as sam:
        sam.approve(first.approval_id)
    other = veto.guard("rotate_secret", {**args, "service": "auth-service"}, ctx)
    assert other.decision == "require_approval" and other.approval_id != first.approval_id
    granted = veto.guard("rotate_secret", args, ctx)
    assert granted.allowed and granted.approval_id == first.approval_id
    assert granted.reason.startswith(f"approved by sam (approval {first.approval_id})")
    assert veto.records.get(granted.decision_id).approval_id == first.approval_id
    used_up = veto.guard("rotate_secret", args, ctx)
    assert used_up.decision == "require_approval" and used_up.approval_id != first.approval_id


def test_deny_is_not_overridden_by_an_approval(veto: Veto) -> None:
    args = {"secret_path": "/secrets/root/ca", "service": "stripe"}
    assert veto.guard("rotate_secret", args, {}).decision == "deny"


def test_reload_swaps_policies_and_keeps_them_on_errors(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  - name: no_x\n    tool: x\n    action: deny\n")
    with Veto([policy], home=tmp_path / "h", reload_interval=0) as v:
        assert v.guard("x", {}).decision == "deny"
        policy.write_text("rules:\n  - name: no_y\n    tool: y\n    action: deny\n")
        v.reload()
        assert v.guard("x", {}).decision == "allow"
        assert v.guard("y", {}).decision == "deny"
        policy.write_text("rules:\n  - name: bad\n    action: nope\n")
        with pytest.raises(PolicyError):
            v.reload()
        assert v.guard("y", {}).decision == "deny"


def test_policy_files_are_watched(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  - name: no_x\n    tool: x\n    action: deny\n")
    with Veto([policy], records=False, reload_interval=0.05) as v:
        assert v.guard("x", {}).decision == "deny"
        policy.write_text("rules: []\n")
        deadline = time.monotonic() + 10
        while v.guard("x", {}).decision == "deny":
            assert time.monotonic() < deadline, "the change was not picked up"
            time.sleep(0.05)


def test_guard_async(veto: Veto) -> None:
    async def main() -> list[Decision]:
        return await asyncio.gather(*(veto.guard_async("execute_sql", DROP, PROD)
                                      for _ in range(20)))

    assert {d.decision for d in asyncio.run(main())} == {"deny"}


def test_concurrent_guards_from_threads(veto: Veto) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        for j in range(50):
            d = veto.guard("execute_sql", DROP if (i + j) % 2 else SELECT, PROD)
            with lock:
                results.append(f"{(i + j) % 2}:{d.decision}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(results)) == ["0:allow", "1:deny"] and len(results) == 400
    assert veto.records.count() == 400 and veto.records.verify().ok


def test_decorator_runs_allowed_calls_and_records_the_outcome(veto: Veto) -> None:
    calls = []

    @veto.tool(context=PROD)
    def execute_sql(statement: str, database: str = "analytics") -> str:
        calls.append(statement)
        return "ok"

    assert execute_sql("SELECT 1") == "ok"
    assert calls == ["SELECT 1"]
    record = veto.records.query(tool="execute_sql", limit=1)[0]
    assert record.arguments == {"statement": "SELECT 1", "database": "analytics"}
    assert [o.status for o in veto.records.outcomes(record.decision_id)] == ["executed"]


def test_decorator_raises_for_denied_and_pending_calls(veto: Veto) -> None:
    @veto.tool(context=lambda: PROD)
    def execute_sql(statement: str, database: str) -> str:
        raise AssertionError("must not run")

    with pytest.raises(Denied) as denied:
        execute_sql("DROP TABLE customers", "analytics")
    assert denied.value.decision.rule == "block_production_database_deletes"
    with pytest.raises(ApprovalRequired) as pending:
        execute_sql(statement="SELECT 1", database="billing")
    assert pending.value.decision.approval_id
    assert "needs approval" in str(pending.value)


def test_decorator_records_failures_and_reraises(veto: Veto) -> None:
    @veto.tool(name="execute_sql", context=PROD)
    def run(statement: str, database: str) -> None:
        raise RuntimeError("connection lost")

    with pytest.raises(RuntimeError):
        run("SELECT 1", "analytics")
    record = veto.records.query(tool="execute_sql", limit=1)[0]
    outcome = veto.records.outcomes(record.decision_id)[0]
    assert (outcome.status, outcome.error) == ("failed", "RuntimeError: connection lost")


def test_decorator_on_a_coroutine(veto: Veto) -> None:
    @veto.tool(context=PROD)
    async def execute_sql(statement: str, database: str) -> str:
        return "done"

    assert asyncio.run(execute_sql("SELECT 1", "sandbox")) == "done"
    with pytest.raises(Denied):
        asyncio.run(execute_sql("DROP TABLE t", "sandbox"))


def test_tool_message_for_the_model(veto: Veto) -> None:
    d = veto.guard("execute_sql", SELECT | {"database": "billing"}, PROD)
    message = json.loads(d.tool_message())
    assert message == {"status": "pending_approval", "reason": d.reason,
                       "decision_id": d.decision_id, "approval_id": d.approval_id,
                       "approvers": ["platform-team"]}
