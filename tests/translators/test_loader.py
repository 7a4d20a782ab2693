"""Loading policy files into Policy values: the seed, every key of the format, the choices
made about its edge cases. Malformed files are in test_malformed.py."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from veto_opa.errors import PolicyError
from veto_opa.translators import expressions as ex
from veto_opa.translators.loader import load_policies, load_policy
from veto_opa.translators.policy import Expectation

SEED = Path(__file__).resolve().parents[2] / "examples" / "policies.yaml"


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, name: str = "policy.yaml"):
    return load_policy(write(tmp_path, text, name))


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as raised:
        load_policy(path, display="p.yaml")
    return [str(d) for d in raised.value.diagnostics]


# -- the seed ----------------------------------------------------------------------------------

def test_seed_loads_verbatim():
    policy = load_policy(SEED)
    assert policy.name == "policies"
    assert policy.default == "allow"
    assert policy.source == str(SEED)
    assert policy.text == SEED.read_bytes()
    assert policy.sha256 == hashlib.sha256(SEED.read_bytes()).hexdigest()
    assert [(r.name, r.action, r.tools, r.approvers) for r in policy.rules] == [
        ("block_production_database_deletes", "deny", ("execute_sql",), ()),
        ("scope_database_access", "require_approval", ("execute_sql",), ("platform-team",)),
        ("block_schema_changes", "deny", ("execute_sql",), ()),
        ("secret_rotation_high_value", "require_approval", ("rotate_secret",),
         ("security-team",)),
        ("block_root_secret_paths", "deny", ("rotate_secret",), ()),
        ("read_only_for_viewer", "deny", ("execute_sql",), ()),
    ]
    assert [r.index for r in policy.rules] == list(range(6))
    assert [(r.line, r.col) for r in policy.rules] == [(2, 5), (13, 5), (21, 5), (31, 5),
                                                       (38, 5), (45, 5)]
    first = policy.rules[0]
    assert first.description == "Refuse DROP, DELETE, TRUNCATE on production"
    assert first.message == "Destructive SQL is not allowed on production databases"
    assert first.when_source is not None and first.when_source.startswith(
        'context.environment == "production" &&\n')
    assert first.when is not None and isinstance(first.when.node, ex.And)
    assert first.when.problems == []
    assert policy.rules[3].message is None
    assert policy.rules[3].reason.startswith("High-value services need security approval")
    assert policy.tests == () and policy.redact == ()


def test_seed_loads_quickly():
    load_policy(SEED)
    started = time.perf_counter()
    for _ in range(10):
        load_policy(SEED)
    assert (time.perf_counter() - started) / 10 < 0.25


def test_display_and_index():
    policy = load_policy(SEED, index=3, display="veto/policies.yaml")
    assert policy.source == "veto/policies.yaml" and policy.index == 3


# -- the full format ---------------------------------------------------------------------------

FULL = """\
policy: sre
description: Guard rails for the SRE agent
default: require_approval
default_approvers: [oncall]
rules:
  - name: everything
    action: allow
  - name: prod_kubectl
    tool: [kubectl_*, "helm?"]
    environments: [production, staging]
    when: args.verb == "delete"
    action: require_approval
    approvers: [sre, platform]
  - name: prod_only
    environments: [production]
    action: deny
  - name: any_tool
    tool: "*"
    when: true
    action: deny
  - name: disabled
    when: false
    action: deny
tests:
  - name: delete_needs_approval
    tool: kubectl_delete
    args: {verb: delete, count: 2, ratio: 0.5, tags: [a, b], nested: {k: null}}
    context: {environment: production}
    model: mistral-large
    expect:
      decision: require_approval
      rule: prod_kubectl
      approvers: [platform, sre]
  - name: default_applies
    tool: other
    expect: {decision: require_approval, rule: null, reason: "no rule applied"}
  - name: short_form
    tool: other
    expect: allow
