package veto.decision_test

import data.veto

# The policy packages are faked with `with data.veto.policies as {...}`: OPA replaces
# the whole subtree, including any compiled policy packages loaded beside this file,
# so each test sees exactly the policies it names; their rules' data goes with them,
# `with data.veto.rules as _rules_of(...)`. Their `rules` and `status` are constants
# here: what is under test is how the library combines them. A rule in error has the
# status {"error": detail}, as generated code writes it (the generated details have tests
# of their own, tests/translators). `with data.veto.bundle as {}` hides the policy list and
# default decision of a compiled bundle loaded beside this file.

_policy(name, index, default_action) := {
	"name": name,
	"index": index,
	"default": default_action,
	"source": concat("", [name, ".yaml"]),
}

_rule(policy, index, name, action) := _approval_rule(policy, index, name, action, [])

_approval_rule(policy, index, name, action, approvers) := {
	"policy": policy,
	"index": index,
	"rule": name,
	"action": action,
	"message": concat(" ", [name, "says", action]),
	"approvers": approvers,
}

# A rule whose condition is an error. With action allow it does not apply; with deny or
# require_approval it applies (fail closed).
_error(policy, index, name, detail) := _failing(policy, index, name, "allow", detail)

_failing(policy, index, name, action, detail) := {
	"policy": policy,
	"index": index,
	"rule": name,
	"action": action,
	"message": concat(" ", [name, "says", action]),
	"approvers": [],
	"detail": detail,
}

# A compiled policy package: the status of the rules for this tool, [rule, true] for those
# that apply and [rule, {"error": detail}] for those in error; `rules` (the rules' data by
# name) is this file's own field, read by _rules_of.
_package(policy, applies, errors) := {
	"policy": policy,
	"rules": object.union(
		{r.rule: _meta(r) | some r in applies},
		{e.rule: _meta(e) | some e in errors},
	),
	"status": {[r.rule, true] | some r in applies} | {[e.rule, {"error": e.detail}] | some e in errors},
}

_meta(r) := {"index": r.index, "action": r.action, "message": r.message, "approvers": r.approvers}

_rules_of(policies) := {name: p.rules | some name, p in policies}

_decide(policies) := d if {
	d := veto.decision with input as _call
		with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies) with data.veto.bundle as {}
}

_decide_for(names, policies) := d if {
	d := veto.decision_for(names) with input as _call
		with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies) with data.veto.bundle as {}
}

_call := {
	"tool": "sql_execute",
	"args": {"query": "DROP TABLE users"},
	"context": {},
	"model": null,
	"call_id": null,
}

# sre loads first (index 0), then ops (index 1); names sort the other way round, so
# tests that depend on order prove that the index decides, not the name.
_sre_mixed := _package(
	_policy("sre", 0, "allow"),
	{
		_rule("sre", 0, "log_reads", "allow"),
		_approval_rule("sre", 1, "prod_writes", "require_approval", ["dba"]),
		_rule("sre", 2, "prod_deletes", "deny"),
	},
	set(),
)

test_deny_beats_require_approval if {
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as {"sre": _sre_mixed}
		with data.veto.rules as _rules_of({"sre": _sre_mixed})
	d.decision == "deny"
	d.rule == "prod_deletes"
	d.reason == "prod_deletes says deny"
	d.approvers == []
	d.policy.name == "sre"
}

test_require_approval_beats_allow if {
	policies := {"sre": _package(
		_policy("sre", 0, "allow"),
		{
			_rule("sre", 0, "log_reads", "allow"),
			_approval_rule("sre", 1, "prod_writes", "require_approval", ["dba"]),
		},
		set(),
	)}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.decision == "require_approval"
	d.rule == "prod_writes"
	d.approvers == ["dba"]
}

test_allow_when_only_allow_rules_apply if {
	policies := {"sre": _package(_policy("sre", 0, "deny"), {_rule("sre", 3, "log_reads", "allow")}, set())}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.decision == "allow"
	d.rule == "log_reads"
	d.reason == "log_reads says allow"
	d.approvers == []
}

