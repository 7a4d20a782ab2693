"""Every way an engine can fail to decide: one test per cause, class and message asserted.

Engines raise; ``Veto.guard()`` turns the error into a deny. An answer without a result is
"undefined" — never false, never allow.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.engines.conftest import FAILING, MALFORMED, SEED_CASES, UNDEFINED, module_bundle
from tests.opa_standin import OpaStandin
from veto_opa.decision import Verdict
from veto_opa.engines import EngineAnswer, FakeEngine
from veto_opa.engines.embedded import EmbeddedEngine
from veto_opa.engines.rest import RestEngine
from veto_opa.errors import (
    EngineError,
    EngineEvaluationError,
    EngineProtocolError,
    EngineTimeout,
    EngineUnavailable,
    PolicyNotLoaded,
)

INPUT = SEED_CASES[0][0]
DECISION = {"decision": "deny", "rule": "r", "reason": "because", "approvers": [],
            "matched": [{"rule": "r", "action": "deny", "message": "because", "policy": "p",
                         "approvers": [], "approvals": 0}],
            "errors": [], "policy": {"name": "p", "revision": "x"}, "binding": []}


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(standin: OpaStandin) -> Iterator[tuple[OpaStandin, RestEngine]]:
    with RestEngine(standin.url, timeout=0.3) as engine:
        yield standin, engine


# -- REST engine ---------------------------------------------------------------------------------

def test_rest_connection_refused() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with RestEngine(url) as engine, pytest.raises(EngineUnavailable) as raised:
        engine.decide(INPUT)
    assert str(raised.value) == f"OPA at {url} refused the connection"
    assert raised.value.cause == "engine_unavailable"


def test_rest_host_not_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    with RestEngine("http://opa.invalid:8181") as engine, \
            pytest.raises(EngineUnavailable) as raised:
        engine.decide(INPUT)
    assert str(raised.value).startswith("cannot resolve OPA's host in http://opa.invalid:8181: ")


def test_rest_tls_failure(served: tuple[OpaStandin, RestEngine]) -> None:
    standin, _ = served
    url = standin.url.replace("http://", "https://")   # TLS to a plain-HTTP server
    with RestEngine(url) as engine, pytest.raises(EngineUnavailable) as raised:
        engine.decide(INPUT)
    assert str(raised.value).startswith(f"TLS with OPA at {url} failed: ")


def test_rest_connection_closed_without_an_answer(served: tuple[OpaStandin, RestEngine]) -> None:
    standin, engine = served
    standin.close_connection = True
    with pytest.raises(EngineUnavailable) as raised:
        engine.decide(INPUT)
    assert str(raised.value) == f"OPA at {standin.url} closed the connection without answering"


def test_rest_reused_connection_closed_without_an_answer_is_retried_once(
        served: tuple[OpaStandin, RestEngine]) -> None:
    standin, engine = served
    engine.decide(INPUT)
    standin.close_connection = True
    with pytest.raises(EngineUnavailable) as raised:
        engine.decide(INPUT)
    assert str(raised.value) == f"OPA at {standin.url} closed the connection without answering"
    assert len(standin.requests) == 1 + 2   # the kept-alive connection, then one new one
    assert standin.connections == 2


def test_rest_connect_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)   # never accepts: one connection fills the backlog
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with socket.create_connection(listener.getsockname()), \
                RestEngine(url, timeout=0.2) as engine, pytest.raises(EngineTimeout) as raised:
            engine.decide(INPUT)
    assert str(raised.value) == f"OPA at {url} did not accept the connection within 0.2 s"


def test_rest_timeout(served: tuple[OpaStandin, RestEngine]) -> None:
    standin, engine = served
    standin.delay = 5.0
    started = time.monotonic()
    with pytest.raises(EngineTimeout) as raised:
        engine.decide(INPUT)
    elapsed = time.monotonic() - started
    assert str(raised.value) == "OPA did not answer within 0.3 s"
    assert raised.value.cause == "engine_timeout"
    assert 0.29 <= elapsed < 0.3 + 0.5


def test_rest_timeout_is_not_retried(served: tuple[OpaStandin, RestEngine]) -> None:
    standin, engine = served
    engine.decide(INPUT)
    standin.delay = 5.0
    with pytest.raises(EngineTimeout):
        engine.decide(INPUT)
    assert len(standin.requests) == 2


def test_rest_recovers_after_a_timeout(served: tuple[OpaStandin, RestEngine]) -> None:
    standin, engine = served
    standin.delay = 5.0
    with pytest.raises(EngineTimeout):
        engine.decide(INPUT)
    standin.delay = 0.0
    assert engine.decide(INPUT).verdict.decision == "deny"


def test_rest_http_500_names_opas_message(served: tuple[OpaStandin, RestEngine]) -> None:
    standin, engine = served
    standin.status, standin.body = 500, json.dumps({
        "code": "internal_error", "message": "error(s) occurred while evaluating query",
        "errors": [{"code": "eval_conflict_error",
                    "message": "complete rules must not produce multiple outputs",
                    "location": {"file": "veto/decision.rego", "row": 7, "col": 1}}]}).encode()
    with pytest.raises(EngineProtocolError) as raised:
        engine.decide(INPUT)
    assert str(raised.value) == (
        "OPA answered HTTP 500: error(s) occurred while evaluating query; "
        "veto/decision.rego:7: eval_conflict_error: complete rules must not produce multiple "
        "outputs")


def test_rest_evaluation_error_is_http_500() -> None:
    with OpaStandin(module_bundle(FAILING), pool_size=1) as url, RestEngine(url) as engine, \
            pytest.raises(EngineProtocolError) as raised:
        engine.decide({"zero": 0})
    assert str(raised.value) == (
        "OPA answered HTTP 500: error(s) occurred while evaluating query; "
        "veto/decision.rego:3: eval_builtin_error: div: divide by zero")


def test_rest_http_error_without_json(served: tuple[OpaStandin, RestEngine]) -> None:
    standin, engine = served
    standin.status, standin.body = 502, b"<html>Bad Gateway</html>"
    with pytest.raises(EngineProtocolError) as raised:
        engine.decide(INPUT)
    assert str(raised.value) == "OPA answered HTTP 502: '<html>Bad Gateway</html>'"


def test_rest_unauthorized(served: tuple[OpaStandin, RestEngine]) -> None:
    standin, engine = served
    standin.status, standin.body = 401, json.dumps(
        {"code": "unauthorized", "message": "request rejected by administrative policy"}).encode()
    with pytest.raises(EngineProtocolError) as raised:
        engine.decide(INPUT)
    assert str(raised.value) == "OPA answered HTTP 401: request rejected by administrative policy"


def test_rest_answer_not_json(served: tuple[OpaStandin, RestEngine]) -> None:
    standin, engine = served
    standin.status, standin.body = 200, b"not json"
    with pytest.raises(EngineProtocolError) as raised:
        engine.decide(INPUT)
    assert str(raised.value) == "OPA's answer is not JSON: 'not json'"


def test_rest_long_answer_is_cut_to_80_characters(served: tuple[OpaStandin, RestEngine]) -> None:
    standin, engine = served
    standin.status, standin.body = 200, b"x" * 500
    with pytest.raises(EngineProtocolError) as raised:
        engine.decide(INPUT)
    assert str(raised.value) == "OPA's answer is not JSON: '" + "x" * 80 + "'..."


def test_rest_answer_not_an_object(served: tuple[OpaStandin, RestEngine]) -> None:
    standin, engine = served
    standin.status, standin.body = 200, b'["allow"]'
    with pytest.raises(EngineProtocolError) as raised:
        engine.decide(INPUT)
    assert str(raised.value) == "OPA's answer is not a JSON object: '[\"allow\"]'"


@contextmanager
def raw_server(answer: bytes) -> Iterator[str]:
    """A server that reads one request per connection, writes ``answer`` and hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:   # read the whole request: unread bytes would reset the answer
                received = b""
                while b"\r\n\r\n" not in received:
                    received += connection.recv(65536)
                head, _, body = received.partition(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])
                while len(body) < length:
                    body += connection.recv(65536)
                connection.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join()


