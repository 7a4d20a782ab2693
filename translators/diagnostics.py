"""Problems found in policy files, reported as ``file:line:col: message``.

Every stage (YAML reading, schema validation, expression parsing and checking) collects
:class:`Diagnostic` values instead of raising at the first problem, so that one run of
``veto-opa check`` shows all of them. Each has a stable ``code`` for tools, like OPA's
``rego_parse_error``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Stable codes, one per kind of problem.
YAML_SYNTAX = "veto_yaml_error"
SCHEMA = "veto_schema_error"
UNKNOWN_KEY = "veto_unknown_key"
DUPLICATE = "veto_duplicate_name"
BAD_GLOB = "veto_bad_glob"
PARSE = "veto_parse_error"
UNKNOWN_NAME = "veto_unknown_name"
ARITY = "veto_arity_error"
TYPE = "veto_type_error"
LIMIT = "veto_limit_error"
FILE = "veto_file_error"
# Warnings: the policy compiles, but probably does not say what was meant.
ALWAYS_ERROR = "veto_always_error"


@dataclass(frozen=True)
class Diagnostic:
    """One problem at one place of a policy file (line and column are 1-based)."""

    file: str
    line: int
    col: int
    code: str
    message: str
    severity: str = "error"      # or "warning": reported, but the policy still loads

    def __str__(self) -> str:
        if self.severity == "warning":
            return f"{self.file}:{self.line}:{self.col}: warning: {self.message}"
        return f"{self.file}:{self.line}:{self.col}: {self.message}"

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.col, self.message)

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "code": self.code,
            "message": self.message,
            "severity": self.severity,
        }


@dataclass(frozen=True)
class ExpressionProblem:
    """A problem inside one ``when`` expression, located by character offset in its text.

    The policy loader turns offsets into file positions, which for block scalars and quoted
    strings is not a fixed shift (see :mod:`veto_opa.translators.source`).
    """

    offset: int
    code: str
    message: str
