"""The Conversations API: GovernedRunContext under the SDK's own ``run_async``, deferred
calls for approvals, and FunctionCallEntry outputs dispatched by hand."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import pytest
from mistralai.client import Mistral, models
from mistralai.extra.exceptions import DeferredToolCallsException
from mistralai.extra.run.context import RunContext

from tests.mistral.conftest import (
    DROP, MODEL, PROD, SEARCH, SELECT, STRIPE, approve_when_pending, call, calls, outcomes,
    security_approver,
    records, say,
)
from veto_opa.mistral import Toolset
from veto_opa.mistral.conversations import GovernedRunContext, RunStopped, run_conversation
from veto_opa.mistral.standin import MistralStandin, Scripted, ScriptedReply


def converse(replies: list[ScriptedReply],
             body: Callable[[Mistral, MistralStandin], Awaitable[Any]]) -> tuple[Any, Any]:
    """Run ``body(client, standin)`` under asyncio against a stand-in with ``replies``."""
    async def main() -> Any:
        with MistralStandin(Scripted(replies)) as standin, httpx2.Client() as sync_client:
            async with httpx2.AsyncClient() as async_client:
                client = Mistral(api_key="k", server_url=standin.url, client=sync_client,
                                 async_client=async_client)
                return await body(client, standin), standin

    return asyncio.run(main())


def context(tools: Toolset, **options: Any) -> GovernedRunContext:
    return GovernedRunContext(tools, context=PROD, model=MODEL, **options)


def function_results(standin: MistralStandin) -> list[list[dict[str, Any]]]:
    """The function results of each append, parsed."""
    return [[json.loads(e["result"]) if e["result"].startswith(("{", "[")) else e["result"]
             for e in body["inputs"] if e.get("type") == "function.result"]
            for path, body in standin.requests if path != "/v1/conversations"]


def test_allowed_calls_run_and_the_run_ends_with_the_answer(tools, veto, ops) -> None:
    async def body(client: Mistral, _: MistralStandin) -> Any:
        async with context(tools) as run_ctx:
            return await client.beta.conversations.run_async(run_ctx=run_ctx,
                                                             inputs="How many orders?")

    result, standin = converse([calls(call("execute_sql", SELECT)), say("42 orders.")], body)
    assert result.output_as_text == "42 orders."
    assert ops.ran == [("execute_sql", SELECT)]
    assert function_results(standin) == [[[{"count": 42}]]]
    sent_tools = standin.requests[0][1]["tools"]
    assert [t["function"]["name"] for t in sent_tools] == ["execute_sql", "rotate_secret"]
    assert sent_tools[0]["function"]["parameters"]["additionalProperties"] is False
    (record,) = records(veto)
    assert outcomes(veto, record.decision_id) == ["executed"]


def test_a_call_needing_approval_is_deferred_then_confirmed_and_runs_once(tools, veto,
                                                                          ops) -> None:
    async def body(client: Mistral, _: MistralStandin) -> Any:
        async with context(tools, stop_on_refusal=False) as run_ctx:
            with pytest.raises(DeferredToolCallsException) as raised:
                await client.beta.conversations.run_async(run_ctx=run_ctx, inputs="Rotate")
            deferred = raised.value
            (entry,) = deferred.deferred_calls
            assert entry.tool_name == "rotate_secret" and ops.ran == []
            assert entry.metadata["approvers"] == ["security-team"]
            assert deferred.conversation_id == run_ctx.conversation_id
            with security_approver(veto) as dana:
                dana.approve(entry.metadata["approval_id"], "OPS-4711")
            responses = await run_ctx.resolve(deferred)
            result = await client.beta.conversations.run_async(
                run_ctx=run_ctx, inputs=[*responses, *deferred.executed_results])
            return result, entry.metadata["approval_id"]

    (result, approval_id), standin = converse(
        [calls(call("rotate_secret", STRIPE), call("execute_sql", DROP)), say("Rotated.")],
        body)
    assert result.output_as_text == "Rotated."
    assert ops.ran == [("rotate_secret", STRIPE)]
    # The denied call of the same round was answered with its refusal when the run resumed.
    (answers,) = function_results(standin)
    statuses = sorted(a.get("status", "output") for a in answers)
    assert statuses == ["denied", "output"]
    decisions = [(r.tool, r.decision, r.approval_id) for r in records(veto)]
    assert sorted(decisions[:2]) == [("execute_sql", "deny", None),
                                     ("rotate_secret", "require_approval", approval_id)]
    assert decisions[2] == ("rotate_secret", "allow", approval_id)
    assert veto.approvals.get(approval_id).status == "used"


def test_confirming_without_an_approval_does_not_run_the_call(tools, veto, ops) -> None:
    # The SDK lets the caller confirm any deferred call; the policy still decides.
    async def body(client: Mistral, _: MistralStandin) -> Any:
        async with context(tools, stop_on_refusal=False) as run_ctx:
            with pytest.raises(DeferredToolCallsException) as first:
                await client.beta.conversations.run_async(run_ctx=run_ctx, inputs="Rotate")
            (entry,) = first.value.deferred_calls
            with pytest.raises(DeferredToolCallsException) as again:
                await client.beta.conversations.run_async(run_ctx=run_ctx,
                                                          inputs=[entry.confirm()])
            (entry2,) = again.value.deferred_calls
            with pytest.raises(DeferredToolCallsException):
                await client.beta.conversations.run_async(run_ctx=run_ctx, inputs=[
                    entry2.confirm(override_args={"service": "auth-service"})])
            return entry.metadata["approval_id"]

    approval_id, _ = converse([calls(call("rotate_secret", STRIPE))], body)
    assert ops.ran == []
    assert veto.approvals.get(approval_id).status == "pending"


def test_a_rejected_approval_reaches_the_model_with_who_and_why(tools, veto, ops) -> None:
    async def body(client: Mistral, _: MistralStandin) -> Any:
        async with context(tools) as run_ctx:
            approver = approve_when_pending(veto, reject=True)
            outcome = await run_conversation(client, run_ctx, "Rotate", wait_for_approval=10)
            approver.join()
            return outcome

    outcome, standin = converse([calls(call("rotate_secret", STRIPE)), say("Not rotated.")],
                                body)
    assert outcome.stop_reason == "answer" and outcome.final_answer == "Not rotated."
    assert ops.ran == []
    ((told,),) = function_results(standin)
    assert told["status"] == "rejected" and told["rejected_by"] == "dana"
    assert told["justification"] == "OPS-4711"


def test_run_conversation_waits_for_the_approval_and_resumes(tools, veto, ops) -> None:
    async def body(client: Mistral, _: MistralStandin) -> Any:
        async with context(tools) as run_ctx:
            approver = approve_when_pending(veto)
            outcome = await run_conversation(client, run_ctx, "Rotate", wait_for_approval=10)
            approver.join()
            return outcome

    outcome, _ = converse([calls(call("rotate_secret", STRIPE)), say("Rotated.")], body)
    assert outcome.final_answer == "Rotated." and ops.ran == [("rotate_secret", STRIPE)]
    assert [c.status for c in outcome.calls] == ["pending_approval", "executed"]


def test_still_pending_approval_is_answered_pending_and_the_run_goes_on(tools, veto,
                                                                        ops) -> None:
    async def body(client: Mistral, _: MistralStandin) -> Any:
        async with context(tools) as run_ctx:
            return await run_conversation(client, run_ctx, "Rotate", wait_for_approval=0)

    outcome, standin = converse([calls(call("rotate_secret", STRIPE)), say("Waiting.")], body)
    assert outcome.final_answer == "Waiting." and ops.ran == []
    ((told,),) = function_results(standin)
    assert told["status"] == "pending_approval" and told["approval_id"]


@pytest.mark.parametrize("bad", [call("drop_database", "{}"), call("execute_sql", DROP),
                                 call("execute_sql", '{"statement": ')],
                         ids=["unknown-function", "denied", "invalid-json"])
def test_refusals_end_the_run_cleanly(tools, veto, ops, bad: Any) -> None:
    # The SDK's own RunContext loops forever on an unknown function; this stops at once.
    async def body(client: Mistral, _: MistralStandin) -> Any:
        async with context(tools) as run_ctx:
            return await run_conversation(client, run_ctx, "Triage")

    outcome, standin = converse([calls(call("execute_sql", SELECT), bad)], body)
    assert outcome.stop_reason == "refused" and outcome.final_answer is None
    assert len(standin.requests) == 1   # no request after the refusal
    stopped = outcome.stopped
    assert stopped is not None and stopped.conversation_id == outcome.conversation_id
    assert [c.status for c in stopped.calls] == ["executed", "denied"]
    assert [r.tool_call_id for r in stopped.results] == [c.call.call_id for c in stopped.calls]
    assert sorted(r.decision for r in records(veto)) == ["allow", "deny"]


def test_a_refusal_stops_the_run_even_beside_a_call_waiting_for_approval(tools, ops) -> None:
    async def body(client: Mistral, _: MistralStandin) -> Any:
        async with context(tools) as run_ctx:
            return await run_conversation(client, run_ctx, "Triage", wait_for_approval=0)

    outcome, standin = converse([calls(call("rotate_secret", STRIPE),
                                       call("execute_sql", DROP))], body)
    assert outcome.stop_reason == "refused" and len(standin.requests) == 1
    assert [c.status for c in outcome.calls] == ["pending_approval", "denied"]


def test_stopped_run_can_be_resumed_to_let_the_model_react(tools, veto) -> None:
    async def body(client: Mistral, _: MistralStandin) -> Any:
        async with context(tools) as run_ctx:
            with pytest.raises(RunStopped) as stopped:
                await client.beta.conversations.run_async(run_ctx=run_ctx, inputs="Triage")
            return await client.beta.conversations.run_async(run_ctx=run_ctx,
                                                             inputs=stopped.value.results)

    result, standin = converse([calls(call("execute_sql", DROP)), say("I will not drop it.")],
                               body)
    assert result.output_as_text == "I will not drop it."
    ((told,),) = function_results(standin)
    assert told["status"] == "denied"


def test_without_stop_on_refusal_max_rounds_bounds_a_stubborn_model(tools, veto) -> None:
    async def body(client: Mistral, _: MistralStandin) -> Any:
        async with context(tools, stop_on_refusal=False, max_rounds=3) as run_ctx:
            return await run_conversation(client, run_ctx, "Triage")

    outcome, standin = converse([calls(call("drop_database", "{}"))] * 3, body)
    assert outcome.stop_reason == "max_rounds" and len(standin.requests) == 3
    assert [c.status for c in outcome.calls] == ["denied"] * 3


def test_the_sdks_own_context_answers_an_unknown_function_with_nothing(tools) -> None:
    # Why GovernedRunContext exists: the SDK's RunContext answers an unknown function with
    # no result at all, and run_async appends an empty input (a lenient server answers, and
    # the SDK loops; the real API refuses the unanswered call, as the stand-in does).
    async def body(client: Mistral, _: MistralStandin) -> Any:
        async with RunContext(model=MODEL) as run_ctx:
            def lookup(q: str) -> str:
                """Look up."""
                return q

            run_ctx.register_func(lookup)
            with pytest.raises(Exception, match="Not the same number of function calls"):
                await client.beta.conversations.run_async(run_ctx=run_ctx, inputs="Triage")

    _, standin = converse([calls(call("drop_database", "{}"))] * 5, body)
    assert standin.requests[1][1]["inputs"] == []


def test_dispatching_entries_of_start_and_append_by_hand(tools, veto, ops) -> None:
    async def body(client: Mistral, _: MistralStandin) -> Any:
        response = await client.beta.conversations.start_async(
            inputs="Triage", model=MODEL, tools=tools.function_tools)
        results = await tools.dispatch_entries_async(response.outputs, context=PROD)
        answered = await client.beta.conversations.append_async(
            conversation_id=response.conversation_id,
            inputs=[r.function_result() for r in results])
        return results, answered

    (results, answered), standin = converse(
        [calls(call("execute_sql", SELECT), call("execute_sql", DROP)), say("done")], body)
    assert [r.status for r in results] == ["executed", "denied"]
    assert isinstance(answered.outputs[0], models.MessageOutputEntry)
    assert [[a.get("status", "rows") if isinstance(a, dict) else "rows" for a in round_]
            for round_ in function_results(standin)] == [["rows", "denied"]]


def test_dispatch_entries_sync(tools, ops) -> None:
    entries = [models.MessageOutputEntry(content="thinking"),
               models.FunctionCallEntry(tool_call_id="abcdEFGH1", name="execute_sql",
                                        arguments=json.dumps(SEARCH))]
    (result,) = tools.dispatch_entries(entries, context=PROD)
    assert result.status == "denied" and "Additional properties" in result.decision.reason
    assert result.function_result().tool_call_id == "abcdEFGH1"


def test_registering_through_the_context(tools, veto) -> None:
    async def body() -> None:
        async with context(Toolset(veto)) as run_ctx:
            def lookup(q: str) -> str:
                """Look up."""
                return q

            assert run_ctx.register_func(lookup) is lookup
            assert [t.function.name for t in run_ctx.get_tools()] == ["lookup"]
            assert run_ctx.requires_confirmation("lookup") is False
            with pytest.raises(Exception, match="require_approval rule"):
                run_ctx.register_func(lookup, requires_confirmation=True)
            with pytest.raises(Exception, match="MCP tools cannot be registered"):
                await run_ctx.register_mcp_client(None)   # type: ignore[arg-type]

    asyncio.run(body())
    with pytest.raises(ValueError, match="max_rounds"):
        context(tools, max_rounds=0)
