"""The shape of a Veto YAML file, as pydantic models, and how violations of it read.

The models describe the raw file: strict types (``name: 5`` or ``action: true`` are errors,
never coerced), no unknown keys. What needs more than one field or more than one file —
duplicate names, glob syntax, expressions, ``approvers`` only on ``require_approval`` — is
checked by :mod:`veto_opa.translators.loader`, which also turns each pydantic error into a
diagnostic at the offending key or value with :func:`explain`.

Decisions about the format:

- ``rules`` is required and may be empty (a policy of just its ``default``).
- ``tool`` is one name or pattern or a list of them; a single string is read as a list of one.
- ``when: true`` (a YAML boolean) means always, like an absent ``when``; ``when: false``
  disables the rule. A number is an error: quote it if you mean an expression.
- ``approvals: N`` asks for N distinct approvers (1 to 10) on a ``require_approval`` rule;
  ``approvers: [any]`` lets any registered approver decide (``any`` is reserved).
- ``default: require_approval`` needs ``default_approvers`` (groups, or ``[any]``).
- ``approval_binding`` lists the context keys an approval is bound to (default: every
  context key the policy's conditions read); ``environment`` is always bound.
- ``expect`` is an action (``expect: deny``) or a mapping ``{decision, rule, reason,
  approvers}`` where only the given fields are asserted.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

from veto_opa._types import ACTIONS

NAME_PATTERN = r"^[a-z_][a-z0-9_]*$"
ANY_APPROVER = "any"
"""``approvers: [any]``: any registered approver may decide (a reserved group name)."""
MAX_APPROVALS = 10
NAME_RULE = "lowercase letters, digits and '_', not starting with a digit"

Name = Annotated[StrictStr, StringConstraints(pattern=NAME_PATTERN)]
ActionName = Literal["deny", "require_approval", "allow"]
_ACTION_LIST = ", ".join(ACTIONS)


def found(value: Any) -> str:
    """How a message names a value that was found: ``'block'``, ``number 5``, ``a list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _tools(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if value is None or isinstance(value, list):
        if value == []:
            raise PydanticCustomError(
                "veto_tool", "tool must name at least one tool; omit it or write '*' for "
                             "every tool")
        return value
    raise PydanticCustomError(
        "veto_tool", "tool must be a tool name, a glob or a list of them, found {found}",
        {"found": found(value)})


def _condition(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool)):
        return value
    raise PydanticCustomError(
        "veto_when", "when must be an expression string (or true/false), found {found}",
        {"found": found(value)})


def _string_list(field: str) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, str):
            raise PydanticCustomError(
                "veto_list", "{field} must be a list, found {found}; write [{value}]",
                {"field": field, "found": found(value), "value": value})
        return value
    return BeforeValidator(check)


def _environments(value: Any) -> Any:
    if value == []:
        raise PydanticCustomError(
            "veto_environments", "environments must name at least one environment; omit it "
                                 "to apply the rule in every environment")
    return value


def _count(field: str) -> Any:
    def check(value: Any) -> Any:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)
                             and 1 <= value <= MAX_APPROVALS):
            return value
        raise PydanticCustomError(
            "veto_count", "{field} must be a whole number from 1 to {most}, found {found}",
            {"field": field, "most": MAX_APPROVALS, "found": found(value)})
    return BeforeValidator(check)


def _expect(value: Any) -> Any:
    if isinstance(value, str):
        if value in ACTIONS:
            return {"decision": value}
        raise PydanticCustomError(
            "veto_expect", "expect must be one of {actions}, found {found}",
            {"actions": _ACTION_LIST, "found": found(value)})
    if isinstance(value, dict):
        return value
    raise PydanticCustomError(
        "veto_expect", "expect must be an action ({actions}) or a mapping with decision, "
                       "found {found}", {"actions": _ACTION_LIST, "found": found(value)})


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleSpec(_Spec):
    """One entry of ``rules:``."""

    name: Name
    description: StrictStr | None = None
    tool: Annotated[list[StrictStr] | None, BeforeValidator(_tools)] = None
    when: Annotated[StrictStr | StrictBool | None, BeforeValidator(_condition)] = None
    action: ActionName
    approvers: Annotated[list[StrictStr], _string_list("approvers")] = []
    approvals: Annotated[StrictInt | None, _count("approvals")] = None
    message: StrictStr | None = None
    environments: Annotated[list[StrictStr] | None, _string_list("environments"),
                            BeforeValidator(_environments)] = None