test_decision_object_has_the_documented_shape if {
	d := veto.decision with input as _call
		with data.veto.policies as {"sre": _sre_mixed}
		with data.veto.rules as _rules_of({"sre": _sre_mixed})
		with data.veto.bundle as {"revision": "sha256:abc"}

	d == {
		"decision": "deny",
		"rule": "prod_deletes",
		"reason": "prod_deletes says deny",
		"approvers": [],
		"matched": [
			{
				"rule": "log_reads", "action": "allow", "message": "log_reads says allow", "policy": "sre",
				"approvers": [], "approvals": 0,
			},
			{
				"rule": "prod_writes",
				"action": "require_approval",
				"message": "prod_writes says require_approval",
				"policy": "sre",
				"approvers": ["dba"],
				"approvals": 1,
			},
			{
				"rule": "prod_deletes", "action": "deny", "message": "prod_deletes says deny", "policy": "sre",
				"approvers": [], "approvals": 0,
			},
		],
		"errors": [],
		"policy": {"name": "sre", "revision": "sha256:abc"},
		"binding": [],
	}
}

# Both policies deny; sre's deny is rule 7 of the first-loaded policy, ops's deny is
# rule 0 of the second: policy order comes before rule order.
test_deciding_rule_is_first_in_policy_order_across_policies if {
	policies := {
		"ops": _package(_policy("ops", 1, "allow"), {_rule("ops", 0, "ops_blocks", "deny")}, set()),
		"sre": _package(_policy("sre", 0, "allow"), {_rule("sre", 7, "sre_blocks", "deny")}, set()),
	}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.decision == "deny"
	d.rule == "sre_blocks"
	d.policy.name == "sre"
	[m.rule | some m in d.matched] == ["sre_blocks", "ops_blocks"]
}

test_deciding_rule_is_first_in_rule_order_within_a_policy if {
	policies := {"sre": _package(
		_policy("sre", 0, "allow"),
		{
			_rule("sre", 10, "late_deny", "deny"),
			_rule("sre", 2, "early_deny", "deny"),
			_rule("sre", 1, "earliest_allow", "allow"),
		},
		set(),
	)}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.rule == "early_deny"
	[m.rule | some m in d.matched] == ["earliest_allow", "early_deny", "late_deny"]
}

# A deny from a later policy still beats an approval from an earlier one.
test_deny_in_later_policy_beats_approval_in_earlier_policy if {
	policies := {
		"sre": _package(
			_policy("sre", 0, "allow"),
			{_approval_rule("sre", 0, "needs_dba", "require_approval", ["dba"])},
			set(),
		),
		"ops": _package(_policy("ops", 1, "allow"), {_rule("ops", 0, "ops_blocks", "deny")}, set()),
	}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.decision == "deny"
	d.rule == "ops_blocks"
	d.policy.name == "ops"
	d.approvers == []
}

test_approvers_are_the_sorted_union_of_every_approval_rule if {
	policies := {
		"sre": _package(
			_policy("sre", 0, "allow"),
			{
				_approval_rule("sre", 0, "needs_dba", "require_approval", ["oncall", "dba"]),
				_approval_rule("sre", 1, "needs_lead", "require_approval", ["lead", "dba"]),
			},
			set(),
		),
		"ops": _package(
			_policy("ops", 1, "allow"),
			{_approval_rule("ops", 0, "needs_security", "require_approval", ["security", "audit"])},
			set(),
		),
	}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.decision == "require_approval"
	d.rule == "needs_dba"
	d.policy.name == "sre"
	d.approvers == ["audit", "dba", "lead", "oncall", "security"]
}

test_default_of_a_single_policy_applies_when_no_rule_does if {
	policies := {"sre": _package(_policy("sre", 0, "allow"), set(), set())}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.decision == "allow"
	d.rule == null
	d.reason == `no rule applies; policy sre defaults to allow`
	d.approvers == []
	d.matched == []
	d.policy.name == "sre"
}

test_default_require_approval_has_no_approvers if {
	policies := {"sre": _package(_policy("sre", 0, "require_approval"), set(), set())}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.decision == "require_approval"
	d.approvers == []
	d.reason == `no rule applies; policy sre defaults to require_approval`
}

