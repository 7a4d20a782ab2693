"""The approvers registry: tokens kept only as salted scrypt-derived keys, Ed25519 keys, the
file's permissions, and signatures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from veto_opa.approvals.registry import (
    Identity,
    Registry,
    RegistryFile,
    ed25519_key,
    load_private_key,
    load_public_key,
    new_token_key,
)
from veto_opa.errors import ApprovalError


@pytest.fixture(scope="module")
def token_key() -> tuple[str, object]:
    return new_token_key()


def test_a_token_is_not_stored_and_proves_its_approver(tmp_path: Path, token_key) -> None:
    token, key = token_key
    path = Registry({}).with_approver(Identity("alice", ("dba",), (), (key,))).save(
        tmp_path / "approvers.yaml")
    text = path.read_text()
    assert token not in text and token.split("_", 2)[2] not in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    registry = Registry.load(path)
    signer = registry.signer_for_token(token)
    assert signer.identity.name == "alice" and signer.identity.groups == ("dba",)
    assert token not in repr(signer)
    payload = {"approval_id": "a", "verdict": "approved"}
    signature = signer.sign(payload)
    assert registry.verify("alice", key.key_id, payload, signature).name == "alice"
    for forged in ({**payload, "verdict": "rejected"}, {**payload, "approval_id": "b"}):
        with pytest.raises(ApprovalError, match="does not verify"):
            registry.verify("alice", key.key_id, forged, signature)
    with pytest.raises(ApprovalError, match="not a registered approver"):
        registry.verify("mallory", key.key_id, payload, signature)


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),     # one character of the secret
    lambda t: t.replace("vat_", "vat_0"),                    # another token id
    lambda t: "vat_" + "0" * 8 + "_" + t.split("_", 2)[2],
    lambda t: "", lambda t: "not a token", lambda t: t + "x",
])
def test_a_wrong_token_is_refused(tmp_path: Path, token_key, mangle) -> None:
    token, key = token_key
    registry = Registry({}).with_approver(Identity("alice", ("dba",), (), (key,)))
    with pytest.raises(ApprovalError, match="^the approver token is not valid$"):
        registry.signer_for_token(mangle(token))


def test_an_ed25519_key_of_ones_own(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    ssh = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                            serialization.PublicFormat.OpenSSH)
    assert ed25519_key(load_public_key(pem)) == ed25519_key(load_public_key(ssh))
    registry = Registry({}).with_approver(
        Identity("bob", ("sre",), ("user:bob",), (ed25519_key(load_public_key(ssh)),)))
    registry.save(tmp_path / "r.yaml")
    loaded = Registry.load(tmp_path / "r.yaml")
    private_pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    signer = loaded.signer_for_key(load_private_key(private_pem))
    assert signer.identity.subjects == ("user:bob",)
    with pytest.raises(ApprovalError, match="not a registered approver's key"):
        loaded.signer_for_key(Ed25519PrivateKey.generate())


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666, 0o777])
def test_a_registry_others_may_write_is_refused(tmp_path: Path, token_key, mode: int) -> None:
    path = Registry({}).with_approver(Identity("a", ("g",), (), (token_key[1],))).save(
        tmp_path / "r.yaml")
    os.chmod(path, mode)
    with pytest.raises(ApprovalError, match=f"writable by group or others \\(mode {mode:o}\\)"):
        Registry.load(path)
    os.chmod(path, 0o644)           # readable by the agent, writable by its owner only: fine
    assert Registry.load(path).approvers["a"].groups == ("g",)


@pytest.mark.parametrize(("text", "problem"), [
    ("- a\n", "expected a mapping with 'version: 1'"),
    ("version: 2\napprovers: {}\n", "expected a mapping with 'version: 1'"),
    ("version: 1\napprovers: [a]\n", "'approvers' must be a mapping"),
    ("version: 1\napprovers:\n  a: {groups: [g], keys: []}\n", "has no credential"),
    ("version: 1\napprovers:\n  a: {groups: [any], keys: [{id: k, kind: ed25519, "
     "public_key: AAAA}]}\n", "a key is malformed"),
    ("version: 1\napprovers:\n  'a b': {groups: [g]}\n", "must be 1 to 64 letters"),
    ("version: 1\napprovers:\n  a: {groups: g}\n", "must be lists"),
])
def test_a_malformed_registry_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ApprovalError, match=problem):
        Registry.load(path)


def test_any_is_reserved_and_keys_are_unique(token_key) -> None:
    key = token_key[1]
    with pytest.raises(ApprovalError, match="'any' is reserved"):
        Registry({}).with_approver(Identity("a", ("any",), (), (key,)))
    registry = Registry({}).with_approver(Identity("a", ("g",), (), (key,)))
    with pytest.raises(ApprovalError, match="already belongs to a"):
        registry.with_approver(Identity("b", ("g",), (), (key,)))
    assert registry.without("a").approvers == {}
    with pytest.raises(ApprovalError, match="no approver 'zz'"):
        registry.without("zz")


def test_a_missing_registry_has_nobody(tmp_path: Path) -> None:
    assert Registry.load(tmp_path / "none.yaml").approvers == {}
    with pytest.raises(ApprovalError, match="no approvers registry"):
        Registry.load(tmp_path / "none.yaml", missing_ok=False)


def test_the_registry_file_is_read_again_when_it_changes(tmp_path: Path, token_key) -> None:
    path = tmp_path / "r.yaml"
    watched = RegistryFile(path)
    assert watched.current().approvers == {}
    registry = Registry({}).with_approver(Identity("a", ("g",), (), (token_key[1],)))
    registry.save(path)
    assert set(watched.current().approvers) == {"a"}
    assert watched.current() is watched.current()
    registry.without("a").save(path)
    assert watched.current().approvers == {}
