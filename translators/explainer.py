"""Compilation of a condition into ``veto.lib.explain`` calls, for error details.

The fast path (:mod:`generator`) only knows that a condition is neither true nor false. This
second compilation computes the same three-valued result with errors carried as values
(``{"v": value}`` or ``{"e": detail}``) through the hand-written ``rego/veto/lib/explain.rego``,
which builds exactly the detail texts of the reference evaluator. It runs only for a rule
already known to be in error, so its cost does not matter; its layout does, since people read
it: terms are kept as a tree and laid out one argument per line when they do not fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from veto_opa.translators import expressions as ex
from veto_opa.translators import rego
from veto_opa.translators.functions import GLOBALS, METHODS, Function

WIDTH = 100


@dataclass(frozen=True)
class Call:
    """A Rego call in an explain term."""

    fn: str
    args: tuple[Term, ...]


@dataclass(frozen=True)
class Array:
    items: tuple[Term, ...]


Term = Union[str, Call, Array]


def render(term: Term, indent: int = 0) -> str:
    """A term on one line when it fits, else one argument per line, tab-indented."""
    flat = _flat(term)
    if isinstance(term, str) or indent * 4 + len(flat) <= WIDTH:
        return flat
    parts = term.args if isinstance(term, Call) else term.items
    pad = "\t" * (indent + 1)
    inner = "".join(f"{pad}{render(p, indent + 1)},\n" for p in parts)
    opening = f"{term.fn}(" if isinstance(term, Call) else "["
    closing = ")" if isinstance(term, Call) else "]"
    return f"{opening}\n{inner}{chr(9) * indent}{closing}"


def _flat(term: Term) -> str:
    if isinstance(term, str):
        return term
    if isinstance(term, Call):
        return f"{term.fn}({', '.join(_flat(a) for a in term.args)})"
    return f"[{', '.join(_flat(i) for i in term.items)}]"


def _call(fn: str, *args: Term) -> Call:
    return Call(f"explain.{fn}", args)


def _s(text: str) -> str:
    return rego.string(text)


class Explainer:
    """Builds the explain term of one rule's condition; macro bodies become helper
    functions named ``<prefix>_X<n>``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.helpers: list[str] = []
        self.n = 0
        self.handlers: dict[str, Callable[[ex.Node, dict[str, str]], Term]] = {
            cls.key: getattr(self, f"{cls.key}_explain") for cls in ex.NODE_TYPES
        }

    def detail(self, node: ex.Node, indent: int = 1) -> str:
        """The rendered term for the error detail of a whole condition."""
        condition = _call("condition", self.term(node, {}), _s(node.text))
        return render(_call("detail", condition), indent)

    def term(self, node: ex.Node, scope: dict[str, str]) -> Term:
        return self.handlers[node.key](node, scope)

    def _terms(self, nodes: tuple[ex.Node, ...] | list[ex.Node], scope: dict[str, str]) -> Array:
        return Array(tuple(self.term(n, scope) for n in nodes))

    # -- one handler per node key ------------------------------------------------------

    def literal_explain(self, node: ex.Literal, scope: dict[str, str]) -> Term:
        return f'{{"v": {rego.value(node.value)}}}'

    def list_explain(self, node: ex.ListLit, scope: dict[str, str]) -> Term:
        return _call("list_of", self._terms(node.items, scope))

    def root_explain(self, node: ex.Root, scope: dict[str, str]) -> Term:
        return _call("root", "input", _s(node.name))

    def var_explain(self, node: ex.Var, scope: dict[str, str]) -> Term:
        return f'{{"v": {scope[node.name]}}}'

    def field_explain(self, node: ex.Field, scope: dict[str, str]) -> Term:
        return _call("field", self.term(node.target, scope), _s(node.name), _s(node.text),
                     _s(node.target.text))

    def index_explain(self, node: ex.Index, scope: dict[str, str]) -> Term:
        return _call("index", self.term(node.target, scope), self.term(node.index, scope),
                     _s(node.text), _s(node.target.text))

    def not_explain(self, node: ex.Not, scope: dict[str, str]) -> Term:
        return _call("lnot", self.term(node.operand, scope), _s(node.operand.text))

    def neg_explain(self, node: ex.Neg, scope: dict[str, str]) -> Term:
        return _call("neg", self.term(node.operand, scope), _s(node.text))

    def compare_explain(self, node: ex.Compare, scope: dict[str, str]) -> Term:
        return _call("compare", _s(node.op), self.term(node.left, scope),
                     self.term(node.right, scope), _s(node.text))

    def in_explain(self, node: ex.In, scope: dict[str, str]) -> Term:
        return _call("member", self.term(node.item, scope), self.term(node.collection, scope),
                     _s(node.text))

    def arith_explain(self, node: ex.Arith, scope: dict[str, str]) -> Term:
        return _call("arith", _s(node.op), self.term(node.left, scope),
                     self.term(node.right, scope), _s(node.text))

    def and_explain(self, node: ex.And, scope: dict[str, str]) -> Term:
        return _call("land", self.term(node.left, scope), self.term(node.right, scope),
                     _s(node.left.text), _s(node.right.text))

    def or_explain(self, node: ex.Or, scope: dict[str, str]) -> Term:
        return _call("lor", self.term(node.left, scope), self.term(node.right, scope),
                     _s(node.left.text), _s(node.right.text))

    def has_explain(self, node: ex.Has, scope: dict[str, str]) -> Term:
        return _call("has", self.term(node.path, scope))

    def call_explain(self, node: ex.Call, scope: dict[str, str]) -> Term:
        return self._apply(GLOBALS[node.name], node, list(node.args), scope)

    def method_explain(self, node: ex.Method, scope: dict[str, str]) -> Term:
        return self._apply(METHODS[node.name], node, [node.target, *node.args], scope)

    def _apply(self, fn: Function, node: ex.Node, operands: list[ex.Node],
               scope: dict[str, str]) -> Term:
        return _call("call", _s(fn.explain), _s(fn.name), self._terms(operands, scope),
                     _s(node.text))

    def macro_explain(self, node: ex.Macro, scope: dict[str, str]) -> Term:
        params = list(scope.values())
        var = f"v_{node.var}"
        if var in params:
            var = f"v{len(params) + 1}_{node.var}"   # cannot clash: v_<name> never has a digit
        self.n += 1
        body_fn = f"{self.prefix}_X{self.n}"
        body = self.term(node.body, {**scope, node.var: var})
        self.helpers.append(f"{body_fn}({', '.join([*params, var])}) := {render(body)}")
        self.n += 1
        macro_fn = f"{self.prefix}_X{self.n}"
        head = f"{macro_fn}({', '.join(params)})" if params else macro_fn
        results = f"[{body_fn}({', '.join([*params, 'e'])}) | some e in t.v]"
        term = _call("macro", _s(node.name), "t", results, _s(node.text), _s(node.body.text))
        target = render(self.term(node.target, scope), 1)
        self.helpers.append(f"{head} := {render(term)} if {{\n\tt := {target}\n}}")
        return head
