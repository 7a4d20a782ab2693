"""run_agent / run_agent_async: the multi-turn loop through the real SDK and the stand-in,
streaming included."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import pytest
from mistralai.client import Mistral, models
from opentelemetry.trace import SpanKind

from tests.mistral.conftest import (
    DROP, MODEL, PROD, SEARCH, SELECT, STRIPE, USER, approve_when_pending, call, calls,
    security_approver,
    outcomes, records, say, tool_message_bodies,
)
from veto_opa.mistral import AgentTurn, accumulate_stream, run_agent, run_agent_async
from veto_opa.mistral.standin import Scripted, ScriptedReply


def test_multi_turn_run_answers_every_call_and_ends_with_the_answer(serve, tools, veto,
                                                                    ops) -> None:
    standin, client = serve([
        calls(call("execute_sql", SELECT), call("execute_sql", DROP)),
        calls(call("rotate_secret", SEARCH, as_text=False)),
        say("Orders look normal; I rotated the search secret and did not drop anything."),
    ])
    seen: list[AgentTurn] = []
    result = run_agent(client, MODEL, USER, tools, PROD, on_turn=seen.append)
    assert result.stop_reason == "answer"
    assert result.final_answer.startswith("Orders look normal")
    assert [t.number for t in result.turns] == [1, 2, 3] and seen == list(result.turns)
    assert [c.status for c in result.calls] == ["executed", "denied", "executed"]
    assert [d.decision for d in result.decisions] == ["allow", "deny", "allow"]
    assert ops.ran == [("execute_sql", SELECT), ("rotate_secret", SEARCH)]
    # The model saw the denial as a tool message, and the history it got is whole.
    second = standin.requests[1][1]
    assert tool_message_bodies(second)[1]["status"] == "denied"
    assert second["tool_choice"] == "auto" and second["model"] == MODEL
    roles = [m["role"] if isinstance(m, dict) else m.role for m in result.messages]
    assert roles == ["user", "assistant", "tool", "tool", "assistant", "tool", "assistant"]
    assert isinstance(result.messages[-1], models.AssistantMessage)
    assert USER == [{"role": "user", "content": "Triage ticket OPS-4711"}]   # not changed
    assert result.pending_approvals == ()


@pytest.mark.parametrize("tool_choice", ["any", "required"])
def test_forced_tool_choice_after_a_denial_ends_at_max_turns(serve, tools, veto, ops,
                                                            tool_choice: str) -> None:
    # A model forced to call a tool keeps calling the denied one: the loop must end.
    standin, client = serve([calls(call("execute_sql", DROP))] * 3)
    result = run_agent(client, MODEL, USER, tools, PROD, tool_choice=tool_choice, max_turns=3)
    assert result.stop_reason == "max_turns" and result.final_answer is None
    assert len(standin.requests) == 3 and len(result.turns) == 3
    assert all(body["tool_choice"] == tool_choice for _, body in standin.requests)
    assert [c.status for c in result.calls] == ["denied"] * 3 and ops.ran == []
    assert [r.decision for r in records(veto)] == ["deny"] * 3
    assert isinstance(result.messages[-1], models.ToolMessage)   # every call answered


def test_specific_function_tool_choice_is_sent(serve, tools) -> None:
    standin, client = serve([calls(call("execute_sql", SELECT)), say("done")])
    choice = {"type": "function", "function": {"name": "execute_sql"}}
    result = run_agent(client, MODEL, USER, tools, PROD, tool_choice=choice,
                       completion_args={"temperature": 0, "parallel_tool_calls": False})
    assert result.final_answer == "done"
    sent = standin.requests[0][1]
    assert sent["tool_choice"] == choice and sent["temperature"] == 0
    assert sent["parallel_tool_calls"] is False


def test_pending_approval_then_the_model_retries_after_the_approval(serve, tools, veto,
                                                                    ops) -> None:
    standin, client = serve([calls(call("rotate_secret", STRIPE)),
                             say("The rotation waits for security."),
                             calls(call("rotate_secret", STRIPE)), say("Rotated.")])
    first = run_agent(client, MODEL, USER, tools, PROD)
    (pending,) = first.pending_approvals
    assert pending.status == "pending_approval" and ops.ran == []
    with security_approver(veto) as dana:
        dana.approve(pending.approval_id, "OPS-4711")
    retry = run_agent(client, MODEL, [*first.messages,
                                      {"role": "user", "content": "Approved, go ahead."}],
                      tools, PROD)
    assert retry.final_answer == "Rotated." and retry.pending_approvals == ()
    (done,) = retry.calls
    assert done.status == "executed" and done.decision.approval_id == pending.approval_id
    assert ops.ran == [("rotate_secret", STRIPE)]
    assert outcomes(veto, done.decision.decision_id) == ["executed"]


def test_waiting_for_approval_inside_the_loop_re_dispatches(serve, tools, veto, ops) -> None:
    standin, client = serve([calls(call("rotate_secret", STRIPE)), say("Rotated.")])
    approver = approve_when_pending(veto)
    result = run_agent(client, MODEL, USER, tools, PROD, wait_for_approval=10)
    approver.join()
    assert result.final_answer == "Rotated." and result.pending_approvals == ()
    assert [d.decision for d in result.decisions] == ["require_approval", "allow"]
    assert ops.ran == [("rotate_secret", STRIPE)]
    assert tool_message_bodies(standin.requests[1][1]) == [{"service": "stripe",
                                                            "version": 8}]


def test_pending_approvals_are_listed_once_per_approval(serve, tools) -> None:
    _, client = serve([calls(call("rotate_secret", STRIPE)),
                       calls(call("rotate_secret", STRIPE)), say("Waiting.")])
    result = run_agent(client, MODEL, USER, tools, PROD)
    assert [c.status for c in result.calls] == ["pending_approval"] * 2
    (pending,) = result.pending_approvals   # the store gave the retry the same approval
    assert pending.approval_id == result.calls[1].approval_id


def test_agents_complete_with_an_agent_id(serve, tools, ops) -> None:
    standin, client = serve([calls(call("execute_sql", SELECT)), say("done")])
    result = run_agent(client, MODEL, USER, tools, PROD, agent_id="ag_0123")
    assert result.final_answer == "done" and ops.ran == [("execute_sql", SELECT)]
    assert [path for path, _ in standin.requests] == ["/v1/agents/completions"] * 2
    assert standin.requests[0][1]["agent_id"] == "ag_0123"
    assert "model" not in standin.requests[0][1]


def test_max_turns_must_be_positive(serve, tools) -> None:
    _, client = serve([])
    with pytest.raises(ValueError, match="max_turns must be at least 1"):
        run_agent(client, MODEL, USER, tools, PROD, max_turns=0)


def test_an_api_error_stops_the_run_with_the_sdk_error(serve, tools, veto) -> None:
    from mistralai.client import errors

    _, client = serve([calls(call("execute_sql", DROP))])   # no second reply: HTTP 500
    with pytest.raises(errors.SDKError, match="stand-in script failed"):
        run_agent(client, MODEL, USER, tools, PROD)
    assert [r.decision for r in records(veto)] == ["deny"]   # what was decided is recorded


# -- streaming ------------------------------------------------------------------------------

def test_streamed_calls_are_guarded_once_complete(serve, tools, veto, ops) -> None:
    standin, client = serve([
        ScriptedReply(content="Checking the database.",
                      calls=(call("execute_sql", SELECT), call("execute_sql", DROP))),
        say("All good."),
    ], split_arguments=4)
    texts: list[str] = []
    result = run_agent(client, MODEL, USER, tools, PROD, stream=True, on_text=texts.append)
    assert standin.requests[0][1]["stream"] is True
    assert "".join(texts) == "Checking the database.All good."
    first = result.turns[0]
    assert first.text == "Checking the database." and first.answer.finish_reason == "tool_calls"
    arguments = [c.function.arguments for c in first.answer.message.tool_calls]
    assert [json.loads(a) for a in arguments] == [SELECT, DROP]   # joined from 4 pieces
    assert [c.status for c in result.calls] == ["executed", "denied"]
    assert [r.decision for r in records(veto)] == ["allow", "deny"]   # once per call
    assert ops.ran == [("execute_sql", SELECT)]
    assert result.final_answer == "All good."


def test_a_split_injection_is_judged_whole(serve, tools, veto, ops) -> None:
    # "DROP TA" + "BLE customers": no fragment alone matches the rule; the whole does.
    _, client = serve([calls(call("execute_sql", DROP)), say("ok")], split_arguments=9)
    result = run_agent(client, MODEL, USER, tools, PROD, stream=True)
    assert result.calls[0].status == "denied" and ops.ran == []


def test_stream_with_dict_arguments(serve, tools, ops) -> None:
    _, client = serve([calls(call("execute_sql", SELECT, as_text=False)), say("ok")],
                      split_arguments=3)
    result = run_agent(client, MODEL, USER, tools, PROD, stream=True)
    assert result.calls[0].call.arguments == SELECT and ops.ran == [("execute_sql", SELECT)]


def chunk(*, content: str | None = None, calls: list[dict[str, Any]] | None = None,
          finish: str | None = None) -> models.CompletionEvent:
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if calls is not None:
        delta["tool_calls"] = calls
    return models.CompletionEvent.model_validate({"data": {
        "id": "c1", "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}})


def fragment(arguments: Any, *, id: str = "null", index: int = 0,
             name: str = "execute_sql") -> dict[str, Any]:
    return {"id": id, "index": index, "function": {"name": name, "arguments": arguments}}


def test_accumulate_joins_fragments_per_call_by_id_then_by_index() -> None:
    events = [
        chunk(content="Hi"),
        chunk(calls=[fragment('{"statement": ', id="aaaaaaaa1")]),
        chunk(calls=[fragment('{"statement": ', id="bbbbbbbb2")]),   # same index 0, new id
        chunk(calls=[fragment('"SELECT 1"}', id="aaaaaaaa1")]),
        chunk(calls=[fragment('"DROP"}', id="bbbbbbbb2")]),
        chunk(calls=[fragment('{"a"', index=2), fragment(':1}', index=2)]),   # no ids
        chunk(content="", finish="tool_calls"),
    ]
    streamed = accumulate_stream(events)
    calls_ = streamed.message.tool_calls
    assert [(c.id, c.index, c.function.arguments) for c in calls_] == [
        ("aaaaaaaa1", 0, '{"statement": "SELECT 1"}'),
        ("bbbbbbbb2", 0, '{"statement": "DROP"}'),
        ("null", 2, '{"a":1}'),
    ]
    assert streamed.message.content == "Hi" and streamed.finish_reason == "tool_calls"


def test_accumulate_never_merges_two_objects_into_one() -> None:
    streamed = accumulate_stream([chunk(calls=[fragment({"statement": "SELECT 1"})]),
                                  chunk(calls=[fragment({"database": "analytics"})])])
    (merged,) = streamed.message.tool_calls
    with pytest.raises(ValueError):
        json.loads(merged.function.arguments)   # refused as invalid JSON, not guessed at


# -- asyncio --------------------------------------------------------------------------------

def run_async(standin_url: str, coroutine: Any) -> Any:
    async def main() -> Any:
        with httpx2.Client() as sync_client:
            async with httpx2.AsyncClient() as async_client:
                client = Mistral(api_key="k", server_url=standin_url, client=sync_client,
                                 async_client=async_client)
                return await coroutine(client)

    return asyncio.run(main())


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_async_run_with_parallel_calls_and_approval(serve, tools, veto, ops,
                                                    stream: bool) -> None:
    standin, _ = serve([calls(call("execute_sql", SELECT), call("execute_sql", DROP),
                              call("rotate_secret", STRIPE)), say("done")],
                       split_arguments=2)
    approver = approve_when_pending(veto)
    result = run_async(standin.url, lambda client: run_agent_async(
        client, MODEL, USER, tools, PROD, stream=stream, wait_for_approval=10))
    approver.join()
    assert result.final_answer == "done"
    assert [c.status for c in result.calls] == ["executed", "denied", "executed"]
    assert sorted(ops.ran, key=str) == sorted([("execute_sql", SELECT),
                                               ("rotate_secret", STRIPE)], key=str)
    assert [b.get("status") if isinstance(b, dict) else "rows"
            for b in tool_message_bodies(standin.requests[1][1])] == ["rows", "denied", None]


def test_async_forced_choice_ends_at_max_turns(serve, tools, ops) -> None:
    standin, _ = serve([calls(call("nope", "{}"))] * 2)
    result = run_async(standin.url, lambda client: run_agent_async(
        client, MODEL, USER, tools, PROD, tool_choice="any", max_turns=2, agent_id="ag_1"))
    assert result.stop_reason == "max_turns" and len(standin.requests) == 2
    assert [c.status for c in result.calls] == ["denied", "denied"]


# -- spans ----------------------------------------------------------------------------------

def test_agent_spans_join_one_trace(serve, tools, spans_out) -> None:
    _, exporter = spans_out
    _, client = serve([calls(call("execute_sql", DROP)), say("ok")])
    run_agent(client, MODEL, USER, tools, PROD, name="sre-agent")
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    tree = sorted((by_id[s.parent.span_id].name if s.parent else "", s.name) for s in spans)
    assert tree == [
        ("", "invoke_agent sre-agent"),
        ("execute_tool execute_sql", "veto.guard execute_sql"),
        ("invoke_agent sre-agent", "chat mistral-large-latest"),
        ("invoke_agent sre-agent", "chat mistral-large-latest"),
        ("invoke_agent sre-agent", "execute_tool execute_sql"),
    ]
    assert len({s.context.trace_id for s in spans}) == 1
    chat = next(s for s in spans if s.name.startswith("chat"))
    assert chat.kind is SpanKind.CLIENT
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "mistral_ai"
    assert chat.attributes["gen_ai.request.model"] == MODEL
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert chat.attributes["gen_ai.usage.input_tokens"] == 100
    agent = next(s for s in spans if s.name.startswith("invoke_agent"))
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.agent.name"] == "sre-agent"


def test_scripted_helper_fails_requests_past_its_end() -> None:
    script = Scripted([say("one")])
    assert script(None) == say("one")   # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="no reply 2"):
        script(None)   # type: ignore[arg-type]


def test_arguments_cut_short_by_the_token_limit_are_refused(tools, ops) -> None:
    streamed = accumulate_stream([chunk(calls=[fragment('{"statement": "DROP', id="aaaaaaaa1")]),
                                  chunk(finish="length")])
    assert streamed.finish_reason == "length"
    (result,) = tools.dispatch_calls(streamed.message, context=PROD)
    assert result.status == "denied" and ops.ran == []
    assert "not valid JSON text" in result.decision.reason
