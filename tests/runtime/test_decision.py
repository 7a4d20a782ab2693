"""Decision._of_guard, guard()'s way of building a Decision, against pydantic's own."""

from __future__ import annotations

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from veto_opa import Decision

names = st.text(min_size=1, max_size=12)
optional = st.none() | names
entries = st.lists(st.dictionaries(st.sampled_from(["rule", "action", "message", "policy",
                                                    "detail"]), names, max_size=4), max_size=3)

fields = st.fixed_dictionaries({
    "decision": st.sampled_from(["allow", "deny", "require_approval"]),
    "allowed": st.booleans(),
    "reason": st.text(max_size=40),
    "rule": optional,
    "approvers": st.lists(names, max_size=3),
    "approval_id": optional,
    "decision_id": st.uuids().map(str),
    "matched": entries,
    "errors": entries,
    "policy_name": optional,
    "policy_revision": optional,
    "cause": optional,
    "trace_id": optional,
    "span_id": optional,
})


@given(values=fields)
def test_of_guard_is_the_validated_decision(values: dict) -> None:
    built = Decision._of_guard({name: values[name] for name in Decision.model_fields})
    validated = Decision.model_validate(values)

    assert built == validated
    assert repr(built) == repr(validated)
    assert list(built.model_dump().items()) == list(validated.model_dump().items())
    assert built.model_dump_json() == validated.model_dump_json()
    assert built.model_fields_set == validated.model_fields_set
    assert built.tool_message() == validated.tool_message()


def test_of_guard_decisions_are_frozen_like_any_other() -> None:
    values = {"decision": "deny", "allowed": False, "reason": "no", "rule": None,
              "approvers": [], "approval_id": None, "decision_id": "d", "matched": [],
              "errors": [], "policy_name": None, "policy_revision": None, "cause": None,
              "trace_id": None, "span_id": None}
    built = Decision._of_guard(values)

    with pytest.raises(pydantic.ValidationError, match="frozen"):
        built.decision = "allow"  # type: ignore[misc]
    assert built.model_copy(update={"reason": "yes"}).reason == "yes"
    assert Decision.model_validate(built.model_dump()) == built
