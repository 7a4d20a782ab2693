"""veto-opa: runtime authorization for LLM tool calls, decided by Open Policy Agent.

    from veto_opa import Veto

    veto = Veto()                      # veto/policies.yaml in the embedded OPA engine
    decision = veto.guard(tool="execute_sql",
                          arguments={"statement": "DROP TABLE customers", "database": "main"},
                          context={"environment": "production"})
    decision.decision                  # "deny"
    decision.reason                    # "Destructive SQL is not allowed on production databases"

Configuration is read from ``VETO_*`` variables (see :mod:`veto_opa.config`); policies are
compiled to Rego by :mod:`veto_opa.translators`; decisions are recorded by
:mod:`veto_opa.records`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from veto_opa.config import VetoSettings
from veto_opa.decision import Decision, Match, RuleError, Verdict
from veto_opa.errors import (
    ApprovalError,
    ApprovalExpired,
    ApprovalRequired,
    BundleError,
    ConfigurationError,
    Denied,
    EngineError,
    EngineEvaluationError,
    EngineProtocolError,
    EngineTimeout,
    EngineUnavailable,
    InvalidToolCall,
    PolicyError,
    PolicyNotLoaded,
    RecordError,
    SignatureError,
    ToolCallBlocked,
    VetoError,
)
from veto_opa.veto import Veto

__all__ = [
    "ApprovalError",
    "ApprovalExpired",
    "ApprovalRequired",
    "BundleError",
    "ConfigurationError",
    "Decision",
    "Denied",
    "EngineError",
    "EngineEvaluationError",
    "EngineProtocolError",
    "EngineTimeout",
    "EngineUnavailable",
    "InvalidToolCall",
    "Match",
    "PolicyError",
    "PolicyNotLoaded",
    "RecordError",
    "RuleError",
    "SignatureError",
    "ToolCallBlocked",
    "Verdict",
    "Veto",
    "VetoError",
    "VetoSettings",
    "__version__",
]
