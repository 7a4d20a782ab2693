"""A loaded, checked policy file: what the loader produces and the generator consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from veto_opa._types import Action
from veto_opa.facts.spec import FactSpec
from veto_opa.translators import expressions as ex
from veto_opa.translators.checker import Checked
from veto_opa.translators.diagnostics import Diagnostic


@dataclass(frozen=True)
class Rule:
    """One rule of a policy file.

    ``when`` is the condition the generator compiles: the parsed ``when`` with the
    ``environments`` shortcut folded in (``context.environment in [...] && (when)``), or None
    when the rule always applies to its tools.
    """

    name: str
    index: int
    action: Action
    tools: tuple[str, ...] | None          # None: every tool
    when: Checked | None
    when_source: str | None                # the condition as written in the file
    description: str | None = None
    approvers: tuple[str, ...] = ()
    message: str | None = None
    environments: tuple[str, ...] | None = None
    approvals: int = 1                     # distinct approvers a require_approval rule needs
    line: int = 0
    col: int = 0

    @property
    def reason(self) -> str:
        """The reason shown when this rule decides: its message, or a sentence from its name."""
        if self.message:
            return self.message
        verb = {"deny": "denies", "require_approval": "requires approval for",
                "allow": "allows"}[self.action]
        sentence = f"rule {self.name} {verb} this call"
        if self.description:
            return f"{self.description} ({sentence})"
        return sentence


@dataclass(frozen=True)
class Expectation:
    """What an example in ``tests:`` expects; only the given fields are asserted."""

    decision: Action
    rule: str | None = None
    reason: str | None = None
    approvers: tuple[str, ...] | None = None
    rule_given: bool = False   # distinguishes "rule: null" (no rule decides) from absent


@dataclass(frozen=True)
class Example:
    """One example from ``tests:``, compiled into a Rego unit test."""

    name: str
    tool: str
    args: dict[str, Any]
    context: dict[str, Any]
    expect: Expectation
    model: str | None = None
    line: int = 0
    col: int = 0

    def input(self) -> dict[str, Any]:
        return {"tool": self.tool, "args": self.args, "context": self.context,
                "model": self.model, "call_id": None}


@dataclass(frozen=True)
class Policy:
    """One policy file, checked and ready to compile."""

    name: str
    source: str                            # the path as given, for messages and metadata
    text: bytes                            # the file's bytes, hashed into the revision
    sha256: str
    default: Action = "allow"
    description: str | None = None
    rules: tuple[Rule, ...] = ()
    tests: tuple[Example, ...] = ()
    redact: tuple[str, ...] = ()
    index: int = 0                         # load order among the policies of one bundle
    default_approvers: tuple[str, ...] = ()  # who may approve when the default decides
    approval_binding: tuple[str, ...] | None = None  # context keys given in the file
    extra: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, dict[str, FactSpec]] = field(default_factory=dict)   # tool -> arg -> how
    warnings: tuple[Diagnostic, ...] = ()  # what loads but is probably not what was meant

    @property
    def package(self) -> str:
        return f"veto.policies.{self.name}"

    @property
    def module_path(self) -> str:
        return f"veto/policies/{self.name}.rego"

    @property
    def test_module_path(self) -> str:
        return f"veto/policies/{self.name}_test.rego"


def environment_condition(environments: tuple[str, ...], when: ex.Node | None) -> ex.Node:
    """The condition of a rule with the ``environments`` shortcut folded in.

    ``environments: [production]`` means ``context.environment in ["production"]`` and'ed with
    the rule's ``when``, so a missing environment is an error like any missing field (a deny
    rule then applies, fail closed) rather than silently skipping the rule; so is one that is
    not a string, null included (``in`` does not compare values of different JSON types).
    """
    items = ", ".join(_quote(e) for e in environments)
    text = f"context.environment in [{items}]"
    root = ex.Root(name="context", start=0, end=0, text="context")
    env = ex.Field(target=root, name="environment", start=0, end=0, text="context.environment")
    literals = tuple(ex.Literal(value=e, start=0, end=0, text=_quote(e)) for e in environments)
    in_ = ex.In(item=env, collection=ex.ListLit(items=literals, start=0, end=0,
                                                  text=f"[{items}]"),
                start=0, end=0, text=text)
    if when is None:
        return in_
    return ex.And(left=in_, right=when, start=0, end=0, text=f"{text} && ({when.text})")


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
