"""Evaluate many conditions in the real OPA engine at once, next to the reference evaluator.

A batch compiles every condition as a ``deny`` rule of one generated policy (exactly the
module ``veto-opa build`` would write) and reads the policy's ``status``: for each rule true,
false, or ``{"error": detail}`` with the detail generated for the condition, its text as the
decision shows it (``ops.detail``). One evaluation answers for every condition at once.
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


def outcome(status: Any) -> Outcome:
    """A rule's status, its error detail formatted, as an outcome."""
    if status is True:
        return ("T",)
    if status is False:
        return ("F",)
    assert isinstance(status, dict) and set(status) == {"error"}, status
    assert isinstance(status["error"], str), status
    return ("E", status["error"])


# The policy's status with each error detail formatted as the decision formats it.
_STATUS = """package veto.difftest

import data.veto.lib.ops

status[rule] := value if {
	some [rule, raw] in data.veto.policies.fuzz.status
	value := _formatted(rule, raw)
}

_formatted(rule, raw) := raw if {
	not raw.error
} else := raw if {
	is_string(raw.error)
} else := {"error": ops.detail(data.veto.details.fuzz[rule][raw.error])}
"""


@dataclass
class Batch:
    conditions: list[Checked]
    engine: opa_bindings.OpaEngine
    module: str

    @classmethod
    def build(cls, conditions: Sequence[Checked]) -> Batch:
        policy = policy_of(conditions)
        module, details = compiler.compile_policy(policy)
        engine = opa_bindings.OpaEngine()
        for path, source in compiler.library_modules().items():
            engine.add_policy(path, source)
        engine.add_policy(policy.module_path, module)
        engine.add_data({"veto": {"details": {"fuzz": details}}})
        engine.add_policy("difftest.rego", _STATUS)
        return cls(list(conditions), engine, module)

    def evaluate(self, input: dict[str, Any]) -> list[Outcome]:
        """The generated Rego's outcome of every condition for one input."""
        status = self.engine.eval_document("veto.difftest.status", input)
        return [outcome(status[f"e{i}"]) for i in range(len(self.conditions))]
