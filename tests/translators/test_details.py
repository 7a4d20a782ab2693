"""The generated error details (translators/details.py), beyond the semantics corpus.

The corpora (test_semantics.py, test_differential.py) hold every detail to the reference
evaluator's; these tests cover what they do not: conditions as deep as the parser allows, a
whole policy's decision, and how the detail texts are written into Rego.
"""

from __future__ import annotations

from pathlib import Path

import opa_bindings
import pytest

from tests.translators.harness import Batch, check_text, reference
from veto_opa.translators import build, details, parser
from veto_opa.translators.bundle import load_into_engine

ROOT = Path(__file__).resolve().parents[2]


def _depth(node) -> int:
    return 1 + max((_depth(c) for c in node.children()), default=0)


@pytest.mark.parametrize("text, depth, inputs", [
    # 120 additions, each a level of the tree: the removed explain.rego stopped at 62.
    ("args.n" + " + 1" * 120 + " == 120", 120,
     [{"n": 0}, {"n": 1}, {}, {"n": "a"}, {"n": [1]}]),
    # Nested parentheses as deep as the parser takes them, negations and chains inside.
    ("!(" * 23 + "args.a && (args.b || args.n > 1)" + ")" * 23, 23,
     [{"a": True, "b": False, "n": 2}, {"a": True, "b": False, "n": "x"}, {"a": 1},
      {"a": True, "b": True}, {"a": False, "n": "x"}]),
    # Macros in macros.
    ("args.m.all(r, r.exists(c, c.all(x, x.k > args.n)))", 6,
     [{"m": [[[{"k": 2}]]], "n": 1}, {"m": [[[{"k": 2}]]]}, {"m": [[[{"j": 2}]]], "n": 1},
      {"m": [[[]], [["s"]]], "n": 1}, {"m": "s"}]),
])
def test_deep_conditions_compile_and_explain_like_the_evaluator(text: str, depth: int,
                                                                inputs: list[dict]) -> None:
    checked = check_text(text)
    assert checked is not None, parser.parse(text).problems
    assert _depth(checked.node) >= depth
    batch = Batch.build([checked])
    seen = set()
    for args in inputs:
        input = {"tool": "t", "args": args, "context": {}, "model": None, "call_id": None}
        expected = reference(checked, input)
        assert batch.evaluate(input) == [expected], args
        seen.add(expected[0])
    assert "E" in seen and seen & {"T", "F"}


def test_a_deep_condition_loads_from_a_policy_file(tmp_path: Path) -> None:
    policy = tmp_path / "deep.yaml"
    policy.write_text(
        "rules:\n"
        "  - name: deep\n"
        "    tool: t\n"
        "    action: deny\n"
        f"    when: args.n{' + 1' * 120} > 200\n", encoding="utf-8")
    engine = opa_bindings.OpaEngine()
    load_into_engine(build([policy]).bundle(), engine)
    decision = engine.eval_document("veto.decision", {"tool": "t", "args": {"n": "x"},
                                                      "context": {}})
    assert decision["decision"] == "deny"
    assert decision["errors"] == [{"rule": "deep", "policy": "deep",
                                   "detail": "args.n + 1: cannot apply '+' to string and "
                                             "number"}]


def test_seed_rules_in_error_name_what_is_missing() -> None:
    engine = opa_bindings.OpaEngine()
    load_into_engine(build([ROOT / "examples" / "policies.yaml"]).bundle(), engine)
    decision = engine.eval_document("veto.decision", {
        "tool": "execute_sql", "args": {"database": "analytics"},
        "context": {"environment": "production"}, "model": None, "call_id": None})
    assert decision["decision"] == "deny"
    assert decision["rule"] == "block_production_database_deletes"
    assert decision["reason"] == ("rule block_production_database_deletes could not be "
                                  "evaluated: args.statement is missing")
    assert [(e["rule"], e["detail"]) for e in decision["errors"]] == [
        ("block_production_database_deletes", "args.statement is missing"),
        ("block_schema_changes", "args.statement is missing"),
        ("read_only_for_viewer", "context.user_role is missing"),
    ]


def test_details_are_data_unless_they_need_a_value_of_the_evaluation() -> None:
    assert details.detail("missing", text='args["a b"]') == details.Form('args["a b"] is missing')
    assert details.detail("not_object", target="args.o", type="string") == details.Form(
        "args.o is not an object (found string)")
    # The type of an input value: filled in when the detail is read.
    at = details.TypeAt(("args", "o"), "input.args.o")
    assert details.detail("not_object", target="args.o % 2", type=at) == details.Form(
        ["args.o %% 2 is not an object (found %s)", ["args", "o"]])
    # The type of a value only the evaluation has (a macro variable): built in Rego.
    assert details.detail("operands", text="f(v, b)", name="f",
                          types=[details.Term("type_name(v_v)"), ", number"]) == details.Computed(
        'concat("", ["f(v, b): f() cannot take ", type_name(v_v), ", number"])')


def test_the_detail_of_a_text_with_percent_signs_and_quotes_is_kept() -> None:
    text = 'args.n % 0 == 1 && args.s == "100% \\"q\\""'
    checked = check_text(text)
    assert checked is not None
    input = {"tool": "t", "args": {"n": 3, "s": '100% "q"'}, "context": {}}
    assert Batch.build([checked]).evaluate(input) == [reference(checked, input)] == [
        ("E", "args.n % 0: division by zero")]


ENVIRONMENTS = """\
rules:
  - name: no_drops_in_production
    tool: execute_sql
    environments: [production]
    when: args.statement.upper().contains("DROP")
    action: deny
  - name: staging_reads
    tool: read_table
    environments: [staging]
    action: allow
default: require_approval
default_approvers: [dba]
"""


@pytest.mark.parametrize("environment, decision, detail", [
    ("production", "deny", None),
    ("staging", "require_approval", None),    # the default: the deny rule is false
    # An environment that is not a string cannot be told apart from production: the rule
    # is in error and, being a deny rule, applies (fail closed).
    (None, "deny", 'context.environment in ["production"]: the list holds string, not null'),
    (["production"], "deny",
     'context.environment in ["production"]: the list holds string, not array'),
    ({"name": "production"}, "deny",
     'context.environment in ["production"]: the list holds string, not object'),
    (1, "deny", 'context.environment in ["production"]: the list holds string, not number'),
    ("missing", "deny", "context.environment is missing"),
])
def test_environments_shortcut_fails_closed(tmp_path: Path, environment: object, decision: str,
                                            detail: str | None) -> None:
    policy = tmp_path / "envs.yaml"
    policy.write_text(ENVIRONMENTS, encoding="utf-8")
    engine = opa_bindings.OpaEngine()
    load_into_engine(build([policy]).bundle(), engine)
    context = {} if environment == "missing" else {"environment": environment}
    d = engine.eval_document("veto.decision", {
        "tool": "execute_sql", "args": {"statement": "drop table t"}, "context": context})
    assert d["decision"] == decision
    assert [e["detail"] for e in d["errors"]] == ([detail] if detail else [])
    # An allow rule restricted to staging does not apply to an environment that is not one.
    d = engine.eval_document("veto.decision", {"tool": "read_table", "args": {},
                                               "context": context})
    expected = "allow" if environment == "staging" else "require_approval"
    assert d["decision"] == expected, environment
