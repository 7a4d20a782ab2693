"""Toolset.dispatch: the model's tool calls, parsed by the real SDK from the stand-in's HTTP
answers, guarded by the seed policy in the embedded OPA engine, recorded in SQLite."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mistralai.client import models
from opentelemetry.trace import SpanKind, StatusCode

from tests.mistral.conftest import (
    DROP, MODEL, PROD, SEARCH, SELECT, STRIPE, USER, approve_when_pending, call, calls,
    security_approver,
    outcomes, records, say,
)
from veto_opa import Veto
from veto_opa.mistral import Toolset


def complete(client: Any, tools: Toolset) -> models.AssistantMessage:
    response = client.chat.complete(model=MODEL, messages=USER, tools=tools.schemas)
    message = response.choices[0].message
    assert isinstance(message, models.AssistantMessage)
    return message


def body(result: Any) -> Any:
    return json.loads(result.content)


# -- the happy path and the order of answers ------------------------------------------------

@pytest.mark.parametrize("as_text", [True, False], ids=["arguments-text", "arguments-dict"])
def test_allowed_call_runs_once_and_records_executed(serve, tools, veto, ops,
                                                     as_text: bool) -> None:
    _, client = serve([calls(call("execute_sql", SELECT, as_text=as_text))])
    message = complete(client, tools)
    assert isinstance(message.tool_calls[0].function.arguments, str if as_text else dict)
    (result,) = tools.dispatch_calls(message, context=PROD, model=MODEL)
    assert result.status == "executed" and result.output == [{"count": 42}]
    assert result.content == '[{"count": 42}]'
    assert ops.ran == [("execute_sql", SELECT)]
    (record,) = records(veto)
    assert (record.decision, record.tool, record.arguments) == ("allow", "execute_sql", SELECT)
    assert record.call_id == message.tool_calls[0].id and record.model == MODEL
    assert outcomes(veto, record.decision_id) == ["executed"]


def test_parallel_calls_answered_in_call_order_with_tool_messages(serve, tools, veto,
                                                                  ops) -> None:
    _, client = serve([calls(call("execute_sql", DROP), call("execute_sql", SELECT),
                             call("rotate_secret", STRIPE, as_text=False))])
    message = complete(client, tools)
    answers = tools.dispatch(message, context=PROD, model=MODEL)
    assert [a.tool_call_id for a in answers] == [c.id for c in message.tool_calls]
    assert [a.name for a in answers] == ["execute_sql", "execute_sql", "rotate_secret"]
    assert all(isinstance(a, models.ToolMessage) for a in answers)
    statuses = [json.loads(a.content).get("status") if a.content.startswith("{") else "output"
                for a in answers]
    assert statuses == ["denied", "output", "pending_approval"]
    assert ops.ran == [("execute_sql", SELECT)]
    assert [r.decision for r in records(veto)] == ["deny", "allow", "require_approval"]


def test_refusals_tell_the_model_why(serve, tools, veto) -> None:
    _, client = serve([calls(call("execute_sql", DROP), call("rotate_secret", STRIPE))])
    denied, pending = tools.dispatch_calls(complete(client, tools), context=PROD)
    assert body(denied) == {
        "status": "denied", "tool": "execute_sql",
        "reason": "Destructive SQL is not allowed on production databases",
        "rule": "block_production_database_deletes",
        "decision_id": denied.decision.decision_id}
    assert body(pending)["status"] == "pending_approval"
    assert body(pending)["approval_id"] == pending.approval_id is not None
    assert body(pending)["approvers"] == ["security-team"]
    assert body(pending)["rule"] == "secret_rotation_high_value"
    assert denied.refused and not pending.refused


def test_the_answered_history_is_accepted_by_the_api(serve, tools) -> None:
    standin, client = serve([calls(call("execute_sql", DROP), call("nope", "{}"),
                                   call("execute_sql", "{bad")), say("ok")])
    message = complete(client, tools)
    answers = tools.dispatch(message, context=PROD)
    response = client.chat.complete(model=MODEL, messages=[*USER, message, *answers],
                                    tools=tools.schemas)
    assert response.choices[0].message.content == "ok"
    assert len(standin.requests) == 2


# -- calls that cannot run: refused, and recorded --------------------------------------------

@pytest.mark.parametrize(("arguments", "reason"), [
    ('{"statement": "SELECT 1", "database": ', "arguments are not valid JSON text: Expecting"),
    ('{"statement": NaN, "database": "analytics"}', "arguments are not valid JSON text"),
    ('["SELECT 1", "analytics"]', "arguments must be a JSON object, found array"),
    ('"SELECT 1"', "arguments must be a JSON object, found string"),
    ('{"statement": "SELECT 1"}', "'database' is a required property"),
    ('{"statement": 7, "database": "analytics"}', "args.statement: 7 is not of type 'string'"),
    ('{"statement": "SELECT 1", "database": "analytics", "as_admin": true}',
     "Additional properties are not allowed ('as_admin' was unexpected)"),
])
def test_invalid_arguments_are_denied_with_a_precise_reason_and_recorded(
        serve, tools, veto, ops, arguments: str, reason: str) -> None:
    _, client = serve([calls(call("execute_sql", arguments))])
    (result,) = tools.dispatch_calls(complete(client, tools), context=PROD)
    assert result.status == "denied" and ops.ran == []
    assert body(result)["cause"] == "invalid_tool_call"
    assert reason in body(result)["reason"]
    (record,) = records(veto)
    assert record.decision == "deny" and record.cause == "invalid_tool_call"
    assert reason in record.reason and record.decision_id == result.decision.decision_id
    assert outcomes(veto, record.decision_id) == []


@pytest.mark.parametrize("name", ["drop_database", "execute_sql ", "__init__", "EXECUTE_SQL"])
def test_unknown_tool_is_denied_and_recorded(serve, tools, veto, ops, name: str) -> None:
    _, client = serve([calls(call(name, SELECT))])
    (result,) = tools.dispatch_calls(complete(client, tools), context=PROD)
    assert result.status == "denied" and ops.ran == []
    assert body(result)["reason"] == (f"invalid_tool_call: unknown tool {name!r}; the tools "
                                      "are: execute_sql, rotate_secret")
    (record,) = records(veto)
    assert (record.tool, record.decision, record.cause) == (name, "deny", "invalid_tool_call")
    assert record.arguments == SELECT   # what the model sent, for the audit


def test_arguments_over_the_size_limit_are_not_parsed_and_are_recorded(serve, veto, ops,
                                                                         tmp_path) -> None:
    from tests.conftest import SEED

    with Veto([SEED], home=tmp_path / "small", reload_interval=0, pool_size=1,
              max_argument_bytes=1000) as small:
        tools = Toolset(small, [ops.execute_sql])
        huge = json.dumps({"statement": "SELECT '" + "x" * 5000 + "'", "database": "analytics"})
        _, client = serve([calls(call("execute_sql", huge))])
        (result,) = tools.dispatch_calls(complete(client, tools), context=PROD)
        assert result.status == "denied" and ops.ran == []
        assert "over the limit of 1000 bytes" in body(result)["reason"]
        (record,) = records(small)
        assert record.cause == "invalid_tool_call" and record.arguments is None


def test_duplicate_keys_decide_and_run_the_same_value(serve, tools, veto, ops) -> None:
    # An attacker hopes the policy reads the first "statement" and the tool the last.
    text = ('{"statement": "SELECT 1", "database": "analytics", '
            '"statement": "DROP TABLE customers"}')
    _, client = serve([calls(call("execute_sql", text))])
    (result,) = tools.dispatch_calls(complete(client, tools), context=PROD)
    assert result.status == "denied" and ops.ran == []
    assert records(veto)[0].arguments["statement"] == "DROP TABLE customers"


def test_tool_that_raises_gives_an_error_message_and_a_failed_outcome(serve, tools, veto,
                                                                      spans_out) -> None:
    _, client = serve([calls(call("execute_sql", {"statement": "SELECT fail()",
                                                  "database": "analytics"}))])
    (result,) = tools.dispatch_calls(complete(client, tools), context=PROD)
    assert result.status == "failed"
    assert result.error == "RuntimeError: connection reset by peer"
    assert body(result) == {"status": "error", "tool": "execute_sql",
                            "error": "RuntimeError: connection reset by peer",
                            "decision_id": result.decision.decision_id}
    assert outcomes(veto, result.decision.decision_id) == ["failed"]
    assert veto.records.outcomes(result.decision.decision_id)[0].error == result.error
    span = next(s for s in spans_out[1].get_finished_spans() if s.name.startswith("execute"))
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "builtins.RuntimeError"


def test_tool_cannot_change_what_was_recorded(serve, veto) -> None:
    seen: list[dict[str, Any]] = []

    def execute_sql(statement: str, database: str, options: dict[str, Any] | None = None
                    ) -> str:
        """Run SQL."""
        assert options is not None
        options["hacked"] = True
        seen.append(options)
        return "ok"

    tools = Toolset(veto, [execute_sql])
    arguments = {**SELECT, "options": {"timeout": 5}}
    _, client = serve([calls(call("execute_sql", arguments, as_text=False))])
    message = complete(client, tools)
    tools.dispatch(message, context=PROD)
    assert seen == [{"timeout": 5, "hacked": True}]
    assert message.tool_calls[0].function.arguments == arguments   # the model's dict: intact
    assert records(veto)[0].arguments == arguments


def test_records_off_still_dispatches(serve, ops, tmp_path) -> None:
    from tests.conftest import SEED

    with Veto([SEED], home=tmp_path, reload_interval=0, records=False, spans=False,
              pool_size=1) as v:
        tools = Toolset(v, [ops.execute_sql])
        _, client = serve([calls(call("execute_sql", SELECT), call("execute_sql", DROP))])
        results = tools.dispatch_calls(complete(client, tools), context=PROD)
        assert [r.status for r in results] == ["executed", "denied"]


# -- approvals ------------------------------------------------------------------------------

def test_waiting_for_an_approval_then_the_call_runs_once(serve, tools, veto, ops) -> None:
    _, client = serve([calls(call("rotate_secret", STRIPE))])
    message = complete(client, tools)
    approver = approve_when_pending(veto)
    (result,) = tools.dispatch_calls(message, context=PROD, wait_for_approval=10)
    approver.join()
    assert result.status == "executed" and ops.ran == [("rotate_secret", STRIPE)]
    first, second = result.decisions
    assert first.decision == "require_approval" and second.decision == "allow"
    assert second.approval_id == first.approval_id
    assert veto.approvals.get(first.approval_id).status == "used"
    assert outcomes(veto, second.decision_id) == ["executed"]
    # The same call again needs a new approval: the grant was for one call.
    (again,) = tools.dispatch_calls(message, context=PROD)
    assert again.status == "pending_approval" and again.approval_id != first.approval_id


def test_a_rejection_reaches_the_model_with_who_and_why(serve, tools, veto, ops) -> None:
    _, client = serve([calls(call("rotate_secret", STRIPE))])
    message = complete(client, tools)
    approver = approve_when_pending(veto, reject=True)
    (result,) = tools.dispatch_calls(message, context=PROD, wait_for_approval=10)
    approver.join()
    assert result.status == "rejected" and result.refused and ops.ran == []
    assert body(result)["status"] == "rejected"
    assert body(result)["rejected_by"] == "dana"
    assert body(result)["justification"] == "OPS-4711"
    assert len(result.decisions) == 1


def test_no_decision_in_time_answers_pending(serve, tools, veto, ops) -> None:
    _, client = serve([calls(call("rotate_secret", STRIPE))])
    (result,) = tools.dispatch_calls(complete(client, tools), context=PROD,
                                     wait_for_approval=0.05)
    assert result.status == "pending_approval" and result.approval.status == "pending"
    assert ops.ran == []


def test_an_approval_does_not_let_other_arguments_through(serve, tools, veto, ops) -> None:
    _, client = serve([calls(call("rotate_secret", STRIPE)),
                       calls(call("rotate_secret", {**STRIPE, "secret_path": "/secrets/x"}))])
    (pending,) = tools.dispatch_calls(complete(client, tools), context=PROD)
    with security_approver(veto) as dana:
        dana.approve(pending.approval_id, "OPS-4711")
    (other,) = tools.dispatch_calls(complete(client, tools), context=PROD)
    assert other.status == "pending_approval" and ops.ran == []
    assert veto.approvals.get(pending.approval_id).status == "approved"   # still unused


# -- asyncio --------------------------------------------------------------------------------

def test_dispatch_async_runs_parallel_calls_concurrently(serve, veto) -> None:
    both = threading.Barrier(2, timeout=10)   # passes only if both tools run at once

    def execute_sql(statement: str, database: str) -> str:
        """Run SQL (sync: in a worker thread)."""
        both.wait()
        return statement

    async def rotate_secret(secret_path: str, service: str) -> str:
        """Rotate (async)."""
        await asyncio.to_thread(both.wait)
        return service

    tools = Toolset(veto, [execute_sql, rotate_secret])
    _, client = serve([calls(call("execute_sql", SELECT), call("rotate_secret", SEARCH),
                             call("execute_sql", DROP))])
    message = complete(client, tools)
    answers = asyncio.run(tools.dispatch_async(message, context=PROD))
    assert [a.content for a in answers[:2]] == [SELECT["statement"], "search"]
    assert json.loads(answers[2].content)["status"] == "denied"
    assert [a.tool_call_id for a in answers] == [c.id for c in message.tool_calls]


def test_async_tool_in_sync_dispatch_runs_and_records(serve, veto) -> None:
    async def rotate_secret(secret_path: str, service: str) -> dict[str, str]:
        """Rotate."""
        await asyncio.sleep(0)
        return {"service": service}

    tools = Toolset(veto, [rotate_secret])
    _, client = serve([calls(call("rotate_secret", SEARCH))])
    (result,) = tools.dispatch_calls(complete(client, tools), context=PROD)
    assert result.status == "executed" and result.output == {"service": "search"}


def test_async_failure_and_approval_wait(serve, tools, veto, ops) -> None:
    _, client = serve([calls(call("execute_sql", {"statement": "SELECT fail()",
                                                  "database": "analytics"}),
                             call("rotate_secret", STRIPE))])
    message = complete(client, tools)
    approver = approve_when_pending(veto)
    failed, rotated = asyncio.run(tools.dispatch_calls_async(message, context=PROD,
                                                             wait_for_approval=10))
    approver.join()
    assert failed.status == "failed" and rotated.status == "executed"
    assert outcomes(veto, failed.decision.decision_id) == ["failed"]
    assert outcomes(veto, rotated.decision.decision_id) == ["executed"]


# -- spans ----------------------------------------------------------------------------------

def test_execute_tool_span_follows_genai_conventions_and_parents_the_guard(
        serve, tools, spans_out) -> None:
    provider, exporter = spans_out
    _, client = serve([calls(call("execute_sql", DROP, id="D681PevKs"))])
    message = complete(client, tools)
    with provider.get_tracer("agent").start_as_current_span("chat mistral-large-latest") as chat:
        (result,) = tools.dispatch_calls(message, context=PROD)
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    tool_span, guard = by_name["execute_tool execute_sql"], by_name["veto.guard execute_sql"]
    assert tool_span.kind is SpanKind.INTERNAL
    assert tool_span.parent.span_id == chat.get_span_context().span_id
    assert guard.parent.span_id == tool_span.context.span_id
    assert tool_span.context.trace_id == guard.context.trace_id == chat.get_span_context().trace_id
    assert dict(tool_span.attributes) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "execute_sql",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": "D681PevKs",
        "gen_ai.tool.description": "Run a SQL statement against a production database.",
        "veto.decision": "deny",
        "veto.decision_id": result.decision.decision_id,
        "veto.outcome": "denied",
    }
    assert tool_span.status.status_code is StatusCode.UNSET   # a deny is not an error
    assert result.decision.trace_id == format(chat.get_span_context().trace_id, "032x")


def test_async_spans_keep_their_parents(serve, tools, spans_out) -> None:
    provider, exporter = spans_out
    _, client = serve([calls(call("execute_sql", SELECT), call("execute_sql", DROP))])
    message = complete(client, tools)

    async def dispatch() -> None:
        with provider.get_tracer("agent").start_as_current_span("agent"):
            await tools.dispatch_async(message, context=PROD)

    asyncio.run(dispatch())
    spans = exporter.get_finished_spans()
    ids = {s.context.span_id: s for s in spans}
    for guard in (s for s in spans if s.name.startswith("veto.guard")):
        assert ids[guard.parent.span_id].name == "execute_tool execute_sql"
    for tool in (s for s in spans if s.name.startswith("execute_tool")):
        assert ids[tool.parent.span_id].name == "agent"


# -- registering ----------------------------------------------------------------------------

def test_schemas_are_what_chat_complete_sends(serve, tools) -> None:
    standin, client = serve([say("ok")])
    complete(client, tools)
    sent = standin.requests[0][1]["tools"]
    assert sent[0] == {"type": "function", "function": {
        "name": "execute_sql",
        "description": "Run a SQL statement against a production database.",
        "parameters": {
            "type": "object", "additionalProperties": False,
            "required": ["statement", "database"],
            "properties": {
                "statement": {"type": "string", "description": "the SQL statement."},
                "database": {"type": "string",
                             "description": "the database to run it on."}}}}}
    assert [t.function.name for t in tools.function_tools] == ["execute_sql", "rotate_secret"]


def test_given_schema_is_strict_unless_it_says_otherwise(veto) -> None:
    tools = Toolset(veto)
    open_schema = {"type": "object", "properties": {"q": {"type": "string"}},
                   "additionalProperties": True}
    tools.add(lambda **kw: kw, name="search", parameters=open_schema, description="Search.")
    tools.add(lambda q: q, name="lookup", parameters={"type": "object",
                                                      "properties": {"q": {"type": "string"}}})
    assert tools["search"].parameters["additionalProperties"] is True
    assert tools["lookup"].parameters["additionalProperties"] is False


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "execute sql"}, "must be 1 to 64 characters"),
    ({"name": "execute_sql"}, "already registered"),
    ({"name": "q", "parameters": {"type": "object", "properties": {"q": {"type": 5}}}},
     "not a valid JSON Schema"),
    ({"name": "q", "parameters": {"type": "string"}}, "must describe an object"),
])
def test_bad_registrations_are_refused(tools, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tools.add(lambda q: q, **kwargs)


def test_functions_that_cannot_take_keywords_are_refused(tools) -> None:
    def variadic(*args: str) -> str:
        return ""

    with pytest.raises(ValueError, match="cannot be passed by name"):
        tools.add(variadic)


def test_dispatch_accepts_the_message_as_a_dict(tools, ops) -> None:
    message = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "abcdEFGH1", "function": {"name": "execute_sql", "arguments": SELECT}}]}
    (answer,) = tools.dispatch(message, context=PROD)
    assert answer.tool_call_id == "abcdEFGH1" and ops.ran == [("execute_sql", SELECT)]
    assert tools.dispatch({"role": "assistant", "content": "hi"}, context=PROD) == []


# -- any arguments a model may send ---------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arguments=st.one_of(
    st.text(max_size=60),
    st.dictionaries(st.sampled_from(["statement", "database", "extra"]), json_values,
                    max_size=3).map(json.dumps),
    st.fixed_dictionaries({"statement": st.text(max_size=30),
                           "database": st.sampled_from(["analytics", "billing"])})))
def test_any_arguments_get_one_answer_one_record_and_run_only_if_valid_and_allowed(
        veto, arguments: Any) -> None:
    ran: list[dict[str, Any]] = []

    def execute_sql(statement: str, database: str) -> str:
        """Run SQL."""
        ran.append({"statement": statement, "database": database})
        return "ok"

    tools = Toolset(veto, [execute_sql])
    before = len(records(veto))
    message = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "abcdEFGH1", "function": {"name": "execute_sql", "arguments": arguments}}]}
    (result,) = tools.dispatch_calls(message, context=PROD)
    new = records(veto)[before:]
    assert len(new) == 1 and new[0].decision_id == result.decision.decision_id
    if result.status == "executed":
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        assert ran == [parsed] and set(parsed) == {"statement", "database"}
        assert all(isinstance(v, str) for v in parsed.values())
        assert new[0].decision == "allow"
    else:
        assert ran == [] and result.status in ("denied", "pending_approval")
        assert json.loads(result.content)["decision_id"] == new[0].decision_id


def test_a_call_without_an_id_is_answered_and_recorded_without_one(tools, veto) -> None:
    message = {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "execute_sql", "arguments": SELECT}}]}
    (answer,) = tools.dispatch(message, context=PROD)
    assert answer.tool_call_id == "null"   # what the SDK fills in; the model's own answer
    assert records(veto)[0].call_id is None
