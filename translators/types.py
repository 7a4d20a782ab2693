"""Static types of expressions, as sets of JSON types.

A static type is the set of JSON types a value may have at run time: ``{"string"}`` for a
string literal, every type (:data:`ANY`) for a path into the input. The checker rejects an
operation whose operand types cannot meet what it needs (``5.upper()``), as CEL's checker
does — which also keeps the generated Rego clear of calls that OPA's own type checker would
reject at compile time.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from veto_opa.translators.functions import ARRAY, BOOLEAN, NULL, NUMBER, OBJECT, STRING

Type = frozenset[str]

ANY: Type = frozenset({STRING, NUMBER, BOOLEAN, NULL, ARRAY, OBJECT})
T_STRING: Type = frozenset({STRING})
T_NUMBER: Type = frozenset({NUMBER})
T_BOOLEAN: Type = frozenset({BOOLEAN})
T_ARRAY: Type = frozenset({ARRAY})
T_OBJECT: Type = frozenset({OBJECT})


def type_name(value: Any) -> str:
    """The JSON type of a Python value, named as OPA's ``type_name`` names it."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, (int, float, Decimal)):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, list):
        return ARRAY
    if isinstance(value, dict):
        return OBJECT
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def describe(t: Type) -> str:
    """``string``, ``string or number``, ``any value``."""
    if t == ANY:
        return "any value"
    names = sorted(t)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


_ARTICLES = {"array": "an array", "object": "an object", "null": "null"}


def expected(t: Type) -> str:
    """What an operation needs, for messages: ``a string``, ``a string, an array or an object``."""
    names = [_ARTICLES.get(n, f"a {n}") for n in sorted(t)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def of_value(value: Any) -> Type:
    return frozenset({type_name(value)})
