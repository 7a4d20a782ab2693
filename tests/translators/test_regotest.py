from __future__ import annotations

from pathlib import Path

import pytest
from opa_bindings.engine import OpaEngine

from veto_opa.errors import VetoError
from veto_opa.translators import regotest
from veto_opa.translators.regotest import (
    Status,
    TestLoadError,
    TestReport,
    TestResult,
    discover_tests,
    format_report,
    run_tests,
)

REPO = Path(__file__).resolve().parents[2]

MIXED = """\
# METADATA
# description: a test_like line in a comment is not a test
package demo_test

test_passes if true

test_false_fails if false

test_undefined_fails if input.missing == 1

test_non_true_value_fails := 5

test_builtin_error_errors if upper(input.n) == "X" with input as {"n": 5}

todo_test_later if false

todo_not_a_test if false

test_helper(x) := x

test_uses_helper if test_helper(true)
"""


def statuses(report: TestReport) -> dict[str, str]:
    return {r.name: r.status for r in report.results}


def result(report: TestReport, name: str) -> TestResult:
    (found,) = [r for r in report.results if r.name == name]
    return found


def test_discovers_test_and_todo_heads_with_locations():
    assert discover_tests({"demo_test.rego": MIXED}) == [
        ("demo_test", "test_passes", "demo_test.rego:5"),
        ("demo_test", "test_false_fails", "demo_test.rego:7"),
        ("demo_test", "test_undefined_fails", "demo_test.rego:9"),
        ("demo_test", "test_non_true_value_fails", "demo_test.rego:11"),
        ("demo_test", "test_builtin_error_errors", "demo_test.rego:13"),
        ("demo_test", "todo_test_later", "demo_test.rego:15"),
        ("demo_test", "test_uses_helper", "demo_test.rego:21"),
    ]


def test_discovery_orders_files_by_name():
    modules = {
        "b_test.rego": "package b\n\ntest_b if true\n",
        "a_test.rego": "package a.x\ntest_a if true\n",
    }
    assert discover_tests(modules) == [
        ("a.x", "test_a", "a_test.rego:2"),
        ("b", "test_b", "b_test.rego:3"),
    ]


def test_outcomes_match_opa_test():
    report = run_tests({"demo_test.rego": MIXED})
    assert statuses(report) == {
        "test_passes": "PASS",
        "test_false_fails": "FAIL",
        "test_undefined_fails": "FAIL",
        "test_non_true_value_fails": "FAIL",
        "test_builtin_error_errors": "ERROR",
        "todo_test_later": "SKIP",
        "test_uses_helper": "PASS",
    }


def test_results_carry_package_location_and_messages():
    report = run_tests({"demo_test.rego": MIXED})
    passed = result(report, "test_passes")
    assert (passed.package, passed.location) == ("demo_test", "demo_test.rego:5")
    assert passed.message is None
    assert passed.full_name == "data.demo_test.test_passes"
    assert passed.duration_s > 0
    assert result(report, "test_non_true_value_fails").message == "expected true, got 5"
    assert "undefined" in result(report, "test_false_fails").message
    error = result(report, "test_builtin_error_errors").message
    assert error.startswith("demo_test.rego:13: eval_type_error: upper: operand 1 must be string")
    assert result(report, "todo_test_later").duration_s == 0.0


def test_conflicting_values_are_an_error():
    report = run_tests({"c_test.rego": "package c\n\nx := 1\n\nx := 2\n\ntest_x if x == 1\n"})
    (only,) = report.results
    assert only.status == "ERROR"
    assert "eval_conflict_error" in only.message


def test_parameterised_test_is_one_result_that_names_failing_cases():
    source = """\
package p_test

test_all_good[name] if {
	some name in ["a", "b"]
}

test_some_bad[name] := ok if {
	some name, ok in {"a": true, "b": false, "c": 3}
}
"""
    report = run_tests({"p_test.rego": source})
    assert statuses(report) == {"test_all_good": "PASS", "test_some_bad": "FAIL"}
    assert result(report, "test_some_bad").message == "failed cases: b, c"


