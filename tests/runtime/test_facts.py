"""Facts in guard(): computed once, the same input for the embedded engine and an OPA
server, recorded and traced with their parser, failing closed when they cannot be read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.opa_standin import OpaStandin
from veto_opa import Veto
from veto_opa.engines import EmbeddedEngine, RestEngine
from veto_opa.translators import build
from veto_opa.translators.bundle import write_tar_gz

HARDENED = ROOT / "examples" / "hardened.yaml"
PROD = {"environment": "production", "user_role": "sre"}
VIEWER = {"environment": "staging", "user_role": "viewer"}

CALLS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("execute_sql", {"statement": "DROP/**/TABLE customers", "database": "analytics"}, PROD),
    ("execute_sql", {"statement": "SELECT 1; DELETE FROM t", "database": "analytics"}, PROD),
    ("execute_sql", {"statement": "SELECT 'truncate'", "database": "analytics"}, PROD),
    ("execute_sql", {"statement": "DELET FROM t", "database": "analytics"}, PROD),
    ("execute_sql", {"statement": "SELECT * INTO x FROM t", "database": "analytics"}, VIEWER),
    ("execute_sql", {"statement": "SELECT 1", "database": "main"}, PROD),
    ("rotate_secret", {"service": "billing", "secret_path": "/secrets/app/../root"}, {}),
    ("rotate_secret", {"service": "billing", "secret_path": "/secrets/rootless-app/k"}, {}),
    ("rotate_secret", {"service": "billing"}, {}),
    ("other_tool", {"x": 1}, {}),
]


@pytest.fixture(scope="module")
def hardened_bundle():
    return build([HARDENED]).bundle()


def _outcome(veto: Veto, tool: str, args: dict[str, Any], ctx: dict[str, Any]) -> tuple:
    d = veto.guard(tool, args, ctx)
    record = veto.records.get(d.decision_id)
    return (d.decision, d.rule, d.reason, d.errors), record.facts


def test_embedded_and_opa_server_decide_on_the_same_facts(tmp_path: Path,
                                                          hardened_bundle) -> None:
    with Veto([HARDENED], home=tmp_path / "a", reload_interval=0) as embedded, \
            OpaStandin(hardened_bundle) as url, \
            Veto(opa_url=url, home=tmp_path / "b", reload_interval=0) as rest:
        assert isinstance(embedded.engine, EmbeddedEngine)
        assert isinstance(rest.engine, RestEngine)
        for tool, args, ctx in CALLS:
            assert _outcome(embedded, tool, args, ctx) == _outcome(rest, tool, args, ctx), \
                (tool, args)


def test_the_server_gets_the_facts_in_its_input(tmp_path: Path, hardened_bundle) -> None:
    server = OpaStandin(hardened_bundle)
    with server as url, Veto(opa_url=url, home=tmp_path, reload_interval=0) as veto:
        d = veto.guard("execute_sql", {"statement": "drop  table t", "database": "analytics"},
                       PROD)
        assert (d.decision, d.rule) == ("deny", "block_production_database_deletes")
        posted = [r for r in server.requests if r.method == "POST"][-1]
        sent = json.loads(posted.body)["input"]
        assert sent["facts"]["statement"]["kinds"] == ["drop"]
        assert sent["facts"] == veto.records.get(d.decision_id).facts
        # The declarations (and the redaction paths) are read once, at start.
        assert sorted(r.path for r in server.requests if r.method == "GET") == [
            "/v1/data/veto/facts", "/v1/data/veto/redaction"]


def test_a_server_without_declarations_fails_closed(tmp_path: Path, hardened_bundle,
                                                    caplog) -> None:
    server = OpaStandin(None)            # nothing loaded: data.veto.facts is undefined
    with server as url, Veto(opa_url=url, home=tmp_path, reload_interval=0) as veto:
        server.load(hardened_bundle)     # the bundle arrives after veto-opa started
        d = veto.guard("execute_sql", {"statement": "SELECT 1", "database": "analytics"},
                       PROD)
        assert d.decision == "deny"
        assert d.reason == ("rule block_production_database_deletes could not be evaluated: "
                            "facts is missing")


def test_unreadable_declarations_are_logged(tmp_path: Path, caplog) -> None:
    with Veto(opa_url="http://127.0.0.1:9", home=tmp_path, reload_interval=0,
              opa_timeout=0.5) as veto:
        assert veto.guard("execute_sql", {"statement": "SELECT 1"}, PROD).decision == "deny"
    assert "could not read the facts declarations from OPA" in caplog.text


def test_a_parse_failure_is_the_reason_and_is_recorded(tmp_path: Path) -> None:
    with Veto([HARDENED], home=tmp_path, reload_interval=0) as veto:
        d = veto.guard("execute_sql", {"statement": "SELECT (( FROM t", "database": "analytics"},
                       PROD)
        assert d.decision == "deny" and d.rule == "block_production_database_deletes"
        assert d.reason.startswith("rule block_production_database_deletes could not be "
                                   "evaluated: facts.statement could not be computed: sqlglot "
                                   "could not parse the SQL: ")
        fact = veto.records.get(d.decision_id).facts["statement"]
        assert set(fact) == {"error", "parser"} and fact["parser"].startswith("sqlglot 30.")


def test_records_keep_facts_with_their_parser(tmp_path: Path) -> None:
    with Veto([HARDENED], home=tmp_path, reload_interval=0) as veto:
        d = veto.guard("rotate_secret", {"service": "billing", "secret_path": "secrets/root/x"})
        facts = veto.records.get(d.decision_id).facts
        assert facts["secret_path"]["normalized"] == "/secrets/root/x"
        assert facts["secret_path"]["parser"].startswith("veto-opa ")
        other = veto.guard("no_facts_tool", {"a": 1})
        assert veto.records.get(other.decision_id).facts is None
        bad = veto.guard("execute_sql", "not json")
        assert veto.records.get(bad.decision_id).facts is None
    exported = tmp_path / "out.jsonl"
    with Veto([HARDENED], home=tmp_path, reload_interval=0) as veto:
        veto.records.export(exported)
    first = json.loads(exported.read_text().splitlines()[0])
    assert first["facts"]["secret_path"]["segments"] == ["secrets", "root", "x"]


def test_facts_of_redacted_arguments_are_digests(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("""\
redact: [args.secret_path]
facts:
  rotate_secret: {secret_path: path}