test_most_restrictive_default_wins_across_policies if {
	policies := {
		"open": _package(_policy("open", 0, "allow"), set(), set()),
		"careful": _package(_policy("careful", 1, "require_approval"), set(), set()),
		"closed": _package(_policy("closed", 2, "deny"), set(), set()),
	}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.decision == "deny"
	d.rule == null
	d.policy.name == "closed"
	d.reason == `no rule applies; policy closed defaults to deny`
}

test_require_approval_default_beats_allow_default if {
	policies := {
		"careful": _package(_policy("careful", 1, "require_approval"), set(), set()),
		"open": _package(_policy("open", 0, "allow"), set(), set()),
	}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.decision == "require_approval"
	d.policy.name == "careful"
}

test_default_tie_goes_to_the_first_loaded_policy if {
	policies := {
		"alpha": _package(_policy("alpha", 1, "deny"), set(), set()),
		"zulu": _package(_policy("zulu", 0, "deny"), set(), set()),
	}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.policy.name == "zulu"
}

test_any_applying_rule_beats_every_default if {
	policies := {
		"closed": _package(_policy("closed", 0, "deny"), set(), set()),
		"sre": _package(_policy("sre", 1, "allow"), {_rule("sre", 0, "log_reads", "allow")}, set()),
	}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.decision == "allow"
	d.rule == "log_reads"
	d.policy.name == "sre"
}

test_unknown_default_fails_closed if {
	policies := {"odd": _package(_policy("odd", 0, "maybe"), set(), set())}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.decision == "deny"
	d.reason == `no rule applies; policy odd defaults to deny`
}

test_deny_when_no_policy_is_loaded if {
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as {}
		with data.veto.rules as _rules_of({})
	d == {
		"decision": "deny",
		"rule": null,
		"reason": "no Veto policy is loaded",
		"approvers": [],
		"matched": [],
		"errors": [],
		"policy": {"name": null, "revision": ""},
		"binding": [],
	}
}

# Compiled example tests live at data.veto.policies.<name>_test and define no `policy`.
test_packages_without_policy_are_not_policies if {
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as {"sre_test": {"test_x": true}}
		with data.veto.rules as _rules_of({"sre_test": {"test_x": true}})
	d.reason == "no Veto policy is loaded"
}

test_errors_are_ordered_by_policy_then_rule if {
	policies := {
		"ops": _package(
			_policy("ops", 1, "allow"),
			set(),
			{_error("ops", 0, "ops_rule", "args.query is missing")},
		),
		"sre": _package(
			_policy("sre", 0, "allow"),
			set(),
			{
				_failing("sre", 4, "blocks", "deny", "context.environment is missing"),
				_error("sre", 1, "reads", "args.limit is not a number"),
			},
		),
	}
	d := _decide(policies)
	d.decision == "deny"
	d.errors == [
		{"rule": "reads", "detail": "args.limit is not a number", "policy": "sre"},
		{"rule": "blocks", "detail": "context.environment is missing", "policy": "sre"},
		{"rule": "ops_rule", "detail": "args.query is missing", "policy": "ops"},
	]
}

# An erroring allow rule does not apply, but its error is still reported.
test_errors_are_reported_when_no_rule_applies if {
	policies := {"sre": _package(
		_policy("sre", 0, "deny"),
		set(),
		{_error("sre", 0, "reads", "args.limit is missing")},
	)}
	d := _decide(policies)
	d.decision == "deny"
	d.rule == null
	d.errors == [{"rule": "reads", "detail": "args.limit is missing", "policy": "sre"}]
}

# No `with input`: the test runs without any input document.
test_decision_is_defined_without_input if {
	policies := {"sre": _package(_policy("sre", 0, "allow"), set(), set())}
	d := veto.decision with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies) with data.veto.bundle as {}
	d.decision == "allow"
	d.reason == "no rule applies; policy sre defaults to allow"
}

test_decision_is_defined_when_input_is_not_an_object if {
	policies := {"sre": _package(_policy("sre", 0, "allow"), set(), set())}
	d := veto.decision with input as "sql_execute" with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies) with data.veto.bundle as {}
	d.decision == "allow"
	d.reason == "no rule applies; policy sre defaults to allow"
}

