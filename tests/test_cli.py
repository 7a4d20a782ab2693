"""The veto-opa command line, run in-process through ``main(argv)``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from veto_opa.cli import main

ROOT = Path(__file__).resolve().parents[1]
SEED = str(ROOT / "examples" / "policies.yaml")
PLATFORM = str(ROOT / "examples" / "platform.yaml")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_ok(capsys) -> None:
    code, out, _ = run(capsys, "check", SEED, PLATFORM)
    assert code == 0
    assert out == "ok: 2 policies (policies, platform), 11 rules, 7 examples\n"


def test_check_reports_every_problem_with_positions(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: a\n    action: block\n  - name: b\n    tool: x\n"
                   "    when: args.s.uper() == 1 &&\n    action: deny\n")
    code, out, err = run(capsys, "check", str(bad))
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[0] == (f"{bad}:3:13: action must be one of deny, require_approval, allow, "
                        "found 'block'")
    assert lines[1].startswith(f"{bad}:6:")
    assert lines[-1] == "2 problems found"
    assert "Traceback" not in err


def test_check_json(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: a\n    acton: deny\n")
    code, out, _ = run(capsys, "check", "--json", str(bad))
    assert code == 1
    problems = json.loads(out)["problems"]
    assert {p["code"] for p in problems} >= {"veto_unknown_key"}
    assert all({"file", "line", "col", "code", "message"} <= set(p) for p in problems)


def test_build_tar_gz_twice_gives_the_same_bytes(capsys, tmp_path: Path) -> None:
    a, b = tmp_path / "a.tar.gz", tmp_path / "b" / "b.tar.gz"
    assert run(capsys, "build", SEED, "-o", str(a))[0] == 0
    code, out, _ = run(capsys, "build", SEED, "-o", str(b))
    assert code == 0 and out.startswith(f"wrote {b}: ") and "revision sha256:" in out
    assert a.read_bytes() == b.read_bytes()


def test_build_directory(capsys, tmp_path: Path) -> None:
    code, _, _ = run(capsys, "build", SEED, PLATFORM, "--dir", str(tmp_path / "bundle"))
    assert code == 0
    assert (tmp_path / "bundle" / "veto" / "policies" / "platform_test.rego").exists()


def test_build_signed_and_verify(capsys, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "private.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp_path / "public.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    bundle = str(tmp_path / "veto.tar.gz")
    code, out, _ = run(capsys, "build", SEED, "-o", bundle, "--signing-key",
                       str(tmp_path / "private.pem"), "--signing-key-id", "veto")
    assert code == 0 and "(signed)" in out
    code, out, _ = run(capsys, "verify", bundle, "--key", str(tmp_path / "public.pem"),
                       "--key-id", "veto")
    assert code == 0 and out.startswith("ok: ")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "other.pem").write_bytes(other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    code, _, err = run(capsys, "verify", bundle, "--key", str(tmp_path / "other.pem"),
                       "--key-id", "veto")
    assert code == 1 and "veto-opa: error:" in err


def test_test_passes_and_fails_like_opa_test(capsys, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "test", SEED, PLATFORM)
    assert code == 0 and out.startswith("PASS: ")
    failing = tmp_path / "failing.yaml"
    failing.write_text(
        "rules:\n  - name: deny_all\n    action: deny\n"
        "tests:\n  - name: expects_allow\n    tool: x\n    expect: allow\n")
    code, out, _ = run(capsys, "test", str(failing))
    assert code == 2
    assert "data.veto.policies.failing_test.test_expects_allow: FAIL" in out
    assert "FAIL: 1/" in out


def test_test_opa_flag_needs_a_binary(capsys, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    code, _, err = run(capsys, "test", "--opa", SEED)
    assert code == 1 and "needs an 'opa' binary on PATH" in err


def test_eval_prints_the_decision(capsys) -> None:
    code, out, _ = run(capsys, "eval", SEED, "--tool", "execute_sql", "--args",
                       '{"statement": "DROP TABLE customers", "database": "analytics"}',
                       "--context", '{"environment": "production", "user_role": "sre"}')
    assert code == 0
    decision = json.loads(out)
    assert decision["decision"] == "deny"
    assert decision["rule"] == "block_production_database_deletes"


def test_eval_with_a_built_bundle(capsys, tmp_path: Path) -> None:
    bundle = str(tmp_path / "veto.tar.gz")
    run(capsys, "build", SEED, "-o", bundle)
    code, out, _ = run(capsys, "eval", "--bundle", bundle, "--tool", "rotate_secret",
                       "--args", '{"secret_path": "/x", "service": "stripe"}')
    assert code == 0 and json.loads(out)["approvers"] == ["security-team"]


def test_eval_rejects_bad_json(capsys) -> None:
    code, _, err = run(capsys, "eval", SEED, "--tool", "x", "--args", "{not json")
    assert code == 1 and "--args is not valid JSON" in err


def test_rego_prints_generated_modules(capsys) -> None:
    code, out, _ = run(capsys, "rego", PLATFORM)
    assert code == 0
    assert "# ==> veto/policies/platform.rego <==" in out
    assert "package veto.policies.platform" in out
    assert "platform_test" not in out
    code, out, _ = run(capsys, "rego", "--tests", "--library", PLATFORM)
    assert "package veto.policies.platform_test" in out and "package veto.lib.ops" in out


@pytest.mark.parametrize("command", ["check", "build", "test", "eval", "rego", "verify", "demo"])
def test_help_has_an_example(capsys, command: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "example" in capsys.readouterr().out


def test_missing_policy_file_is_an_error_not_a_traceback(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "check", str(tmp_path / "nope.yaml"))
    assert code == 1 and "file not found" in err and "Traceback" not in err
