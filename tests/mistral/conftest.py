"""Fixtures for the Mistral tests: the seed policy in a real Veto, a toolset of SRE tools,
and the real ``mistralai`` SDK talking HTTP to the scripted stand-in on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mistralai.client import Mistral

from veto_opa import Veto
from veto_opa.approvals import Approver
from veto_opa.engines import EmbeddedEngine
from veto_opa.mistral import Toolset
from veto_opa.mistral.standin import MistralStandin, Script, Scripted, ScriptedCall, ScriptedReply

PROD = {"environment": "production", "user_role": "sre", "user": "sre-agent"}
MODEL = "mistral-large-latest"
SELECT = {"statement": "SELECT count(*) FROM orders", "database": "analytics"}
DROP = {"statement": "DROP TABLE customers", "database": "analytics"}
STRIPE = {"secret_path": "/secrets/app/stripe", "service": "stripe"}
SEARCH = {"secret_path": "/secrets/app/search", "service": "search"}
USER = [{"role": "user", "content": "Triage ticket OPS-4711"}]


def call(name: str, arguments: dict[str, Any] | str, *, as_text: bool = True,
         id: str | None = None) -> ScriptedCall:
    """A scripted call; a dict is sent as JSON text unless ``as_text`` is False."""
    if isinstance(arguments, dict) and as_text:
        arguments = json.dumps(arguments)
    return ScriptedCall(name, arguments, id)


def calls(*scripted: ScriptedCall) -> ScriptedReply:
    return ScriptedReply(calls=scripted)


def say(text: str) -> ScriptedReply:
    return ScriptedReply(content=text)


@dataclass
class Ops:
    """The SRE tools' effects, to assert what really ran."""

    ran: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def execute_sql(self, statement: str, database: str) -> list[dict[str, int]]:
        """Run a SQL statement against a production database.

        Args:
            statement: the SQL statement.
            database: the database to run it on.
        """
        with self.lock:
            self.ran.append(("execute_sql", {"statement": statement, "database": database}))
        if "fail" in statement:
            raise RuntimeError("connection reset by peer")
        return [{"count": 42}]

    def rotate_secret(self, secret_path: str, service: str) -> dict[str, Any]:
        """Rotate a service account secret in Vault.

        Args:
            secret_path: where the secret lives.
            service: the service that uses it.
        """
        with self.lock:
            self.ran.append(("rotate_secret", {"secret_path": secret_path, "service": service}))
        return {"service": service, "version": 8}


class LentEngine:
    """The session's OPA engine lent to one test's Veto: closing the Veto leaves it open
    (loading the seed policy into OPA is most of a Veto's start-up)."""

    def __init__(self, engine: EmbeddedEngine) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def seed_engine(seed_bundle: Any) -> Iterator[EmbeddedEngine]:
    engine = EmbeddedEngine(seed_bundle, pool_size=2)
    yield engine
    engine.close()


@pytest.fixture
def veto(tmp_path: Path, spans_out: Any, seed_engine: EmbeddedEngine) -> Iterator[Veto]:
    provider, _ = spans_out
    with Veto(engine=LentEngine(seed_engine), home=tmp_path / "veto",  # type: ignore[arg-type]
              tracer_provider=provider) as v:
        yield v


@pytest.fixture
def ops() -> Ops:
    return Ops()


@pytest.fixture
def tools(veto: Veto, ops: Ops, spans_out: Any) -> Toolset:
    provider, _ = spans_out
    return Toolset(veto, [ops.execute_sql, ops.rotate_secret], tracer_provider=provider)


@pytest.fixture(scope="session")
def http_client() -> Iterator[httpx2.Client]:
    """One HTTP client for the session's sync SDK clients (each would load the CA store)."""
    with httpx2.Client() as client:
        yield client


@pytest.fixture
def serve(http_client: httpx2.Client) -> Iterator[Callable[..., tuple[MistralStandin, Mistral]]]:
    """``serve(script_or_replies, **standin_options)`` → (stand-in, SDK client on it)."""
    opened: list[Any] = []

    def start(script: Script | list[ScriptedReply], **options: Any
              ) -> tuple[MistralStandin, Mistral]:
        standin = MistralStandin(script if callable(script) else Scripted(script), **options)
        client = Mistral(api_key="test-key", server_url=standin.url, client=http_client)
        opened.extend([standin, client])
        return standin, client

    yield start
    for thing in reversed(opened):
        if isinstance(thing, Mistral):
            thing.__exit__(None, None, None)
        else:
            thing.close()


def security_approver(veto: Veto) -> Approver:
    """Dana, of the security team, registered in the veto home's approvers registry and
    signed in with her token: an approver the agent's Veto is not."""
    from veto_opa.approvals import Approver
    from veto_opa.approvals.registry import Identity, Registry, new_token_key, registry_path

    path = registry_path(veto.settings.home, veto.settings.approvers)
    registry = Registry.load(path)
    if "dana" not in registry.approvers:
        token, key = new_token_key()
        registry.with_approver(Identity("dana", ("security-team",), (), (key,))).save(path)
        _TOKENS[path] = token
    return Approver(veto.settings.home, token=_TOKENS[path], settings=veto.settings)


_TOKENS: dict[Path, str] = {}


def approve_when_pending(veto: Veto, *, reject: bool = False) -> threading.Thread:
    """A security-team approver in another thread: decides the first pending approval."""
    assert veto.approvals is not None
    approvals = veto.approvals
    dana = security_approver(veto)

    def decide() -> None:
        try:
            for _ in range(500):
                pending = approvals.list(status="pending")
                if pending:
                    if reject:
                        dana.reject(pending[0].approval_id, "OPS-4711")
                    else:
                        dana.approve(pending[0].approval_id, "OPS-4711")
                    return
                threading.Event().wait(0.01)
        finally:
            dana.close()

    thread = threading.Thread(target=decide, daemon=True)
    thread.start()
    return thread


def records(veto: Veto) -> list[Any]:
    """Every decision record, oldest first."""
    assert veto.records is not None
    return list(reversed(veto.records.query(limit=None)))


def outcomes(veto: Veto, decision_id: str) -> list[str]:
    assert veto.records is not None
    return [o.status for o in veto.records.outcomes(decision_id)]


def tool_message_bodies(request_body: dict[str, Any]) -> list[Any]:
    """The tool messages' contents (parsed when JSON) in a chat request the SDK sent."""
    bodies = []
    for message in request_body["messages"]:
        if message.get("role") == "tool":
            try:
                bodies.append(json.loads(message["content"]))
            except ValueError:
                bodies.append(message["content"])
    return bodies
