"""The table of fact parsers: one row per parser a policy can name under ``facts:``.

Each row holds what the policy loader needs (the parser's fields and options) and names the
module that implements it, imported on first use: checking a policy that declares no SQL
facts never imports sqlglot. A parser module provides::

    NAME: str                        # the name policies use ("sql")
    MAX_CHARS: int                   # longest argument it parses
    def library() -> str             # "sqlglot 30.30.0": recorded with every fact
    def option_problem(name, value) -> str | None
    def facts(text, **options) -> dict        # raises FactError

Adding a parser means one module and one row here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

COMMON_FIELDS = {"parser": "string", "error": "string"}
"""Fields every fact has: ``parser`` always, ``error`` when it could not be computed."""


@dataclass(frozen=True)
class Parser:
    """One parser of arguments.

    Attributes:
        name: what policies write (``sql``).
        module: the module implementing it.
        summary: one line for messages and documentation.
        fields: the fact's fields and their JSON types (``COMMON_FIELDS`` besides).
        options: the options it takes, with what each means.
    """

    name: str
    module: str
    summary: str
    fields: Mapping[str, str]
    options: Mapping[str, str]

    def load(self) -> ModuleType:
        """The implementing module (imported on first use)."""
        return _import(self.module)


@cache
def _import(module: str) -> ModuleType:
    return importlib.import_module(module)


PARSERS: dict[str, Parser] = {p.name: p for p in (
    Parser("sql", "veto_opa.facts.sql", "SQL statements, parsed with sqlglot",
           {"count": "number", "kinds": "array", "objects": "array", "statements": "array",
            "tables_read": "array", "tables_written": "array", "functions": "array",
            "write_without_where": "boolean"},
           {"dialect": "the sqlglot dialect the statements are written in (postgres)"}),
    Parser("path", "veto_opa.facts.paths", "a POSIX path, normalised",
           {"normalized": "string", "segments": "array", "prefixes": "array",
            "folded": "string", "folded_segments": "array", "folded_prefixes": "array",
            "absolute": "boolean", "outside_root": "boolean", "root": "string"},
           {"root": "the absolute directory relative paths are resolved against (/)"}),
    Parser("kubernetes", "veto_opa.facts.kubernetes",
           "Kubernetes manifests (multi-document YAML or JSON)",
           {"documents": "number", "kinds": "array", "objects": "array",
            "namespaces": "array", "privileged": "boolean", "privileged_containers": "array",
            "host_path": "boolean", "host_paths": "array", "host_namespaces": "array",
            "bindings": "array"},
           {}),
    Parser("url", "veto_opa.facts.urls", "a URL: scheme, host, port, path",
           {"scheme": "string", "host": "string", "port": "number", "path": "string",
            "segments": "array", "prefixes": "array", "query": "string",
            "userinfo": "boolean", "ip": "boolean"},
           {}),
)}


def option_problem(parser: Parser, name: str, value: Any) -> str | None:
    """Why ``name: value`` is not an option of ``parser``, or None."""
    if name not in parser.options:
        known = ", ".join(parser.options) or "none"
        return f"unknown option {name!r} of the {parser.name} parser (options: {known})"
    problem: str | None = parser.load().option_problem(name, value)
    return problem
