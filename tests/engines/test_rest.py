"""The REST engine against the OPA stand-in: same decisions, kept-alive, traced, authenticated."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tests.engines.conftest import SEED_CASES
from tests.opa_standin import OpaStandin
from veto_opa.engines.embedded import EmbeddedEngine
from veto_opa.engines.rest import RestEngine
from veto_opa.translators.bundle import Bundle, build_bundle

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def tracer() -> Iterator[trace.Tracer]:
    provider = TracerProvider()   # passed explicitly: the global provider stays untouched
    yield provider.get_tracer("tests.engines")
    provider.shutdown()


def traceparent(span: trace.Span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


# -- decisions -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("input", "decision", "rule"), SEED_CASES,
                         ids=[f"{i}-{c[1]}" for i, c in enumerate(SEED_CASES)])
def test_decides_like_the_embedded_engine(rest: RestEngine, embedded: EmbeddedEngine,
                                          input: dict[str, Any], decision: str,
                                          rule: str | None) -> None:
    answer = rest.decide(input)
    assert answer.decision == embedded.decide(input).decision
    assert (answer.decision["decision"], answer.decision["rule"]) == (decision, rule)


def test_posts_the_input_to_the_data_api(rest: RestEngine, standin: OpaStandin) -> None:
    input = SEED_CASES[0][0]
    rest.decide(input)
    request = standin.requests[-1]
    assert (request.method, request.path) == ("POST", "/v1/data/veto/decision")
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {"input": input}


def test_decision_id_is_captured(rest: RestEngine) -> None:
    first, second = rest.decide(SEED_CASES[0][0]), rest.decide(SEED_CASES[0][0])
    assert first.opa_decision_id is not None and UUID.match(first.opa_decision_id)
    assert first.opa_decision_id != second.opa_decision_id


def test_without_decision_logging_there_is_no_decision_id(seed_bundle_path: Any) -> None:
    with OpaStandin(seed_bundle_path, pool_size=1) as url, RestEngine(url) as engine:
        assert engine.decide(SEED_CASES[0][0]).opa_decision_id is None


def test_other_document_path(standin: OpaStandin) -> None:
    standin.load(_bundle_with_decision_at("veto/tools/decision.rego", "veto.tools"))
    with RestEngine(standin.url + "/", path="/veto/tools/decision") as engine:
        assert engine.decide({}).decision["rule"] == "tools"
    assert standin.requests[-1].path == "/v1/data/veto/tools/decision"


def _bundle_with_decision_at(module: str, package: str) -> Bundle:
    source = (f"package {package}\n\n"
              'decision := {"decision": "allow", "rule": "tools", "reason": "r", "approvers": [],'
              ' "matched": [], "errors": [], "policy": {}}\n')
    return build_bundle({module: source}, revision="t")


def test_bad_url_is_refused() -> None:
    with pytest.raises(ValueError, match="expected an http\\(s\\) URL of OPA"):
        RestEngine("localhost:8181")


# -- connections ---------------------------------------------------------------------------------

def test_sequential_decides_reuse_one_connection(rest: RestEngine, standin: OpaStandin) -> None:
    for _ in range(50):
        rest.decide(SEED_CASES[0][0])
    assert standin.connections == 1
    assert len(standin.requests) == 50


def test_concurrent_decides_share_a_bounded_pool(standin: OpaStandin,
                                                 embedded: EmbeddedEngine) -> None:
    with RestEngine(standin.url, pool_maxsize=4) as engine:
        def worker(offset: int) -> list[str]:
            wrong = []
            for i in range(40):
                input, decision, rule = SEED_CASES[(offset + i) % len(SEED_CASES)]
                got = engine.decide(input).decision
                if (got["decision"], got["rule"]) != (decision, rule):
                    wrong.append(f"{input}: {got}")
            return wrong

        with ThreadPoolExecutor(4) as pool:
            assert [w for ws in pool.map(worker, range(4)) for w in ws] == []
    assert standin.connections <= 4


def test_close_closes_the_connections(rest: RestEngine, standin: OpaStandin) -> None:
    rest.decide(SEED_CASES[0][0])
    rest.close()
    with RestEngine(standin.url) as again:
        again.decide(SEED_CASES[0][0])
    assert standin.connections == 2


# -- headers -------------------------------------------------------------------------------------

def test_bearer_token_is_sent(standin: OpaStandin) -> None:
    with RestEngine(standin.url, token="s3cret") as engine:
        engine.decide(SEED_CASES[0][0])
        engine.decide(SEED_CASES[0][0], headers={"traceparent": "00-" + "1" * 32 + "-"
                                                 + "2" * 16 + "-01"})
    assert [h["authorization"] for h in standin.headers()] == ["Bearer s3cret"] * 2


def test_no_authorization_without_a_token(rest: RestEngine, standin: OpaStandin) -> None:
    rest.decide(SEED_CASES[0][0])
    assert "authorization" not in standin.requests[-1].headers


def test_traceparent_of_the_active_span_is_injected(rest: RestEngine, standin: OpaStandin,
                                                    tracer: trace.Tracer) -> None:
    span = tracer.start_span("veto.guard")
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        rest.decide(SEED_CASES[0][0])
    finally:
        otel_context.detach(token)
        span.end()
    assert standin.requests[-1].headers["traceparent"] == traceparent(span)


def test_no_traceparent_without_an_active_span(rest: RestEngine, standin: OpaStandin) -> None:
    rest.decide(SEED_CASES[0][0])
    assert "traceparent" not in standin.requests[-1].headers


def test_explicit_headers_are_passed_through(rest: RestEngine, standin: OpaStandin,
                                             tracer: trace.Tracer) -> None:
    span = tracer.start_span("veto.guard")
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
    span.end()
    carrier["tracestate"] = "veto=1"
    rest.decide(SEED_CASES[0][0], headers=carrier)
    headers = standin.requests[-1].headers
    assert headers["traceparent"] == traceparent(span)
    assert headers["tracestate"] == "veto=1"


def test_explicit_headers_replace_the_injected_context(rest: RestEngine, standin: OpaStandin,
                                                       tracer: trace.Tracer) -> None:
    explicit = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    with tracer.start_as_current_span("outer"):
        rest.decide(SEED_CASES[0][0], headers={"traceparent": explicit})
    assert standin.requests[-1].headers["traceparent"] == explicit
