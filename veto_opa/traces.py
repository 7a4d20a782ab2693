"""Decisions read back from traces: the ``veto.guard <tool>`` spans, wherever they were sent.

    decisions = from_otlp_file("out/traces/traces.jsonl")             # collector file exporter
    decisions = from_jaeger("http://localhost:16686", decision="deny")  # Jaeger's query API
    select(decisions, tool="execute_sql", since="2026-11-25T00:00:00Z")

Two sources:

- an OpenTelemetry Collector ``file`` exporter's output: one OTLP-JSON
  ``{"resourceSpans": [...]}`` export request per line (the OTLP/JSON mapping: hex ids,
  lowerCamelCase fields, 64-bit integers as strings; ``scopeSpans``, or the older
  ``instrumentationLibrarySpans``);
- Jaeger's HTTP query API, ``GET /api/traces?service=veto-opa`` with ``tags`` (a JSON object of
  attribute values that every returned trace has), ``limit``, ``start``/``end`` in
  microseconds; the answer ``{"data": [{"traceID", "spans": [{"spanID", "operationName",
  "startTime" (µs), "duration" (µs), "tags": [{"key", "type", "value"}]}]}], ...}``
  (Jaeger's ``cmd/query/app`` handlers and ``model/json``).

A decision span is one whose name starts with ``veto.guard `` and that carries
``veto.decision``; the attribute names are those of :mod:`veto_opa.spans`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from veto_opa import spans
from veto_opa.errors import VetoError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

SPAN_PREFIX = "veto.guard "
TOOL = "gen_ai.tool.name"
CALL_ID = "gen_ai.tool.call.id"
MODEL = "gen_ai.request.model"


@dataclass(frozen=True)
class TracedDecision:
    """One guard call as its span recorded it."""

    time: str                  # the span's start, UTC, ISO 8601 with microseconds
    duration_us: int
    trace_id: str
    span_id: str
    service: str | None
    tool: str | None
    decision: str | None
    rule: str | None
    reason: str | None
    decision_id: str | None
    policy_revision: str | None
    approval_id: str | None
    cause: str | None
    engine: str | None
    opa_decision_id: str | None
    model: str | None
    call_id: str | None
    attributes: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return asdict(self)


def _decision(name: str, attributes: Mapping[str, Any], *, start_us: int, duration_us: int,
              trace_id: str, span_id: str, service: str | None) -> TracedDecision | None:
    if not name.startswith(SPAN_PREFIX) or spans.DECISION not in attributes:
        return None

    def text(key: str) -> str | None:
        value = attributes.get(key)
        return value if isinstance(value, str) else None

    moment = datetime.fromtimestamp(start_us / 1e6, UTC)
    return TracedDecision(
        time=moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), duration_us=duration_us,
        trace_id=trace_id, span_id=span_id, service=service,
        tool=text(TOOL) or name.removeprefix(SPAN_PREFIX), decision=text(spans.DECISION),
        rule=text(spans.RULE), reason=text(spans.REASON), decision_id=text(spans.DECISION_ID),
        policy_revision=text(spans.POLICY_REVISION), approval_id=text(spans.APPROVAL_ID),
        cause=text(spans.CAUSE), engine=text(spans.ENGINE),
        opa_decision_id=text(spans.OPA_DECISION_ID), model=text(MODEL), call_id=text(CALL_ID),
        attributes=dict(attributes))


# -- OTLP JSON (the collector's file exporter) -----------------------------------------------

def _any_value(value: Mapping[str, Any]) -> Any:
    """An OTLP ``AnyValue`` as a Python value (64-bit integers arrive as strings)."""
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [_any_value(v) for v in (value["arrayValue"].get("values") or [])]
    if "kvlistValue" in value:
        return _attributes(value["kvlistValue"].get("values") or [])
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def _attributes(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {item["key"]: _any_value(item.get("value") or {}) for item in items}


def decisions_from_otlp(request: Mapping[str, Any]) -> Iterator[TracedDecision]:
    """The decision spans of one OTLP-JSON export request (``{"resourceSpans": [...]}``)."""
    for resource_spans in request.get("resourceSpans") or []:
        resource = _attributes((resource_spans.get("resource") or {}).get("attributes") or [])
        service = resource.get("service.name")
        scopes = (resource_spans.get("scopeSpans")
                  or resource_spans.get("instrumentationLibrarySpans") or [])
        for scope in scopes:
            for span in scope.get("spans") or []:
                start = int(span.get("startTimeUnixNano") or 0)
                end = int(span.get("endTimeUnixNano") or start)
                found = _decision(span.get("name", ""), _attributes(span.get("attributes") or []),
                                  start_us=start // 1000, duration_us=(end - start) // 1000,
                                  trace_id=str(span.get("traceId", "")).lower(),
                                  span_id=str(span.get("spanId", "")).lower(),
                                  service=service if isinstance(service, str) else None)
                if found is not None:
                    yield found


def from_otlp_file(path: str | Path) -> list[TracedDecision]:
    """Every decision span in a collector ``file`` exporter's output (JSON lines).

    Raises:
        VetoError: the file cannot be read, or a line is not an OTLP-JSON object (with its
            line number).
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise VetoError(f"cannot read {path}: {error}") from None
    found: list[TracedDecision] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")
            found.extend(decisions_from_otlp(request))
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise VetoError(f"{path}:{number}: not an OTLP-JSON export request: "
                            f"{error}") from None
    return found


