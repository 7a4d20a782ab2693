"""Reading Veto YAML with positions: plain Python values plus where each one came from.

PyYAML's composer gives a tree of nodes with start marks; :func:`read_yaml` turns it into
dicts, lists and scalars itself, so that it can

- remember the ``(line, col)`` (1-based) of every mapping key and every value, by path
  (a tuple of keys and list indexes), for messages about schema violations;
- reject what PyYAML would silently accept: duplicate mapping keys (PyYAML keeps the last),
  keys that are not strings (JSON objects have string keys), tags other than the core ones,
  recursive aliases, and strings holding lone surrogates (``"\\ud800"`` has no UTF-8 form).

Timestamps (``2024-01-01``) stay strings, as they would in JSON. Merge keys (``<<: *base``)
are supported; keys written in the mapping win over merged ones, as in PyYAML.

:func:`scalar_positions` maps a character offset in a scalar's *value* back to the file, for
every scalar style: plain, quoted (with escapes and folded line breaks) and block (``|``,
``>``, with indentation and chomping indicators). That is what makes an error inside a
multi-line ``when:`` point at the right line and column.

Usage::

    document, diagnostics = read_yaml(text, "policies.yaml")
    line, col = document.value_position(("rules", 0, "when"))
    where = scalar_positions(text, document.scalars[("rules", 0, "when")])
    line, col = where(17)   # the 18th character of the condition
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from veto_opa.translators.diagnostics import DUPLICATE, LIMIT, YAML_SYNTAX, Diagnostic

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

Path = tuple[str | int, ...]
Position = tuple[int, int]

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists accepted in a policy file."""

_TAG = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _INT, _FLOAT, _TIMESTAMP, _MAP, _SEQ, _MERGE = (
    _TAG + name for name in
    ("str", "null", "bool", "int", "float", "timestamp", "map", "seq", "merge")
)
_BREAKS = "\r\n\x85\u2028\u2029"
_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_constructor = SafeConstructor()


