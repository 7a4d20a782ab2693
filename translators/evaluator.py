"""The reference evaluator: the exact semantics of ``when`` expressions, in Python.

It is the oracle the generated Rego is judged against: on every case of the semantics
corpus and of a large random corpus, OPA evaluating the generated Rego and this evaluator
must agree on true / false / error, and on the error detail.

Every sub-expression yields a JSON value or an :class:`Err` whose ``detail`` says what was
missing or ill-typed. Errors propagate from the leftmost erroring operand, except through
``&&`` and ``||``, which absorb them as CEL does: ``false && error`` is false and
``true || error`` is true, whichever side errs. ``has(path)`` never errs.

The detail texts are defined once, in :data:`MESSAGES`; the Rego of :mod:`details` builds
the same strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from veto_opa.translators import expressions as ex
from veto_opa.translators import numbers
from veto_opa.translators.functions import GLOBALS, METHODS, Function, compile_regex
from veto_opa.translators.types import type_name

MESSAGES = {
    "missing": "{text} is missing",
    "fact": "{target} could not be computed: {detail}",
    "not_object": "{target} is not an object (found {type})",
    "not_indexable": "{target} is not an array or object (found {type})",
    "bad_index": "{text}: an array index must be a whole number (found {type})",
    "bad_key": "{text}: an object key must be a string (found {type})",
    "out_of_range": "{text}: index out of range (size {size})",
    "operands": "{text}: {name}() cannot take {types}",
    "bad_regex": "{text}: invalid regular expression",
    "order": "{text}: cannot compare {left} with {right}",
    "not_collection": "{text}: 'in' needs an array or object on the right (found {type})",
    "member": "{text}: the list holds {types}, not {type}",
    "key": "{text}: object keys are strings, not {type}",
    "arith": "{text}: cannot apply '{op}' to {left} and {right}",
    "division_by_zero": "{text}: division by zero",
    "modulo": "{text}: '%' needs whole numbers",
    "negate": "{text}: cannot negate {type}",
    "not_boolean": "{text} is not a boolean (found {type})",
    "not_array": "{text}: {name}() needs an array (found {type})",
}


@dataclass(frozen=True)
class Err:
    """An evaluation error; ``detail`` names what was missing or ill-typed."""

    detail: str


def error(kind: str, **fields: Any) -> Err:
    return Err(MESSAGES[kind].format(**fields))


def condition(node: ex.Node, input: dict[str, Any]) -> bool | Err:
    """Evaluate a ``when`` condition: True, False, or an Err (also when not a boolean).

    Numbers in ``input`` are taken as OPA reads their JSON text: a float is its shortest
    decimal (``0.1`` is one tenth), never its binary value.
    """
    return _boolean(node, _Evaluator(numbers.exact(input)).eval(node, {}))


def evaluate(node: ex.Node, input: dict[str, Any]) -> Any:
    """Evaluate any expression to a JSON value (numbers exact) or an :class:`Err`."""
    return _Evaluator(numbers.exact(input)).eval(node, {})


def _boolean(node: ex.Node, value: Any) -> bool | Err:
    if isinstance(value, Err) or isinstance(value, bool):
        return value
    return error("not_boolean", text=node.text, type=type_name(value))


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: different types are unequal, ``1 == 1.0``."""
    ta, tb = type_name(a), type_name(b)
    if ta != tb:
        return False
    if ta == "array":
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if ta == "object":
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def is_whole(value: Any) -> bool:
    return type_name(value) == "number" and numbers.is_whole(value)


def _types(values: list[Any]) -> str:
    return ", ".join(type_name(v) for v in values)


