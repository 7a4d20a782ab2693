"""One OpenTelemetry span per guard call.

GenAI semantic-convention keys where they fit (``gen_ai.tool.name``, ``gen_ai.tool.call.id``,
``gen_ai.request.model``, ``gen_ai.tool.type``), ``veto.*`` keys for the decision. A deny is a
decision, not a failure: the span status stays unset. Only a failure to decide (engine down,
timeout, malformed answer, unusable arguments) sets status ERROR and ``error.type``. Argument
values stay off spans unless capture is turned on (``VETO_CAPTURE_ARGUMENTS``), as GenAI
content capture is opt-in. ``veto.matched_rules`` and ``veto.error_rules`` are set only when
some rule matched or was in error (an absent list reads as an empty one).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from veto_opa.decision import Verdict

DECISION = "veto.decision"
DECISION_ID = "veto.decision_id"
RULE = "veto.rule"
REASON = "veto.reason"
POLICY_NAME = "veto.policy.name"
POLICY_REVISION = "veto.policy.revision"
APPROVAL_ID = "veto.approval_id"
ENGINE = "veto.engine"
CAUSE = "veto.cause"
MATCHED_RULES = "veto.matched_rules"
ERROR_RULES = "veto.error_rules"
OPA_DECISION_ID = "veto.opa.decision_id"


def tracer_for(provider: TracerProvider | None) -> Tracer:
    """The tracer of ``provider``, or of the global provider when None."""
    from veto_opa import __version__

    source = provider if provider is not None else trace.get_tracer_provider()
    return source.get_tracer("veto_opa", __version__)


def start(tracer: Tracer, tool: object, call_id: object, model: object,
          decision_id: str) -> Span:
    """Start the guard's span, with the attributes known before deciding."""
    attributes: dict[str, Any] = {
        gen_ai.GEN_AI_TOOL_NAME: str(tool),
        gen_ai.GEN_AI_TOOL_TYPE: "function",
        DECISION_ID: decision_id,
    }
    if isinstance(call_id, str) and call_id:
        attributes[gen_ai.GEN_AI_TOOL_CALL_ID] = call_id
    if isinstance(model, str) and model:
        attributes[gen_ai.GEN_AI_REQUEST_MODEL] = model
    return tracer.start_span(f"veto.guard {tool}", kind=SpanKind.INTERNAL,
                             attributes=attributes)


def trace_headers(span: Span | None) -> dict[str, str] | None:
    """W3C ``traceparent`` (and ``tracestate``) for the OPA request, so OPA's span joins."""
    if span is None or not span.get_span_context().is_valid:
        return None
    headers: dict[str, str] = {}
    propagate.inject(headers, context=trace.set_span_in_context(span))
    return headers or None


def ids(span: Span | None) -> tuple[str | None, str | None]:
    """The W3C hex trace and span ids of ``span``, or None."""
    if span is None:
        return None, None
    context = span.get_span_context()
    if not context.is_valid:
        return None, None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


def finish(span: Span, verdict: Verdict, *, engine: str, approval_id: str | None,
           cause: str | None, failure: BaseException | None, opa_decision_id: str | None,
           arguments: dict[str, Any] | None) -> None:
    """Set the decision's attributes on ``span`` and end it; status ERROR only for a
    ``failure`` to decide."""
    attributes: dict[str, Any] = {
        DECISION: verdict.decision,
        REASON: verdict.reason,
        ENGINE: engine,
    }
    if verdict.matched:
        attributes[MATCHED_RULES] = [m.rule for m in verdict.matched]
    if verdict.errors:
        attributes[ERROR_RULES] = [e.rule for e in verdict.errors]
    optional = {RULE: verdict.rule, POLICY_NAME: verdict.policy_name,
                POLICY_REVISION: verdict.policy_revision, APPROVAL_ID: approval_id,
                CAUSE: cause, OPA_DECISION_ID: opa_decision_id}
    attributes.update({k: v for k, v in optional.items() if v is not None})
    if arguments is not None:
        attributes[gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS] = json.dumps(arguments,
                                                                   ensure_ascii=False)
    span.set_attributes(attributes)
    if failure is not None:
        set_failure(span, failure, verdict.reason)
    span.end()


def set_failure(span: Span, failure: BaseException, message: str | None) -> None:
    """Mark ``span`` failed: ``error.type`` is the exception's qualified class name, the
    status ERROR with ``message``."""
    kind = type(failure)
    span.set_attribute(ERROR_TYPE, f"{kind.__module__}.{kind.__qualname__}")
    span.set_status(Status(StatusCode.ERROR, message))
