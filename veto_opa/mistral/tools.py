"""``Toolset``: Python functions as Mistral tools, every call the model makes guarded first.

    from mistralai.client import Mistral
    from veto_opa import Veto
    from veto_opa.mistral import Toolset

    tools = Toolset(Veto())

    @tools.tool
    def execute_sql(statement: str, database: str) -> str:
        '''Run a SQL statement.

        Args:
            statement: the SQL text.
            database: the database to run it on.
        '''

    response = client.chat.complete(model=model, messages=messages, tools=tools.schemas)
    message = response.choices[0].message
    messages.append(message)
    messages += tools.dispatch(message, context={"environment": "production"},
                               model=response.model)

Each tool call goes through ``Veto.guard()`` (arguments as JSON text or as a dict, as the SDK
hands out either) and runs only when allowed; the model gets one ``ToolMessage`` per call, in
call order: the tool's output, or a JSON refusal it can react to (``denied``,
``pending_approval``, ``rejected``, ``expired``, ``error``). An unknown tool, arguments that
are not a JSON object, and arguments that fail the tool's JSON Schema are denied with cause
``invalid_tool_call`` and a precise reason — and recorded, like every decision. Every call that
ran records its outcome, ``executed`` or ``failed``.

Each call gets an OpenTelemetry span ``execute_tool <tool>`` (GenAI semantic conventions) in
the current trace, covering the decision and the run; the guard's own span is its child.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from mistralai.client import models
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.trace import SpanKind

from veto_opa import spans
from veto_opa._json import loads_json
from veto_opa.call import check_call
from veto_opa.errors import InvalidToolCall, RecordError, VetoError
from veto_opa.mistral import schema as schemas

if TYPE_CHECKING:
    import jsonschema
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from veto_opa.decision import Decision
    from veto_opa.veto import Veto

log = logging.getLogger("veto_opa.mistral")
F = TypeVar("F", bound=Callable[..., Any])

CallStatus = Literal["executed", "failed", "denied", "pending_approval", "rejected", "expired"]
"""What became of one tool call: it ran (``executed``, or ``failed`` when the tool raised),
or it did not: the policy (or a check before it) ``denied`` it, it waits for an approval
(``pending_approval``), an approver ``rejected`` it, or its approval ``expired`` undecided."""

OUTCOME = "veto.outcome"
"""Span attribute of ``execute_tool`` spans: the call's :data:`CallStatus`."""


