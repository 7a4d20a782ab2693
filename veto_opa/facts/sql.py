"""SQL facts: what a SQL text does, statement by statement, parsed with sqlglot.

    facts("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", dialect="postgres")
    # {"count": 1, "kinds": ["select", "delete"], "tables_written": ["t"], ...}

The text is tokenized once with the dialect's tokenizer (comments and string literals are
tokens of their own, never keywords), split into statements at semicolons, and each
statement is parsed on its own. A statement's *kind* is what its top node does
(``select``, ``delete``, ``drop``...); ``kinds`` lists every kind found anywhere in the text,
nested ones included: a DELETE inside a CTE, the DELETE of ``MERGE ... WHEN MATCHED THEN
DELETE``, the UPDATE of ``INSERT ... ON CONFLICT DO UPDATE``, the table ``SELECT ... INTO``
creates (``create``), the statement an ``EXPLAIN`` or a ``PREPARE`` holds.

Where this is more careful than the database, and why:

- ``EXPLAIN`` counts the kinds of the statement it explains with or without ``ANALYZE``
  (``EXPLAIN ANALYZE`` runs it); ``statements[i].analyze`` says which.
- sqlglot parses statements it does not know as a *command* (``VACUUM``, ``DO``, ``CALL``,
  ``CREATE ROLE``) or, for a few, as a bare expression (``CLUSTER t``): their kind is their
  first keyword, lower-cased, so that an allowlist of kinds rejects them.
- MySQL executes ``/*! ... */`` comments: in the MySQL dialects such a comment is an error.
- A NUL character is an error (libpq would cut the text there; the server sees less than
  what was judged).

sqlglot logs a warning, quoting the statement, for each statement it reads as a command; a
tool call's SQL has no place in the application's logs, so a filter on sqlglot's logger drops
the records logged while this module parses (and only those: the filter reads a flag of the
parsing thread).

Anything sqlglot cannot tokenize or parse raises :class:`FactError` with sqlglot's
description and position (never the SQL text itself).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect, Dialects
from sqlglot.dialects.mysql import MySQL
from sqlglot.errors import ErrorLevel, ParseError, TokenError
from sqlglot.tokenizer_core import Token, TokenType

from veto_opa.facts.errors import FactError, suggest

NAME = "sql"
MAX_CHARS = 200_000
"""Longest SQL text parsed (characters); a longer one is a fact error."""

MAX_NESTING = 8
"""EXPLAIN / PREPARE wrappers followed into the statement they hold."""

DEFAULT_DIALECT = "postgres"


# The kind of each statement node sqlglot builds; nodes of these classes count wherever
# they occur (a DELETE in a CTE). Set operations and VALUES only as a whole statement.
_KINDS: dict[type[exp.Expr], str] = {
    exp.Select: "select",
    exp.Insert: "insert",
    exp.Update: "update",
    exp.Delete: "delete",
    exp.Merge: "merge",
    exp.Drop: "drop",
    exp.Create: "create",
    exp.Alter: "alter",
    exp.TruncateTable: "truncate",
    exp.Copy: "copy",
    exp.Grant: "grant",
    exp.Revoke: "revoke",
    exp.Comment: "comment",
    exp.Analyze: "analyze",
    exp.Set: "set",
    exp.Use: "use",
    exp.Describe: "describe",
    exp.Transaction: "begin",
    exp.Commit: "commit",
    exp.Rollback: "rollback",
    exp.Show: "show",
    exp.Pragma: "pragma",
    exp.LoadData: "load",
    exp.Cache: "cache",
    exp.Uncache: "uncache",
    exp.Refresh: "refresh",
}
_TOP_ONLY: dict[type[exp.Expr], str] = {
    exp.Union: "select",
    exp.Intersect: "select",
    exp.Except: "select",
    exp.Values: "select",
}
# DDL whose target is not a table.
_NOT_TABLES = frozenset({"schema", "database", "index", "function", "procedure", "sequence",
                         "type", "role", "user", "extension", "trigger"})
_MYSQL_EXECUTABLE_COMMENT = "/*!"
_VERSION = version("sqlglot")


class _WhileParsing(logging.Filter):
    """Drops sqlglot's records logged by a thread while it parses here."""

    def __init__(self) -> None:
        super().__init__()
        self.state = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.state, "parsing", False)

    @contextmanager
    def parsing(self) -> Iterator[None]:
        self.state.parsing = True
        try:
            yield
        finally:
            self.state.parsing = False


