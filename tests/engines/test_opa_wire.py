"""OPA's wire format, from recorded answers of a real OPA (``tests/fixtures/opa/``, each with
the OPA source or doc it was written from): the REST engine handles each exactly, the
stand-in answers each case the same way, and OPA-format decision-log events and status
reports round-trip through veto-opa's models."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.engines.conftest import SEED_CASES, module_bundle, text
from tests.opa_standin import OpaStandin
from veto_opa.bundles import BundleService
from veto_opa.engines.rest import RestEngine
from veto_opa.errors import EngineProtocolError, PolicyNotLoaded
from veto_opa.opa_formats import BundleStatus, DecisionLogEvent, StatusReport

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "opa"
DATA_API = {p.stem.removeprefix("data_api_"): json.loads(p.read_text())
            for p in sorted(FIXTURES.glob("data_api_*.json"))}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ERRORS = {"PolicyNotLoaded": PolicyNotLoaded, "EngineProtocolError": EngineProtocolError}
CONFLICT = "package veto\n\ndecision := 1 if input.a\n\ndecision := 2 if input.a\n"


@contextmanager
def replay(fixture: dict[str, Any]) -> Iterator[str]:
    """A server answering every request with the fixture's status, headers and bytes."""
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = fixture["body"].encode()
            self.send_response(fixture["status"])
            for name, value in fixture["headers"].items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    import threading

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_every_fixture_names_its_source() -> None:
    assert len(DATA_API) >= 9
    for name, fixture in DATA_API.items():
        assert fixture["source"], name
        assert fixture["body"].endswith("\n"), name   # OPA's writer ends every body so


@pytest.mark.parametrize("name", sorted(DATA_API))
def test_the_rest_engine_handles_opas_answer(name: str) -> None:
    fixture = DATA_API[name]
    expect = fixture["expect"]
    with replay(fixture) as url, RestEngine(url) as engine:
        if "error" in expect:
            with pytest.raises(ERRORS[expect["error"]]) as raised:
                engine.decide(SEED_CASES[0][0])
            assert str(raised.value) == expect["message"].format(url=url)
        else:
            answer = engine.decide(SEED_CASES[0][0])
            assert (answer.verdict.decision, answer.verdict.rule) == (
                expect["decision"], expect["rule"])
            assert answer.opa_decision_id == expect["decision_id"]


# -- the stand-in answers as OPA does ---------------------------------------------------------

def post(url: str, fixture: dict[str, Any], body: str | None = None) -> httpx.Response:
    request = fixture["request"]
    content = request.get("body", body if body is not None else text(SEED_CASES[0][0]))
    if "body" not in request and body is None:
        content = '{"input":' + content + "}"
    return httpx.post(url + request["path"], content=content,
                      headers={"Content-Type": "application/json"})


def assert_same_form(response: httpx.Response, fixture: dict[str, Any]) -> dict[str, Any]:
    """Status, content type, field order and layout as in the recorded answer."""
    assert response.status_code == fixture["status"]
    assert response.headers["content-type"] == fixture["headers"]["Content-Type"]
    got, want = json.loads(response.text), json.loads(fixture["body"])
    assert list(got) == list(want)
    if fixture["status"] == 200:
        assert response.text == json.dumps(got, separators=(",", ":"),
                                           ensure_ascii=False) + "\n"
    else:
        assert response.text == json.dumps(got, indent=2, ensure_ascii=False) + "\n"
    return got


@pytest.fixture
def seed_standin(seed_bundle_path: Path) -> Iterator[str]:
    with OpaStandin(seed_bundle_path, pool_size=1) as url:
        yield url


@pytest.fixture
def logging_standin(seed_bundle_path: Path) -> Iterator[str]:
    with OpaStandin(seed_bundle_path, decision_logs=True, pool_size=1) as url:
        yield url


def test_standin_result(seed_standin: str) -> None:
    got = assert_same_form(post(seed_standin, DATA_API["result"]), DATA_API["result"])
    assert got["result"]["rule"] == "block_production_database_deletes"


def test_standin_result_with_decision_id(logging_standin: str) -> None:
    fixture = DATA_API["result_with_decision_id"]
    got = assert_same_form(post(logging_standin, fixture), fixture)
    assert UUID.match(got["decision_id"])


