"""The decision model: a Verdict is what decision.rego builds, read back exactly; a Decision's
``allowed`` follows from its decision and cannot contradict it."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veto_opa.decision import Decision, Match, RuleError, Verdict
from veto_opa.errors import EngineProtocolError

ACTIONS = st.sampled_from(["allow", "deny", "require_approval"])
TEXT = st.text(max_size=20)
OPTIONAL = st.none() | TEXT
NAMES = st.lists(TEXT, max_size=3).map(tuple)

verdicts = st.builds(
    Verdict, decision=ACTIONS, reason=TEXT, rule=OPTIONAL, approvers=NAMES,
    matched=st.lists(st.builds(Match, rule=TEXT, action=ACTIONS, message=TEXT,
                               policy=OPTIONAL, approvers=NAMES), max_size=3).map(tuple),
    errors=st.lists(st.builds(RuleError, rule=TEXT, detail=TEXT, policy=OPTIONAL),
                    max_size=3).map(tuple),
    policy_name=OPTIONAL, policy_revision=OPTIONAL)


@given(verdicts)
def test_a_verdict_reads_back_from_its_document(verdict: Verdict) -> None:
    document = json.loads(json.dumps(verdict.document()))   # through JSON, as from OPA
    assert Verdict.from_document(document) == verdict


@given(verdicts, st.uuids().map(str))
def test_allowed_is_derived_from_the_decision(verdict: Verdict, decision_id: str) -> None:
    decision = Decision(verdict, decision_id)
    assert decision.allowed is (verdict.decision == "allow") is verdict.allowed
    assert decision.document()["allowed"] is decision.allowed
    assert (decision.decision, decision.reason, decision.rule, decision.matched) == (
        verdict.decision, verdict.reason, verdict.rule, verdict.matched)


def test_decisions_are_frozen() -> None:
    decision = Decision(Verdict("deny", "no"), "id")
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.verdict = Verdict("allow", "yes")  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):   # a property: nothing to set
        decision.allowed = True  # type: ignore[misc]


def test_fail_closed_names_the_cause() -> None:
    verdict = Verdict.fail_closed("engine_timeout", "OPA did not answer within 1.0 s")
    assert (verdict.decision, verdict.rule, verdict.reason) == (
        "deny", None, "engine_timeout: OPA did not answer within 1.0 s")


@pytest.mark.parametrize("entry, problem", [
    ({"rule": "r"}, "the field 'action' is missing"),
    ({"rule": "r", "action": "block", "message": "m"}, "'matched' action must be one of"),
    ({"rule": 1, "action": "deny", "message": "m"}, "'matched' rule must be a string"),
])
def test_matched_entries_are_checked(entry: dict[str, object], problem: str) -> None:
    document = Verdict("deny", "r").document() | {"matched": [entry]}
    with pytest.raises(EngineProtocolError, match=problem):
        Verdict.from_document(document)


def test_tool_message_names_the_status() -> None:
    pending = Decision(Verdict("require_approval", "needs a DBA", approvers=("dba",)), "d1",
                       approval_id="a1")
    assert json.loads(pending.tool_message()) == {
        "status": "pending_approval", "reason": "needs a DBA", "decision_id": "d1",
        "approval_id": "a1", "approvers": ["dba"]}
    denied = Decision(Verdict("deny", "no"), "d2")
    assert json.loads(denied.tool_message())["status"] == "denied"


def test_an_answer_without_approval_fields_binds_the_whole_context() -> None:
    # A bundle that does not say what an approval binds (or how many approvers a rule needs)
    # gets the strictest reading: the whole context, one approver per asking rule at least.
    document = Verdict("require_approval", "r").document()
    del document["binding"]
    document["matched"] = [{"rule": "r", "action": "require_approval", "message": "m"}]
    verdict = Verdict.from_document(document)
    assert verdict.binding == ("*",) and verdict.matched[0].approvals == 1
