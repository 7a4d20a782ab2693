"""Loading policy files: bytes to checked :class:`~veto_opa.translators.policy.Policy` values.

Every problem of every file is collected as a ``file:line:col: message`` diagnostic and
raised together in one :class:`~veto_opa.errors.PolicyError`; bad input never produces a
traceback. The stages, each adding diagnostics and going on where it can:

1. the file: readable, a regular file, at most 4 MiB, UTF-8 (a BOM is fine), not empty;
2. YAML (:mod:`source`): syntax, duplicate keys, non-string keys, lone surrogates;
3. shape (:mod:`schema`): types, unknown and missing keys, names, actions;
4. meaning: duplicate rule and test names, the policy name, tool patterns, ``approvers``
   only on ``require_approval`` rules, ``when`` expressions (parsed and type-checked, with
   the ``environments`` shortcut folded in), test expectations, redaction paths, finite
   numbers in test inputs, ``facts`` declarations and the facts conditions read
   (:mod:`veto_opa.translators.facts`); across files, conflicting facts declarations.

Usage::

    policy = load_policy("veto/policies.yaml")
    policies = load_policies(["veto/sre.yaml", "veto/finance.yaml"])
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from veto_opa.errors import PolicyError
from veto_opa.translators.checker import check
from veto_opa.translators.diagnostics import (
    BAD_GLOB, DUPLICATE, FILE, SCHEMA, UNKNOWN_KEY, UNKNOWN_NAME, Diagnostic,
)
from veto_opa.translators import facts as fact_decls
from veto_opa.translators.parser import ParseError, parse
from veto_opa.translators.policy import (
    Example, Expectation, Policy, Rule, environment_condition,
)
from veto_opa.translators.redaction_paths import parse_redact_path
from veto_opa.translators.rego import KEYWORDS
from veto_opa.translators.schema import (
    ANY_APPROVER, NAME_RULE, ExpectSpec, PolicyFile, RuleSpec, TestSpec, explain, found,
)
from veto_opa.translators.source import read_yaml

if TYPE_CHECKING:
    from collections.abc import Sequence

    from veto_opa.translators.checker import Checked
    from veto_opa.translators.diagnostics import ExpressionProblem
    from veto_opa.translators.source import Document, Position
    from veto_opa.translators.source import Path as DataPath

MAX_FILE_BYTES = 4 * 1024 * 1024
"""Largest policy file accepted (4 MiB)."""

_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")
_TOOL_FORBIDDEN = frozenset("[]{},\\")
_TOOL_HINTS = {
    "\\": "'*' and '?' are the only wildcards, and they cannot be escaped",
    "[": "character classes are not supported",
    "]": "character classes are not supported",
    "{": "braces are not supported; list the tools instead",
    "}": "braces are not supported; list the tools instead",
    ",": "list several tools as a YAML list instead",
}
_SURROGATE = re.compile("[\ud800-\udfff]")
_BOM = b"\xef\xbb\xbf"


def load_policy(path: str | Path, *, index: int = 0, display: str | None = None) -> Policy:
    """Load and check one policy file.

    Args:
        path: the file to read.
        index: the policy's load order among the policies of one bundle.
        display: how messages and the generated metadata name the file (default: ``path``).

    Returns:
        The checked policy.

    Raises:
        PolicyError: with every problem found in the file.
    """
    loaded = _load(Path(path), display if display is not None else str(path), index)
    if loaded.diagnostics or loaded.policy is None:
        raise PolicyError(loaded.diagnostics)
    return loaded.policy


def load_policies(paths: Sequence[str | Path]) -> list[Policy]:
    """Load and check several policy files, which must have distinct policy names.

    Returns:
        The policies, in the order given (``Policy.index`` is that order).

    Raises:
        PolicyError: with every problem found in every file.
    """
    policies: list[Policy] = []
    diagnostics: list[Diagnostic] = []
    first: dict[str, str] = {}
    declared: list[tuple[str, fact_decls.Declared]] = []
    for index, path in enumerate(paths):
        loaded = _load(Path(path), str(path), index)
        diagnostics += loaded.diagnostics
        declared.append((str(path), loaded.facts))
        if loaded.name is not None:
            if loaded.name in first:
                line, col = loaded.name_position
                diagnostics.append(Diagnostic(
                    str(path), line, col, DUPLICATE,
                    f"policy name {loaded.name!r} is already used by {first[loaded.name]}; "
                    "give one of them another name with `policy:`"))
            else:
                first[loaded.name] = str(path)
        if loaded.policy is not None:
            policies.append(loaded.policy)
    for file, (line, col), message in fact_decls.conflicts(declared):
        diagnostics.append(Diagnostic(file, line, col, fact_decls.FACTS, message))
    if diagnostics:
        raise PolicyError(diagnostics)
    return policies


@dataclass
class _Loaded:
    policy: Policy | None
    diagnostics: list[Diagnostic]
    name: str | None = None
    name_position: Position = (1, 1)
    facts: fact_decls.Declared = field(default_factory=fact_decls.Declared)


def _load(path: Path, file: str, index: int) -> _Loaded:
    def fail(message: str, line: int = 1, col: int = 1) -> _Loaded:
        return _Loaded(None, [Diagnostic(file, line, col, FILE, message)])

    try:
        if path.exists() and not path.is_file() and not path.is_dir():
            return fail("not a regular file")
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return fail("file not found")
    except IsADirectoryError:
        return fail("is a directory, not a policy file")
    except PermissionError:
        return fail("permission denied: cannot read the file")
    except OSError as e:
        return fail(f"cannot read the file: {e.strerror or e}")
    if len(data) > MAX_FILE_BYTES:
        return fail(f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, the limit for "
                    "a policy file")
    body = data[len(_BOM):] if data.startswith(_BOM) else data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        line = body.count(b"\n", 0, e.start) + 1
        line_start = body.rfind(b"\n", 0, e.start) + 1
        col = len(body[line_start:e.start].decode("utf-8", "replace")) + 1
        return fail(f"not valid UTF-8: byte 0x{body[e.start]:02x} cannot be decoded (policy "
                    "files must be UTF-8 text)", line, col)
    document, diagnostics = read_yaml(text, file)
    if document is None:
        return _Loaded(None, diagnostics)
    if document.value is None:
        return fail("the file is empty: expected a mapping with a 'rules' list")
    if not isinstance(document.value, dict):
        line, col = document.value_position(())
        return fail(f"the top level must be a mapping with a 'rules' list, found "
                    f"{found(document.value)}", line, col)
    checker = _FileChecker(file, document, path.stem, diagnostics)
    policy = checker.run(data, index)
    return _Loaded(policy, checker.diagnostics, checker.name, checker.name_position,
                   checker.facts)


class _FileChecker:
    """The checks of one file that parsed as a YAML mapping."""

    def __init__(self, file: str, document: Document, stem: str,
                 diagnostics: list[Diagnostic]) -> None:
        self.file = file
        self.doc = document
        self.root: dict[str, Any] = document.value
        self.stem = stem
        self.diagnostics = diagnostics
        self.warnings: list[Diagnostic] = []
        self.name: str | None = None
        self.name_position: Position = (1, 1)
        self.facts = fact_decls.Declared()

    # -- reporting ----------------------------------------------------------------------

    def report(self, at: Position, code: str, message: str) -> None:
        self.diagnostics.append(Diagnostic(self.file, at[0], at[1], code, message))

    def at_value(self, path: DataPath, code: str, message: str) -> None:
        self.report(self.doc.value_position(path), code, message)

    def at_key(self, path: DataPath, code: str, message: str) -> None:
        self.report(self.doc.key_position(path), code, message)

    def validate(self, model: type[BaseModel], data: Any, base: DataPath) -> Any:
        """``model`` validated from ``data``, or None after reporting every error."""
        try:
            return model.model_validate(data)
        except ValidationError as e:
            for error in e.errors():
                path = (*base, *error["loc"])
                anchor, message = explain(dict(error), path)
                code = {"extra_forbidden": UNKNOWN_KEY}.get(error["type"], SCHEMA)
                if anchor == "key":
                    self.at_key(path, code, message)
                elif anchor == "parent":
                    self.at_value(path[:-1], code, message)
                else:
                    self.at_value(path, code, message)
            return None

    def quietly(self, model: type[BaseModel], data: Any) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError:
            return None

    # -- the file -----------------------------------------------------------------------

    def run(self, data: bytes, index: int) -> Policy | None:
        spec: PolicyFile | None = self.validate(PolicyFile, self.root, ())
        self.check_policy_name()
        self.facts = fact_decls.declared(
            self.doc, lambda at, message: self.report(at, fact_decls.FACTS, message))
        raw_rules = self.root.get("rules")
        raw_rules = raw_rules if isinstance(raw_rules, list) else []
        raw_tests = self.root.get("tests")
        raw_tests = raw_tests if isinstance(raw_tests, list) else []
        rule_specs = spec.rules if spec else [self.quietly(RuleSpec, r) for r in raw_rules]
        test_specs = spec.tests if spec else [self.quietly(TestSpec, t) for t in raw_tests]

        self.check_unique("rules", raw_rules, "rule")
        self.check_unique("tests", raw_tests, "test")
        rules = [self.rule(i, raw, rule) for i, (raw, rule)
                 in enumerate(zip(raw_rules, rule_specs))]
        actions = {r.name: r.action for r in rule_specs if r is not None}
        names = [r["name"] for r in raw_rules if isinstance(r, dict)
                 and isinstance(r.get("name"), str)]
        tests = [self.example(i, test, names, actions) for i, test in enumerate(test_specs)
                 if test is not None]
        self.check_redact()
        if spec is not None:
            self.check_default_approvers(spec)
            self.check_binding(spec)

        if self.diagnostics or spec is None or self.name is None:
            return None
        return Policy(
            name=self.name, source=self.file, text=data,
            sha256=hashlib.sha256(data).hexdigest(), default=spec.default,
            description=spec.description,
            rules=tuple(r for r in rules if r is not None),
            tests=tuple(t for t in tests if t is not None),
            redact=tuple(spec.redact), index=index, facts=self.facts.spec,
            default_approvers=tuple(dict.fromkeys(spec.default_approvers)),
            approval_binding=(tuple(spec.approval_binding)
                              if spec.approval_binding is not None else None),
            warnings=tuple(self.warnings),
        )

    def check_policy_name(self) -> None:
        given = self.root.get("policy")
        if isinstance(given, str):
            self.name_position = self.doc.value_position(("policy",))
            problem = _name_problem(given)
            if problem:
                self.at_value(("policy",), SCHEMA, f"policy name {given!r} {problem}")
            else:
                self.name = given
            return
        if given is not None:
            return  # reported by the schema
        problem = _name_problem(self.stem)
        if problem:
            self.report((1, 1), SCHEMA,
                        f"the file name {self.stem!r} is not a usable policy name: it {problem}; "
                        f"name the policy with `policy: {_suggest_name(self.stem)}`")
        else:
            self.name = self.stem

    def check_unique(self, key: str, items: list[Any], what: str) -> None:
        first: dict[str, int] = {}
        for i, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                continue
            if name in first:
                self.at_value((key, i, "name"), DUPLICATE,
                              f"duplicate {what} name {name!r}: already used by the {what} "
                              f"at line {first[name]}")
            else:
                first[name] = self.doc.value_position((key, i, "name"))[0]

    # -- rules --------------------------------------------------------------------------

    def rule(self, i: int, raw: Any, spec: RuleSpec | None) -> Rule | None:
        if spec is None:
            # Still check what can be checked of a malformed rule, to report it all at once.
            if isinstance(raw, dict) and isinstance(raw.get("when"), str):
                self.condition(i, raw["when"], None)
            return None
        tools = self.tools(i, spec)
        if spec.approvers and spec.action != "require_approval":
            self.at_key(("rules", i, "approvers"), SCHEMA,
                        f"approvers only apply to require_approval rules; this rule's action "
                        f"is {spec.action}")
        if spec.approvals is not None and spec.action != "require_approval":
            self.at_key(("rules", i, "approvals"), SCHEMA,
                        f"approvals only apply to require_approval rules; this rule's action "
                        f"is {spec.action}")
        if spec.action == "require_approval":
            self.check_approvers(("rules", i), "approvers", spec.approvers,
                                 f"rule {spec.name} requires approval but names no approvers")
        environments = tuple(spec.environments) if spec.environments is not None else None
        when = spec.when
        if when is True:
            when = None                                  # `when: true` means always
        source = "false" if when is False else when
        checked = self.condition(i, source, environments)
        if checked is not None and source is not None and not checked.problems:
            fact_decls.check_reads(
                checked.node, tools, self.facts,
                lambda offset, message: self.report(
                    self.doc.offset_position(("rules", i, "when"), offset), fact_decls.FACTS,
                    message))
        line, col = self.doc.value_position(("rules", i))
        return Rule(
            name=spec.name, index=i, action=spec.action, tools=tools,
            when=checked, when_source=source, description=spec.description,
            approvers=tuple(spec.approvers), message=spec.message,
            environments=environments, approvals=spec.approvals or 1, line=line, col=col,
        )

    def check_approvers(self, at: DataPath, key: str, approvers: list[str],
                        missing: str) -> None:
        """A require_approval decision must say who may approve: groups, or ``[any]``."""
        if not approvers:
            self.at_value((*at, "action") if key == "approvers" else ("default",), SCHEMA,
                          f"{missing}: list the groups that may approve ({key}: [dba]), or "
                          f"write {key}: [{ANY_APPROVER}] to let any registered approver "
                          "decide")
            return
        for j, group in enumerate(approvers):
            if not group.strip():
                self.at_value((*at, key, j), SCHEMA, f"{key} must be group names, found ''")
        if ANY_APPROVER in approvers and len(set(approvers)) > 1:
            self.at_key((*at, key), SCHEMA,
                        f"{key}: [{ANY_APPROVER}] means any registered approver; it cannot be "
                        "combined with groups")

    def check_default_approvers(self, spec: PolicyFile) -> None:
        if spec.default == "require_approval":
            self.check_approvers((), "default_approvers", spec.default_approvers,
                                 "default: require_approval needs approvers for the calls no "
                                 "rule applies to")
        elif spec.default_approvers:
            self.at_key(("default_approvers",), SCHEMA,
                        "default_approvers only apply to default: require_approval; this "
                        f"policy's default is {spec.default}")

    def check_binding(self, spec: PolicyFile) -> None:
        for j, key in enumerate(spec.approval_binding or ()):
            if not key:
                self.at_value(("approval_binding", j), SCHEMA,
                              "approval_binding must be context key names, found ''")

    def tools(self, i: int, spec: RuleSpec) -> tuple[str, ...] | None:
        if spec.tool is None:
            return None
        single = isinstance(self.root["rules"][i].get("tool"), str)
        for j, pattern in enumerate(spec.tool):
            problem = _tool_problem(pattern)
            if problem:
                offset, message = problem
                path: DataPath = ("rules", i, "tool") if single else ("rules", i, "tool", j)
                self.report(self.doc.offset_position(path, offset), BAD_GLOB, message)
        if "*" in spec.tool:
            return None
        return tuple(spec.tool)

    def condition(self, i: int, text: str | None,
                  environments: tuple[str, ...] | None) -> Checked | None:
        """Parse and check a rule's condition, with the environments folded in."""
        if text is None and environments is None:
            return None
        if text is None:
            assert environments is not None
            checked = check(environment_condition(environments, None))
            self.expression_problems(i, None, checked.problems)
            return checked
        if _SURROGATE.search(text):
            return None  # reported when the YAML was read
        try:
            parsed = parse(text)
        except ParseError as e:
            self.expression_problems(i, text, [e.problem])
            return None
        checked = check(parsed.node)
        self.expression_problems(i, text, [*parsed.problems, *checked.problems])
        if parsed.problems or checked.problems:
            return checked
        self.expression_problems(i, text, checked.warnings, "warning")
        if environments is None:
            return checked
        # The folded condition is what gets compiled. Its problems are the condition's own,
        # except that a non-boolean condition would read "'&&' needs boolean operands" about
        # an '&&' nobody wrote: so report the condition checked alone (above).
        return check(environment_condition(environments, parsed.node))

    def expression_problems(self, i: int, text: str | None,
                            problems: Sequence[ExpressionProblem],
                            severity: str = "error") -> None:
        for problem in problems:
            if text is None:
                # Only the synthetic `context.environment in [...]` is there: its nodes
                # have offset 0 and belong to the environments key.
                at = self.doc.key_position(("rules", i, "environments"))
            else:
                at = self.doc.offset_position(("rules", i, "when"), problem.offset)
            if severity == "warning":
                self.warnings.append(Diagnostic(self.file, at[0], at[1], problem.code,
                                                problem.message, severity))
            else:
                self.report(at, problem.code, problem.message)

    # -- tests --------------------------------------------------------------------------

    def example(self, i: int, spec: TestSpec, names: list[str],
                actions: dict[str, str]) -> Example | None:
        expect: ExpectSpec = spec.expect
        rule_given = "rule" in expect.model_fields_set
        if expect.rule is not None:
            path = ("tests", i, "expect", "rule")
            if expect.rule not in names:
                close = difflib.get_close_matches(expect.rule, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else \
                    " (write rule: null for the policy default)"
                self.at_value(path, UNKNOWN_NAME,
                              f"expect.rule {expect.rule!r} is not a rule of this policy{hint}")
            elif expect.rule in actions and actions[expect.rule] != expect.decision:
                self.at_value(path, SCHEMA,
                              f"expect.rule {expect.rule!r} is a rule with action "
                              f"{actions[expect.rule]}, so it cannot decide {expect.decision}")
        self.check_json(("tests", i, "args"), spec.args, "args")
        self.check_json(("tests", i, "context"), spec.context, "context")
        line, col = self.doc.value_position(("tests", i))
        return Example(
            name=spec.name, tool=spec.tool, args=dict(spec.args), context=dict(spec.context),
            model=spec.model, line=line, col=col,
            expect=Expectation(
                decision=expect.decision, rule=expect.rule, reason=expect.reason,
                approvers=tuple(expect.approvers) if expect.approvers is not None else None,
                rule_given=rule_given,
            ),
        )

    def check_json(self, path: DataPath, value: Any, label: str) -> None:
        """Test inputs become JSON: numbers must be finite."""
        stack = [(path, value, label)]
        while stack:
            at, v, name = stack.pop()
            if isinstance(v, float) and not math.isfinite(v):
                self.at_value(at, SCHEMA, f"{name} is {_yaml_float(v)}, but test inputs are "
                                          "JSON: numbers must be finite")
            elif isinstance(v, dict):
                stack.extend(((*at, k), x, f"{name}.{k}") for k, x in v.items())
            elif isinstance(v, list):
                stack.extend(((*at, k), x, f"{name}[{k}]") for k, x in enumerate(v))

    # -- redaction ----------------------------------------------------------------------

    def check_redact(self) -> None:
        paths = self.root.get("redact")
        if not isinstance(paths, list):
            return
        for i, text in enumerate(paths):
            if isinstance(text, str):
                try:
                    parse_redact_path(text)
                except ValueError as e:
                    self.at_value(("redact", i), SCHEMA, str(e))


def _name_problem(name: str) -> str | None:
    if not _NAME.match(name):
        return f"must use only {NAME_RULE} ([a-z_][a-z0-9_]*)"
    if name.endswith("_test"):
        return "must not end in '_test' (the generated tests take that package name)"
    if name in KEYWORDS:
        return "is a Rego keyword"
    return None


def _suggest_name(stem: str) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", stem.lower()) or "policy"
    if name[0].isdigit():
        name = "_" + name
    if name.endswith("_test"):
        name = name[: -len("_test")] or "policy"
    if name in KEYWORDS:
        name += "_policy"
    return name


def _tool_problem(pattern: str) -> tuple[int, str] | None:
    """``(offset, message)`` for a bad tool name or glob, else None."""
    if pattern == "":
        return 0, "tool name is empty"
    for k, c in enumerate(pattern):
        if c == "*" and pattern.startswith("**", k):
            return k, (f"bad tool pattern {pattern!r}: '**' at column {k + 1}; a single '*' "
                       "already matches any characters")
        # Tool names are compared exactly, so any printable character is fine (agents
        # other than Mistral's allow more than [A-Za-z0-9_-]); only glob syntax that we
        # do not support, separators and invisible characters are refused.
        if c in _TOOL_FORBIDDEN or c.isspace() or unicodedata.category(c).startswith("C"):
            hint = _TOOL_HINTS.get(c)
            shown = "' ' (a space)" if c == " " else repr(c)
            return k, (f"bad tool pattern {pattern!r}: {shown} at column {k + 1} is not "
                       f"allowed ({hint or 'tool names have no spaces or control characters'})")
    return None


def _yaml_float(v: float) -> str:
    if math.isnan(v):
        return ".nan"
    return ".inf" if v > 0 else "-.inf"
