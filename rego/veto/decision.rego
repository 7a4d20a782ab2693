# METADATA
# title: Veto decision
# description: |
#   Combines every compiled Veto policy package under data.veto.policies into one
#   decision for the tool call in input. Each policy package defines `policy` (name,
#   load index, default, source), `rules` (each rule's index, action, reason and
#   approvers) and `status`: a pair [rule, value] for each rule that governs this tool,
#   where value is its condition's, true, false or "error". Why a condition could not be evaluated comes from
#   veto.lib.explain, which evaluates the condition's data form in
#   data.veto.conditions.<policy>.<rule>.
package veto

import data.veto.lib.explain

# METADATA
# title: Decision for this tool call
# description: |
#   The decision object over every loaded policy:
#   {"decision", "rule", "reason", "approvers", "matched", "errors",
#    "policy": {"name", "revision"}}. Always defined, whatever the input, so that an
#   undefined answer can only mean that this library is not loaded.
# entrypoint: true
decision := decision_for(_loaded_policies)

# METADATA
# title: Decision restricted to some policies
# description: |
#   The same object as `decision`, computed over the policy packages named in
#   `names` only (a set or array of package names under data.veto.policies).
#   Names without a policy package are ignored. Used by the compiled per-policy
#   example tests, which must not be influenced by the other loaded policies.
decision_for(names) := result if {
	applying := _applying(names)
	deciding := _deciding(applying)
	result := _decision(
		deciding.action,
		deciding.rule,
		deciding.message,
		_approvers(applying, deciding.action),
		deciding.policy,
		[_matched_entry(r) | some r in applying],
		_errors(names),
	)
} else := result if {
	# No rule applies: the most restrictive default among the selected policies.
	fallback := _fallback(names)
	result := _decision(
		fallback.default,
		null,
		sprintf(
			"no rule applies to tool %s; policy %s defaults to %s",
			[_tool_text, fallback.name, fallback.default],
		),
		[],
		fallback.name,
		[],
		_errors(names),
	)
} else := _decision("deny", null, "no Veto policy is loaded", [], null, [], [])

# The one place that shapes the decision object.
_decision(action, rule, reason, approvers, policy_name, matched, errors) := {
	"decision": action,
	"rule": rule,
	"reason": reason,
	"approvers": approvers,
	"matched": matched,
	"errors": errors,
	"policy": {"name": policy_name, "revision": _revision},
}

# Only packages that define `policy` are Veto policies: the compiled example tests
# (`<name>_test`) live under data.veto.policies too. Referencing `.policy` (and
# later `.status` and `.rules`) rather than the whole package keeps OPA from
# evaluating every rule of every package.
_loaded_policies contains name if {
	some name
	data.veto.policies[name].policy
}

# The selected policies that exist.
_selected(names) := {name: p |
	some name in names
	p := data.veto.policies[name].policy
}

# Rules that apply, in (policy index, rule index) order: those whose condition is true,
# and the deny and require_approval rules whose condition is an error (fail closed).
_applying(names) := [t[3] |
	some t in sort({[p.index, name, meta.index, entry] |
		some name, p in _selected(names)
		some rule in _applying_rules(name)
		meta := data.veto.policies[name].rules[rule]
		entry := _entry(name, rule, meta)
	})
]

_applying_rules(name) := {rule |
	some [rule, status] in data.veto.policies[name].status
	_applies(status, data.veto.policies[name].rules[rule].action)
}

_applies(true, _)

_applies("error", action) if action != "allow"

_entry(policy, rule, meta) := {
	"policy": policy,
	"rule": rule,
	"action": meta.action,
	"message": _message(policy, rule, meta),
	"approvers": meta.approvers,
}

_message(policy, rule, meta) := sprintf("rule %s could not be evaluated: %s", [rule, _details[policy][rule]]) if {
	[rule, "error"] in data.veto.policies[policy].status
} else := meta.message

# Rules whose condition is an error, in (policy index, rule index) order.
_errors(names) := [{"rule": t[3], "detail": _details[t[1]][t[3]], "policy": t[1]} |
	some t in sort({[p.index, name, data.veto.policies[name].rules[rule].index, rule] |
		some name, p in _selected(names)
		some [rule, "error"] in data.veto.policies[name].status
	})
]

# What was missing or ill-typed, per policy and rule in error; computed once per query.
_details[policy][rule] := _detail(policy, rule) if {
	some policy in _loaded_policies
	some [rule, "error"] in data.veto.policies[policy].status
}

_detail(policy, rule) := d if {
	d := explain.detail(data.veto.conditions[policy][rule])
} else := "the condition could not be evaluated"

_matched_entry(r) := {
	"rule": r.rule,
	"action": r.action,
	"message": r.message,
	"policy": r.policy,
}

# Lower rank wins: deny beats require_approval beats allow.
_rank := {"deny": 0, "require_approval": 1, "allow": 2}

# The first applying rule (in policy/rule order) of the winning action. `applying`
# is already ordered, so the position breaks ties between rules of one action.
# Undefined when nothing applies.
_deciding(applying) := applying[ranked[0][1]] if {
	ranked := sort([[_rank[r.action], i] | some i, r in applying])
	count(ranked) > 0
}

# Approvers of every applying require_approval rule, not only the deciding one:
# anyone who could approve one of the reasons for holding the call may approve it.
_approvers(applying, "require_approval") := sort({a |
	some r in applying
	r.action == "require_approval"
	some a in r.approvers
})

_approvers(_, action) := [] if action != "require_approval"

# With several policies, the most restrictive default wins; ties go to the policy
# loaded first. An unknown default fails closed as deny.
_fallback(names) := {"name": best[2], "default": best[3]} if {
	candidates := sort({[_rank[d], p.index, name, d] |
		some name, p in _selected(names)
		d := _default_of(p)
	})
	best := candidates[0]
}

_default_of(p) := p.default if {
	_rank[p.default]
} else := "deny"

# `input` may be undefined or not an object: the sentence must still be built.
default _tool := null

_tool := input.tool

_tool_text := sprintf("%q", [_tool]) if {
	is_string(_tool)
} else := json.marshal(_tool)

default _revision := ""

_revision := data.veto.bundle.revision if is_string(data.veto.bundle.revision)
