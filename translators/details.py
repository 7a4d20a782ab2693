"""Rego that names why a condition is in error: the explanation back end.

The generator (:mod:`generator`) compiles each condition to bodies that decide it *true* and
*false*; when neither succeeds the condition is an error. This module compiles the same tree
to the checks that say which error, with exactly the detail of the reference evaluator
(:mod:`evaluator`, ``MESSAGES``). The rule's status chain goes on with them::

    _rule := false if {...} else := true if {...}
      else := {"error": 0} if { not is_string(object.get(input, ["args", "s"], false)) }
      else := {"error": "the condition could not be evaluated"}

A condition's error comes from one *site*: a node whose operands have values but whose own
check fails (a missing field, an ill-typed operand, a division by zero). Listed depth first,
left to right, children before parents, the sites of a tree in error fire in an order where
the first that fires is the evaluator's error: an operand is evaluated before its parent,
and the leftmost erroring operand wins. So one body per site, ``<operands have values>;
<own check fails>``, first match wins. A field path from a root is one site for all its
steps, joined with the type check of its value that follows it.

Two constructs do not propagate errors and get *guards*, statements that the construct is in
error, conjoined to the bodies of the sites below them:

- ``&&`` and ``||`` absorb an error when another operand decides (``false && error`` is
  false): a chain's sites are guarded by "the chain is neither true nor false", written
  ``not <helper that is true when the chain is>``. What is already known is not guarded
  again: the whole condition is known to be in error (the chain is only consulted then),
  and in a chain in error each operand is known not to decide it, the last one to err.
- ``exists``/``all`` absorb an element's error when another element decides: the first
  erroring element's detail comes from a function of the element, guarded likewise.

``has(path)`` never errs: the sites below it are dropped.

The details themselves are data (:class:`Form`), indexed by the checks: OPA compiles every
term of every module, and a text or a call in each check's head cost it as much again as
the check; ``ops.detail`` formats them when a decision reads them.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from veto_opa.translators import evaluator
from veto_opa.translators import expressions as ex
from veto_opa.translators import rego
from veto_opa.translators.functions import (
    ARRAY, BOOLEAN, GLOBALS, METHODS, NULL, NUMBER, OBJECT, STRING, Function,
)
from veto_opa.translators.generator import (
    ConditionCompiler, Scope, Stmts, Val, _block, _call, _has_type,
)
from veto_opa.translators.types import ANY, T_BOOLEAN, Type, type_name

FALLBACK = "the condition could not be evaluated"
"""The detail when no site fires: never, if the generated Rego is right (the differential
tests hold it to that); it keeps the decision defined, and failing closed, if it is not."""

_T, _F = "T", "F"
Known = frozenset[str]
"""Outcomes a node is known not to have: ``T`` (true), ``F`` (false); both: in error."""

NOTHING: Known = frozenset()
ERROR: Known = frozenset({_T, _F})


class Term(NamedTuple):
    """A Rego term in a detail text (``type_name(x1)``), as opposed to literal text."""

    rego: str


class TypeAt(NamedTuple):
    """The JSON type of the input value at ``path`` (``("args", "x")``), in a detail text:
    filled in by ``ops.detail`` when the detail is read, so that the detail rule's head is a
    constant (a call there costs OPA about as much to compile as the rest of the body)."""

    path: tuple[str, ...]
    rego: str     # the value's term, for a detail that is built in Rego after all


@dataclass(frozen=True)
class Form:
    """A detail known at compile time, as data: a text; ``[template, path, ...]`` whose
    ``%s`` are the types of input values; or a path object (see ``ops.detail``). The detail
    rule names it by its index in the rule's list of forms, which the bundle carries as data
    (``veto/details/<policy>``): OPA compiles every term of a module, and a rule head that
    is a number costs it nothing next to the text."""

    value: Any


@dataclass(frozen=True)
class Computed:
    """A detail built in Rego from values only known at evaluation (a macro variable's
    type): ``concat("", [...])``."""

    term: str


Detail = Form | Computed


@dataclass(frozen=True)
class Site:
    """One way a condition can be in error: the body that detects it and the detail.

    ``path`` marks the site of an input path that cannot be read (its ``detail`` is the
    object ``ops.detail`` walks), ``typed`` a site that the value at an input path has none
    of some types: the second can join the first when it follows it (one body, fewer for
    OPA to compile), see :func:`_merged`.
    """

    stmts: tuple[str, ...]
    detail: Detail
    path: dict[str, Any] | None = None     # the fields of the path object
    typed: tuple[tuple[str, ...], Type] | None = None

    def guarded(self, guard: list[str]) -> Site:
        return Site((*guard, *self.stmts), self.detail, self.path, self.typed)


Piece = str | Term | TypeAt


def detail(kind: str, **fields: Piece | list[Piece]) -> Detail:
    """``MESSAGES[kind]`` with ``fields`` (literal text, terms, or lists of them): the text
    when all is literal text; with types of input values only, ``[template, path, ...]``
    (``%s`` for each type, in order); else a ``concat`` in Rego."""
    pieces: list[Piece] = []
    for literal, name in _TEMPLATES[kind]:
        if literal:
            pieces.append(literal)
        if name is not None:
            field = fields[name]
            pieces += field if isinstance(field, list) else [field]
    merged: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    if len(merged) == 1 and isinstance(merged[0], str):
        return Form(merged[0])
    if not any(isinstance(p, Term) for p in merged):
        template = "".join(p.replace("%", "%%") if isinstance(p, str) else "%s" for p in merged)
        paths = [list(p.path) for p in merged if isinstance(p, TypeAt)]
        return Form([template, *paths])
    terms = [p if isinstance(p, Term) else Term(f"type_name({p.rego})") if isinstance(p, TypeAt)
             else Term(rego.string(p)) for p in merged]
    return Computed(f'concat("", [{", ".join(t.rego for t in terms)}])')


_DEFAULTS = ((BOOLEAN, "false"), (NUMBER, "0"), (STRING, '""'), (NULL, "null"), (ARRAY, "[]"),
             (OBJECT, "{}"))
_TEMPLATES = {kind: [(literal, name) for literal, name, _, _ in string.Formatter().parse(text)]
              for kind, text in evaluator.MESSAGES.items()}
_ORDERED = (frozenset({NUMBER}), frozenset({STRING}))


class Explainer:
    """Compiles the error detail of one rule's condition, next to its :class:`ConditionCompiler`
    (whose values, helpers and names it shares)."""

    def __init__(self, compiler: ConditionCompiler) -> None:
        self.cc = compiler
        self.n_functions = 0
        self.forms: list[Any] = []          # the data: the rule's details, by index
        self._index: dict[str, int] = {}

    # -- entry point ---------------------------------------------------------------------

    def bodies(self) -> list[tuple[str, str]]:
        """The condition's detail, known to be in error: ``(value, body)`` for each check
        that can fire first, in order, the value the index of a detail in :attr:`forms` or
        a text built in Rego. The status rule continues its chain with them (a rule of their
        own would cost OPA about a third as much again to compile)."""
        sites = self.boolean_sites(self.cc.checked.node, Scope(), ERROR)
        bodies = self.checks(sites)
        if any("ops." in body for _, body in bodies) or any("ops." in h for h in self.cc.helpers):
            self.cc.uses_ops = True
        return bodies

    def checks(self, sites: list[Site]) -> list[tuple[str, str]]:
        """``(value, body)`` for each site that can fire first."""
        seen: set[tuple[str, ...]] = set()
        bodies = []
        for site in _merged(sites):
            # A body that an earlier one already has never fires: the earlier one fires first.
            if site.stmts in seen or "false" in site.stmts:
                continue
            seen.add(site.stmts)
            stmts = _dedupe(site.stmts) or ["true"]
            if isinstance(site.detail, Form):
                value = str(self.index(site.detail.value))
                stmts = [*rego.comment_lines(_plain(site.detail.value)), *stmts]
            else:
                value = site.detail.term
            bodies.append((value, _block(stmts)))
        return bodies

    def index(self, form: Any) -> int:
        key = repr(form)    # forms are JSON values built in one order: equal forms, equal texts
        if key not in self._index:
            self._index[key] = len(self.forms)
            self.forms.append(form)
        return self._index[key]

    # -- sites -----------------------------------------------------------------------------

    def sites(self, node: ex.Node, scope: Scope, known: Known) -> list[Site]:
        """The sites of ``node``: the first that fires is its error, none fires if it has none."""
        constant = self.cc.constant(node)
        if not self.cc.is_variable(constant):
            if isinstance(constant, evaluator.Err):
                return [Site((), Form(constant.detail))]
            return []
        return _SITES[node.key](self, node, scope, known)

    def boolean_sites(self, node: ex.Node, scope: Scope, known: Known) -> list[Site]:
        """The sites of ``node`` used as a condition: a value that is not a boolean is an
        error too."""
        constant = self.cc.constant(node)
        if not self.cc.is_variable(constant) and not isinstance(constant, evaluator.Err):
            if isinstance(constant, bool):
                return []
            found = type_name(constant)
            return [Site((), detail("not_boolean", text=node.text, type=found))]
        sites = self.sites(node, scope, known)
        if not self.static(node) <= T_BOOLEAN:
            val = self.term(node, scope)
            sites.append(self.site([*val.stmts, f"not is_boolean({val.term})"],
                                   detail("not_boolean", text=node.text,
                                          type=self.type_name(node, val))))
        return sites

    def operand_sites(self, nodes: list[ex.Node], scope: Scope) -> tuple[list[Site], list[Val]]:
        """Sites of strict operands, left to right, and their values (solid terms)."""
        sites: list[Site] = []
        values: list[Val] = []
        for node in nodes:
            sites += self.sites(node, scope, NOTHING)
            values.append(self.term(node, scope))
        return sites, values

    def term(self, node: ex.Node, scope: Scope) -> Val:
        """The value of ``node`` as a term that a check may use: a ref into the input is
        used as it is (a site that checks it runs after the site that reports it missing),
        a computed value is bound to a variable."""
        val = self.cc.value(node, scope)
        return val if val.ref or val.solid else self.cc.solid(val)

    @staticmethod
    def site(stmts: Stmts, text: Detail) -> Site:
        return Site(tuple(stmts), text)

    def static(self, node: ex.Node) -> Type:
        """The static type of ``node`` as far as its errors go. The checker types the roots
        by the guard's contract (``args`` and ``context`` are objects); an input document
        written by hand may break it, and the detail must still be the evaluator's."""
        if isinstance(node, ex.Root):
            return ANY
        return self.cc.type_of(node)

    def type_name(self, node: ex.Node, val: Val) -> Piece:
        """The JSON type of ``node``'s value: as text when its static type is certain, as
        the path of an input value when it is one (``args.o.k``), else a Rego term."""
        static = self.static(node)
        if len(static) == 1:
            return next(iter(static))
        path = _input_path(node)
        if path is not None:
            return TypeAt(path, val.term)
        return Term(f"type_name({val.term})")

    def type_site(self, node: ex.Node, val: Val, accepted: Type, base: Stmts,
                  text: Detail) -> Site | None:
        """The site where ``node``'s value has none of the ``accepted`` types, with detail
        ``text``; None when its static type says it always has one."""
        if self.static(node) <= accepted:
            return None
        path = _input_path(node)
        typed = (path, accepted) if path is not None and not base else None
        return Site((*base, f"not {_has_type(val.term, accepted)}"), text, typed=typed)

    def unless_typed(self, node: ex.Node, val: Val, accepted: Type) -> Stmts | None:
        """The statement that ``val`` lacks every type in ``accepted``, or None when the
        static type of ``node`` already guarantees one."""
        if self.static(node) <= accepted:
            return None
        return [f"not {_has_type(val.term, accepted)}"]

    # -- handlers, one per node key ----------------------------------------------------

    def literal_sites(self, node: ex.Literal, scope: Scope, known: Known) -> list[Site]:
        return []   # constants are handled by sites()

    def list_sites(self, node: ex.ListLit, scope: Scope, known: Known) -> list[Site]:
        return self.operand_sites(list(node.items), scope)[0]

    def root_sites(self, node: ex.Root, scope: Scope, known: Known) -> list[Site]:
        return [self.site(_undefined(self.cc.value(node, scope).term),
                          detail("missing", text=node.text))]

    def var_sites(self, node: ex.Var, scope: Scope, known: Known) -> list[Site]:
        return []   # bound to an element of a list

    def field_sites(self, node: ex.Field, scope: Scope, known: Known) -> list[Site]:
        path = _input_path(node)
        if path is not None:
            return [self.path_site(node, path)]
        sites, (target,) = self.operand_sites([node.target], scope)
        not_object = self.unless_typed(node.target, target, frozenset({OBJECT}))
        if not_object is not None:
            sites.append(self.site([*target.stmts, *not_object], detail(
                "not_object", target=node.target.text, type=self.type_name(node.target, target))))
        if target.ref:
            # A ref into the input: missing is undefined, and the sites above have ruled out
            # a missing or ill-typed target.
            missing = _undefined(rego.ref(target.term, node.name))
        else:
            self.cc.uses_ops = True
            missing = [*target.stmts, f"is_object({target.term})",
                       f"not ops.present({target.term}, {rego.string(node.name)})"]
        sites.append(self.site(missing, detail("missing", text=node.text)))
        return sites

    def path_site(self, node: ex.Field, path: tuple[str, ...]) -> Site:
        """One site for every step of a path of fields from a root (``args.o.k``): the value
        is missing, and ``ops.detail`` walks the path to say at which step and why, with the
        texts each step's own site would have."""
        steps: list[ex.Node] = []
        current: ex.Node = node
        while isinstance(current, ex.Field):
            steps.append(current)
            current = current.target
        steps.append(current)                 # the root
        steps.reverse()
        missing: list[Any] = [evaluator.MESSAGES["missing"].format(text=n.text) for n in steps]
        for i, step in enumerate(steps):
            if isinstance(step, ex.Field) and ex.reads_fact(step.target):
                # A field a fact does not have: the fact's error, when its parser failed.
                prefix = evaluator.MESSAGES["fact"].format(target=step.target.text, detail="")
                missing[i] = {"fact": prefix, "at": list(path[:i]), "text": missing[i]}
        # The value before the root is the input, always an object.
        not_object = [None] + [_around("not_object", "type", target=n.text) for n in steps[:-1]]
        ref = self.cc.value(node, Scope()).term
        fields = {"path": list(path), "missing": missing, "not_object": not_object}
        return Site(tuple(_undefined(ref)), Form(fields), path=fields)

    def index_sites(self, node: ex.Index, scope: Scope, known: Known) -> list[Site]:
        sites, (target, index) = self.operand_sites([node.target, node.index], scope)
        t, i = target.term, index.term
        base = [*target.stmts, *index.stmts]
        target_type = self.static(node.target)
        self.cc.uses_ops = True
        if ARRAY in target_type:
            array = [*base, f"is_array({t})"]
            sites.append(self.site([*array, f"not ops.whole({i})"], detail(
                "bad_index", text=node.text, type=self.type_name(node.index, index))))
            sites.append(self.site([*array, f"ops.whole({i})", f"not ops.present({t}, {i})"],
                                   detail("out_of_range", text=node.text,
                                          size=Term(f"format_int(count({t}), 10)"))))
        if OBJECT in target_type:
            obj = [*base, f"is_object({t})"]
            sites.append(self.site([*obj, f"not is_string({i})"], detail(
                "bad_key", text=node.text, type=self.type_name(node.index, index))))
            sites.append(self.site([*obj, f"is_string({i})", f"not ops.present({t}, {i})"],
                                   detail("missing", text=node.text)))
        if not target_type <= frozenset({ARRAY, OBJECT}):
            sites.append(self.site([*base, f"not is_array({t})", f"not is_object({t})"], detail(
                "not_indexable", target=node.target.text, type=self.type_name(node.target, target))))
        return sites

    def not_sites(self, node: ex.Not, scope: Scope, known: Known) -> list[Site]:
        return self.boolean_sites(node.operand, scope, _swapped(known))

    def neg_sites(self, node: ex.Neg, scope: Scope, known: Known) -> list[Site]:
        sites, (operand,) = self.operand_sites([node.operand], scope)
        site = self.type_site(node.operand, operand, frozenset({NUMBER}), operand.stmts, detail(
            "negate", text=node.text, type=self.type_name(node.operand, operand)))
        return sites + ([site] if site else [])

    def compare_sites(self, node: ex.Compare, scope: Scope, known: Known) -> list[Site]:
        sites, (left, right) = self.operand_sites([node.left, node.right], scope)
        lt, rt = self.static(node.left), self.static(node.right)
        types = {"left": self.type_name(node.left, left), "right": self.type_name(node.right, right)}
        base = [*left.stmts, *right.stmts]
        text = detail("order", text=node.text, **types)
        pair = ((node.left, left, lt), (node.right, right, rt))
        if node.op in ("==", "!="):
            # Values of one type compare, and anything compares with null.
            if not (lt & rt or NULL in lt | rt):
                return [*sites, self.site(base, text)]     # never comparable
            if (lt == rt and len(lt) == 1) or frozenset({NULL}) in (lt, rt):
                return sites
            for (_, _, one), (other, val, _) in (pair, pair[::-1]):
                if len(one) == 1:    # the other must have that type, or be null
                    site = self.type_site(other, val, one | {NULL}, base, text)
                    return sites + ([site] if site else [])
            self.cc.uses_ops = True
            return [*sites, self.site([*base, f"not ops.comparable({left.term}, {right.term})"],
                                      text)]
        if (lt | rt) <= frozenset({NUMBER}) or (lt | rt) <= frozenset({STRING}):
            return sites
        for (_, _, one), (other, val, _) in (pair, pair[::-1]):
            if one in _ORDERED:      # one side is statically a number or a string
                site = self.type_site(other, val, one, base, text)
                return sites + ([site] if site else [])
        self.cc.uses_ops = True
        return [*sites, self.site([*base, f"not ops.ordered({left.term}, {right.term})"], text)]

    def in_sites(self, node: ex.In, scope: Scope, known: Known) -> list[Site]:
        sites, (item, coll) = self.operand_sites([node.item, node.collection], scope)
        x, c = item.term, coll.term
        base = [*item.stmts, *coll.stmts]
        item_type = self.type_name(node.item, item)
        collection_type = self.static(node.collection)
        if not collection_type <= frozenset({ARRAY, OBJECT}):
            sites.append(self.site([*base, f"not is_array({c})", f"not is_object({c})"],
                                   detail("not_collection", text=node.text,
                                          type=self.type_name(node.collection, coll))))
        # An item of a type that no element of a list has, or a key that is not a string.
        elements = self.cc.element_types(node.collection)
        if elements is not None:
            site = self.type_site(node.item, item, elements, base, detail(
                "member", text=node.text, types=", ".join(sorted(elements)), type=item_type))
            if elements and site is not None:
                sites.append(site)
        elif ARRAY in collection_type:
            self.cc.uses_ops = True
            sites.append(self.site(
                [*base, f"is_array({c})", f"not ops.holds_type_of({c}, {x})"],
                detail("member", text=node.text, types=Term(f"ops.element_types({c})"),
                       type=item_type)))
        if OBJECT in collection_type and not self.static(node.item) <= frozenset({STRING}):
            sites.append(self.site([*base, f"is_object({c})", f"not is_string({x})"],
                                   detail("key", text=node.text, type=item_type)))
        return sites

    def arith_sites(self, node: ex.Arith, scope: Scope, known: Known) -> list[Site]:
        sites, (left, right) = self.operand_sites([node.left, node.right], scope)
        a, b = left.term, right.term
        base = [*left.stmts, *right.stmts]
        types = {"left": self.type_name(node.left, left),
                 "right": self.type_name(node.right, right)}
        self.cc.uses_ops = True
        lt, rt = self.static(node.left), self.static(node.right)
        if node.op == "+":
            if not (lt == rt and len(lt) == 1 and lt <= frozenset({NUMBER, STRING, ARRAY})):
                sites.append(self.site([*base, f"not ops.addable({a}, {b})"],
                                       detail("arith", text=node.text, op=node.op, **types)))
            return sites
        for operand, val in ((node.left, left), (node.right, right)):
            site = self.type_site(operand, val, frozenset({NUMBER}), base,
                                  detail("arith", text=node.text, op=node.op, **types))
            if site is not None:
                sites.append(site)
        if node.op in ("/", "%"):
            base += [f"is_number({a})", f"is_number({b})"]
            sites.append(self.site([*base, f"0 == {b}"],
                                   detail("division_by_zero", text=node.text)))
        if node.op == "%":
            sites.append(self.site([*base, f"0 != {b}", f"not ops.both_whole({a}, {b})"],
                                   detail("modulo", text=node.text)))
        return sites

    def and_sites(self, node: ex.And, scope: Scope, known: Known) -> list[Site]:
        return self._chain(node, scope, known, decisive=_F)

    def or_sites(self, node: ex.Or, scope: Scope, known: Known) -> list[Site]:
        return self._chain(node, scope, known, decisive=_T)

    def _chain(self, node: ex.And | ex.Or, scope: Scope, known: Known,
               decisive: str) -> list[Site]:
        """``a && b && c`` (or ``||``): false (true) if any operand is, else the first
        error. Guarded by the chain being in error; then no operand decides it, and the last
        one reached is in error."""
        guard = self.guard(node, scope, known)
        operands = _operands(node, type(node))
        sites: list[Site] = []
        for i, operand in enumerate(operands):
            inner = ERROR if i == len(operands) - 1 else frozenset({decisive})
            sites += self.boolean_sites(operand, scope, inner)
        return [s.guarded(guard) for s in sites]

    def guard(self, node: ex.Node, scope: Scope, known: Known,
              outcomes: Known = ERROR) -> list[str]:
        """Statements that ``node`` has none of ``outcomes`` (true, false), less what is
        ``known``."""
        stmts = []
        for outcome in sorted(outcomes - known):
            alternatives = (self.cc.truth_alternatives(node, scope) if outcome == _T
                            else self.cc.falsity_alternatives(node, scope))
            alternatives = [a for a in alternatives if a != ["false"]]
            if alternatives:
                stmts.append(f"not {self.cc.helper(alternatives, scope)}")
        return stmts

    def has_sites(self, node: ex.Has, scope: Scope, known: Known) -> list[Site]:
        return []   # has() never errs

    def call_sites(self, node: ex.Call, scope: Scope, known: Known) -> list[Site]:
        return self._apply(GLOBALS[node.name], node, list(node.args), scope)

    def method_sites(self, node: ex.Method, scope: Scope, known: Known) -> list[Site]:
        return self._apply(METHODS[node.name], node, [node.target, *node.args], scope)

    def _apply(self, fn: Function, node: ex.Node, operands: list[ex.Node],
               scope: Scope) -> list[Site]:
        sites, values = self.operand_sites(operands, scope)
        base = [s for v in values for s in v.stmts]
        types: list[Piece] = []
        for operand, v in zip(operands, values):
            types += [", ", self.type_name(operand, v)] if types else [self.type_name(operand, v)]
        text = detail("operands", text=node.text, name=fn.name, types=types)
        guards = []
        for operand, val, accepted in zip(operands, values, fn.operands):
            site = self.type_site(operand, val, frozenset(accepted), base, text)
            if site is not None:
                sites.append(site)
                guards.append(_has_type(val.term, frozenset(accepted)))
        if fn.name == "matches" and not isinstance(operands[1], ex.Literal):
            sites.append(self.site([*base, *guards, f"not regex.is_valid({values[1].term})"],
                                   detail("bad_regex", text=node.text)))
        return sites

    def macro_sites(self, node: ex.Macro, scope: Scope, known: Known) -> list[Site]:
        sites, (target,) = self.operand_sites([node.target], scope)
        stmts = [*target.stmts]
        site = self.type_site(node.target, target, frozenset({ARRAY}), stmts, detail(
            "not_array", text=node.text, name=node.name, type=self.type_name(node.target, target)))
        if site is not None:
            sites.append(site)
            stmts.append(f"is_array({target.term})")
        # exists is decided by a true element, all by a false one: the first erroring
        # element is the error when no element decides.
        decisive = _T if node.name == "exists" else _F
        var = self.cc.macro_var(node.var)
        inner = scope.bind(node.var, var)
        body = self.boolean_sites(node.body, inner, frozenset({decisive}))
        if not body:
            return sites
        self.n_functions += 1
        function = _call(f"{self.cc.prefix}_D{self.n_functions}", inner.params)
        checks = self.checks(body)
        self.cc.helpers.append(f"{function} := " + " else := ".join(
            f"{value} if {block}" for value, block in checks))
        found, each = self.cc.fresh(), self.cc.fresh()
        guard = self.guard(node, scope, known, frozenset({decisive}))
        sites.append(self.site(
            [*guard, *stmts,
             f"{found} := [{each} | some {var} in {target.term}; {each} := {function}]",
             f"count({found}) > 0"], Computed(f"{found}[0]")))
        return sites


