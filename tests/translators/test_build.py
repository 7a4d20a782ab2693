"""Bundles built from policy files: reproducible, loadable, equivalent to the source."""

from __future__ import annotations

import gc
import random
import shutil
import tarfile
from pathlib import Path

import jwt
import opa_bindings
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.translators.randcorpus import random_input
from tests.translators.test_seed_policy import CASES
from veto_opa.errors import PolicyError, SignatureError
from veto_opa.translators import build, bundle as bundles
from veto_opa.translators.regotest import run_tests

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POLICIES = [EXAMPLES / "policies.yaml", EXAMPLES / "platform.yaml"]


def _engine(bundle: bundles.Bundle) -> opa_bindings.OpaEngine:
    engine = opa_bindings.OpaEngine()
    bundles.load_into_engine(bundle, engine)
    return engine


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    first = bundles.to_tar_gz(build(POLICIES).bundle())
    second = bundles.to_tar_gz(build(POLICIES).bundle())
    assert first == second
    # The file's location is not part of the revision; its content is.
    moved = tmp_path / "policies.yaml"
    shutil.copy(POLICIES[0], moved)
    assert build([moved]).revision == build([POLICIES[0]]).revision
    moved.write_text(moved.read_text() + "\n# changed\n")
    assert build([moved]).revision != build([POLICIES[0]]).revision


def test_manifest_names_roots_version_and_sources() -> None:
    bundle = build(POLICIES).bundle()
    manifest = bundle.manifest
    assert manifest["roots"] == ["veto"]
    assert manifest["rego_version"] == 1
    assert manifest["revision"].startswith("sha256:") and len(manifest["revision"]) == 71
    sources = manifest["metadata"]["sources"]
    assert [s["policy"] for s in sources] == ["policies", "platform"]
    assert all(len(s["sha256"]) == 64 for s in sources)
    assert set(bundle.modules()) >= {"veto/decision.rego", "veto/policies/policies.rego",
                                     "veto/policies/platform.rego",
                                     "veto/policies/platform_test.rego", "veto/bundle.rego",
                                     "veto/lib/ops.rego"}


def test_tar_gz_decides_like_the_source(tmp_path: Path) -> None:
    compiled = build(POLICIES)
    path = tmp_path / "veto.tar.gz"
    bundles.write_tar_gz(compiled.bundle(), path)
    with tarfile.open(path) as tar:
        assert "/.manifest" in tar.getnames()
    from_source = _engine(compiled.bundle())
    from_file = _engine(bundles.read_bundle(path))
    r = random.Random(7)
    inputs = [{"tool": c[1], "args": c[2], "context": c[3], "model": None, "call_id": None}
              for c in CASES] + [random_input(r) for _ in range(50)]
    for input in inputs:
        assert (from_file.eval_document("veto.decision", input)
                == from_source.eval_document("veto.decision", input))
    revision = from_file.eval_document("veto.decision", inputs[0])["policy"]["revision"]
    assert revision == compiled.revision


def test_directory_bundle_round_trips(tmp_path: Path) -> None:
    bundle = build(POLICIES).bundle()
    bundles.write_directory(bundle, tmp_path / "b")
    assert (tmp_path / "b" / ".manifest").exists()
    assert bundles.read_bundle(tmp_path / "b").files == bundle.files


def test_bundle_tests_pass_as_opa_test_would_run_them(tmp_path: Path) -> None:
    bundle = build(POLICIES).bundle()
    report = run_tests(bundle.modules(), data=bundle.data_documents())
    assert report.ok, [r for r in report.results if r.status != "PASS"]
    names = {r.name for r in report.results if r.package == "veto.policies.platform_test"}
    assert "test_missing_environment_fails_closed" in names


def test_signed_bundle_verifies_and_tampering_is_caught() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    signed = bundles.sign_bundle(build(POLICIES).bundle(), key=private, algorithm="RS256",
                                 key_id="veto")
    bundles.verify_bundle(signed, key=public, algorithm="RS256", key_id="veto")
    token = jwt.decode(signed.files[".signatures.json"].decode().split('"')[3], public,
                       algorithms=["RS256"])
    assert {f["name"] for f in token["files"]} == set(signed.files) - {".signatures.json"}

    files = dict(signed.files)
    files["veto/policies/policies.rego"] = files["veto/policies/policies.rego"].replace(
        b'"production"', b'"staging"', 1)
    with pytest.raises(SignatureError, match="veto/policies/policies.rego"):
        bundles.verify_bundle(bundles.Bundle(files), key=public, algorithm="RS256", key_id="veto")


def test_build_leaves_the_garbage_collector_alone(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Process-wide state is the caller's: a build neither pauses nor tunes the collector."""
    def refuse(*args: object) -> None:
        raise AssertionError("build() changed the garbage collector's state")

    for name in ("disable", "enable", "freeze", "set_threshold"):
        monkeypatch.setattr(gc, name, refuse)
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: r\n    action: deny\n    when: 'args.x =='\n")
    build(POLICIES)
    with pytest.raises(PolicyError):
        build([bad])
