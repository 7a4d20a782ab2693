from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veto_opa.translators import expressions as ex
from veto_opa.translators.parser import MAX_DEPTH, MAX_NESTING, ParseError, parse


def shape(node: ex.Node) -> object:
    """A compact picture of a tree: (key, details..., children...)."""
    if isinstance(node, ex.Literal):
        return node.value
    if isinstance(node, ex.Root):
        return node.name
    if isinstance(node, ex.Var):
        return f"${node.name}"
    if isinstance(node, ex.Field):
        return (".", shape(node.target), node.name)
    details: tuple = ()
    if isinstance(node, (ex.Compare, ex.Arith)):
        details = (node.op,)
    elif isinstance(node, (ex.Call, ex.Method, ex.Macro)):
        details = (node.name,)
    if isinstance(node, ex.Macro):
        details += (node.var,)
    return (node.key, *details, *(shape(c) for c in node.children()))


def assert_parses(text: str, expected: object) -> None:
    parsed = parse(text)
    assert not parsed.problems, parsed.problems
    assert shape(parsed.node) == expected


@pytest.mark.parametrize("text, expected", [
    ("args.x", (".", "args", "x")),
    ("args['x y']", (".", "args", "x y")),
    ("args.l[0]", ("index", (".", "args", "l"), 0)),
    ("args.a || args.b && args.c",
     ("or", (".", "args", "a"), ("and", (".", "args", "b"), (".", "args", "c")))),
    ("!args.a == true", ("compare", "==", ("not", (".", "args", "a")), True)),
    ("1 + 2 * 3", ("arith", "+", 1, ("arith", "*", 2, 3))),
    ("(1 + 2) * 3", ("arith", "*", ("arith", "+", 1, 2), 3)),
    ("1 - 2 - 3", ("arith", "-", ("arith", "-", 1, 2), 3)),
    ("-5", -5),
    ("-args.n", ("neg", (".", "args", "n"))),
    ("- 5", ("neg", 5)),
    ("args.s.upper().startsWith('A')",
     ("method", "startswith", ("method", "upper", (".", "args", "s")), "A")),
    ("args.l.exists(v, v > 1)", ("macro", "exists", "v", (".", "args", "l"),
                                 ("compare", ">", "$v", 1))),
    ("has(args.x.y)", ("has", (".", (".", "args", "x"), "y"))),
    ("size(args.l) == len('ab')", ("compare", "==", ("call", "size", (".", "args", "l")),
                                   ("call", "len", "ab"))),
    ("args.x in [1, 'a', null, true,]", ("in", (".", "args", "x"), ("list", 1, "a", None, True))),
    ("tool == 'x' && model != null", ("and", ("compare", "==", "tool", "x"),
                                      ("compare", "!=", "model", None))),
    ("context.environment == \"production\" &&\n  (args.a ||\n   args.b)",
     ("and", ("compare", "==", (".", "context", "environment"), "production"),
      ("or", (".", "args", "a"), (".", "args", "b")))),
])
def test_parses(text: str, expected: object) -> None:
    assert_parses(text, expected)


def test_node_text_is_the_source_with_whitespace_folded() -> None:
    node = parse("context.environment ==\n   'production'  &&  ( args.a )").node
    assert node.text == "context.environment == 'production' && ( args.a )"
    assert node.right.text == "( args.a )"
    assert node.left.right.text == "'production'"


def test_string_whitespace_is_kept_in_text() -> None:
    assert parse("args.s == 'a   b'").node.right.text == "'a   b'"


@pytest.mark.parametrize("text, offset, message", [
    ("", 0, "empty expression"),
    ("args.x ==", 9, "expression ends too early: expected a value"),
    ("args.x == 1 2", 12, "expected an operator or end of expression, found '2'"),
    ("(args.x", 7, "expected ')' to close '(', found end of expression"),
    ("args.s.upper(", 13, "expression ends too early: expected a value"),
    ("args.", 5, "expected a field or method name after '.', found end of expression"),
    ("args[1", 6, "expected ']' to close the index, found end of expression"),
    ("a < b < c", 6, "comparisons do not chain: '<' after '<'; combine them with '&&' or use "
                     "parentheses"),
    ("args.l.exists(1, true)", 14, "expected a variable name as the first argument of exists(), "
                                   "found '1'"),
    ("args.l.all(args, true)", 11, "variable 'args' would hide the input root of that name"),
    ("args.l.exists(v true)", 16, "expected ',' after the variable of exists(), found 'true'"),
    ("has(args.a, args.b)", 0, "has() takes 1 argument, found 2"),
    ("args.x in in", 10, "expected a value, found 'in'"),
    ("[1, 2", 5, "expected ']' to close the list, found end of expression"),
    (")", 0, "expected a value, found ')'"),
])
def test_syntax_errors(text: str, offset: int, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(text)
    assert (info.value.problem.offset, info.value.problem.message) == (offset, message)


@pytest.mark.parametrize("text, offset, message", [
    ("user.name == 'x'", 0, "unknown name 'user': expressions start from args, context, tool, "
                            "model or facts"),
    ("args.s.uper()", 7, "unknown method 'uper'; did you mean 'upper'?"),
    ("args.s.startwith('a')", 7, "unknown method 'startwith'; did you mean 'startswith'?"),
    ("args.s.foo()", 7, "unknown method 'foo' (known: all, contains, endsWith, endswith, exists, "
                        "lower, matches, size, startsWith, startswith, trim, upper)"),
    ("sizee(args.s) == 1", 0, "unknown function 'sizee'; did you mean 'size'?"),
    ("args.s.Upper()", 7, "unknown method 'Upper'; did you mean 'upper'?"),
    ("args.s.len()", 7, "unknown method 'len'; len() is a function: write len(x)"),
    ("upper(args.s)", 0, "unknown function 'upper'; upper() is a method: write x.upper(...)"),
    ("count(args.l)", 0, "unknown function 'count' (known: has, len, size)"),
])
def test_name_problems_are_collected(text: str, offset: int, message: str) -> None:
    problems = parse(text).problems
    assert [(p.offset, p.message) for p in problems] == [(offset, message)]


def test_all_name_problems_of_an_expression_are_reported() -> None:
    problems = parse("a.x == b.y && args.s.foo()").problems
    assert [p.offset for p in problems] == [0, 7, 21]


def test_nesting_limit() -> None:
    deep = "(" * (MAX_NESTING + 1) + "true" + ")" * (MAX_NESTING + 1)
    with pytest.raises(ParseError) as info:
        parse(deep)
    assert info.value.problem.message == (
        f"expression nests too deeply (more than {MAX_NESTING} levels)")
    assert info.value.problem.offset == MAX_NESTING + 1
    parse("(" * MAX_NESTING + "true" + ")" * MAX_NESTING)


def test_depth_limit_for_long_chains() -> None:
    # n operands: n - 1 '&&' nodes above a field above its root.
    parse(" && ".join(["args.a"] * (MAX_DEPTH - 1)))
    with pytest.raises(ParseError) as info:
        parse(" && ".join(["args.a"] * MAX_DEPTH))
    assert "nests too deeply" in info.value.problem.message


@given(st.text(alphabet="ab.()[]!&|=<>+-*/%'\"01 ,\n", max_size=40))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        parsed = parse(text)
    except ParseError as e:
        assert 0 <= e.problem.offset <= len(text)
    else:
        for node in parsed.node.walk():
            assert 0 <= node.start <= node.end <= len(text)
