"""The single table of functions and methods of the expression language.

The checker reads arity and operand types from it, the reference evaluator calls ``impl``,
and the Rego generator emits ``rego`` (a format string over the operand terms). Adding a
function means adding one row here.

String functions follow OPA's Go implementations, not Python's, so that the evaluator and
the engine agree on every input: ``upper``/``lower`` use Unicode *simple* case mapping (one
character to one character, as Go's ``unicode.ToUpper``), ``trim`` strips Unicode White_Space
(Go's ``strings.TrimSpace``; Python's ``str.strip`` also strips U+001C..U+001F), ``size``
counts code points, and ``matches`` is an unanchored RE2 search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import re2

# Static types, named as OPA's type_name() names JSON values.
STRING, NUMBER, BOOLEAN, NULL, ARRAY, OBJECT, ANY = (
    "string", "number", "boolean", "null", "array", "object", "any",
)

# Go's unicode.ToUpper/ToLower map one code point to one code point. Python's str.upper()
# applies the full mapping of SpecialCasing.txt; where that yields one character it is the
# simple mapping too, and these are the only code points where the two differ in a way a
# single-character result cannot show (checked against OPA for every code point by
# tests/translators/test_functions.py).
_SIMPLE_UPPER = {
    **{chr(c): chr(c + 8) for base in (0x1F80, 0x1F90, 0x1FA0) for c in range(base, base + 8)},
    "\u1fb3": "\u1fbc",
    "\u1fc3": "\u1fcc",
    "\u1ff3": "\u1ffc",
}
_SIMPLE_LOWER = {"\u0130": "i"}

# Unicode White_Space, as Go's unicode.IsSpace (strings.TrimSpace).
_WHITE_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _simple_case(s: str, table: dict[str, str], full: Callable[[str], str]) -> str:
    out = []
    for c in s:
        mapped = table.get(c)
        if mapped is None:
            mapped = full(c)
            if len(mapped) != 1:
                mapped = c
        out.append(mapped)
    return "".join(out)


def go_upper(s: str) -> str:
    return _simple_case(s, _SIMPLE_UPPER, str.upper)


def go_lower(s: str) -> str:
    return _simple_case(s, _SIMPLE_LOWER, str.lower)


def go_trim_space(s: str) -> str:
    return s.strip(_WHITE_SPACE)


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def compile_regex(pattern: str) -> Any:
    """Compile an RE2 pattern; raises ``re2.error`` when it is not valid RE2."""
    return re2.compile(pattern, options=_RE2_OPTIONS)


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid RE2 pattern, or None when it is."""
    try:
        compile_regex(pattern)
    except re2.error as e:
        detail = e.args[0] if e.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return str(detail) or "not valid RE2 syntax"
    return None


def _matches(s: str, pattern: str) -> bool:
    return compile_regex(pattern).search(s) is not None


@dataclass(frozen=True)
class Function:
    """One function or method.

    Attributes:
        name: canonical name.
        aliases: other spellings accepted by the parser (``startsWith``).
        method: called as ``target.name(...)`` (the target is operand 0) or ``name(...)``.
        operands: accepted static types of each operand, the target first for methods.
        result: static type of the result.
        impl: the reference implementation over already type-checked Python values.
        rego: Rego for the call, formatted with the operand terms ``{0}``, ``{1}``.
    """

    name: str
    method: bool
    operands: tuple[tuple[str, ...], ...]
    result: str
    impl: Callable[..., Any]
    rego: str
    aliases: tuple[str, ...] = ()

    @property
    def arity(self) -> int:
        """Number of arguments written between the parentheses."""
        return len(self.operands) - (1 if self.method else 0)


_S = (STRING,)
_SIZED = (STRING, ARRAY, OBJECT)

FUNCTIONS: tuple[Function, ...] = (
    Function("upper", True, (_S,), STRING, go_upper, "upper({0})"),
    Function("lower", True, (_S,), STRING, go_lower, "lower({0})"),
    Function("trim", True, (_S,), STRING, go_trim_space, "trim_space({0})"),
    Function("contains", True, (_S, _S), BOOLEAN, lambda s, t: t in s, "contains({0}, {1})"),
    Function("startswith", True, (_S, _S), BOOLEAN, str.startswith, "startswith({0}, {1})",
             aliases=("startsWith",)),
    Function("endswith", True, (_S, _S), BOOLEAN, str.endswith, "endswith({0}, {1})",
             aliases=("endsWith",)),
    Function("matches", True, (_S, _S), BOOLEAN, _matches, "regex.match({1}, {0})"),
    Function("size", True, (_SIZED,), NUMBER, len, "count({0})"),
    Function("size", False, (_SIZED,), NUMBER, len, "count({0})"),
    Function("len", False, (_SIZED,), NUMBER, len, "count({0})"),
)

METHODS: dict[str, Function] = {}
GLOBALS: dict[str, Function] = {}
for _f in FUNCTIONS:
    _table = METHODS if _f.method else GLOBALS
    for _name in (_f.name, *_f.aliases):
        _table[_name] = _f

MACROS = ("exists", "all")
"""List macros, called as ``list.exists(v, predicate)``: not functions, they bind ``v``."""

SPECIAL_FUNCTIONS = ("has",)
"""``has(path)`` takes a path, not a value, and is handled by the parser."""
