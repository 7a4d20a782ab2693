"""A fake engine driven by a plain function, for tests of the engine's callers.

    engine = FakeEngine(lambda input: {"decision": "allow", ...})
    engine = FakeEngine(lambda input: EngineTimeout("OPA did not answer within 0.5 s"))

Like httpx's ``MockTransport``: the function sees each input document and returns the decision object (checked by
:meth:`~veto_opa.decision.Verdict.from_document`, as a real engine's answer is), an
:class:`~veto_opa.engines.base.EngineAnswer` (to set ``opa_decision_id``), or an exception,
which ``decide`` raises — as it does anything the function raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from veto_opa.decision import Verdict
from veto_opa.engines.base import EngineAnswer
from veto_opa.errors import VetoError

if TYPE_CHECKING:
    from veto_opa.translators.bundle import Bundle

Responder = Callable[[dict[str, Any]], "object | EngineAnswer | BaseException"]


class FakeEngine:
    """Answers each call with what ``fn(input)`` returns.

    Args:
        fn: maps the input document to a decision object, an ``EngineAnswer`` or an exception.

    Attributes:
        calls: every ``(input, headers)`` ``decide`` received, in order.
        closed: whether ``close`` was called.
    """

    name = "fake"

    def __init__(self, fn: Responder) -> None:
        self._fn = fn
        self.calls: list[tuple[dict[str, Any], Mapping[str, str] | None]] = []
        self.closed = False

    def decide(self, input: Mapping[str, Any], *,
               headers: Mapping[str, str] | None = None) -> EngineAnswer:
        """Call ``fn(input)``; raise what it returns or raises, else check its decision.

        Raises:
            EngineProtocolError: ``fn`` returned something that is not a decision object.
            BaseException: whatever ``fn`` returned or raised as an exception.
        """
        document = dict(input)
        self.calls.append((document, headers))
        result = self._fn(document)
        if isinstance(result, BaseException):
            raise result
        if isinstance(result, EngineAnswer):
            return result
        return EngineAnswer(Verdict.from_document(result))

    def reload(self, bundle: Bundle) -> None:
        raise VetoError("the fake engine answers from its function; it loads no bundle")

    def close(self) -> None:
        self.closed = True
