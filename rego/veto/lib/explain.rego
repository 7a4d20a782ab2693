# METADATA
# description: |
#   Three-valued evaluation with error details, for rules whose condition is in error.
#
#   Generated code decides conditions quickly as "definitely true" and "definitely false"
#   rule bodies; when neither holds, the decision asks `detail(spec)` why. `spec` is the
#   condition as data (see translators/explainer.py): a list of nodes and the levels to
#   evaluate them in, or that data as JSON text, which is how the compiler writes it to
#   data.veto.conditions.<policy>.<rule> (OPA loads one string per condition much faster
#   than the forty-odd values of its decoded form, and only a rule in error needs it). Every
#   value is a result object: {"v": value} when it could be computed, {"e": detail} when
#   not. The functions below are total and follow the reference evaluator
#   (translators/evaluator.py) exactly, detail texts included: errors propagate from the
#   leftmost erroring operand, and && / || absorb errors as CEL does.
#
#   Rego has no recursion, so the condition is evaluated bottom-up: level by level, each
#   level's node results (keyed by [node id, environment]) are added to those of the levels
#   below. An environment holds the values of the enclosing macro variables.
package veto.lib.explain

# METADATA
# description: What was missing or ill-typed in a condition that is in error.
detail(spec) := r.e if {
	r := result(spec)
}

# METADATA
# description: The three-valued result of a condition, from its data form.
result(spec) := _result(json.unmarshal(spec)) if {
	is_string(spec)
} else := _result(spec)

_result(spec) := as_boolean(_final(spec)[[spec.root, []]], spec.text)

# One level of evaluation: the results of every node of level i, in every environment of
# the node, added to the results of the levels below.
_step(spec, i, acc) := object.union(acc, object.union(
	{[id, env]: r |
		some id in spec.levels[i]
		node := spec.nodes[id]
		node.k != "env"
		some env in _envs(node, acc)
		r := _eval(node.k, node, env, acc)
	},
	{[id, "envs"]: envs |
		some id in spec.levels[i]
		node := spec.nodes[id]
		node.k == "env"
		envs := _body_envs(node, acc)
	},
))

_envs(node, acc) := [[]] if {
	node.e == -1
} else := acc[[node.e, "envs"]]

# The environments of a macro body: each environment of the macro, extended with each
# element of the macro's target list there.
_body_envs(node, acc) := [array.concat(env, [x]) |
	some env in _envs(node, acc)
	target := acc[[node.c[0], env]]
	is_array(target.v)
	some x in target.v
]

_kids(node, env, acc) := [acc[[c, env]] | some c in node.c]

_eval("literal", node, _, _) := {"v": node.v}

_eval("list", node, env, acc) := list_of(_kids(node, env, acc))

_eval("root", node, _, _) := root(input, node.n)

_eval("var", node, env, _) := {"v": env[node.i]}

_eval("field", node, env, acc) := field(acc[[node.c[0], env]], node.n, node.t, node.tt)

_eval("fact", node, env, acc) := fact(acc[[node.c[0], env]], node.n, node.t, node.tt)

_eval("index", node, env, acc) := index(acc[[node.c[0], env]], acc[[node.c[1], env]], node.t, node.tt)

_eval("not", node, env, acc) := lnot(acc[[node.c[0], env]], node.ot)

_eval("neg", node, env, acc) := neg(acc[[node.c[0], env]], node.t)

_eval("compare", node, env, acc) := compare(node.op, acc[[node.c[0], env]], acc[[node.c[1], env]], node.t)

_eval("in", node, env, acc) := member(acc[[node.c[0], env]], acc[[node.c[1], env]], node.t)

_eval("arith", node, env, acc) := arith(node.op, acc[[node.c[0], env]], acc[[node.c[1], env]], node.t)

_eval("and", node, env, acc) := _all_of([as_boolean(acc[[c, env]], node.ts[i]) | some i, c in node.c])

_eval("or", node, env, acc) := _any_of([as_boolean(acc[[c, env]], node.ts[i]) | some i, c in node.c])

# a && b && ...: false if any is false, true if all are true, else the first error.
_all_of(bs) := {"v": false} if {
	some b in bs
	b.v == false
} else := first_error(bs) if {
	_has_error(bs)
} else := {"v": true}

# a || b || ...: true if any is true, false if all are false, else the first error.
_any_of(bs) := {"v": true} if {
	some b in bs
	b.v == true
} else := first_error(bs) if {
	_has_error(bs)
} else := {"v": false}