@dataclass(frozen=True)
class RegisteredTool:
    """One function the model may call.

    Attributes:
        name: the function name the model uses.
        description: shown to the model.
        parameters: the JSON Schema of its arguments.
        function: the Python callable (a coroutine function runs awaited).
        check: the validator of arguments against ``parameters``.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]
    check: jsonschema.protocols.Validator

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)


@dataclass(frozen=True)
class ApprovalState:
    """Where an approval stands after waiting for it.

    Attributes:
        approval_id: the approval.
        status: ``pending``, ``approved``, ``rejected``, ``expired``, ``used``, or
            ``unknown`` (no such approval, or no approval store).
        decided_by: the approver, once decided.
        justification: the approver's reason.
    """

    approval_id: str
    status: str
    decided_by: str | None = None
    justification: str | None = None


def _wait_for_approval(veto: Veto, approval_id: str, timeout: float) -> ApprovalState:
    """Wait up to ``timeout`` seconds for approvers to decide ``approval_id``."""
    if veto.approvals is None:
        return ApprovalState(approval_id, "unknown")
    try:
        approval = veto.approvals.wait(approval_id, timeout)
    except VetoError:
        return ApprovalState(approval_id, "unknown")
    return ApprovalState(approval_id, approval.status, ", ".join(approval.decided_by) or None,
                         approval.justification)


@dataclass(frozen=True)
class ToolCallRequest:
    """One tool call as the model made it, whatever API it came from.

    Attributes:
        name: the function the model called.
        arguments: as the model sent them: JSON text or an object.
        call_id: the model's id for the call (``"null"`` when the server gave none, as the SDK
            fills it).
        model: the model that made the call, when known.
    """

    name: str
    arguments: str | dict[str, Any]
    call_id: str
    model: str | None = None

    @classmethod
    def of(cls, call: models.ToolCall | models.FunctionCallEntry,
           model: str | None = None) -> ToolCallRequest:
        if isinstance(call, models.FunctionCallEntry):
            entry_model = call.model if isinstance(call.model, str) else None
            return cls(call.name, call.arguments, call.tool_call_id, model or entry_model)
        return cls(call.function.name, call.function.arguments, call.id or "null", model)


@dataclass(frozen=True)
class CallResult:
    """What became of one tool call, and what the model is told.

    Attributes:
        call: the call as the model made it.
        status: see :data:`CallStatus`.
        content: the tool message's content: the tool's output as text, or a JSON object
            with ``status`` and ``reason`` when it did not run (or ``error`` when it failed).
        decisions: every decision taken for the call, in order (two when an approval was
            waited for and the call guarded again).
        output: the tool's return value, when it ran.
        error: ``ExceptionType: message`` when the tool raised.
        approval: where the approval stood, when one was waited for.
    """

    call: ToolCallRequest
    status: CallStatus
    content: str
    decisions: tuple[Decision, ...]
    output: Any = None
    error: str | None = None
    approval: ApprovalState | None = None

    @property
    def decision(self) -> Decision:
        """The decision that settled the call (the last one)."""
        return self.decisions[-1]

    @property
    def refused(self) -> bool:
        """True when the tool did not run and the call will not run as it stands."""
        return self.status in ("denied", "rejected", "expired")

    @property
    def approval_id(self) -> str | None:
        return self.decision.approval_id

    def tool_message(self) -> models.ToolMessage:
        """The ``tool`` message answering the call, for ``chat``/``agents`` ``messages``."""
        return models.ToolMessage(content=self.content, tool_call_id=self.call.call_id,
                                  name=self.call.name)

    def function_result(self) -> models.FunctionResultEntry:
        """The entry answering the call, for the Conversations API's ``inputs``."""
        return models.FunctionResultEntry(tool_call_id=self.call.call_id, result=self.content)


@dataclass(frozen=True)
class _Prepared:
    """A call checked against the toolset: the tool, its arguments, or why it cannot run."""

    tool: RegisteredTool | None
    arguments: dict[str, Any] | None
    invalid: str | None


