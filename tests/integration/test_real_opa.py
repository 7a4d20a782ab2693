"""The REST engine against a real OPA server: the decision and failure tests of tests/engines.

Runs only when ``VETO_OPA_URL`` names an OPA server holding the veto bundle of
``examples/policies.yaml``; the answers are compared with the embedded engine loaded with the
same archive (``VETO_OPA_BUNDLE``, default ``build/bundles/veto.tar.gz``, the file the compose
stack's bundle server serves; see the header of docker-compose.yml for the signing key)::

    veto-opa build examples/policies.yaml -o build/bundles/veto.tar.gz \
        --signing-key build/keys/veto-private.pem --signing-key-id veto
    docker compose up -d opa
    VETO_OPA_URL=http://localhost:8181 .venv/bin/pytest tests/integration

Failures that need a policy of their own (an evaluation error, a slow evaluation) upload it
through OPA's Policy API under ``vetotest``, outside the bundle's ``veto`` root, and delete it
afterwards; they skip if the server refuses the upload.
"""

from __future__ import annotations

import json
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import httpx

from tests.engines.conftest import SEED_CASES
from veto_opa.engines.embedded import EmbeddedEngine
from veto_opa.engines.rest import RestEngine
from veto_opa.errors import EngineProtocolError, EngineTimeout, EngineUnavailable, PolicyNotLoaded
from veto_opa.translators.bundle import read_bundle

ROOT = Path(__file__).resolve().parents[2]
OPA_URL = os.environ.get("VETO_OPA_URL", "")
BUNDLE = Path(os.environ.get("VETO_OPA_BUNDLE", ROOT / "build" / "bundles" / "veto.tar.gz"))
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not OPA_URL,
        reason="needs a real OPA server: build and sign build/bundles/veto.tar.gz (see "
               "docker-compose.yml), then `docker compose up -d opa`, then set "
               "VETO_OPA_URL=http://localhost:8181"),
]

CONFLICT = "package vetotest.conflict\n\nx := 1 if input.a\n\nx := 2 if input.a\n"
SLOW = ("package vetotest.slow\n\n"
        "x := count([n | some n in numbers.range(1, 50000000); n % 7 == 0])\n")


@pytest.fixture(scope="module")
def rest() -> Iterator[RestEngine]:
    with RestEngine(OPA_URL, timeout=5.0) as engine:
        yield engine


@pytest.fixture(scope="module")
def embedded() -> Iterator[EmbeddedEngine]:
    if not BUNDLE.is_file():
        pytest.skip(f"{BUNDLE} is missing: build it with `veto-opa build examples/policies.yaml "
                    f"-o {BUNDLE}` (the file OPA loaded)")
    with EmbeddedEngine(read_bundle(BUNDLE), pool_size=1) as engine:
        yield engine


@pytest.fixture
def uploaded() -> Iterator[Callable[[str], None]]:
    ids: list[str] = []

    def upload(source: str) -> None:
        policy_id = f"vetotest-{uuid.uuid4().hex[:8]}"
        response = httpx.put(f"{OPA_URL.rstrip('/')}/v1/policies/{policy_id}", content=source,
                             headers={"Content-Type": "text/plain"}, timeout=10)
        if response.status_code != 200:
            pytest.skip(f"OPA refused the test policy: HTTP {response.status_code} "
                        f"{response.text[:200]}")
        ids.append(policy_id)

    yield upload
    for policy_id in ids:
        httpx.delete(f"{OPA_URL.rstrip('/')}/v1/policies/{policy_id}", timeout=10)


def test_health_with_bundles() -> None:
    response = httpx.get(f"{OPA_URL.rstrip('/')}/health?bundles", timeout=5)
    assert (response.status_code, response.json()) == (200, {})


@pytest.mark.parametrize(("input", "decision", "rule"), SEED_CASES,
                         ids=[f"{i}-{c[1]}" for i, c in enumerate(SEED_CASES)])
def test_decides_like_the_embedded_engine(rest: RestEngine, embedded: EmbeddedEngine,
                                          input: dict, decision: str, rule: str | None) -> None:
    answer = rest.decide(input)
    assert answer.verdict == embedded.decide(input).verdict
    assert (answer.verdict.decision, answer.verdict.rule) == (decision, rule)


def test_decision_id_with_decision_logging(rest: RestEngine) -> None:
    answer = rest.decide(SEED_CASES[0][0])
    assert answer.opa_decision_id is not None and UUID.match(answer.opa_decision_id)


def test_traceparent_is_accepted(rest: RestEngine) -> None:
    header = "00-" + uuid.uuid4().hex + "-" + uuid.uuid4().hex[:16] + "-01"
    assert rest.decide(SEED_CASES[0][0], headers={"traceparent": header}).verdict


def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with RestEngine(url) as engine, pytest.raises(EngineUnavailable) as raised:
        engine.decide(SEED_CASES[0][0])
    assert str(raised.value) == f"OPA at {url} refused the connection"


def test_undefined_document() -> None:
    with RestEngine(OPA_URL, path="veto/no_such_document") as engine, \
            pytest.raises(PolicyNotLoaded) as raised:
        engine.decide(SEED_CASES[0][0])
    assert str(raised.value) == (f"data.veto.no_such_document is undefined at OPA "
                                 f"{OPA_URL.rstrip('/')}: is the veto bundle loaded?")


def test_result_that_is_not_a_decision() -> None:
    with RestEngine(OPA_URL, path="veto/decision/decision") as engine, \
            pytest.raises(EngineProtocolError) as raised:
        engine.decide(SEED_CASES[0][0])
    assert str(raised.value).startswith("the engine's answer is not a decision object: "
                                        "expected an object, found a string ")


def test_evaluation_error_is_http_500(uploaded: Callable[[str], None]) -> None:
    uploaded(CONFLICT)
    with RestEngine(OPA_URL, path="vetotest/conflict/x") as engine, \
            pytest.raises(EngineProtocolError) as raised:
        engine.decide({"a": True})
    message = str(raised.value)
    assert message.startswith("OPA answered HTTP 500: error(s) occurred while evaluating query")
    assert "eval_conflict_error: complete rules must not produce multiple outputs" in message


def test_timeout(uploaded: Callable[[str], None]) -> None:
    uploaded(SLOW)
    with RestEngine(OPA_URL, path="vetotest/slow/x", timeout=0.05) as engine, \
            pytest.raises(EngineTimeout) as raised:
        engine.decide({})
    assert str(raised.value) == "OPA did not answer within 0.05 s"