redact: [args.password, "args.items[*].secret"]
"""


def test_every_key(tmp_path: Path):
    policy = load_text(tmp_path, FULL)
    assert (policy.name, policy.description, policy.default) == (
        "sre", "Guard rails for the SRE agent", "require_approval")
    everything, kubectl, prod_only, any_tool, disabled = policy.rules
    assert everything.tools is None and everything.when is None
    assert kubectl.tools == ("kubectl_*", "helm?")
    assert kubectl.environments == ("production", "staging")
    assert kubectl.approvers == ("sre", "platform")
    assert kubectl.when_source == 'args.verb == "delete"'
    # the environments shortcut is folded into the compiled condition
    assert kubectl.when is not None and isinstance(kubectl.when.node, ex.And)
    assert isinstance(kubectl.when.node.left, ex.In)
    assert prod_only.when is not None and isinstance(prod_only.when.node, ex.In)
    assert prod_only.when_source is None
    assert any_tool.tools is None and any_tool.when is None and any_tool.when_source is None
    assert disabled.when is not None and disabled.when_source == "false"
    assert isinstance(disabled.when.node, ex.Literal) and disabled.when.node.value is False
    assert policy.redact == ("args.password", "args.items[*].secret")

    delete, default, short = policy.tests
    assert delete.args == {"verb": "delete", "count": 2, "ratio": 0.5, "tags": ["a", "b"],
                           "nested": {"k": None}}
    assert delete.context == {"environment": "production"}
    assert delete.model == "mistral-large"
    assert delete.expect == Expectation("require_approval", "prod_kubectl", None,
                                        ("platform", "sre"), rule_given=True)
    assert (delete.line, delete.col) == (25, 5)
    assert delete.input() == {"tool": "kubectl_delete", "args": delete.args,
                              "context": delete.context, "model": "mistral-large",
                              "call_id": None}
    assert default.expect == Expectation("require_approval", None, "no rule applied", None,
                                         rule_given=True)
    assert short.expect == Expectation("allow") and short.args == {} and short.context == {}


def test_rules_may_be_empty(tmp_path: Path):
    policy = load_text(tmp_path, "default: deny\nrules: []\n", "lockdown.yaml")
    assert policy.name == "lockdown" and policy.rules == () and policy.default == "deny"


def test_a_require_approval_rule_must_name_its_approvers(tmp_path: Path):
    with pytest.raises(PolicyError) as info:
        load_text(tmp_path, "rules:\n  - name: ask\n    action: require_approval\n")
    assert str(info.value).endswith(
        "policy.yaml:3:13: rule ask requires approval but names no approvers: list the groups "
        "that may approve (approvers: [dba]), or write approvers: [any] to let any registered "
        "approver decide")


def test_approvers_any_approvals_and_binding(tmp_path: Path):
    policy = load_text(tmp_path, """\
default: require_approval
default_approvers: [any]
approval_binding: [tenant]
rules:
  - name: ask
    action: require_approval
    approvers: [any]
    approvals: 2
  - name: one
    action: require_approval
    approvers: [dba, dba]
""")
    ask, one = policy.rules
    assert (ask.approvers, ask.approvals) == (("any",), 2)
    assert (one.approvers, one.approvals) == (("dba", "dba"), 1)
    assert policy.default_approvers == ("any",)
    assert policy.approval_binding == ("tenant",)


def test_a_star_in_a_list_means_every_tool(tmp_path: Path):
    policy = load_text(tmp_path, "rules:\n  - name: r\n    tool: [a, '*']\n    action: deny\n")
    assert policy.rules[0].tools is None


@pytest.mark.parametrize("pattern", ["kubectl_*", "a?c", "ns:tool", "a.b-c", "*_delete",
                                     "Tool_1"])
def test_good_tool_patterns(tmp_path: Path, pattern: str):
    policy = load_text(tmp_path, f"rules:\n  - name: r\n    tool: '{pattern}'\n"
                                 "    action: deny\n")
    assert policy.rules[0].tools == (pattern,)


def test_byte_order_mark_and_crlf(tmp_path: Path):
    path = tmp_path / "crlf.yaml"
    path.write_bytes(b"\xef\xbb\xbfrules:\r\n  - name: r\r\n    when: |\r\n      args.x ==\r\n"
                     b"        1 &&\r\n      args.y.bogus()\r\n    action: deny\r\n")
    with pytest.raises(PolicyError) as raised:
        load_policy(path, display="crlf.yaml")
    assert [str(d) for d in raised.value.diagnostics] == [
        "crlf.yaml:6:14: unknown method 'bogus' (known: all, contains, endsWith, endswith, "
        "exists, lower, matches, size, startsWith, startswith, trim, upper)"]


def test_anchors_and_merge_keys(tmp_path: Path):
    policy = load_text(tmp_path, """\
