"""Fixtures for the engine tests: the seed policy's bundle, hand-written bundles, the stand-in.

    seed_bundle          examples/policies.yaml compiled (session-wide)
    seed_bundle_path     the same bundle as a .tar.gz, as ``veto-opa build -o`` writes it
    embedded             an EmbeddedEngine (2 OPA engines) on the seed bundle
    standin              a running OpaStandin on the seed .tar.gz, decision logging on
    rest                 a RestEngine talking to ``standin``

``module_bundle(source)`` builds a bundle whose ``package veto`` module is ``source`` — for
undefined, failing, malformed and slow decisions. ``SEED_CASES`` is a table of inputs with the
decision and rule the seed policy gives them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.opa_standin import OpaStandin
from veto_opa.engines.embedded import EmbeddedEngine
from veto_opa.engines.rest import RestEngine
from veto_opa.translators.bundle import Bundle, build_bundle, write_tar_gz
from veto_opa.translators.compiler import compile_policies
from veto_opa.translators.loader import load_policy

ROOT = Path(__file__).resolve().parents[2]
SEED_POLICY = ROOT / "examples" / "policies.yaml"


def text(input: dict[str, Any]) -> str:
    """The compact JSON text of an input, as ``Veto.guard()`` hands it to the REST engine."""
    return json.dumps(input, separators=(",", ":"), ensure_ascii=False)


def call(tool: str, args: dict[str, Any], **context: Any) -> dict[str, Any]:
    """An OPA input document."""
    return {"tool": tool, "args": args, "context": context, "model": "mistral-large-latest",
            "call_id": None}


# (input, decision, deciding rule)
SEED_CASES: list[tuple[dict[str, Any], str, str | None]] = [
    (call("execute_sql", {"statement": "DROP TABLE users", "database": "analytics"},
          environment="production"), "deny", "block_production_database_deletes"),
    (call("execute_sql", {"statement": "delete from t", "database": "analytics"},
          environment="production"), "deny", "block_production_database_deletes"),
    (call("execute_sql", {"statement": "SELECT 1", "database": "analytics"},
          environment="production"), "allow", None),
    (call("execute_sql", {"statement": "SELECT 1", "database": "billing"},
          environment="staging"), "require_approval", "scope_database_access"),
    (call("execute_sql", {"statement": "ALTER TABLE t ADD c int", "database": "sandbox"},
          environment="production"), "deny", "block_schema_changes"),
    (call("execute_sql", {"statement": "UPDATE t SET a = 1", "database": "sandbox"},
          environment="staging", user_role="viewer"), "deny", "read_only_for_viewer"),
    (call("execute_sql", {"statement": "SELECT 1", "database": "sandbox"},
          environment="staging", user_role="viewer"), "allow", None),
    (call("rotate_secret", {"service": "stripe", "secret_path": "/secrets/app/key"}),
     "require_approval", "secret_rotation_high_value"),
    (call("rotate_secret", {"service": "stripe", "secret_path": "/secrets/root/key"}),
     "deny", "block_root_secret_paths"),
    (call("rotate_secret", {"service": "mailer", "secret_path": "/x/master-key"}),
     "deny", "block_root_secret_paths"),
    (call("rotate_secret", {"service": "mailer", "secret_path": "/secrets/app"}), "allow", None),
    (call("send_email", {"to": "a@example.com"}), "allow", None),
    # A missing field makes the deny rule's condition an error: it applies, fail closed.
    (call("execute_sql", {"database": "analytics"}, environment="production"),
     "deny", "block_production_database_deletes"),
]


def module_bundle(source: str, *, revision: str = "test") -> Bundle:
    """A bundle holding one hand-written module ``veto/decision.rego``."""
    return build_bundle({"veto/decision.rego": source}, revision=revision)


UNDEFINED = "package veto\n\nother := 1\n"
FAILING = "package veto\n\ndecision := 1 / input.zero\n"          # strict builtin error
MALFORMED = "package veto\n\ndecision := 5\n"


@pytest.fixture(scope="session")
def seed_bundle() -> Bundle:
    return compile_policies([load_policy(SEED_POLICY)]).bundle()


@pytest.fixture(scope="session")
def seed_bundle_path(seed_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("build") / "veto.tar.gz"
    write_tar_gz(seed_bundle, path)
    return path


@pytest.fixture(scope="session")
def embedded(seed_bundle: Bundle) -> Iterator[EmbeddedEngine]:
    with EmbeddedEngine(seed_bundle, pool_size=2) as engine:
        yield engine


@pytest.fixture
def standin(seed_bundle_path: Path) -> Iterator[OpaStandin]:
    server = OpaStandin(seed_bundle_path, decision_logs=True, pool_size=2)
    with server:
        yield server


@pytest.fixture
def rest(standin: OpaStandin) -> Iterator[RestEngine]:
    with RestEngine(standin.url, timeout=5.0) as engine:
        yield engine
