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
# description: c is an array without x, or an object without key x.
not_member(x, c) if {
	is_array(c)
	not x in c
}

not_member(x, c) if {
	is_object(c)
	not _has_key(c, x)
}

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
# description: A number without a fractional part (3 and 3.0 both are).
whole(x) if {
	is_number(x)
	round(x) == x
}

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
#   a == b, for operands whose static types OPA's type checker would refuse to compare
#   (it reports a "match error" for "a" == null); a function's arguments are not checked so.
same(a, b) if a == b

# METADATA
# description: a != b, see same.
different(a, b) if a != b
