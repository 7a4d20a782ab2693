"""Why a policy's example (``tests:``) failed: what it expected and what the policy decided.

A compiled example is a Rego test, ``test_<example>`` in ``veto.policies.<policy>_test``;
when it fails, the test runner can only say that a body expression was false. This module
decides the example's call again, with the policy alone as the test does, and says what
differs from the expectation, at the example's place in the YAML::

    for line in explain_failures(compiled, ["data.veto.policies.sre_test.test_drop"]):
        print(line)
    # sre.yaml:31:5: example drop: expected deny by rule block_drops, got allow (no rule
    # applies; policy sre defaults to allow)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from opa_bindings.engine import OpaEngine

from veto_opa.translators.bundle import load_into_engine

if TYPE_CHECKING:
    from veto_opa.translators.compiler import Compiled
    from veto_opa.translators.policy import Example, Policy


def explain_failures(compiled: Compiled, failed: Iterable[str]) -> list[str]:
    """``file:line:col: example <name>: expected ..., got ...`` for each failed test of
    ``failed`` (full names, ``data.<package>.<rule>``) that is a compiled example."""
    examples = {f"data.{p.package}_test.test_{e.name}": (p, e)
                for p in compiled.policies for e in p.tests}
    wanted = [examples[name] for name in failed if name in examples]
    if not wanted:
        return []
    engine = OpaEngine()
    try:
        load_into_engine(compiled.bundle(), engine)
        return [_explain(engine, policy, example) for policy, example in wanted]
    finally:
        engine.close()


def _explain(engine: Any, policy: Policy, example: Example) -> str:
    where = f"{policy.source}:{example.line}:{example.col}: example {example.name}"
    query = f"d := data.veto.decision_for({{{json.dumps(policy.name)}}})"
    results = engine.eval_query(query, example.input())
    if not results:
        return f"{where}: the decision is undefined (is the policy library loaded?)"
    return f"{where}: {describe(example, results[0]['d'])}"


def describe(example: Example, decision: dict[str, Any]) -> str:
    """What the example expected and what was decided, where they differ."""
    expect = example.expect
    wanted = expect.decision + (f" by rule {expect.rule}" if expect.rule_given and expect.rule
                                else " with no rule deciding" if expect.rule_given else "")
    got = decision.get("decision")
    rule = decision.get("rule")
    parts = [f"expected {wanted}, got {got}" + (f" by rule {rule}" if rule else "")
             + f" ({decision.get('reason')})"]
    if expect.reason is not None and decision.get("reason") != expect.reason:
        parts.append(f"expected reason {expect.reason!r}")
    if expect.approvers is not None and decision.get("approvers") != sorted(
            set(expect.approvers)):
        parts.append(f"expected approvers {sorted(set(expect.approvers))}, got "
                     f"{decision.get('approvers')}")
    return "; ".join(parts)
