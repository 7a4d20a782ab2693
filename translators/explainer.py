"""Conditions as data, for the error details computed by ``veto.lib.explain``.

The fast path (:mod:`generator`) only knows that a condition is neither true nor false. To
say *why*, ``rego/veto/lib/explain.rego`` evaluates the condition again with errors carried as
values (``{"v": value}`` or ``{"e": detail}``), building exactly the detail texts of the
reference evaluator. It does so from a description of the condition in the bundle's data
(``data.veto.conditions.<policy>.<rule>``, as JSON text), not from generated code: OPA does
not compile data, and loads a string per condition quickly, so a thousand rules load about
as fast as their fast path alone allows, and the interpreter is hand-written once.

Rego has no recursion, so the interpreter evaluates bottom-up, one *level* at a time: a
node's level is above its children's, and a node inside a macro body is above that macro's
*env* node, which lists the environments (values of the macro variables) the body is
evaluated in. :func:`spec` flattens a condition into nodes and levels.
"""

from __future__ import annotations

from typing import Any, Callable

from veto_opa.translators import expressions as ex
from veto_opa.translators.functions import GLOBALS, METHODS

MAX_LEVELS = 64
"""Levels the interpreter in explain.rego supports; the loader rejects deeper conditions."""


def spec(node: ex.Node) -> dict[str, Any]:
    """The data form of a condition: ``{"root", "text", "nodes", "levels"}``.

    Raises:
        ValueError: when the condition needs more than :data:`MAX_LEVELS` levels (the
            loader reports that as a problem of the policy first, see :func:`levels`).
    """
    builder = _Builder()
    root = builder.add(node, env=-1, scope=[])
    levels: list[list[int]] = [[] for _ in range(max(builder.levels) + 1)]
    for i, level in enumerate(builder.levels):
        levels[level].append(i)
    if len(levels) > MAX_LEVELS:
        raise ValueError(f"condition needs {len(levels)} evaluation levels, more than "
                         f"{MAX_LEVELS}")
    return {"root": root, "text": node.text, "nodes": builder.nodes, "levels": levels}


def levels(node: ex.Node) -> int:
    """How many levels the explainer needs for a condition (the levels of :func:`spec`,
    worked out without building the nodes)."""
    return _level(node, -1) + 1


def _level(node: ex.Node, env: int) -> int:
    """The level :class:`_Builder` gives ``node``, evaluated in an env node of level ``env``
    (-1: none). The root's level is the highest: each node is above its children."""
    base = env + 1 if env >= 0 else 0
    if isinstance(node, ex.Macro):
        target = _level(node.target, env) + 1
        body = _level(node.body, max(target, base)) + 1
        return max(target, body, base)
    if isinstance(node, (ex.And, ex.Or)):
        operands = _chain(node, type(node))
    else:
        operands = node.children()
    return max([_level(o, env) + 1 for o in operands] + [base])


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.levels: list[int] = []

    def _new(self, fields: dict[str, Any], env: int, deps: list[int]) -> int:
        fields["e"] = env
        self.nodes.append(fields)
        levels = self.levels
        level = 0
        for d in deps:
            if levels[d] >= level:
                level = levels[d] + 1
        levels.append(level)
        return len(levels) - 1

    def add(self, node: ex.Node, env: int, scope: list[str]) -> int:
        """Add ``node`` evaluated in the environments of env node ``env`` (-1: none);
        ``scope`` names the macro variables bound there, outermost first."""
        deps = [env] if env >= 0 else []
        if isinstance(node, ex.Macro):
            target = self.add(node.target, env, scope)
            env_node = self._new({"k": "env", "c": [target]}, env, [target, *deps])
            body = self.add(node.body, env_node, [*scope, node.var])
            return self._new({"k": "macro", "n": node.name, "c": [target], "b": body,
                              "t": node.text, "bt": node.body.text}, env, [target, body, *deps])
        if isinstance(node, (ex.And, ex.Or)):
            # A chain a && b && c is one node: the same result (false or true decides,
            # else the leftmost error) with fewer levels.
            operands = _chain(node, type(node))
            ids = [self.add(o, env, scope) for o in operands]
            return self._new({"k": node.key, "c": ids, "ts": [o.text for o in operands]},
                             env, [*ids, *deps])
        if isinstance(node, ex.Var):
            # The innermost binding of the name: its position in the environment.
            position = len(scope) - 1 - scope[::-1].index(node.name)
            return self._new({"k": "var", "i": position}, env, deps)
        children = [self.add(c, env, scope) for c in node.children()]
        fields = _fields(node)
        fields["c"] = children
        return self._new(fields, env, [*children, *deps])


def _chain(node: ex.Node, kind: type) -> list[ex.Node]:
    if isinstance(node, kind):
        return _chain(node.left, kind) + _chain(node.right, kind)
    return [node]


def _call_fields(node: ex.Call | ex.Method) -> dict[str, Any]:
    fn = (GLOBALS if isinstance(node, ex.Call) else METHODS)[node.name]
    return {"k": "call", "f": fn.explain, "n": fn.name, "t": node.text}


# One entry per node key (macro, var, and, or are built by _Builder.add).
FIELDS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "literal": lambda n: {"k": "literal", "v": n.value},
    "list": lambda n: {"k": "list"},
    "root": lambda n: {"k": "root", "n": n.name},
    "field": lambda n: {"k": "fact" if ex.reads_fact(n.target) else "field", "n": n.name,
                        "t": n.text, "tt": n.target.text},
    "index": lambda n: {"k": "index", "t": n.text, "tt": n.target.text},
    "not": lambda n: {"k": "not", "ot": n.operand.text},
    "neg": lambda n: {"k": "neg", "t": n.text},
    "compare": lambda n: {"k": "compare", "op": n.op, "t": n.text},
    "arith": lambda n: {"k": "arith", "op": n.op, "t": n.text},
    "in": lambda n: {"k": "in", "t": n.text},
    "has": lambda n: {"k": "has"},
    "call": _call_fields,
    "method": _call_fields,
}


def _fields(node: ex.Node) -> dict[str, Any]:
    return FIELDS[node.key](node)
