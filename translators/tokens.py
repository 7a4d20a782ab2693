"""Tokenizer for ``when`` expressions.

Every token carries its kind, its source text, its decoded value (for literals) and its
start and end character offsets in the expression, from which the policy loader derives
``file:line:col``. Newlines are whitespace.
"""

from __future__ import annotations

import enum
import re
from decimal import Decimal
from typing import Any, NamedTuple

from veto_opa.translators.diagnostics import PARSE, ExpressionProblem
from veto_opa.translators.numbers import number

_MAX_NUMBER_CHARS = 400
"""Longest number literal: enough for any float, short of making big-number arithmetic slow."""


class Kind(enum.Enum):
    IDENT = "identifier"
    INT = "integer"
    FLOAT = "number"
    STRING = "string"
    OP = "operator"
    EOF = "end of expression"


class Token(NamedTuple):
    """One token: its kind, source text, offsets, and decoded value for literals."""

    kind: Kind
    text: str
    start: int
    end: int
    value: Any = None

    def describe(self) -> str:
        """How an error message names this token: ``')'``, ``'args'``, ``end of expression``."""
        if self.kind is Kind.EOF:
            return "end of expression"
        return repr(self.text) if len(self.text) <= 30 else repr(self.text[:27] + "...")


# Longest first, so that '==' wins over '='.
OPERATORS = (
    "||", "&&", "==", "!=", "<=", ">=",
    "<", ">", "+", "-", "*", "/", "%", "!", "(", ")", "[", "]", ".", ",",
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "/": "/"}
_IDENT_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_DIGITS = set("0123456789")


class TokenizeError(Exception):
    def __init__(self, problem: ExpressionProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


# The common tokens in one pattern: whitespace, names, operators (longest first, so that
# '==' wins over '='), and strings without escapes. Numbers, strings with escapes or a
# newline, and every error go through the character-by-character code below.
_COMMON = re.compile(
    r"(?P<space>[ \t\r\n\f\v]+)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>" + "|".join(re.escape(op) for op in OPERATORS) + ")"
    r"""|(?P<string>"[^"\\\n]*"|'[^'\\\n]*')""")


def tokenize(text: str) -> list[Token]:
    """Split an expression into tokens, ending with one EOF token.

    Raises:
        TokenizeError: on the first character that cannot start a token, an unterminated
            string or a bad escape; it names the offset.
    """
    tokens: list[Token] = []
    i, n = 0, len(text)
    match = _COMMON.match
    while i < n:
        m = match(text, i)
        if m is not None:
            kind, j = m.lastgroup, m.end()
            if kind == "ident":
                tokens.append(Token(Kind.IDENT, m.group(), i, j))
            elif kind == "op":
                tokens.append(Token(Kind.OP, m.group(), i, j))
            elif kind == "string":
                raw = m.group()
                tokens.append(Token(Kind.STRING, raw, i, j, raw[1:-1]))
            i = j
            continue
        c = text[i]
        if c in _DIGITS:
            i = _number(text, i, tokens)
        elif c in "'\"":
            i = _string(text, i, tokens)
        else:
            if c == "=":
                msg = "unexpected '=': use '==' to compare"
            elif c in "&|":
                msg = f"unexpected {c!r}: use '{c}{c}'"
            else:
                msg = f"unexpected character {c!r}"
            raise TokenizeError(ExpressionProblem(i, PARSE, msg))
    tokens.append(Token(Kind.EOF, "", n, n))
    return tokens


def _number(text: str, i: int, tokens: list[Token]) -> int:
    n = len(text)
    j = i
    while j < n and text[j] in _DIGITS:
        j += 1
    is_float = False
    if j + 1 < n and text[j] == "." and text[j + 1] in _DIGITS:
        is_float = True
        j += 1
        while j < n and text[j] in _DIGITS:
            j += 1
    if j < n and text[j] in "eE":
        k = j + 1
        if k < n and text[k] in "+-":
            k += 1
        if k < n and text[k] in _DIGITS:
            is_float = True
            j = k
            while j < n and text[j] in _DIGITS:
                j += 1
    if j < n and (text[j] in _IDENT_START):
        raise TokenizeError(
            ExpressionProblem(j, PARSE, f"unexpected {text[j]!r} after number {text[i:j]!r}")
        )
    raw = text[i:j]
    # Numbers are exact decimals, as OPA reads them (0.1 is 1/10, not the nearest float);
    # beyond a float's range OPA's arithmetic overflows, so such literals are refused.
    if len(raw) > _MAX_NUMBER_CHARS or float(raw) in (float("inf"), float("-inf")):
        raise TokenizeError(ExpressionProblem(i, PARSE, f"number {raw[:40]} is too large"))
    if is_float:
        tokens.append(Token(Kind.FLOAT, raw, i, j, number(Decimal(raw))))
    else:
        tokens.append(Token(Kind.INT, raw, i, j, int(raw)))
    return j


def _string(text: str, i: int, tokens: list[Token]) -> int:
    quote = text[i]
    n = len(text)
    j = i + 1
    out: list[str] = []
    while True:
        if j >= n:
            raise TokenizeError(ExpressionProblem(i, PARSE, "unterminated string"))
        c = text[j]
        if c == quote:
            j += 1
            break
        if c == "\n":
            raise TokenizeError(
                ExpressionProblem(i, PARSE, "unterminated string: a newline ends it")
            )
        if c == "\\":
            if j + 1 >= n:
                raise TokenizeError(ExpressionProblem(i, PARSE, "unterminated string"))
            e = text[j + 1]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                j += 2
            elif e == "u":
                digits = text[j + 2 : j + 6]
                if len(digits) != 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                    raise TokenizeError(
                        ExpressionProblem(j, PARSE, "bad escape: \\u needs four hex digits")
                    )
                code = int(digits, 16)
                j += 6
                if 0xD800 <= code <= 0xDBFF and text.startswith("\\u", j):
                    low = text[j + 2 : j + 6]
                    if len(low) == 4 and all(d in "0123456789abcdefABCDEF" for d in low):
                        lo = int(low, 16)
                        if 0xDC00 <= lo <= 0xDFFF:
                            code = 0x10000 + ((code - 0xD800) << 10) + (lo - 0xDC00)
                            j += 6
                if 0xD800 <= code <= 0xDFFF:
                    raise TokenizeError(
                        ExpressionProblem(j - 6, PARSE, "bad escape: lone surrogate")
                    )
                out.append(chr(code))
            else:
                raise TokenizeError(ExpressionProblem(
                    j, PARSE, f"bad escape '\\{e}' in string: write '\\\\{e}' for a backslash "
                              f"followed by {e!r} (as in regular expressions)"))
        else:
            out.append(c)
            j += 1
    tokens.append(Token(Kind.STRING, text[i:j], i, j, "".join(out)))
    return j