test_decision_is_defined_without_input_or_policies if {
	d := veto.decision with data.veto.policies as {}
		with data.veto.rules as _rules_of({}) with data.veto.bundle as {}
	d.decision == "deny"
	d.reason == "no Veto policy is loaded"
}

test_decision_is_defined_when_the_tool_is_not_a_string if {
	policies := {"sre": _package(_policy("sre", 0, "allow"), set(), set())}
	d := veto.decision with input as {"tool": 42} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies) with data.veto.bundle as {}
	d.reason == "no rule applies; policy sre defaults to allow"
}

test_revision_comes_from_bundle_data if {
	d := veto.decision with input as _call
		with data.veto.policies as {"sre": _sre_mixed}
		with data.veto.rules as _rules_of({"sre": _sre_mixed})
		with data.veto.bundle as {"revision": "sha256:0123"}

	d.policy == {"name": "sre", "revision": "sha256:0123"}
}

test_revision_is_empty_without_bundle_data if {
	d := veto.decision with input as _call
		with data.veto.policies as {"sre": _sre_mixed}
		with data.veto.rules as _rules_of({"sre": _sre_mixed})
		with data.veto.bundle as {}

	d.policy.revision == ""
}

test_revision_is_empty_when_not_a_string if {
	d := veto.decision with input as _call
		with data.veto.policies as {"sre": _sre_mixed}
		with data.veto.rules as _rules_of({"sre": _sre_mixed})
		with data.veto.bundle as {"revision": 7}

	d.policy.revision == ""
}

test_revision_is_kept_when_no_policy_is_loaded if {
	d := veto.decision with data.veto.policies as {}
		with data.veto.rules as _rules_of({}) with data.veto.bundle as {"revision": "sha256:0123"}
	d.policy == {"name": null, "revision": "sha256:0123"}
}

_two_policies := {
	"sre": _package(
		_policy("sre", 0, "allow"),
		{_approval_rule("sre", 0, "needs_dba", "require_approval", ["dba"])},
		{_error("sre", 1, "reads", "args.limit is missing")},
	),
	"ops": _package(
		_policy("ops", 1, "allow"),
		{_rule("ops", 0, "ops_blocks", "deny")},
		{_error("ops", 0, "ops_rule", "args.query is missing")},
	),
}

test_decision_for_ignores_policies_not_named if {
	d := _decide_for({"sre"}, _two_policies)
	d.decision == "require_approval"
	d.rule == "needs_dba"
	d.approvers == ["dba"]
	d.matched == [{
		"rule": "needs_dba",
		"action": "require_approval",
		"message": "needs_dba says require_approval",
		"policy": "sre",
		"approvers": ["dba"],
		"approvals": 1,
	}]
	d.errors == [{"rule": "reads", "detail": "args.limit is missing", "policy": "sre"}]
}

test_decision_spans_every_loaded_policy if {
	d := _decide(_two_policies)
	d.decision == "deny"
	d.rule == "ops_blocks"
	count(d.matched) == 2
	count(d.errors) == 2
}

test_decision_for_all_names_equals_decision if {
	everyone := _decide_for({"sre", "ops"}, _two_policies)
	d := _decide(_two_policies)
	everyone == d
}

test_decision_for_unknown_policy_denies if {
	d := veto.decision_for({"nope"}) with input as _call with data.veto.policies as _two_policies
		with data.veto.rules as _rules_of(_two_policies) with data.veto.bundle as {}
	d.decision == "deny"
	d.reason == "no Veto policy is loaded"
}

test_deny_rule_in_error_applies_with_the_detail if {
	policies := {"sre": _package(
		_policy("sre", 0, "allow"),
		{_approval_rule("sre", 0, "needs_dba", "require_approval", ["dba"])},
		{_failing("sre", 1, "blocks", "deny", "context.environment is missing")},
	)}
	d := _decide(policies)
	d.decision == "deny"
	d.rule == "blocks"
	d.reason == "rule blocks could not be evaluated: context.environment is missing"
	d.matched[1] == {
		"rule": "blocks",
		"action": "deny",
		"message": "rule blocks could not be evaluated: context.environment is missing",
		"policy": "sre",
		"approvers": [],
		"approvals": 0,
	}
}

