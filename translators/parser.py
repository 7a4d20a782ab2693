"""Parser for ``when`` expressions: tokens to the tree of :mod:`expressions`.

One small function per precedence level, lowest first:

    or       and ('||' and)*
    and      rel ('&&' rel)*
    rel      add (('==' | '!=' | '<' | '<=' | '>' | '>=' | 'in') add)?
    add      mul (('+' | '-') mul)*
    mul      unary (('*' | '/' | '%') unary)*
    unary    ('!' | '-') unary | member
    member   primary ('.' name ['(' args ')'] | '[' or ']')*
    primary  literal | root | variable | name '(' args ')' | '(' or ')' | '[' items ']'

Comparisons do not chain (``a < b < c`` is an error, as it is almost always a mistake).
A syntax error stops the parse and raises :class:`ParseError`; unknown names, unknown
functions and methods are collected as problems and parsing goes on, so that one expression
reports all of them.
"""

from __future__ import annotations

import bisect
import difflib
import dataclasses
from dataclasses import dataclass

from veto_opa.translators import numbers
from veto_opa.translators import expressions as ex
from veto_opa.translators.diagnostics import LIMIT, PARSE, UNKNOWN_NAME, ExpressionProblem
from veto_opa.translators.functions import GLOBALS, MACROS, METHODS, SPECIAL_FUNCTIONS
from veto_opa.translators.tokens import Kind, Token, TokenizeError, tokenize

MAX_NESTING = 48
"""Deepest nesting of parentheses, brackets, calls and unary operators the parser accepts."""
MAX_DEPTH = 128
"""Deepest expression tree accepted (long ``&&`` chains count one level per operator)."""

_RELATIONS = ("==", "!=", "<", "<=", ">", ">=")
_KEYWORDS = {"true": True, "false": False, "null": None}


