"""Everything that can go wrong while deciding is a deny that names the cause, is recorded,
and raises nothing out of guard() — one test per cause, for both engines."""

from __future__ import annotations

import socket
from datetime import date
from pathlib import Path

import pytest

from tests.opa_standin import OpaStandin
from veto_opa import Veto
from veto_opa.engines import EmbeddedEngine
from veto_opa.translators.bundle import build_bundle

PROD = {"environment": "production", "user_role": "sre"}
SELECT = {"statement": "SELECT 1", "database": "analytics"}


def assert_fail_closed(veto: Veto, d, cause: str, *phrases: str) -> None:
    assert d.decision == "deny" and not d.allowed
    assert d.cause == cause and d.rule is None
    assert d.reason.startswith(f"{cause}: ")
    for phrase in phrases:
        assert phrase in d.reason, d.reason
    record = veto.records.get(d.decision_id)
    assert record is not None, "the fail-closed decision must be recorded"
    assert (record.decision, record.cause, record.reason) == ("deny", cause, d.reason)


def _bundle(source: str):
    return build_bundle({"veto/decision.rego": source}, revision="test")


# -- the REST engine, against the stand-in OPA ----------------------------------------------

@pytest.fixture
def standin(seed_bundle):
    server = OpaStandin(seed_bundle)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def rest(standin, tmp_path: Path):
    with Veto(opa_url=standin.url, opa_timeout=0.3, home=tmp_path) as v:
        yield v


def test_rest_decides_when_all_is_well(rest: Veto) -> None:
    assert rest.guard("execute_sql", SELECT, PROD).decision == "allow"


def test_rest_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Veto(opa_url=f"http://127.0.0.1:{port}", home=tmp_path) as v:
        d = v.guard("execute_sql", SELECT, PROD)
        assert_fail_closed(v, d, "engine_unavailable", "refused the connection")


def test_rest_timeout(rest: Veto, standin: OpaStandin) -> None:
    standin.delay = 1.0
    d = rest.guard("execute_sql", SELECT, PROD)
    assert_fail_closed(rest, d, "engine_timeout", "did not answer within 0.3 s")


def test_rest_http_500(rest: Veto, standin: OpaStandin) -> None:
    standin.status, standin.body = 500, b'{"code": "internal_error", "message": "boom"}'
    d = rest.guard("execute_sql", SELECT, PROD)
    assert_fail_closed(rest, d, "engine_protocol_error", "HTTP 500", "boom")


def test_rest_malformed_json(rest: Veto, standin: OpaStandin) -> None:
    standin.status, standin.body = 200, b"<html>not json"
    d = rest.guard("execute_sql", SELECT, PROD)
    assert_fail_closed(rest, d, "engine_protocol_error", "not JSON")


def test_rest_undefined_decision(rest: Veto, standin: OpaStandin) -> None:
    standin.load(None)
    d = rest.guard("execute_sql", SELECT, PROD)
    assert_fail_closed(rest, d, "policy_not_loaded", "undefined", "bundle")


def test_rest_result_that_is_not_a_decision(rest: Veto, standin: OpaStandin) -> None:
    standin.status, standin.body = 200, b'{"result": {"decision": "maybe"}}'
    d = rest.guard("execute_sql", SELECT, PROD)
    assert_fail_closed(rest, d, "engine_protocol_error", "decision")


def test_rest_exception_inside_the_engine(rest: Veto, standin: OpaStandin) -> None:
    standin.load(_bundle("package veto\ndecision := x if { x := 1 / count(input.args) }\n"))
    d = rest.guard("execute_sql", {}, PROD)
    assert_fail_closed(rest, d, "engine_protocol_error", "HTTP 500", "divide by zero")


# -- the embedded engine ------------------------------------------------------------------

def _embedded(tmp_path: Path, source: str) -> Veto:
    return Veto(engine=EmbeddedEngine(_bundle(source), pool_size=1), home=tmp_path)


def test_embedded_undefined_decision(tmp_path: Path) -> None:
    with _embedded(tmp_path, "package veto\nother := 1\n") as v:
        d = v.guard("execute_sql", SELECT, PROD)
        assert_fail_closed(v, d, "policy_not_loaded", "data.veto.decision is undefined")


def test_embedded_exception_inside_the_engine(tmp_path: Path) -> None:
    with _embedded(tmp_path, "package veto\ndecision := x if { x := 1 / count(input.args) }\n") as v:
        d = v.guard("execute_sql", {}, PROD)
        assert_fail_closed(v, d, "engine_evaluation_error", "divide by zero")