_eval("has", node, env, acc) := has(acc[[node.c[0], env]])

_eval("call", node, env, acc) := call(node.f, node.n, _kids(node, env, acc), node.t)

_eval("macro", node, env, acc) := macro(node.n, target, results, node.t, node.bt) if {
	target := acc[[node.c[0], env]]
	results := [acc[[node.b, array.concat(env, [x])]] | is_array(target.v); some x in target.v]
}

# METADATA
# description: An input root such as args or context.
root(doc, name) := {"v": doc[name]} if {
	_ = doc[name]
} else := {"e": sprintf("%s is missing", [name])}

# METADATA
# description: A list literal; its first erroring item is its error.
list_of(rs) := first_error(rs) if {
	_has_error(rs)
} else := {"v": [r.v | some r in rs]}

# METADATA
# description: target.name
field(r, name, text, target_text) := r if {
	_ = r.e
} else := {"e": sprintf("%s is not an object (found %s)", [target_text, type_name(r.v)])} if {
	not is_object(r.v)
} else := {"v": r.v[name]} if {
	_ = r.v[name]
} else := {"e": sprintf("%s is missing", [text])}

# METADATA
# description: |
#   target.name where target is a fact (facts.<argument>): a fact that its parser could not
#   compute is {"error": why, "parser": ...}, and reading another field of it says why.
fact(r, name, text, target_text) := {"e": sprintf("%s could not be computed: %s", [target_text, r.v.error])} if {
	is_string(r.v.error)
	not _has_member(r.v, name)
} else := field(r, name, text, target_text)

_has_member(o, name) if {
	_ = o[name]
}

# METADATA
# description: target[index]
index(r, i, text, target_text) := r if {
	_ = r.e
} else := i if {
	_ = i.e
} else := _index(r.v, i.v, text, target_text)

_index(t, i, text, target_text) := {"v": t[i]} if {
	is_array(t)
	_whole(i)
	i >= 0
	i < count(t)
} else := {"e": sprintf("%s: index out of range (size %d)", [text, count(t)])} if {
	is_array(t)
	_whole(i)
} else := {"e": sprintf("%s: an array index must be a whole number (found %s)", [text, type_name(i)])} if {
	is_array(t)
} else := {"v": t[i]} if {
	is_object(t)
	is_string(i)
	_ = t[i]
} else := {"e": sprintf("%s is missing", [text])} if {
	is_object(t)
	is_string(i)
} else := {"e": sprintf("%s: an object key must be a string (found %s)", [text, type_name(i)])} if {
	is_object(t)
} else := {"e": sprintf("%s is not an array or object (found %s)", [target_text, type_name(t)])}

# METADATA
# description: "!operand"
lnot(r, text) := r if {
	_ = r.e
} else := {"v": r.v == false} if {
	is_boolean(r.v)
} else := {"e": sprintf("%s is not a boolean (found %s)", [text, type_name(r.v)])}

# METADATA
# description: "-operand"
neg(r, text) := r if {
	_ = r.e
} else := {"v": 0 - r.v} if {
	is_number(r.v)
} else := {"e": sprintf("%s: cannot negate %s", [text, type_name(r.v)])}

# METADATA
# description: "== != < <= > >=: equality never errs; ordering needs two numbers or two strings."
compare(op, a, b, text) := a if {
	_ = a.e
} else := b if {
	_ = b.e
} else := {"v": a.v == b.v} if {
	op == "=="
} else := {"v": a.v != b.v} if {
	op == "!="
} else := {"v": _order(op, a.v, b.v)} if {
	_comparable(a.v, b.v)
} else := {"e": sprintf("%s: cannot compare %s with %s", [text, type_name(a.v), type_name(b.v)])}

_comparable(a, b) if {
	is_number(a)
	is_number(b)
}

_comparable(a, b) if {
	is_string(a)
	is_string(b)
}

_order(op, a, b) := true if {
	op == "<"
	a < b
} else := true if {
	op == "<="
	a <= b
} else := true if {
	op == ">"
	a > b
} else := true if {
	op == ">="
	a >= b
} else := false

# METADATA
# description: "item in collection: array membership or object key membership."
member(item, coll, text) := item if {
	_ = item.e
} else := coll if {
	_ = coll.e
} else := {"v": item.v in coll.v} if {
	is_array(coll.v)
} else := {"v": _has_key(coll.v, item.v)} if {
	is_object(coll.v)
} else := {"e": sprintf("%s: 'in' needs an array or object on the right (found %s)", [text, type_name(coll.v)])}

