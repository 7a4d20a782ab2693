# METADATA
# description: |
#   Three-valued evaluation with error details, for rules whose condition is in error.
#
#   Generated code computes conditions quickly as "definitely true" and "definitely false"
#   rule bodies; when neither holds, it calls these functions to find out why. Every value is
#   a result object: {"v": value} when it could be computed, {"e": detail} when not. Each
#   function is total (defined for every argument) and follows the reference evaluator
#   (veto_opa/translators/evaluator.py) exactly, detail texts included: errors propagate from
#   the leftmost erroring operand, and && / || absorb errors as CEL does.
package veto.lib.explain

# METADATA
# description: The detail of an error result.
detail(r) := r.e

# METADATA
# description: A condition's result; anything but a boolean is an error.
condition(r, text) := as_boolean(r, text)

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
# description: "&& with CEL's commutative rules: false wins over an error, an error over true."
land(a, b, a_text, b_text) := _and(as_boolean(a, a_text), as_boolean(b, b_text))

_and(a, b) := a if {
	a.v == false
} else := b if {
	b.v == false
} else := {"v": true} if {
	a.v == true
	b.v == true
} else := a if {
	_ = a.e
} else := b

# METADATA
# description: "|| with CEL's commutative rules: true wins over an error, an error over false."
lor(a, b, a_text, b_text) := _or(as_boolean(a, a_text), as_boolean(b, b_text))

_or(a, b) := a if {
	a.v == true
} else := b if {
	b.v == true
} else := {"v": false} if {
	a.v == false
	b.v == false
} else := a if {
	_ = a.e
} else := b

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