class _Evaluator:
    def __init__(self, input: dict[str, Any]) -> None:
        self.input = input

    def eval(self, node: ex.Node, scope: dict[str, Any]) -> Any:
        return _HANDLERS[node.key](self, node, scope)

    def operands(self, nodes: tuple[ex.Node, ...] | list[ex.Node],
                 scope: dict[str, Any]) -> list[Any] | Err:
        """Evaluate left to right; the first error is the result."""
        values = []
        for node in nodes:
            value = self.eval(node, scope)
            if isinstance(value, Err):
                return value
            values.append(value)
        return values

    # -- handlers, one per node key --------------------------------------------------

    def literal_eval(self, node: ex.Literal, scope: dict[str, Any]) -> Any:
        return node.value

    def list_eval(self, node: ex.ListLit, scope: dict[str, Any]) -> Any:
        return self.operands(node.items, scope)

    def root_eval(self, node: ex.Root, scope: dict[str, Any]) -> Any:
        if node.name not in self.input:
            return error("missing", text=node.text)
        return self.input[node.name]

    def var_eval(self, node: ex.Var, scope: dict[str, Any]) -> Any:
        return scope[node.name]

    def field_eval(self, node: ex.Field, scope: dict[str, Any]) -> Any:
        target = self.eval(node.target, scope)
        if isinstance(target, Err):
            return target
        if not isinstance(target, dict):
            return error("not_object", target=node.target.text, type=type_name(target))
        if node.name not in target:
            if ex.reads_fact(node.target) and isinstance(target.get(ex.FACT_ERROR), str):
                return error("fact", target=node.target.text, detail=target[ex.FACT_ERROR])
            return error("missing", text=node.text)
        return target[node.name]

    def index_eval(self, node: ex.Index, scope: dict[str, Any]) -> Any:
        values = self.operands((node.target, node.index), scope)
        if isinstance(values, Err):
            return values
        target, index = values
        if isinstance(target, list):
            if not is_whole(index):
                return error("bad_index", text=node.text, type=type_name(index))
            i = int(index)
            if not 0 <= i < len(target):
                return error("out_of_range", text=node.text, size=len(target))
            return target[i]
        if isinstance(target, dict):
            if not isinstance(index, str):
                return error("bad_key", text=node.text, type=type_name(index))
            if index not in target:
                return error("missing", text=node.text)
            return target[index]
        return error("not_indexable", target=node.target.text, type=type_name(target))

    def not_eval(self, node: ex.Not, scope: dict[str, Any]) -> Any:
        value = self.eval(node.operand, scope)
        if isinstance(value, Err):
            return value
        if not isinstance(value, bool):
            return error("not_boolean", text=node.operand.text, type=type_name(value))
        return not value

    def neg_eval(self, node: ex.Neg, scope: dict[str, Any]) -> Any:
        value = self.eval(node.operand, scope)
        if isinstance(value, Err):
            return value
        if type_name(value) != "number":
            return error("negate", text=node.text, type=type_name(value))
        return numbers.subtract(0, value)   # what the generated Rego computes: 0 - x

    def compare_eval(self, node: ex.Compare, scope: dict[str, Any]) -> Any:
        values = self.operands((node.left, node.right), scope)
        if isinstance(values, Err):
            return values
        a, b = values
        ta, tb = type_name(a), type_name(b)
        if node.op in ("==", "!="):
            # Values of different JSON types are not compared (fail closed: a list given
            # where a string was expected must not make `== "kube-system"` quietly false);
            # null compares with anything.
            if ta != tb and "null" not in (ta, tb):
                return error("order", text=node.text, left=ta, right=tb)
            return json_equal(a, b) == (node.op == "==")
        if ta != tb or ta not in ("number", "string"):
            return error("order", text=node.text, left=ta, right=tb)
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[node.op]

    def in_eval(self, node: ex.In, scope: dict[str, Any]) -> Any:
        values = self.operands((node.item, node.collection), scope)
        if isinstance(values, Err):
            return values
        item, collection = values
        if isinstance(collection, list):
            # An item of a type that no element has is an error, as with ==, null included
            # (a null must not slip past `environments: [production]`); an empty list is
            # simply without the item.
            types = {type_name(e) for e in collection}
            if types and type_name(item) not in types:
                return error("member", text=node.text, types=", ".join(sorted(types)),
                             type=type_name(item))
            return any(json_equal(item, e) for e in collection)
        if isinstance(collection, dict):
            if not isinstance(item, str):
                return error("key", text=node.text, type=type_name(item))
            return item in collection
        return error("not_collection", text=node.text, type=type_name(collection))

    def arith_eval(self, node: ex.Arith, scope: dict[str, Any]) -> Any:
        values = self.operands((node.left, node.right), scope)
        if isinstance(values, Err):
            return values
        a, b = values
        ta, tb = type_name(a), type_name(b)
        if node.op == "+" and ta == tb and ta in ("string", "array"):
            return a + b
        if ta != "number" or tb != "number":
            return error("arith", text=node.text, op=node.op, left=ta, right=tb)
        if node.op in _ARITHMETIC:
            return _ARITHMETIC[node.op](a, b)
        if b == 0:
            return error("division_by_zero", text=node.text)
        if node.op == "/":
            return numbers.divide(a, b)
        if not (is_whole(a) and is_whole(b)):
            return error("modulo", text=node.text)
        return numbers.remainder(a, b)   # truncated, as Go (and OPA): the dividend's sign

    def and_eval(self, node: ex.And, scope: dict[str, Any]) -> Any:
        left = _boolean(node.left, self.eval(node.left, scope))
        right = _boolean(node.right, self.eval(node.right, scope))
        if left is False or right is False:
            return False
        if left is True and right is True:
            return True
        return left if isinstance(left, Err) else right

    def or_eval(self, node: ex.Or, scope: dict[str, Any]) -> Any:
        left = _boolean(node.left, self.eval(node.left, scope))
        right = _boolean(node.right, self.eval(node.right, scope))
        if left is True or right is True:
            return True
        if left is False and right is False:
            return False
        return left if isinstance(left, Err) else right

    def has_eval(self, node: ex.Has, scope: dict[str, Any]) -> Any:
        return not isinstance(self.eval(node.path, scope), Err)

    def call_eval(self, node: ex.Call, scope: dict[str, Any]) -> Any:
        return self._apply(GLOBALS[node.name], node, list(node.args), scope)

    def method_eval(self, node: ex.Method, scope: dict[str, Any]) -> Any:
        return self._apply(METHODS[node.name], node, [node.target, *node.args], scope)

    def _apply(self, fn: Function, node: ex.Node, operands: list[ex.Node],
               scope: dict[str, Any]) -> Any:
        values = self.operands(operands, scope)
        if isinstance(values, Err):
            return values
        if any(type_name(v) not in accepted for v, accepted in zip(values, fn.operands)):
            return error("operands", text=node.text, name=fn.name, types=_types(values))
        if fn.name == "matches":
            try:
                compile_regex(values[1])
            except Exception:
                return error("bad_regex", text=node.text)
        return fn.impl(*values)

    def macro_eval(self, node: ex.Macro, scope: dict[str, Any]) -> Any:
        target = self.eval(node.target, scope)
        if isinstance(target, Err):
            return target
        if not isinstance(target, list):
            return error("not_array", text=node.text, name=node.name, type=type_name(target))
        first_error: Err | None = None
        decisive = node.name == "exists"   # exists: any true decides; all: any false decides
        for element in target:
            result = _boolean(node.body, self.eval(node.body, {**scope, node.var: element}))
            if result is decisive:
                return decisive
            if isinstance(result, Err) and first_error is None:
                first_error = result
        return first_error if first_error is not None else not decisive


_ARITHMETIC = {"+": numbers.add, "-": numbers.subtract, "*": numbers.multiply}

# One handler per node key, built once (unbound: a table of bound methods on each evaluator
# would make a reference cycle for the garbage collector to find).
_HANDLERS: dict[str, Callable[[_Evaluator, Any, dict[str, Any]], Any]] = {
    cls.key: getattr(_Evaluator, f"{cls.key}_eval") for cls in ex.NODE_TYPES}
