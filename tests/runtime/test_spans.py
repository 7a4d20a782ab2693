"""One span per guard call, read from OpenTelemetry's in-memory exporter."""

from __future__ import annotations

import json
from pathlib import Path

from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id

from tests.conftest import SEED
from tests.opa_standin import OpaStandin
from veto_opa import Veto

PROD = {"environment": "production", "user_role": "sre"}
DROP = {"statement": "DROP TABLE customers", "database": "analytics"}


def test_one_span_per_guard_with_exact_attributes(spans_out, tmp_path: Path) -> None:
    provider, exporter = spans_out
    with Veto([SEED], home=tmp_path, tracer_provider=provider, reload_interval=0) as v:
        d = v.guard("execute_sql", DROP, PROD, model="mistral-large-latest",
                    call_id="D681PevKs")
    (span,) = exporter.get_finished_spans()
    assert span.name == "veto.guard execute_sql"
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET   # a deny is a decision, not an error
    assert dict(span.attributes) == {
        "gen_ai.tool.name": "execute_sql",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": "D681PevKs",
        "gen_ai.request.model": "mistral-large-latest",
        "veto.decision_id": d.decision_id,
        "veto.decision": "deny",
        "veto.rule": "block_production_database_deletes",
        "veto.reason": "Destructive SQL is not allowed on production databases",
        "veto.policy.name": "policies",
        "veto.policy.revision": d.policy_revision,
        "veto.engine": "embedded",
        "veto.matched_rules": ("block_production_database_deletes",),
    }


def test_span_and_record_carry_each_others_ids(spans_out, tmp_path: Path) -> None:
    provider, exporter = spans_out
    with Veto([SEED], home=tmp_path, tracer_provider=provider, reload_interval=0) as v:
        d = v.guard("execute_sql", DROP, PROD)
        record = v.records.get(d.decision_id)
    (span,) = exporter.get_finished_spans()
    assert record.trace_id == format_trace_id(span.context.trace_id) == d.trace_id
    assert record.span_id == format_span_id(span.context.span_id) == d.span_id
    assert span.attributes["veto.decision_id"] == record.decision_id


def test_failure_to_decide_sets_status_and_error_type(spans_out, tmp_path: Path) -> None:
    provider, exporter = spans_out
    with Veto([SEED], home=tmp_path, tracer_provider=provider, reload_interval=0) as v:
        d = v.guard("execute_sql", "{not json", PROD)
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == d.reason
    assert span.attributes["error.type"] == "veto_opa.errors.InvalidToolCall"
    assert span.attributes["veto.cause"] == "invalid_tool_call"
    assert span.attributes["veto.decision"] == "deny"


def test_approval_id_on_the_span(spans_out, tmp_path: Path) -> None:
    provider, exporter = spans_out
    with Veto([SEED], home=tmp_path, tracer_provider=provider, reload_interval=0) as v:
        d = v.guard("rotate_secret", {"secret_path": "/x", "service": "stripe"}, {})
    (span,) = exporter.get_finished_spans()
    assert span.attributes["veto.approval_id"] == d.approval_id is not None


def test_arguments_stay_off_spans_unless_captured(spans_out, tmp_path: Path) -> None:
    provider, exporter = spans_out
    policy = tmp_path / "p.yaml"
    policy.write_text("redact: [args.password]\nrules: []\n")
    with Veto([policy], home=tmp_path / "a", tracer_provider=provider, reload_interval=0) as v:
        v.guard("login", {"user": "bob", "password": "hunter2"})
    with Veto([policy], home=tmp_path / "b", tracer_provider=provider, reload_interval=0,
              capture_arguments=True) as v:
        v.guard("login", {"user": "bob", "password": "hunter2"})
    off, on = exporter.get_finished_spans()
    assert "gen_ai.tool.call.arguments" not in off.attributes
    shown = json.loads(on.attributes["gen_ai.tool.call.arguments"])
    assert shown["user"] == "bob" and shown["password"].startswith("hmac-sha256:")


def test_spans_can_be_turned_off(spans_out, tmp_path: Path) -> None:
    provider, exporter = spans_out
    with Veto([SEED], home=tmp_path, tracer_provider=provider, spans=False,
              reload_interval=0) as v:
        d = v.guard("execute_sql", DROP, PROD)
    assert exporter.get_finished_spans() == () and d.trace_id is None


def test_guard_span_joins_the_callers_trace(spans_out, tmp_path: Path) -> None:
    provider, exporter = spans_out
    with Veto([SEED], home=tmp_path, tracer_provider=provider, reload_interval=0) as v:
        with provider.get_tracer("agent").start_as_current_span("agent turn") as parent:
            d = v.guard("execute_sql", DROP, PROD)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    guard = spans["veto.guard execute_sql"]
    assert guard.parent.span_id == parent.get_span_context().span_id
    assert guard.context.trace_id == parent.get_span_context().trace_id
    assert d.trace_id == format_trace_id(guard.context.trace_id)


def test_traceparent_header_names_the_guard_span(spans_out, tmp_path: Path, seed_bundle) -> None:
    provider, exporter = spans_out
    server = OpaStandin(seed_bundle)
    server.start()
    try:
        with Veto(opa_url=server.url, home=tmp_path, tracer_provider=provider) as v:
            d = v.guard("execute_sql", DROP, PROD)
        header = server.requests[-1].headers["traceparent"]
    finally:
        server.stop()
    (span,) = exporter.get_finished_spans()
    version, trace_id, parent_id, flags = header.split("-")
    assert (version, trace_id, parent_id) == ("00", d.trace_id, d.span_id)
    assert int(flags, 16) & 1, "sampled"
    assert span.attributes["veto.engine"] == "rest"


def test_rules_in_error_and_matched_rules_are_listed_on_the_span(spans_out,
                                                                 tmp_path: Path) -> None:
    provider, exporter = spans_out
    with Veto([SEED], home=tmp_path, tracer_provider=provider, reload_interval=0) as v:
        allowed = v.guard("execute_sql", {"statement": "SELECT 1", "database": "analytics"},
                          PROD)
        d = v.guard("execute_sql", {"statement": "DELETE FROM orders", "database": "analytics"},
                    {})   # no environment, no role: two rules cannot be evaluated
    quiet, failing = exporter.get_finished_spans()
    assert allowed.decision == "allow"
    assert "veto.matched_rules" not in quiet.attributes   # nothing matched, nothing in error
    assert "veto.error_rules" not in quiet.attributes
    assert d.decision == "deny" and d.errors
    assert failing.attributes["veto.error_rules"] == tuple(e.rule for e in d.errors)
    assert failing.attributes["veto.matched_rules"] == tuple(m.rule for m in d.matched)
