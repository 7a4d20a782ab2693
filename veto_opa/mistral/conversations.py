"""Governed local functions for the Conversations API's ``run_async``.

    from veto_opa.mistral.conversations import GovernedRunContext, run_conversation

    async with GovernedRunContext(tools, context=ctx, model="mistral-large-latest") as run_ctx:
        outcome = await run_conversation(client, run_ctx, "Triage ticket OPS-4711",
                                         wait_for_approval=300)
    outcome.final_answer, outcome.stop_reason, outcome.calls

``client.beta.conversations.run_async`` executes the model's function calls itself, through
its ``RunContext``; :class:`GovernedRunContext` is a ``RunContext`` whose
``execute_function_calls`` — the one place the SDK runs local functions, confirmed deferred
calls included — guards every call through the toolset first:

- allowed calls run, and their results go back to the model;
- a call that needs approval raises the SDK's own ``DeferredToolCallsException``:
  :meth:`GovernedRunContext.resolve` turns each deferred call into ``confirm()`` once its
  approval is granted (when the run resumes the call is guarded again and runs once), or
  ``reject()`` with the refusal the model gets (rejected, expired, still pending);
- a denied or unknown call ends the run with :class:`RunStopped` (``stop_on_refusal``), whose
  ``results`` can be sent to let the model react, instead of the SDK's endless loop on a
  function it does not know; and no run goes past ``max_rounds`` rounds of calls.

:func:`run_conversation` does all of that and returns a :class:`ConversationOutcome`.

Needs ``mistralai[agents]`` (``run_async`` imports ``mcp``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mistralai.client import models

try:
    from mistralai.extra.exceptions import (
        DeferralReason,
        DeferredToolCallEntry,
        DeferredToolCallResponse,
        DeferredToolCallsException,
        RunException,
    )
    from mistralai.extra.run.context import RunContext
except ImportError as e:   # pragma: no cover - depends on the environment
    raise ImportError("veto_opa.mistral.conversations needs the mistralai agents extra: "
                      "pip install 'mistralai[agents]'") from e

from veto_opa.mistral.tools import CallResult, _wait_for_approval, refusal

if TYPE_CHECKING:
    from mistralai.client import Mistral
    from mistralai.extra.mcp.base import MCPClientProtocol
    from mistralai.extra.run.result import RunResult

    from veto_opa.mistral.tools import Toolset

StopReason = Literal["answer", "refused", "max_rounds"]


class RunStopped(RunException):
    """A governed run stopped before sending the model this round's answers.

    Attributes:
        reason: ``refused`` (a call was denied, rejected or unknown, and the context stops on
            refusals) or ``max_rounds``.
        conversation_id: the conversation, to continue it.
        calls: the round's calls, in order.
        results: one ``FunctionResultEntry`` per call of the round, in order: pass them as
            ``run_async(run_ctx, inputs=stopped.results)`` to let the model react.
    """

    def __init__(self, reason: StopReason, conversation_id: str | None,
                 calls: Sequence[CallResult]) -> None:
        self.reason = reason
        self.conversation_id = conversation_id
        self.calls = tuple(calls)
        self.results = [call.function_result() for call in calls]
        what = ", ".join(f"{c.call.name}: {c.status}" for c in calls)
        super().__init__(f"run stopped ({reason}) after {what}")


class GovernedRunContext(RunContext):
    """A ``RunContext`` whose function calls are the toolset's, each guarded first.

    Args:
        toolset: the functions, and the ``Veto`` guarding them.
        context: facts about the calls the model does not choose, for every guard call.
        model, agent_id, conversation_id, output_format: as ``RunContext``'s.
        stop_on_refusal: end the run with :class:`RunStopped` after a round with a refused
            call (denied, rejected, expired, unknown tool, invalid arguments); with False the
            model gets the refusals and the run goes on.
        max_rounds: most rounds of function calls; the round that reaches it ends the run
            with :class:`RunStopped` (``max_rounds``).
        wait_for_approval: seconds each round waits for a human to decide a call that needs
            approval before deferring it (0: defer at once).
    """

    def __init__(self, toolset: Toolset, *, context: Mapping[str, Any],
                 model: str | None = None, agent_id: str | None = None,
                 conversation_id: str | None = None, output_format: Any = None,
                 stop_on_refusal: bool = True, max_rounds: int = 8,
                 wait_for_approval: float = 0.0) -> None:
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, found {max_rounds}")
        super().__init__(conversation_id=conversation_id, model=model, agent_id=agent_id,
                         output_format=output_format)
        self.toolset = toolset
        self.context = dict(context)
        self.stop_on_refusal = stop_on_refusal
        self.max_rounds = max_rounds
        self.wait_for_approval = wait_for_approval
        self.rounds = 0
        self.calls: list[CallResult] = []

    def register_func(self, func: Any, requires_confirmation: bool = False) -> Any:
        """Add ``func`` to the toolset. Whether a call needs a human is the policy's to say
        (a ``require_approval`` rule), so ``requires_confirmation`` is refused."""
        if requires_confirmation:
            raise RunException("GovernedRunContext: approvals come from the policy; write a "
                               "require_approval rule instead of requires_confirmation")
        self.toolset.add(func)
        return func

    async def register_mcp_client(self, mcp_client: MCPClientProtocol,
                                  tool_configuration: dict[str, list[str]] | None = None
                                  ) -> None:
        """Refused: only the toolset's functions are governed (MCP tools are not yet)."""
        raise RunException("GovernedRunContext governs the toolset's functions only; "
                           "MCP tools cannot be registered")

    def requires_confirmation(self, tool_name: str) -> bool:
        return False   # the policy decides, per call, inside execute_function_calls

    def get_tools(self) -> list[models.FunctionTool]:
        return self.toolset.function_tools

    async def execute_function_calls(self, function_calls: list[models.FunctionCallEntry]
                                     ) -> list[models.FunctionResultEntry]:
        """Guard every call of the round, run the allowed ones (concurrently), and answer
        them — or defer the calls that need approval, or stop (see the class).

        Raises:
            DeferredToolCallsException: some calls wait for an approval; ``executed_results``
                answers the others.
            RunStopped: a call was refused (``stop_on_refusal``), or ``max_rounds`` reached.
        """
        self.rounds += 1
        results = await self.toolset.dispatch_entries_async(
            function_calls, context=self.context, model=self.model,
            wait_for_approval=self.wait_for_approval)
        self.calls.extend(results)
        pending = [(entry, result) for entry, result in zip(function_calls, results,
                                                            strict=True)
                   if result.status == "pending_approval"]
        if self.stop_on_refusal and any(r.refused for r in results):
            raise RunStopped("refused", self.conversation_id, results)
        if pending:
            raise DeferredToolCallsException(
                self.conversation_id,
                [DeferredToolCallEntry(entry, DeferralReason.CONFIRMATION_REQUIRED,
                                       _metadata(result)) for entry, result in pending],
                executed_results=[r.function_result() for r in results
                                  if r.status != "pending_approval"])
        if self.rounds >= self.max_rounds:
            raise RunStopped("max_rounds", self.conversation_id, results)
        return [r.function_result() for r in results]

    async def resolve(self, deferred: DeferredToolCallsException, *, timeout: float = 0.0
                      ) -> list[DeferredToolCallResponse]:
        """The answer to each deferred call, once its approval is decided (waiting up to
        ``timeout`` seconds in all): ``confirm()`` when approved — the call is guarded again
        when the run resumes, and runs once — else ``reject()`` with the refusal the model
        gets (``rejected`` with who and why, ``expired``, or still ``pending_approval``).

        Resume with ``run_async(run_ctx, inputs=[*responses, *deferred.executed_results])``.

        Raises:
            RunException: a deferred call was not deferred by this context.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        responses: list[DeferredToolCallResponse] = []
        for entry in deferred.deferred_calls:
            approval_id = entry.metadata.get("approval_id")
            if not isinstance(approval_id, str):
                raise RunException(f"deferred call {entry.tool_call_id} ({entry.tool_name}) "
                                   "has no veto-opa approval")
            left = max(0.0, deadline - time.monotonic())
            state = await asyncio.to_thread(_wait_for_approval, self.toolset.veto,
                                            approval_id, left)
            if state.status == "approved":
                responses.append(entry.confirm())
                continue
            result = next((c for c in reversed(self.calls)
                           if c.call.call_id == entry.tool_call_id), None)
            if result is None:
                raise RunException(f"deferred call {entry.tool_call_id} was not deferred by "
                                   "this context")
            status: Literal["rejected", "expired", "pending_approval"] = (
                "rejected" if state.status == "rejected" else
                "expired" if state.status == "expired" else "pending_approval")
            responses.append(entry.reject(refusal(status, entry.tool_name, result.decision,
                                                  state)))
        return responses


def _metadata(result: CallResult) -> dict[str, Any]:
    decision = result.decision
    return {"approval_id": decision.approval_id, "decision_id": decision.decision_id,
            "reason": decision.reason, "rule": decision.rule,
            "approvers": list(decision.approvers)}


@dataclass(frozen=True)
class ConversationOutcome:
    """How :func:`run_conversation` ended.

    Attributes:
        stop_reason: ``answer`` (the model answered), ``refused`` or ``max_rounds``.
        conversation_id: the conversation, to continue it.
        calls: every call the context governed during this run, in order.
        result: the SDK's ``RunResult`` when the model answered.
        stopped: the :class:`RunStopped` otherwise (its ``results`` let the model react).
    """

    stop_reason: StopReason
    conversation_id: str | None
    calls: tuple[CallResult, ...]
    result: RunResult | None = None
    stopped: RunStopped | None = None

    @property
    def final_answer(self) -> str | None:
        """The model's text when it answered, else None."""
        if self.result is None or not self.result.output_entries:
            return None
        return self.result.output_as_text


