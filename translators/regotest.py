"""Run Rego unit tests the way ``opa test`` does, inside the embedded OPA engine.

There is no ``opa`` binary on the project's machines, but the embedded engine is OPA's own
``rego`` package, and a test rule evaluates to ``true`` there exactly as under ``opa test``.
This module supplies the rest of ``opa test``: discovery, the ``-r`` filter, outcomes,
exit codes and the pretty report (modelled on OPA's ``v1/tester/runner.go`` and
``v1/tester/reporter.go``)::

    from veto_opa.translators.regotest import format_report, run_tests

    report = run_tests({"decision.rego": src, "decision_test.rego": tests}, run="deny")
    print(format_report(report, verbose=True))
    raise SystemExit(report.exit_code())

Where this runner differs from ``opa test``, and why:

- Discovery scans source text (``package`` line and rule heads at column 0, as ``opa fmt``
  writes them) instead of OPA's parsed AST, which the engine does not expose.
- A parameterised test (``test_x[name] if {...}``) is one result; OPA reports each case and
  counts the cases in the summary. Its FAIL message names the failing cases. A case whose
  body fails is simply absent (OPA injects ``internal.test_case`` to catch it).
- A FAIL carries a one-line message instead of OPA's evaluation trace.
- There is no per-test timeout: the engine offers no way to cancel an evaluation.
- A duration includes the engine's preparation of that test's query (tens of ms for the
  ``rego/`` library); ``opa test`` compiles once and times only the evaluation.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from opa_bindings.engine import OpaEngine, OpaError, OpaUndefinedError

from veto_opa.errors import VetoError

__all__ = [
    "Status",
    "TestLoadError",
    "TestReport",
    "TestResult",
    "discover_tests",
    "format_report",
    "go_duration",
    "run_tests",
]

Status = Literal["PASS", "FAIL", "ERROR", "SKIP"]

TEST_PREFIX = "test_"
# OPA's tester skips `todo_test_*` (SkipTestPrefix); a plain `todo_*` rule is not a test.
SKIP_PREFIX = "todo_test_"

_PACKAGE = re.compile(r"^package[ \t]+([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
# A rule head at column 0 whose name starts with a test prefix. A `(` after the name makes
# it a function, which is not a test; `[` or `.` make it a parameterised test.
_HEAD = re.compile(r"^((?:todo_)?test_[A-Za-z0-9_]*)(?![A-Za-z0-9_])[ \t]*(\()?")


class TestLoadError(VetoError):
    """The modules could not be loaded or compiled, or the ``run`` filter is not a regex.

    ``opa test`` exits with code 1 in this case; the message is the engine's own
    (``file:row: rego_..._error: ...``).
    """

    __test__: ClassVar[bool] = False  # not a pytest test class, despite its name


@dataclass(frozen=True)
class TestResult:
    """The outcome of one test rule.

    Attributes:
        package: the Rego package without ``data.`` (``veto.decision_test``).
        name: the rule name; a duplicate name gets OPA's ``#01``, ``#02``... suffix.
        status: PASS, FAIL, ERROR or SKIP (a ``todo_test_`` rule).
        duration_s: evaluation time in seconds (0 for SKIP).
        message: why it failed or errored, else None.
        location: ``file:row`` of the rule head.
        output: lines the test printed with ``print(...)``.
    """

    __test__: ClassVar[bool] = False

    package: str
    name: str
    status: Status
    duration_s: float
    message: str | None
    location: str | None
    output: tuple[str, ...] = ()

    @property
    def full_name(self) -> str:
        """``data.<package>.<name>``, the name ``-r`` filters match and the report prints."""
        return f"data.{self.package}.{self.name}"


@dataclass(frozen=True)
class TestReport:
    """Every result of one run, in file order then row order."""

    __test__: ClassVar[bool] = False

    results: list[TestResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every test passed (also when no test ran, as for ``opa test``)."""
        return self.exit_code() == 0

    def exit_code(self) -> int:
        """``opa test``'s exit code without ``-z``: 0 if all pass, 2 if any FAIL, ERROR or SKIP."""
        return 0 if all(r.status == "PASS" for r in self.results) else 2

    def count(self, status: Status) -> int:
        """Number of results with the given status."""
        return sum(1 for r in self.results if r.status == status)


@dataclass(frozen=True)
class _Test:
    package: str
    name: str  # as reported
    rule: str  # as evaluated (differs for renamed duplicates)
    file: str
    row: int
    skip: bool

    @property
    def location(self) -> str:
        return f"{self.file}:{self.row}"