# Handlers by node key, built once.
_SITES: dict[str, Callable[[Explainer, ex.Node, Scope, Known], list[Site]]] = {
    cls.key: getattr(Explainer, f"{cls.key}_sites") for cls in ex.NODE_TYPES}


def _undefined(ref: str) -> Stmts:
    """Statements true exactly when ``ref`` has no value: ``not ref`` alone would also hold
    for ``false``. (Plain refs only: OPA evaluates a ref passed to a function, such as
    ``not ops.present(input.args, "x")``, outside the ``not``.)"""
    return [f"not {ref}", f"not {ref} == false"]


def _input_path(node: ex.Node) -> tuple[str, ...] | None:
    """``("args", "o", "k")`` for ``args.o.k``: fields from a root, else None."""
    keys: list[str] = []
    while isinstance(node, ex.Field):
        keys.append(node.name)
        node = node.target
    if not isinstance(node, ex.Root):
        return None
    return (node.name, *reversed(keys))


def _around(kind: str, field: str, **fields: str) -> list[str]:
    """``MESSAGES[kind]`` with ``fields`` filled in, split around the placeholder ``field``."""
    marker = "\x00"
    prefix, suffix = evaluator.MESSAGES[kind].format(**fields, **{field: marker}).split(marker)
    return [prefix, suffix]


