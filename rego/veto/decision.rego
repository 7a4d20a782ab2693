# METADATA
# title: Veto decision
# description: |
#   Combines every compiled Veto policy package under data.veto.policies into one
#   decision for the tool call in input. Each policy package defines `policy` (name,
#   load index, default, source) and `status`: a pair [rule, value] for each rule that
#   governs this tool, where value is its condition's, true, false or {"error": detail}
#   when it is neither, the detail saying what was missing or ill-typed (generated with
#   the condition). Each rule's index, action, reason and approvers are data,
#   data.veto.rules.<policy>.<rule> (data costs OPA nothing to compile; a table in the
#   package would).
#
#   The bundle's own package, veto.bundle (generated), lists its policies and holds the
#   decision for calls that no rule applies to; without it, both are worked out here.
#   Everything is a complete rule without arguments, which OPA evaluates once per query
#   (function calls would hash their arguments on every call).
package veto

import data.veto.lib.ops

# METADATA
# title: Decision for this tool call
# description: |
#   The decision object over every loaded policy:
#   {"decision", "rule", "reason", "approvers", "matched", "errors",
#    "policy": {"name", "revision"}, "binding"}. Each matched entry names its rule's
#   approver groups and approvals (distinct approvers needed); "binding" lists the context
#   keys an approval of this call is bound to ("*": the whole context). Always defined,
#   whatever the input, so that an undefined answer can only mean that this library is
#   not loaded.
# entrypoint: true
decision := _no_hit_decision if {
	count(_hits) == 0
} else := object.union(_no_hit_decision, {"errors": _errors}) if {
	# Only allow rules in error: nothing applies, but the errors are reported.
	count(_applying) == 0
} else := {
	"decision": _deciding.action,
	"rule": _deciding.rule,
	"reason": _deciding.message,
	"approvers": _approvers,
	"matched": [{
		"rule": e.rule, "action": e.action, "message": e.message, "policy": e.policy,
		"approvers": e.approvers, "approvals": e.approvals,
	} |
		some e in _applying
	],
	"errors": _errors,
	"policy": {"name": _deciding.policy, "revision": _revision},
	"binding": _binding,
}

# METADATA
# title: Decision for this tool call, null when no rule applies
# description: |
#   `decision` when at least one rule is true or in error for this tool call; null when
#   none is, and the decision is then `no_rule_decision`, which does not depend on the
#   input. For engines in the caller's process: they read `no_rule_decision` once, and
#   for most calls OPA then returns a null instead of a whole decision object.
outcome := null if {
	count(_hits) == 0
} else := decision

# METADATA
# title: Decision for a tool call that no rule applies to
# description: The same for every input; `decision` is this object when `outcome` is null.
no_rule_decision := _no_hit_decision

# METADATA
# title: Decision restricted to some policies
# description: |
#   The same object as `decision`, computed over the policy packages named in
#   `names` only (a set or array of package names under data.veto.policies).
#   Names without a policy package are ignored. Used by the compiled per-policy
#   example tests, which must not be influenced by the other loaded policies.
decision_for(names) := d if {
	d := decision with data.veto.bundle.policies as [n | some n in names]
		with data.veto.bundle.default_decision as _default_decision(names)
}

# The policies of the bundle, in load order; without the bundle's list, every package
# under data.veto.policies that defines `policy` (the compiled example tests, `<name>_test`,
# live there too and define none).
_policy_names := names if {
	names := data.veto.bundle.policies
} else := [name | some name; data.veto.policies[name].policy]

# Every rule of those policies that is true or in error for this tool call, in (policy
# index, rule index) order. Most calls have none or a few: what follows works on that
# short list only.
_hits := sort([[p.index, meta.index, name, rule, status, meta] |
	some name in _policy_names
	some [rule, status] in data.veto.policies[name].status
	status != false
	p := data.veto.policies[name].policy
	meta := data.veto.rules[name][rule]
])

# A rule applies when its condition is true, and a deny or require_approval rule also when
# its condition is an error (fail closed).
_applying := [{
	"policy": name,
	"rule": rule,
	"action": meta.action,
	"message": _message(name, rule, status, meta),
	"approvers": meta.approvers,
	"approvals": _approvals(meta),
} |
	some [_, _, name, rule, status, meta] in _hits
	_applies(status, meta.action)
]