def discover_tests(modules: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """Find the test rules of every module.

    Args:
        modules: Rego source by file name.

    Returns:
        ``(package, rule name, "file:row")`` for each ``test_*`` and ``todo_test_*`` rule
        head, in file-name order then row order; the package has no ``data.`` prefix.
    """
    tests, _ = _discover(modules)
    return [(t.package, t.name, t.location) for t in tests]


def run_tests(
    modules: Mapping[str, str],
    *,
    data: Sequence[tuple[str, object]] = (),
    run: str | None = None,
    engine_factory: Callable[[], Any] = OpaEngine,
) -> TestReport:
    """Load every module into one engine and evaluate each test as ``data.<pkg>.<rule>``.

    Args:
        modules: Rego source by file name; tests and the modules they test.
        data: ``(dotted path, value)`` pairs merged into the data document ("" = root).
        run: like ``opa test -r``: only tests whose ``data.<pkg>.<rule>`` matches this
            regular expression (searched, not anchored) run; the others are not reported.
        engine_factory: builds the engine (``OpaEngine`` or a test double).

    Returns:
        A :class:`TestReport`. A test passes when its value is ``true`` (for a
        parameterised test: every case is ``true``); undefined or any other value fails;
        an evaluation error (conflict, strict builtin error) is an ERROR.

    Raises:
        TestLoadError: a module does not parse or compile, data cannot be merged, or
            ``run`` is not a valid regular expression.
    """
    try:
        selected = re.compile(run) if run else None
    except re.error as exc:
        raise TestLoadError(f"invalid test filter {run!r}: {exc}") from None

    tests, sources = _discover(modules)
    engine = engine_factory()
    try:
        _load(engine, sources, data)
        results = [
            _run_one(engine, t)
            for t in tests
            if selected is None or selected.search(f"data.{t.package}.{t.name}")
        ]
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    return TestReport(results)


def format_report(report: TestReport, *, verbose: bool = False) -> str:
    """Render the report as ``opa test`` prints it (pretty format).

    Non-verbose lists only the tests that did not pass, grouped under their file, each
    error indented below its test. Verbose lists every test; when some FAILed it first
    prints a FAILURES section (the failure messages stand in for OPA's traces) and a
    SUMMARY header. A line of 80 ``-`` follows whenever a test line was printed, then the
    non-zero counts in OPA's order: PASS, FAIL, SKIPPED, ERROR.

    Args:
        report: the results of :func:`run_tests`.
        verbose: like ``opa test -v``.

    Returns:
        The text, ending with a newline (empty if no test ran).
    """
    lines: list[str] = []
    failures = [r for r in report.results if r.status == "FAIL"]
    if failures and verbose:
        lines += ["FAILURES", _RULE]
        for r in failures:
            lines.append(_result_line(r))
            if r.message:
                lines += ["", *_indent(r.message)]
            lines.append("")
        lines += ["SUMMARY", _RULE]

    dirty = False
    last_file: str | None = None
    for r in report.results:
        if verbose or r.status != "PASS":
            file = r.location.rsplit(":", 1)[0] if r.location else None
            if file is not None and file != last_file:
                if last_file is not None:
                    lines.append("")
                lines.append(f"{file}:")
                last_file = file
            dirty = True
            lines.append(_result_line(r))
            if r.output:
                lines += ["", *_indent("\n".join(r.output)), ""]
        if r.status == "ERROR" and r.message:
            lines.append(f"  {r.message}")

    if dirty:
        lines.append(_RULE)
    total = len(report.results)
    for label, status in _SUMMARY:
        n = report.count(status)
        if n:
            lines.append(f"{label}: {n}/{total}")
    return "".join(line + "\n" for line in lines)


_RULE = "-" * 80
_OUTCOME = {"PASS": "PASS", "FAIL": "FAIL", "ERROR": "ERROR", "SKIP": "SKIPPED"}
_SUMMARY: tuple[tuple[str, Status], ...] = (
    ("PASS", "PASS"),
    ("FAIL", "FAIL"),
    ("SKIPPED", "SKIP"),
    ("ERROR", "ERROR"),
)


def _result_line(r: TestResult) -> str:
    if r.status == "SKIP":
        return f"{r.full_name}: {_OUTCOME[r.status]}"
    return f"{r.full_name}: {_OUTCOME[r.status]} ({go_duration(round(r.duration_s * 1e9))})"


def _indent(text: str) -> list[str]:
    return ["  " + line for line in text.strip().splitlines()]


def go_duration(ns: int) -> str:
    """Format nanoseconds as Go's ``time.Duration.String()`` does (``1.234ms``, ``2m3.5s``)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_fraction(u, 3)}µs"
    if u < 1_000_000_000:
        return f"{sign}{_fraction(u, 6)}ms"
    text = f"{_fraction(u % 60_000_000_000, 9)}s"
    minutes = u // 60_000_000_000
    if minutes:
        hours, minutes = divmod(minutes, 60)
        text = f"{minutes}m{text}"
        if hours:
            text = f"{hours}h{text}"
    return sign + text


def _fraction(value: int, digits: int) -> str:
    whole, frac = divmod(value, 10**digits)
    if frac == 0:
        return str(whole)
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def _discover(modules: Mapping[str, str]) -> tuple[list[_Test], dict[str, str]]:
    """Find test heads and return the sources to load, duplicates renamed.

    Two definitions of one test name in one package would be OR-ed into a single rule by
    the engine, hiding a failing one; OPA's tester renames the later ones ``name#01``...
    and runs each. ``#`` cannot appear in a Rego identifier, so the later heads are renamed
    in the loaded source to a private name and reported under OPA's name.
    """
    tests: list[_Test] = []
    sources: dict[str, str] = {}
    seen: dict[tuple[str, str], int] = {}
    for file in sorted(modules):
        source = modules[file]
        package: str | None = None
        lines = source.split("\n")
        for index, line in enumerate(lines):
            if package is None:
                match = _PACKAGE.match(line)
                if match:
                    package = match.group(1)
                continue
            head = _HEAD.match(line)
            if head is None or head.group(2):
                continue
            name = head.group(1)
            skip = name.startswith(SKIP_PREFIX)
            if not skip and not name.startswith(TEST_PREFIX):
                continue  # `todo_x` without `test_`: an ordinary rule for OPA too
            reported = rule = name
            if not skip:
                n = seen.get((package, name), 0)
                seen[(package, name)] = n + 1
                if n:
                    reported = f"{name}#{n:02d}"
                    rule = f"{name}__veto_duplicate_{n:02d}"
                    lines[index] = rule + line[len(name) :]
            tests.append(_Test(package, reported, rule, file, index + 1, skip))
        sources[file] = "\n".join(lines)
    return tests, sources


def _load(engine: Any, sources: Mapping[str, str], data: Iterable[tuple[str, object]]) -> None:
    try:
        for path, source in sources.items():
            engine.add_policy(path, source)
        for path, value in data:
            engine.add_data(value, path)
        # The engine compiles lazily: type errors and unknown references across modules
        # surface at the first evaluation, so compile now rather than blame the first test.
        engine.eval_query("true")
    except OpaError as exc:
        raise TestLoadError(exc.message) from None
    # print() output belongs to the test that printed it, not to stderr.
    if hasattr(engine, "print_handler"):
        engine.print_handler = _ignore_print


def _ignore_print(message: str, location: str) -> None:
    """Prints are read back from ``engine.last_prints`` after each test."""


_UNDEFINED = "undefined: a body expression is false or undefined"


def _run_one(engine: Any, test: _Test) -> TestResult:
    def result(status: Status, seconds: float, message: str | None = None) -> TestResult:
        prints = tuple(m for m, _ in getattr(engine, "last_prints", None) or ())
        return TestResult(test.package, test.name, status, seconds, message, test.location, prints)

    if test.skip:
        return TestResult(test.package, test.name, "SKIP", 0.0, None, test.location)
    start = time.perf_counter()
    try:
        value = engine.eval_document(f"{test.package}.{test.rule}")
    except OpaUndefinedError:
        return result("FAIL", time.perf_counter() - start, _UNDEFINED)
    except OpaError as exc:
        return result("ERROR", time.perf_counter() - start, exc.message)
    elapsed = time.perf_counter() - start
    if value is True:
        return result("PASS", elapsed)
    if isinstance(value, dict):
        failed = _failed_cases(value)
        if not failed:
            return result("PASS", elapsed)
        return result("FAIL", elapsed, "failed cases: " + ", ".join(failed))
    return result("FAIL", elapsed, f"expected true, got {json.dumps(value, sort_keys=True)}")


def _failed_cases(cases: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Names of the cases of a parameterised test whose value is not ``true``."""
    failed: list[str] = []
    for key in sorted(cases):
        value = cases[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            failed += _failed_cases(value, f"{name}/")
        elif value is not True:
            failed.append(name)
    return failed
