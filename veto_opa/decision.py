"""The decision model: one definition of what a policy decided, used from the engine's answer
to the guard, approvals, records, spans and the :class:`Decision` a caller gets.

:class:`Verdict` mirrors the object ``data.veto.decision`` returns (``rego/veto/decision.rego``
builds it in one place)::

    {"decision": "deny", "rule": "...", "reason": "...", "approvers": [],
     "matched": [{"rule", "action", "message", "policy", "approvers"}],
     "errors": [{"rule", "detail", "policy"}],
     "policy": {"name": "...", "revision": "sha256:..."}}

:meth:`Verdict.from_document` is the single check of an engine's answer: anything else is an
:class:`~veto_opa.errors.EngineProtocolError`, which the guard turns into a fail-closed deny.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from veto_opa._types import ACTIONS, Action, JSONObject
from veto_opa.errors import EngineProtocolError

WHOLE_CONTEXT = "*"
"""A binding of the whole context (``context[...]`` read with a key known only at run time)."""


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that applied to the call: its action and message, and for ``require_approval``
    its own approver groups and how many distinct approvers it needs."""

    rule: str
    action: Action
    message: str
    policy: str | None = None
    approvers: tuple[str, ...] = ()
    approvals: int = 0   # distinct approvers a require_approval rule needs

    def document(self) -> JSONObject:
        return {"rule": self.rule, "action": self.action, "message": self.message,
                "policy": self.policy, "approvers": list(self.approvers),
                "approvals": self.approvals}


