"""Static checks of a parsed expression: arity, operand types, regex literals, paths.

Runs after the parser (which already reported unknown names) and before any back end.
Every node gets a static type (:mod:`types`); an operation whose operands cannot have a type
it accepts is reported at the operation, with what was expected and what was found. The
result's ``types`` map is used by the generator to leave out run-time type guards where
the type is already certain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from veto_opa.translators import expressions as ex
from veto_opa.translators.diagnostics import ALWAYS_ERROR, ARITY, PARSE, TYPE, ExpressionProblem
from veto_opa.translators.functions import (
    ARRAY, BOOLEAN, GLOBALS, METHODS, NULL, NUMBER, OBJECT, STRING, Function, regex_problem,
)
from veto_opa.translators.types import (
    ANY, T_ARRAY, T_BOOLEAN, T_NUMBER, T_OBJECT, T_STRING, Type, describe, expected, of_value,
)

ROOT_TYPES: dict[str, Type] = {
    "args": T_OBJECT,        # guard() refuses arguments that are not a JSON object
    "context": T_OBJECT,
    "tool": T_STRING,
    "model": frozenset({STRING, "null"}),
    "facts": T_OBJECT,       # argument -> fact, computed by the runtime (veto_opa.facts)
}


@dataclass
class Checked:
    """The outcome of checking one expression."""

    node: ex.Node
    types: dict[ex.Node, Type] = field(default_factory=dict)
    problems: list[ExpressionProblem] = field(default_factory=list)
    warnings: list[ExpressionProblem] = field(default_factory=list)

    def type_of(self, node: ex.Node) -> Type:
        return self.types.get(node, ANY)


def check(node: ex.Node, *, condition: bool = True) -> Checked:
    """Check an expression; with ``condition`` its value must be able to be a boolean."""
    checker = _Checker()
    result = Checked(node, checker.types, checker.problems, checker.warnings)
    t = checker.visit(node, {})
    if condition and BOOLEAN not in t:
        checker.problem(node, TYPE, f"a condition must be a boolean, found {describe(t)}")
    return result


class _Checker:
    def __init__(self) -> None:
        self.types: dict[ex.Node, Type] = {}
        self.problems: list[ExpressionProblem] = []
        self.warnings: list[ExpressionProblem] = []

    def problem(self, node: ex.Node, code: str, message: str) -> None:
        self.problems.append(ExpressionProblem(node.start, code, message))

    def always_error(self, node: ex.Node, what: str) -> None:
        """Warn of an operation that errs whatever the input: a deny or require_approval rule
        with it always applies, an allow rule never does."""
        self.warnings.append(ExpressionProblem(
            node.start, ALWAYS_ERROR,
            f"{node.text}: {what}, which is always an error (never true or false)"))

    def visit(self, node: ex.Node, scope: dict[str, Type]) -> Type:
        t = _HANDLERS[node.key](self, node, scope)
        self.types[node] = t
        return t

    def need(self, node: ex.Node, t: Type, accepted: Type, what: str) -> bool:
        """Report ``node`` unless its type ``t`` meets ``accepted``."""
        if t & accepted:
            return True
        self.problem(node, TYPE, f"{what} needs {expected(accepted)}, found {describe(t)} "
                                 f"({node.text})")
        return False

    # -- handlers, one per node key --------------------------------------------------

    def literal_type(self, node: ex.Literal, scope: dict[str, Type]) -> Type:
        return of_value(node.value)

    def list_type(self, node: ex.ListLit, scope: dict[str, Type]) -> Type:
        for item in node.items:
            self.visit(item, scope)
        return T_ARRAY

    def root_type(self, node: ex.Root, scope: dict[str, Type]) -> Type:
        return ROOT_TYPES.get(node.name, ANY)

    def var_type(self, node: ex.Var, scope: dict[str, Type]) -> Type:
        return scope.get(node.name, ANY)

    def field_type(self, node: ex.Field, scope: dict[str, Type]) -> Type:
        t = self.visit(node.target, scope)
        if OBJECT not in t:
            self.problem(node, TYPE, f"cannot read field {node.name!r} of {node.target.text}: "
                                     f"it is {describe(t)}, not an object")
        return ANY

    def index_type(self, node: ex.Index, scope: dict[str, Type]) -> Type:
        t = self.visit(node.target, scope)
        it = self.visit(node.index, scope)
        if not t & frozenset({ARRAY, OBJECT}):
            self.problem(node, TYPE, f"cannot index {node.target.text}: it is {describe(t)}, "
                                     "not an array or object")
        elif not it & frozenset({NUMBER, STRING}):
            self.problem(node.index, TYPE, f"an index must be a number or a string, found "
                                           f"{describe(it)}")
        if isinstance(node.target, ex.ListLit) and node.target.items:
            return frozenset().union(*(self.types[i] for i in node.target.items))
        return ANY

    def not_type(self, node: ex.Not, scope: dict[str, Type]) -> Type:
        t = self.visit(node.operand, scope)
        self.need(node.operand, t, T_BOOLEAN, "'!'")
        return T_BOOLEAN

    def neg_type(self, node: ex.Neg, scope: dict[str, Type]) -> Type:
        t = self.visit(node.operand, scope)
        self.need(node.operand, t, T_NUMBER, "'-'")
        return T_NUMBER

    def compare_type(self, node: ex.Compare, scope: dict[str, Type]) -> Type:
        lt = self.visit(node.left, scope)
        rt = self.visit(node.right, scope)
        if node.op not in ("==", "!="):
            ordered = frozenset({NUMBER, STRING})
            if not (lt & rt & ordered):
                self.problem(node, TYPE, f"{node.text}: {node.op!r} compares two numbers or two "
                                         f"strings, found {describe(lt)} and {describe(rt)}")
        elif not (lt & rt) and NULL not in lt | rt:
            # Values of different JSON types do not compare (only null compares with all).
            self.always_error(node, f"compares {describe(lt)} with {describe(rt)}")
        return T_BOOLEAN

    def in_type(self, node: ex.In, scope: dict[str, Type]) -> Type:
        it = self.visit(node.item, scope)
        ct = self.visit(node.collection, scope)
        if not self.need(node.collection, ct, frozenset({ARRAY, OBJECT}), "'in'"):
            return T_BOOLEAN
        elements = self._element_types(node.collection)
        if elements and not it & elements:
            self.always_error(node, f"looks for {describe(it)} in a list of {describe(elements)}")
        elif ct == T_OBJECT and STRING not in it:
            self.always_error(node, f"looks for {describe(it)} among object keys, which are "
                                    "strings")
        return T_BOOLEAN

    def _element_types(self, node: ex.Node) -> Type | None:
        """The types of a list literal's items, when each has one type."""
        if not isinstance(node, ex.ListLit):
            return None
        types = [self.types[i] for i in node.items]
        if not all(len(t) == 1 for t in types):
            return None
        return frozenset().union(*types)

    def arith_type(self, node: ex.Arith, scope: dict[str, Type]) -> Type:
        lt = self.visit(node.left, scope)
        rt = self.visit(node.right, scope)
        accepted = frozenset({NUMBER, STRING, ARRAY}) if node.op == "+" else T_NUMBER
        common = lt & rt & accepted
        if not common:
            self.problem(node, TYPE, f"{node.text}: cannot apply {node.op!r} to {describe(lt)} "
                                     f"and {describe(rt)}")
            return accepted
        return common

    def and_type(self, node: ex.And, scope: dict[str, Type]) -> Type:
        return self._logical(node, "'&&'", scope)

    def or_type(self, node: ex.Or, scope: dict[str, Type]) -> Type:
        return self._logical(node, "'||'", scope)

    def _logical(self, node: ex.And | ex.Or, op: str, scope: dict[str, Type]) -> Type:
        for side in (node.left, node.right):
            t = self.visit(side, scope)
            if BOOLEAN not in t:
                self.problem(side, TYPE, f"{op} needs boolean operands, found {describe(t)} "
                                         f"({side.text})")
        return T_BOOLEAN

    def has_type(self, node: ex.Has, scope: dict[str, Type]) -> Type:
        if not isinstance(node.path, (ex.Field, ex.Index)):
            self.problem(node.path, PARSE, "has() needs a field path such as has(args.name), "
                                           f"found {node.path.text}")
        self.visit(node.path, scope)
        return T_BOOLEAN

    def call_type(self, node: ex.Call, scope: dict[str, Type]) -> Type:
        types = [self.visit(a, scope) for a in node.args]
        fn = GLOBALS.get(node.name)
        if fn is None:
            return ANY  # reported by the parser
        return self._apply(fn, node, list(node.args), types)

    def method_type(self, node: ex.Method, scope: dict[str, Type]) -> Type:
        operands = [node.target, *node.args]
        types = [self.visit(o, scope) for o in operands]
        fn = METHODS.get(node.name)
        if fn is None:
            return ANY  # reported by the parser
        return self._apply(fn, node, operands, types)

    def _apply(self, fn: Function, node: ex.Node, operands: list[ex.Node],
               types: list[Type]) -> Type:
        if len(operands) != len(fn.operands):
            given = len(operands) - (1 if fn.method else 0)
            plural = "argument" if fn.arity == 1 else "arguments"
            at = getattr(node, "name_start", node.start)
            self.problems.append(ExpressionProblem(at, ARITY, f"{fn.name}() takes {fn.arity} {plural}, found {given}"))
            return frozenset({fn.result})
        for operand, t, accepted in zip(operands, types, fn.operands):
            if not self.need(operand, t, frozenset(accepted), f"{fn.name}()"):
                break
        if fn.name == "matches":
            pattern = operands[1]
            if isinstance(pattern, ex.Literal) and isinstance(pattern.value, str):
                problem = regex_problem(pattern.value)
                if problem:
                    self.problem(pattern, TYPE,
                                 f"invalid regular expression {pattern.text}: {problem}")
        return frozenset({fn.result})

    def macro_type(self, node: ex.Macro, scope: dict[str, Type]) -> Type:
        t = self.visit(node.target, scope)
        self.need(node.target, t, T_ARRAY, f"{node.name}()")
        element: Type = ANY
        if isinstance(node.target, ex.ListLit) and node.target.items:
            element = frozenset().union(*(self.types[i] for i in node.target.items))
        bt = self.visit(node.body, {**scope, node.var: element})
        if BOOLEAN not in bt:
            self.problem(node.body, TYPE, f"the condition of {node.name}() must be a boolean, "
                                          f"found {describe(bt)}")
        return T_BOOLEAN


# One handler per node key, built once (unbound: a table of bound methods on each checker
# would make a reference cycle for the garbage collector to find).
_HANDLERS: dict[str, Callable[[_Checker, Any, dict[str, Type]], Type]] = {
    cls.key: getattr(_Checker, f"{cls.key}_type") for cls in ex.NODE_TYPES}
