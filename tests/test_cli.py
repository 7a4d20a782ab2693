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


# -- eval decides exactly as guard() does ------------------------------------------------------

@pytest.mark.parametrize("argv, cause, phrase", [
    (["--tool", "x", "--args", "{not json"], "invalid_tool_call", "not valid JSON text"),
    (["--tool", "x", "--args", '{"x": NaN}'], "invalid_tool_call", "NaN is not JSON"),
    (["--tool", "", "--args", "{}"], "invalid_tool_call", "tool name must be a non-empty"),
    (["--tool", "x", "--args", "[1]"], "invalid_tool_call", "must be a JSON object"),
])
def test_eval_fails_closed_as_guard_does(capsys, argv: list[str], cause: str,
                                         phrase: str) -> None:
    from veto_opa import Veto

    code, out, err = run(capsys, "eval", SEED, *argv, "--exit-code")
    decision = json.loads(out)
    assert (code, err) == (3, "")
    assert decision["decision"] == "deny" and decision["cause"] == cause
    assert phrase in decision["reason"]
    with Veto([SEED], records=False, spans=False, reload_interval=0) as veto:
        guarded = veto.guard(argv[1], argv[3], {})
    assert decision["reason"] == guarded.reason


def test_eval_defaults_to_veto_policies_yaml(capsys, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "veto").mkdir()
    (tmp_path / "veto" / "policies.yaml").write_text(Path(SEED).read_text())
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "eval", "--tool", "execute_sql", "--args",
                       '{"statement": "DROP TABLE t", "database": "main"}',
                       "--context", '{"environment": "production", "user_role": "sre"}')
    assert code == 0 and json.loads(out)["rule"] == "block_production_database_deletes"


def test_eval_reads_arguments_from_a_file_and_stdin(capsys, tmp_path: Path,
                                                     monkeypatch) -> None:
    import io

    call = tmp_path / "call.json"
    call.write_text('{"statement": "DROP TABLE t", "database": "main"}')
    context = '{"environment": "production", "user_role": "sre"}'
    code, out, _ = run(capsys, "eval", SEED, "--tool", "execute_sql", "--args", f"@{call}",
                       "--context", context)
    assert json.loads(out)["decision"] == "deny"
    monkeypatch.setattr("sys.stdin", io.StringIO(call.read_text()))
    code, out, _ = run(capsys, "eval", SEED, "--tool", "execute_sql", "--args", "-",
                       "--context", context)
    assert json.loads(out)["decision"] == "deny"
    code, _, err = run(capsys, "eval", SEED, "--tool", "x", "--args", f"@{tmp_path}/nope")
    assert code == 2 and "cannot read" in err


@pytest.mark.parametrize("args, code", [
    ('{"statement": "DROP TABLE t", "database": "main"}', 3),
    ('{"statement": "SELECT 1", "database": "analytics"}', 0),
    ('{"statement": "SELECT 1", "database": "billing"}', 4),
])
def test_eval_exit_code_is_the_decision(capsys, args: str, code: int) -> None:
    got, _, _ = run(capsys, "eval", SEED, "--tool", "execute_sql", "--args", args,
                    "--context", '{"environment": "production", "user_role": "sre"}',
                    "--exit-code")
    assert got == code


# -- usage errors are one line, exit 2, never a traceback ---------------------------------------

def _rsa_pair(tmp_path: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = tmp_path / "private.pem", tmp_path / "public.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.mark.parametrize("case", ["output in /proc", "output is a directory",
                                  "signing with a public key", "ES256 with an RSA key",
                                  "verifying with a private key", "unknown algorithm"])
def test_usage_errors_are_one_line(capsys, tmp_path: Path, case: str) -> None:
    private, public = _rsa_pair(tmp_path)
    bundle = str(tmp_path / "veto.tar.gz")
    assert run(capsys, "build", SEED, "-o", bundle)[0] == 0
    argv, phrase = {
        "output in /proc": (["build", SEED, "-o", "/proc/x/veto.tar.gz"], "cannot write"),
        "output is a directory": (["build", SEED, "-o", str(tmp_path)], "is a directory"),
        "signing with a public key": (["build", SEED, "-o", bundle, "--signing-key",
                                       str(public)], "(it is a public key)"),
        "ES256 with an RSA key": (["build", SEED, "-o", bundle, "--signing-key", str(private),
                                   "--signing-alg", "ES256"], "needs an EC private key"),
        "verifying with a private key": (["verify", bundle, "--key", str(private)],
                                         "(it is a private key)"),
        "unknown algorithm": (["verify", bundle, "--key", str(public), "--alg", "XX1"],
                              "unknown algorithm 'XX1'"),
    }[case]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("veto-opa: error: ") and phrase in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_setting_that_is_not_valid_names_its_variable(capsys, monkeypatch) -> None:
    monkeypatch.setenv("VETO_OPA_TIMEOUT", "abc")
    code, _, err = run(capsys, "eval", SEED, "--tool", "x")
    assert code == 2 and "VETO_OPA_TIMEOUT" in err and "'abc'" in err
    assert "Traceback" not in err and "pydantic" not in err


