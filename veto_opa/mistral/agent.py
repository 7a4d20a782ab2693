"""The multi-turn agent loop over ``chat.complete`` (or ``agents.complete``), governed.

    result = run_agent(client, "mistral-large-latest", messages, tools,
                       context={"environment": "production", "user_role": "sre"})
    result.final_answer        # the model's last text, or None when it hit max_turns
    result.decisions           # every decision, in order
    result.pending_approvals   # calls waiting for a human

Each turn asks the model, appends its message, and when it called tools, answers every call
with a tool message through :meth:`Toolset.dispatch_calls` (output or refusal): a denied call
is an answer the model reacts to, never an error that ends the loop. The loop ends when the
model answers without calling a tool, or after ``max_turns`` requests, whatever
``tool_choice`` forces (``"any"``/``"required"`` make the model call a tool on every turn, so
such a loop always ends at ``max_turns``). With ``stream=True`` the answers come from
``chat.stream``: tool-call fragments are put together per call and guarded once the stream
has ended, never half-way.

Spans: ``invoke_agent`` around the loop, a ``chat <model>`` client span per request, and the
toolset's ``execute_tool <tool>`` spans (with the guard's spans inside) between them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mistralai.client import models
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.trace import SpanKind

from veto_opa import spans
from veto_opa.mistral.tools import CallResult, Toolset

if TYPE_CHECKING:
    from mistralai.client import Mistral
    from opentelemetry.trace import Span, Tracer

    from veto_opa.decision import Decision

ToolChoice = str | Mapping[str, Any] | models.ToolChoice
"""``"auto"``, ``"none"``, ``"any"``, ``"required"``, or a specific function
(``{"type": "function", "function": {"name": ...}}``)."""

StopReason = Literal["answer", "max_turns"]

_PROVIDER = gen_ai.GenAiProviderNameValues.MISTRAL_AI.value


# -- streams -------------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamedMessage:
    """One model answer, from a response or put together from a stream.

    Attributes:
        message: the assistant message, tool calls complete.
        id: the completion id.
        model: the model that answered.
        finish_reason: ``stop``, ``tool_calls``, ``length``, ... (None if the stream ended
            without one).
        usage: token counts, when the server sent them.
    """

    message: models.AssistantMessage
    id: str | None = None
    model: str | None = None
    finish_reason: str | None = None
    usage: models.UsageInfo | None = None


@dataclass
class _PartialCall:
    index: int
    id: str
    name: str
    pieces: list[str | dict[str, Any]] = field(default_factory=list)

    def arguments(self) -> str | dict[str, Any]:
        if len(self.pieces) == 1 and isinstance(self.pieces[0], dict):
            return self.pieces[0]
        # Fragments are text; a dict among several cannot be joined into one object, so it
        # becomes text too and the whole fails as JSON (refused, never guessed at).
        return "".join(p if isinstance(p, str) else json.dumps(p) for p in self.pieces)


class _Accumulator:
    """Puts a chat stream's deltas together: text in order, each tool call's argument
    fragments joined per call (by its id, or by its index when the server sends no id)."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: list[_PartialCall] = []
        self.id: str | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None
        self.usage: models.UsageInfo | None = None

    def add(self, chunk: models.CompletionChunk) -> str:
        self.id, self.model = chunk.id, chunk.model
        if isinstance(chunk.usage, models.UsageInfo):
            self.usage = chunk.usage
        text = ""
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            if isinstance(choice.finish_reason, str):
                self.finish_reason = choice.finish_reason
            text = _text(choice.delta.content)
            self.text.append(text)
            calls = choice.delta.tool_calls
            for call in calls if isinstance(calls, list) else []:
                partial = self._partial(call)
                partial.pieces.append(call.function.arguments)
        return text

    def _partial(self, call: models.ToolCall) -> _PartialCall:
        call_id, index = call.id or "null", call.index or 0
        has_id = call_id != "null"
        for partial in reversed(self.calls):
            if (partial.id == call_id) if has_id else (partial.index == index):
                return partial
        partial = _PartialCall(index, call_id, call.function.name)
        self.calls.append(partial)
        return partial

    def result(self) -> StreamedMessage:
        calls = [models.ToolCall(id=p.id, type="function", index=p.index,
                                 function=models.FunctionCall(name=p.name,
                                                              arguments=p.arguments()))
                 for p in self.calls]
        message = models.AssistantMessage(content="".join(self.text),
                                          tool_calls=calls or None)
        return StreamedMessage(message, self.id, self.model, self.finish_reason, self.usage)


