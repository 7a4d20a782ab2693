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
            ``engine_unavailable``, ``policy_not_loaded``, ``invalid_tool_call``, ...
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

    def tool_message(self) -> str:
        """The content of the ``tool`` message to return to the model when the tool did not
        run, so that the model can react: a JSON object naming the status and the reason."""
        body: dict[str, Any] = {"status": "denied" if self.decision == "deny" else
                                "pending_approval" if self.decision == "require_approval"
                                else "allowed",
                                "reason": self.reason, "decision_id": self.decision_id}
        if self.approval_id:
            body["approval_id"] = self.approval_id
        if self.approvers and self.decision == "require_approval":
            body["approvers"] = self.approvers
        return json.dumps(body, ensure_ascii=False)
