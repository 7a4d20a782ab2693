"""The engine protocol: one method from an OPA input document to a checked decision.

Every engine — the embedded OPA engine, an OPA server over REST, the fake used in tests —
answers ``decide(input)`` with an :class:`EngineAnswer` or raises an
:class:`~veto_opa.errors.EngineError` subclass whose message names the cause. Engines never
make up a decision of their own: ``Veto.guard()`` is the one place that turns an error into a
fail-closed deny. :func:`check_decision` is the single definition of a well-formed answer,
shared by all engines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from veto_opa.errors import EngineProtocolError

if TYPE_CHECKING:
    from collections.abc import Mapping

_ACTIONS = frozenset({"allow", "deny", "require_approval"})


@dataclass(frozen=True, slots=True)
class EngineAnswer:
    """What an engine answered for one tool call.

    Attributes:
        decision: the ``data.veto.decision`` object, already checked by :func:`check_decision`.
        opa_decision_id: the ``decision_id`` of OPA's answer (present when the server has
            decision logging on); the join key between our record and OPA's decision log.
    """

    decision: dict[str, Any]
    opa_decision_id: str | None = None


class Engine(Protocol):
    """Decides tool calls; implemented by the embedded, REST and fake engines."""

    name: str
    """``"embedded"``, ``"rest"`` or ``"fake"``: recorded with every decision.

    Two optional class attributes tell ``Veto.guard()`` what else an engine takes:
    ``sends_headers`` (default true: pass the span's trace headers) and ``takes_text`` (default
    false: when true, ``decide`` also takes ``text=``, the JSON text of the input, which
    ``guard()`` makes anyway for the record, so the engine need not serialise the input).
    """

    def decide(self, input: dict[str, Any], *,
               headers: Mapping[str, str] | None = None) -> EngineAnswer:
        """Evaluate ``data.veto.decision`` for one OPA input document.

        Args:
            input: ``{"tool", "args", "context", "model", "call_id"}``.
            headers: request headers for engines that speak HTTP, typically the W3C
                ``traceparent``/``tracestate`` of the current span; ignored otherwise.

        Returns:
            The checked decision.

        Raises:
            EngineError: a subclass naming why no decision could be made.
        """
        ...

    def close(self) -> None:
        """Release the engine's resources; ``decide`` must not be called afterwards."""
        ...


def input_text(input: dict[str, Any]) -> str:
    """The JSON text of an input document, for engines given no ``text=``: compact, UTF-8
    kept as is.

    Raises:
        TypeError, ValueError: the input is not JSON (NaN and infinities included).
    """
    return json.dumps(input, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def check_decision(value: object) -> dict[str, Any]:
    """Check that a value is a decision object, as ``rego/veto/decision.rego`` builds it.

    Args:
        value: the value of ``data.veto.decision`` as the engine returned it.

    Returns:
        ``value`` itself (not copied).

    Raises:
        EngineProtocolError: naming the first field that is missing or has the wrong type.
    """
    if type(value) is not dict:
        raise _malformed(f"expected an object, found {_describe(value)}")
    try:
        decision = value["decision"]
        reason = value["reason"]
        rule = value["rule"]
        approvers = value["approvers"]
        matched = value["matched"]
        errors = value["errors"]
        policy = value["policy"]
    except KeyError as missing:
        raise _malformed(f"the field {missing} is missing") from None
    if type(decision) is not str or decision not in _ACTIONS:
        raise _malformed("'decision' must be one of allow, deny, require_approval, found "
                         + _describe(decision))
    if type(reason) is not str:
        raise _malformed(f"'reason' must be a string, found {_describe(reason)}")
    if rule is not None and type(rule) is not str:
        raise _malformed(f"'rule' must be a string or null, found {_describe(rule)}")
    if type(approvers) is not list:
        raise _malformed(f"'approvers' must be a list of strings, found {_describe(approvers)}")
    for approver in approvers:   # loops, not any(...): this runs on every decision
        if type(approver) is not str:
            raise _malformed(
                f"'approvers' must be a list of strings, found {_describe(approvers)}")
    for key, entries in (("matched", matched), ("errors", errors)):
        if type(entries) is not list:
            raise _malformed(f"'{key}' must be a list of objects, found {_describe(entries)}")
        for entry in entries:
            if type(entry) is not dict:
                raise _malformed(
                    f"'{key}' must be a list of objects, found {_describe(entries)}")
    if type(policy) is not dict:
        raise _malformed(f"'policy' must be an object, found {_describe(policy)}")
    return value


def _malformed(problem: str) -> EngineProtocolError:
    return EngineProtocolError(f"the engine's answer is not a decision object: {problem}")


_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
               int: "a number", float: "a number", type(None): "null"}


def _describe(value: object) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return kind if value is None else f"{kind} {text}"