def accumulate_stream(events: Iterable[models.CompletionEvent],
                      on_text: Callable[[str], None] | None = None) -> StreamedMessage:
    """The whole answer of ``chat.stream(...)``/``agents.stream(...)``.

    Args:
        events: the stream (inside its ``with`` block).
        on_text: called with each piece of text as it arrives.
    """
    accumulator = _Accumulator()
    for event in events:
        text = accumulator.add(event.data)
        if text and on_text is not None:
            on_text(text)
    return accumulator.result()


async def accumulate_stream_async(events: AsyncIterable[models.CompletionEvent],
                                  on_text: Callable[[str], None] | None = None
                                  ) -> StreamedMessage:
    """:func:`accumulate_stream` for ``chat.stream_async(...)``."""
    accumulator = _Accumulator()
    async for event in events:
        text = accumulator.add(event.data)
        if text and on_text is not None:
            on_text(text)
    return accumulator.result()


def _of_response(response: models.ChatCompletionResponse) -> StreamedMessage:
    if not response.choices:
        raise ValueError(f"the model's response {response.id} has no choices")
    choice = response.choices[0]
    message = (choice.message if isinstance(choice.message, models.AssistantMessage)
               else models.AssistantMessage(content=""))
    return StreamedMessage(message, response.id, response.model, choice.finish_reason,
                           response.usage)


# -- the loop ------------------------------------------------------------------------------

@dataclass(frozen=True)
class AgentTurn:
    """One request to the model and what was done with its answer.

    Attributes:
        number: 1 for the first request.
        answer: the model's answer.
        calls: what became of each tool call of the answer, in call order.
    """

    number: int
    answer: StreamedMessage
    calls: tuple[CallResult, ...]

    @property
    def text(self) -> str:
        """The answer's text (empty when the model only called tools)."""
        return _text(self.answer.message.content)


@dataclass(frozen=True)
class AgentResult:
    """How an agent run ended.

    Attributes:
        final_answer: the model's text when it answered without calling a tool; None when
            the loop stopped at ``max_turns``.
        messages: the whole conversation: the messages given, then each assistant message
            and the tool messages answering it — ready to continue with another
            :func:`run_agent`.
        turns: every turn, in order.
        stop_reason: ``answer`` or ``max_turns``.
    """

    final_answer: str | None
    messages: tuple[Any, ...]
    turns: tuple[AgentTurn, ...]
    stop_reason: StopReason

    @property
    def calls(self) -> tuple[CallResult, ...]:
        """Every tool call of the run, in order."""
        return tuple(call for turn in self.turns for call in turn.calls)

    @property
    def decisions(self) -> tuple[Decision, ...]:
        """Every decision of the run, in order (a call waited for gives two)."""
        return tuple(d for call in self.calls for d in call.decisions)

    @property
    def pending_approvals(self) -> tuple[CallResult, ...]:
        """Calls still waiting for an approval: one per approval id, without those whose
        approval a later call of the run used."""
        used = {d.approval_id for d in self.decisions if d.allowed and d.approval_id}
        pending: dict[str, CallResult] = {}
        for call in self.calls:
            approval_id = call.approval_id
            if (call.status == "pending_approval" and approval_id
                    and approval_id not in used):
                pending.setdefault(approval_id, call)
        return tuple(pending.values())


