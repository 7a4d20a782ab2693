"""``veto-opa approvers add|list|remove`` and ``veto-opa approvals list|show|approve|reject``
through the CLI entry point, in a fresh veto home."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from veto_opa import Veto
from veto_opa.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    return tmp_path / "fresh"


def test_approvers_add_prints_a_token_once_and_list_remove(
        fresh: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "approvers", "add", "alice", "--group", "dba", "--group", "sre",
                       "--subject", '"user:alice"', "--home", str(fresh))
    assert code == 0
    token = out.strip().splitlines()[-1]
    assert token.startswith("vat_") and "shown once" in out
    registry = fresh / "approvers.yaml"
    assert stat.S_IMODE(registry.stat().st_mode) == 0o600
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert token not in registry.read_text()
    code, out, err = run(capsys, "approvers", "add", "alice", "--group", "x", "--home",
                         str(fresh))
    assert code == 1 and "already an approver" in err
    code, out, _ = run(capsys, "approvers", "list", "--json", "--home", str(fresh))
    (alice,) = json.loads(out)
    assert (alice["name"], alice["groups"], alice["subjects"]) == ("alice", ["dba", "sre"],
                                                                  ["user:alice"])
    assert run(capsys, "approvers", "remove", "alice", "--home", str(fresh))[0] == 0
    assert run(capsys, "approvers", "remove", "alice", "--home", str(fresh))[0] == 1
    assert "no approvers" in run(capsys, "approvers", "list", "--home", str(fresh))[1]


def test_approvers_add_refuses_bad_input(fresh: Path, capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    assert "must be JSON" in run(capsys, "approvers", "add", "a", "--subject", "bob",
                                 "--home", str(fresh))[2]
    assert "'any' is reserved" in run(capsys, "approvers", "add", "a", "--group", "any",
                                      "--home", str(fresh))[2]
    rsa = tmp_path / "rsa.pub"
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys

    rsa.write_bytes(rsa_keys.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert "not an Ed25519 key" in run(capsys, "approvers", "add", "a", "--public-key",
                                       str(rsa), "--home", str(fresh))[2]


def test_approve_with_a_key_file_and_list_show(home: Path, make_veto: Callable[..., Veto],
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    private = Ed25519PrivateKey.generate()
    public = tmp_path / "olga.pub"
    public.write_bytes(private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                         serialization.PublicFormat.OpenSSH))
    key = tmp_path / "olga.pem"
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    code, out, _ = run(capsys, "approvers", "add", "olga", "--group", "sre-oncall",
                       "--public-key", str(public), "--home", str(home))
    assert code == 0 and "vat_" not in out
    veto = make_veto()
    pending = veto.guard("deploy", {"v": 1}, {"environment": "production", "user": "carol"})
    code, out, _ = run(capsys, "approvals", "list", "--status", "pending", "--home", str(home))
    assert code == 0 and pending.approval_id in out and "sre-oncall×1" in out
    code, out, _ = run(capsys, "approvals", "show", pending.approval_id, "--home", str(home))
    assert "requester        \"carol\"" in out and "needs            1 of sre-oncall" in out
    code, out, _ = run(capsys, "approvals", "approve", pending.approval_id, "--key-file",
                       str(key), "--home", str(home), "--justification", "CHG-1")
    assert code == 0 and "as olga" in out and "the same call may run once" in out
    assert veto.guard("deploy", {"v": 1}, {"environment": "production", "user": "carol"}).allowed
    code, out, _ = run(capsys, "approvals", "show", pending.approval_id, "--json", "--home",
                       str(home))
    shown = json.loads(out)
    assert shown["approval"]["status"] == "used"
    assert shown["approval"]["votes"][0]["key_id"].startswith("key-")
    code, out, _ = run(capsys, "decisions", "verify", "--json", "--home", str(home))
    assert code == 0 and '"approvals"' in out


def test_reject_with_the_environment_token(home: Path, make_veto: Callable[..., Veto],
                                           tokens: dict[str, str],
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    veto = make_veto()
    pending = veto.guard("deploy", {"v": 2}, {"environment": "production"})
    monkeypatch.setenv("VETO_APPROVER_TOKEN", tokens["alice"])
    with pytest.raises(SystemExit) as usage:
        main(["approvals", "reject", pending.approval_id, "--home", str(home)])
    assert usage.value.code == 2 and "--justification" in capsys.readouterr().err
    code, out, _ = run(capsys, "approvals", "reject", pending.approval_id, "--justification",
                       "not now", "--home", str(home))
    assert code == 0 and "is now rejected" in out
    assert veto.guard("deploy", {"v": 2}, {"environment": "production"}).cause \
        == "approval_rejected"


def test_a_registry_elsewhere(home: Path, tmp_path: Path, make_veto: Callable[..., Veto],
                              capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "etc" / "approvers.yaml"
    code, out, _ = run(capsys, "approvers", "add", "erin", "--group", "sre-oncall",
                       "--approvers", str(outside), "--home", str(home))
    token = out.strip().splitlines()[-1]
    monkeypatch.setenv("VETO_APPROVERS", str(outside))
    veto = make_veto()
    pending = veto.guard("deploy", {"v": 3}, {"environment": "production"})
    monkeypatch.setenv("VETO_APPROVER_TOKEN", token)
    assert run(capsys, "approvals", "approve", pending.approval_id, "--home", str(home))[0] == 0
    assert veto.guard("deploy", {"v": 3}, {"environment": "production"}).allowed
    # the home's own registry (which the agent could write) does not know erin
    os.chmod(outside, 0o664)
    code, _, err = run(capsys, "approvals", "approve", pending.approval_id, "--home", str(home))
    assert code == 1 and "writable by group or others" in err
