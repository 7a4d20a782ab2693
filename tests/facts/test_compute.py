"""The facts machinery: the registry, declarations, compute(), the cache, what records and
spans keep."""

from __future__ import annotations

import ast
import json
import threading
from pathlib import Path

import pytest

from veto_opa.facts import (
    COMMON_FIELDS, PARSERS, FactCache, Facts, FactSpec, compute, recorded, span_attributes,
    spec_document, spec_from_data, spec_from_document,
)
from veto_opa.facts.runtime import FACT_ERRORS, FACT_PARSERS, FACTS, canonical_json
from veto_opa.records.redaction import parse_redact_path

SAMPLES = {
    "sql": "DELETE FROM t WHERE id IN (SELECT id FROM s)",
    "path": "/secrets/./root/token",
    "kubernetes": "kind: Pod\nspec: {containers: [{name: c}]}\n",
    "url": "https://example.com/a",
}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_each_parser_gives_exactly_its_declared_fields(name: str) -> None:
    fact = compute({"a": FactSpec(name)}, {"a": SAMPLES[name]})["a"]
    assert set(fact) == set(PARSERS[name].fields) | {"parser"}
    types = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number"}
    for field, kind in PARSERS[name].fields.items():
        assert fact[field] is None or types[type(fact[field])] == kind, field


def test_the_table_covers_every_parser_module() -> None:
    modules = {p.stem for p in (Path(__file__).parents[2] / "veto_opa" / "facts").glob("*.py")}
    implemented = {PARSERS[n].module.rsplit(".", 1)[1] for n in PARSERS}
    assert implemented == modules - {"__init__", "registry", "spec", "compute", "cache",
                                     "runtime", "errors"}
    assert set(COMMON_FIELDS) == {"parser", "error"}


def test_the_package_imports_nothing_of_the_runtime() -> None:
    runtime = ("veto_opa.veto", "veto_opa.engines", "veto_opa.records", "veto_opa.approvals",
               "veto_opa.spans", "veto_opa.translators", "veto_opa.cli")
    for path in (Path(__file__).parents[2] / "veto_opa" / "facts").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:       # module level only: runtime.recorded imports lazily
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(runtime), (path.name, node.module)


# -- declarations ----------------------------------------------------------------------------

SPEC = {"execute_sql": {"statement": FactSpec("sql", {"dialect": "postgres"})},
        "rotate_secret": {"secret_path": FactSpec("path", {"root": "/"}),
                          "note": FactSpec("url")}}


def test_spec_round_trips_through_its_json_form() -> None:
    document = spec_document(SPEC)
    assert document == {
        "execute_sql": {"statement": {"parser": "sql", "options": {"dialect": "postgres"}}},
        "rotate_secret": {"note": {"parser": "url", "options": {}},
                          "secret_path": {"parser": "path", "options": {"root": "/"}}}}
    assert spec_from_document(json.loads(json.dumps(document))) == SPEC
    assert spec_from_data([("veto.rules.x", {}), ("veto.facts", document)]) == SPEC
    assert spec_from_data([("veto.rules.x", {})]) == {}


@pytest.mark.parametrize("document, problem", [
    ([], "facts declarations must be an object"),
    ({"t": []}, "the facts of tool 't' must be an object"),
    ({"t": {"a": "sql"}}, "facts of t.a: expected"),
    ({"t": {"a": {"parser": "cobol"}}}, "facts of t.a: unknown parser 'cobol'"),
    ({"t": {"a": {"parser": "sql", "options": {"dialect": "klingon"}}}},
     "facts of t.a: unknown sqlglot dialect 'klingon'"),
    ({"t": {"a": {"parser": "url", "options": {"x": "y"}}}},
     "facts of t.a: unknown option 'x' of the url parser"),
])
def test_spec_from_a_bad_document(document: object, problem: str) -> None:
    with pytest.raises(ValueError, match="^" + problem.replace("(", r"\(")):
        spec_from_document(document)


# -- computing, caching ------------------------------------------------------------------------

def test_facts_of_a_call() -> None:
    facts = Facts(SPEC)
    computed = facts.compute("execute_sql", {"statement": "DROP TABLE x", "database": "main"})
    assert list(computed.document) == ["statement"]
    assert computed.document["statement"]["kinds"] == ["drop"]
    assert computed.text == canonical_json(computed.document)
    assert facts.compute("other_tool", {"statement": "DROP TABLE x"}).document == {}
    two = facts.compute("rotate_secret", {"secret_path": "secrets/root"})
    assert list(two.document) == ["note", "secret_path"]
    assert two.text == canonical_json(two.document)
    assert two.errors() == ["note: args.note is missing"]
    assert two.parsers()[1].startswith("secret_path=veto-opa ")


