"""Reading YAML with positions: values, key and value positions, YAML-level problems, and
offsets inside every scalar style mapped back to the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from veto_opa.translators.diagnostics import DUPLICATE, LIMIT, YAML_SYNTAX
from veto_opa.translators.source import Document, read_yaml, scalar_positions


SEED = Path(__file__).resolve().parents[2] / "examples" / "policies.yaml"


def read(text: str) -> Document:
    document, diagnostics = read_yaml(text, "f.yaml")
    assert diagnostics == [], [str(d) for d in diagnostics]
    assert document is not None
    return document


def problems(text: str) -> list[str]:
    _, diagnostics = read_yaml(text, "f.yaml")
    return [str(d) for d in diagnostics]


def positions(text: str, path: tuple) -> list[tuple[int, int]]:
    """The position of every offset of the string at ``path``, and of its end."""
    document = read(text)
    node = document.scalars[path]
    where = scalar_positions(text, node)
    return [where(i) for i in range(len(node.value) + 1)]


def char_at(text: str, line: int, col: int) -> str:
    lines = text.split("\n")
    row = lines[line - 1]
    return row[col - 1] if col <= len(row) else "\n"


# -- values and positions --------------------------------------------------------------------

def test_values_and_positions_of_keys_and_values():
    document = read("a: 1\nrules:\n  - name: x\n    tags: [p, q]\n")
    assert document.value == {"a": 1, "rules": [{"name": "x", "tags": ["p", "q"]}]}
    assert document.key_position(("rules",)) == (2, 1)
    assert document.value_position(("rules", 0)) == (3, 5)
    assert document.key_position(("rules", 0, "tags")) == (4, 5)
    assert document.value_position(("rules", 0, "tags", 1)) == (4, 15)
    # absent paths fall back to the nearest ancestor
    assert document.value_position(("rules", 0, "action")) == (3, 5)


@pytest.mark.parametrize("text, value", [
    ("a: 2024-01-01", "2024-01-01"),           # timestamps stay strings, as in JSON
    ("a: 0x10", 16),
    ("a: 1_000", 1000),
    ("a: .inf", float("inf")),
    ("a: ~", None),
    ("a: yes", True),
    ("a: !!str 5", "5"),
    ("a: '5'", "5"),
])
def test_scalars_follow_yaml_core_types(text, value):
    assert read(text).value["a"] == value


def test_merge_keys_bring_members_and_explicit_keys_win():
    document = read("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n")
    assert document.value["m"] == {"y": 3, "x": 1}
    assert document.key_position(("m", "x")) == (1, 11)


def test_bom_is_not_a_column():
    document, diagnostics = read_yaml("\ufeffa: 1\n", "f")
    assert document is not None and document.value_position(("a",)) == (1, 4)


# -- problems PyYAML would let through ------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("a: 1\nb: 2\na: 3\n", ["f.yaml:3:1: duplicate key 'a': already defined at line 1"]),
    ("x:\n  k: 1\n  k: 2\n", ["f.yaml:3:3: duplicate key 'k': already defined at line 2"]),
    ("1: x\n", ["f.yaml:1:1: mapping keys must be strings, found number 1; quote it"]),
    ("true: x\n", ["f.yaml:1:1: mapping keys must be strings, found boolean true; quote it"]),
    ("? [a]\n: 1\n", ["f.yaml:1:3: mapping keys must be strings, found a list"]),
    ("a: &x [1, *x]\n", ["f.yaml:1:4: recursive alias: this value contains itself"]),
    ('a: "ok \\ud800"\n', ["f.yaml:1:8: string holds a lone surrogate U+D800, which cannot "
                           "be encoded as UTF-8"]),
    ("a: !foo 1\n", ["f.yaml:1:4: unsupported YAML tag '!foo': policy files hold plain "
                     "JSON-like values (strings, numbers, booleans, null, lists, mappings)"]),
    ("a: !!binary aGk=\n", ["f.yaml:1:4: unsupported YAML tag '!!binary': policy files hold "
                            "plain JSON-like values (strings, numbers, booleans, null, lists, "
                            "mappings)"]),
    ("m:\n  <<: 5\n", ["f.yaml:2:7: a merge key (<<) needs a mapping or a list of mappings, "
                       "found number 5"]),
])
def test_yaml_level_problems(text, expected):
    assert problems(text) == expected


def test_duplicate_keys_have_their_own_code():
    _, diagnostics = read_yaml("a: 1\na: 2\n", "f")
    assert [d.code for d in diagnostics] == [DUPLICATE]


@pytest.mark.parametrize("text, expected", [
    ("rules:\n\t- name: x\n", "f.yaml:2:1: found character '\\t' that cannot start any token"),
    ('a: "open\nb: 1\n', "f.yaml:3:1: found unexpected end of stream (while scanning a quoted "
                         "scalar at line 1, column 4)"),
    ("a: b: c\n", "f.yaml:1:5: mapping values are not allowed here"),
    ("a: 1\n---\nb: 2\n", "f.yaml:2:1: expected a single document in the stream, but found "
                          "another document"),
    ("a: *nope\n", "f.yaml:1:4: found undefined alias 'nope'"),
    ("a: &x 1\nb: &x 2\n", "f.yaml:2:4: found duplicate anchor 'x': first defined at line 1, "
                           "column 4"),
    ('a: "\x07"\n', "f.yaml:1:5: unacceptable character #x0007: special characters are not "
                    "allowed"),
])
def test_syntax_errors_are_one_diagnostic_at_the_problem(text, expected):
    document, diagnostics = read_yaml(text, "f.yaml")
    assert document is None
    assert [str(d) for d in diagnostics] == [expected]
    assert diagnostics[0].code == YAML_SYNTAX


@pytest.mark.parametrize("depth", [70, 500, 5000])
def test_deep_nesting_is_a_limit_not_a_crash(depth):
    _, diagnostics = read_yaml("a: " + "[" * depth + "]" * depth, "f")
    assert [d.code for d in diagnostics] == [LIMIT]
    assert "nests too deeply" in diagnostics[0].message


def test_alias_bombs_are_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    _, diagnostics = read_yaml("\n".join(lines) + "\n", "f")
    assert [d.code for d in diagnostics] == [LIMIT]


def test_empty_document_has_no_value():
    document, diagnostics = read_yaml("# only a comment\n", "f")
    assert document is not None and document.value is None and diagnostics == []


# -- offsets inside scalars --------------------------------------------------------------------

def test_plain_scalar():
    assert positions("when: ab  c\n", ("when",)) == [(1, 7), (1, 8), (1, 9), (1, 10), (1, 11),
                                                      (1, 12)]


def test_plain_multi_line_scalar_folds_breaks():
    text = "when: a b\n  c\n\n  d\n"
    # value 'a b c\nd': the folded space is the first break, the '\n' the empty line
    assert positions(text, ("when",)) == [(1, 7), (1, 8), (1, 9), (1, 10), (2, 3), (3, 1),
                                          (4, 3), (4, 4)]


def test_single_quoted_scalar_with_doubled_quote():
    text = "when: 'it''s x'\n"
    assert read(text).value["when"] == "it's x"
    assert positions(text, ("when",)) == [(1, 8), (1, 9), (1, 10), (1, 12), (1, 13), (1, 14),
                                          (1, 15)]


def test_double_quoted_scalar_with_escapes():
    text = 'when: "a\\n\\t\\"\\\\\\u00e9\\x41 b"\n'
    document = read(text)
    assert document.value["when"] == 'a\n\t"\\éA b'
    # each escaped character maps to its backslash; the end is past the last character
    assert positions(text, ("when",)) == [(1, 8), (1, 9), (1, 11), (1, 13), (1, 15), (1, 17),
                                          (1, 23), (1, 27), (1, 28), (1, 29)]


def test_double_quoted_escaped_line_break_joins_lines():
    text = 'when: "ab\\\n    cd\n\n  e"\n'
    assert read(text).value["when"] == "abcd\ne"
    assert positions(text, ("when",)) == [(1, 8), (1, 9), (2, 5), (2, 6), (3, 1), (4, 3),
                                          (4, 4)]


def test_literal_block():
    text = "rules:\n  - when: |\n      x ==\n\n        1\n    action: deny\n"
    where = positions(text, ("rules", 0, "when"))
    # 'x ==\n\n  1\n': the end maps past '1', not to the next key
    assert where == [(3, 7), (3, 8), (3, 9), (3, 10), (3, 11), (4, 1), (5, 7), (5, 8), (5, 9),
                     (5, 10), (5, 10)]


@pytest.mark.parametrize("header, value", [
    ("|", "a\n b\n"), ("|-", "a\n b"), ("|+", "a\n b\n\n"), ("|2", "  a\n   b\n"),
    ("|2-", "  a\n   b"), ("|-2", "  a\n   b"), ("|  # comment", "a\n b\n"),
])
def test_block_headers(header, value):
    text = f"k:\n  when: {header}\n      a\n       b\n\n  next: 1\n"
    document = read(text)
    assert document.value["k"]["when"] == value
    node = document.scalars[("k", "when")]
    where = scalar_positions(text, node)
    for i, c in enumerate(value):
        line, col = where(i)
        assert char_at(text, line, col) == c, (i, c, line, col)


def test_folded_block():
    text = "when: >\n  one\n  two\n\n  three\n    more\n"
    document = read(text)
    assert document.value["when"] == "one two\nthree\n  more\n"
    where = scalar_positions(text, document.scalars[("when",)])
    assert [where(i) for i in range(9)] == [(2, 3), (2, 4), (2, 5), (2, 6), (3, 3), (3, 4),
                                            (3, 5), (4, 1), (5, 3)]


def test_empty_value_maps_to_the_scalar():
    assert positions('a: ""\n', ("a",)) == [(1, 4)]


def test_crlf_line_breaks():
    text = "when: |\r\n  ab\r\n  c\r\nx: 1\r\n"
    assert positions(text, ("when",)) == [(2, 3), (2, 4), (2, 5), (3, 3), (3, 4), (3, 4)]


# -- property: every offset points at the character that produced it ---------------------------

TOKENS = ["args", "context", ".", "environment", "x_1", "==", "!=", "&&", "||", "!", "(", ")",
          "[", "]", ",", "<", ">=", "+", "42", "3.5", "'s'", '"d"', "é", "😀", "\\", "%",
          "upper()", "in", "`"]
# Plain scalars cannot hold ': ' or ' #' or start with an indicator: no ':' or '#' tokens,
# and every line starts with a name.
PLAIN_TOKENS = [t for t in TOKENS if t != "`"]
spaced = st.lists(st.tuples(st.sampled_from(["", " ", "  "]), st.sampled_from(PLAIN_TOKENS)),
                  max_size=8).map(lambda parts: "args" + "".join(s + t for s, t in parts))
lines_st = st.lists(spaced, min_size=1, max_size=5)


def check_positions(text: str, path: tuple, *, escapes: bool = False) -> None:
    """Every value character maps to a source character equal to it (or to the backslash of
    its escape, or to the end of a line for a line break or folded space), strictly in order;
    the end maps just past the last character that is not a line break."""
    document = read(text)
    node = document.scalars[path]
    value = node.value
    where = scalar_positions(text, node)
    previous = (0, 0)
    for i, c in enumerate(value):
        line, col = where(i)
        assert (line, col) > previous, (i, c)
        previous = (line, col)
        source = char_at(text, line, col)
        if source == c:
            continue
        if escapes and source == "\\":
            continue
        assert c in " \n" and source == "\n", (i, c, line, col, source)
    stripped = value.rstrip("\n")
    if stripped:
        line, col = where(len(value))
        last = where(len(stripped) - 1)
        assert line == last[0] and col > last[1]


def render_double(value: str, escape_every: int) -> str:
    """The inside of a double-quoted scalar for ``value``, escaping every n-th character."""
    out = []
    for k, c in enumerate(value):
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif escape_every and k % escape_every == 0:
            out.append(f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
        else:
            out.append(c)
    return "".join(out)


@settings(max_examples=150, deadline=None)
@given(value=spaced)
def test_property_plain_single_line(value):
    text = f"rules:\n  - name: r\n    when: {value}\n    action: deny\n"
    assert read(text).value["rules"][0]["when"] == value
    check_positions(text, ("rules", 0, "when"))


@settings(max_examples=150, deadline=None)
@given(lines=lines_st, gaps=st.lists(st.booleans(), min_size=5, max_size=5))
def test_property_plain_multi_line(lines, gaps):
    body = lines[0]
    expected = lines[0]
    for line, gap in zip(lines[1:], gaps):
        body += ("\n" if gap else "") + "\n      " + line
        expected += ("\n" if gap else " ") + line
    text = f"rules:\n  - name: r\n    when: {body}\n    action: deny\n"
    assert read(text).value["rules"][0]["when"] == expected
    check_positions(text, ("rules", 0, "when"))


@settings(max_examples=150, deadline=None)
@given(lines=lines_st)
def test_property_single_quoted(lines):
    body = "\n      ".join(line.replace("'", "''") for line in lines)
    text = f"rules:\n  - name: r\n    when: '{body}'\n    action: deny\n"
    assert read(text).value["rules"][0]["when"] == " ".join(lines)
    check_positions(text, ("rules", 0, "when"))


@settings(max_examples=200, deadline=None)
@given(lines=lines_st, escape_every=st.integers(0, 4),
       joins=st.lists(st.sampled_from(["fold", "escaped", "n", "empty"]), min_size=5,
                      max_size=5))
@example(lines=["args.x == 'a'", "args"], escape_every=0, joins=["escaped"] * 5)
def test_property_double_quoted(lines, escape_every, joins):
    body, expected = render_double(lines[0], escape_every), lines[0]
    for line, join in zip(lines[1:], joins):
        rendered = render_double(line, escape_every)
        if join == "fold":
            body, expected = body + "\n        " + rendered, expected + " " + line
        elif join == "escaped":
            body, expected = body + "\\\n        " + rendered, expected + line
        elif join == "n":
            body, expected = body + "\\n" + rendered, expected + "\n" + line
        else:
            body, expected = body + "\n\n        " + rendered, expected + "\n" + line
    text = f'rules:\n  - name: r\n    when: "{body}"\n    action: deny\n'
    assert read(text).value["rules"][0]["when"] == expected
    check_positions(text, ("rules", 0, "when"), escapes=True)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.one_of(spaced, st.just(""), spaced.map(lambda s: "  " + s)),
                      min_size=1, max_size=6),
       chomp=st.sampled_from(["", "-", "+"]), indicator=st.booleans(),
       trailing=st.integers(0, 2))
def test_property_literal_block(lines, chomp, indicator, trailing):
    header = "|" + ("2" if indicator else "") + chomp
    if not indicator and not lines[0].startswith("a"):
        lines = ["args", *lines]   # the first line sets the indentation
    body = "".join(("        " + line if line else "") + "\n" for line in lines)
    text = (f"rules:\n  - name: r\n    when: {header}\n{body}" + "\n" * trailing
            + "    action: deny\n")
    document = read(text)
    content = "\n".join(lines)
    if indicator:
        content = "\n".join("  " + line if line else "" for line in lines)
    value = document.value["rules"][0]["when"]
    assert value.rstrip("\n") == content.rstrip("\n")
    check_positions(text, ("rules", 0, "when"))


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.one_of(spaced, st.just(""), spaced.map(lambda s: "  " + s)),
                      min_size=1, max_size=6),
       chomp=st.sampled_from(["", "-", "+"]))
def test_property_folded_block(lines, chomp):
    if lines[0].startswith(" ") or lines[0] == "":
        lines = ["args", *lines]
    body = "".join(("      " + line if line else "") + "\n" for line in lines)
    text = f"when: >{chomp}\n{body}other: 1\n"
    check_positions(text, ("when",))


flow_plain = st.lists(st.tuples(st.sampled_from(["", " "]),
                               st.sampled_from([t for t in PLAIN_TOKENS if t not in "[],"])),
                     max_size=8).map(lambda parts: "args" + "".join(s + t for s, t in parts))


@settings(max_examples=100, deadline=None)
@given(value=flow_plain, quoted=st.booleans())
def test_property_flow_context(value, quoted):
    rendered = "'" + value.replace("'", "''") + "'" if quoted else value
    text = f"rules: [{{name: r, when: {rendered}, action: deny}}]\n"
    assert read(text).value["rules"][0]["when"] == value
    check_positions(text, ("rules", 0, "when"))


def test_positions_match_pyyaml_marks_for_every_scalar_of_the_seed():
    """The start of every scalar maps to its start mark; the end to its end mark when the
    scalar is plain (the end mark of a plain scalar is right after its last character)."""
    text = SEED.read_text(encoding="utf-8")
    for node in _scalars(yaml.compose(text, Loader=yaml.SafeLoader)):
        where = scalar_positions(text, node)
        if node.style is None:
            assert where(0) == (node.start_mark.line + 1, node.start_mark.column + 1)
            assert where(len(node.value)) == (node.end_mark.line + 1, node.end_mark.column + 1)


def _scalars(node):
    if isinstance(node, yaml.ScalarNode):
        yield node
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _scalars(item)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _scalars(key)
            yield from _scalars(value)