class ParseError(Exception):
    """A syntax error; ``problem`` locates it by offset in the expression."""

    def __init__(self, problem: ExpressionProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass(frozen=True)
class Parsed:
    """A parsed expression and the name problems found on the way (possibly none)."""

    node: ex.Node
    problems: tuple[ExpressionProblem, ...]


def parse(text: str) -> Parsed:
    """Parse one ``when`` expression.

    Raises:
        ParseError: for the first syntax error, with the offset where it was found.
    """
    try:
        tokens = tokenize(text)
    except TokenizeError as e:
        raise ParseError(e.problem) from None
    return _Parser(text, tokens).parse()


class _Parser:
    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.source = text
        self.tokens = tokens
        self.starts = [t.start for t in tokens]
        self.pos = 0
        self.nesting = 0
        self.scope: list[str] = []
        self.problems: list[ExpressionProblem] = []

    # -- plumbing ---------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind is not Kind.EOF:
            self.pos += 1
        return tok

    def at(self, op: str) -> bool:
        # Only an operator token has an operator's text: names, numbers and quoted strings
        # cannot contain those characters (a string's text keeps its quotes).
        return self.tokens[self.pos].text == op

    def at_end(self) -> bool:
        return self.tok.kind is Kind.EOF

    def at_keyword(self, word: str) -> bool:
        return self.tok.kind is Kind.IDENT and self.tok.text == word

    def error(self, message: str, tok: Token | None = None) -> ParseError:
        tok = tok or self.tok
        return ParseError(ExpressionProblem(tok.start, PARSE, message))

    def expect(self, op: str, context: str) -> Token:
        if not self.at(op):
            raise self.error(f"expected {op!r} {context}, found {self.tok.describe()}")
        return self.advance()

    def text_of(self, start: int, end: int) -> str:
        """Source text of a span, whitespace between tokens folded to one space."""
        parts: list[str] = []
        last = None
        for tok in self.tokens[bisect.bisect_left(self.starts, start):]:
            if tok.start >= end or tok.kind is Kind.EOF:
                break
            if last is not None and tok.start > last:
                parts.append(" ")
            parts.append(tok.text)
            last = tok.end
        return "".join(parts)

    def node(self, cls: type[ex.Node], start: int, end: int, **fields: object) -> ex.Node:
        return cls(start=start, end=end, text=self.text_of(start, end), **fields)

    def enter(self) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise ParseError(
                ExpressionProblem(
                    self.tok.start, LIMIT,
                    f"expression nests too deeply (more than {MAX_NESTING} levels)",
                )
            )

    # -- grammar ----------------------------------------------------------------------

    def parse(self) -> Parsed:
        if self.tok.kind is Kind.EOF:
            raise self.error("empty expression")
        node = self.parse_or()
        if not self.at_end():
            raise self.error(f"expected an operator or end of expression, found "
                             f"{self.tok.describe()}")
        # Each node takes at least one token of its own, so a tree is never deeper than the
        # expression has tokens: only long expressions need the walk.
        deep = _too_deep(node) if len(self.tokens) > MAX_DEPTH else None
        if deep is not None:
            raise ParseError(ExpressionProblem(
                deep.start, LIMIT, f"expression nests too deeply (more than {MAX_DEPTH} levels)"
            ))
        return Parsed(node, tuple(self.problems))

    def parse_or(self) -> ex.Node:
        left = self.parse_and()
        while self.at("||"):
            self.advance()
            right = self.parse_and()
            left = self.node(ex.Or, left.start, right.end, left=left, right=right)
        return left

    def parse_and(self) -> ex.Node:
        left = self.parse_rel()
        while self.at("&&"):
            self.advance()
            right = self.parse_rel()
            left = self.node(ex.And, left.start, right.end, left=left, right=right)
        return left

    def _at_relation(self) -> bool:
        return (self.tok.kind is Kind.OP and self.tok.text in _RELATIONS) or self.at_keyword("in")

    def parse_rel(self) -> ex.Node:
        left = self.parse_add()
        if not self._at_relation():
            return left
        op = self.advance()
        right = self.parse_add()
        if op.text == "in":
            node = self.node(ex.In, left.start, right.end, item=left, collection=right)
        else:
            node = self.node(ex.Compare, left.start, right.end, op=op.text, left=left,
                             right=right)
        if self._at_relation():
            raise self.error(
                f"comparisons do not chain: {self.tok.describe()} after {op.text!r}; "
                "combine them with '&&' or use parentheses"
            )
        return node

    def parse_add(self) -> ex.Node:
        left = self.parse_mul()
        while self.tok.kind is Kind.OP and self.tok.text in ("+", "-"):
            op = self.advance().text
            right = self.parse_mul()
            left = self.node(ex.Arith, left.start, right.end, op=op, left=left, right=right)
        return left

    def parse_mul(self) -> ex.Node:
        left = self.parse_unary()
        while self.tok.kind is Kind.OP and self.tok.text in ("*", "/", "%"):
            op = self.advance().text
            right = self.parse_unary()
            left = self.node(ex.Arith, left.start, right.end, op=op, left=left, right=right)
        return left

    def parse_unary(self) -> ex.Node:
        if self.at("!") or self.at("-"):
            op = self.advance()
            self.enter()
            operand = self.parse_unary()
            self.nesting -= 1
            if op.text == "-" and isinstance(operand, ex.Literal) and _is_number(operand.value) \
                    and operand.start == op.end:
                return self.node(ex.Literal, op.start, operand.end, value=-operand.value)
            cls = ex.Not if op.text == "!" else ex.Neg
            return self.node(cls, op.start, operand.end, operand=operand)
        return self.parse_member()

    def parse_member(self) -> ex.Node:
        node = self.parse_primary()
        while True:
            if self.at("."):
                self.advance()
                name = self.tok
                if name.kind is not Kind.IDENT:
                    raise self.error(f"expected a field or method name after '.', found "
                                     f"{name.describe()}")
                self.advance()
                if self.at("("):
                    node = self.parse_method(node, name)
                else:
                    node = self.node(ex.Field, node.start, name.end, target=node, name=name.text)
            elif self.at("["):
                self.advance()
                self.enter()
                index = self.parse_or()
                self.nesting -= 1
                close = self.expect("]", "to close the index")
                if isinstance(index, ex.Literal) and isinstance(index.value, str):
                    node = self.node(ex.Field, node.start, close.end, target=node,
                                     name=index.value)
                else:
                    node = self.node(ex.Index, node.start, close.end, target=node, index=index)
            else:
                return node

    def parse_method(self, target: ex.Node, name: Token) -> ex.Node:
        if name.text in MACROS:
            return self.parse_macro(target, name)
        args, close = self.parse_args(f"of {name.text}()")
        if name.text not in METHODS:
            self.problems.append(ExpressionProblem(
                name.start, UNKNOWN_NAME, f"unknown method '{name.text}'{_suggest_method(name.text)}"
            ))
            canonical = name.text
        else:
            canonical = METHODS[name.text].name
        return self.node(ex.Method, target.start, close.end, target=target, name=canonical,
                         args=tuple(args), name_start=name.start)

    def parse_macro(self, target: ex.Node, name: Token) -> ex.Node:
        self.expect("(", f"after {name.text}")
        var = self.tok
        if var.kind is not Kind.IDENT or var.text in _KEYWORDS or var.text == "in":
            raise self.error(
                f"expected a variable name as the first argument of {name.text}(), found "
                f"{var.describe()}"
            )
        if var.text in ex.ROOTS:
            raise self.error(f"variable '{var.text}' would hide the input root of that name",
                             var)
        self.advance()
        self.expect(",", f"after the variable of {name.text}()")
        self.enter()
        self.scope.append(var.text)
        body = self.parse_or()
        self.scope.pop()
        self.nesting -= 1
        close = self.expect(")", f"to close {name.text}()")
        return self.node(ex.Macro, target.start, close.end, name=name.text, target=target,
                         var=var.text, body=body)

    def parse_args(self, context: str) -> tuple[list[ex.Node], Token]:
        self.expect("(", context)
        self.enter()
        args: list[ex.Node] = []
        if not self.at(")"):
            args.append(self.parse_or())
            while self.at(","):
                self.advance()
                args.append(self.parse_or())
        self.nesting -= 1
        close = self.expect(")", f"after arguments {context}")
        return args, close

    def parse_primary(self) -> ex.Node:
        tok = self.tok
        if tok.kind in (Kind.INT, Kind.FLOAT, Kind.STRING):
            self.advance()
            return self.node(ex.Literal, tok.start, tok.end, value=tok.value)
        if tok.kind is Kind.IDENT:
            return self.parse_name()
        if self.at("("):
            open_ = self.advance()
            self.enter()
            inner = self.parse_or()
            self.nesting -= 1
            close = self.expect(")", "to close '('")
            # The node spans its parentheses, so that messages quote "(a || b)" whole.
            return dataclasses.replace(inner, start=open_.start, end=close.end,
                                       text=self.text_of(open_.start, close.end))
        if self.at("["):
            open_ = self.advance()
            self.enter()
            items: list[ex.Node] = []
            if not self.at("]"):
                items.append(self.parse_or())
                while self.at(","):
                    self.advance()
                    if self.at("]"):
                        break  # a trailing comma is fine
                    items.append(self.parse_or())
            self.nesting -= 1
            close = self.expect("]", "to close the list")
            return self.node(ex.ListLit, open_.start, close.end, items=tuple(items))
        if tok.kind is Kind.EOF:
            raise self.error("expression ends too early: expected a value")
        raise self.error(f"expected a value, found {tok.describe()}")

    def parse_name(self) -> ex.Node:
        tok = self.advance()
        name = tok.text
        if name in _KEYWORDS:
            return self.node(ex.Literal, tok.start, tok.end, value=_KEYWORDS[name])
        if name == "in":
            raise self.error("expected a value, found 'in'", tok)
        if self.at("("):
            if name == "has":
                args, close = self.parse_args("of has()")
                if len(args) != 1:
                    raise ParseError(ExpressionProblem(
                        tok.start, PARSE, f"has() takes 1 argument, found {len(args)}"
                    ))
                return self.node(ex.Has, tok.start, close.end, path=args[0])
            args, close = self.parse_args(f"of {name}()")
            if name not in GLOBALS:
                self.problems.append(ExpressionProblem(
                    tok.start, UNKNOWN_NAME, f"unknown function '{name}'{_suggest_global(name)}"
                ))
            return self.node(ex.Call, tok.start, close.end, name=name, args=tuple(args))
        if name in self.scope:
            return self.node(ex.Var, tok.start, tok.end, name=name)
        if name not in ex.ROOTS:
            self.problems.append(ExpressionProblem(
                tok.start, UNKNOWN_NAME,
                f"unknown name '{name}': expressions start from {_ROOTS_TEXT}",
            ))
        return self.node(ex.Root, tok.start, tok.end, name=name)


_ROOTS_TEXT = ", ".join(ex.ROOTS[:-1]) + " or " + ex.ROOTS[-1]


def _is_number(value: object) -> bool:
    return numbers.is_number(value)


def _suggest_method(name: str) -> str:
    if name in GLOBALS:
        return f"; {name}() is a function: write {name}(x)"
    return _suggest(name, sorted(set(METHODS) | set(MACROS)))


def _suggest_global(name: str) -> str:
    if name in METHODS:
        return f"; {name}() is a method: write x.{name}(...)"
    return _suggest(name, sorted({*GLOBALS, *SPECIAL_FUNCTIONS}))


def _suggest(name: str, known: list[str]) -> str:
    """``; did you mean 'upper'?`` for the closest known name (case aside), else the list."""
    by_case = [k for k in known if k.lower() == name.lower()]
    close = by_case or difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f" (known: {', '.join(known)})"


def _too_deep(node: ex.Node) -> ex.Node | None:
    """The first node below MAX_DEPTH levels, or None; iterative, so deep trees are safe."""
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > MAX_DEPTH:
            return current
        stack.extend((child, depth + 1) for child in current.children())
    return None
