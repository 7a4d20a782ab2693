"""The :class:`Decision` that ``Veto.guard()`` returns for every tool call."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from veto_opa._types import Action


class Decision(BaseModel):
    """What the policy decided for one tool call, and why.

    Attributes:
        decision: ``allow``, ``deny`` or ``require_approval``.
        allowed: True exactly when the tool may run now (``decision == "allow"``).
        reason: the deciding rule's message, or why the call was denied without a rule
            (fail closed: the cause is named, e.g. ``engine_timeout: OPA did not answer ...``).
        rule: the deciding rule, or None (default decision, or fail closed).
        approvers: groups that may approve, for ``require_approval``.
        approval_id: the pending approval to wait for (``require_approval``), or the approval
            that let this call through (``allow`` after an approval).
        decision_id: the id of this decision's record (and span attribute ``veto.decision_id``).
        matched: every rule that applied: ``{"rule", "action", "message", "policy"}``.
        errors: every rule whose condition could not be evaluated: ``{"rule", "detail",
            "policy"}``.
        policy_name: the policy of the deciding rule (or whose default decided).
        policy_revision: the bundle revision that decided (``sha256:...``).
        cause: set when the decision is a fail-closed deny: ``engine_timeout``,
            ``engine_unavailable``, ``policy_not_loaded``, ``invalid_tool_call``, ...;
            ``approval_rejected`` when an approver rejected the call.
        trace_id, span_id: the guard's span, when spans are on.
    """

    model_config = ConfigDict(frozen=True)

    decision: Action
    allowed: bool
    reason: str
    rule: str | None = None
    approvers: list[str] = []
    approval_id: str | None = None
    decision_id: str
    matched: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    policy_name: str | None = None
    policy_revision: str | None = None
    cause: str | None = None
    trace_id: str | None = None
    span_id: str | None = None

    @classmethod
    def _of_guard(cls, values: dict[str, Any]) -> Decision:
        """A Decision of ``values``, which must hold every field, valid and in the order of
        the class (that is the order of ``repr`` and ``model_dump``): ``guard()``'s path.

        What ``model_construct`` does for a full set of fields (pydantic 2 keeps field values
        in ``__dict__``), without its per-field loop: 1.3 µs instead of 7 µs here, on every
        guard call. ``tests/runtime/test_decision.py`` holds it equal to ``model_validate``.
        """
        decision = cls.__new__(cls)
        _set(decision, "__dict__", values)
        _set(decision, "__pydantic_fields_set__", set(_FIELDS))
        _set(decision, "__pydantic_extra__", None)
        _set(decision, "__pydantic_private__", None)
        return decision

    def tool_message(self) -> str:
        """The content of the ``tool`` message to return to the model when the tool did not
        run, so that the model can react: a JSON object naming the status and the reason.
        A call an approver rejected has status ``rejected`` and the reason names who and
        why."""
        status = ("rejected" if self.cause == "approval_rejected" else
                  "denied" if self.decision == "deny" else
                  "pending_approval" if self.decision == "require_approval" else "allowed")
        body: dict[str, Any] = {"status": status,
                                "reason": self.reason, "decision_id": self.decision_id}
        if self.approval_id:
            body["approval_id"] = self.approval_id
        if self.approvers and self.decision == "require_approval":
            body["approvers"] = self.approvers
        return json.dumps(body, ensure_ascii=False)


_FIELDS = frozenset(Decision.model_fields)
_set = object.__setattr__
