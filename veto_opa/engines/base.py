"""The engine protocol: from an OPA input document to a checked verdict.

Every engine — the embedded OPA engine, an OPA server over REST, the fake used in tests —
answers ``decide(input)`` with an :class:`EngineAnswer` or raises an
:class:`~veto_opa.errors.EngineError` subclass whose message names the cause. Engines never
make up a decision of their own: ``Veto.guard()`` is the one place that turns an error into a
fail-closed deny. The guard hands only inputs it has checked to be JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from veto_opa.decision import Verdict

if TYPE_CHECKING:
    from collections.abc import Mapping

    from veto_opa.translators.bundle import Bundle


@dataclass(frozen=True, slots=True)
class EngineAnswer:
    """What an engine answered for one tool call.

    Attributes:
        verdict: the checked decision (:meth:`Verdict.from_document`).
        opa_decision_id: the ``decision_id`` of OPA's answer (present when the server has
            decision logging on); the join key between our record and OPA's decision log.
    """

    verdict: Verdict
    opa_decision_id: str | None = None


class Engine(Protocol):
    """Decides tool calls; implemented by the embedded, REST and fake engines."""

    name: str
    """``"embedded"``, ``"rest"`` or ``"fake"``: recorded with every decision."""

    def decide(self, input: Mapping[str, Any], *,
               headers: Mapping[str, str] | None = None) -> EngineAnswer:
        """Evaluate ``data.veto.decision`` for one OPA input document.

        Args:
            input: ``{"tool", "args", "context", "model", "call_id"}``, JSON values only.
            headers: request headers for engines that speak HTTP, the W3C
                ``traceparent``/``tracestate`` of the guard's span; ignored otherwise.

        Raises:
            EngineError: a subclass naming why no decision could be made.
        """
        ...

    def reload(self, bundle: Bundle) -> None:
        """Decide with another bundle from now on; calls in flight finish on the old one.

        Raises:
            BundleError: the bundle was rejected; the previous one stays in use.
            VetoError: this engine does not load bundles itself (an OPA server does).
        """
        ...

    def close(self) -> None:
        """Release the engine's resources; ``decide`` must not be called afterwards."""
        ...