@dataclass
class _Run:
    """The state of one run, shared by the sync and async loops."""

    model: str
    toolset: Toolset
    context: Mapping[str, Any]
    tool_choice: ToolChoice
    agent_id: str | None
    completion_args: Mapping[str, Any]
    on_turn: Callable[[AgentTurn], None] | None
    history: list[Any]
    turns: list[AgentTurn] = field(default_factory=list)

    def request(self) -> dict[str, Any]:
        request: dict[str, Any] = {**self.completion_args, "messages": list(self.history),
                                   "tools": self.toolset.schemas,
                                   "tool_choice": self.tool_choice}
        if self.agent_id is not None:
            request["agent_id"] = self.agent_id
        else:
            request["model"] = self.model
        return request

    def turn(self, answer: StreamedMessage, calls: Sequence[CallResult]) -> None:
        self.history.append(answer.message)
        self.history.extend(call.tool_message() for call in calls)
        turn = AgentTurn(len(self.turns) + 1, answer, tuple(calls))
        self.turns.append(turn)
        if self.on_turn is not None:
            self.on_turn(turn)

    def result(self, stop_reason: StopReason) -> AgentResult:
        final = self.turns[-1].text if stop_reason == "answer" else None
        return AgentResult(final, tuple(self.history), tuple(self.turns), stop_reason)


def run_agent(client: Mistral, model: str, messages: Sequence[Any], toolset: Toolset,
              context: Mapping[str, Any], *, max_turns: int = 8,
              tool_choice: ToolChoice = "auto", wait_for_approval: float | None = None,
              stream: bool = False, on_text: Callable[[str], None] | None = None,
              on_turn: Callable[[AgentTurn], None] | None = None,
              agent_id: str | None = None, name: str | None = None,
              completion_args: Mapping[str, Any] | None = None) -> AgentResult:
    """Run the model with ``toolset``'s tools until it answers, every tool call governed.

    Args:
        client: a ``mistralai.client.Mistral``.
        model: the model to ask (with ``agent_id``: the agent's model, for records and spans).
        messages: the conversation so far (dicts or SDK message models); not changed.
        toolset: the tools, and the ``Veto`` guarding them.
        context: facts about the calls the model does not choose, for every guard call.
        max_turns: most requests to the model; at least 1.
        tool_choice: sent with every request (see :data:`ToolChoice`).
        wait_for_approval: seconds to wait for a human to decide a call that needs approval,
            then guard it again and run it if approved (default: the toolset's).
        stream: use ``chat.stream`` (``agents.stream``) instead of ``complete``.
        on_text: with ``stream``, called with each piece of text as it arrives.
        on_turn: called after each turn, its calls dispatched.
        agent_id: use ``client.agents`` with this agent instead of ``client.chat``.
        name: the agent's name, for the ``invoke_agent`` span.
        completion_args: more ``complete`` keyword arguments (``temperature``,
            ``parallel_tool_calls``, ``random_seed``, ...).

    Returns:
        The :class:`AgentResult`.

    Raises:
        ValueError: ``max_turns`` is below 1.
        mistralai.client.errors.MistralError: the API refused a request (the run stops; what
            was decided before is recorded).
    """
    run = _start(model, messages, toolset, context, max_turns, tool_choice, agent_id,
                 completion_args, on_turn)
    with _agent_span(toolset.tracer, name, model, agent_id):
        for _ in range(max_turns):
            request = run.request()
            with _chat_span(toolset.tracer, model, agent_id) as span:
                if stream:
                    api_stream = client.agents.stream if agent_id else client.chat.stream
                    with api_stream(**request) as events:
                        answer = accumulate_stream(events, on_text)
                else:
                    api = client.agents.complete if agent_id else client.chat.complete
                    answer = _of_response(api(**request))
                _annotate_chat(span, answer)
            calls = toolset.dispatch_calls(answer.message, context=context,
                                           model=answer.model or model,
                                           wait_for_approval=wait_for_approval)
            run.turn(answer, calls)
            if not calls:
                return run.result("answer")
        return run.result("max_turns")