_has_key(o, k) := true if {
	is_string(k)
	_ = o[k]
} else := false

# METADATA
# description: "+ - * / %"
arith(op, a, b, text) := a if {
	_ = a.e
} else := b if {
	_ = b.e
} else := {"v": concat("", [a.v, b.v])} if {
	op == "+"
	is_string(a.v)
	is_string(b.v)
} else := {"v": array.concat(a.v, b.v)} if {
	op == "+"
	is_array(a.v)
	is_array(b.v)
} else := {"e": sprintf("%s: cannot apply '%s' to %s and %s", [text, op, type_name(a.v), type_name(b.v)])} if {
	not _numbers(a.v, b.v)
} else := {"v": _arith(op, a.v, b.v)} if {
	op in {"+", "-", "*"}
} else := {"e": sprintf("%s: division by zero", [text])} if {
	b.v == 0
} else := {"v": a.v / b.v} if {
	op == "/"
} else := {"v": a.v % b.v} if {
	_whole(a.v)
	_whole(b.v)
} else := {"e": sprintf("%s: '%%' needs whole numbers", [text])}

_numbers(a, b) if {
	is_number(a)
	is_number(b)
}

_arith("+", a, b) := a + b

_arith("-", a, b) := a - b

_arith("*", a, b) := a * b

_whole(x) if {
	is_number(x)
	round(x) == x
}

# METADATA
# description: A result that must be a boolean; another value becomes an error.
as_boolean(r, text) := r if {
	_ = r.e
} else := r if {
	is_boolean(r.v)
} else := {"e": sprintf("%s is not a boolean (found %s)", [text, type_name(r.v)])}

# METADATA
# description: has(path) is true when the path could be evaluated, never an error.
has(r) := {"v": true} if {
	_ = r.v
} else := {"v": false}

# Operand types each function accepts, one set per operand, as in translators/functions.py.
_accepts := {
	"upper": [{"string"}],
	"lower": [{"string"}],
	"trim": [{"string"}],
	"contains": [{"string"}, {"string"}],
	"startswith": [{"string"}, {"string"}],
	"endswith": [{"string"}, {"string"}],
	"matches": [{"string"}, {"string"}],
	"size": [{"string", "array", "object"}],
}

# METADATA
# description: |
#   A function or method call: kind selects the implementation, name is the function as
#   written (len and size share one implementation).
call(kind, name, rs, text) := first_error(rs) if {
	_has_error(rs)
} else := {"e": sprintf("%s: %s() cannot take %s", [text, name, concat(", ", [type_name(r.v) | some r in rs])])} if {
	not _accepted(kind, rs)
} else := _apply(kind, [r.v | some r in rs], text)

_accepted(kind, rs) if {
	accepts := _accepts[kind]
	count(accepts) == count(rs)
	every i, r in rs {
		type_name(r.v) in accepts[i]
	}
}

_apply("upper", vs, _) := {"v": upper(vs[0])}

_apply("lower", vs, _) := {"v": lower(vs[0])}

_apply("trim", vs, _) := {"v": trim_space(vs[0])}

_apply("contains", vs, _) := {"v": contains(vs[0], vs[1])}

_apply("startswith", vs, _) := {"v": startswith(vs[0], vs[1])}

_apply("endswith", vs, _) := {"v": endswith(vs[0], vs[1])}

_apply("size", vs, _) := {"v": count(vs[0])}

_apply("matches", vs, text) := {"v": regex.match(vs[1], vs[0])} if {
	regex.is_valid(vs[1])
} else := {"e": sprintf("%s: invalid regular expression", [text])}

# METADATA
# description: |
#   list.exists(v, p) and list.all(v, p): results holds p's result for each element, in
#   order. exists is true if any is true, all is false if any is false; otherwise the first
#   error decides, and without errors exists is false and all is true.
macro(name, t, results, text, body_text) := t if {
	_ = t.e
} else := {"e": sprintf("%s: %s() needs an array (found %s)", [text, name, type_name(t.v)])} if {
	not is_array(t.v)
} else := _decide(name, [as_boolean(r, body_text) | some r in results])

_decide(name, bs) := {"v": name == "exists"} if {
	some b in bs
	b.v == (name == "exists")
} else := first_error(bs) if {
	_has_error(bs)
} else := {"v": name != "exists"}

