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


@pytest.fixture
def veto(home: Path, policy: Path) -> Iterator[Veto]:
    with Veto([policy], home=home, reload_interval=0, spans=False) as v:
        yield v


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