async def run_conversation(client: Mistral, run_ctx: GovernedRunContext,
                           inputs: str | list[Any], *, wait_for_approval: float = 0.0,
                           **run_kwargs: Any) -> ConversationOutcome:
    """``client.beta.conversations.run_async`` governed to the end: deferred calls are
    resolved (waiting up to ``wait_for_approval`` seconds for their approvals each time) and
    the run resumed, until the model answers or the context stops the run.

    Args:
        client: a ``mistralai.client.Mistral``.
        run_ctx: the governed context (it keeps the conversation id between calls).
        inputs: the first inputs (a user message's text, or entries).
        wait_for_approval: seconds to wait for approvals each time calls are deferred.
        **run_kwargs: passed to ``run_async`` (``instructions``, ``completion_args``, ...).
    """
    first = len(run_ctx.calls)
    current: Any = inputs
    while True:
        try:
            result = await client.beta.conversations.run_async(run_ctx=run_ctx, inputs=current,
                                                               **run_kwargs)
        except DeferredToolCallsException as deferred:
            responses = await run_ctx.resolve(deferred, timeout=wait_for_approval)
            current = [*responses, *deferred.executed_results]
            continue
        except RunStopped as stopped:
            return ConversationOutcome(stopped.reason, stopped.conversation_id,
                                       tuple(run_ctx.calls[first:]), stopped=stopped)
        return ConversationOutcome("answer", result.conversation_id,
                                   tuple(run_ctx.calls[first:]), result=result)


__all__ = ["ConversationOutcome", "GovernedRunContext", "RunStopped", "run_conversation"]