def test_the_cache_answers_the_same_argument_again() -> None:
    facts = Facts(SPEC)
    first = facts.compute("execute_sql", {"statement": "SELECT 1"})
    again = facts.compute("execute_sql", {"statement": "SELECT 1"})
    assert again.document == first.document and again.text == first.text
    assert (facts.cache.hits, facts.cache.misses, len(facts.cache)) == (1, 1, 1)
    facts.compute("execute_sql", {"statement": "SELECT 2"})
    assert len(facts.cache) == 2


def test_cache_keys_are_keyed_digests_of_declaration_and_argument() -> None:
    secret = "SELECT 'hunter2'"
    a, b = Facts(SPEC, key=b"k" * 32), Facts(SPEC, key=b"k" * 32)
    a.compute("execute_sql", {"statement": secret})
    b.compute("execute_sql", {"statement": secret})
    [key_a] = list(a.cache._entries)
    [key_b] = list(b.cache._entries)
    assert key_a == key_b and len(key_a) == 32 and b"hunter2" not in key_a
    c = Facts(SPEC, key=b"other" * 8)
    c.compute("execute_sql", {"statement": secret})
    assert list(c.cache._entries) != [key_a]
    mysql = Facts({"execute_sql": {"statement": FactSpec("sql", {"dialect": "mysql"})}},
                  key=b"k" * 32)
    mysql.compute("execute_sql", {"statement": secret})
    assert list(mysql.cache._entries) != [key_a]       # another declaration, another key


def test_default_keys_differ_between_instances() -> None:
    a, b = Facts(SPEC), Facts(SPEC)
    a.compute("execute_sql", {"statement": "SELECT 1"})
    b.compute("execute_sql", {"statement": "SELECT 1"})
    assert list(a.cache._entries) != list(b.cache._entries)


def test_cache_is_bounded_by_entries_and_by_characters() -> None:
    cache = FactCache(max_entries=3, max_chars=100)
    for i in range(5):
        cache.put(bytes([i]), {"i": i}, "x" * 10)
    assert list(cache._entries) == [bytes([2]), bytes([3]), bytes([4])]
    cache.get(bytes([2]))                       # now the most recently used
    cache.put(bytes([9]), {}, "y" * 80)            # 4 entries: the least recent goes
    assert list(cache._entries) == [bytes([4]), bytes([2]), bytes([9])]
    assert cache.chars == 100
    cache.put(bytes([8]), {}, "w" * 20)            # 120 characters: until 100 or fewer
    assert list(cache._entries) == [bytes([9]), bytes([8])]
    assert cache.chars == 100
    cache.put(bytes([10]), {}, "z" * 101)       # larger than the whole cache: not kept
    assert bytes([10]) not in cache._entries
    with pytest.raises(ValueError):
        FactCache(max_entries=-1)


def test_errors_are_not_cached_for_non_strings() -> None:
    facts = Facts(SPEC)
    assert "error" in facts.compute("execute_sql", {"statement": ["DROP TABLE t"]}).document[
        "statement"]
    assert len(facts.cache) == 0


def test_threads_share_the_cache() -> None:
    facts = Facts(SPEC, cache=FactCache(max_entries=8))
    results: list[str] = []

    def work(n: int) -> None:
        for i in range(50):
            results.append(facts.compute("execute_sql", {"statement": f"SELECT {i % 10}"}).text)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200
    assert len(facts.cache) <= 8
    assert all(json.loads(r)["statement"]["kinds"] == ["select"] for r in results)


# -- records and spans -----------------------------------------------------------------------

def test_recorded_facts_of_redacted_arguments_are_digests() -> None:
    computed = Facts(SPEC).compute("rotate_secret", {"secret_path": "/secrets/x",
                                                     "note": "https://e.com"})
    assert recorded(computed, [], b"k") == computed.document
    kept = recorded(computed, [parse_redact_path("args.secret_path.inner")], b"k")
    assert kept is not None
    assert kept["note"] == computed.document["note"]
    assert set(kept["secret_path"]) == {"parser", "redacted"}
    assert kept["secret_path"]["redacted"].startswith("hmac-sha256:")
    assert "/secrets/x" not in json.dumps(kept)
    assert recorded(computed, ["args.secret_path"], b"k") == kept     # paths as written
    everything = recorded(computed, [parse_redact_path("args.*")], b"k")
    assert everything is not None and all("redacted" in f for f in everything.values())
    assert recorded(Facts(SPEC).compute("other", {}), [], b"k") is None


def test_span_attributes() -> None:
    computed = Facts(SPEC).compute("rotate_secret", {"secret_path": "/secrets/x"})
    attributes = span_attributes(computed, None)
    assert attributes[FACT_PARSERS][0].startswith("note=urllib.parse")
    assert attributes[FACT_ERRORS] == ["note: args.note is missing"]
    assert FACTS not in attributes                  # values only with capture on
    captured = span_attributes(computed, recorded(computed, [], b"k"))
    assert json.loads(captured[FACTS]) == computed.document
    assert span_attributes(Facts(SPEC).compute("other", {}), None) == {}