_QUIET = _WhileParsing()
logging.getLogger("sqlglot").addFilter(_QUIET)


def library() -> str:
    """The parser and its version, as facts and records name it."""
    return f"sqlglot {_VERSION}"


def dialects() -> list[str]:
    """The dialect names sqlglot knows."""
    return [d.value for d in Dialects if d.value]


def option_problem(name: str, value: Any) -> str | None:
    """Why an option value is not usable, or None."""
    if name == "dialect":
        if not isinstance(value, str) or value not in dialects():
            return (f"unknown sqlglot dialect {value!r}{suggest(str(value), dialects())} "
                    f"(dialects: {', '.join(dialects())})")
        return None
    return f"unknown option {name!r}"


@dataclass
class _Facts:
    dialect: Dialect
    text: str
    kinds: dict[str, None] = field(default_factory=dict)
    objects: dict[str, None] = field(default_factory=dict)
    read: dict[str, None] = field(default_factory=dict)
    written: dict[str, None] = field(default_factory=dict)
    functions: dict[str, None] = field(default_factory=dict)
    statements: list[dict[str, Any]] = field(default_factory=list)
    unfiltered: bool = False

    def document(self) -> dict[str, Any]:
        return {
            "count": len(self.statements),
            "kinds": list(self.kinds),
            "objects": list(self.objects),
            "statements": self.statements,
            "tables_read": [t for t in self.read if t not in self.written],
            "tables_written": list(self.written),
            "functions": list(self.functions),
            "write_without_where": self.unfiltered,
        }


def facts(text: str, *, dialect: str = DEFAULT_DIALECT) -> dict[str, Any]:
    """The facts of a SQL text.

    Args:
        text: one or more SQL statements.
        dialect: the sqlglot dialect to read them in.

    Returns:
        ``count``, ``kinds``, ``objects``, ``statements``, ``tables_read``,
        ``tables_written``, ``functions``, ``write_without_where``.

    Raises:
        FactError: the text cannot be tokenized or parsed (or holds what cannot be judged).
    """
    d = Dialect.get_or_raise(dialect)
    if "\x00" in text:
        raise FactError("the SQL text contains a NUL character")
    if isinstance(d, MySQL) and _MYSQL_EXECUTABLE_COMMENT in text:
        raise FactError("MySQL executable comments (/*! ... */) cannot be judged")
    out = _Facts(d, text)
    with _QUIET.parsing():
        for chunk in _statements(_tokenize(d, text)):
            out.statements.append(_statement(out, chunk, text, depth=0))
    return out.document()


def _tokenize(d: Dialect, text: str) -> list[Token]:
    try:
        return d.tokenize(text)
    except TokenError:
        # sqlglot's message quotes the text; name the likely cause instead.
        raise FactError("sqlglot could not tokenize the SQL (an unterminated string, quoted "
                        "identifier or comment?)") from None


def _statements(tokens: list[Token]) -> list[list[Token]]:
    chunks: list[list[Token]] = [[]]
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            chunks.append([])
        else:
            chunks[-1].append(token)
    return [c for c in chunks if c]


