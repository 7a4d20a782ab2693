"""Random ``when`` expressions and random inputs for the differential tests.

Expressions are generated as source text (so the parser is exercised too), mostly well
typed so that the checker accepts them, over input paths whose values the input generator
makes present, missing or of the wrong type. Everything is driven by one ``random.Random``,
so a failing corpus is reproduced from its seed.
"""

from __future__ import annotations

import json
import random
from typing import Any

STRINGS = [
    "", "a", "A", "abc", "ABC", "Drop Table x", "DROP TABLE", " padded ", "é", "É", "ß",
    "İ", "ǅ", "ᾳ", "\u00a0x\u00a0", "\x1cx", "1", "(", "a.b", "a*", "日本", "😀", "select 1",
    "SELECT 1", "production", "x\ny", 'q"uote', "back\\slash",
]
PATTERNS = ["^a", "b$", "[0-9]+", "(?i)abc", "é", ".", "^$", "a|b", "\\d", "(?i)drop\\s+table"]
NUMBERS = [0, 1, 2, 3, -1, -3, 5, 10, 0.5, 2.0, -1.5, 0.1, 0.2, 0.7, 1e20, 1e-7,
           12345678901234567890123]
# Number literals as written in expressions: decimals that binary floats get wrong, more
# digits than a float holds, exponents, whole numbers written as fractions.
NUMBER_LITERALS = ["0", "1", "2", "3", "5", "10", "0.1", "0.2", "0.3", "1.5", "3.0", "2.5e3",
                   "1e-7", "0.30000000000000000001", "12345678901234567890123", "1e20"]
PATHS = [
    "args.a", "args.s", "args.n", "args.m", "args.l", "args.o", "args.o.k", "args.o.s",
    'args["s"]', "args.l[0]", "args.l[1]", "args.l[args.n]", "args.o[args.s]",
    "context.env", "context.role", "context.o.k", "tool", "model",
]


def lit_string(r: random.Random) -> str:
    return json.dumps(r.choice(STRINGS), ensure_ascii=r.random() < 0.5)


class ExpressionGenerator:
    """Generates expression text; ``depth`` bounds the nesting."""

    def __init__(self, r: random.Random) -> None:
        self.r = r
        self.vars: list[str] = []

    def condition(self, depth: int = 4) -> str:
        return self.boolean(depth)

    # -- by result type ---------------------------------------------------------------

    def boolean(self, depth: int) -> str:
        r = self.r
        if depth <= 0:
            return r.choice([self.compare, self.membership, self.predicate, self.has,
                             self.path_as_boolean])(0)
        choice = r.randrange(12)
        if choice < 2:
            return f"{self.boolean(depth - 1)} && {self.boolean(depth - 1)}"
        if choice < 4:
            return f"{self.boolean(depth - 1)} || {self.boolean(depth - 1)}"
        if choice == 4:
            return f"!({self.boolean(depth - 1)})"
        if choice == 5:
            return f"({self.boolean(depth - 1)})"
        if choice == 6:
            return self.macro(depth)
        return r.choice([self.compare, self.membership, self.predicate, self.has,
                         self.path_as_boolean, self.literal_boolean])(depth - 1)

    def compare(self, depth: int) -> str:
        r = self.r
        op = r.choice(["==", "!=", "<", "<=", ">", ">="])
        if op in ("==", "!="):
            return f"{self.value(depth)} {op} {self.value(depth)}"
        kind = r.choice(["number", "string", "any"])
        left = self.number(depth) if kind == "number" else (
            self.string(depth) if kind == "string" else self.path())
        right = self.number(depth) if kind == "number" else (
            self.string(depth) if kind == "string" else self.value(depth))
        if kind == "any" and r.random() < 0.5:
            left, right = right, left
        return f"{left} {op} {right}"

    def membership(self, depth: int) -> str:
        r = self.r
        collection = r.choice([self.list_literal(), self.path(), self.path(), "args", "context"])
        return f"{self.value(depth)} in {collection}"

    def predicate(self, depth: int) -> str:
        r = self.r
        method = r.choice(["contains", "startsWith", "startswith", "endsWith", "endswith",
                           "matches"])
        target = self.string(depth)
        if method == "matches":
            arg = json.dumps(r.choice(PATTERNS)) if r.random() < 0.8 else self.path()
        else:
            arg = self.string(depth)
        return f"{target}.{method}({arg})"

    def has(self, depth: int) -> str:
        return f"has({self.r.choice([p for p in PATHS if '.' in p or '[' in p])})"

    def path_as_boolean(self, depth: int) -> str:
        return self.r.choice(["args.b", "args.a", "context.flag", "args.o.k"])

    def literal_boolean(self, depth: int) -> str:
        return self.r.choice(["true", "false"])

    def macro(self, depth: int) -> str:
        r = self.r
        name = r.choice(["exists", "all"])
        var = r.choice(["v", "x", "item"])
        target = r.choice(["args.l", "args.a", "args.o.s", self.list_literal()])
        self.vars.append(var)
        body = r.choice([
            lambda: f"{var} == {self.value(0)}",
            lambda: f"{var} > {self.number(0)}",
            lambda: f"{var}.upper().startsWith({lit_string(r)})",
            lambda: f"{var} in {self.list_literal()}",
            lambda: f"{var}.k == {self.value(0)}",
            lambda: f"({self.boolean(max(depth - 2, 0))}) || {var} == 1",
            lambda: self.macro(depth - 2) if depth > 2 else f"{var} != null",
        ])()
        self.vars.pop()
        return f"{target}.{name}({var}, {body})"

    def value(self, depth: int) -> str:
        r = self.r
        return r.choice([self.path, self.path, self.literal, lambda: self.string(depth),
                         lambda: self.number(depth)])() if depth > 0 else r.choice(
            [self.path, self.literal])()

    def string(self, depth: int) -> str:
        r = self.r
        if depth <= 0 or r.random() < 0.4:
            return r.choice([self.path, lambda: lit_string(r)])()
        inner = self.string(depth - 1)
        choice = r.randrange(4)
        if choice == 0:
            return f"{inner}.upper()"
        if choice == 1:
            return f"{inner}.lower()"
        if choice == 2:
            return f"{inner}.trim()"
        return f"{inner} + {self.string(depth - 1)}"

    def number(self, depth: int) -> str:
        r = self.r
        if depth <= 0 or r.random() < 0.4:
            return r.choice([self.path, lambda: r.choice(NUMBER_LITERALS)])()
        choice = r.randrange(6)
        if choice == 0:
            return f"size({self.r.choice([self.path(), self.string(0), self.list_literal()])})"
        if choice == 1:
            return f"{self.string(depth - 1)}.size()"
        if choice == 2:
            return f"len({self.path()})"
        if choice == 3:
            return f"-{self.number(depth - 1)}"
        op = r.choice(["+", "-", "*", "/", "%"])
        return f"({self.number(depth - 1)} {op} {self.number(depth - 1)})"

    def path(self) -> str:
        if self.vars and self.r.random() < 0.3:
            return self.r.choice(self.vars)
        return self.r.choice(PATHS)

    def literal(self) -> str:
        r = self.r
        return r.choice([lambda: lit_string(r), lambda: r.choice(NUMBER_LITERALS),
                         lambda: r.choice(["true", "false", "null"]), self.list_literal])()

    def list_literal(self) -> str:
        r = self.r
        items = [r.choice([lambda: lit_string(r), lambda: r.choice(NUMBER_LITERALS),
                           lambda: r.choice(["true", "null"])])() for _ in range(r.randrange(4))]
        return "[" + ", ".join(items) + "]"