def test_embedded_malformed_answer(tmp_path: Path) -> None:
    with _embedded(tmp_path, "package veto\ndecision := 5\n") as v:
        d = v.guard("execute_sql", SELECT, PROD)
        assert_fail_closed(v, d, "engine_protocol_error", "not a decision object")


# -- the tool call itself, for both engines -----------------------------------------------

@pytest.fixture(params=["embedded", "rest"])
def any_veto(request, tmp_path: Path, seed_bundle):
    if request.param == "embedded":
        with Veto(engine=EmbeddedEngine(seed_bundle, pool_size=1), home=tmp_path,
                  max_argument_bytes=1000) as v:
            yield v
    else:
        with OpaStandin(seed_bundle) as url, Veto(opa_url=url, home=tmp_path,
                                                  max_argument_bytes=1000) as v:
            yield v


@pytest.mark.parametrize("arguments, phrase", [
    ("{not json", "not valid JSON text"),
    ("[1, 2]", "must be a JSON object, found array"),
    ('"text"', "must be a JSON object, found string"),
    ([1, 2], "found array"),
    (42, "found number"),
    (b"\xff\xfe", "not UTF-8"),
    ({"when": object()}, "not JSON"),
    ({"x": float("nan")}, "not JSON"),
    ('{"x": NaN}', "NaN is not JSON"),
    ({1: "a", "b": 2}, "not JSON"),
    ('{"x": -Infinity}', "-Infinity is not JSON"),
    # JSON text, but a number no double holds: Python reads it as infinity, which no
    # canonical text (so neither OPA's input nor the record) can hold.
    ('{"x": 1e400}', "not JSON: Out of range float values"),
])
def test_arguments_that_are_not_an_object(any_veto: Veto, arguments, phrase: str) -> None:
    d = any_veto.guard("execute_sql", arguments, PROD)
    assert_fail_closed(any_veto, d, "invalid_tool_call", phrase)


def test_arguments_over_the_size_limit(any_veto: Veto) -> None:
    big = {"statement": "SELECT '" + "x" * 2000 + "'", "database": "analytics"}
    d = any_veto.guard("execute_sql", big, PROD)
    assert_fail_closed(any_veto, d, "invalid_tool_call", "over the limit of 1000 bytes")
    import json
    d = any_veto.guard("execute_sql", json.dumps(big), PROD)
    assert_fail_closed(any_veto, d, "invalid_tool_call", "over the limit of 1000 bytes")


def test_context_that_is_not_an_object(any_veto: Veto) -> None:
    d = any_veto.guard("execute_sql", SELECT, ["production"])  # type: ignore[arg-type]
    assert_fail_closed(any_veto, d, "invalid_tool_call", "context must be an object")


@pytest.mark.parametrize("context, recorded", [
    ({"environment": "production", "at": date(2026, 11, 25)},
     {"environment": "production", "at": "datetime.date(2026, 11, 25)"}),
    ({"environment": "production", "ratio": float("inf")},
     {"environment": "production", "ratio": "Infinity"}),
    ({"environment": "production", 7: "seven"}, {"environment": "production", "7": "seven"}),
])
def test_context_that_is_not_json(any_veto: Veto, context, recorded) -> None:
    d = any_veto.guard("execute_sql", SELECT, context)
    assert_fail_closed(any_veto, d, "invalid_tool_call", "context is not JSON")
    # The record keeps what can be kept of the context.
    assert any_veto.records.get(d.decision_id).context == recorded


def test_tool_name_that_is_not_a_string(any_veto: Veto) -> None:
    d = any_veto.guard(None, SELECT, PROD)  # type: ignore[arg-type]
    assert_fail_closed(any_veto, d, "invalid_tool_call", "tool name")


def test_record_failure_denies(tmp_path: Path, seed_bundle) -> None:
    class BrokenStore:
        def append_decision(self, record):
            from veto_opa.errors import RecordError
            raise RecordError("disk full")

        def close(self) -> None:
            pass

    with Veto(engine=EmbeddedEngine(seed_bundle, pool_size=1), home=tmp_path,
              records=BrokenStore()) as v:
        d = v.guard("execute_sql", SELECT, PROD)
        assert d.decision == "deny" and d.cause == "record_error"
        assert d.reason == "record_error: the decision record could not be written: disk full"
