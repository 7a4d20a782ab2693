"""The ``facts:`` key of a policy file, and the facts its conditions read.

    facts:
      execute_sql:
        statement: {sql: {dialect: postgres}}     # a parser with options
      kubectl_apply:
        manifest: kubernetes                      # a parser with its defaults

Each tool (an exact name: facts are computed per call, for the tool called) maps argument
names to a parser: its name, or a mapping of its one name to its options. The parsers, their
fields and options are the table of :mod:`veto_opa.facts.registry`.

Checked here, each problem reported at its key or value:

- the shape: a mapping of tools, each a mapping of arguments, each a parser;
- parser names and options (a sqlglot dialect, an absolute root path...);
- every ``facts.<argument>`` a rule's condition reads is declared, in the same file, for the
  tools the rule governs (for a rule on every tool or on a glob: for at least one declared
  tool it matches), and every ``facts.<argument>.<field>`` is a field of that parser's facts.

Declarations of one tool's argument in two policy files must agree; :func:`conflicts` finds
those that do not.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from veto_opa.facts.errors import suggest
from veto_opa.facts.registry import COMMON_FIELDS, PARSERS, option_problem
from veto_opa.facts.spec import FactSpec
from veto_opa.translators import expressions as ex
from veto_opa.translators.schema import found

if TYPE_CHECKING:
    from veto_opa.translators.source import Document, Position
    from veto_opa.translators.source import Path as DataPath

FACTS = "veto_facts_error"
"""The diagnostic code of problems with facts."""

_PARSER_NAMES = ", ".join(PARSERS)
_FORM = ("a parser name (" + _PARSER_NAMES + ") or a mapping of one parser name to its "
         "options, such as {sql: {dialect: postgres}}")

Report = Callable[["Position", str], None]


@dataclass
class Declared:
    """The facts a file declares, and where each is written."""

    spec: dict[str, dict[str, FactSpec]] = field(default_factory=dict)
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)   # arguments declared with a problem


def declared(doc: Document, report: Report) -> Declared:
    """Read and check the ``facts:`` key of a file (absent: nothing declared)."""
    out = Declared()
    raw = doc.value.get("facts")
    if raw is None:
        return out
    if not isinstance(raw, dict):
        report(doc.value_position(("facts",)),
               f"facts must be a mapping of tool names to their arguments' parsers, found "
               f"{found(raw)}")
        return out
    for tool, arguments in raw.items():
        path: DataPath = ("facts", tool)
        problem = _tool_problem(tool)
        if problem:
            report(doc.key_position(path), problem)
            continue
        if not isinstance(arguments, dict) or not arguments:
            report(doc.value_position(path),
                   f"the facts of tool {tool!r} must map argument names to parsers, found "
                   f"{found(arguments)}")
            continue
        for arg, value in arguments.items():
            spec = _parser(doc, (*path, arg), arg, value, report)
            if spec is None:
                out.broken.add(arg)
            else:
                out.spec.setdefault(tool, {})[arg] = spec
                out.positions[(tool, arg)] = doc.key_position((*path, arg))
    return out


def _tool_problem(tool: str) -> str | None:
    if not tool:
        return "a tool name under facts is empty"
    if _is_pattern(tool):
        return (f"facts are declared per tool name, not pattern: {tool!r} has a wildcard; "
                "name each tool")
    if any(c.isspace() or not c.isprintable() for c in tool):
        return f"bad tool name {tool!r}: tool names have no spaces or control characters"
    return None


def _parser(doc: Document, path: DataPath, arg: str, value: Any,
            report: Report) -> FactSpec | None:
    if not arg:
        report(doc.key_position(path), "an argument name under facts is empty")
        return None
    if isinstance(value, str):
        name, options, at = value, None, path
    elif isinstance(value, dict) and len(value) == 1:
        name, options = next(iter(value.items()))
        at = (*path, name)
    else:
        shown = (f"a mapping of {len(value)} keys" if isinstance(value, dict)
                 else found(value))
        report(doc.value_position(path),
               f"the parser of argument {arg!r} must be {_FORM}, found {shown}")
        return None
    parser = PARSERS.get(name)
    if parser is None:
        place = doc.value_position(path) if at == path else doc.key_position(at)
        report(place, f"unknown parser {name!r}{suggest(name, PARSERS)} (parsers: "
                      f"{_PARSER_NAMES})")
        return None
    if options is None:
        return FactSpec(parser.name, {})
    if not isinstance(options, dict):
        report(doc.value_position(at), f"the options of the {parser.name} parser must be a "
                                       f"mapping, found {found(options)}")
        return None
    good = True
    for option, setting in options.items():
        where = (*at, option)
        if option not in parser.options:
            known = ", ".join(parser.options) or "none"
            report(doc.key_position(where),
                   f"unknown option {option!r} of the {parser.name} parser"
                   f"{suggest(option, parser.options)} (options: {known})")
            good = False
        elif not isinstance(setting, str):
            report(doc.value_position(where),
                   f"option {option} must be a string, found {found(setting)}")
            good = False
        else:
            problem = option_problem(parser, option, setting)
            if problem:
                report(doc.value_position(where), problem)
                good = False
    return FactSpec(parser.name, dict(options)) if good else None


def check_reads(node: ex.Node, tools: tuple[str, ...] | None, decl: Declared,
                report: Callable[[int, str], None]) -> None:
    """Report each ``facts.<argument>`` a condition reads that is not declared for the
    rule's tools, and each ``facts.<argument>.<field>`` that is not a field of the fact.

    Args:
        node: the rule's condition.
        tools: the rule's tool names and patterns (None: every tool).
        decl: the file's declarations (reads of arguments whose declaration has a problem
            are not reported again).
        report: called with the offset in the condition's text and the message.
    """
    spec = decl.spec
    exact = [t for t in tools or () if not _is_pattern(t)]
    patterns = [t for t in tools or () if _is_pattern(t)]
    for n in node.walk():
        if not ex.reads_fact(n):
            continue
        assert isinstance(n, ex.Field)
        if n.name in decl.broken:
            continue
        missing = [t for t in exact if n.name not in spec.get(t, {})]
        if missing:
            report(n.start, f"facts.{n.name} is not declared for tool {missing[0]}: declare "
                            f"it under facts: {missing[0]}: {n.name}")
            continue
        matched = [t for t in spec if n.name in spec[t] and t not in exact and (
            tools is None or any(fnmatch.fnmatchcase(t, p) for p in patterns))]
        if not exact and not matched:
            report(n.start, f"facts.{n.name} is not declared for any tool this rule "
                            f"governs: declare it under facts: <tool>: {n.name}")
            continue
        parsers = {spec[t][n.name].parser for t in (*exact, *matched)}
        for outer in node.walk():
            if isinstance(outer, ex.Field) and outer.target is n:
                _check_field(outer, parsers, report)


def _is_pattern(tool: str) -> bool:
    return "*" in tool or "?" in tool


def _check_field(node: ex.Field, parsers: set[str], report: Callable[[int, str], None]) -> None:
    for name in sorted(parsers):
        fields = {**PARSERS[name].fields, **COMMON_FIELDS}
        if node.name not in fields:
            report(node.start, f"{node.text}: a {name} fact has no field {node.name!r}"
                               f"{suggest(node.name, fields)} (fields: {', '.join(fields)})")
            return


def conflicts(files: list[tuple[str, Declared]]) -> list[tuple[str, Position, str]]:
    """``(file, position, message)`` for each declaration that disagrees with an earlier
    file's declaration of the same tool's argument."""
    first: dict[tuple[str, str], tuple[str, FactSpec]] = {}
    out = []
    for file, decl in files:
        for tool, arguments in decl.spec.items():
            for arg, spec in arguments.items():
                earlier = first.setdefault((tool, arg), (file, spec))
                if earlier[1] != spec:
                    out.append((file, decl.positions[(tool, arg)],
                                f"facts of {tool}.{arg} conflict with {earlier[0]}: "
                                f"{_describe(earlier[1])} there, {_describe(spec)} here; "
                                "an argument is parsed one way for every policy"))
    return out


def _describe(spec: FactSpec) -> str:
    if not spec.options:
        return spec.parser
    options = ", ".join(f"{k}: {v}" for k, v in sorted(spec.options.items()))
    return f"{spec.parser} {{{options}}}"