def test_duplicate_test_names_run_separately_under_opa_names():
    source = "package d_test\n\ntest_dup if true\n\ntest_dup if false\n"
    assert discover_tests({"d_test.rego": source}) == [
        ("d_test", "test_dup", "d_test.rego:3"),
        ("d_test", "test_dup#01", "d_test.rego:5"),
    ]
    report = run_tests({"d_test.rego": source})
    assert statuses(report) == {"test_dup": "PASS", "test_dup#01": "FAIL"}


def test_tests_see_other_modules_and_data():
    modules = {
        "lib.rego": "package lib\n\nlimit := data.cfg.limit\n",
        "lib_test.rego": "package lib_test\n\nimport data.lib\n\ntest_limit if lib.limit == 3\n",
    }
    report = run_tests(modules, data=[("cfg", {"limit": 3})])
    assert statuses(report) == {"test_limit": "PASS"}


def test_print_output_is_captured_per_test():
    source = 'package out_test\n\ntest_prints if {\n\tprint("hello")\n}\n'
    (only,) = run_tests({"out_test.rego": source}).results
    assert only.output == ("hello",)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("passes", ["test_passes"]),
        ("^data\\.demo_test\\.test_(passes|false)", ["test_passes", "test_false_fails"]),
        ("later", ["todo_test_later"]),
        ("nothing_matches", []),
    ],
)
def test_run_filter_selects_tests_by_full_name(pattern, expected):
    report = run_tests({"demo_test.rego": MIXED}, run=pattern)
    assert [r.name for r in report.results] == expected


def test_invalid_run_filter_is_a_load_error():
    with pytest.raises(TestLoadError, match="invalid test filter"):
        run_tests({"demo_test.rego": MIXED}, run="(")


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        (
            {"bad.rego": "package bad\n\ntest_x if {\n"},
            "bad.rego:4: rego_parse_error: unexpected eof token",
        ),
        (
            {"bad.rego": "package bad\n\ntest_x if nope(1)\n"},
            "bad.rego:3: rego_type_error: undefined function nope",
        ),
    ],
)
def test_parse_and_compile_errors_raise_test_load_error(modules, message):
    with pytest.raises(TestLoadError) as caught:
        run_tests(modules)
    assert message in str(caught.value)
    assert isinstance(caught.value, VetoError)


def test_engine_is_closed_after_the_run():
    engines: list[OpaEngine] = []

    def factory() -> OpaEngine:
        engines.append(OpaEngine())
        return engines[-1]

    run_tests({"t.rego": "package t\n\ntest_ok if true\n"}, engine_factory=factory)
    assert len(engines) == 1
    assert engines[0]._handle is None


def make(
    name: str,
    status: Status,
    ms: float = 1.5,
    message: str | None = None,
    file: str = "a_test.rego",
    row: int = 3,
) -> TestResult:
    return TestResult("a_test", name, status, ms / 1000, message, f"{file}:{row}")


@pytest.mark.parametrize(
    ("statuses_", "code"),
    [
        ([], 0),
        (["PASS", "PASS"], 0),
        (["PASS", "FAIL"], 2),
        (["PASS", "ERROR"], 2),
        (["PASS", "SKIP"], 2),
    ],
)
def test_exit_codes_follow_opa_test_without_z(statuses_, code):
    report = TestReport([make(f"test_{i}", s) for i, s in enumerate(statuses_)])
    assert report.exit_code() == code
    assert report.ok is (code == 0)


def test_run_exit_code_is_two_when_something_fails():
    assert run_tests({"demo_test.rego": MIXED}).exit_code() == 2
    assert run_tests({"demo_test.rego": MIXED}, run="passes").exit_code() == 0


RULE = "-" * 80
UPPER_ERROR = "eval_type_error: upper: operand 1 must be string"