# METADATA
# description: The first error result of a list of results.
first_error(rs) := rs[i] if {
	i := min({j | some j, r in rs; _ = r.e})
}

_has_error(rs) if {
	some r in rs
	_ = r.e
}

# The levels, one function each (generated: Rego has no loops that carry results).
_final(spec) := _acc1(spec) if {
	count(spec.levels) == 1
} else := _acc2(spec) if {
	count(spec.levels) == 2
} else := _acc3(spec) if {
	count(spec.levels) == 3
} else := _acc4(spec) if {
	count(spec.levels) == 4
} else := _acc5(spec) if {
	count(spec.levels) == 5
} else := _acc6(spec) if {
	count(spec.levels) == 6
} else := _acc7(spec) if {
	count(spec.levels) == 7
} else := _acc8(spec) if {
	count(spec.levels) == 8
} else := _acc9(spec) if {
	count(spec.levels) == 9
} else := _acc10(spec) if {
	count(spec.levels) == 10
} else := _acc11(spec) if {
	count(spec.levels) == 11
} else := _acc12(spec) if {
	count(spec.levels) == 12
} else := _acc13(spec) if {
	count(spec.levels) == 13
} else := _acc14(spec) if {
	count(spec.levels) == 14
} else := _acc15(spec) if {
	count(spec.levels) == 15
} else := _acc16(spec) if {
	count(spec.levels) == 16
} else := _acc17(spec) if {
	count(spec.levels) == 17
} else := _acc18(spec) if {
	count(spec.levels) == 18
} else := _acc19(spec) if {
	count(spec.levels) == 19
} else := _acc20(spec) if {
	count(spec.levels) == 20
} else := _acc21(spec) if {
	count(spec.levels) == 21
} else := _acc22(spec) if {
	count(spec.levels) == 22
} else := _acc23(spec) if {
	count(spec.levels) == 23
} else := _acc24(spec) if {
	count(spec.levels) == 24
} else := _acc25(spec) if {
	count(spec.levels) == 25
} else := _acc26(spec) if {
	count(spec.levels) == 26
} else := _acc27(spec) if {
	count(spec.levels) == 27
} else := _acc28(spec) if {
	count(spec.levels) == 28
} else := _acc29(spec) if {
	count(spec.levels) == 29
} else := _acc30(spec) if {
	count(spec.levels) == 30
} else := _acc31(spec) if {
	count(spec.levels) == 31
} else := _acc32(spec) if {
	count(spec.levels) == 32
} else := _acc33(spec) if {
	count(spec.levels) == 33
} else := _acc34(spec) if {
	count(spec.levels) == 34
} else := _acc35(spec) if {
	count(spec.levels) == 35
} else := _acc36(spec) if {
	count(spec.levels) == 36
} else := _acc37(spec) if {
	count(spec.levels) == 37
} else := _acc38(spec) if {
	count(spec.levels) == 38
} else := _acc39(spec) if {
	count(spec.levels) == 39
} else := _acc40(spec) if {
	count(spec.levels) == 40
} else := _acc41(spec) if {
	count(spec.levels) == 41
} else := _acc42(spec) if {
	count(spec.levels) == 42
} else := _acc43(spec) if {
	count(spec.levels) == 43
} else := _acc44(spec) if {
	count(spec.levels) == 44
} else := _acc45(spec) if {
	count(spec.levels) == 45
} else := _acc46(spec) if {
	count(spec.levels) == 46
} else := _acc47(spec) if {
	count(spec.levels) == 47
} else := _acc48(spec) if {
	count(spec.levels) == 48
} else := _acc49(spec) if {
	count(spec.levels) == 49
} else := _acc50(spec) if {
	count(spec.levels) == 50
} else := _acc51(spec) if {
	count(spec.levels) == 51
} else := _acc52(spec) if {
	count(spec.levels) == 52
} else := _acc53(spec) if {
	count(spec.levels) == 53
} else := _acc54(spec) if {
	count(spec.levels) == 54
} else := _acc55(spec) if {
	count(spec.levels) == 55
} else := _acc56(spec) if {
	count(spec.levels) == 56
} else := _acc57(spec) if {
	count(spec.levels) == 57
} else := _acc58(spec) if {
	count(spec.levels) == 58
} else := _acc59(spec) if {
	count(spec.levels) == 59
} else := _acc60(spec) if {
	count(spec.levels) == 60
} else := _acc61(spec) if {
	count(spec.levels) == 61
} else := _acc62(spec) if {
	count(spec.levels) == 62
} else := _acc63(spec) if {
	count(spec.levels) == 63
} else := _acc64(spec) if {
	count(spec.levels) == 64
}

