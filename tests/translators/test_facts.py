"""Facts in the compiler: declarations in the bundle's data, the examples' inputs, the
revision, declarations that conflict across files. (Declaration errors of one file are in
tests/cases/malformed/facts_*.yaml.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from veto_opa.errors import PolicyError
from veto_opa.facts import FactSpec, spec_from_data
from veto_opa.facts import sql as sql_facts
from veto_opa.translators import build, load_policies
from veto_opa.translators.compiler import example_input
from veto_opa.translators.regotest import run_tests

ROOT = Path(__file__).resolve().parents[2]
HARDENED = ROOT / "examples" / "hardened.yaml"
SEED = ROOT / "examples" / "policies.yaml"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_bundle_holds_the_merged_declarations(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "facts: {execute_sql: {statement: {sql: {dialect: mysql}}}}\n"
                                  "rules: []\n")
    b = write(tmp_path, "b.yaml", "facts:\n  execute_sql: {statement: {sql: {dialect: mysql}}}\n"
                                  "  fetch: {url: url}\nrules: []\n")
    bundle = build([a, b]).bundle()
    assert json.loads(bundle.files["veto/facts/data.json"]) == {
        "execute_sql": {"statement": {"parser": "sql", "options": {"dialect": "mysql"}}},
        "fetch": {"url": {"parser": "url", "options": {}}}}
    assert spec_from_data(bundle.data_documents()) == {
        "execute_sql": {"statement": FactSpec("sql", {"dialect": "mysql"})},
        "fetch": {"url": FactSpec("url")}}
    assert "veto/facts/data.json" not in build([SEED]).bundle().files


def test_conflicting_declarations_across_files(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "facts: {execute_sql: {statement: sql}}\nrules: []\n")
    b = write(tmp_path, "b.yaml", "rules: []\nfacts:\n  execute_sql:\n"
                                  "    statement: {sql: {dialect: mysql}}\n")
    with pytest.raises(PolicyError) as raised:
        load_policies([a, b])
    assert [str(d) for d in raised.value.diagnostics] == [
        f"{b}:4:5: facts of execute_sql.statement conflict with {a}: sql there, "
        "sql {dialect: mysql} here; an argument is parsed one way for every policy"]


def test_examples_get_their_facts_computed(tmp_path: Path) -> None:
    [policy] = load_policies([HARDENED])
    [drop] = [e for e in policy.tests if e.name == "drop_with_a_comment_between_keywords"]
    assert example_input(policy, drop)["facts"]["statement"]["kinds"] == ["drop"]
    [seed] = load_policies([SEED])
    other = write(tmp_path, "t.yaml", "rules: []\ntests:\n  - {name: t, tool: x, args: {}, "
                                      "expect: allow}\n")
    [plain] = load_policies([other])
    assert "facts" not in example_input(plain, plain.tests[0])
    assert seed.facts == {}


def test_hardened_examples_on_facts_pass_as_rego_tests() -> None:
    # A few of them (each Rego test is prepared on its own: all 41 take 15 s); the compiled
    # inputs carry the facts the compiler computed. All examples: test_hardened_examples.
    bundle = build([HARDENED]).bundle()
    report = run_tests(bundle.modules(), data=bundle.data_documents(),
                       run="hardened_test.*(comment_between|unparseable|relative|missing_path"
                           "|rootless|inside_a_cte)")
    assert report.ok, [r for r in report.results if r.status != "PASS"]
    assert len(report.results) >= 6


def test_hardened_examples() -> None:
    from veto_opa.engines import EmbeddedEngine
    from veto_opa.facts import Facts

    compiled = build([HARDENED])
    [policy] = compiled.policies
    engine = EmbeddedEngine(compiled.bundle(), pool_size=1)
    facts = Facts(policy.facts)
    try:
        for example in policy.tests:
            input = {**example.input(), "facts": facts.compute(example.tool,
                                                                example.args).document}
            d = engine.decide(input).verdict
            expect = example.expect
            assert d.decision == expect.decision, example.name
            if expect.rule_given:
                assert d.rule == expect.rule, example.name
            if expect.reason is not None:
                assert d.reason == expect.reason, example.name
    finally:
        engine.close()
    assert len(policy.tests) >= 40


def test_the_revision_follows_the_parsers_version(monkeypatch: pytest.MonkeyPatch) -> None:
    with_facts = build([HARDENED]).revision
    without = build([SEED]).revision
    monkeypatch.setattr(sql_facts, "library", lambda: "sqlglot 99.0.0")
    assert build([HARDENED]).revision != with_facts
    assert build([SEED]).revision == without
