"""Rego generation for ``when`` conditions.

Each rule's condition compiles to two Rego bodies: one that succeeds exactly when the
condition is *true* and one that succeeds exactly when it is *false*; when neither does, the
condition is an *error* (three-valued semantics, see DESIGN.md). Disjunctions become helper
rules with one body per alternative; values that might be missing or ill-typed are guarded
(``is_string(x)``) before a builtin sees them, since OPA raises on ill-typed builtin calls.

What was missing or ill-typed when a condition is an error is compiled from the same tree
by :mod:`details`.

The reference evaluator (:mod:`evaluator`) is the oracle for all of this: the tests evaluate
both on the same corpora and compare true / false / error and the detail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from veto_opa.translators import evaluator
from veto_opa.translators import expressions as ex
from veto_opa.translators import rego
from veto_opa.translators.checker import Checked
from veto_opa.translators.functions import (
    ARRAY, BOOLEAN, GLOBALS, METHODS, NULL, NUMBER, OBJECT, STRING, Function,
)
from veto_opa.translators.types import ANY, Type, type_name

Stmts = list[str]

MAX_PAIRINGS = 4
"""Most bodies an ``&&`` of ``||`` (or the negation of an ``||`` of ``&&``) is distributed
into; beyond, the alternatives go into helper rules."""


class Val(NamedTuple):
    """A compiled value: statements that succeed when it is not an error, and its term.

    ``solid`` terms are variables or literals: always defined once the statements ran, so
    they may appear under ``not`` and be extended into refs.
    """

    stmts: Stmts
    term: str
    solid: bool = False
    ref: bool = False      # a variable or a ref into input: can be extended with .x / [i]


@dataclass
class Scope:
    """Macro variables in scope: YAML name -> Rego variable, in binding order."""

    names: dict[str, str] = field(default_factory=dict)

    def bind(self, name: str, rego_var: str) -> Scope:
        return Scope({**self.names, name: rego_var})

    @property
    def params(self) -> list[str]:
        return list(self.names.values())


_VARIABLE = object()   # marks a node that depends on the input
_SHAREABLE = (ex.Method, ex.Call, ex.Arith, ex.Neg)

_GUARDS = {
    frozenset({STRING}): "is_string({})",
    frozenset({NUMBER}): "is_number({})",
    frozenset({ARRAY}): "is_array({})",
    frozenset({OBJECT}): "is_object({})",
    frozenset({BOOLEAN}): "is_boolean({})",
    frozenset({STRING, ARRAY, OBJECT}): "ops.sized({})",
}
_ORDERED = (frozenset({NUMBER}), frozenset({STRING}))
_TYPE_TESTS = {STRING: "is_string({})", NUMBER: "is_number({})", BOOLEAN: "is_boolean({})",
               ARRAY: "is_array({})", OBJECT: "is_object({})", NULL: "is_null({})"}


def _has_type(term: str, accepted: Type) -> str:
    """A statement true when ``term`` has one of the ``accepted`` JSON types."""
    if len(accepted) == 1:
        return _TYPE_TESTS[next(iter(accepted))].format(term)
    names = ", ".join(rego.string(t) for t in sorted(accepted))
    return f"type_name({term}) in {{{names}}}"
_NEGATED = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_MIRRORED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _may_lead(term: str) -> bool:
    """Whether a statement may start with ``term``. A line starting with '-', '(', '[' or
    '{' can continue the previous line's expression in Rego ("x := a - b" then "-1 < y"
    parses as "x := a - b - 1 < y"), so such terms go to the right of an operator."""
    return not term.startswith(("-", "(", "[", "{"))


class ConditionCompiler:
    """Compiles the condition of one rule; helper rules are named ``<prefix>_H<n>``."""

    def __init__(self, prefix: str, checked: Checked) -> None:
        self.prefix = prefix
        self.checked = checked
        self.helpers: list[str] = []
        self.n_helpers = 0
        self.n_vars = 0
        self.uses_ops = False
        self.constants: dict[ex.Node, object] = {}
        self.macro_vars: dict[str, int] = {}
        # Values computed more than once in the condition (args.statement.upper() in three
        # alternatives) are compiled once, into the same statements binding the same local
        # variable wherever they are used, so a body that uses one twice computes it once.
        self.shared: dict[str, Val] = {}
        # Nodes that read the input (or a macro variable): everything else is a constant.
        self.variable: set[int] = set()
        self.repeated: set[str] = set()
        self._mark_variable(checked.node, {})

    # -- entry points -------------------------------------------------------------------

    def value(self, node: ex.Node, scope: Scope) -> Val:
        constant = self.constant(node)
        if constant is not _VARIABLE:
            if isinstance(constant, evaluator.Err):
                return Val(["false"], "null", solid=True)   # an error: never a value
            return Val([], rego.value(constant), solid=True)
        if node.text in self.repeated and not scope.names:
            return self._shared(node)
        return _VALUE[node.key](self, node, scope)

    def _shared(self, node: ex.Node) -> Val:
        # Local variables, not a complete rule per value: OPA spends more evaluating a rule
        # than computing the value again in another alternative of the else chain, and
        # compiles fewer rules.
        shared = self.shared.get(node.text)
        if shared is None:
            val = _VALUE[node.key](self, node, Scope())
            name = f"s{len(self.shared) + 1}"
            shared = self.shared[node.text] = Val([*val.stmts, f"{name} := {val.term}"], name,
                                                  solid=True, ref=True)
        return shared

    def _mark_variable(self, node: ex.Node, seen: dict[str, int]) -> int:
        """Mark the nodes that read the input (or a macro variable), and collect in
        ``repeated`` the texts of computed values that occur more than once and read no
        macro variable. Returns 0 for a constant, 1 if the node reads the input, 2 if a
        macro variable."""
        kind = type(node)
        reads = 2 if kind is ex.Var else 1 if kind is ex.Root else 0
        for child in node.children():
            child_reads = self._mark_variable(child, seen)
            if child_reads > reads:
                reads = child_reads
        if reads:
            self.variable.add(id(node))
        if reads < 2 and kind in _SHAREABLE:
            seen[node.text] = seen.get(node.text, 0) + 1
            if seen[node.text] == 2:
                self.repeated.add(node.text)
        return reads

    def constant(self, node: ex.Node) -> object:
        """The value of a node that reads no input (or an Err), folded at compile time.

        Besides saving work, folding keeps literal-only comparisons such as
        ``"a" == null`` out of the Rego: OPA's type checker rejects them as a match error.
        """
        if id(node) in self.variable:
            return _VARIABLE
        if isinstance(node, ex.Literal):
            return node.value
        if node not in self.constants:
            self.constants[node] = evaluator.evaluate(node, {})
        return self.constants[node]

    @staticmethod
    def is_variable(constant: object) -> bool:
        """Whether a value of :meth:`constant` means that the node reads the input."""
        return constant is _VARIABLE

    def macro_var(self, name: str) -> str:
        """A new Rego variable for the macro variable ``name``: two macros in one body
        (``a && b``) may not declare the same name."""
        n = self.macro_vars[name] = self.macro_vars.get(name, 0) + 1
        return f"v_{name}" if n == 1 else f"v{n}_{name}"

    def truth(self, node: ex.Node, scope: Scope) -> Stmts:
        """Statements that succeed exactly when ``node`` is true."""
        return self._one(self.truth_alternatives(node, scope), scope)

    def falsity(self, node: ex.Node, scope: Scope) -> Stmts:
        """Statements that succeed exactly when ``node`` is false."""
        return self._one(self.falsity_alternatives(node, scope), scope)

    def truth_alternatives(self, node: ex.Node, scope: Scope) -> list[Stmts]:
        """Bodies, any of which succeeding means ``node`` is true (``||`` chains flattened,
        small ``&&`` of ``||`` distributed)."""
        constant = self.constant(node)
        if constant is not _VARIABLE:
            return [["true" if constant is True else "false"]]
        if isinstance(node, ex.Or):
            return (self.truth_alternatives(node.left, scope)
                    + self.truth_alternatives(node.right, scope))
        if isinstance(node, ex.And):
            return self._both(self.truth_alternatives(node.left, scope),
                              self.truth_alternatives(node.right, scope), scope)
        if isinstance(node, ex.Not):
            return self.falsity_alternatives(node.operand, scope)
        return [_dedupe(_TRUTH[node.key](self, node, scope))]

    def falsity_alternatives(self, node: ex.Node, scope: Scope) -> list[Stmts]:
        """Bodies, any of which succeeding means ``node`` is false."""
        constant = self.constant(node)
        if constant is not _VARIABLE:
            return [["true" if constant is False else "false"]]
        if isinstance(node, ex.And):
            return (self.falsity_alternatives(node.left, scope)
                    + self.falsity_alternatives(node.right, scope))
        if isinstance(node, ex.Or):
            return self._both(self.falsity_alternatives(node.left, scope),
                              self.falsity_alternatives(node.right, scope), scope)
        if isinstance(node, ex.Not):
            return self.truth_alternatives(node.operand, scope)
        return [_dedupe(_FALSITY[node.key](self, node, scope))]

    def _both(self, left: list[Stmts], right: list[Stmts], scope: Scope) -> list[Stmts]:
        """Bodies for ``left`` and ``right`` both succeeding: each pairing of their
        alternatives when there are few (another body costs OPA less to compile than a
        helper rule), else one body through helper rules."""
        if len(left) * len(right) <= MAX_PAIRINGS:
            return [_dedupe(a + b) for a in left for b in right]
        return [_dedupe(self._one(left, scope) + self._one(right, scope))]

    def _one(self, alternatives: list[Stmts], scope: Scope) -> Stmts:
        if len(alternatives) == 1:
            return alternatives[0]
        return [self.helper(alternatives, scope)]

    # -- plumbing -------------------------------------------------------------------------

    def type_of(self, node: ex.Node) -> Type:
        return self.checked.type_of(node)

    def fresh(self) -> str:
        self.n_vars += 1
        return f"x{self.n_vars}"

    def solid(self, val: Val) -> Val:
        """Bind a term to a variable unless it already is one or a literal."""
        if val.solid:
            return val
        var = self.fresh()
        return Val([*val.stmts, f"{var} := {val.term}"], var, solid=True, ref=True)

    def guard(self, val: Val, node: ex.Node, accepted: Type) -> Stmts:
        """Statements that succeed only when the value has a type in ``accepted``."""
        if self.type_of(node) <= accepted:
            return []
        if accepted == frozenset({STRING, ARRAY, OBJECT}):
            self.uses_ops = True
        return [_GUARDS[accepted].format(val.term)]

    def helper(self, bodies: list[Stmts], scope: Scope) -> str:
        """A helper rule true when any of ``bodies`` succeeds; returns the call."""
        self.n_helpers += 1
        name = f"{self.prefix}_H{self.n_helpers}"
        head = _call(name, scope.params)
        self.helpers.append("\n\n".join(f"{head} if {_block(b)}" for b in bodies))
        return head

    def boolean_value(self, node: ex.Node, scope: Scope) -> Val:
        """A boolean-valued node used as a value: true, false, or undefined on error."""
        self.n_helpers += 1
        name = f"{self.prefix}_H{self.n_helpers}"
        head = _call(name, scope.params)
        t, f = self.truth(node, scope), self.falsity(node, scope)
        self.helpers.append(f"{head} := true if {_block(t)} else := false if {_block(f)}")
        return Val([], head)

    def value_truth(self, node: ex.Node, scope: Scope) -> Stmts:
        val = self.value(node, scope)
        return [*val.stmts, f"true == {val.term}"]

    def value_falsity(self, node: ex.Node, scope: Scope) -> Stmts:
        val = self.value(node, scope)
        return [*val.stmts, f"false == {val.term}"]

    # -- values -----------------------------------------------------------------------

    def literal_value(self, node: ex.Literal, scope: Scope) -> Val:
        return Val([], rego.value(node.value), solid=True)

    def list_value(self, node: ex.ListLit, scope: Scope) -> Val:
        items = [self.value(i, scope) for i in node.items]
        stmts = [s for item in items for s in item.stmts]
        return Val(stmts, "[" + ", ".join(i.term for i in items) + "]",
                   solid=all(i.solid for i in items))

    def root_value(self, node: ex.Root, scope: Scope) -> Val:
        return Val([], f"input.{node.name}", ref=True)

    def var_value(self, node: ex.Var, scope: Scope) -> Val:
        return Val([], scope.names[node.name], solid=True, ref=True)

    def field_value(self, node: ex.Field, scope: Scope) -> Val:
        target = self.value(node.target, scope)
        if not target.ref:
            target = self.solid(target)
        return Val(target.stmts, rego.ref(target.term, node.name), ref=True)

    def index_value(self, node: ex.Index, scope: Scope) -> Val:
        target = self.value(node.target, scope)
        if not target.ref:
            target = self.solid(target)
        index = self.solid(self.value(node.index, scope))
        # OPA's lookup is undefined for a missing key, a non-string object key, and an array
        # index that is negative, out of range or not a whole number: exactly our errors.
        return Val([*target.stmts, *index.stmts], f"{target.term}[{index.term}]", ref=True)

    def neg_value(self, node: ex.Neg, scope: Scope) -> Val:
        operand = self.value(node.operand, scope)
        var = self.fresh()
        return Val([*operand.stmts, *self.guard(operand, node.operand, frozenset({NUMBER})),
                    f"{var} := 0 - {operand.term}"], var, solid=True, ref=True)

    def arith_value(self, node: ex.Arith, scope: Scope) -> Val:
        left, right = self.value(node.left, scope), self.value(node.right, scope)
        stmts = [*left.stmts, *right.stmts]
        var = self.fresh()
        lt, rt = self.type_of(node.left), self.type_of(node.right)
        if node.op == "+" and not (lt & rt) <= frozenset({NUMBER}):
            if lt == rt == frozenset({STRING}):
                expr = f'concat("", [{left.term}, {right.term}])'
            elif lt == rt == frozenset({ARRAY}):
                expr = f"array.concat({left.term}, {right.term})"
            else:
                self.uses_ops = True
                expr = f"ops.add({left.term}, {right.term})"
            return Val([*stmts, f"{var} := {expr}"], var, solid=True, ref=True)
        number = frozenset({NUMBER})
        stmts += self.guard(left, node.left, number) + self.guard(right, node.right, number)
        if node.op in ("/", "%"):
            stmts.append(f"0 != {right.term}")
        if node.op == "%":
            self.uses_ops = True
            stmts += [f"ops.whole({left.term})", f"ops.whole({right.term})"]
        return Val([*stmts, f"{var} := {left.term} {node.op} {right.term}"], var, solid=True,
                   ref=True)

    def call_value(self, node: ex.Call, scope: Scope) -> Val:
        return self.apply_value(GLOBALS[node.name], node, list(node.args), scope)

    def method_value(self, node: ex.Method, scope: Scope) -> Val:
        return self.apply_value(METHODS[node.name], node, [node.target, *node.args], scope)

    def apply_value(self, fn: Function, node: ex.Node, operands: list[ex.Node],
                    scope: Scope) -> Val:
        if fn.result == BOOLEAN:
            return self.boolean_value(node, scope)
        stmts, terms, defined = self.operands(fn, operands, scope)
        # A builtin given operands of the right types always has a value, so the call is
        # as safe under `not` as its operands.
        return Val(stmts, fn.rego.format(*terms), solid=defined)

    def operands(self, fn: Function, operands: list[ex.Node], scope: Scope,
                 solid: bool = False) -> tuple[Stmts, list[str], bool]:
        """Operand statements (with type guards) and terms; with ``solid`` every term is
        made safe to use under ``not``. Also says whether all terms are defined."""
        stmts: Stmts = []
        terms: list[str] = []
        defined = True
        for operand, accepted in zip(operands, fn.operands):
            val = self.value(operand, scope)
            guard = self.guard(val, operand, frozenset(accepted))
            if solid and not (val.solid or guard):
                val = self.solid(val)
            defined = defined and (val.solid or bool(guard))
            stmts += val.stmts + guard
            terms.append(val.term)
        if fn.name == "matches" and not isinstance(operands[1], ex.Literal):
            stmts.append(f"regex.is_valid({terms[1]})")
        return stmts, terms, defined

    # -- truth and falsity --------------------------------------------------------------

    def literal_truth(self, node: ex.Literal, scope: Scope) -> Stmts:
        return ["true"] if node.value is True else ["false"]

    def literal_falsity(self, node: ex.Literal, scope: Scope) -> Stmts:
        return ["true"] if node.value is False else ["false"]

    def and_truth(self, node: ex.And, scope: Scope) -> Stmts:
        return self.truth(node, scope)      # distributed into alternatives; never reached

    def and_falsity(self, node: ex.And, scope: Scope) -> Stmts:
        return self.falsity(node, scope)    # flattened into alternatives; never reached

    def or_truth(self, node: ex.Or, scope: Scope) -> Stmts:
        return self.truth(node, scope)      # flattened into alternatives; never reached

    def or_falsity(self, node: ex.Or, scope: Scope) -> Stmts:
        return self.falsity(node, scope)    # distributed into alternatives; never reached

    def not_truth(self, node: ex.Not, scope: Scope) -> Stmts:
        return self.falsity(node.operand, scope)

    def not_falsity(self, node: ex.Not, scope: Scope) -> Stmts:
        return self.truth(node.operand, scope)

    def compare_truth(self, node: ex.Compare, scope: Scope) -> Stmts:
        return self._compare(node, node.op, scope)

    def compare_falsity(self, node: ex.Compare, scope: Scope) -> Stmts:
        return self._compare(node, _NEGATED[node.op], scope)

    def _compare(self, node: ex.Compare, op: str, scope: Scope) -> Stmts:
        left, right = self.value(node.left, scope), self.value(node.right, scope)
        stmts = [*left.stmts, *right.stmts]
        lt, rt = self.type_of(node.left), self.type_of(node.right)
        if node.op in ("==", "!="):
            if not (lt & rt or NULL in lt | rt):
                return ["false"]      # never comparable: always an error
            if op == "!=":
                # Unequal values are only false (or true) when they may be compared: of
                # one JSON type, or one of them null. Equal values always may.
                stmts += self.comparable(left, lt, right, rt)
            if not (lt == ANY or rt == ANY or (lt == rt and len(lt) == 1 and
                                               not lt & frozenset({ARRAY, OBJECT}))):
                # OPA's type checker rejects == between values whose static types cannot
                # match ("match error"); a function call is not type checked that way.
                self.uses_ops = True
                fn = "same" if op == "==" else "different"
                return [*stmts, f"ops.{fn}({left.term}, {right.term})"]
        elif not ((lt | rt) <= frozenset({NUMBER}) or (lt | rt) <= frozenset({STRING})):
            # Not statically two numbers or two strings: check at run time, with a builtin
            # when one side is statically a number or a string (args.n > 20).
            same = rt if rt in _ORDERED else lt if lt in _ORDERED else None
            if same is not None:
                stmts += self.guard(left, node.left, same) + self.guard(right, node.right, same)
            else:
                self.uses_ops = True
                stmts.append(f"ops.ordered({left.term}, {right.term})")
        if not _may_lead(left.term):
            return [*stmts, f"{right.term} {_MIRRORED[op]} {left.term}"]
        return [*stmts, f"{left.term} {op} {right.term}"]

    def comparable(self, left: Val, lt: Type, right: Val, rt: Type) -> Stmts:
        """Statements that two values may be compared (one JSON type, or a null), less
        what their static types already say."""
        if (lt == rt and len(lt) == 1) or lt == frozenset({NULL}) or rt == frozenset({NULL}):
            return []
        for one, other, other_type in ((lt, right, rt), (rt, left, lt)):
            if len(one) == 1:    # one side's type is known: the other must have it
                accepted = one | {NULL}
                if other_type <= accepted:
                    return []
                return [_has_type(other.term, accepted)]
        self.uses_ops = True
        return [f"ops.comparable({left.term}, {right.term})"]

    def element_types(self, node: ex.Node) -> Type | None:
        """The JSON types of the elements of a list known at compile time, else None."""
        constant = self.constant(node)
        if isinstance(constant, list):
            return frozenset(type_name(e) for e in constant)
        return None

    def in_truth(self, node: ex.In, scope: Scope) -> Stmts:
        item, coll = self.value(node.item, scope), self.value(node.collection, scope)
        if not _may_lead(item.term):
            item = self.solid(Val(item.stmts, item.term))
        stmts = [*item.stmts, *coll.stmts]
        if self.type_of(node.collection) <= frozenset({ARRAY}):
            return [*stmts, f"{item.term} in {coll.term}"]
        self.uses_ops = True
        return [*stmts, f"ops.member({item.term}, {coll.term})"]

    def in_falsity(self, node: ex.In, scope: Scope) -> Stmts:
        # A list without the item: false only if the list is empty or holds an element of
        # the item's type (else an error, as for ==).
        elements = self.element_types(node.collection)
        if elements is not None:
            item = self.solid(self.value(node.item, scope))
            coll = self.solid(self.value(node.collection, scope))
            guard = [] if not elements or self.type_of(node.item) <= elements else [
                _has_type(item.term, elements)]
            return [*item.stmts, *coll.stmts, *guard, f"not {item.term} in {coll.term}"]
        item, coll = self.value(node.item, scope), self.value(node.collection, scope)
        self.uses_ops = True
        return [*item.stmts, *coll.stmts, f"ops.not_member({item.term}, {coll.term})"]

    def has_truth(self, node: ex.Has, scope: Scope) -> Stmts:
        path = self.value(node.path, scope)
        return [*path.stmts, f"_ = {path.term}"]

    def has_falsity(self, node: ex.Has, scope: Scope) -> Stmts:
        return [f"not {self.helper([self.has_truth(node, scope)], scope)}"]

    def method_truth(self, node: ex.Method, scope: Scope) -> Stmts:
        return self._predicate(METHODS[node.name], node, [node.target, *node.args], scope, True)

    def method_falsity(self, node: ex.Method, scope: Scope) -> Stmts:
        return self._predicate(METHODS[node.name], node, [node.target, *node.args], scope,
                               False)

    def _predicate(self, fn: Function, node: ex.Node, operands: list[ex.Node], scope: Scope,
                   truth: bool) -> Stmts:
        if fn.result != BOOLEAN:
            return self.value_truth(node, scope) if truth else self.value_falsity(node, scope)
        stmts, terms, _ = self.operands(fn, operands, scope, solid=not truth)
        call = fn.rego.format(*terms)
        return [*stmts, call if truth else f"not {call}"]

    def macro_truth(self, node: ex.Macro, scope: Scope) -> Stmts:
        return self._macro(node, scope, decide=True)

    def macro_falsity(self, node: ex.Macro, scope: Scope) -> Stmts:
        return self._macro(node, scope, decide=False)

    def _macro(self, node: ex.Macro, scope: Scope, decide: bool) -> Stmts:
        target = self.solid(self.value(node.target, scope))
        stmts = [*target.stmts, *self.guard(target, node.target, frozenset({ARRAY}))]
        var = self.macro_var(node.var)
        # OPA rejects a declared variable that nothing uses.
        used = _uses(node.body, node.var)
        loop_var = var if used else "_"
        inner = scope.bind(node.var, var) if used else scope
        # exists is decided true by one true element, false by every element false; all the
        # other way round.
        some = (node.name == "exists") == decide
        body = self.truth(node.body, inner) if decide else self.falsity(node.body, inner)
        if some:
            return [*stmts, f"some {loop_var} in {target.term}", *body]
        if body == ["false"]:
            # No element satisfies the body (a constant that folded to false): only an
            # empty list does; `every v in t { false }` would declare v for nothing.
            return [*stmts, f"count({target.term}) == 0"]
        return [*stmts, f"every {loop_var} in {target.term} {_block(body)}"]


# Handlers by node key, built once: a missing value handler means a boolean node (compiled
# through its truth and falsity), a missing truth or falsity handler a value node.
_VALUE = {c.key: getattr(ConditionCompiler, f"{c.key}_value", ConditionCompiler.boolean_value)
          for c in ex.NODE_TYPES}
_TRUTH = {c.key: getattr(ConditionCompiler, f"{c.key}_truth", ConditionCompiler.value_truth)
          for c in ex.NODE_TYPES}
_FALSITY = {c.key: getattr(ConditionCompiler, f"{c.key}_falsity",
                           ConditionCompiler.value_falsity) for c in ex.NODE_TYPES}


def _comment(text: str) -> str:
    return rego.comment_lines(text, prefix="")[0] if "\n" not in text else text.replace(
        "\n", " ")


def _uses(node: ex.Node, name: str) -> bool:
    """Whether ``node`` refers to the macro variable ``name`` (not to a nested rebinding)."""
    if isinstance(node, ex.Var):
        return node.name == name
    if isinstance(node, ex.Macro):
        return _uses(node.target, name) or (node.var != name and _uses(node.body, name))
    return any(_uses(child, name) for child in node.children())


def _dedupe(stmts: Stmts) -> Stmts:
    """Drop repeated statements (the same guard from two operands); they are pure. A body
    with a ``false`` statement never succeeds and is just that: what would follow need not
    even type-check (``x1 := input.args.n * null`` for an operand that is always an error,
    such as ``10 % 0``, which OPA's type checker rejects)."""
    if "false" in stmts:
        return ["false"]
    seen: set[str] = set()
    out = []
    for stmt in stmts:
        if stmt not in seen:
            seen.add(stmt)
            out.append(stmt)
    return out


def _call(name: str, params: list[str]) -> str:
    return f"{name}({', '.join(params)})" if params else name


def _block(stmts: Stmts) -> str:
    lines = stmts or ["true"]
    for line in lines:
        if not _may_lead(line):
            raise AssertionError(f"generated statement would continue the line above: {line}")
    inner = "\n".join("\t" + line.replace("\n", "\n\t") for line in lines)
    return "{\n" + inner + "\n}"
