from __future__ import annotations

import pytest

from veto_opa.translators import checker, details, evaluator, expressions as ex, generator
from veto_opa.translators.parser import parse
from veto_opa.translators.types import ANY, T_BOOLEAN, T_NUMBER, T_STRING


def assert_diagnostics(text: str, expected: list[tuple[int, str]]) -> None:
    parsed = parse(text)
    result = checker.check(parsed.node)
    assert [(p.offset, p.message) for p in result.problems] == expected


@pytest.mark.parametrize("text", [
    "args.x.upper() == 'A'",
    "args.l.exists(v, v.upper() == 'A')",
    "[1, 'a'].exists(v, v.upper() == 'A')",   # one element is a string: checked at run time
    "args.n + 1 > 2",
    "'a' + args.s == 'ab'",
    "size(args.x) == 1",
    "has(args.x.y)",
    "args.x",                                   # any value may be a boolean
    "tool.startsWith('kubectl_')",
    "model == null || model.contains('large')",
    "args.s.matches('^[a-z]+$')",
])
def test_accepts(text: str) -> None:
    assert_diagnostics(text, [])


@pytest.mark.parametrize("text, expected", [
    ("5.upper() == 'A'", [(0, "upper() needs a string, found number (5)")]),
    ("args.s.upper().upper().size() == true", []),
    ("args.s.contains(1)", [(16, "contains() needs a string, found number (1)")]),
    ("args.s.contains()", [(7, "contains() takes 1 argument, found 0")]),
    ("args.s.upper('x') == 'X'", [(7, "upper() takes 0 arguments, found 1")]),
    ("size(1, 2) == 1", [(0, "size() takes 1 argument, found 2")]),
    ("tool.x == 1", [(0, "cannot read field 'x' of tool: it is string, not an object")]),
    ("'abc'[0] == 'a'", [(0, "cannot index 'abc': it is string, not an array or object")]),
    ("args.l[true] == 1", [(7, "an index must be a number or a string, found boolean")]),
    ("1 < 'a'", [(0, "1 < 'a': '<' compares two numbers or two strings, found number and string")]),
    ("args.x in 5", [(10, "'in' needs an array or an object, found number (5)")]),
    ("!5", [(1, "'!' needs a boolean, found number (5)")]),
    ("-'a' == 1", [(1, "'-' needs a number, found string ('a')")]),
    ("1 + 'a' == 1", [(0, "1 + 'a': cannot apply '+' to number and string")]),
    ("'a' * 2 == 1", [(0, "'a' * 2: cannot apply '*' to string and number")]),
    ("args.a && 5", [(10, "'&&' needs boolean operands, found number (5)")]),
    ("args.x + 1", [(0, "a condition must be a boolean, found number")]),
    ("has(args)", [(4, "has() needs a field path such as has(args.name), found args")]),
    ("args.s.matches('(')", [(15, "invalid regular expression '(': missing ): (")]),
    ("'a'.exists(v, true)", [(0, "exists() needs an array, found string ('a')")]),
    ("args.l.all(v, v + 1)", [(14, "the condition of all() must be a boolean, found number")]),
    ("[1, 2].exists(v, v.upper() == 'A')", [(17, "upper() needs a string, found number (v)")]),
])
def test_reports(text: str, expected: list[tuple[int, str]]) -> None:
    assert_diagnostics(text, expected)


def test_static_types() -> None:
    result = checker.check(parse("args.s.upper() == 'A' && size(args.l) > 1").node)
    node = result.node
    assert result.type_of(node) == T_BOOLEAN
    assert result.type_of(node.left.left) == T_STRING
    assert result.type_of(node.left.left.target) == ANY
    assert result.type_of(node.right.left) == T_NUMBER


def test_every_node_kind_has_a_handler_in_every_back_end() -> None:
    back_ends = {
        "checker": (checker._Checker, "{}_type"),
        "evaluator": (evaluator._Evaluator, "{}_eval"),
        "error details": (details.Explainer, "{}_sites"),
    }
    for name, (cls, pattern) in back_ends.items():
        missing = [n.key for n in ex.NODE_TYPES if not hasattr(cls, pattern.format(n.key))]
        assert not missing, f"{name} lacks handlers for {missing}"
    assert set(details._SITES) == {n.key for n in ex.NODE_TYPES}
    # The Rego generator has a value handler or the boolean fallback, and truth/falsity
    # handlers or the value-based fallback, for every kind; the table is complete.
    for table in (generator._VALUE, generator._TRUTH, generator._FALSITY):
        assert set(table) == {n.key for n in ex.NODE_TYPES}


@pytest.mark.parametrize("text, expected", [
    ("args.x.upper() == 3", [(0, "args.x.upper() == 3: compares string with number")]),
    ("size(args.l) != 'a'", [(0, "size(args.l) != 'a': compares number with string")]),
    ("args.s.lower() in [1, 2]", [(0, "args.s.lower() in [1, 2]: looks for string in a list of "
                                       "number")]),
    ("1 in args", [(0, "1 in args: looks for number among object keys, which are strings")]),
    # Null compares with anything; values of unknown type may have the right one.
    ("args.x == 3", []), ("model == 3", []), ("args.x.upper() == null", []),
    ("args.x.upper() in ['A', 1]", []), ("args.x in [1, 2]", []), ("'k' in args", []),
])
def test_warns_of_comparisons_that_are_always_errors(text: str,
                                                      expected: list[tuple[int, str]]) -> None:
    result = checker.check(parse(text).node)
    assert result.problems == []
    suffix = ", which is always an error (never true or false)"
    assert [(w.offset, w.message) for w in result.warnings] == [
        (offset, message + suffix) for offset, message in expected]
