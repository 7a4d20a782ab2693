"""The context keys an approval is bound to: what a policy's conditions read."""

from __future__ import annotations

from pathlib import Path

import pytest

from veto_opa.translators import build
from veto_opa.translators.binding import WHOLE_CONTEXT, context_reads, policy_binding
from veto_opa.translators.loader import load_policy
from veto_opa.translators.parser import parse


@pytest.mark.parametrize(("condition", "keys"), [
    ("args.x == 1", set()),
    ("context.user == 'bob'", {"user"}),
    ("context['tenant'] == 'a' && has(context.region)", {"tenant", "region"}),
    ("context.a.b.c > 1 || context.d.exists(v, v == context.e)", {"a", "d", "e"}),
    ("tool == 'x' && model == 'y'", set()),
    # the key is not known before the call: the whole context is bound
    ("context[args.key] == 1", None),
    ("'admin' in context", None),
    ("size(context) > 2", None),
    ("context[0] == 1", None),
])
def test_context_reads(condition: str, keys: set[str] | None) -> None:
    reads = context_reads(parse(condition).node)
    assert reads == (frozenset(keys) if keys is not None else None)


def _policy(tmp_path: Path, text: str):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return load_policy(path)


def test_binding_is_every_key_read_plus_environment(tmp_path: Path) -> None:
    policy = _policy(tmp_path, """\
rules:
  - name: a
    when: context.user_role == 'viewer'
    action: deny
  - name: b
    environments: [production]
    when: context.tenant.startsWith('x')
    action: require_approval
    approvers: [dba]
  - name: c
    action: allow
""")
    assert policy_binding(policy) == ("environment", "tenant", "user_role")


def test_approval_binding_replaces_the_computed_keys_but_keeps_environment(
        tmp_path: Path) -> None:
    policy = _policy(tmp_path, """\
approval_binding: [ticket]
rules:
  - name: b
    when: context.tenant == 'x'
    action: require_approval
    approvers: [dba]
""")
    assert policy_binding(policy) == ("environment", "ticket")


def test_dynamic_read_binds_the_whole_context(tmp_path: Path) -> None:
    policy = _policy(tmp_path, """\
rules:
  - name: b
    when: context[args.field] == 'x'
    action: require_approval
    approvers: [any]
""")
    assert policy_binding(policy) == (WHOLE_CONTEXT,)


def test_the_decision_names_the_binding_and_each_rules_approvers(tmp_path: Path) -> None:
    import opa_bindings

    from veto_opa.translators.bundle import load_into_engine

    policy = tmp_path / "p.yaml"
    policy.write_text("""\
rules:
  - name: big_scale
    tool: kubectl_scale
    when: args.replicas > 20
    action: require_approval
    approvers: [capacity-team]
  - name: prod
    tool: kubectl_scale
    environments: [production]
    when: context.tenant != 'internal'
    action: require_approval
    approvers: [sre-oncall]
    approvals: 2
""")
    other = tmp_path / "q.yaml"
    other.write_text("""\
policy: q
default: require_approval
default_approvers: [any]
rules:
  - name: region
    tool: kubectl_scale
    when: context.region == 'eu'
    action: require_approval
    approvers: [privacy]
""")
    engine = opa_bindings.OpaEngine()
    try:
        load_into_engine(build([policy, other]).bundle(), engine)
        d = engine.eval_document("veto.decision", {
            "tool": "kubectl_scale", "args": {"replicas": 50}, "call_id": None, "model": None,
            "context": {"environment": "production", "tenant": "acme", "region": "eu"}})
        assert d["decision"] == "require_approval"
        assert [(m["rule"], m["approvers"], m["approvals"]) for m in d["matched"]] == [
            ("big_scale", ["capacity-team"], 1), ("prod", ["sre-oncall"], 2),
            ("region", ["privacy"], 1)]
        assert d["binding"] == ["environment", "region", "tenant"]
        nothing = engine.eval_document("veto.decision", {
            "tool": "other", "args": {}, "call_id": None, "model": None, "context": {}})
        assert nothing["decision"] == "require_approval" and nothing["rule"] is None
        assert nothing["approvers"] == ["any"] and nothing["binding"] == ["environment", "region"]
        allowed = engine.eval_document("veto.decision", {
            "tool": "kubectl_scale", "args": {"replicas": 1}, "call_id": None, "model": None,
            "context": {"environment": "staging", "region": "us"}})
        assert allowed["decision"] == "require_approval"   # q's default
    finally:
        engine.close()