_acc1(spec) := _step(spec, 0, {})

_acc2(spec) := _step(spec, 1, _acc1(spec))

_acc3(spec) := _step(spec, 2, _acc2(spec))

_acc4(spec) := _step(spec, 3, _acc3(spec))

_acc5(spec) := _step(spec, 4, _acc4(spec))

_acc6(spec) := _step(spec, 5, _acc5(spec))

_acc7(spec) := _step(spec, 6, _acc6(spec))

_acc8(spec) := _step(spec, 7, _acc7(spec))

_acc9(spec) := _step(spec, 8, _acc8(spec))

_acc10(spec) := _step(spec, 9, _acc9(spec))

_acc11(spec) := _step(spec, 10, _acc10(spec))

_acc12(spec) := _step(spec, 11, _acc11(spec))

_acc13(spec) := _step(spec, 12, _acc12(spec))

_acc14(spec) := _step(spec, 13, _acc13(spec))

_acc15(spec) := _step(spec, 14, _acc14(spec))

_acc16(spec) := _step(spec, 15, _acc15(spec))

_acc17(spec) := _step(spec, 16, _acc16(spec))

_acc18(spec) := _step(spec, 17, _acc17(spec))

_acc19(spec) := _step(spec, 18, _acc18(spec))

_acc20(spec) := _step(spec, 19, _acc19(spec))

_acc21(spec) := _step(spec, 20, _acc20(spec))

_acc22(spec) := _step(spec, 21, _acc21(spec))

_acc23(spec) := _step(spec, 22, _acc22(spec))

_acc24(spec) := _step(spec, 23, _acc23(spec))

_acc25(spec) := _step(spec, 24, _acc24(spec))

_acc26(spec) := _step(spec, 25, _acc25(spec))

_acc27(spec) := _step(spec, 26, _acc26(spec))

_acc28(spec) := _step(spec, 27, _acc27(spec))

_acc29(spec) := _step(spec, 28, _acc28(spec))

_acc30(spec) := _step(spec, 29, _acc29(spec))

_acc31(spec) := _step(spec, 30, _acc30(spec))

_acc32(spec) := _step(spec, 31, _acc31(spec))

_acc33(spec) := _step(spec, 32, _acc32(spec))

_acc34(spec) := _step(spec, 33, _acc33(spec))

_acc35(spec) := _step(spec, 34, _acc34(spec))

_acc36(spec) := _step(spec, 35, _acc35(spec))

_acc37(spec) := _step(spec, 36, _acc36(spec))

_acc38(spec) := _step(spec, 37, _acc37(spec))

_acc39(spec) := _step(spec, 38, _acc38(spec))

_acc40(spec) := _step(spec, 39, _acc39(spec))

_acc41(spec) := _step(spec, 40, _acc40(spec))

_acc42(spec) := _step(spec, 41, _acc41(spec))

_acc43(spec) := _step(spec, 42, _acc42(spec))

_acc44(spec) := _step(spec, 43, _acc43(spec))

_acc45(spec) := _step(spec, 44, _acc44(spec))

_acc46(spec) := _step(spec, 45, _acc45(spec))

_acc47(spec) := _step(spec, 46, _acc46(spec))

_acc48(spec) := _step(spec, 47, _acc47(spec))

_acc49(spec) := _step(spec, 48, _acc48(spec))

_acc50(spec) := _step(spec, 49, _acc49(spec))

_acc51(spec) := _step(spec, 50, _acc50(spec))

_acc52(spec) := _step(spec, 51, _acc51(spec))

_acc53(spec) := _step(spec, 52, _acc52(spec))

_acc54(spec) := _step(spec, 53, _acc53(spec))

_acc55(spec) := _step(spec, 54, _acc54(spec))

_acc56(spec) := _step(spec, 55, _acc55(spec))

_acc57(spec) := _step(spec, 56, _acc56(spec))

_acc58(spec) := _step(spec, 57, _acc57(spec))

_acc59(spec) := _step(spec, 58, _acc58(spec))

_acc60(spec) := _step(spec, 59, _acc59(spec))

_acc61(spec) := _step(spec, 60, _acc60(spec))

_acc62(spec) := _step(spec, 61, _acc61(spec))

_acc63(spec) := _step(spec, 62, _acc62(spec))

_acc64(spec) := _step(spec, 63, _acc63(spec))
