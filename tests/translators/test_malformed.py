"""The catalog of malformed policy files: every problem reported, at the right place, once.

Each ``tests/cases/malformed/<case>.yaml`` starts with one ``# expect: line:col: message``
comment per diagnostic, in the order they are reported (sorted by position); the test loads
the file and compares the exact rendered ``file:line:col: message`` lines. Cases that cannot
be a checked-in file (no bytes at all, a huge file, several files) are generated below.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from veto_opa.errors import PolicyError
from veto_opa.translators import diagnostics as codes
from veto_opa.translators.loader import MAX_FILE_BYTES, load_policies, load_policy

CASES = Path(__file__).resolve().parents[1] / "cases" / "malformed"
EXPECT = "# expect: "


def expected_lines(path: Path) -> list[str]:
    text = path.read_bytes().decode("utf-8", "replace")
    return [f"{path.name}:{line[len(EXPECT):]}" for line in text.splitlines()
            if line.startswith(EXPECT)]


def diagnostics_of(path: Path, **options: object) -> PolicyError:
    with pytest.raises(PolicyError) as raised:
        load_policy(path, **options)
    return raised.value


def assert_diagnostics(error: PolicyError, expected: list[str]) -> None:
    assert [str(d) for d in error.diagnostics] == expected
    assert str(error) == "\n".join(expected)


def test_the_catalog_is_big_enough():
    assert len(list(CASES.glob("*.yaml"))) >= 30


@pytest.mark.parametrize("path", sorted(CASES.glob("*.yaml")), ids=lambda p: p.stem)
def test_malformed_case(path: Path):
    expected = expected_lines(path)
    assert expected, f"{path.name} has no '# expect:' line"
    assert_diagnostics(diagnostics_of(path, display=path.name), expected)


@pytest.mark.parametrize("case, expected", [
    ("yaml_bad_indentation", [codes.YAML_SYNTAX]),
    ("yaml_duplicate_key", [codes.DUPLICATE]),
    ("type_action_boolean", [codes.SCHEMA]),
    ("unknown_key_rule", [codes.SCHEMA, codes.UNKNOWN_KEY]),
    ("duplicate_rule_names", [codes.DUPLICATE]),
    ("glob_character_class", [codes.BAD_GLOB]),
    ("expr_error_middle", [codes.PARSE]),
    ("expr_unknown_method", [codes.UNKNOWN_NAME]),
    ("expr_wrong_arity", [codes.ARITY]),
    ("expr_type_error", [codes.TYPE]),
    ("expr_nested_parentheses", [codes.LIMIT]),
    ("not_utf8", [codes.FILE]),
    ("empty_file", [codes.FILE]),
    ("several_errors", [codes.UNKNOWN_KEY, codes.BAD_GLOB, codes.PARSE, codes.SCHEMA,
                        codes.DUPLICATE, codes.SCHEMA, codes.UNKNOWN_NAME]),
])
def test_codes(case: str, expected: list[str]):
    error = diagnostics_of(CASES / f"{case}.yaml", display=f"{case}.yaml")
    assert [d.code for d in error.diagnostics] == expected
    first = error.diagnostics[0].to_dict()
    assert set(first) == {"file", "line", "col", "code", "message", "severity"}
    assert first["severity"] == "error"


def test_file_names_are_shown_as_given(tmp_path: Path):
    error = diagnostics_of(CASES / "unknown_action.yaml")
    assert str(error).startswith(str(CASES / "unknown_action.yaml") + ":4:13: ")


# -- generated cases ---------------------------------------------------------------------------

def test_zero_byte_file(tmp_path: Path):
    path = tmp_path / "empty.yaml"
    path.write_bytes(b"")
    assert_diagnostics(diagnostics_of(path, display="empty.yaml"), [
        "empty.yaml:1:1: the file is empty: expected a mapping with a 'rules' list"])


def test_missing_file_and_directory(tmp_path: Path):
    assert_diagnostics(diagnostics_of(tmp_path / "nope.yaml", display="nope.yaml"),
                       ["nope.yaml:1:1: file not found"])
    assert_diagnostics(diagnostics_of(tmp_path, display="dir"),
                       ["dir:1:1: is a directory, not a policy file"])


def test_file_over_the_size_limit(tmp_path: Path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"rules: []\n" + b"#" * MAX_FILE_BYTES)
    assert_diagnostics(diagnostics_of(path, display="big.yaml"), [
        "big.yaml:1:1: file is larger than 4 MiB, the limit for a policy file"])


def test_very_large_file_reports_the_right_line(tmp_path: Path):
    rules = [f"  - name: rule_{i}\n    tool: tool_{i}\n    when: args.n == {i}\n    action: deny\n"
             for i in range(20_000)]
    rules[19_990] = rules[19_990].replace("args.n ==", "args.n =")
    path = tmp_path / "large.yaml"
    path.write_text("rules:\n" + "".join(rules), encoding="utf-8")
    started = time.monotonic()
    error = diagnostics_of(path, display="large.yaml")
    # rule 19990 starts on line 2 + 4 * 19990; its when is two lines down
    assert_diagnostics(error, [
        f"large.yaml:{2 + 4 * 19_990 + 2}:18: unexpected '=': use '==' to compare"])
    assert time.monotonic() - started < 120


def test_errors_in_two_files_at_once(tmp_path: Path):
    first = tmp_path / "first.yaml"
    first.write_text("rules:\n  - name: a\n    action: nope\n", encoding="utf-8")
    second = tmp_path / "second.yaml"
    second.write_text("rules:\n  - name: b\n    when: args.x ==\n    action: deny\n",
                      encoding="utf-8")
    fine = tmp_path / "fine.yaml"
    fine.write_text("rules: []\n", encoding="utf-8")
    with pytest.raises(PolicyError) as raised:
        load_policies([second, fine, first])
    assert [str(d) for d in raised.value.diagnostics] == [
        f"{first}:3:13: action must be one of deny, require_approval, allow, found 'nope'",
        f"{second}:3:20: expression ends too early: expected a value",
    ]


def test_duplicate_policy_names_across_files(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = tmp_path / "a" / "sre.yaml"
    one.write_text("rules: []\n", encoding="utf-8")
    two = tmp_path / "b" / "ops.yaml"
    two.write_text("# the same package\npolicy: sre\nrules: []\n", encoding="utf-8")
    with pytest.raises(PolicyError) as raised:
        load_policies([one, two])
    assert [str(d) for d in raised.value.diagnostics] == [
        f"{two}:2:9: policy name 'sre' is already used by {one}; give one of them another "
        "name with `policy:`"]
    assert raised.value.diagnostics[0].code == codes.DUPLICATE
