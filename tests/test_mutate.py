"""Mutation testing: the generators keep the meaning, the hardened policy holds, the seed
policy's report lists what it lets through."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

from veto_opa.cli import main
from veto_opa.facts import FactSpec, compute
from veto_opa.mutate import (
    guess_kind, mutate, path_variations, sql_same_meaning, sql_variations, url_variations,
    variants,
)

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "examples" / "policies.yaml"
HARDENED = ROOT / "examples" / "hardened.yaml"
PLATFORM = ROOT / "examples" / "platform.yaml"


# -- the shipped examples ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hardened_report():
    return mutate([HARDENED])


@pytest.fixture(scope="module")
def seed_report():
    return mutate([SEED], examples=[HARDENED])


def test_the_hardened_policy_shows_no_weakening(hardened_report) -> None:
    assert hardened_report.weakenings == []
    assert hardened_report.misses == []
    assert hardened_report.mutated >= 30
    assert hardened_report.variants >= 500


def test_every_kind_of_rewrite_is_tried_on_the_hardened_examples() -> None:
    from veto_opa.translators import load_policy

    policy = load_policy(HARDENED)
    techniques = {v.technique for ex in policy.tests if ex.expect.decision != "allow"
                  for v in variants(ex.args, policy.facts.get(ex.tool))}
    for expected in ("sql: keywords in mixed case", "sql: whitespace '\\t' between tokens",
                     "sql: whitespace '\\x0c' between tokens",
                     "sql: comments instead of whitespace", "sql: '/* veto */ ' before the "
                     "statement", "sql: stacked after SELECT 1", "sql: inside a CTE",
                     "sql: after a CTE", "sql: EXPLAIN ANALYZE before it",
                     "path: a '.' segment", "path: a repeated slash",
                     "path: a detour through '<next>/..'", "path: relative to the root",
                     "a one-element list instead of the string"):
        assert expected in techniques


def _weakened(report, example: str) -> dict[str, str]:
    return {w.technique: w.arguments[w.argument] for w in report.weakenings
            if w.example == example}


def test_the_seed_report_lists_what_it_lets_through(seed_report) -> None:
    assert not seed_report.ok
    drop = _weakened(seed_report, "drop_table")
    assert drop["sql: comments instead of whitespace"] == "DROP/**/TABLE/**/customers"
    assert drop["sql: whitespace '\\t' between tokens"] == "DROP\tTABLE\tcustomers"
    assert drop["sql: whitespace '  ' between tokens"] == "DROP  TABLE  customers"
    root = _weakened(seed_report, "root_secret")
    assert root["path: a '.' segment"] == "/secrets/./root/token"
    assert root["path: a repeated slash"] == "/secrets//root/token"
    assert root["path: relative to the root"] == "secrets/root/token"
    # A string wrapped in a list no longer gets past `args.service in [...]`: comparing a list
    # with strings is an error, and the require_approval rule applies (fail closed).
    assert "a one-element list instead of the string" not in _weakened(
        seed_report, "stripe_rotation_needs_security")
    assert all(w.decision == "allow" for w in seed_report.weakenings)


def test_the_seed_report_lists_the_examples_it_already_misses(seed_report) -> None:
    missed = {m.example for m in seed_report.misses}
    assert {"drop_with_a_comment_between_keywords", "drop_with_two_spaces", "drop_with_a_tab",
            "delete_after_a_space", "delete_after_a_comment", "delete_after_a_newline",
            "delete_inside_a_cte", "delete_after_select_1", "explain_analyze_delete",
            "merge_then_delete", "drop_schema", "viewer_select_into",
            "root_secret_with_a_dot_segment", "root_secret_with_a_double_slash",
            "root_secret_through_dot_dot", "root_secret_relative"} <= missed
    assert all(m.decision == "allow" for m in seed_report.misses)


def test_the_cli_fails_on_the_seed_and_passes_the_hardened(capsys) -> None:
    skip: list[str] = []   # the Rego tests run too (and pass): the mutation report decides
    assert main(["test", *skip, "--mutate", str(HARDENED)]) == 0
    assert "0 weakened" in capsys.readouterr().out
    assert main(["test", *skip, "--mutate", str(SEED), "--examples", str(HARDENED)]) == 2
    out = capsys.readouterr().out
    assert ("WEAKENED hardened/drop_table: sql: comments instead of whitespace on statement -> "
            "allow, the original is deny") in out
    assert '"statement": "DROP/**/TABLE/**/customers"' in out
    assert "MISSED hardened/drop_schema: decided allow, expected deny" in out
    assert main(["test", *skip, "--mutate", "--json", str(SEED), "--examples",
                 str(HARDENED)]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False and document["tests"] is True
    assert {"policy", "example", "technique", "argument", "arguments", "decision"} <= set(
        document["weakenings"][0])


def test_examples_without_mutate_is_a_usage_error(capsys) -> None:
    assert main(["test", "--examples", str(HARDENED), str(SEED)]) == 1
    assert "--examples and --json go with --mutate" in capsys.readouterr().err


def test_a_naive_url_and_manifest_policy_is_caught(tmp_path: Path) -> None:
    naive = tmp_path / "naive.yaml"
    naive.write_text("""\
