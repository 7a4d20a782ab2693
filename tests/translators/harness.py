"""Evaluate many conditions in the real OPA engine at once, next to the reference evaluator.

A batch compiles every condition as a ``deny`` rule of one generated policy (exactly the
module and condition data ``veto-opa build`` would write) and adds a results module that
reads, per rule, the fast path (the rule's status, true / false / "error", with the detail
from ``veto.lib.explain`` for "error") and, independently, the whole three-valued result computed by
``veto.lib.explain`` from the condition's data. One evaluation of the results document then
answers for every condition at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import opa_bindings

from veto_opa.translators import checker, compiler, evaluator, parser
from veto_opa.translators.checker import Checked
from veto_opa.translators.policy import Policy, Rule

Outcome = tuple[str, ...]   # ("T",), ("F",) or ("E", detail)


def check_text(text: str) -> Checked | None:
    """Parse and check; None when the parser or checker rejects the expression."""
    try:
        parsed = parser.parse(text)
    except parser.ParseError:
        return None
    if parsed.problems:
        return None
    result = checker.check(parsed.node)
    return None if result.problems else result


def reference(checked: Checked, input: dict[str, Any]) -> Outcome:
    result = evaluator.condition(checked.node, input)
    if isinstance(result, evaluator.Err):
        return ("E", result.detail)
    return ("T",) if result else ("F",)


def policy_of(conditions: Sequence[Checked], name: str = "fuzz") -> Policy:
    rules = tuple(
        Rule(name=f"e{i}", index=i, action="deny", tools=None, when=c, when_source=c.node.text)
        for i, c in enumerate(conditions)
    )
    return Policy(name=name, source=f"{name}.yaml", text=b"", sha256="0" * 64, rules=rules)


@dataclass
class Batch:
    conditions: list[Checked]
    engine: opa_bindings.OpaEngine
    module: str

    @classmethod
    def build(cls, conditions: Sequence[Checked]) -> Batch:
        policy = policy_of(conditions)
        module = compiler.policy_module(policy)
        engine = opa_bindings.OpaEngine()
        for path, source in compiler.library_modules().items():
            engine.add_policy(path, source)
        engine.add_policy(policy.module_path, module)
        engine.add_data({"veto": {"conditions": {"fuzz": compiler.conditions_data(policy)}}})
        engine.add_policy("difftest.rego", _results_module(conditions))
        return cls(list(conditions), engine, module)

    def evaluate(self, input: dict[str, Any]) -> list[tuple[Outcome, Outcome]]:
        """(fast path, explain path) outcome of every condition for one input."""
        doc = self.engine.eval_document("veto.difftest.results", input)
        out = []
        for i in range(len(self.conditions)):
            fast, explained = doc[f"e{i}"]
            out.append((tuple(fast), _explain_outcome(explained)))
        return out

    def status(self, input: dict[str, Any]) -> dict[str, Any]:
        """The generated policy's ``status`` object: rule name -> true, false or "error"."""
        pairs = self.engine.eval_document("veto.policies.fuzz.status", input)
        return dict(pairs)


def _explain_outcome(result: dict[str, Any]) -> Outcome:
    if "e" in result:
        return ("E", result["e"])
    return ("T",) if result["v"] is True else ("F",)


def _results_module(conditions: Sequence[Checked]) -> str:
    lines = [
        "package veto.difftest",
        "",
        "import data.veto.lib.explain",
        "import data.veto.policies.fuzz as p",
        "",
        "results := {",
    ]
    lines += [f'\t"e{i}": [_fast{i}, explain.result(data.veto.conditions.fuzz.e{i})],'
              for i in range(len(conditions))]
    lines += ["}", ""]
    for i in range(len(conditions)):
        lines += [
            f'_fast{i} := ["T"] if {{ p._e{i} == true }} else := ["F"] if {{ p._e{i} == false }} '
            f'else := ["E", explain.detail(data.veto.conditions.fuzz.e{i})]',
            "",
        ]
    return "\n".join(lines)
