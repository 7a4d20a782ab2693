"""veto-opa for Mistral: governed tool dispatch for the ``mistralai`` SDK.

    from mistralai.client import Mistral
    from veto_opa import Veto
    from veto_opa.mistral import Toolset, run_agent

    tools = Toolset(Veto(), [execute_sql, rotate_secret])
    result = run_agent(Mistral(), "mistral-large-latest", messages, tools,
                       context={"environment": "production", "user_role": "sre"})
    result.final_answer, result.decisions, result.pending_approvals

- :class:`Toolset` registers functions as tools and dispatches an ``AssistantMessage``'s
  tool calls (``chat.complete``, ``agents.complete``) or a conversation's
  ``FunctionCallEntry`` outputs, each guarded by ``Veto.guard()`` first.
- :func:`run_agent` / :func:`run_agent_async`: the multi-turn loop, streaming included.
- :mod:`veto_opa.mistral.conversations`: ``GovernedRunContext`` for
  ``client.beta.conversations.run_async`` (needs ``mistralai[agents]``).
- :mod:`veto_opa.mistral.standin`: a scripted local stand-in of Mistral's API (the demo and
  the tests).

Needs the ``mistralai`` package: ``pip install 'veto-opa[mistral]'``.
"""

from __future__ import annotations

try:
    import mistralai.client  # noqa: F401
except ImportError as e:   # pragma: no cover - depends on the environment
    raise ImportError("veto_opa.mistral needs the mistralai package: "
                      "pip install 'veto-opa[mistral]'") from e

from veto_opa.mistral.agent import (
    AgentResult,
    AgentTurn,
    StreamedMessage,
    accumulate_stream,
    accumulate_stream_async,
    run_agent,
    run_agent_async,
)
from veto_opa.mistral.tools import (
    ApprovalState,
    CallResult,
    CallStatus,
    RegisteredTool,
    ToolCallRequest,
    Toolset,
)

__all__ = [
    "AgentResult",
    "AgentTurn",
    "ApprovalState",
    "CallResult",
    "CallStatus",
    "RegisteredTool",
    "StreamedMessage",
    "ToolCallRequest",
    "Toolset",
    "accumulate_stream",
    "accumulate_stream_async",
    "run_agent",
    "run_agent_async",
]