def _plain(form: Any) -> str:
    """A form as the comment above its check: the text, types shown as ``<type>``."""
    if isinstance(form, str):
        return form
    if isinstance(form, list):
        return str(form[0]).replace("%s", "<type>").replace("%%", "%")
    plain = str(form["missing"][-1])
    return f"{plain}, or {_plain(form['else'])}" if "else" in form else plain


def _merged(sites: list[Site]) -> list[Site]:
    """The sites, with each type site that directly follows the path site of its value
    joined to it: one body, ``not is_string(object.get(input, path, false))``, fires
    when the value is missing or ill-typed, and ``ops.detail`` tells which."""
    out: list[Site] = []
    for site in sites:
        prev = out[-1] if out else None
        if (prev is not None and prev.path is not None and site.typed is not None
                and list(site.typed[0]) == prev.path["path"]
                and prev.stmts[:-2] == site.stmts[:-1] and isinstance(site.detail, Form)):
            path, accepted = site.typed
            # The default stands for a missing value: of a type not accepted, so that missing
            # fails the check too (a literal: OPA compiles it cheaper than a rule's value).
            default = next(v for t, v in _DEFAULTS if t not in accepted)
            value = f"object.get(input, {rego.value(list(path))}, {default})"
            out[-1] = Site((*site.stmts[:-1], f"not {_has_type(value, accepted)}"),
                           Form({**prev.path, "else": site.detail.value}))
            continue
        out.append(site)
    return out


def _swapped(known: Known) -> Known:
    return frozenset({_T: _F, _F: _T}[k] for k in known)


def _operands(node: ex.Node, kind: type) -> list[ex.Node]:
    """The operands of a chain of ``kind`` (``&&`` or ``||``), however it is parenthesised."""
    if isinstance(node, kind) and isinstance(node, (ex.And, ex.Or)):
        return _operands(node.left, kind) + _operands(node.right, kind)
    return [node]


def _dedupe(stmts: tuple[str, ...]) -> list[str]:
    seen: set[str] = set()
    out = []
    for stmt in stmts:
        if stmt not in seen:
            seen.add(stmt)
            out.append(stmt)
    return out