def test_rest_answer_that_is_not_http() -> None:
    with raw_server(b"SSH-2.0-OpenSSH_9.6\r\nProtocol mismatch.\r\n\r\n") as url, \
            RestEngine(url) as engine, pytest.raises(EngineProtocolError) as raised:
        engine.decide(INPUT)
    assert str(raised.value).startswith("OPA's answer is not HTTP/1.1: ")
    assert "SSH-2.0-OpenSSH_9.6" in str(raised.value)


def test_rest_answer_cut_short() -> None:
    answer = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 90\r\n\r\n{"res'
    with raw_server(answer) as url, RestEngine(url) as engine, \
            pytest.raises(EngineUnavailable) as raised:
        engine.decide(INPUT)
    assert str(raised.value) == (
        f"OPA at {url} closed the connection in the middle of its answer "
        "(received 5 bytes, expected 90)")


def test_rest_answer_without_result_is_undefined(served: tuple[OpaStandin, RestEngine]) -> None:
    standin, engine = served
    standin.load(None)   # OPA running without the bundle: every document is undefined
    with pytest.raises(PolicyNotLoaded) as raised:
        engine.decide(INPUT)
    assert str(raised.value) == (
        f"data.veto.decision is undefined at OPA {standin.url}: is the veto bundle loaded?")
    assert raised.value.cause == "policy_not_loaded"


@pytest.mark.parametrize("result", [False, None, {}, "allow"])
def test_rest_result_that_is_not_a_decision(served: tuple[OpaStandin, RestEngine],
                                            result: object) -> None:
    standin, engine = served
    standin.status, standin.body = 200, json.dumps({"result": result}).encode()
    with pytest.raises(EngineProtocolError) as raised:
        engine.decide(INPUT)
    assert str(raised.value).startswith("the engine's answer is not a decision object: ")


def test_rest_malformed_decision_from_the_policy(served: tuple[OpaStandin, RestEngine]) -> None:
    standin, engine = served
    standin.load(module_bundle(MALFORMED))
    with pytest.raises(EngineProtocolError) as raised:
        engine.decide(INPUT)
    assert str(raised.value) == ("the engine's answer is not a decision object: "
                                 "expected an object, found a number 5")


def test_rest_input_that_is_not_json(served: tuple[OpaStandin, RestEngine]) -> None:
    _, engine = served
    with pytest.raises(EngineProtocolError) as raised:
        engine.decide({"args": {"x": float("nan")}})
    assert str(raised.value).startswith("the input cannot be sent to OPA as JSON: ")


def test_rest_header_that_cannot_be_sent(served: tuple[OpaStandin, RestEngine]) -> None:
    _, engine = served
    with pytest.raises(EngineProtocolError) as raised:
        engine.decide(INPUT, headers={"traceparent": "00-a\r\nInjected: yes"})
    assert str(raised.value).startswith("the request to OPA cannot be built: ")


# -- embedded engine -----------------------------------------------------------------------------

def test_embedded_undefined() -> None:
    with EmbeddedEngine(module_bundle(UNDEFINED), pool_size=1) as engine, \
            pytest.raises(PolicyNotLoaded) as raised:
        engine.decide(INPUT)
    assert str(raised.value) == "data.veto.decision is undefined: is the veto bundle loaded?"


def test_embedded_evaluation_error() -> None:
    with EmbeddedEngine(module_bundle(FAILING), pool_size=1) as engine, \
            pytest.raises(EngineEvaluationError) as raised:
        engine.decide({"zero": 0})
    assert str(raised.value) == ("OPA could not evaluate data.veto.decision: "
                                 "veto/decision.rego:3: eval_builtin_error: div: divide by zero")
    assert raised.value.cause == "engine_evaluation_error"


def test_embedded_exception_outside_opa(monkeypatch: pytest.MonkeyPatch) -> None:
    from opa_bindings import OpaEngine

    def broken(self: OpaEngine, document: str, input: object = None) -> object:
        raise MemoryError("out of memory")

    with EmbeddedEngine(module_bundle(UNDEFINED), pool_size=1) as engine:
        monkeypatch.setattr(OpaEngine, "eval_document", broken)
        with pytest.raises(EngineEvaluationError) as raised:
            engine.decide(INPUT)
    assert str(raised.value) == ("OPA could not evaluate data.veto.decision: MemoryError: "
                                 "out of memory")


def test_embedded_input_that_is_not_json() -> None:
    # The guard never sends NaN (it is an invalid tool call); OPA's parser refuses it.
    with EmbeddedEngine(module_bundle(UNDEFINED), pool_size=1) as engine, \
            pytest.raises(EngineEvaluationError) as raised:
        engine.decide({"args": {"x": float("nan")}})
    assert str(raised.value) == ("OPA could not evaluate data.veto.decision: invalid "
                                 "character 'N' looking for beginning of value")


def test_embedded_malformed_result() -> None:
    with EmbeddedEngine(module_bundle(MALFORMED), pool_size=1) as engine, \
            pytest.raises(EngineProtocolError) as raised:
        engine.decide(INPUT)
    assert str(raised.value) == ("the engine's answer is not a decision object: "
                                 "expected an object, found a number 5")


def test_embedded_engine_still_decides_after_failures() -> None:
    with EmbeddedEngine(module_bundle(FAILING), pool_size=1) as engine:
        for _ in range(3):
            with pytest.raises(EngineEvaluationError):
                engine.decide({"zero": 0})
        with pytest.raises(PolicyNotLoaded):
            engine.decide({})


# -- the shape of a decision ---------------------------------------------------------------------

@pytest.mark.parametrize(("change", "problem"), [
    ({"decision": "maybe"},
     "'decision' must be one of allow, deny, require_approval, found a string 'maybe'"),
    ({"decision": ["deny"]},
     "'decision' must be one of allow, deny, require_approval, found a list ['deny']"),
    ({"reason": None}, "'reason' must be a string, found null"),
    ({"rule": 3}, "'rule' must be a string or null, found a number 3"),
    ({"approvers": ["ops", 1]}, "'approvers' must be a list of strings, found a list ['ops', 1]"),
    ({"approvers": "ops"}, "'approvers' must be a list of strings, found a string 'ops'"),
    ({"matched": ["r"]}, "'matched' must be a list of objects, found a list ['r']"),
    ({"errors": {}}, "'errors' must be a list of objects, found an object {}"),
    ({"policy": "p"}, "'policy' must be an object, found a string 'p'"),
])
def test_from_document_names_the_wrong_field(change: dict[str, object], problem: str) -> None:
    with pytest.raises(EngineProtocolError) as raised:
        Verdict.from_document({**DECISION, **change})
    assert str(raised.value) == f"the engine's answer is not a decision object: {problem}"


@pytest.mark.parametrize("field", sorted(set(DECISION) - {"binding"}))   # binding: optional
def test_from_document_names_a_missing_field(field: str) -> None:
    value = {k: v for k, v in DECISION.items() if k != field}
    with pytest.raises(EngineProtocolError) as raised:
        Verdict.from_document(value)
    assert str(raised.value) == (
        f"the engine's answer is not a decision object: the field '{field}' is missing")


def test_from_document_reads_a_decision() -> None:
    value = {**DECISION, "rule": None, "approvers": ["ops"]}
    verdict = Verdict.from_document(value)
    assert (verdict.rule, verdict.approvers, verdict.matched[0].rule) == (None, ("ops",), "r")
    assert verdict.document() == value


# -- the fake engine -----------------------------------------------------------------------------

def test_fake_engine_returns_the_checked_decision() -> None:
    engine = FakeEngine(lambda input: DECISION)
    assert engine.decide(INPUT, headers={"traceparent": "t"}) == EngineAnswer(
        Verdict.from_document(DECISION))
    assert engine.calls == [(INPUT, {"traceparent": "t"})]
    assert engine.name == "fake"


def test_fake_engine_raises_a_returned_exception() -> None:
    engine = FakeEngine(lambda input: EngineTimeout("OPA did not answer within 0.5 s"))
    with pytest.raises(EngineTimeout, match="OPA did not answer within 0.5 s"):
        engine.decide(INPUT)


def test_fake_engine_raises_what_fn_raises() -> None:
    def fn(input: dict[str, object]) -> dict[str, object]:
        raise EngineUnavailable("OPA at http://opa:8181 refused the connection")

    with pytest.raises(EngineError, match="refused the connection"):
        FakeEngine(fn).decide(INPUT)


def test_fake_engine_checks_the_decision() -> None:
    with pytest.raises(EngineProtocolError, match="'reason' must be a string"):
        FakeEngine(lambda input: {**DECISION, "reason": 1}).decide(INPUT)


def test_fake_engine_passes_an_answer_with_decision_id() -> None:
    answer = EngineAnswer(Verdict.from_document(DECISION), "id-1")
    assert FakeEngine(lambda input: answer).decide(INPUT) == answer
    engine = FakeEngine(lambda input: DECISION)
    engine.close()
    assert engine.closed