def test_a_home_that_cannot_be_created_is_one_line(capsys) -> None:
    code, _, err = run(capsys, "demo", "--home", "/proc/x/veto")
    assert code == 2 and "cannot create the veto home /proc/x/veto" in err
    assert "Traceback" not in err


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


# -- check warnings, counts, and test failures that say why (issue 10, items 13 and 14) ------

ALWAYS_AN_ERROR = """\
rules:
  - name: odd
    tool: t
    when: args.x.upper() == 3
    action: deny
  - name: member
    tool: t
    when: args.n in ["a", "b"] || args.x.lower() in [1, 2]
    action: deny
"""


def test_check_warns_of_comparisons_that_are_always_errors(capsys, tmp_path: Path) -> None:
    policy = tmp_path / "w.yaml"
    policy.write_text(ALWAYS_AN_ERROR)
    code, out, err = run(capsys, "check", str(policy))
    assert code == 0       # warnings do not change the exit status
    assert out == "ok: 1 policy (w), 2 rules, 0 examples, 2 warnings\n"
    assert err.splitlines() == [
        f"{policy}:4:11: warning: args.x.upper() == 3: compares string with number, which is "
        "always an error (never true or false)",
        f"{policy}:8:35: warning: args.x.lower() in [1, 2]: looks for string in a list of "
        "number, which is always an error (never true or false)",
    ]
    code, out, _ = run(capsys, "check", "--json", str(policy))
    warnings = json.loads(out)["warnings"]
    assert code == 0 and [(w["line"], w["severity"], w["code"]) for w in warnings] == [
        (4, "warning", "veto_always_error"), (8, "warning", "veto_always_error")]


def test_check_counts_in_the_singular(capsys, tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text("rules:\n  - name: r\n    tool: t\n    action: deny\ntests:\n  - name: e\n"
                   "    tool: t\n    expect: deny\n")
    assert run(capsys, "check", str(one))[1] == "ok: 1 policy (one), 1 rule, 1 example\n"


EXAMPLES = """\
rules:
  - name: block_drops
    tool: execute_sql
    when: args.statement.upper().contains("DROP")
    action: deny
tests:
  - name: drop_is_denied
    tool: execute_sql
    args: {statement: "drop table x"}
    expect: {decision: deny, rule: block_drops}
  - name: select_expected_denied
    tool: execute_sql
    args: {statement: "select 1"}
    expect: {decision: deny, rule: block_drops}
  - name: missing_statement_expected_allowed
    tool: execute_sql
    args: {}
    expect: {decision: allow}
"""


def test_test_says_what_a_failed_example_expected_and_got(capsys, tmp_path: Path) -> None:
    policy = tmp_path / "sre.yaml"
    policy.write_text(EXAMPLES)
    code, out, _ = run(capsys, "test", str(policy))
    assert code == 2
    assert "undefined: a body expression" not in out
    lines = [line for line in out.splitlines() if line.startswith(str(policy))]
    assert lines == [
        f"{policy}:11:5: example select_expected_denied: expected deny by rule block_drops, "
        "got allow (no rule applies; policy sre defaults to allow)",
        f"{policy}:15:5: example missing_statement_expected_allowed: expected allow, got deny "
        "by rule block_drops (rule block_drops could not be evaluated: args.statement is "
        "missing)",
    ]


def test_test_filter_that_matches_nothing_is_an_error(capsys, tmp_path: Path) -> None:
    policy = tmp_path / "sre.yaml"
    policy.write_text(EXAMPLES)
    code, out, err = run(capsys, "test", "-r", "zzz", str(policy))
    assert code == 1 and out == ""
    assert err == "veto-opa: error: no test matches -r 'zzz'\n"
    code, out, _ = run(capsys, "test", "-r", "drop_is_denied", str(policy))
    assert code == 0 and "PASS: 1/1" in out