test_approval_rule_in_error_applies_with_its_approvers if {
	policies := {"sre": _package(
		_policy("sre", 0, "allow"),
		set(),
		{object.union(
			_failing("sre", 0, "scope", "require_approval", "args.database is missing"),
			{"approvers": ["platform-team"]},
		)},
	)}
	d := _decide(policies)
	d.decision == "require_approval"
	d.approvers == ["platform-team"]
	d.reason == "rule scope could not be evaluated: args.database is missing"
}

test_allow_rule_in_error_does_not_apply if {
	policies := {"sre": _package(
		_policy("sre", 0, "deny"),
		set(),
		{_error("sre", 0, "reads", "args.limit is missing")},
	)}
	d := _decide(policies)
	d.decision == "deny"
	d.matched == []
}

test_detail_that_is_not_a_string_fails_closed_with_a_generic_one if {
	policies := {"sre": {
		"policy": _policy("sre", 0, "allow"),
		"rules": {"blocks": _meta(_rule("sre", 0, "blocks", "deny"))},
		"status": {["blocks", {"error": 7}]},
	}}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.decision == "deny"
	d.errors == [{"rule": "blocks", "detail": "the condition could not be evaluated", "policy": "sre"}]
}

# A generated package, as `veto-opa build` writes it: the detail comes with the status.
test_detail_comes_from_the_generated_condition if {
	call := {"tool": "t", "args": {}, "context": {}}
	status := _limit_status with input as call
	d := veto.decision with input as call
		with data.veto.policies as {"sre": {"policy": _policy("sre", 0, "allow"), "status": status}}
		with data.veto.rules as {"sre": {"limit": _meta(_rule("sre", 0, "limit", "deny"))}}
		with data.veto.bundle as {}
	d.decision == "deny"
	d.reason == "rule limit could not be evaluated: args.limit is missing"
	d.errors == [{"rule": "limit", "detail": "args.limit is missing", "policy": "sre"}]
}

# A detail the generator names by its index in data.veto.details.<policy>.<rule>.
test_detail_by_index_comes_from_the_details_data if {
	policies := {"sre": {
		"policy": _policy("sre", 0, "allow"),
		"status": {["limit", {"error": 1}]},
	}}
	d := veto.decision with input as {"tool": "t", "args": {"limit": "ten"}, "context": {}}
		with data.veto.policies as policies
		with data.veto.rules as {"sre": {"limit": _meta(_rule("sre", 0, "limit", "deny"))}}
		with data.veto.bundle as {}
		with data.veto.details as {"sre": {"limit": ["unused", ["args.limit > 10: cannot compare %s with number", ["args", "limit"]]]}}
	d.decision == "deny"
	d.errors == [{"rule": "limit", "detail": "args.limit > 10: cannot compare string with number", "policy": "sre"}]
}

test_detail_index_without_details_data_fails_closed_with_a_generic_one if {
	policies := {"sre": {
		"policy": _policy("sre", 0, "allow"),
		"status": {["limit", {"error": 3}]},
	}}
	d := veto.decision with input as _call
		with data.veto.policies as policies
		with data.veto.rules as {"sre": {"limit": _meta(_rule("sre", 0, "limit", "deny"))}}
		with data.veto.bundle as {}
	d.decision == "deny"
	d.errors == [{"rule": "limit", "detail": "the condition could not be evaluated", "policy": "sre"}]
}

# What the generator writes for `when: args.limit > 10` (abridged: no type guard).
_limit_status contains ["limit", _limit]

_limit := false if {
	input.args.limit <= 10
} else := true if {
	input.args.limit > 10
} else := {"error": _limit_D}

_limit_D := "args is missing" if {
	not input.args
} else := "args.limit is missing" if {
	not input.args.limit
} else := "the condition could not be evaluated"

