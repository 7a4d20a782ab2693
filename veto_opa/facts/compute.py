"""Computing facts: each declared argument through its parser, errors kept as facts.

    compute({"statement": FactSpec("sql")}, {"statement": "DELETE FROM t"})
    # {"statement": {"count": 1, "kinds": ["delete"], ..., "parser": "sqlglot 30.30.0"}}

Every fact names its parser (``parser``). An argument that is missing, not a string, too
long, not valid Unicode, or that its parser cannot parse gives ``{"error": why, "parser":
...}`` instead: a condition reading any other field of it is in error (its detail names
``why``), so a deny or require_approval rule that reads it applies (fail closed). Nothing here
raises for a bad argument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from veto_opa.facts.errors import FactError
from veto_opa.facts.registry import PARSERS
from veto_opa.facts.spec import FactSpec, ToolFacts

_SURROGATE = re.compile("[\ud800-\udfff]")

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
               float: "number", type(None): "null"}


def compute(spec: ToolFacts, arguments: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The facts of one tool call: ``{argument: fact}`` for every argument in ``spec``."""
    return {name: fact(spec[name], name, arguments) for name in sorted(spec)}


def fact(declared: FactSpec, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The fact of one argument (``arguments[name]``) parsed as ``declared`` says."""
    parser = PARSERS[declared.parser]
    module = parser.load()
    library: str = module.library()
    if name not in arguments:
        return {"error": f"args.{name} is missing", "parser": library}
    value = arguments[name]
    try:
        if not isinstance(value, str):
            kind = _JSON_TYPES.get(type(value), type(value).__name__)
            raise FactError(f"args.{name} is not a string (found {kind})")
        if len(value) > module.MAX_CHARS:
            raise FactError(f"args.{name} is {len(value)} characters long, over the "
                            f"{module.MAX_CHARS} the {parser.name} parser reads")
        if _SURROGATE.search(value):
            raise FactError(f"args.{name} is not valid Unicode text (a lone surrogate)")
        result: dict[str, Any] = module.facts(value, **declared.options)
    except FactError as e:
        return {"error": e.message, "parser": library}
    except RecursionError:
        return {"error": f"args.{name} nests too deeply for the {parser.name} parser",
                "parser": library}
    except Exception as e:  # noqa: BLE001 - a parser's bug is a fact error, never an allow
        return {"error": f"the {parser.name} parser failed: {type(e).__name__}",
                "parser": library}
    result["parser"] = library
    return result
