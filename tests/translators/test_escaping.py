"""Arbitrary Unicode from policy files cannot change the generated program.

Names of tools and approver groups, messages, descriptions and string literals in conditions
are drawn from all of Unicode (quotes, backslashes, newlines, braces, Rego keywords, control
characters, astral planes); the policy must compile, and the decision must give back the
exact original strings.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import opa_bindings
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veto_opa.translators import build
from veto_opa.translators.bundle import load_into_engine

TRICKY = ['"', "\\", "\n", "}", "{", "]", "#", "`", "%s", "%v", "\u2028", "\x00", "\x7f", "😀",
          "package veto", "import data", "default allow := true", "\"}\n}\nallow := true #",
          "${VAR}", "<script>", "'", "if", "else", "contains", "not", "in"]


def _yaml_round_trips(s: str) -> bool:
    try:
        return yaml.safe_load(yaml.safe_dump({"x": s}, allow_unicode=True))["x"] == s
    except yaml.YAMLError:
        return False


text = st.one_of(st.sampled_from(TRICKY), st.text(min_size=1, max_size=40),
                 st.lists(st.sampled_from(TRICKY), min_size=1, max_size=4).map("".join))
free_text = text.filter(lambda s: s.strip() != "" and _yaml_round_trips(s))
tool_name = text.filter(lambda s: s and _yaml_round_trips(s) and not any(
    c in "*?[]{},\\" or c.isspace() or unicodedata.category(c).startswith("C") for c in s))


def expression_string(s: str) -> str:
    """``s`` as a string literal of the expression language."""
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        else:
            out.append(c)
    return "".join(out) + '"'


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tool=tool_name, literal=st.text(max_size=30).filter(_yaml_round_trips),
       message=free_text, description=free_text,
       approvers=st.lists(free_text.filter(lambda s: s != "any"), min_size=1, max_size=3),
       use_message=st.booleans())
def test_strings_reach_the_decision_unchanged(tmp_path_factory, tool: str, literal: str,
                                              message: str, description: str,
                                              approvers: list[str], use_message: bool) -> None:
    rule = {"name": "weird_rule", "description": description, "tool": tool,
            "when": f"args.value == {expression_string(literal)}",
            "action": "require_approval", "approvers": approvers}
    if use_message:
        rule["message"] = message
    document = {"policy": "escaping", "description": description, "rules": [rule]}
    path = Path(tmp_path_factory.mktemp("p")) / "escaping.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")

    engine = opa_bindings.OpaEngine()
    load_into_engine(build([path]).bundle(), engine)
    decision = engine.eval_document("veto.decision", {
        "tool": tool, "args": {"value": literal}, "context": {}, "model": None, "call_id": None})
    expected_reason = message if use_message else (
        f"{description} (rule weird_rule requires approval for this call)")
    assert decision["decision"] == "require_approval"
    assert decision["rule"] == "weird_rule"
    assert decision["reason"] == expected_reason
    assert decision["approvers"] == sorted(set(approvers))

    other = engine.eval_document("veto.decision", {
        "tool": tool, "args": {"value": literal + "x"}, "context": {}, "model": None,
        "call_id": None})
    assert other["decision"] == "allow"
    assert other["reason"] == "no rule applies; policy escaping defaults to allow"
    engine.close()