def random_value(r: random.Random, depth: int = 2) -> Any:
    choice = r.randrange(10 if depth > 0 else 7)
    if choice == 0:
        return None
    if choice == 1:
        return r.random() < 0.5
    if choice in (2, 3):
        return r.choice(NUMBERS)
    if choice in (4, 5, 6):
        return r.choice(STRINGS)
    if choice in (7, 8):
        return [random_value(r, depth - 1) for _ in range(r.randrange(4))]
    return {k: random_value(r, depth - 1) for k in r.sample(["k", "s", "n", "x"], r.randrange(4))}


def random_input(r: random.Random) -> dict[str, Any]:
    """An OPA input document: each field present with the expected type, missing, or not."""
    def maybe(key: str, make: Any, into: dict[str, Any]) -> None:
        roll = r.random()
        if roll < 0.65:
            into[key] = make()
        elif roll < 0.85:
            into[key] = random_value(r)
        # else: missing

    args: dict[str, Any] = {}
    maybe("a", lambda: random_value(r), args)
    maybe("s", lambda: r.choice(STRINGS), args)
    maybe("n", lambda: r.choice([0, 1, 2, 3, -1, 5]), args)
    maybe("m", lambda: r.choice(NUMBERS), args)
    maybe("b", lambda: r.random() < 0.5, args)
    maybe("l", lambda: [r.choice([*STRINGS[:8], 0, 1, 2, 5, {"k": 1}])
                        for _ in range(r.randrange(5))], args)
    maybe("o", lambda: {k: r.choice([*STRINGS[:6], 1, True, None])
                        for k in r.sample(["k", "s", "a", "ABC"], r.randrange(4))}, args)
    context: dict[str, Any] = {}
    maybe("env", lambda: r.choice(["production", "staging"]), context)
    maybe("role", lambda: r.choice(["viewer", "sre"]), context)
    maybe("flag", lambda: r.random() < 0.5, context)
    maybe("o", lambda: {"k": r.choice(NUMBERS)}, context)
    input: dict[str, Any] = {
        "tool": r.choice(["execute_sql", "rotate_secret", "x"]),
        "args": args,
        "context": context,
        "model": r.choice([None, "mistral-large-latest"]),
        "call_id": None,
    }
    # Rarely, an input document that breaks the guard's contract: a root missing or of
    # another type (the details must still name it as the reference evaluator does).
    for root in ("args", "context"):
        roll = r.random()
        if roll < 0.02:
            del input[root]
        elif roll < 0.04:
            input[root] = r.choice(["text", [1], None, 3])
    return input