rules:
  - name: no_evil
    tool: http_request
    when: args.url.startswith("https://evil.example/")
    action: deny
  - name: no_privileged
    tool: kubectl_apply
    when: 'args.manifest.contains("privileged: true")'
    action: deny
tests:
  - name: evil
    tool: http_request
    args: {url: "https://evil.example/upload"}
    expect: deny
  - name: privileged
    tool: kubectl_apply
    args:
      manifest: "kind: Pod\\nspec:\\n  containers:\\n  - name: c\\n    securityContext:\\n\\
        \\      privileged: true\\n"
    expect: deny
""")
    report = mutate([naive])
    url = _weakened(report, "evil")
    assert url["url: scheme and host in upper case"] == "HTTPS://EVIL.EXAMPLE/upload"
    assert url["url: a trailing dot on the host"] == "https://evil.example./upload"
    assert "kubernetes: as JSON" in _weakened(report, "privileged")
    hardened = tmp_path / "facts.yaml"
    hardened.write_text("""\
facts:
  http_request: {url: url}
  kubectl_apply: {manifest: kubernetes}
rules:
  - name: no_evil
    tool: http_request
    when: facts.url.host == "evil.example"
    action: deny
  - name: no_privileged
    tool: kubectl_apply
    when: facts.manifest.privileged
    action: deny
""" + naive.read_text().split("tests:\n", 1)[1].join(["tests:\n", ""]))
    assert mutate([hardened]).ok


def test_platform_example_report_runs() -> None:
    report = mutate([PLATFORM])
    assert report.mutated >= 1 and report.variants >= 1


# -- what an argument is ---------------------------------------------------------------------

@pytest.mark.parametrize("value, kind", [
    ("SELECT 1", "sql"), ("  /* x */ delete from t", "sql"), ("-- c\nDROP TABLE t", "sql"),
    ("with x as (select 1) select 1", "sql"), ("https://example.com", "url"),
    ("/secrets/root", "path"), ("secrets/root/token", "path"),
    ("apiVersion: v1\nkind: Pod\n", "kubernetes"), ("analytics", None), ("hello world", None),
    ("selection of items", None),
])
def test_guess_kind(value: str, kind: str | None) -> None:
    assert guess_kind(value) == kind


def test_declared_facts_decide_the_kind() -> None:
    declared = {"q": FactSpec("sql"), "p": FactSpec("path", {"root": "/srv/app"})}
    found = {v.technique for v in variants({"q": "analytics", "p": "/srv/app/data/x"},
                                           declared)}
    assert "path: relative to the root" in found
    relative = [v for v in variants({"p": "/srv/app/data/x"}, declared)
                if v.technique == "path: relative to the root"]
    assert relative[0].arguments["p"] == "data/x"


# -- generators keep the meaning (properties) ------------------------------------------------------

_WORDS = st.sampled_from(["drop table", "DELETE", "truncate", ";", "--", "/*", "*/", "'", "x",
                          "select", "$$", "\\", "é", " "])
_LITERAL = st.lists(_WORDS, max_size=5).map(lambda ws: "'" + "".join(ws).replace("'", "''")
                                             + "'")
_TABLE = st.sampled_from(["t", "customers", "public.orders", '"Mixed Case"', "s.t"])
_COMMENT = st.sampled_from(["", " /* DROP TABLE x */ ", " -- truncate\n", "/**/"])


@st.composite
def _statement(draw: st.DrawFn) -> str:
    table, literal = draw(_TABLE), draw(_LITERAL)
    where = draw(st.sampled_from(["", f" WHERE id = {draw(st.integers(0, 9))}",
                                  f" WHERE name = {literal}"]))
    return draw(st.sampled_from([
        f"SELECT a, {literal} FROM {table}{where}",
        f"DELETE FROM {table}{where}",
        f"UPDATE {table} SET a = {literal}{where}",
        f"INSERT INTO {table} (a) VALUES ({literal})",
        f"DROP TABLE {table}",
        f"DROP SCHEMA {table.split('.')[0]} CASCADE",
        f"TRUNCATE {table}",
        f"ALTER TABLE {table} ADD COLUMN c int",
        f"CREATE TABLE {table} (a int)",
        f"WITH gone AS (DELETE FROM {table}{where} RETURNING *) SELECT * FROM gone",
        f"MERGE INTO {table} USING s ON {table}.id = s.id WHEN MATCHED THEN DELETE",
        f"SELECT * INTO copy FROM {table}{where}",
        f"EXPLAIN ANALYZE DELETE FROM {table}{where}",
        f"GRANT SELECT ON {table} TO bob",
    ]))


@st.composite
def _sql(draw: st.DrawFn) -> str:
    statements = draw(st.lists(_statement(), min_size=1, max_size=3))
    return draw(_COMMENT) + "; ".join(s + draw(_COMMENT) for s in statements)


def _literals(text: str) -> list[str]:
    """The string literals and quoted identifiers of a SQL text (a command's raw text, such
    as EXPLAIN's, is not a literal)."""
    d = Dialect.get_or_raise("postgres")
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)        # its "falling back to a command" warnings
    try:
        trees = d.parse(text)
    finally:
        logger.setLevel(level)
    out = []
    for tree in trees:
        if tree is None or isinstance(tree, exp.Command):
            continue
        out += [lit.this for lit in tree.find_all(exp.Literal) if lit.is_string]
        out += [i.this for i in tree.find_all(exp.Identifier) if i.quoted]
    return sorted(out)


