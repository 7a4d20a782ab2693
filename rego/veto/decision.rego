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
decision_for(names) := _decide(names, sort([[p.index, meta.index, name, rule, status, meta] |
	# Every rule of the selected policies that is true or in error for this tool call, in
	# (policy index, rule index) order. Most calls have none or a few: everything after
	# this works on that short list only.
	some name in names
	p := data.veto.policies[name].policy
	some [rule, status] in data.veto.policies[name].status
	status != false
	meta := data.veto.policies[name].rules[rule]
]))

# No rule is true or in error: the most restrictive default among the selected policies.
_decide(names, []) := _default_decision(names, [])

_decide(names, hits) := result if {
	count(hits) > 0
	applying := [_entry(h) | some h in hits; _applies(h[4], h[5].action)]
	errors := [{"rule": h[3], "detail": _details[h[2]][h[3]], "policy": h[2]} |
		some h in hits
		h[4] == "error"
	]
	result := _decision_of(names, applying, errors)
}

_decision_of(names, [], errors) := _default_decision(names, errors)

_decision_of(_, applying, errors) := _decision(
	deciding.action,
	deciding.rule,
	deciding.message,
	_approvers(applying, deciding.action),
	deciding.policy,
	[_matched_entry(e) | some e in applying],
	errors,
) if {
	count(applying) > 0
	best := min([_rank[e.action] | some e in applying])
	deciding := [e | some e in applying; _rank[e.action] == best][0]
}

_default_decision(names, errors) := _decision(
	fallback.default,
	null,
	sprintf("no rule applies to tool %s; policy %s defaults to %s", [_tool_text, fallback.name, fallback.default]),
	[],
	fallback.name,
	[],
	errors,
) if {
	fallback := _fallback(names)
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

# A rule applies when its condition is true, and a deny or require_approval rule also when
# its condition is an error (fail closed).
_applies(true, _)

_applies("error", action) if action != "allow"

_entry(h) := {
	"policy": h[2],
	"rule": h[3],
	"action": h[5].action,
	"message": _message(h),
	"approvers": h[5].approvers,
}

_message(h) := sprintf("rule %s could not be evaluated: %s", [h[3], _details[h[2]][h[3]]]) if {
	h[4] == "error"
} else := h[5].message

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
	best := min([[_rank[d], p.index, name, d] |
		some name in names
		p := data.veto.policies[name].policy
		d := _default_of(p)
	])
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
