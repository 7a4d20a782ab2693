"""Decision logs in OPA's format, received by a local decision-log service that decodes them
as an OPA log pipeline would (gzip body, JSON array of EventV1)."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from veto_opa import Veto
from veto_opa.decision_logs import DecisionLogs
from veto_opa.opa_formats import DecisionLogEvent
from veto_opa.translators import parse_redact_path

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "examples" / "policies.yaml"


class Receiver:
    """A decision-log service on 127.0.0.1: stores every POST as OPA's plugin sends it."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.refused = 0
        self.delay = 0.0
        self.received = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.status
                if status == 200:   # what the service accepted
                    receiver.posts.append(({k.lower(): v for k, v in self.headers.items()},
                                           body))
                else:
                    receiver.refused += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if status == 200:
                    receiver.received.set()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/logs"

    def events(self) -> list[dict[str, Any]]:
        out = []
        for headers, body in self.posts:
            if headers.get("content-encoding") == "gzip":
                out.extend(json.loads(gzip.decompress(body)))
        return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()


def guard_calls(receiver: Receiver, tmp_path: Path, **settings: Any) -> list[dict[str, Any]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with Veto([SEED], home=tmp_path, decision_logs_url=receiver.url, tracer_provider=provider,
              redact=["args.password", "args.tokens[*]"], reload_interval=0, **settings) as v:
        first = v.guard("execute_sql", {"statement": "DROP TABLE t", "database": "analytics",
                                        "password": "hunter2", "tokens": ["a", "b"]},
                        {"environment": "production", "user_role": "sre"},
                        model="mistral-large-latest", call_id="call_1")
        second = v.guard("send_email", '{"to": "a@example.com"}')
    provider.shutdown()
    return [first.document(),
            {"decision_id": second.decision_id, "trace_id": second.trace_id}]


def test_every_decision_arrives_in_opas_format(receiver: Receiver, tmp_path: Path) -> None:
    decisions = guard_calls(receiver, tmp_path)
    headers, _ = receiver.posts[0]
    assert headers["content-type"] == "application/json"
    assert headers["content-encoding"] == "gzip"
    events = receiver.events()
    assert [e["decision_id"] for e in events] == [d["decision_id"] for d in decisions]
    for event in events:
        assert DecisionLogEvent.model_validate(event).document() == event   # EventV1 shape
    first = events[0]
    assert first["path"] == "veto/decision"
    assert first["result"]["decision"] == "deny"
    assert first["result"]["rule"] == "block_production_database_deletes"
    assert first["bundles"] == {"veto": {"revision": first["result"]["policy"]["revision"]}}
    assert (first["trace_id"], first["span_id"]) == (decisions[0]["trace_id"],
                                                     decisions[0]["span_id"])
    assert first["labels"]["type"] == "veto-opa" and first["labels"]["id"]
    assert first["metrics"]["timer_veto_guard_ns"] > 0
    assert first["timestamp"].endswith("Z") and "T" in first["timestamp"]
    assert first["input"]["model"] == "mistral-large-latest"
    assert first["input"]["context"] == {"environment": "production", "user_role": "sre"}


def test_redacted_arguments_are_erased_as_opa_masks_them(receiver: Receiver,
                                                         tmp_path: Path) -> None:
    guard_calls(receiver, tmp_path)
    first = receiver.events()[0]
    assert first["input"]["args"] == {"statement": "DROP TABLE t", "database": "analytics",
                                      "tokens": []}
    assert first["erased"] == ["/input/args/password", "/input/args/tokens/0",
                               "/input/args/tokens/1"]
    body = b"".join(gzip.decompress(b) for _, b in receiver.posts)
    assert b"hunter2" not in body   # the secret never leaves the process


def test_labels_from_the_settings(receiver: Receiver, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VETO_DECISION_LOGS_LABELS", "env=prod, team=sre")
    guard_calls(receiver, tmp_path)
    labels = receiver.events()[0]["labels"]
    assert (labels["env"], labels["team"]) == ("prod", "sre")


def _logs(url: str, **kwargs: Any) -> DecisionLogs:
    return DecisionLogs(url, min_delay=60, max_delay=60, **kwargs)


def _submit(logs: DecisionLogs, n: int, size: int = 10) -> None:
    for i in range(n):
        logs.submit(decision_id=f"d{i}", input_text=json.dumps(
            {"tool": "t", "args": {"blob": f"{i}:" + "x" * size}, "context": {}}),
            result={"decision": "allow"}, revision="r", trace_id=None, span_id=None,
            latency_ns=1)


def test_uploads_respect_the_size_limit(receiver: Receiver) -> None:
    logs = _logs(receiver.url, upload_size_limit=2048)
    import os

    for i in range(60):   # incompressible arguments: several chunks
        logs.submit(decision_id=f"d{i}", input_text=json.dumps(
            {"tool": "t", "args": {"blob": os.urandom(200).hex()}}),
            result={}, revision=None, trace_id=None, span_id=None, latency_ns=1)
    assert logs.flush()
    logs.close()
    assert len(receiver.posts) > 1
    assert all(len(body) <= 2048 for _, body in receiver.posts)
    assert [e["decision_id"] for e in receiver.events()] == [f"d{i}" for i in range(60)]


def test_an_event_larger_than_the_limit_is_dropped_and_counted(receiver: Receiver) -> None:
    import os

    logs = _logs(receiver.url, upload_size_limit=1024)
    logs.submit(decision_id="big", input_text=json.dumps({"args": {"b": os.urandom(2000).hex()}}),
                result={}, revision=None, trace_id=None, span_id=None, latency_ns=1)
    _submit(logs, 1)
    assert logs.flush()
    logs.close()
    assert [e["decision_id"] for e in receiver.events()] == ["d0"]
    assert logs.counters.dropped_too_large == 1


def test_a_full_buffer_drops_the_oldest(receiver: Receiver) -> None:
    logs = _logs(receiver.url, buffer_limit=5)
    _submit(logs, 8)
    assert logs.counters.dropped_buffer_full == 3
    assert logs.flush()
    logs.close()
    assert [e["decision_id"] for e in receiver.events()] == ["d3", "d4", "d5", "d6", "d7"]


def test_a_failed_upload_is_retried(receiver: Receiver) -> None:
    logs = _logs(receiver.url)
    _submit(logs, 3)
    receiver.status = 500
    assert not logs.flush()
    assert logs.counters.failed_uploads == 1 and receiver.refused == 1
    receiver.status = 200
    assert logs.flush()
    logs.close()
    assert [e["decision_id"] for e in receiver.events()] == ["d0", "d1", "d2"]


def test_the_background_thread_retries_with_backoff(receiver: Receiver) -> None:
    receiver.status = 503
    logs = DecisionLogs(receiver.url, min_delay=0.05, max_delay=0.2)
    _submit(logs, 2)
    time.sleep(0.3)
    receiver.status = 200
    assert receiver.received.wait(5)
    logs.close()
    assert logs.counters.failed_uploads >= 1
    assert [e["decision_id"] for e in receiver.events()] == ["d0", "d1"]


def test_a_service_that_is_down_never_blocks_the_guard(tmp_path: Path) -> None:
    with Veto([SEED], home=tmp_path, decision_logs_url="http://127.0.0.1:9/logs",
              reload_interval=0, spans=False) as v:
        started = time.monotonic()
        for _ in range(20):
            decision = v.guard("send_email", {"to": "a@example.com"})
        elapsed = time.monotonic() - started
        assert decision.decision == "allow"
        assert v.decision_logs is not None and v.decision_logs.counters.submitted == 20
    assert elapsed < 2   # no network I/O on the guard's path


def test_a_slow_service_does_not_slow_the_guard(receiver: Receiver, tmp_path: Path) -> None:
    receiver.delay = 1.0
    with Veto([SEED], home=tmp_path, decision_logs_url=receiver.url, reload_interval=0,
              spans=False) as v:
        assert v.decision_logs is not None
        v.decision_logs.min_delay = v.decision_logs.max_delay = 0.0
        v.decision_logs._wake.set()
        started = time.monotonic()
        for _ in range(5):
            v.guard("send_email", {"to": "a@example.com"})
        assert time.monotonic() - started < 0.9


def test_erasing_keeps_list_indexes_right() -> None:
    logs = DecisionLogs("http://127.0.0.1:9/logs", min_delay=60, max_delay=60)
    logs.submit(decision_id="x", input_text=json.dumps(
        {"args": {"items": [{"k": 1, "secret": "s0"}, {"k": 2}, {"k": 3, "secret": "s2"}],
                  "keys": ["a", "b", "c"]}}),
        result={}, revision=None, trace_id=None, span_id=None, latency_ns=1,
        redact=[parse_redact_path("args.items[*].secret"), parse_redact_path("args.keys[1]")])
    pending = logs._buffer[0]
    event = logs.event(pending)
    logs.close(timeout=0.1)
    assert event["input"]["args"] == {"items": [{"k": 1}, {"k": 2}, {"k": 3}],
                                      "keys": ["a", "c"]}
    assert event["erased"] == ["/input/args/items/0/secret", "/input/args/items/2/secret",
                               "/input/args/keys/1"]


def test_a_key_with_a_slash_is_escaped_in_the_pointer() -> None:
    logs = DecisionLogs("http://127.0.0.1:9/logs", min_delay=60, max_delay=60)
    logs.submit(decision_id="x", input_text=json.dumps({"args": {"a/b~c": 1, "d": 2}}),
                result={}, revision=None, trace_id=None, span_id=None, latency_ns=1,
                redact=[parse_redact_path('args["a/b~c"]')])
    event = logs.event(logs._buffer[0])
    logs.close(timeout=0.1)
    assert event["erased"] == ["/input/args/a~1b~0c"]
    assert event["input"]["args"] == {"d": 2}