def test_standin_undefined() -> None:
    fixture = DATA_API["undefined"]
    with OpaStandin(None, pool_size=1) as url:
        response = post(url, fixture)
    assert_same_form(response, fixture)
    assert response.text == fixture["body"]


def test_standin_undefined_with_decision_id() -> None:
    fixture = DATA_API["undefined_with_decision_id"]
    with OpaStandin(None, decision_logs=True, pool_size=1) as url:
        assert_same_form(post(url, fixture), fixture)


def test_standin_metrics(logging_standin: str) -> None:
    fixture = DATA_API["metrics"]
    got = assert_same_form(post(logging_standin, fixture), fixture)
    want = json.loads(fixture["body"])["metrics"]
    assert list(got["metrics"]) == list(want)
    assert all(type(value) is int for value in got["metrics"].values())


def test_standin_missing_input_warning(seed_standin: str) -> None:
    fixture = DATA_API["missing_input_warning"]
    got = assert_same_form(post(seed_standin, fixture), fixture)
    assert got["warning"] == json.loads(fixture["body"])["warning"]


def test_standin_bad_request(seed_standin: str) -> None:
    fixture = DATA_API["bad_request_400"]
    got = assert_same_form(post(seed_standin, fixture), fixture)
    want = json.loads(fixture["body"])
    assert got["code"] == want["code"]
    # The prefix is OPA's; the rest is the JSON parser's own words (Go's vs Python's).
    assert got["message"].startswith("body contains malformed input document: ")


def test_standin_evaluation_error() -> None:
    fixture = DATA_API["eval_error_500"]
    with OpaStandin(module_bundle(CONFLICT), pool_size=1) as url:
        got = assert_same_form(post(url, fixture, body='{"input":{"a":true}}'), fixture)
    want = json.loads(fixture["body"])
    assert (got["code"], got["message"]) == (want["code"], want["message"])
    assert got["errors"][0]["code"] == want["errors"][0]["code"] == "eval_conflict_error"
    assert list(got["errors"][0]) == list(want["errors"][0])
    assert list(got["errors"][0]["location"]) == list(want["errors"][0]["location"])


# -- OPA's event and status formats through veto-opa's models ----------------------------

def test_an_opa_decision_log_event_round_trips() -> None:
    event = json.loads((FIXTURES / "decision_log_event.json").read_text())["event"]
    model = DecisionLogEvent.model_validate(event)
    assert model.document() == event
    assert model.bundles is not None and model.bundles["authz"].revision
    assert model.erased == ["/input/password"]


def test_an_event_with_fields_of_a_newer_opa_round_trips() -> None:
    event = {"labels": {"id": "x"}, "decision_id": "d", "timestamp": "2026-01-01T00:00:00Z",
             "intermediate_results": {"a": 1}, "custom": {"k": "v"}}
    assert DecisionLogEvent.model_validate(event).document() == event


def test_labels_are_written_even_when_null() -> None:
    event = {"labels": None, "decision_id": "d", "timestamp": "2026-01-01T00:00:00Z"}
    assert DecisionLogEvent.model_validate(event).document() == event


def test_an_opa_status_report_round_trips() -> None:
    report = json.loads((FIXTURES / "status_report.json").read_text())["report"]
    model = StatusReport.model_validate(report)
    assert model.document() == report
    assert model.bundles is not None
    assert model.bundles["play"].active_revision == "b3BlbnBvbGljeWFnZW50Lm9yZw=="


def test_the_bundle_service_reports_in_opas_status_format(seed_bundle_path: Path) -> None:
    status_of: dict[str, Any] = {}
    with BundleService("http://127.0.0.1:9/veto.tar.gz", activate=lambda b: None) as service:
        service.poll()
        status_of = service.status().document()
    report = StatusReport.model_validate({"labels": {"id": "veto"},
                                          "bundles": {"veto": status_of}})
    assert report.document()["bundles"]["veto"] == status_of
    assert status_of["code"] == "bundle_error"
    assert status_of["last_successful_activation"] == "0001-01-01T00:00:00Z"
    assert BundleStatus.model_validate(status_of).name == "veto"