class ExpectSpec(_Spec):
    """What a test expects; ``rule`` given as null means "no rule decides"."""

    decision: ActionName
    rule: StrictStr | None = None
    reason: StrictStr | None = None
    approvers: Annotated[list[StrictStr] | None, _string_list("approvers")] = None


class TestSpec(_Spec):
    """One entry of ``tests:``: an example call and the decision it must get."""

    __test__ = False   # not a pytest class

    name: Name
    tool: StrictStr
    args: dict[StrictStr, Any] = Field(default_factory=dict)
    context: dict[StrictStr, Any] = Field(default_factory=dict)
    model: StrictStr | None = None
    expect: Annotated[ExpectSpec, BeforeValidator(_expect)]


class PolicyFile(_Spec):
    """A whole Veto YAML file."""

    policy: StrictStr | None = None
    description: StrictStr | None = None
    default: ActionName = "allow"
    rules: list[RuleSpec]
    tests: list[TestSpec] = []
    redact: Annotated[list[StrictStr], _string_list("redact")] = []
    default_approvers: Annotated[list[StrictStr], _string_list("default_approvers")] = []
    approval_binding: Annotated[list[StrictStr] | None,
                                _string_list("approval_binding")] = None
    facts: Any = None      # checked by translators/facts.py, with positions


# -- messages -----------------------------------------------------------------------------

_CONTAINERS: dict[tuple[str, ...], tuple[str, type[_Spec]]] = {
    (): ("the policy file", PolicyFile),
    ("rules",): ("rule", RuleSpec),
    ("tests",): ("test", TestSpec),
    ("tests", "expect"): ("expect", ExpectSpec),
}


def _container(path: tuple[Any, ...]) -> tuple[str, type[_Spec]] | None:
    return _CONTAINERS.get(tuple(p for p in path if isinstance(p, str)))


def _label(path: tuple[Any, ...]) -> str:
    """``action``, ``approvers[1]``, ``rules[0]``: the field a message is about."""
    label = ""
    for part in path:
        if isinstance(part, int):
            label += f"[{part}]"
        else:
            label = part
    return label or "the policy file"


def _fields(model: type[_Spec]) -> list[str]:
    return list(model.model_fields)


def explain(error: dict[str, Any], path: tuple[Any, ...]) -> tuple[str, str]:
    """Turn one pydantic error into ``(anchor, message)``.

    ``path`` is the error's location resolved against the data (pydantic's union tags
    dropped). ``anchor`` says where the message belongs: ``"key"`` (the key of the member at
    ``path``), ``"value"`` (its value) or ``"parent"`` (the mapping that lacks a key).
    """
    kind = error["type"]
    value = error.get("input")
    label = _label(path)
    if kind == "missing":
        container = _container(path[:-1])
        what = container[0] if container else _label(path[:-1])
        return "parent", f"{what} is missing required key {path[-1]!r}"
    if kind == "extra_forbidden":
        container = _container(path[:-1])
        what, model = container if container else (_label(path[:-1]), _Spec)
        known = _fields(model)
        close = difflib.get_close_matches(str(path[-1]), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "expected one of " + ", ".join(known)
        where = "at the top level" if what == "the policy file" else f"in {what}"
        return "key", f"unknown key {path[-1]!r} {where}; {hint}"
    if kind == "string_type":
        return "value", f"{label} must be a string, found {found(value)}"
    if kind == "string_pattern_mismatch":
        return "value", f"{label} must use only {NAME_RULE} ([a-z_][a-z0-9_]*), " \
                        f"found {found(value)}"
    if kind == "literal_error":
        return "value", f"{label} must be one of {_ACTION_LIST}, found {found(value)}"
    if kind == "list_type":
        return "value", f"{label} must be a list, found {found(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "value", f"{label} must be a mapping, found {found(value)}"
    if kind == "bool_type":
        return "value", f"{label} must be true or false, found {found(value)}"
    if kind.startswith("veto_"):
        return "value", error["msg"]
    return "value", f"{label}: {error['msg']}"
