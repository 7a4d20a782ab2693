"""The expression tree of ``when`` conditions.

Nodes are small frozen classes that list their children and carry the span of source text
they were parsed from (``start``/``end`` character offsets into the expression, and ``text``,
that span with runs of whitespace folded to one space, used in error details). ``key`` names
the node kind; every back end (checker, evaluator, Rego generator, error details) has one
handler per key.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

ROOTS = ("args", "context", "tool", "model", "facts")
"""The input roots; each is the member of that name of the OPA input document."""

FACT_ERROR = "error"
"""The field of a fact that its parser could not compute: ``{"error": why, "parser": ...}``."""


@dataclass(frozen=True, eq=False)
class Node:
    key: ClassVar[str] = "node"
    child_fields: ClassVar[tuple[str, ...]] = ()

    start: int = field(kw_only=True)
    end: int = field(kw_only=True)
    text: str = field(kw_only=True)

    def children(self) -> tuple[Node, ...]:
        """The child nodes, in source order."""
        found: list[Node] = []
        for name in self.child_fields:
            value = getattr(self, name)
            found.extend(value if isinstance(value, tuple) else (value,))
        return tuple(found)

    def walk(self) -> Iterator[Node]:
        """This node and all nodes below it, depth first, in source order."""
        yield self
        for child in self.children():
            yield from child.walk()


@dataclass(frozen=True, eq=False)
class Literal(Node):
    """A string, number, boolean or null literal."""

    key = "literal"
    value: Any


@dataclass(frozen=True, eq=False)
class ListLit(Node):
    """``[a, b, ...]``"""

    key = "list"
    child_fields = ("items",)
    items: tuple[Node, ...]


@dataclass(frozen=True, eq=False)
class Root(Node):
    """One of the input roots: ``args``, ``context``, ``tool``, ``model``."""

    key = "root"
    name: str


@dataclass(frozen=True, eq=False)
class Var(Node):
    """A variable bound by a list macro (``v`` in ``list.exists(v, v > 1)``)."""

    key = "var"
    name: str


@dataclass(frozen=True, eq=False)
class Field(Node):
    """``target.name`` and ``target["name"]`` with a literal string."""

    key = "field"
    child_fields = ("target",)
    target: Node
    name: str


@dataclass(frozen=True, eq=False)
class Index(Node):
    """``target[index]`` where the index is not a string literal."""

    key = "index"
    child_fields = ("target", "index")
    target: Node
    index: Node


@dataclass(frozen=True, eq=False)
class Not(Node):
    """``!operand``"""

    key = "not"
    child_fields = ("operand",)
    operand: Node


@dataclass(frozen=True, eq=False)
class Neg(Node):
    """``-operand`` (a negative number literal is folded into a Literal by the parser)."""

    key = "neg"
    child_fields = ("operand",)
    operand: Node


@dataclass(frozen=True, eq=False)
class Compare(Node):
    """``== != < <= > >=``"""

    key = "compare"
    child_fields = ("left", "right")
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, eq=False)
class In(Node):
    """``item in collection``: list membership or object key membership."""

    key = "in"
    child_fields = ("item", "collection")
    item: Node
    collection: Node


@dataclass(frozen=True, eq=False)
class Arith(Node):
    """``+ - * / %``"""

    key = "arith"
    child_fields = ("left", "right")
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, eq=False)
class And(Node):
    """``left && right`` with CEL's commutative error absorption."""

    key = "and"
    child_fields = ("left", "right")
    left: Node
    right: Node


@dataclass(frozen=True, eq=False)
class Or(Node):
    """``left || right`` with CEL's commutative error absorption."""

    key = "or"
    child_fields = ("left", "right")
    left: Node
    right: Node


@dataclass(frozen=True, eq=False)
class Call(Node):
    """A global function call other than ``has``: ``size(x)``, ``len(x)``."""

    key = "call"
    child_fields = ("args",)
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, eq=False)
class Has(Node):
    """``has(path)``: true if the path resolves; never an error."""

    key = "has"
    child_fields = ("path",)
    path: Node


@dataclass(frozen=True, eq=False)
class Method(Node):
    """``target.name(args...)``; ``name`` is the canonical name (aliases resolved)."""

    key = "method"
    child_fields = ("target", "args")
    target: Node
    name: str
    args: tuple[Node, ...]
    name_start: int = field(kw_only=True, default=-1)


@dataclass(frozen=True, eq=False)
class Macro(Node):
    """``target.exists(var, body)`` and ``target.all(var, body)``."""

    key = "macro"
    child_fields = ("target", "body")
    name: str
    target: Node
    var: str
    body: Node


NODE_TYPES: tuple[type[Node], ...] = (
    Literal, ListLit, Root, Var, Field, Index, Not, Neg, Compare, In, Arith, And, Or, Call,
    Has, Method, Macro,
)


def reads_fact(node: Node) -> bool:
    """Whether ``node`` is ``facts.<argument>``: reading a missing field of it names the
    fact's error, when it has one, instead of saying the field is missing."""
    return (isinstance(node, Field) and isinstance(node.target, Root)
            and node.target.name == "facts")
