# METADATA
# title: Veto decision
# description: |
#   Combines every compiled Veto policy package under data.veto.policies into one
#   decision for the tool call in input. Each policy package defines `policy` (name,
#   load index, default, source), a partial set `applies` of the rules that apply,
#   and a partial set `errors` of the rules whose condition could not be evaluated.
package veto

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
		object.get(deciding, "message", ""),
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
# later `.applies`/`.errors`) rather than the whole package keeps OPA from
# evaluating every rule of every package.
_loaded_policies contains name if {
	some name
	data.veto.policies[name].policy
}

# The selected policies that exist, each with its normalised default.
_selected(names) := {name: p |
	some name in names
	p := data.veto.policies[name].policy
}

# Applying rules of the selected policies in (policy index, rule index) order.
# Sorting tuples orders by their first elements; names break ties deterministically.
_applying(names) := [r |
	some t in sort({[p.index, name, rule.index, rule.rule, rule] |
		some name, p in _selected(names)
		some rule in data.veto.policies[name].applies
	})
	r := object.union(t[4], {"policy": t[1]})
]

_errors(names) := [{"rule": t[4].rule, "detail": t[4].detail, "policy": t[1]} |
	some t in sort({[p.index, name, e.index, e.rule, e] |
		some name, p in _selected(names)
		some e in data.veto.policies[name].errors
	})
]

_matched_entry(r) := {
	"rule": r.rule,
	"action": r.action,
	"message": object.get(r, "message", ""),
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
