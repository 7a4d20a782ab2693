"""Fixtures for approvals: a policy with approval rules, a registry of approvers with
tokens (made once per session: each token costs a scrypt), a Veto and Approvers."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from veto_opa import Veto
from veto_opa.approvals import Approver
from veto_opa.approvals.registry import Identity, Registry, new_token_key

POLICY = """\
policy: ops
rules:
  - name: prod_deploys
    tool: deploy
    environments: [production]
    action: require_approval
    approvers: [sre-oncall]
  - name: staging_deploys
    tool: deploy
    environments: [staging]
    action: require_approval
    approvers: [dev-leads]
  - name: big_migrations
    tool: migrate
    when: args.rows > 1000
    action: require_approval
    approvers: [dba]
  - name: personal_data
    tool: migrate
    when: args.table in ['users', 'payments']
    action: require_approval
    approvers: [privacy-office]
  - name: wire_money
    tool: wire
    action: require_approval
    approvers: [finance]
    approvals: 2
  - name: restarts
    tool: restart
    when: context.tier in ['gold', 'platinum']
    action: require_approval
    approvers: [any]
"""

GROUPS: dict[str, tuple[str, ...]] = {
    "alice": ("sre-oncall",),
    "dave": ("dev-leads",),
    "dana": ("dba",),
    "dino": ("dba",),
    "pria": ("privacy-office",),
    "fin1": ("finance",),
    "fin2": ("finance",),
    "bob": ("dba", "sre-oncall", "dev-leads", "finance", "privacy-office"),
}
SUBJECTS: dict[str, tuple[Any, ...]] = {"bob": ("user:bob", {"employee": 4711})}


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A registry file with every approver of :data:`GROUPS`, and their tokens."""
    registry = Registry({})
    tokens: dict[str, str] = {}
    for name, groups in GROUPS.items():
        token, key = new_token_key()
        tokens[name] = token
        registry = registry.with_approver(Identity(name, groups, SUBJECTS.get(name, ()), (key,)))
    path = registry.save(tmp_path_factory.mktemp("registry") / "approvers.yaml")
    return path, tokens


@pytest.fixture
def tokens(registry_template: tuple[Path, dict[str, str]]) -> dict[str, str]:
    return registry_template[1]


@pytest.fixture
def home(tmp_path: Path, registry_template: tuple[Path, dict[str, str]]) -> Path:
    home = tmp_path / ".veto"
    home.mkdir(mode=0o700)
    shutil.copy(registry_template[0], home / "approvers.yaml")
    (home / "approvers.yaml").chmod(0o600)
    return home


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "ops.yaml"
    path.write_text(POLICY)
    return path


class SharedEngine:
    """The session's embedded engine, lent to each test's Veto (loading one costs half a
    second); closing a Veto leaves it open."""

    name = "embedded"
    takes_text = True

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def decide(self, *args: Any, **kwargs: Any) -> Any:
        return self._engine.decide(*args, **kwargs)

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def shared_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedEngine]:
    from veto_opa.engines import EmbeddedEngine
    from veto_opa.translators import build

    path = tmp_path_factory.mktemp("policy") / "ops.yaml"
    path.write_text(POLICY)
    engine = EmbeddedEngine(build([path]).bundle(), pool_size=2)
    yield SharedEngine(engine)
    engine.close()


@pytest.fixture
def make_veto(home: Path, shared_engine: SharedEngine) -> Iterator[Callable[..., Veto]]:
    """``make_veto(**settings)``: a Veto on :data:`POLICY` under ``home``."""
    made: list[Veto] = []

    def make(**settings: Any) -> Veto:
        made.append(Veto(engine=shared_engine, home=home, spans=False, **settings))
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.fixture
def veto(make_veto: Callable[..., Veto]) -> Veto:
    return make_veto()


@pytest.fixture
def approver(home: Path, tokens: dict[str, str]) -> Iterator[Callable[[str], Approver]]:
    """``approver(name)``: that approver, signed in with their token."""
    made: list[Approver] = []

    def make(name: str) -> Approver:
        made.append(Approver(home, token=tokens[name]))
        return made[-1]

    yield make
    for one in made:
        one.close()