def _statement(out: _Facts, tokens: list[Token], text: str, depth: int) -> dict[str, Any]:
    """Add the facts of one statement; returns its entry in ``statements``."""
    word = tokens[0].text.upper()
    if word == "EXPLAIN" and depth < MAX_NESTING:
        out.kinds.setdefault("explain")
        inner, analyze = _explained(out.dialect, tokens)
        entry = _statement(out, inner, text, depth + 1)
        return {**entry, "explain": True, "analyze": analyze or entry["analyze"]}
    if word == "PREPARE" and depth < MAX_NESTING:
        out.kinds.setdefault("prepare")
        entry = _statement(out, _prepared(out.dialect, tokens), text, depth + 1)
        return {**entry, "kind": "prepare", "object": None}
    node = _parse(out.dialect, tokens, text)
    kind, obj = _kind(node, tokens)
    out.kinds.setdefault(kind)
    if obj is not None:
        out.objects.setdefault(obj)
    _walk(out, node)
    return {"kind": kind, "object": obj, "explain": False, "analyze": False}


def _parse(d: Dialect, tokens: list[Token], text: str) -> exp.Expr:
    try:
        parsed = d.parser(error_level=ErrorLevel.IMMEDIATE).parse(tokens, text)
    except ParseError as e:
        first = e.errors[0] if e.errors else {}
        where = (f" at line {first['line']}, column {first['col']}"
                 if first.get("line") is not None else "")
        description = first.get("description") or "invalid SQL"
        raise FactError(f"sqlglot could not parse the SQL: {description}{where}") from None
    nodes = [n for n in parsed if n is not None]
    if len(nodes) != 1:
        raise FactError(f"sqlglot read {len(nodes)} statements where one was expected")
    return nodes[0]


def _explained(d: Dialect, tokens: list[Token]) -> tuple[list[Token], bool]:
    """The statement an EXPLAIN holds, and whether it is run (ANALYZE)."""
    # sqlglot reads EXPLAIN as a command: the rest of the statement is one string token.
    rest = tokens[1].text if len(tokens) > 1 else ""
    inner = _tokenize(d, rest) if len(tokens) == 2 else tokens[1:]
    analyze = False
    i = 0
    if inner and inner[0].token_type == TokenType.L_PAREN:
        depth, i = 0, 0
        for i, token in enumerate(inner):
            if token.token_type == TokenType.L_PAREN:
                depth += 1
            elif token.token_type == TokenType.R_PAREN:
                depth -= 1
                if depth == 0:
                    break
            elif token.text.upper() in ("ANALYZE", "ANALYSE") and depth == 1:
                following = inner[i + 1] if i + 1 < len(inner) else None
                analyze = analyze or following is None or following.text.upper() not in (
                    "FALSE", "OFF", "0")
        i += 1
    while i < len(inner) and inner[i].text.upper() in ("ANALYZE", "ANALYSE", "VERBOSE"):
        analyze = analyze or inner[i].text.upper() != "VERBOSE"
        i += 1
    if i >= len(inner):
        raise FactError("EXPLAIN without a statement")
    return inner[i:], analyze


def _prepared(d: Dialect, tokens: list[Token]) -> list[Token]:
    """The statement of ``PREPARE name [(types)] AS statement``."""
    rest = tokens[1].text if len(tokens) == 2 else ""
    inner = _tokenize(d, rest) if len(tokens) == 2 else tokens[1:]
    depth = 0
    for i, token in enumerate(inner):
        if token.token_type == TokenType.L_PAREN:
            depth += 1
        elif token.token_type == TokenType.R_PAREN:
            depth -= 1
        elif depth == 0 and token.token_type == TokenType.ALIAS and i + 1 < len(inner):
            return inner[i + 1:]
    raise FactError("PREPARE without AS and a statement")


def _kind(node: exp.Expr, tokens: list[Token]) -> tuple[str, str | None]:
    """The kind of a whole statement and, for DDL, the kind of object it changes."""
    while isinstance(node, (exp.Subquery, exp.Paren)) and isinstance(node.this, exp.Expr):
        node = node.this
    if isinstance(node, exp.Command):
        words = str(node.expression.name if isinstance(node.expression, exp.Expr)
                    else node.expression or "").split()
        obj = words[0].lower() if words and node.name.upper() in (
            "CREATE", "DROP", "ALTER") else None
        return node.name.lower(), obj
    kind = _KINDS.get(type(node)) or _TOP_ONLY.get(type(node))
    if kind is None:
        # A statement sqlglot does not know, read as an expression: its first keyword.
        return tokens[0].text.lower(), None
    if isinstance(node, exp.TruncateTable):
        return kind, "table"
    if isinstance(node, (exp.Create, exp.Drop, exp.Alter, exp.Comment)):
        obj = node.args.get("kind")
        return kind, str(obj).lower() if obj else None
    return kind, None