@settings(max_examples=60, deadline=None)
@given(_sql())
def test_sql_variants_parse_to_the_same_kinds(text: str) -> None:
    original = compute({"s": FactSpec("sql")}, {"s": text})["s"]
    assume("error" not in original)
    for technique, variant in sql_variations(text):
        assert sql_same_meaning(text, variant, technique), (technique, variant)
        fact = compute({"s": FactSpec("sql")}, {"s": variant})["s"]
        if not any(w in technique for w in ("stacked", "CTE", "EXPLAIN")):
            assert fact["kinds"] == original["kinds"], technique
            assert _literals(variant) == _literals(text), technique   # literals untouched


_SEGMENT = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd"),
                                 whitelist_characters="-_."), min_size=1, max_size=6).filter(
    lambda s: s not in (".", ".."))


@settings(max_examples=200, deadline=None)
@given(st.lists(_SEGMENT, min_size=1, max_size=6), st.booleans(),
       st.sampled_from(["/", "/srv", "/srv/app"]))
def test_path_variants_resolve_to_the_same_path(segments: list[str], absolute: bool,
                                               root: str) -> None:
    text = ("/" if absolute else "") + "/".join(segments)
    spec = {"p": FactSpec("path", {"root": root})}
    normalized = compute(spec, {"p": text})["p"]["normalized"]
    for technique, variant in path_variations(text, root):
        assert compute(spec, {"p": variant})["p"]["normalized"] == normalized, technique


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["http", "https", "HTTP"]),
       st.lists(st.text("abcxyz019-", min_size=1, max_size=6).filter(
           lambda s: not s.startswith("-") and not s.endswith("-")), min_size=2, max_size=3),
       st.lists(st.text("abc019._~-", min_size=1, max_size=5).filter(
           lambda s: s not in (".", "..")), max_size=3),
       st.sampled_from(["", "?q=1", "?a=b&c=%20"]))
def test_url_variants_read_as_the_same_url(scheme: str, labels: list[str], path: list[str],
                                           query: str) -> None:
    host = ".".join(labels)
    assume(not host.replace(".", "").isdigit() and not labels[-1].isdigit())
    text = f"{scheme}://{host}/{'/'.join(path)}{query}"
    spec = {"u": FactSpec("url")}
    base = compute(spec, {"u": text})["u"]
    assume("error" not in base)
    for technique, variant in url_variations(text):
        fact = compute(spec, {"u": variant})["u"]
        assert "error" not in fact, (technique, variant, fact)
        assert (fact["scheme"], fact["host"], fact["port"], fact["path"]) == (
            base["scheme"], base["host"], base["port"], base["path"]), technique