class Toolset:
    """Functions the model may call, each call guarded by ``veto`` before it runs.

    Args:
        veto: decides every call, writes its record and span.
        tools: functions to register at once (as :meth:`add` with its defaults).
        strict: schemas made from type hints refuse unknown properties and require every
            parameter without a default (``additionalProperties: false``); a given schema
            without ``additionalProperties`` gets ``false``.
        tracer_provider: where the ``execute_tool`` spans go (default: the global provider);
            no spans when the ``veto`` has spans turned off.
        wait_for_approval: default seconds :meth:`dispatch` waits for a human to decide a
            ``require_approval`` call before answering ``pending_approval`` (0: no wait).
    """

    def __init__(self, veto: Veto, tools: Iterable[Callable[..., Any]] = (), *,
                 strict: bool = True, tracer_provider: TracerProvider | None = None,
                 wait_for_approval: float = 0.0) -> None:
        self.veto = veto
        self.strict = strict
        self.wait_for_approval = wait_for_approval
        self._tools: dict[str, RegisteredTool] = {}
        self._tracer = spans.tracer_for(tracer_provider) if veto.settings.spans else None
        for function in tools:
            self.add(function)

    # -- registering ------------------------------------------------------------------------

    def add(self, function: Callable[..., Any], *, name: str | None = None,
            description: str | None = None, parameters: Mapping[str, Any] | None = None,
            strict: bool | None = None) -> RegisteredTool:
        """Register ``function`` as a tool.

        Args:
            function: called with the arguments as keyword arguments (JSON values: dicts,
                lists, strings, numbers, booleans, None).
            name: the name the model uses (default: the function's name).
            description: shown to the model (default: the docstring's text before its first
                section).
            parameters: the JSON Schema of the arguments (default: made from the type hints
                and the docstring's ``Args:``).
            strict: overrides the toolset's ``strict`` for this tool.

        Returns:
            The registered tool.

        Raises:
            ValueError: the name is taken or not a valid Mistral function name, or the schema
                cannot be made or is not a valid JSON Schema of an object.
        """
        tool_name = name if name is not None else str(getattr(function, "__name__", ""))
        if not schemas.FUNCTION_NAME.match(tool_name):
            raise ValueError(f"tool name {tool_name!r} must be 1 to 64 characters of "
                             "a-z, A-Z, 0-9, _ and -")
        if tool_name in self._tools:
            raise ValueError(f"a tool named {tool_name!r} is already registered")
        if parameters is None:
            documented, schema = schemas.function_schema(function)
        else:
            documented, schema = schemas.parse_docstring(inspect.getdoc(function))[0], \
                dict(parameters)
        if self.strict if strict is None else strict:
            schema = schemas.strict_schema(schema)
        tool = RegisteredTool(tool_name, documented if description is None else description,
                              schema, function, schemas.validator(schema, tool_name))
        self._tools[tool_name] = tool
        return tool

    @overload
    def tool(self, function: F) -> F: ...

    @overload
    def tool(self, function: None = None, *, name: str | None = None,
             description: str | None = None, parameters: Mapping[str, Any] | None = None,
             strict: bool | None = None) -> Callable[[F], F]: ...

    def tool(self, function: F | None = None, *, name: str | None = None,
             description: str | None = None, parameters: Mapping[str, Any] | None = None,
             strict: bool | None = None) -> F | Callable[[F], F]:
        """Decorator form of :meth:`add`: ``@tools.tool`` or ``@tools.tool(name=...)``; the
        function itself is returned unchanged."""
        def register(fn: F) -> F:
            self.add(fn, name=name, description=description, parameters=parameters,
                     strict=strict)
            return fn

        return register(function) if function is not None else register

    @property
    def tracer(self) -> Tracer | None:
        """The tracer of the toolset's spans (None when spans are off); the agent loop's
        spans use it too."""
        return self._tracer

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __getitem__(self, name: str) -> RegisteredTool:
        return self._tools[name]

    @property
    def names(self) -> list[str]:
        """The registered tools' names, in registration order."""
        return list(self._tools)

    @property
    def schemas(self) -> list[models.Tool]:
        """The tools for ``chat.complete(tools=...)`` and ``agents.complete(tools=...)``."""
        return [models.Tool(type="function", function=self._function(t))
                for t in self._tools.values()]

    @property
    def function_tools(self) -> list[models.FunctionTool]:
        """The tools for the Conversations API (``conversations.start(tools=...)``)."""
        return [models.FunctionTool(type="function", function=self._function(t))
                for t in self._tools.values()]

    @staticmethod
    def _function(tool: RegisteredTool) -> models.Function:
        return models.Function(name=tool.name, description=tool.description,
                               parameters=tool.parameters)

    # -- dispatching ------------------------------------------------------------------------

    def dispatch(self, message: models.AssistantMessage | Mapping[str, Any], *,
                 context: Mapping[str, Any], model: str | None = None,
                 wait_for_approval: float | None = None) -> list[models.ToolMessage]:
        """Guard and run every tool call of an assistant message, one after the other.

        Args:
            message: the ``AssistantMessage`` of ``chat.complete``/``agents.complete`` (or its
                dict form).
            context: facts about the calls the model does not choose (environment, user...).
            model: the model that made the calls, for the records.
            wait_for_approval: seconds to wait for a human to decide a call that needs
                approval, then guard it again (default: the toolset's).

        Returns:
            One ``ToolMessage`` per call, in call order; none when the message has no calls.
        """
        return [r.tool_message() for r in self.dispatch_calls(
            message, context=context, model=model, wait_for_approval=wait_for_approval)]

    async def dispatch_async(self, message: models.AssistantMessage | Mapping[str, Any], *,
                             context: Mapping[str, Any], model: str | None = None,
                             wait_for_approval: float | None = None
                             ) -> list[models.ToolMessage]:
        """:meth:`dispatch` for asyncio: the calls are guarded and run concurrently; the
        messages stay in call order."""
        results = await self.dispatch_calls_async(message, context=context, model=model,
                                                  wait_for_approval=wait_for_approval)
        return [r.tool_message() for r in results]

    def dispatch_calls(self, message: models.AssistantMessage | Mapping[str, Any], *,
                       context: Mapping[str, Any], model: str | None = None,
                       wait_for_approval: float | None = None) -> list[CallResult]:
        """:meth:`dispatch` returning each call's :class:`CallResult` (decisions, status,
        output) instead of only its message."""
        wait = self._wait(wait_for_approval)
        return [self._govern(ToolCallRequest.of(call, model), context, wait)
                for call in _tool_calls(message)]

    async def dispatch_calls_async(self, message: models.AssistantMessage | Mapping[str, Any],
                                   *, context: Mapping[str, Any], model: str | None = None,
                                   wait_for_approval: float | None = None) -> list[CallResult]:
        """:meth:`dispatch_calls` for asyncio, the calls concurrently."""
        wait = self._wait(wait_for_approval)
        return list(await asyncio.gather(*(
            self._govern_async(ToolCallRequest.of(call, model), context, wait)
            for call in _tool_calls(message))))

    def dispatch_entries(self, entries: Iterable[Any], *, context: Mapping[str, Any],
                         model: str | None = None, wait_for_approval: float | None = None
                         ) -> list[CallResult]:
        """Guard and run the ``FunctionCallEntry`` items among the outputs of
        ``conversations.start``/``append`` (other entries are skipped); answer them with
        ``[r.function_result() for r in results]`` in the next ``append``."""
        wait = self._wait(wait_for_approval)
        return [self._govern(ToolCallRequest.of(entry, model), context, wait)
                for entry in entries if isinstance(entry, models.FunctionCallEntry)]

    async def dispatch_entries_async(self, entries: Iterable[Any], *,
                                     context: Mapping[str, Any], model: str | None = None,
                                     wait_for_approval: float | None = None
                                     ) -> list[CallResult]:
        """:meth:`dispatch_entries` for asyncio, the calls concurrently."""
        wait = self._wait(wait_for_approval)
        return list(await asyncio.gather(*(
            self._govern_async(ToolCallRequest.of(entry, model), context, wait)
            for entry in entries if isinstance(entry, models.FunctionCallEntry))))

    def _wait(self, wait_for_approval: float | None) -> float:
        return self.wait_for_approval if wait_for_approval is None else wait_for_approval

    # -- one call ---------------------------------------------------------------------------

    def _govern(self, call: ToolCallRequest, context: Mapping[str, Any],
                wait: float) -> CallResult:
        with self._span(call) as span:
            prepared, decisions, approval = self._decide(call, context, wait)
            output, error, failure = None, None, None
            ran = _may_run(prepared, decisions[-1])
            if ran:
                output, error, failure = self._run(prepared, decisions[-1])
            result = _result(call, prepared, decisions, approval, ran, output, error)
            _annotate(span, result, failure)
        return result

    async def _govern_async(self, call: ToolCallRequest, context: Mapping[str, Any],
                            wait: float) -> CallResult:
        with self._span(call) as span:
            # The decision (and any wait for an approver) in a worker thread: guard() and the
            # approval store are blocking; the span's context travels with the thread.
            prepared, decisions, approval = await asyncio.to_thread(self._decide, call,
                                                                    context, wait)
            output, error, failure = None, None, None
            ran = _may_run(prepared, decisions[-1])
            if ran:
                output, error, failure = await self._run_async(prepared, decisions[-1])
            result = _result(call, prepared, decisions, approval, ran, output, error)
            _annotate(span, result, failure)
        return result

    def _decide(self, call: ToolCallRequest, context: Mapping[str, Any], wait: float
                ) -> tuple[_Prepared, tuple[Decision, ...], ApprovalState | None]:
        prepared = self._prepare(call)
        decisions = [self._guard(call, prepared, context)]
        approval = None
        first = decisions[0]
        if first.decision == "require_approval" and first.approval_id and wait > 0:
            approval = _wait_for_approval(self.veto, first.approval_id, wait)
            if approval.status in ("approved", "used"):
                # Guarded again: an approved grant lets exactly this call through once (a
                # grant already used by another call gives a new pending approval).
                decisions.append(self._guard(call, prepared, context))
        return prepared, tuple(decisions), approval

    def _prepare(self, call: ToolCallRequest) -> _Prepared:
        tool = self._tools.get(call.name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            return _Prepared(None, None, f"unknown tool {call.name!r}; the tools are: {known}")
        try:
            checked = check_call(call.name, call.arguments, None,
                                 max_bytes=self.veto.settings.max_argument_bytes)
        except InvalidToolCall as e:
            return _Prepared(tool, None, str(e))
        # A private copy of plain JSON values: what was decided is what runs.
        arguments = loads_json(checked.arguments_text)
        problems = schemas.schema_errors(tool.check, arguments)
        if problems:
            return _Prepared(tool, arguments, f"arguments do not match the parameters of "
                                              f"{tool.name}: {'; '.join(problems)}")
        return _Prepared(tool, arguments, None)

    def _guard(self, call: ToolCallRequest, prepared: _Prepared,
               context: Mapping[str, Any]) -> Decision:
        # The parsed object when there is one (what would run), else what the model sent,
        # so that the record's digest is of the model's own arguments either way.
        arguments = prepared.arguments if prepared.arguments is not None else call.arguments
        call_id = None if call.call_id in ("", "null") else call.call_id
        return self.veto.guard(call.name, arguments, context, model=call.model,
                               call_id=call_id, invalid=prepared.invalid)

    def _run(self, prepared: _Prepared, decision: Decision
             ) -> tuple[Any, str | None, BaseException | None]:
        assert prepared.tool is not None and prepared.arguments is not None
        tool, arguments = prepared.tool, prepared.arguments
        try:
            if tool.is_async:
                _no_running_loop(tool.name)
                output = asyncio.run(tool.function(**arguments))
            else:
                output = tool.function(**arguments)
        except Exception as e:  # noqa: BLE001 - the model is told; the record says failed
            error = f"{type(e).__name__}: {e}"
            self._outcome(decision, "failed", error)
            return None, error, e
        except BaseException as e:
            self._outcome(decision, "failed", f"{type(e).__name__}: {e}")
            raise
        self._outcome(decision, "executed")
        return output, None, None

    async def _run_async(self, prepared: _Prepared, decision: Decision
                         ) -> tuple[Any, str | None, BaseException | None]:
        assert prepared.tool is not None and prepared.arguments is not None
        tool, arguments = prepared.tool, prepared.arguments
        try:
            if tool.is_async:
                output = await tool.function(**arguments)
            else:
                # Sync tools run in worker threads, so that parallel calls overlap.
                output = await asyncio.to_thread(tool.function, **arguments)
        except Exception as e:  # noqa: BLE001 - the model is told; the record says failed
            error = f"{type(e).__name__}: {e}"
            await asyncio.to_thread(self._outcome, decision, "failed", error)
            return None, error, e
        except BaseException as e:
            self._outcome(decision, "failed", f"{type(e).__name__}: {e}")
            raise
        await asyncio.to_thread(self._outcome, decision, "executed")
        return output, None, None

    def _outcome(self, decision: Decision, status: str, error: str | None = None) -> None:
        if self.veto.records is None:
            return
        try:
            self.veto.record_outcome(decision.decision_id, status, error)
        except RecordError as e:
            log.error("veto-opa could not record the outcome of %s: %s",
                      decision.decision_id, e)

    @contextlib.contextmanager
    def _span(self, call: ToolCallRequest) -> Iterator[Span | None]:
        if self._tracer is None:
            yield None
            return
        attributes: dict[str, Any] = {
            gen_ai.GEN_AI_OPERATION_NAME: gen_ai.GenAiOperationNameValues.EXECUTE_TOOL.value,
            gen_ai.GEN_AI_TOOL_NAME: call.name,
            gen_ai.GEN_AI_TOOL_TYPE: "function",
        }
        if call.call_id not in ("", "null"):
            attributes[gen_ai.GEN_AI_TOOL_CALL_ID] = call.call_id
        tool = self._tools.get(call.name)
        if tool is not None and tool.description:
            attributes[gen_ai.GEN_AI_TOOL_DESCRIPTION] = tool.description
        with self._tracer.start_as_current_span(f"execute_tool {call.name}",
                                                kind=SpanKind.INTERNAL,
                                                attributes=attributes) as span:
            yield span


def _tool_calls(message: models.AssistantMessage | Mapping[str, Any]) -> list[models.ToolCall]:
    if isinstance(message, Mapping):
        message = models.AssistantMessage.model_validate(dict(message))
    calls = message.tool_calls
    return list(calls) if isinstance(calls, list) else []


def _may_run(prepared: _Prepared, decision: Decision) -> bool:
    # The guard denies an invalid call; this holds even if it did not.
    return (decision.allowed and prepared.invalid is None and prepared.tool is not None
            and prepared.arguments is not None)


def _no_running_loop(name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"{name} is a coroutine function: inside an event loop, use "
                       "dispatch_async")


def _result(call: ToolCallRequest, prepared: _Prepared, decisions: tuple[Decision, ...],
            approval: ApprovalState | None, ran: bool, output: Any,
            error: str | None) -> CallResult:
    decision = decisions[-1]
    if ran and error is None:
        return CallResult(call, "executed", _text(output), decisions, output=output,
                          approval=approval)
    if ran:
        return CallResult(call, "failed", _json({
            "status": "error", "tool": call.name, "error": error,
            "decision_id": decision.decision_id}), decisions, error=error, approval=approval)
    status: CallStatus = "denied"
    if decision.decision == "require_approval":
        state = approval.status if approval is not None else "pending"
        status = ("rejected" if state == "rejected" else "expired" if state == "expired"
                  else "pending_approval")
    reason = None
    if decision.allowed and prepared.invalid is not None:   # see _may_run
        reason = f"invalid_tool_call: {prepared.invalid}"
    return CallResult(call, status, refusal(status, call.name, decision, approval, reason),
                      decisions, approval=approval)


def refusal(status: CallStatus, tool: str, decision: Decision,
            approval: ApprovalState | None = None, reason: str | None = None) -> str:
    """The JSON text telling the model why ``tool`` did not run: ``status``, ``reason``, the
    deciding ``rule`` and ``cause`` when set, the ``approval_id`` and ``approvers`` of a call
    that needs approval, who rejected it and why, and the ``decision_id``."""
    body: dict[str, Any] = {"status": status, "tool": tool,
                            "reason": reason if reason is not None else decision.reason}
    if decision.decision == "require_approval":
        body["approval_id"] = decision.approval_id
        body["approvers"] = list(decision.approvers)
        if status == "rejected" and approval is not None:
            body["rejected_by"] = approval.decided_by
            body["justification"] = approval.justification
    if decision.rule:
        body["rule"] = decision.rule
    if decision.cause:
        body["cause"] = decision.cause
    body["decision_id"] = decision.decision_id
    return _json(body)


def _annotate(span: Span | None, result: CallResult, failure: BaseException | None) -> None:
    if span is None:
        return
    decision = result.decision
    attributes: dict[str, Any] = {spans.DECISION: decision.decision,
                                  spans.DECISION_ID: decision.decision_id,
                                  OUTCOME: result.status}
    if decision.approval_id:
        attributes[spans.APPROVAL_ID] = decision.approval_id
    span.set_attributes(attributes)
    if failure is not None:
        spans.set_failure(span, failure, result.error)


def _text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, (bytes, bytearray)):
        return output.decode("utf-8", "replace")
    return json.dumps(output, ensure_ascii=False, default=str)


def _json(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False)


__all__ = [
    "ApprovalState", "CallResult", "CallStatus", "RegisteredTool", "ToolCallRequest",
    "Toolset",
]