rules:
  - &sql
    name: one
    tool: execute_sql
    action: deny
  - <<: *sql
    name: two
""")
    assert [(r.name, r.tools) for r in policy.rules] == [("one", ("execute_sql",)),
                                                         ("two", ("execute_sql",))]


def test_load_policies_keeps_order_and_indexes(tmp_path: Path):
    a = write(tmp_path, "rules: []\n", "alpha.yaml")
    b = write(tmp_path, "policy: beta\nrules: []\n", "other.yaml")
    policies = load_policies([b, a])
    assert [(p.name, p.index, p.source) for p in policies] == [("beta", 0, str(b)),
                                                                ("alpha", 1, str(a))]


# -- problems that need more than one key -----------------------------------------------------

def test_when_problems_with_environments_point_into_the_condition(tmp_path: Path):
    assert problems(tmp_path, """\
rules:
  - name: r
    environments: [production]
    when: >-
      args.x.upper() ==
      foo(1)
    action: deny
""") == ["p.yaml:6:7: unknown function 'foo' (known: has, len, size)"]


def test_a_malformed_rule_still_has_its_condition_checked(tmp_path: Path):
    assert problems(tmp_path, """\
rules:
  - name: r
    action: nope
    when: args.x ==
""") == [
        "p.yaml:3:13: action must be one of deny, require_approval, allow, found 'nope'",
        "p.yaml:4:20: expression ends too early: expected a value",
    ]


def test_expect_rule_null_and_unknown(tmp_path: Path):
    assert problems(tmp_path, """\
rules:
  - name: deny_all
    action: deny
tests:
  - name: a
    tool: t
    expect: {decision: deny, rule: deny_al}
  - name: b
    tool: t
    expect: {decision: deny, rule: null}
""") == ["p.yaml:7:36: expect.rule 'deny_al' is not a rule of this policy; did you mean "
         "'deny_all'?"]


def test_expect_mapping_needs_a_decision(tmp_path: Path):
    assert problems(tmp_path, """\
rules: []
tests:
  - name: a
    tool: t
    expect: {rule: null, verdict: deny}
""") == [
        "p.yaml:5:13: expect is missing required key 'decision'",
        "p.yaml:5:26: unknown key 'verdict' in expect; expected one of decision, rule, "
        "reason, approvers",
    ]


def test_rego_keywords_are_not_policy_names(tmp_path: Path):
    assert problems(tmp_path, "policy: import\nrules: []\n") == [
        "p.yaml:1:9: policy name 'import' is a Rego keyword"]


def test_redact_paths_are_checked_with_their_grammar(tmp_path: Path):
    assert problems(tmp_path, "rules: []\nredact: [args.ok, 'args[x]']\n") == [
        "p.yaml:2:19: redact path 'args[x]': expected '[*]', '[N]' or '[\"key\"]' at offset 4"]


def test_strings_must_be_utf8_encodable_everywhere(tmp_path: Path):
    assert problems(tmp_path, """\
rules: []
tests:
  - name: a
    tool: t
    args: {"k\\udc00": 1}
    expect: allow
""") == ["p.yaml:5:14: string holds a lone surrogate U+DC00, which cannot be encoded as UTF-8"]


def test_no_traceback_for_odd_yaml(tmp_path: Path):
    for text in ["rules: [", "rules: &a [*a]", "- 1\n- 2\n", "just a string\n", "42\n",
                 "rules:\n  - name: r\n    action: deny\n    when: !!binary aGk=\n",
                 "rules:\n  - !!set {a}\n", "? - a\n: b\n"]:
        with pytest.raises(PolicyError):
            load_text(tmp_path, text)