test_rules_whose_condition_is_false_do_not_apply if {
	policies := {"sre": {
		"policy": _policy("sre", 0, "allow"),
		"rules": {"blocks": _meta(_rule("sre", 0, "blocks", "deny"))},
		"status": {["blocks", false]},
	}}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.decision == "allow"
	d.matched == []
	d.errors == []
}

# A compiled bundle lists its policies and carries the decision for calls no rule applies
# to; the decision then needs neither to look for policies nor to work out the default.
test_bundle_default_decision_is_used_when_nothing_applies if {
	bundle := {
		"revision": "sha256:0123",
		"policies": ["sre"],
		"default_decision": {
			"decision": "deny",
			"rule": null,
			"reason": "precomputed",
			"approvers": [],
			"matched": [],
			"errors": [],
			"policy": {"name": "sre", "revision": "sha256:0123"},
		},
	}
	policies := {"sre": _package(_policy("sre", 0, "deny"), set(), set()), "other": _sre_mixed}
	d := veto.decision with input as _call with data.veto.bundle as bundle with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.reason == "precomputed"
}

test_bundle_policy_list_limits_the_decision if {
	bundle := {"policies": ["sre"], "revision": ""}
	policies := {
		"sre": _package(_policy("sre", 0, "allow"), set(), set()),
		"ops": _package(_policy("ops", 1, "allow"), {_rule("ops", 0, "ops_blocks", "deny")}, set()),
	}
	d := veto.decision with input as _call with data.veto.bundle as bundle with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.decision == "allow"
}

# Each applying require_approval rule keeps its own groups and count in `matched` (every
# rule's groups must be satisfied, not their union), and the approval is bound to the
# context keys of every policy whose require_approval rules apply.
test_matched_rules_carry_their_approvers_count_and_binding if {
	dba := object.union(_approval_rule("sre", 0, "needs_dba", "require_approval", ["dba"]),
		{"approvals": 2, "binding": ["environment", "user"]})
	privacy := object.union(_approval_rule("ops", 0, "needs_privacy", "require_approval", ["privacy"]),
		{"approvals": 1, "binding": ["environment", "region"]})
	policies := {
		"sre": _package(_policy("sre", 0, "allow"), {dba}, set()),
		"ops": _package(_policy("ops", 1, "allow"), {privacy}, set()),
	}
	rules := {
		"sre": {"needs_dba": object.union(_meta(dba), {"approvals": 2, "binding": dba.binding})},
		"ops": {"needs_privacy": object.union(_meta(privacy), {"approvals": 1, "binding": privacy.binding})},
	}
	d := veto.decision with input as _call with data.veto.policies as policies
		with data.veto.rules as rules with data.veto.bundle as {}
	d.decision == "require_approval"
	d.approvers == ["dba", "privacy"]
	[[m.rule, m.approvers, m.approvals] | some m in d.matched] == [
		["needs_dba", ["dba"], 2],
		["needs_privacy", ["privacy"], 1],
	]
	d.binding == ["environment", "region", "user"]
}

test_no_binding_unless_approval_decides if {
	rule := object.union(_approval_rule("sre", 0, "needs_dba", "require_approval", ["dba"]),
		{"binding": ["environment"]})
	policies := {"sre": _package(_policy("sre", 0, "allow"), {rule, _rule("sre", 1, "blocks", "deny")}, set())}
	rules := {"sre": {
		"needs_dba": object.union(_meta(rule), {"binding": ["environment"]}),
		"blocks": _meta(_rule("sre", 1, "blocks", "deny")),
	}}
	d := veto.decision with input as _call with data.veto.policies as policies
		with data.veto.rules as rules with data.veto.bundle as {}
	d.decision == "deny"
	d.binding == []
}

test_default_require_approval_reads_the_policys_approvers_and_binding if {
	policy := object.union(_policy("sre", 0, "require_approval"),
		{"default_approvers": ["oncall"], "default_binding": ["environment"]})
	policies := {"sre": _package(policy, set(), set())}
	d := veto.decision with input as _call with data.veto.bundle as {} with data.veto.policies as policies
		with data.veto.rules as _rules_of(policies)
	d.decision == "require_approval"
	d.approvers == ["oncall"]
	d.binding == ["environment"]
}