@dataclass
class Document:
    """A YAML document as plain values, with the position of everything in it."""

    text: str
    value: Any
    keys: dict[Path, Position] = field(default_factory=dict)
    values: dict[Path, Position] = field(default_factory=dict)
    scalars: dict[Path, ScalarNode] = field(default_factory=dict)

    def value_position(self, path: Path) -> Position:
        """Where the value at ``path`` starts (or its nearest ancestor, if it is absent)."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, (1, 1))

    def key_position(self, path: Path) -> Position:
        """Where the key of the member at ``path`` is written (list items: the item)."""
        if path in self.keys:
            return self.keys[path]
        return self.value_position(path)

    def offset_position(self, path: Path, offset: int) -> Position:
        """Where the ``offset``-th character of the string at ``path`` came from."""
        node = self.scalars.get(path)
        if node is None:
            return self.value_position(path)
        return scalar_positions(self.text, node)(offset)


def read_yaml(text: str, file: str) -> tuple[Document | None, list[Diagnostic]]:
    """Compose ``text`` (one YAML document) into a :class:`Document`.

    Returns:
        The document (None when the text is not readable YAML or is empty: an empty
        document's value would be None and the caller reports that), and the problems found.
    """
    if text.startswith("\ufeff"):
        text = text[1:]                 # a byte order mark is not content
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as e:
        return None, [_marked_error(e, file)]
    except yaml.reader.ReaderError as e:
        line, col = _index_position(text, e.position)
        code = e.character if isinstance(e.character, int) else ord(e.character)
        message = f"unacceptable character #x{code:04x}: {e.reason}"
        return None, [Diagnostic(file, line, col, YAML_SYNTAX, message)]
    except RecursionError:
        return None, [Diagnostic(file, 1, 1, LIMIT,
                                 f"the YAML nests too deeply (more than {MAX_DEPTH} levels)")]
    if node is None:
        return Document(text, None), []
    converter = _Converter(text, file)
    try:
        value = converter.convert(node, (), 0)
    except _Abort as e:
        return None, [e.diagnostic]
    document = Document(text, value, converter.keys, converter.values, converter.scalars)
    return document, converter.diagnostics


def _compose(text: str) -> Node | None:
    # libyaml composes faster than PyYAML's pure-Python reader (bench_compiler.py measures
    # by how much), and its marks count characters as PyYAML's do. When it rejects a document, the pure-Python reader runs again so that
    # the message and position are PyYAML's own. (libyaml accepts a few documents PyYAML
    # rejects, tabs inside plain scalars; PyYAML's wheels include libyaml on every
    # platform veto-opa supports, so the answer does not depend on the install there.)
    loader = getattr(yaml, "CSafeLoader", None)
    if loader is not None:
        try:
            return yaml.compose(text, Loader=loader)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _marked_error(e: yaml.MarkedYAMLError, file: str) -> Diagnostic:
    mark = e.problem_mark or e.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    message = e.problem or e.context or "invalid YAML"
    if e.context and e.problem:
        at = e.context_mark
        where = f"line {at.line + 1}, column {at.column + 1}" if at else ""
        first = "; first occurrence"
        if e.context.startswith("while"):
            message = f"{e.problem} ({e.context} at {where})" if at else e.problem
        elif e.context.endswith(first) and at:     # a duplicate anchor
            message = f"{e.context[:-len(first)]}: first defined at {where}"
        else:
            message = f"{e.context}, {e.problem}"
    return Diagnostic(file, line, col, YAML_SYNTAX, message)


def _index_position(text: str, index: int) -> Position:
    breaks = list(_BREAK.finditer(text, 0, index))
    start = breaks[-1].end() if breaks else 0
    return len(breaks) + 1, index - start + 1


def _mark(node: Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _describe_node(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "null"
    if node.tag == _BOOL:
        return f"boolean {node.value}"
    if node.tag in (_INT, _FLOAT):
        return f"number {node.value}"
    return repr(node.value)


class _Abort(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


class _Converter:
    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.diagnostics: list[Diagnostic] = []
        self.keys: dict[Path, Position] = {}
        self.values: dict[Path, Position] = {}
        self.scalars: dict[Path, ScalarNode] = {}
        self.active: set[int] = set()       # collections being converted: alias cycles
        # Every node takes at least one character, so only aliases can exceed this.
        self.budget = len(text) + 100_000

    def problem(self, at: Position, code: str, message: str) -> None:
        self.diagnostics.append(Diagnostic(self.file, at[0], at[1], code, message))

    def convert(self, node: Node, path: Path, depth: int) -> Any:
        self.budget -= 1
        if self.budget < 0:
            line, col = _mark(node)
            raise _Abort(Diagnostic(self.file, line, col, LIMIT,
                                    "the document expands to too many values through aliases"))
        self.values[path] = _mark(node)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if depth >= MAX_DEPTH:
            line, col = _mark(node)
            raise _Abort(Diagnostic(self.file, line, col, LIMIT,
                                    f"the YAML nests too deeply (more than {MAX_DEPTH} levels)"))
        if id(node) in self.active:
            self.problem(_mark(node), YAML_SYNTAX, "recursive alias: this value contains itself")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return self.sequence(node, path, depth)
            assert isinstance(node, MappingNode)
            return self.mapping(node, path, depth)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: ScalarNode, path: Path) -> Any:
        self.scalars[path] = node
        tag = node.tag
        if tag == _STR:
            self.check_string(node)
            return node.value
        if tag == _TIMESTAMP:
            return node.value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return _constructor.construct_yaml_bool(node)
        if tag == _INT:
            return _constructor.construct_yaml_int(node)
        if tag == _FLOAT:
            return _constructor.construct_yaml_float(node)
        self.unsupported_tag(node)
        return None

    def check_string(self, node: ScalarNode) -> None:
        bad = _SURROGATE.search(node.value)
        if bad:
            at = scalar_positions(self.text, node)(bad.start())
            self.problem(at, YAML_SYNTAX,
                         f"string holds a lone surrogate U+{ord(bad.group()):04X}, which "
                         "cannot be encoded as UTF-8")

    def unsupported_tag(self, node: Node) -> None:
        tag = node.tag.replace(_TAG, "!!")
        self.problem(_mark(node), YAML_SYNTAX,
                     f"unsupported YAML tag {tag!r}: policy files hold plain JSON-like "
                     "values (strings, numbers, booleans, null, lists, mappings)")

    def sequence(self, node: SequenceNode, path: Path, depth: int) -> list[Any] | None:
        if node.tag != _SEQ:
            self.unsupported_tag(node)
            return None
        items = []
        for i, item in enumerate(node.value):
            self.keys[(*path, i)] = _mark(item)
            items.append(self.convert(item, (*path, i), depth + 1))
        return items

    def mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, Any] | None:
        if node.tag != _MAP:
            self.unsupported_tag(node)
            return None
        result: dict[str, Any] = {}
        seen: dict[str, int] = {}
        merged: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.extend(self.merge_pairs(value_node, depth))
                continue
            key = self.key(key_node)
            if key is None:
                continue
            if key in seen:
                self.problem(_mark(key_node), DUPLICATE,
                             f"duplicate key {key!r}: already defined at line {seen[key]}")
                continue
            seen[key] = key_node.start_mark.line + 1
            self.keys[(*path, key)] = _mark(key_node)
            result[key] = self.convert(value_node, (*path, key), depth + 1)
        for key_node, value_node in merged:
            key = self.key(key_node)
            if key is not None and key not in result:
                self.keys[(*path, key)] = _mark(key_node)
                result[key] = self.convert(value_node, (*path, key), depth + 1)
        return result

    def merge_pairs(self, node: Node, depth: int) -> Iterator[tuple[Node, Node]]:
        """The members a merge key (``<<``) brings in, earlier sources first."""
        if depth >= MAX_DEPTH:
            return
        sources = node.value if isinstance(node, SequenceNode) else [node]
        for source in sources:
            if not isinstance(source, MappingNode):
                self.problem(_mark(source), YAML_SYNTAX,
                             "a merge key (<<) needs a mapping or a list of mappings, found "
                             f"{_describe_node(source)}")
                continue
            for key_node, value_node in source.value:
                if key_node.tag == _MERGE:
                    yield from self.merge_pairs(value_node, depth + 1)
                else:
                    yield key_node, value_node

    def key(self, node: Node) -> str | None:
        if isinstance(node, ScalarNode) and node.tag in (_STR, _TIMESTAMP):
            if node.tag == _STR:
                self.check_string(node)
            value: str = node.value
            return value
        hint = "; quote it" if isinstance(node, ScalarNode) else ""
        self.problem(_mark(node), YAML_SYNTAX,
                     f"mapping keys must be strings, found {_describe_node(node)}{hint}")
        return None


# -- positions inside scalars -------------------------------------------------------------
#
# Each scanner below re-reads one scalar style the way PyYAML's scanner does (see
# yaml/scanner.py: scan_plain, scan_flow_scalar, scan_block_scalar) and returns, for every
# character of the value, the span of source text that produced it: the character itself,
# the whole escape sequence, or the line break that folded into a space. The result is
# checked against the value PyYAML produced; on any disagreement positions fall back to
# the start of the scalar rather than pointing somewhere wrong.

Spans = list[tuple[int, int]]


def scalar_positions(source_text: str, node: ScalarNode) -> Callable[[int], Position]:
    """A function from a character offset in ``node``'s value to its ``(line, col)``.

    Offsets at or past the end of the value map just past the last character that is not a
    line break (so "expression ends too early" points after the last word of a ``|`` block,
    not at the start of the next key). Columns count characters, lines are 1-based.
    """
    mark = node.start_mark
    start = (mark.line + 1, mark.column + 1)
    spans = _spans(source_text, node)
    if not spans:
        return lambda offset: start
    value = node.value
    last = len(value) - 1
    while last >= 0 and value[last] in _BREAKS:
        last -= 1
    end_index = spans[last][1] if last >= 0 else mark.index
    stop = max(spans[-1][1], end_index)
    line_starts = [mark.index - mark.column]
    line_starts += [m.end() for m in _BREAK.finditer(source_text, mark.index, stop)]

    def locate(index: int) -> Position:
        k = bisect.bisect_right(line_starts, index) - 1
        return mark.line + 1 + k, index - line_starts[k] + 1

    def position(offset: int) -> Position:
        if offset >= len(spans):
            return locate(end_index)
        return locate(spans[max(offset, 0)][0])

    return position


def _spans(text: str, node: ScalarNode) -> Spans | None:
    start = node.start_mark.index
    style = node.style
    candidates: Iterable[tuple[str, Spans]]
    if style in ("|", ">"):
        candidates = _block_candidates(text, start, node.start_mark.column)
    elif style in ("'", '"'):
        candidates = [_scan_quoted(text, start, double=style == '"')]
    else:
        candidates = [_scan_plain(text, start, node.end_mark.index)]
    for value, spans in candidates:
        if value == node.value:
            return spans
    return None


class _Out:
    """The value being rebuilt and the source span of each of its characters."""

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.spans: Spans = []

    def add(self, chars: str, start: int, end: int) -> None:
        for c in chars:
            self.chars.append(c)
            self.spans.append((start, end))

    def result(self) -> tuple[str, Spans]:
        return "".join(self.chars), self.spans


def _peek(text: str, i: int) -> str:
    return text[i] if i < len(text) else "\0"


def _line_break(text: str, i: int) -> tuple[str, int]:
    """The value of the line break at ``i`` (``\\r\\n`` and ``\\x85`` read as ``\\n``) and
    the index after it."""
    c = text[i]
    if c == "\r" and _peek(text, i + 1) == "\n":
        return "\n", i + 2
    return ("\n" if c in "\r\n\x85" else c), i + 1


def _fold(text: str, i: int, out: _Out, skip: str) -> int:
    """Fold the line break at ``i`` and the empty lines after it (``skip`` is the leading
    white space to drop on each line); return the index after them."""
    first, j = _line_break(text, i)
    breaks: list[tuple[str, int, int]] = []
    while True:
        while _peek(text, j) in skip:
            j += 1
        if _peek(text, j) in _BREAKS:
            b, after = _line_break(text, j)
            breaks.append((b, j, after))
            j = after
        else:
            break
    if first != "\n":
        out.add(first, i, i + 1)
    elif not breaks:
        out.add(" ", i, i + 1)
    for b, s, e in breaks:
        out.add(b, s, e)
    return j


def _scan_plain(text: str, start: int, end: int) -> tuple[str, Spans]:
    # Inside a plain scalar there are no tabs or comments (they would end it); runs of
    # spaces are kept, unless a line break follows them.
    out = _Out()
    i = start
    while i < end:
        c = text[i]
        if c == " " or c in _BREAKS:
            j = i
            while text[j] == " ":
                j += 1
            if text[j] in _BREAKS:
                i = _fold(text, j, out, " ")
            else:
                for k in range(i, j):
                    out.add(" ", k, k + 1)
                i = j
        else:
            out.add(c, i, i + 1)
            i += 1
    return out.result()


_ESCAPES = {
    "0": "\0", "a": "\x07", "b": "\x08", "t": "\t", "\t": "\t", "n": "\n", "v": "\x0b",
    "f": "\x0c", "r": "\r", "e": "\x1b", " ": " ", '"': '"', "\\": "\\", "/": "/",
    "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


def _scan_quoted(text: str, start: int, *, double: bool) -> tuple[str, Spans]:
    quote = text[start]
    out = _Out()
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == quote and not (not double and _peek(text, i + 1) == "'"):
            break
        if c in " \t" or c in _BREAKS:
            j = i
            while _peek(text, j) in " \t":
                j += 1
            if _peek(text, j) in _BREAKS:
                i = _fold(text, j, out, " \t")
            else:
                for k in range(i, j):
                    out.add(text[k], k, k + 1)
                i = j
        elif c == "'" and not double:           # '' is one quote
            out.add("'", i, i + 2)
            i += 2
        elif c == "\\" and double:
            i = _escape(text, i, out)
        else:
            out.add(c, i, i + 1)
            i += 1
    return out.result()


def _escape(text: str, i: int, out: _Out) -> int:
    e = _peek(text, i + 1)
    if e in _ESCAPES:
        out.add(_ESCAPES[e], i, i + 2)
        return i + 2
    if e in _HEX_ESCAPES:
        n = _HEX_ESCAPES[e]
        digits = text[i + 2:i + 2 + n]
        out.add(chr(int(digits, 16)), i, i + 2 + n)
        return i + 2 + n
    if e in _BREAKS:                            # an escaped line break joins the lines
        _, j = _line_break(text, i + 1)
        while True:
            while _peek(text, j) in " \t":
                j += 1
            if _peek(text, j) not in _BREAKS:
                return j
            b, after = _line_break(text, j)
            out.add(b, j, after)
            j = after
    raise ValueError(f"unknown escape {e!r}")    # PyYAML would not have read it


def _block_candidates(text: str, start: int, column: int) -> Iterator[tuple[str, Spans]]:
    """The block scalar at ``start`` read with each possible parent indentation.

    PyYAML reads content at ``parent indent + 1`` (at least 1) plus the explicit indentation
    indicator, or at the detected indentation; the parent's indentation is not in the node,
    but it is less than the indicator's column and only the right one reproduces the value.
    """
    for min_indent in range(1, column + 2):
        yield _scan_block(text, start, min_indent)


def _scan_block(text: str, start: int, min_indent: int) -> tuple[str, Spans]:
    folded = text[start] == ">"
    i = start + 1
    chomping: bool | None = None                 # None: clip, False: strip, True: keep
    increment: int | None = None
    for _ in range(2):
        c = _peek(text, i)
        if c in "+-" and chomping is None:
            chomping = c == "+"
            i += 1
        elif c in "123456789" and increment is None:
            increment = int(c)
            i += 1
    while _peek(text, i) not in "\0" + _BREAKS:  # the rest of the header line: a comment
        i += 1
    if _peek(text, i) != "\0":
        _, i = _line_break(text, i)

    out = _Out()
    col = 0
    max_indent = 0
    breaks: list[tuple[str, int, int]] = []

    def skip_indentation(limit: int | None) -> None:
        # Spaces up to ``limit`` (any number when None) and the empty lines among them.
        nonlocal i, col, max_indent
        while True:
            while _peek(text, i) == " " and (limit is None or col < limit):
                i += 1
                col += 1
                max_indent = max(max_indent, col)
            if _peek(text, i) not in _BREAKS:
                return
            b, after = _line_break(text, i)
            breaks.append((b, i, after))
            i, col = after, 0

    if increment is None:
        skip_indentation(None)
        indent = max(min_indent, max_indent)
    else:
        indent = min_indent + increment - 1
        skip_indentation(indent)

    line_break: tuple[str, int, int] | None = None
    while col == indent and _peek(text, i) != "\0":
        for pending in breaks:
            out.add(*pending)
        breaks = []
        leading_non_space = _peek(text, i) not in " \t"
        while _peek(text, i) not in "\0" + _BREAKS:
            out.add(text[i], i, i + 1)
            i += 1
        line_break = None
        if _peek(text, i) != "\0":
            b, after = _line_break(text, i)
            line_break = (b, i, after)
            i, col = after, 0
        skip_indentation(indent)
        if not (col == indent and _peek(text, i) != "\0"):
            break
        if folded and line_break and line_break[0] == "\n" and leading_non_space \
                and _peek(text, i) not in " \t":
            if not breaks:
                out.add(" ", line_break[1], line_break[2])
        elif line_break:
            out.add(*line_break)
    if chomping is not False and line_break:
        out.add(*line_break)
    if chomping is True:
        for pending in breaks:
            out.add(*pending)
    return out.result()
