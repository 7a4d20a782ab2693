"""Which context keys an approval is bound to: the keys a policy's conditions read.

An approval lets exactly one call through; "exactly" includes the facts the policy decided
on. A grant given for ``environment: staging`` must not let the production call through, so
each policy's approvals are bound to every ``context.<key>`` its conditions read (the
``environments`` shortcut reads ``environment``), or to the keys its ``approval_binding``
lists. ``environment`` is always bound. A read whose key is not known before the call
(``context[args.key]``, ``"x" in context``, ``size(context)``) binds the whole context,
written :data:`WHOLE_CONTEXT`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from veto_opa.translators import expressions as ex

if TYPE_CHECKING:
    from veto_opa.translators.policy import Policy

WHOLE_CONTEXT = "*"
"""A binding of the whole context (every key, and no key more or less)."""

ALWAYS_BOUND = ("environment",)


def context_reads(node: ex.Node) -> frozenset[str] | None:
    """The context keys a condition reads, or None when it reads the context as a whole."""
    keys: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ex.Field) and _is_context(current.target):
            keys.add(current.name)
            continue
        if _is_context(current):
            return None
        stack.extend(current.children())
    return frozenset(keys)


def policy_binding(policy: Policy) -> tuple[str, ...]:
    """The sorted context keys approvals asked for by this policy are bound to.

    ``approval_binding`` when the file gives it, else every key its conditions read; plus
    ``environment``. ``("*",)`` when the whole context is bound.
    """
    if policy.approval_binding is not None:
        given = set(policy.approval_binding)
        if WHOLE_CONTEXT in given:
            return (WHOLE_CONTEXT,)
        return tuple(sorted(given | set(ALWAYS_BOUND)))
    keys: set[str] = set(ALWAYS_BOUND)
    for rule in policy.rules:
        if rule.when is None:
            continue
        reads = context_reads(rule.when.node)
        if reads is None:
            return (WHOLE_CONTEXT,)
        keys |= reads
    return tuple(sorted(keys))


def _is_context(node: ex.Node) -> bool:
    return isinstance(node, ex.Root) and node.name == "context"