rules:
  - name: root
    tool: rotate_secret
    when: '"/secrets/root" in facts.secret_path.prefixes'
    action: deny
""")
    with Veto([policy], home=tmp_path, reload_interval=0) as veto:
        d = veto.guard("rotate_secret", {"secret_path": "/secrets/./root/k"})
        assert d.decision == "deny"
        record = veto.records.get(d.decision_id)
        assert record.arguments["secret_path"].startswith("hmac-sha256:")
        assert set(record.facts["secret_path"]) == {"parser", "redacted"}
        assert "root" not in json.dumps(record.facts)


def test_facts_go_on_the_span_only_as_parsers_unless_captured(tmp_path: Path,
                                                              spans_out) -> None:
    provider, exporter = spans_out
    args = {"statement": "SELEC 1", "database": "analytics"}
    with Veto([HARDENED], home=tmp_path, reload_interval=0, tracer_provider=provider) as veto:
        veto.guard("execute_sql", args, PROD)
    [span] = exporter.get_finished_spans()
    assert span.attributes["veto.fact_parsers"][0].startswith("statement=sqlglot 30.")
    assert span.attributes["veto.fact_errors"][0].startswith(
        "statement: sqlglot could not parse the SQL")
    assert "veto.facts" not in span.attributes
    exporter.clear()
    with Veto([HARDENED], home=tmp_path, reload_interval=0, tracer_provider=provider,
              capture_arguments=True) as veto:
        d = veto.guard("execute_sql", {"statement": "DELETE FROM t", "database": "x"}, PROD)
        facts = veto.records.get(d.decision_id).facts
    [span] = exporter.get_finished_spans()
    assert json.loads(span.attributes["veto.facts"]) == facts
    assert "veto.fact_errors" not in span.attributes


def test_facts_are_computed_once_per_guard_and_cached(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from veto_opa.facts import runtime

    calls: list[str] = []
    original = runtime.fact

    def counting(declared, name, arguments):
        calls.append(name)
        return original(declared, name, arguments)

    monkeypatch.setattr(runtime, "fact", counting)
    with Veto([HARDENED], home=tmp_path, reload_interval=0) as veto:
        args = {"statement": "SELECT 1", "database": "analytics"}
        veto.guard("execute_sql", args, PROD)
        assert calls == ["statement"]
        veto.guard("execute_sql", args, PROD)
        assert calls == ["statement"]                       # from the cache
        veto.guard("execute_sql", {**args, "statement": "SELECT 2"}, PROD)
        assert calls == ["statement", "statement"]


def test_reload_and_bundles_read_the_declarations(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("rules: []\n")
    call = ("execute_sql", {"statement": "DROP/**/TABLE t"}, {})
    with Veto([policy], home=tmp_path / "h", reload_interval=0) as veto:
        assert veto.guard(*call).decision == "allow"
        policy.write_text(
            "facts: {execute_sql: {statement: sql}}\n"
            "rules:\n  - {name: no_drop, tool: execute_sql, "
            "when: '\"drop\" in facts.statement.kinds', action: deny}\n")
        veto.reload()
        d = veto.guard(*call)
        assert (d.decision, d.rule) == ("deny", "no_drop")
        assert veto.records.get(d.decision_id).facts["statement"]["kinds"] == ["drop"]
    bundle = tmp_path / "veto.tar.gz"
    write_tar_gz(build([policy]).bundle(), bundle)
    with Veto(bundle=bundle, home=tmp_path / "h2", reload_interval=0) as veto:
        assert veto.guard(*call).decision == "deny"