async def run_agent_async(client: Mistral, model: str, messages: Sequence[Any],
                          toolset: Toolset, context: Mapping[str, Any], *,
                          max_turns: int = 8, tool_choice: ToolChoice = "auto",
                          wait_for_approval: float | None = None, stream: bool = False,
                          on_text: Callable[[str], None] | None = None,
                          on_turn: Callable[[AgentTurn], None] | None = None,
                          agent_id: str | None = None, name: str | None = None,
                          completion_args: Mapping[str, Any] | None = None) -> AgentResult:
    """:func:`run_agent` for asyncio: ``complete_async``/``stream_async``, and each turn's
    tool calls guarded and run concurrently."""
    run = _start(model, messages, toolset, context, max_turns, tool_choice, agent_id,
                 completion_args, on_turn)
    with _agent_span(toolset.tracer, name, model, agent_id):
        for _ in range(max_turns):
            request = run.request()
            with _chat_span(toolset.tracer, model, agent_id) as span:
                if stream:
                    api_stream = (client.agents.stream_async if agent_id
                                  else client.chat.stream_async)
                    async with await api_stream(**request) as events:
                        answer = await accumulate_stream_async(events, on_text)
                else:
                    api = client.agents.complete_async if agent_id else client.chat.complete_async
                    answer = _of_response(await api(**request))
                _annotate_chat(span, answer)
            calls = await toolset.dispatch_calls_async(answer.message, context=context,
                                                       model=answer.model or model,
                                                       wait_for_approval=wait_for_approval)
            run.turn(answer, calls)
            if not calls:
                return run.result("answer")
        return run.result("max_turns")


def _start(model: str, messages: Sequence[Any], toolset: Toolset, context: Mapping[str, Any],
           max_turns: int, tool_choice: ToolChoice, agent_id: str | None,
           completion_args: Mapping[str, Any] | None,
           on_turn: Callable[[AgentTurn], None] | None) -> _Run:
    if max_turns < 1:
        raise ValueError(f"max_turns must be at least 1, found {max_turns}")
    return _Run(model, toolset, context, tool_choice, agent_id, dict(completion_args or {}),
                on_turn, list(messages))


# -- spans ---------------------------------------------------------------------------------

def _genai_attributes(operation: str, model: str, agent_id: str | None,
                      name: str | None = None) -> dict[str, Any]:
    """The GenAI attributes the agent's spans share."""
    attributes: dict[str, Any] = {gen_ai.GEN_AI_OPERATION_NAME: operation,
                                  gen_ai.GEN_AI_PROVIDER_NAME: _PROVIDER,
                                  gen_ai.GEN_AI_REQUEST_MODEL: model}
    if name:
        attributes[gen_ai.GEN_AI_AGENT_NAME] = name
    if agent_id:
        attributes[gen_ai.GEN_AI_AGENT_ID] = agent_id
    return attributes


@contextlib.contextmanager
def _agent_span(tracer: Tracer | None, name: str | None, model: str,
                agent_id: str | None) -> Iterator[Span | None]:
    if tracer is None:
        yield None
        return
    attributes = _genai_attributes(gen_ai.GenAiOperationNameValues.INVOKE_AGENT.value, model,
                                   agent_id, name)
    span_name = f"invoke_agent {name}" if name else "invoke_agent"
    with tracer.start_as_current_span(span_name, kind=SpanKind.INTERNAL,
                                      attributes=attributes) as span:
        yield span


@contextlib.contextmanager
def _chat_span(tracer: Tracer | None, model: str,
               agent_id: str | None) -> Iterator[Span | None]:
    if tracer is None:
        yield None
        return
    attributes = _genai_attributes(gen_ai.GenAiOperationNameValues.CHAT.value, model, agent_id)
    with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT,
                                      attributes=attributes, record_exception=False,
                                      set_status_on_exception=False) as span:
        try:
            yield span
        except Exception as e:
            spans.set_failure(span, e, str(e)[:200])
            raise


def _annotate_chat(span: Span | None, answer: StreamedMessage) -> None:
    if span is None:
        return
    attributes: dict[str, Any] = {}
    if answer.id:
        attributes[gen_ai.GEN_AI_RESPONSE_ID] = answer.id
    if answer.model:
        attributes[gen_ai.GEN_AI_RESPONSE_MODEL] = answer.model
    if answer.finish_reason:
        attributes[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS] = [answer.finish_reason]
    usage = answer.usage
    if usage is not None:
        if isinstance(usage.prompt_tokens, int):
            attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] = usage.prompt_tokens
        if isinstance(usage.completion_tokens, int):
            attributes[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.completion_tokens
    span.set_attributes(attributes)


def _text(content: Any) -> str:
    """The text of a message's content: a string, or the text chunks of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(chunk.text for chunk in content if isinstance(chunk, models.TextChunk))
    return ""
