# METADATA
# description: |
#   Type-guarded operations used by generated policy code. Each is undefined unless its
#   operands have the types the operation needs, so that a generated condition never hands
#   an ill-typed value to a builtin (OPA raises on ill-typed builtin calls) and an ill-typed
#   operand makes the condition neither true nor false: an error, in veto's three-valued logic.
package veto.lib.ops

# METADATA
# description: Two numbers or two strings, the only pairs veto orders with < <= > >=.
ordered(a, b) if {
	is_number(a)
	is_number(b)
}

ordered(a, b) if {
	is_string(a)
	is_string(b)
}

# METADATA
# description: x is an element of array c, or a key of object c.
member(x, c) if {
	is_array(c)
	x in c
}

member(x, c) if {
	is_object(c)
	_has_key(c, x)
}

# METADATA
# description: |
#   c is an array without x that is empty or holds an element of x's JSON type, or an
#   object without key x, a string. (Otherwise `x in c` is an error, not false.)
not_member(x, c) if {
	is_array(c)
	not x in c
	holds_type_of(c, x)
}

not_member(x, c) if {
	is_object(c)
	is_string(x)
	not _has_key(c, x)
}

# METADATA
# description: The array c is empty or holds an element of x's JSON type.
holds_type_of(c, _) if count(c) == 0

holds_type_of(c, x) if {
	some e in c
	type_name(e) == type_name(x)
}

# METADATA
# description: The JSON types of the elements of the array c, sorted, joined by ", ".
element_types(c) := concat(", ", sort({type_name(e) | some e in c}))

# Object keys from JSON are strings; another type is never a key (and c[x] with a
# non-string x is simply undefined, which is what we want).
_has_key(c, x) if {
	is_string(x)
	_ = c[x]
}

# METADATA
# description: A string, array or object, the values size() and len() measure.
sized(x) if is_string(x)

sized(x) if is_array(x)

sized(x) if is_object(x)

# METADATA
# description: |
#   A number without a fractional part (3, 3.0, 1e400). round() goes through a 64-bit
#   float, which holds every whole number below 2^63 exactly; beyond, the number's text says.
whole(x) if {
	is_number(x)
	round(x) == x
}

whole(x) if {
	is_number(x)
	round(x) != x
	_whole_text(json.marshal(x))
}

# The JSON text of a number: a whole number if its digits, shifted by the exponent, leave
# nothing after the point (12.50e1 is 125, 120e-1 is 12, 125e-1 is not whole).
_whole_text(text) if {
	[[_, digits, exp]] := regex.find_all_string_submatch_n(`^-?([0-9]+(?:\.[0-9]*)?)(?:[eE]([-+]?[0-9]+))?$`, text, 1)
	parts := split(digits, ".")
	fraction := concat("", array.slice(parts, 1, 2))
	all_digits := concat("", parts)
	zeros := count(all_digits) - count(trim_right(all_digits, "0"))
	zeros >= count(fraction) - _exponent(exp)
}

_exponent("") := 0

_exponent(exp) := to_number(trim_left(exp, "+")) if exp != ""

# METADATA
# description: Two numbers and both whole, the operands '%' takes.
both_whole(a, b) if {
	whole(a)
	whole(b)
}

# METADATA
# description: "Operands '+' takes: two numbers, two strings or two arrays."
addable(a, b) if {
	is_number(a)
	is_number(b)
}

addable(a, b) if {
	is_string(a)
	is_string(b)
}

addable(a, b) if {
	is_array(a)
	is_array(b)
}

# METADATA
# description: |
#   c[k] has a value, whatever it is (false and null included): `not present(input.args,
#   "x")` says that args.x is missing, where `not input.args.x` would also hold for false.
present(c, k) if _ = c[k]

# METADATA
# description: "'+': numbers add, strings and arrays concatenate; undefined for other pairs."
add(a, b) := a + b if {
	is_number(a)
	is_number(b)
} else := concat("", [a, b]) if {
	is_string(a)
	is_string(b)
} else := array.concat(a, b) if {
	is_array(a)
	is_array(b)
}

# METADATA
# description: |
#   The text of a generated error detail, as the compiler writes it in
#   data.veto.details.<policy>.<rule> (the generated checks name it by its index there):
#   - a string: the text;
#   - [template, path, ...]: the template with each %s replaced by the JSON type of the
#     input value at the next path;
#   - {"path": keys, "missing": texts, "not_object": pairs, "else": detail}: if the input
#     path `keys` cannot be read, missing[i] where keys[i] is the first key missing, or,
#     where the value before it is not an object, pairs[i][0] + that value's type +
#     pairs[i][1]; if it can, the detail "else" (one of the forms above).
detail(d) := d if {
	is_string(d)
} else := _missing(d.missing[n]) if {
	# The usual case first: only the last key of the path is missing.
	object.get(input, d.path, absent) == absent
	n := count(d.path) - 1
	is_object(object.get(input, array.slice(d.path, 0, n), absent))
} else := _path_detail(d.path, d.missing, d.not_object, _first_missing(d.path)) if {
	object.get(input, d.path, absent) == absent
} else := _text(d["else"]) if {
	is_object(d)
} else := _text(d)

_text(d) := d if {
	is_string(d)
} else := sprintf(d[0], [type_name(object.get(input, path, null)) | some path in array.slice(d, 1, count(d))]) if {
	is_array(d)
	is_string(d[0])
}

_path_detail(path, missing, not_object, i) := concat("", [not_object[i][0], type_name(parent), not_object[i][1]]) if {
	parent := object.get(input, array.slice(path, 0, i), absent)
	not is_object(parent)
} else := _missing(missing[i])

# The detail of a missing key: a text; or, for a field of a fact (facts.<argument>.<field>),
# the fact's error when its parser could not compute it, else the text.
_missing(m) := m if {
	is_string(m)
} else := concat("", [m.fact, error]) if {
	error := object.get(input, array.concat(m.at, ["error"]), null)
	is_string(error)
} else := m.text

# The index of the first key of path that the input does not have.
_first_missing(path) := min({i |
	some i in numbers.range(0, count(path) - 1)
	object.get(input, array.slice(path, 0, i + 1), absent) == absent
})

# METADATA
# description: |
#   A set, which JSON input never holds: `object.get(doc, path, absent) == absent` says
#   that the path is missing under doc.
absent := {"absent"}

# METADATA
# description: |
#   a and b may be compared with == and !=: they have one JSON type, or one is null.
comparable(a, b) if type_name(a) == type_name(b)

comparable(null, _)

comparable(_, null)

# METADATA
# description: |
#   a == b, for operands whose static types OPA's type checker would refuse to compare
#   (it reports a "match error" for "a" == null); a function's arguments are not checked so.
same(a, b) if a == b

# METADATA
# description: a != b, see same.
different(a, b) if a != b