def _walk(out: _Facts, root: exp.Expr) -> None:
    """Kinds, tables and functions of every node below a statement (iteratively)."""
    d = out.dialect
    ctes = {cte.alias_or_name.lower() for cte in root.find_all(exp.CTE)}
    written: set[int] = set()
    for node in root.walk():
        kind = _KINDS.get(type(node))
        if kind is not None:
            out.kinds.setdefault(kind)
        if isinstance(node, exp.Command):
            out.kinds.setdefault(node.name.lower())
        elif isinstance(node, exp.When):
            then = node.args.get("then")
            if isinstance(then, exp.Var) and then.name.upper() == "DELETE":
                out.kinds.setdefault("delete")
        elif isinstance(node, exp.OnConflict):
            if "UPDATE" in str(node.args.get("action") or "").upper():
                out.kinds.setdefault("update")
        elif isinstance(node, exp.Func):
            name = node.name if isinstance(node, exp.Anonymous) else type(node).sql_name()
            if name:
                out.functions.setdefault(name.lower())
        if isinstance(node, (exp.Update, exp.Delete)) and node.args.get("where") is None:
            out.unfiltered = True
        if isinstance(node, exp.Select) and isinstance(node.args.get("into"), exp.Into):
            out.kinds.setdefault("create")    # SELECT ... INTO creates the table
        if isinstance(node, (exp.Create, exp.Drop, exp.Alter)) and \
                str(node.args.get("kind") or "").lower() in _NOT_TABLES:
            # The schema, database or index named is not a table read.
            written.update(id(t) for t in (node.this, *(node.args.get("tables") or []))
                           if isinstance(t, exp.Table))
        for target in _targets(node):
            written.add(id(target))
            name = _table_name(d, target)
            if name:
                out.written.setdefault(name)
    for table in root.find_all(exp.Table):
        if id(table) in written:
            continue
        name = _table_name(d, table)
        if name and not (name in ctes and not table.args.get("db")):
            out.read.setdefault(name)


def _targets(node: exp.Expr) -> list[exp.Table]:
    """The tables a statement node writes (creates, changes or removes)."""
    candidates: list[Any] = []
    if isinstance(node, (exp.Insert, exp.Update, exp.Merge)):
        candidates.append(node.this)
    elif isinstance(node, exp.Delete):
        candidates += [node.this, *(node.args.get("tables") or [])]
    elif isinstance(node, exp.TruncateTable):
        candidates += node.expressions
    elif isinstance(node, exp.Copy) and node.args.get("kind") is True:   # COPY ... FROM
        candidates.append(node.this)
    elif isinstance(node, exp.Select) and isinstance(node.args.get("into"), exp.Into):
        candidates.append(node.args["into"].this)
    elif isinstance(node, (exp.Create, exp.Drop, exp.Alter)):
        kind = str(node.args.get("kind") or "").lower()
        if kind not in _NOT_TABLES:
            candidates += [node.this, *(node.args.get("tables") or [])]
    out = []
    for candidate in candidates:
        if isinstance(candidate, exp.Schema):
            candidate = candidate.this
        if isinstance(candidate, exp.Table):
            out.append(candidate)
    return out


def _table_name(d: Dialect, table: exp.Table) -> str:
    """``catalog.db.name`` with each part as the database reads it (unquoted parts folded)."""
    parts = []
    for key in ("catalog", "db", "this"):
        part = table.args.get(key)
        if isinstance(part, exp.Identifier):
            parts.append(d.normalize_identifier(part.copy()).name)
        elif isinstance(part, exp.Expr) and key == "this":
            return ""        # a table function such as generate_series(1, 3)
    return ".".join(p for p in parts if p)