# -- Jaeger's query API -----------------------------------------------------------------------

def decisions_from_jaeger(answer: Mapping[str, Any]) -> Iterator[TracedDecision]:
    """The decision spans of a Jaeger ``/api/traces`` answer."""
    for trace in answer.get("data") or []:
        processes = trace.get("processes") or {}
        for span in trace.get("spans") or []:
            tags = {tag["key"]: tag.get("value") for tag in span.get("tags") or []}
            process = processes.get(span.get("processID")) or {}
            found = _decision(span.get("operationName", ""), tags,
                              start_us=int(span.get("startTime") or 0),
                              duration_us=int(span.get("duration") or 0),
                              trace_id=str(span.get("traceID", trace.get("traceID", ""))),
                              span_id=str(span.get("spanID", "")),
                              service=process.get("serviceName"))
            if found is not None:
                yield found


def from_jaeger(url: str, *, service: str = "veto-opa", decision: str | None = None,
                tool: str | None = None, rule: str | None = None,
                decision_id: str | None = None, since: str | None = None,
                until: str | None = None, limit: int = 100,
                client: httpx.Client | None = None) -> list[TracedDecision]:
    """Query Jaeger for decision spans; the filters go to Jaeger as ``tags`` and times.

    Raises:
        VetoError: Jaeger cannot be reached, or answers with an error or not JSON.
    """
    tags = {key: value for key, value in ((spans.DECISION, decision), (TOOL, tool),
                                          (spans.RULE, rule), (spans.DECISION_ID, decision_id))
            if value is not None}
    params: dict[str, str] = {"service": service, "limit": str(limit)}
    if tags:
        params["tags"] = json.dumps(tags, separators=(",", ":"))
    if since:
        params["start"] = str(_micros(since))
    if until:
        params["end"] = str(_micros(until))
    own = client is None
    http = client or httpx.Client(timeout=10.0)
    endpoint = url.rstrip("/") + "/api/traces"
    try:
        response = http.get(endpoint, params=params)
    except httpx.HTTPError as error:
        raise VetoError(f"cannot query Jaeger at {url}: {error}") from None
    finally:
        if own:
            http.close()
    try:
        answer = response.json()
    except ValueError:
        raise VetoError(f"Jaeger at {url} answered HTTP {response.status_code} without "
                        "JSON") from None
    if response.status_code != 200 or (isinstance(answer, dict) and answer.get("errors")):
        errors = answer.get("errors") if isinstance(answer, dict) else None
        raise VetoError(f"Jaeger at {url} answered HTTP {response.status_code}: {errors}")
    return list(decisions_from_jaeger(answer))


def _micros(timestamp: str) -> int:
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


# -- filters ---------------------------------------------------------------------------------

def select(decisions: Iterable[TracedDecision], *, decision: str | None = None,
           tool: str | None = None, rule: str | None = None, since: str | None = None,
           until: str | None = None, limit: int | None = None) -> list[TracedDecision]:
    """The decisions matching every filter (``since`` inclusive, ``until`` exclusive, UTC),
    newest first, at most ``limit``."""
    low = _micros(since) if since else None
    high = _micros(until) if until else None
    kept = [d for d in decisions
            if (decision is None or d.decision == decision)
            and (tool is None or d.tool == tool)
            and (rule is None or d.rule == rule)
            and (low is None or _micros(d.time) >= low)
            and (high is None or _micros(d.time) < high)]
    kept.sort(key=lambda d: d.time, reverse=True)
    return kept[:limit] if limit is not None else kept


def find(decisions: Iterable[TracedDecision], wanted: str) -> list[TracedDecision]:
    """Decisions whose decision id, trace id or span id is ``wanted`` or starts with it."""
    wanted = wanted.lower()
    return [d for d in decisions
            if any(value and value.lower().startswith(wanted)
                   for value in (d.decision_id, d.trace_id, d.span_id))]