@dataclass(frozen=True, slots=True)
class RuleError:
    """A rule whose condition could not be evaluated, and why (``context.user_role is
    missing``)."""

    rule: str
    detail: str
    policy: str | None = None

    def document(self) -> JSONObject:
        return {"rule": self.rule, "detail": self.detail, "policy": self.policy}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the policy decided for one call, and why.

    Attributes:
        decision: ``allow``, ``deny`` or ``require_approval``.
        reason: the deciding rule's message, a sentence naming the default, or, for a
            fail-closed deny, ``<cause>: <what went wrong>``.
        rule: the deciding rule, or None (the default decided, or it failed closed).
        approvers: for ``require_approval``, the groups named by the applying rules.
        matched: every rule that applied, in policy and rule order.
        errors: every rule whose condition was an error.
        policy_name: the policy of the deciding rule, or whose default decided.
        policy_revision: the bundle revision that decided.
        binding: for ``require_approval``, the context keys an approval is bound to (the
            keys the asking policies' conditions read; ``*`` for the whole context).
    """

    decision: Action
    reason: str
    rule: str | None = None
    approvers: tuple[str, ...] = ()
    matched: tuple[Match, ...] = ()
    errors: tuple[RuleError, ...] = ()
    policy_name: str | None = None
    policy_revision: str | None = None
    binding: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        """Whether the tool may run: exactly when the decision is ``allow``."""
        return self.decision == "allow"

    @classmethod
    def fail_closed(cls, cause: str, message: str) -> Verdict:
        """The deny for a call that could not be decided; the reason names the cause."""
        return cls("deny", f"{cause}: {message}")

    def document(self) -> JSONObject:
        """The decision object, as ``data.veto.decision`` returns it."""
        return {"decision": self.decision, "rule": self.rule, "reason": self.reason,
                "approvers": list(self.approvers),
                "matched": [m.document() for m in self.matched],
                "errors": [e.document() for e in self.errors],
                "policy": {"name": self.policy_name, "revision": self.policy_revision},
                "binding": list(self.binding)}

    @classmethod
    def from_document(cls, value: object) -> Verdict:
        """Check an engine's answer (the value of ``data.veto.decision``) and read it.

        Raises:
            EngineProtocolError: naming the first field that is missing or ill-typed.
        """
        if type(value) is not dict:
            raise _malformed(f"expected an object, found {_describe(value)}")
        d = cast("dict[str, Any]", value)
        decision = _field(d, "decision")
        if decision not in ACTIONS:
            raise _malformed("'decision' must be one of allow, deny, require_approval, found "
                             + _describe(decision))
        policy = _object(_field(d, "policy"), "'policy'")
        return cls(
            decision=cast("Action", decision),
            reason=_string(_field(d, "reason"), "'reason'"),
            rule=_optional_string(_field(d, "rule"), "'rule'"),
            approvers=_strings(_field(d, "approvers"), "'approvers'"),
            matched=tuple(_match(m) for m in _list(_field(d, "matched"), "'matched'")),
            errors=tuple(_error(e) for e in _list(_field(d, "errors"), "'errors'")),
            policy_name=_optional_string(policy.get("name"), "'policy.name'"),
            policy_revision=_optional_string(policy.get("revision"), "'policy.revision'"),
            # A bundle that does not say what to bind an approval to binds the whole context.
            binding=_strings(d.get("binding", [WHOLE_CONTEXT]), "'binding'"),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What ``Veto.guard()`` answers for one tool call: the policy's :class:`Verdict` (after
    approvals), and where it is recorded and traced.

    Attributes:
        verdict: the decision and its reasons.
        decision_id: the id of this decision's record (span attribute ``veto.decision_id``).
        approval_id: the pending approval to wait for (``require_approval``), the approval
            that let this call through (``allow``), or the one that was rejected.
        cause: set when the decision is a fail-closed deny: ``engine_timeout``,
            ``engine_unavailable``, ``policy_not_loaded``, ``invalid_tool_call``, ...;
            ``approval_rejected`` when an approver rejected the call.
        trace_id, span_id: the guard's span, when spans are on.
    """

    verdict: Verdict
    decision_id: str
    approval_id: str | None = None
    cause: str | None = None
    trace_id: str | None = None
    span_id: str | None = None

    @property
    def decision(self) -> Action:
        return self.verdict.decision

    @property
    def allowed(self) -> bool:
        """True exactly when the tool may run now (``decision == "allow"``)."""
        return self.verdict.allowed

    @property
    def reason(self) -> str:
        return self.verdict.reason

    @property
    def rule(self) -> str | None:
        return self.verdict.rule

    @property
    def approvers(self) -> tuple[str, ...]:
        return self.verdict.approvers

    @property
    def matched(self) -> tuple[Match, ...]:
        return self.verdict.matched

    @property
    def errors(self) -> tuple[RuleError, ...]:
        return self.verdict.errors

    @property
    def policy_name(self) -> str | None:
        return self.verdict.policy_name

    @property
    def policy_revision(self) -> str | None:
        return self.verdict.policy_revision

    def document(self) -> JSONObject:
        """The decision as a JSON object: the decision object, plus the call's ids."""
        return {**self.verdict.document(), "allowed": self.allowed,
                "decision_id": self.decision_id, "approval_id": self.approval_id,
                "cause": self.cause, "trace_id": self.trace_id, "span_id": self.span_id}

    def tool_message(self) -> str:
        """The content of the ``tool`` message to return to the model when the tool did not
        run, so that the model can react: a JSON object naming the status and the reason.
        A call an approver rejected has status ``rejected`` and the reason names who and
        why."""
        status = ("rejected" if self.cause == "approval_rejected" else
                  "denied" if self.decision == "deny" else
                  "pending_approval" if self.decision == "require_approval" else "allowed")
        body: JSONObject = {"status": status, "reason": self.reason,
                            "decision_id": self.decision_id}
        if self.approval_id:
            body["approval_id"] = self.approval_id
        if self.approvers and self.decision == "require_approval":
            body["approvers"] = list(self.approvers)
        return json.dumps(body, ensure_ascii=False)


def _malformed(problem: str) -> EngineProtocolError:
    return EngineProtocolError(f"the engine's answer is not a decision object: {problem}")


def _field(d: dict[str, Any], name: str) -> Any:
    try:
        return d[name]
    except KeyError:
        raise _malformed(f"the field '{name}' is missing") from None


def _object(value: object, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _malformed(f"{what} must be an object, found {_describe(value)}")
    return cast("dict[str, Any]", value)


def _list(value: object, what: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or any(type(v) is not dict for v in value):
        raise _malformed(f"{what} must be a list of objects, found {_describe(value)}")
    return value


def _string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _malformed(f"{what} must be a string, found {_describe(value)}")
    return value


def _optional_string(value: object, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _malformed(f"{what} must be a string or null, found {_describe(value)}")
    return value


def _strings(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
        raise _malformed(f"{what} must be a list of strings, found {_describe(value)}")
    return tuple(value)


def _match(m: dict[str, Any]) -> Match:
    action = _field(m, "action")
    if action not in ACTIONS:
        raise _malformed(f"'matched' action must be one of allow, deny, require_approval, "
                         f"found {_describe(action)}")
    return Match(rule=_string(_field(m, "rule"), "'matched' rule"),
                 action=cast("Action", action),
                 message=_string(_field(m, "message"), "'matched' message"),
                 policy=_optional_string(m.get("policy"), "'matched' policy"),
                 approvers=_strings(m.get("approvers", []), "'matched' approvers"),
                 approvals=_count(m.get("approvals", 1), "'matched' approvals"))


def _count(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise _malformed(f"{what} must be a whole number, found {_describe(value)}")
    return value


def _error(e: dict[str, Any]) -> RuleError:
    return RuleError(rule=_string(_field(e, "rule"), "'errors' rule"),
                     detail=_string(_field(e, "detail"), "'errors' detail"),
                     policy=_optional_string(e.get("policy"), "'errors' policy"))


_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
               int: "a number", float: "a number", type(None): "null"}


def _describe(value: object) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return kind if value is None else f"{kind} {text}"