# Distinct approvers a rule needs: its data's count (rules data written before counts
# existed: one for a require_approval rule).
_approvals(meta) := meta.approvals

_approvals(meta) := 1 if {
	not "approvals" in object.keys(meta)
	meta.action == "require_approval"
}

_approvals(meta) := 0 if {
	not "approvals" in object.keys(meta)
	meta.action != "require_approval"
}

_applies(true, _)

_applies(status, action) if {
	_ = status.error
	action != "allow"
}

_message(name, rule, status, _) := concat("", ["rule ", rule, " could not be evaluated: ", _details_of[[name, rule]]]) if {
	_ = status.error
}

_message(_, _, true, meta) := meta.message

# What was missing or ill-typed, for each rule in error: the detail generated in Rego, or
# the one at its index in data.veto.details.<policy>.<rule>; a detail of another form still
# fails closed, with a generic one. Worked out once per rule in error.
_details_of[[name, rule]] := _detail(name, rule, status.error) if {
	some [_, _, name, rule, status, _] in _hits
	_ = status.error
}

_detail(name, rule, error) := error if {
	is_string(error)
} else := text if {
	text := ops.detail(data.veto.details[name][rule][error])
} else := "the condition could not be evaluated"

_errors := [{"rule": rule, "detail": _details_of[[name, rule]], "policy": name} |
	some [_, _, name, rule, status, _] in _hits
	_ = status.error
]

_actions := {e.action | some e in _applying}

# The deciding rule: the first applying rule (in policy and rule order) of the strongest
# action; deny beats require_approval beats allow.
_deciding := [e | some e in _applying; e.action == "deny"][0] if {
	"deny" in _actions
} else := [e | some e in _applying; e.action == "require_approval"][0] if {
	"require_approval" in _actions
} else := _applying[0]

# Approvers of every applying require_approval rule, not only the deciding one: anyone
# who could approve one of the reasons for holding the call may approve it.
_approvers := sort({a |
	some e in _applying
	e.action == "require_approval"
	some a in e.approvers
}) if {
	_deciding.action == "require_approval"
} else := []

# The context keys an approval of this call is bound to: those of every policy whose
# require_approval rules apply (the compiler puts each policy's keys in its rules' data).
_binding := sort({k |
	some e in _applying
	e.action == "require_approval"
	some k in data.veto.rules[e.policy][e.rule].binding
}) if {
	_deciding.action == "require_approval"
} else := []

# No rule applies: the bundle's precomputed decision, or the same worked out here.
_no_hit_decision := d if {
	d := data.veto.bundle.default_decision
} else := _default_decision(_policy_names)

# With several policies, the most restrictive default wins; ties go to the policy loaded
# first. An unknown default fails closed as deny. The compiler writes the same object for
# the bundle's default_decision (translators/compiler.py, default_decision).
_default_decision(names) := {
	"decision": best[3],
	"rule": null,
	"reason": sprintf("no rule applies; policy %s defaults to %s", [best[2], best[3]]),
	"approvers": object.get(data.veto.policies[best[2]].policy, "default_approvers", []),
	"matched": [],
	"errors": [],
	"policy": {"name": best[2], "revision": _revision},
	"binding": object.get(data.veto.policies[best[2]].policy, "default_binding", []),
} if {
	best := min([[_rank[d], p.index, name, d] |
		some name in names
		p := data.veto.policies[name].policy
		d := _default_of(p)
	])
} else := {
	"decision": "deny",
	"rule": null,
	"reason": "no Veto policy is loaded",
	"approvers": [],
	"matched": [],
	"errors": [],
	"policy": {"name": null, "revision": _revision},
	"binding": [],
}

_default_of(p) := p.default if {
	_rank[p.default]
} else := "deny"

# Lower rank wins: deny beats require_approval beats allow.
_rank := {"deny": 0, "require_approval": 1, "allow": 2}

default _revision := ""

_revision := data.veto.bundle.revision if is_string(data.veto.bundle.revision)
