"""``veto-opa traces``: decisions read back from spans the OpenTelemetry SDK really exported
(encoded as OTLP JSON by the project's own encoder on PyPI, as the collector's file exporter
writes lines), and from recorded answers of Jaeger's query API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from veto_opa import Veto
from veto_opa.traces import from_otlp_file
from veto_opa.traces_cli import main

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "jaeger"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    """Three guard calls' spans and one unrelated span, as collector file-exporter lines."""
    tmp = tmp_path_factory.mktemp("traces")
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "veto-opa"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with Veto([ROOT / "examples" / "policies.yaml"], home=tmp / "home", reload_interval=0,
              tracer_provider=provider) as veto:
        decisions = [
            veto.guard("execute_sql", {"statement": "DROP TABLE t", "database": "analytics"},
                       {"environment": "production", "user_role": "sre"},
                       model="mistral-large-latest", call_id="call_1"),
            veto.guard("send_email", {"to": "a@example.com"}),
            veto.guard("rotate_secret", {"service": "stripe", "secret_path": "/secrets/app/k"}),
        ]
    with provider.get_tracer("other").start_as_current_span("GET /health"):
        pass
    spans = exporter.get_finished_spans()
    provider.shutdown()
    path = tmp / "traces.jsonl"
    lines = [encode_spans(spans[:2]).to_json(), encode_spans(spans[2:]).to_json()]
    path.write_text("\n".join(lines) + "\n\n")
    return path, decisions


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["traces", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_file_list_shows_every_decision_span(exported: tuple[Path, list[Any]],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path, decisions = exported
    code, out, _ = run(capsys, "list", "--file", str(path), "--json")
    rows = json.loads(out)
    assert code == 0
    assert sorted(r["decision_id"] for r in rows) == sorted(d.decision_id for d in decisions)
    by_id = {r["decision_id"]: r for r in rows}
    first = by_id[decisions[0].decision_id]
    assert (first["decision"], first["rule"], first["tool"]) == (
        "deny", "block_production_database_deletes", "execute_sql")
    assert (first["trace_id"], first["span_id"]) == (decisions[0].trace_id,
                                                     decisions[0].span_id)
    assert (first["model"], first["call_id"], first["service"]) == (
        "mistral-large-latest", "call_1", "veto-opa")
    assert first["policy_revision"] == decisions[0].policy_revision
    assert by_id[decisions[2].decision_id]["approval_id"] == decisions[2].approval_id


@pytest.mark.parametrize(("filters", "expected"), [
    (["--decision", "deny"], ["execute_sql"]),
    (["--decision", "require_approval"], ["rotate_secret"]),
    (["--tool", "send_email"], ["send_email"]),
    (["--rule", "block_production_database_deletes"], ["execute_sql"]),
    (["--since", "2999-01-01"], []),
    (["--until", "2000-01-01"], []),
    (["--since", "2000-01-01", "--limit", "2"], None),
])
def test_file_filters(exported: tuple[Path, list[Any]], capsys: pytest.CaptureFixture[str],
                      filters: list[str], expected: list[str] | None) -> None:
    path, _ = exported
    code, out, _ = run(capsys, "list", "--file", str(path), "--json", *filters)
    tools = [row["tool"] for row in json.loads(out)]
    assert code == 0
    if expected is None:
        assert len(tools) == 2
    else:
        assert tools == expected


def test_file_table_and_show(exported: tuple[Path, list[Any]],
                            capsys: pytest.CaptureFixture[str]) -> None:
    path, decisions = exported
    code, out, _ = run(capsys, "list", "--file", str(path))
    assert code == 0
    assert out.splitlines()[0].split() == ["time", "decision", "tool", "rule", "reason",
                                           "decision_id", "trace_id"]
    assert decisions[0].decision_id in out
    code, out, _ = run(capsys, "show", decisions[0].decision_id[:13], "--file", str(path))
    assert code == 0
    assert "block_production_database_deletes" in out and "veto.decision" in out
    code, out, _ = run(capsys, "show", decisions[1].trace_id, "--file", str(path), "--json")
    assert json.loads(out)["decision_id"] == decisions[1].decision_id


def test_show_of_an_unknown_id(exported: tuple[Path, list[Any]],
                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "show", "ffffffff", "--file", str(exported[0]))
    assert code == 1 and "no decision span 'ffffffff'" in err


def test_a_malformed_line_names_its_number(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_text('{"resourceSpans": []}\nnot json\n')
    code, _, err = run(capsys, "list", "--file", str(path))
    assert code == 1 and f"{path}:2: not an OTLP-JSON export request" in err


def test_older_instrumentation_library_spans_are_read(tmp_path: Path) -> None:
    line = {"resourceSpans": [{"resource": {"attributes": []}, "instrumentationLibrarySpans": [
        {"spans": [{"traceId": "AB" * 16, "spanId": "CD" * 8, "name": "veto.guard x",
                    "startTimeUnixNano": 1_700_000_000_000_000_000,
                    "endTimeUnixNano": 1_700_000_000_000_500_000,
                    "attributes": [{"key": "veto.decision", "value": {"stringValue": "deny"}},
                                   {"key": "n", "value": {"intValue": "3"}}]}]}]}]}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(line) + "\n")
    [decision] = from_otlp_file(path)
    assert (decision.tool, decision.decision, decision.trace_id) == ("x", "deny", "ab" * 16)
    assert decision.duration_us == 500 and decision.attributes["n"] == 3
    assert decision.time == "2023-11-14T22:13:20.000000Z"


# -- Jaeger ----------------------------------------------------------------------------------

class Jaeger:
    """Jaeger's query API on 127.0.0.1, answering with a recorded response."""

    def __init__(self, answer: dict[str, Any], status: int = 200) -> None:
        self.queries: list[dict[str, list[str]]] = []
        jaeger = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                assert parts.path == "/api/traces"
                jaeger.queries.append(parse_qs(parts.query))
                body = json.dumps({k: v for k, v in answer.items()
                                   if not k.startswith("_")}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def jaeger() -> Iterator[Jaeger]:
    running = Jaeger(json.loads((FIXTURES / "api_traces.json").read_text()))
    running.thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()


def test_jaeger_list(jaeger: Jaeger, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "--jaeger", jaeger.url, "--json")
    rows = json.loads(out)
    assert code == 0
    assert [(r["tool"], r["decision"]) for r in rows] == [("send_email", "allow"),
                                                          ("execute_sql", "deny")]
    deny = rows[1]
    assert deny["service"] == "veto-opa" and deny["engine"] == "rest"
    assert deny["opa_decision_id"] == "3f1c8e7a-5b7d-4c1e-9a52-7d0e2c6b9f41"
    assert deny["time"] == "2026-11-26T00:00:00.123456Z" and deny["duration_us"] == 812
    assert jaeger.queries[0] == {"service": ["veto-opa"], "limit": ["100"]}


def test_jaeger_filters_go_to_jaeger_as_tags(jaeger: Jaeger,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "--jaeger", jaeger.url, "--decision", "deny",
                       "--tool", "execute_sql", "--since", "2026-11-26T00:00:00Z",
                       "--limit", "5", "--json")
    assert code == 0 and [r["tool"] for r in json.loads(out)] == ["execute_sql"]
    query = jaeger.queries[0]
    assert json.loads(query["tags"][0]) == {"veto.decision": "deny",
                                            "gen_ai.tool.name": "execute_sql"}
    assert query["start"] == ["1795651200000000"] and query["limit"] == ["5"]


def test_jaeger_show(jaeger: Jaeger, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "0193a1b2-7c4d", "--jaeger", jaeger.url, "--json")
    assert code == 0 and json.loads(out)["rule"] == "block_production_database_deletes"
    assert json.loads(jaeger.queries[0]["tags"][0]) == {"veto.decision_id": "0193a1b2-7c4d"}


def test_jaeger_error_answer(capsys: pytest.CaptureFixture[str]) -> None:
    failing = Jaeger(json.loads((FIXTURES / "api_traces_error.json").read_text()), status=400)
    failing.thread.start()
    try:
        code, _, err = run(capsys, "list", "--jaeger", failing.url)
    finally:
        failing.server.shutdown()
        failing.server.server_close()
    assert code == 1 and "parameter 'service' is required" in err


def test_jaeger_down(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "list", "--jaeger", "http://127.0.0.1:9")
    assert code == 1 and "cannot query Jaeger at http://127.0.0.1:9" in err
