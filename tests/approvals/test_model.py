"""What an approval is bound to: the request, its digest, the requester's names, and what
approving votes still miss."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veto_opa.approvals.model import (
    Requirement,
    Vote,
    arguments_mac,
    build_request,
    missing_approvals,
    names_in,
)
from veto_opa.records.model import canonical_json

KEY = b"k" * 32
DBA = Requirement("ops", "big", ("dba",), 1)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8)


def request(context: dict[str, Any], *, args: str = '{"a":1}', keys: tuple[str, ...] = (),
            requirements: tuple[Requirement, ...] = (DBA,), revision: str | None = "r1",
            tool: str = "t") -> Any:
    return build_request(tool=tool, arguments_text=args, context=context, key=KEY,
                         bound_keys=keys, requirements=requirements, policy_revision=revision)


def test_the_arguments_digest_is_keyed() -> None:
    pins = {arguments_mac(canonical_json({"pin": f"{n:04d}"}), KEY) for n in range(100)}
    assert len(pins) == 100
    assert arguments_mac('{"pin":"0042"}', KEY) != arguments_mac('{"pin":"0042"}', b"x" * 32)
    assert arguments_mac('{"pin":"0042"}', KEY).startswith("hmac-sha256:")
    # without the key, a dictionary of all PINs finds nothing
    import hashlib

    plain = {"sha256:" + hashlib.sha256(canonical_json({"pin": f"{n:04d}"}).encode()).hexdigest()
             for n in range(10_000)}
    assert not pins & plain


@settings(max_examples=100, deadline=None)
@given(a=json_values, b=json_values)
def test_subjects_bind_as_canonical_json(a: Any, b: Any) -> None:
    first, second = request({"user": a}), request({"user": b})
    assert (first.digest() == second.digest()) == (canonical_json(a) == canonical_json(b))
    assert first.subject == canonical_json(a)
    assert request({}).digest() != first.digest()       # no subject never matches one
    assert request({}).subject is None


@settings(max_examples=100, deadline=None)
@given(context=st.dictionaries(st.sampled_from(["environment", "user", "tier", "x", "y"]),
                               json_values, max_size=5),
       change=st.sampled_from(["environment", "user", "tier", "x"]), value=json_values)
def test_the_bound_keys_and_only_they_change_the_binding(context: dict[str, Any], change: str,
                                                        value: Any) -> None:
    changed = {**context, change: value}
    same = change in context and canonical_json(context[change]) == canonical_json(value)
    bound = request(context, keys=("tier",)).digest() == request(changed, keys=("tier",)).digest()
    assert bound == (same or change == "x")      # x is not bound; the others are
    whole = request(context, keys=("*",)).digest() == request(changed, keys=("*",)).digest()
    assert whole == same


def test_rules_counts_revision_tool_and_arguments_are_bound() -> None:
    base = request({"environment": "prod"})
    for other in (
        request({"environment": "prod"}, requirements=(Requirement("ops", "big", ("sre",), 1),)),
        request({"environment": "prod"}, requirements=(Requirement("ops", "big", ("dba",), 2),)),
        request({"environment": "prod"}, requirements=(DBA, Requirement("ops", "pii", ("p",)))),
        request({"environment": "prod"}, revision="r2"),
        request({"environment": "prod"}, tool="u"),
        request({"environment": "prod"}, args='{"a":2}'),
    ):
        assert other.digest() != base.digest()
    assert request({"environment": "prod"}, revision="r2").call_digest() == base.call_digest()
    # the order the rules were matched in does not matter
    two = (DBA, Requirement("ops", "pii", ("p",)))
    assert request({}, requirements=two).digest() == request({}, requirements=two[::-1]).digest()


@pytest.mark.parametrize(("subject", "names"), [
    ("Bob", {"bob"}), ({"id": "BOB", "n": 4711}, {"bob", "4711"}), (["a", ["b"]], {"a", "b"}),
    (42, {"42"}), (None, set()), (True, set()), ("ｂｏｂ", {"bob"}), (1.5, {"1.5"}),
])
def test_names_in(subject: Any, names: set[str]) -> None:
    assert names_in(subject) == frozenset(names)


def test_requesters_come_from_every_subject_key() -> None:
    r = request({"subject": "svc", "user": {"id": "Bob"}, "user_id": 7, "environment": "p"})
    assert r.requesters() == {"svc", "bob", "7"}
    assert r.subject == '"svc"'


def vote(name: str, *groups: str) -> Vote:
    return Vote(name, "approved", groups, None, "t", "k", 1)


def test_missing_approvals_counts_each_rule_separately() -> None:
    pii = Requirement("ops", "pii", ("privacy",), 1)
    two = Requirement("ops", "wire", ("finance",), 2)
    anyone = Requirement("ops", "any", ("any",), 1)
    assert missing_approvals([DBA, pii], [vote("dana", "dba")]) == [(pii, 1)]
    assert missing_approvals([DBA, pii], [vote("x", "dba", "privacy")]) == []
    assert missing_approvals([two], [vote("a", "finance")]) == [(two, 1)]
    assert missing_approvals([two], [vote("a", "finance"), vote("a", "finance")]) == [(two, 1)]
    assert missing_approvals([two], [vote("a", "finance"), vote("b", "finance")]) == []
    assert missing_approvals([anyone], [vote("z")]) == []