MIXED_REPORT = TestReport(
    [
        make("test_ok", "PASS", 1.234),
        make("test_bad", "FAIL", 0.5, "undefined: a body expression is false or undefined", row=5),
        make("test_boom", "ERROR", 2, f"a_test.rego:7: {UPPER_ERROR}", row=7),
        make("todo_test_later", "SKIP", 0, row=9),
        make("test_other", "PASS", 1000, file="b_test.rego"),
    ]
)


def test_report_when_everything_passes_is_only_the_count():
    report = TestReport([make("test_a", "PASS"), make("test_b", "PASS")])
    assert format_report(report) == "PASS: 2/2\n"


def test_report_of_no_tests_is_empty():
    assert format_report(TestReport([])) == ""


def test_report_lists_what_did_not_pass_grouped_by_file():
    assert format_report(MIXED_REPORT) == "\n".join(
        [
            "a_test.rego:",
            "data.a_test.test_bad: FAIL (500µs)",
            "data.a_test.test_boom: ERROR (2ms)",
            f"  a_test.rego:7: {UPPER_ERROR}",
            "data.a_test.todo_test_later: SKIPPED",
            RULE,
            "PASS: 2/5",
            "FAIL: 1/5",
            "SKIPPED: 1/5",
            "ERROR: 1/5",
            "",
        ]
    )


def test_verbose_report_lists_failures_then_every_test():
    assert format_report(MIXED_REPORT, verbose=True) == "\n".join(
        [
            "FAILURES",
            RULE,
            "data.a_test.test_bad: FAIL (500µs)",
            "",
            "  undefined: a body expression is false or undefined",
            "",
            "SUMMARY",
            RULE,
            "a_test.rego:",
            "data.a_test.test_ok: PASS (1.234ms)",
            "data.a_test.test_bad: FAIL (500µs)",
            "data.a_test.test_boom: ERROR (2ms)",
            f"  a_test.rego:7: {UPPER_ERROR}",
            "data.a_test.todo_test_later: SKIPPED",
            "",
            "b_test.rego:",
            "data.a_test.test_other: PASS (1s)",
            RULE,
            "PASS: 2/5",
            "FAIL: 1/5",
            "SKIPPED: 1/5",
            "ERROR: 1/5",
            "",
        ]
    )


def test_verbose_report_without_failures_has_no_failures_section():
    report = TestReport([make("test_a", "PASS", 0.25)])
    assert format_report(report, verbose=True) == "\n".join(
        ["a_test.rego:", "data.a_test.test_a: PASS (250µs)", RULE, "PASS: 1/1", ""]
    )


def test_verbose_report_shows_printed_output():
    printed = TestResult("a_test", "test_a", "PASS", 0.001, None, "a_test.rego:3", ("hello",))
    report = TestReport([printed])
    assert format_report(report, verbose=True) == "\n".join(
        ["a_test.rego:", "data.a_test.test_a: PASS (1ms)", "", "  hello", "", RULE, "PASS: 1/1", ""]
    )


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (999, "999ns"),
        (1_000, "1µs"),
        (1_500, "1.5µs"),
        (1_234_567, "1.234567ms"),
        (31_300_062, "31.300062ms"),
        (1_000_000_000, "1s"),
        (61_500_000_000, "1m1.5s"),
        (3_600_000_000_000, "1h0m0s"),
    ],
)
def test_durations_print_like_go(ns, text):
    assert regotest.go_duration(ns) == text


def test_every_rego_library_test_passes():
    rego = REPO / "rego" / "veto"
    modules = {str(p.relative_to(REPO)): p.read_text() for p in sorted(rego.rglob("*.rego"))}
    assert any(name.endswith("_test.rego") for name in modules)
    report = run_tests(modules)
    assert len(report.results) >= 15
    failed = [f"{r.full_name}: {r.status}" for r in report.results if r.status != "PASS"]
    assert failed == [], format_report(report)
