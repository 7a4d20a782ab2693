"""SQL facts: the kinds of every statement, whatever the spelling, and errors for what
cannot be judged.

The first table is issue 13's list of what the seed policy's string tests let through, and
what they wrongly stopped: read by the parser, each has the kinds it means.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veto_opa.facts import FactSpec, compute
from veto_opa.facts.errors import FactError
from veto_opa.facts.sql import MAX_CHARS, facts


def sql(text: str, dialect: str = "postgres") -> dict:
    return compute({"s": FactSpec("sql", {"dialect": dialect})}, {"s": text})["s"]


@pytest.mark.parametrize("text, kinds", [
    # Evasions of the seed policy: the same statements, spelled otherwise.
    ("DROP/**/TABLE customers", ["drop"]),
    ("drop  table customers", ["drop"]),
    ("DROP\tTABLE customers", ["drop"]),
    (" DELETE FROM customers", ["delete"]),
    ("/* maintenance */ DELETE FROM customers", ["delete"]),
    ("-- cleanup\nDELETE FROM customers", ["delete"]),
    ("\nDELETE FROM customers", ["delete"]),
    ("WITH gone AS (DELETE FROM customers RETURNING *) SELECT count(*) FROM gone",
     ["select", "delete"]),
    ("SELECT 1; DELETE FROM customers", ["select", "delete"]),
    ("EXPLAIN ANALYZE DELETE FROM customers", ["explain", "delete"]),
    ("explain analyse delete from customers", ["explain", "delete"]),
    ("EXPLAIN (ANALYZE, BUFFERS) DELETE FROM customers", ["explain", "delete"]),
    ("MERGE INTO customers c USING churned s ON c.id = s.id WHEN MATCHED THEN DELETE",
     ["merge", "delete"]),
    ("DROP SCHEMA billing CASCADE", ["drop"]),
    ("SELECT * INTO backup FROM customers", ["select", "create"]),
    # What the seed wrongly stopped: keywords inside literals and comments do not count.
    ("SELECT * FROM audit WHERE action = 'DROP TABLE'", ["select"]),
    ("SELECT 'truncate'", ["select"]),
    ("SELECT 1 -- truncate the table later", ["select"]),
    ("SELECT /* TRUNCATE customers */ 1", ["select"]),
    ("SELECT $$; DROP TABLE customers; $$", ["select"]),
    ("SELECT \"DELETE\" FROM t", ["select"]),
    # Postgres nests block comments: all of this is one comment and a SELECT.
    ("/* /* */ DROP TABLE x; /* */ */ SELECT 1", ["select"]),
    # Writes hidden in other statements.
    ("INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2", ["insert", "update"]),
    ("PREPARE wipe AS DELETE FROM customers", ["prepare", "delete"]),
    ("WITH x AS (SELECT 1) UPDATE t SET a = 1", ["update", "select"]),
    # DDL of any object kind; statements sqlglot only knows as commands.
    ("TRUNCATE customers, orders", ["truncate"]),
    ("ALTER TABLE t ADD COLUMN x int", ["alter"]),
    ("CREATE INDEX i ON t (a)", ["create"]),
    ("DROP EXTENSION pgcrypto", ["drop"]),
    ("GRANT ALL ON t TO mallory", ["grant"]),
    ("VACUUM FULL", ["vacuum"]),
    ("DO $$ BEGIN DELETE FROM t; END $$", ["do"]),
    ("CLUSTER t", ["cluster"]),
    ("SELECT 1 UNION SELECT 2", ["select"]),
    ("", []),
    ("-- nothing\n;", []),
])
def test_kinds(text: str, kinds: list[str]) -> None:
    assert sql(text)["kinds"] == kinds


@pytest.mark.parametrize("text, objects", [
    ("DROP TABLE a", ["table"]),
    ("DROP SCHEMA s", ["schema"]),
    ("DROP DATABASE d", ["database"]),
    ("DROP INDEX i", ["index"]),
    ("DROP VIEW v", ["view"]),
    ("CREATE TABLE t (a int)", ["table"]),
    ("CREATE ROLE r", ["role"]),
    ("DROP EXTENSION e", ["extension"]),
    ("TRUNCATE t", ["table"]),
    ("SELECT 1", []),
])
def test_objects(text: str, objects: list[str]) -> None:
    assert sql(text)["objects"] == objects


def test_statements_and_count() -> None:
    fact = sql("SELECT 1;; EXPLAIN DELETE FROM t; EXPLAIN ANALYZE UPDATE t SET a = 1 WHERE b")
    assert fact["count"] == 3
    assert [(s["kind"], s["explain"], s["analyze"]) for s in fact["statements"]] == [
        ("select", False, False), ("delete", True, False), ("update", True, True)]


@pytest.mark.parametrize("text, read, written", [
    ("SELECT * FROM a JOIN b.c ON true", ["a", "b.c"], []),
    ("DELETE FROM t WHERE id IN (SELECT id FROM s)", ["s"], ["t"]),
    ("INSERT INTO t (a) SELECT a FROM s", ["s"], ["t"]),
    ("UPDATE Public.\"Mixed\" SET a = 1", [], ["public.Mixed"]),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", [], ["t"]),
    ("SELECT * INTO n FROM t", ["t"], ["n"]),
    ("DROP TABLE a, b", [], ["a", "b"]),
    ("DROP SCHEMA s", [], []),
    ("COPY t FROM stdin", [], ["t"]),
    ("COPY t TO stdout", ["t"], []),
    ("SELECT * FROM generate_series(1, 3)", [], []),
])
def test_tables(text: str, read: list[str], written: list[str]) -> None:
    fact = sql(text)
    assert (fact["tables_read"], fact["tables_written"]) == (read, written)


@pytest.mark.parametrize("text, unfiltered", [
    ("DELETE FROM t", True),
    ("DELETE FROM t WHERE id = 1", False),
    ("UPDATE t SET a = 1", True),
    ("UPDATE t SET a = 1 WHERE id = 1", False),
    ("WITH x AS (DELETE FROM t) SELECT 1", True),
    ("SELECT 1; UPDATE t SET a = 1 WHERE b; DELETE FROM u", True),
    ("SELECT * FROM t", False),
])
def test_write_without_where(text: str, unfiltered: bool) -> None:
    assert sql(text)["write_without_where"] is unfiltered


def test_functions() -> None:
    fact = sql("SELECT count(*), pg_terminate_backend(pid) FROM pg_stat_activity")
    assert fact["functions"] == ["count", "pg_terminate_backend"]


def test_every_fact_names_its_parser() -> None:
    assert sql("SELECT 1")["parser"].startswith("sqlglot 30.")
    assert sql("SELEC 1")["parser"].startswith("sqlglot 30.")


# -- what cannot be judged is an error ------------------------------------------------------

@pytest.mark.parametrize("text, error", [
    ("DELET FROM t", "sqlglot could not parse the SQL: Invalid expression / Unexpected token "
                     "at line 1, column 10"),
    ("SELECT 'unterminated", "sqlglot could not tokenize the SQL (an unterminated string, "
                             "quoted identifier or comment?)"),
    ("SELECT 1 /* unterminated", "sqlglot could not tokenize the SQL (an unterminated "
                                 "string, quoted identifier or comment?)"),
    ("SELECT 1\x00; DROP TABLE t", "the SQL text contains a NUL character"),
    ("SELECT '\ud800'", "args.s is not valid Unicode text (a lone surrogate)"),
    ("EXPLAIN", "EXPLAIN without a statement"),
    ("PREPARE p", "PREPARE without AS and a statement"),
    ("SELECT " + "(" * 2000 + "1" + ")" * 2000, "args.s nests too deeply for the sql parser"),
])
def test_unparseable(text: str, error: str) -> None:
    assert sql(text)["error"] == error


def test_errors_never_quote_the_sql() -> None:
    secret = "hunter2-do-not-log"
    for text in (f"SELECT '{secret}", f"DELET {secret} FROM t", f"SELECT {secret} ((("):
        assert secret not in sql(text)["error"]


def test_too_long() -> None:
    fact = sql("SELECT 1 " + " " * MAX_CHARS)
    assert fact["error"] == (f"args.s is {MAX_CHARS + 9} characters long, over the {MAX_CHARS} "
                             "the sql parser reads")


def test_huge_statement_within_the_limit() -> None:
    text = "SELECT 1 WHERE " + " AND ".join(f"c{i} = {i}" for i in range(10_000))
    assert len(text) < MAX_CHARS
    assert sql(text)["kinds"] == ["select"]


@pytest.mark.parametrize("value, error", [
    (None, "args.s is not a string (found null)"),
    (["DROP TABLE t"], "args.s is not a string (found array)"),
    (5, "args.s is not a string (found number)"),
])
def test_not_a_string(value: object, error: str) -> None:
    assert compute({"s": FactSpec("sql")}, {"s": value})["s"]["error"] == error


def test_missing_argument() -> None:
    assert compute({"s": FactSpec("sql")}, {})["s"]["error"] == "args.s is missing"


def test_mysql_executable_comments_are_refused() -> None:
    # MySQL runs what is inside /*! ... */; sqlglot reads it as a comment.
    assert sql("/*! DROP TABLE t */ SELECT 1", "mysql")["error"] == (
        "MySQL executable comments (/*! ... */) cannot be judged")
    assert sql("/*! DROP TABLE t */ SELECT 1")["kinds"] == ["select"]   # postgres: a comment


def test_mysql_double_dash_needs_a_space() -> None:
    # In MySQL "--1" is minus minus one, not a comment: the DROP is a statement.
    assert sql("SELECT 1 --1; DROP TABLE t", "mysql")["kinds"] == ["select", "drop"]


def test_facts_raises_fact_error_directly() -> None:
    with pytest.raises(FactError):
        facts("SELEC 1")


def test_sqlglot_warnings_do_not_leak_the_statement(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="sqlglot"):
        assert sql("VACUUM secret_table")["kinds"] == ["vacuum"]
    assert "secret_table" not in caplog.text


# -- properties -------------------------------------------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=40)


@settings(max_examples=150, deadline=None)
@given(_TEXT)
def test_string_literals_never_count(text: str) -> None:
    literal = "'" + text.replace("'", "''") + "'"
    assert sql(f"SELECT {literal} AS x")["kinds"] == ["select"]


@settings(max_examples=150, deadline=None)
@given(_TEXT.filter(lambda t: "/*" not in t and "*/" not in t))
def test_block_comments_never_count(text: str) -> None:
    assert sql(f"SELECT 1 /* {text} */")["kinds"] == ["select"]


@settings(max_examples=150, deadline=None)
@given(_TEXT.filter(lambda t: "\n" not in t and "\r" not in t))
def test_line_comments_never_count(text: str) -> None:
    assert sql(f"SELECT 1 -- {text}\n")["kinds"] == ["select"]


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_fact_or_an_error(text: str) -> None:
    fact = sql(text)
    assert "parser" in fact
    assert ("error" in fact) != ("kinds" in fact)
