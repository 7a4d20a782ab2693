"""Every exception veto-opa raises, in one tree.

    VetoError
    ├── ConfigurationError ..... a setting is invalid, or the veto home cannot be created
    ├── PolicyError ............ a policy file is malformed; carries every Diagnostic found
    ├── BundleError ............ a bundle cannot be built, read or loaded
    │   └── SignatureError ..... a bundle signature is missing, invalid or does not cover the files
    ├── EngineError ............ the engine could not produce a decision (guard() turns it into deny)
    │   ├── EngineUnavailable .. connection refused, DNS failure, TLS failure
    │   ├── EngineTimeout ...... no answer within the configured timeout
    │   ├── EngineProtocolError  HTTP error status or an answer that is not the expected JSON
    │   ├── PolicyNotLoaded .... the decision document is undefined (bundle not loaded, wrong path)
    │   └── EngineEvaluationError  the engine raised while evaluating
    ├── InvalidToolCall ........ the tool call itself cannot be evaluated (arguments not a JSON
    │                            object, not valid JSON text, over the size limit)
    ├── RecordError ............ the decision record store failed
    ├── ToolCallBlocked ........ raised by the @veto.tool decorator; carries the Decision
    │   ├── Denied
    │   └── ApprovalRequired
    └── ApprovalError .......... an approval cannot be granted or used
        └── ApprovalExpired

Engines raise; ``Veto.guard()`` is the one place that turns these into a fail-closed deny.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from veto_opa.translators.diagnostics import Diagnostic


class VetoError(Exception):
    """Base class of every veto-opa error."""


class ConfigurationError(VetoError):
    """A setting is invalid (naming its ``VETO_*`` variable), or the veto home cannot be
    created or written."""


class PolicyError(VetoError):
    """One or more problems in policy files, sorted by position.

    Attributes:
        diagnostics: every problem found, each rendering as ``file:line:col: message``.
    """

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: d.sort_key())
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class BundleError(VetoError):
    """A bundle cannot be built, read or loaded."""


class SignatureError(BundleError):
    """A bundle's ``.signatures.json`` is missing, invalid, or does not match the files."""


class EngineError(VetoError):
    """The policy engine could not produce a decision.

    ``cause`` is a short stable name for records and span attributes (``error.type``).
    """

    cause = "engine_error"


class EngineUnavailable(EngineError):
    """The engine cannot be reached: connection refused, DNS or TLS failure."""

    cause = "engine_unavailable"


class EngineTimeout(EngineError):
    """The engine did not answer within the timeout."""

    cause = "engine_timeout"


class EngineProtocolError(EngineError):
    """The engine answered with an HTTP error or something that is not a decision."""

    cause = "engine_protocol_error"


class PolicyNotLoaded(EngineError):
    """``data.veto.decision`` is undefined: the bundle is not loaded, or the path is wrong."""

    cause = "policy_not_loaded"


class EngineEvaluationError(EngineError):
    """The engine raised while evaluating the decision."""

    cause = "engine_evaluation_error"


class InvalidToolCall(VetoError):
    """The tool call cannot be evaluated: its arguments are unusable as policy input."""

    cause = "invalid_tool_call"


class RecordError(VetoError):
    """The decision record store failed to write or read."""


class ToolCallBlocked(VetoError):
    """Raised by ``@veto.tool`` when a call is not allowed to run.

    Attributes:
        decision: the :class:`veto_opa.Decision` that blocked the call.
    """

    def __init__(self, decision: Any) -> None:
        self.decision = decision
        super().__init__(f"{decision.decision}: {decision.reason}")


class Denied(ToolCallBlocked):
    """The policy denied the call."""


class ApprovalRequired(ToolCallBlocked):
    """The call needs a human approval first; ``decision.approval_id`` names the request."""


class ApprovalError(VetoError):
    """An approval cannot be granted, rejected or used."""


class ApprovalExpired(ApprovalError):
    """The approval's time ran out before it was used."""
