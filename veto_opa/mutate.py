"""Mutation testing of policies: do the rules hold when the arguments are rewritten?

    report = mutate(["examples/hardened.yaml"])
    print(report.format())          # every variant that weakened a decision
    raise SystemExit(report.exit_code())

For every example of a policy's ``tests:`` that expects ``deny`` or ``require_approval``, the
arguments that trigger it are rewritten into *variants* that mean the same to the tool, and
each variant is decided by the real OPA engine, facts computed as ``Veto.guard()`` computes
them. A variant whose decision is weaker than the original's (deny -> require_approval or
allow, require_approval -> allow) is a *weakening*: the policy can be evaded that way.

What is rewritten depends on what an argument is: its declared fact parser (``facts:``), else
a guess from its text (``SELECT ...`` is SQL, ``https://...`` a URL, ``/a/b`` a path,
``kind: ...`` a manifest). Each variant keeps the meaning, and is checked to keep it with the
same parser the facts use (a variant it cannot verify is dropped):

- SQL (PostgreSQL's lexical rules): keyword case; other whitespace between tokens (tab,
  newline, form feed, and vertical tab, which PostgreSQL reads as whitespace since 16; U+00A0
  and other Unicode spaces are not whitespace to it); comments instead of whitespace
  (``DROP/**/TABLE``, ``-- x`` + newline); whitespace or a comment before the statement;
  ``SELECT 1;`` stacked before or after; a data-modifying statement wrapped in a CTE, or a CTE
  before it; ``EXPLAIN ANALYZE`` before it (which runs it). Verified: the same statements and kinds (the
  wrappers may add ``select`` and ``explain``) and the same tables written.
- paths: a ``.`` segment, a repeated slash, a detour through ``<next>/..``, two leading
  slashes, the path relative to the declared root. Verified: the same normalised path.
- URLs: upper-case scheme and host, the default port written out, percent-encoded path
  characters, dot segments, tabs and newlines inside and C0 controls before (stripped by
  WHATWG parsers and Python's ``urlsplit``), a trailing dot on the host, the other IDNA form.
  Verified: the same scheme, host, port and path.
- Kubernetes manifests: the same objects as JSON, in flow style, after a comment and a
  document marker. Verified: the same kinds, objects and security facts.
- any string: wrapped in a one-element list (a tool that takes one value or a list).

Decisions come from the guard's embedded OPA engine on the compiled bundle; nothing is
recorded.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from veto_opa.facts import FactSpec, Facts, compute, merge, spec_from_data

if TYPE_CHECKING:
    from veto_opa.decision import Verdict
    from veto_opa.translators.policy import Example

Variation = tuple[str, Any]
"""A technique's name and the rewritten value."""

_RANK = {"allow": 0, "require_approval": 1, "deny": 2}


@dataclass(frozen=True)
class Variant:
    """One rewrite of a call's arguments.

    Attributes:
        technique: what was done (``"sql: comments instead of whitespace"``).
        argument: the argument rewritten.
        arguments: all the arguments, with that one rewritten.
    """

    technique: str
    argument: str
    arguments: dict[str, Any]


# -- what an argument is -----------------------------------------------------------------------

_URL = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://")
_PATH = re.compile(r"^[^\s/]*(/[^\s/]*)+$")
_SQL_START = re.compile(
    r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(select|insert|update|delete|drop|create|alter|"
    r"truncate|with|merge|grant|revoke|explain|copy|vacuum|do|call|comment|values)\b",
    re.IGNORECASE | re.DOTALL)
_MANIFEST = re.compile(r"^\s*(apiVersion|kind)\s*:", re.MULTILINE)


def guess_kind(value: str) -> str | None:
    """The parser an undeclared string argument looks made for (``sql``, ``url``,
    ``path``, ``kubernetes``), or None."""
    if _URL.match(value):
        return "url"
    if _SQL_START.match(value):
        return "sql"
    if _MANIFEST.search(value):
        return "kubernetes"
    if _PATH.match(value) and len(value) < 4096:
        return "path"
    return None


# -- SQL ---------------------------------------------------------------------------------------

_SQL_SPACES = ("  ", "\t", "\n", "\r\n", "\f", "\v", " \t\n ")
_DML = frozenset({"select", "insert", "update", "delete", "merge"})
_CTE_ABLE = frozenset({"insert", "update", "delete"})
_WRAPPER_KINDS = frozenset({"select", "explain"})


@dataclass(frozen=True)
class _Atom:
    start: int
    end: int          # exclusive
    keyword: bool


def _sql_atoms(text: str, dialect: str) -> list[_Atom] | None:
    """The tokens of a SQL text as spans of the text; a command's raw remainder (``EXPLAIN
    ...``, ``DO $$...$$``) is one span. None when it does not tokenize."""
    from sqlglot.dialects.dialect import Dialect
    from sqlglot.errors import TokenError
    from sqlglot.tokenizer_core import TokenType

    d = Dialect.get_or_raise(dialect)
    try:
        tokens = d.tokenize(text)
    except TokenError:
        return None
    keywords = d.tokenizer_class.KEYWORDS
    plain = {TokenType.VAR, TokenType.IDENTIFIER, TokenType.STRING, TokenType.NUMBER}
    atoms: list[_Atom] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        raw = text[token.start:token.end + 1]
        if token.token_type == TokenType.COMMAND:
            atoms.append(_Atom(token.start, token.end + 1, raw.isalpha()))
            stop = next((t.start for t in tokens[i + 1:] if t.token_type == TokenType.SEMICOLON),
                        len(text))
            rest = text[token.end + 1:stop]
            if rest.strip():
                begin = token.end + 1 + (len(rest) - len(rest.lstrip()))
                atoms.append(_Atom(begin, token.end + 1 + len(rest.rstrip()), False))
            while i + 1 < len(tokens) and tokens[i + 1].token_type != TokenType.SEMICOLON:
                i += 1
        else:
            keyword = (raw.isalpha() and token.token_type not in plain
                       and raw.upper() in keywords)
            atoms.append(_Atom(token.start, token.end + 1, keyword))
        i += 1
    return atoms


def _rebuild(text: str, atoms: list[_Atom], gap: Callable[[int, str], str],
             word: Callable[[str], str]) -> str:
    """The text with each gap between atoms and each keyword atom rewritten."""
    out = [text[:atoms[0].start]]
    for k, atom in enumerate(atoms):
        raw = text[atom.start:atom.end]
        out.append(word(raw) if atom.keyword else raw)
        after = text[atom.end:atoms[k + 1].start] if k + 1 < len(atoms) else text[atom.end:]
        out.append(gap(k, after) if k + 1 < len(atoms) else after)
    return "".join(out)


def _alternate(word: str) -> str:
    return "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(word))


def sql_variations(text: str, dialect: str = "postgres") -> list[Variation]:
    """Rewrites of a SQL text that mean the same (unverified; see :func:`variations`)."""
    atoms = _sql_atoms(text, dialect)
    if not atoms:
        return []
    same = lambda k, g: g  # noqa: E731
    keep = lambda w: w     # noqa: E731

    def spaces(replacement: str) -> Callable[[int, str], str]:
        # A newline may end a line comment inside a command's text: it stays.
        def gap(k: int, g: str) -> str:
            if not g or g.strip():
                return g
            return replacement + "\n" if "\n" in g and "\n" not in replacement else replacement
        return gap

    out: list[Variation] = [
        ("sql: keywords in lower case", _rebuild(text, atoms, same, str.lower)),
        ("sql: keywords in mixed case", _rebuild(text, atoms, same, _alternate)),
    ]
    for space in _SQL_SPACES:
        out.append((f"sql: whitespace {space!r} between tokens",
                    _rebuild(text, atoms, spaces(space), keep)))
    out += [
        ("sql: comments instead of whitespace", _rebuild(text, atoms, spaces("/**/"), keep)),
        ("sql: block comments between tokens",
         _rebuild(text, atoms, spaces(" /* veto */ "), keep)),
        ("sql: line comments between tokens",
         _rebuild(text, atoms, spaces(" -- veto\n"), keep)),
        ("sql: mixed case, comments and newlines",
         _rebuild(text, atoms, lambda k, g: spaces(("/**/", "\n", "\t/* x */\t")[k % 3])(k, g),
                  _alternate)),
    ]
    for prefix in (" ", "\n", "\t", "\f", "/* veto */ ", "-- veto\n", "/**/", "\n\n  -- a\n"):
        out.append((f"sql: {prefix!r} before the statement", prefix + text))
    # What follows the statement starts on a new line: it may end in a line comment.
    body = text.rstrip().rstrip(";")
    out += [
        ("sql: stacked after SELECT 1", "SELECT 1; " + body),
        ("sql: stacked before SELECT 1", body + "\n; SELECT 1"),
    ]
    first = _first_kind(text, dialect)     # None too when it is already an EXPLAIN
    if first in _CTE_ABLE and ";" not in body and not re.match(r"\s*with\b", body, re.I):
        out.append(("sql: inside a CTE", f"WITH veto_mutant AS ({body}\n) SELECT 1"))
    if first in _DML and not re.match(r"\s*with\b", body, re.I):
        out.append(("sql: after a CTE", "WITH veto_mutant AS (SELECT 1) " + body))
    if first in _DML:
        out += [("sql: EXPLAIN ANALYZE before it", "EXPLAIN ANALYZE " + body),
                ("sql: EXPLAIN (ANALYZE) before it", "explain (analyze) " + body)]
    return [(t, v) for t, v in out if v != text]


def _first_kind(text: str, dialect: str) -> str | None:
    fact = compute({"s": FactSpec("sql", {"dialect": dialect})}, {"s": text})["s"]
    statements = fact.get("statements") or []
    if not statements or statements[0]["explain"]:
        return None
    kind: str = statements[0]["kind"]
    return kind


def _sql_meaning(fact: dict[str, Any]) -> Any:
    return None if "error" in fact else (fact["kinds"], fact["tables_written"])


def sql_same_meaning(original: str, variant: str, technique: str,
                     dialect: str = "postgres") -> bool:
    """Whether the variant reads as the same statements: the same kinds and tables written;
    for the wrapping techniques, the same plus at most ``select`` and ``explain``."""
    spec = {"s": FactSpec("sql", {"dialect": dialect})}
    a = compute(spec, {"s": original})["s"]
    b = compute(spec, {"s": variant})["s"]
    if "error" in a or "error" in b:
        return False
    if a["tables_written"] != b["tables_written"]:
        return False
    if any(w in technique for w in ("stacked", "CTE", "EXPLAIN")):
        extra = set(b["kinds"]) - set(a["kinds"])
        return set(a["kinds"]) <= set(b["kinds"]) and extra <= _WRAPPER_KINDS
    return bool(a["kinds"] == b["kinds"] and
                [s["kind"] for s in a["statements"]] == [s["kind"] for s in b["statements"]])


# -- paths -------------------------------------------------------------------------------------

def path_variations(text: str, root: str = "/") -> list[Variation]:
    """Rewrites of a path that resolve to the same path (unverified)."""
    if not text or "\x00" in text:
        return []
    parts = text.split("/")
    boundaries = [i for i in range(1, len(parts)) if parts[i] not in ("", ".", "..")]
    out: list[Variation] = []
    if boundaries:
        i = boundaries[len(boundaries) // 2]
        out += [
            ("path: a '.' segment", "/".join([*parts[:i], ".", *parts[i:]])),
            ("path: a repeated slash", "/".join([*parts[:i], "", *parts[i:]])),
        ]
        if i + 1 < len(parts):     # a directory of the path itself: <next>/.. is where we are
            out.append(("path: a detour through '<next>/..'",
                        "/".join([*parts[:i], parts[i], "..", *parts[i:]])))
    if text.startswith("/") and not text.startswith("//"):
        out.append(("path: two leading slashes", "/" + text))
        relative = posixpath.relpath(posixpath.normpath(text), root)
        out.append(("path: relative to the root", relative))
    if out and out[0][0] == "path: a '.' segment":
        out.append(("path: '.' segment and repeated slashes",
                    out[0][1].replace("/", "//")))
    return [(t, v) for t, v in out if v != text]


def _path_meaning(text: str, root: str) -> Any:
    fact = compute({"p": FactSpec("path", {"root": root})}, {"p": text})["p"]
    return None if "error" in fact else fact["normalized"]


# -- URLs --------------------------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}


def url_variations(text: str) -> list[Variation]:
    """Rewrites of a URL that an HTTP client reads as the same (unverified)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return []
    if not parts.scheme or not parts.hostname:
        return []
    host = parts.hostname
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = userinfo + "@" if userinfo else ""
    netloc_host = f"[{host}]" if ":" in host else host

    def netloc(h: str, p: int | None) -> str:
        return prefix + h + (f":{p}" if p is not None else "")

    out: list[Variation] = [
        ("url: scheme and host in upper case",
         urlunsplit((parts.scheme.upper(), netloc(netloc_host.upper(), port), parts.path,
                     parts.query, parts.fragment))),
        ("url: tabs and newlines inside", text[:3] + "\t" + text[3:-1] + "\n" + text[-1:]),
        ("url: C0 controls and spaces before", "\x01 \x1f " + text),
    ]
    if port is None and parts.scheme.lower() in _DEFAULT_PORTS:
        out.append(("url: the default port written out",
                    urlunsplit((parts.scheme, netloc(netloc_host, _DEFAULT_PORTS[
                        parts.scheme.lower()]), parts.path, parts.query, parts.fragment))))
    if ":" not in host and not host.endswith("."):
        out.append(("url: a trailing dot on the host",
                    urlunsplit((parts.scheme, netloc(host + ".", port), parts.path,
                                parts.query, parts.fragment))))
    path = parts.path or "/"
    encoded = re.sub(r"[A-Za-z]", lambda m: f"%{ord(m.group()):02X}", path)
    if encoded != path:
        out.append(("url: path characters percent-encoded",
                    urlunsplit((parts.scheme, parts.netloc, encoded, parts.query,
                                parts.fragment))))
    segments = path.split("/")
    if len(segments) > 1:
        dotted = "/".join([*segments[:-1], ".", "veto-mutant", "..", segments[-1]])
        out.append(("url: dot segments in the path",
                    urlunsplit((parts.scheme, parts.netloc, dotted, parts.query,
                                parts.fragment))))
    idna = _other_idna_form(host)
    if idna is not None:
        out.append(("url: the other IDNA form of the host",
                    urlunsplit((parts.scheme, netloc(idna, port), parts.path, parts.query,
                                parts.fragment))))
    return [(t, v) for t, v in out if v != text]


def _other_idna_form(host: str) -> str | None:
    import idna

    try:
        if host.isascii() and "xn--" in host:
            return str(idna.decode(host))
        if not host.isascii():
            return str(idna.encode(host, uts46=True).decode("ascii"))
    except (idna.IDNAError, UnicodeError):
        return None
    return None


def _url_meaning(text: str) -> Any:
    fact = compute({"u": FactSpec("url")}, {"u": text})["u"]
    return None if "error" in fact else (fact["scheme"], fact["host"], fact["port"],
                                         fact["path"])


# -- Kubernetes manifests ----------------------------------------------------------------------

def manifest_variations(text: str) -> list[Variation]:
    """The same objects written otherwise (unverified)."""
    import yaml

    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
        as_json = json.dumps(documents[0] if len(documents) == 1 else
                             {"apiVersion": "v1", "kind": "List", "items": documents},
                             indent=1)
        flow = yaml.safe_dump_all(documents, default_flow_style=True)
    except (yaml.YAMLError, TypeError, ValueError, IndexError):
        return []
    # A text starting with "{" is read as JSON (by kubectl too): flow style after "---".
    return [("kubernetes: as JSON", as_json),
            ("kubernetes: in YAML flow style", "--- " + flow),
            ("kubernetes: after a comment and a document marker",
             "# applied by the agent\n---\n" + text)]


_MANIFEST_FACTS = ("kinds", "objects", "namespaces", "privileged_containers", "host_paths",
                   "host_namespaces", "bindings")


def _manifest_meaning(text: str) -> Any:
    fact = compute({"m": FactSpec("kubernetes")}, {"m": text})["m"]
    return None if "error" in fact else [fact[k] for k in _MANIFEST_FACTS]


# -- all of it ---------------------------------------------------------------------------------

def variations(value: str, kind: str | None, options: Mapping[str, str] | None = None,
               ) -> list[Variation]:
    """Verified rewrites of one string argument of the given kind (see the module
    docstring), and its list-wrapped form."""
    options = options or {}
    found: list[Variation] = []
    if kind == "sql":
        dialect = options.get("dialect", "postgres")
        found = [(t, v) for t, v in sql_variations(value, dialect)
                 if sql_same_meaning(value, v, t, dialect)]
    elif kind == "path":
        root = options.get("root", "/")
        meaning = _path_meaning(value, root)
        found = [(t, v) for t, v in path_variations(value, root)
                 if meaning is not None and _path_meaning(v, root) == meaning]
    elif kind == "url":
        meaning = _url_meaning(value)
        found = [(t, v) for t, v in url_variations(value)
                 if meaning is not None and _url_meaning(v) == meaning]
    elif kind == "kubernetes":
        meaning = _manifest_meaning(value)
        found = [(t, v) for t, v in manifest_variations(value)
                 if meaning is not None and _manifest_meaning(v) == meaning]
    return [*found, ("a one-element list instead of the string", [value])]


def variants(arguments: Mapping[str, Any], declared: Mapping[str, FactSpec] | None = None,
             ) -> Iterator[Variant]:
    """Every variant of a call's arguments: each string argument rewritten, one at a time.

    Args:
        arguments: the call's arguments.
        declared: the facts declared for the tool (argument -> how it is parsed); an
            undeclared argument's kind is guessed from its text.
    """
    declared = declared or {}
    for name, value in arguments.items():
        if not isinstance(value, str):
            continue
        spec = declared.get(name)
        kind = spec.parser if spec is not None else guess_kind(value)
        for technique, rewritten in variations(value, kind, spec.options if spec else None):
            yield Variant(technique, name, {**arguments, name: rewritten})


# -- running it against a policy ---------------------------------------------------------------

@dataclass(frozen=True)
class Weakening:
    """A variant that got a weaker decision than the example it was made from."""

    policy: str
    example: str
    technique: str
    argument: str
    arguments: dict[str, Any]
    expected: str
    original: str
    decision: str
    rule: str | None


@dataclass(frozen=True)
class Miss:
    """An example whose own arguments already get a weaker decision than it expects."""

    policy: str
    example: str
    arguments: dict[str, Any]
    expected: str
    decision: str


@dataclass
class MutationReport:
    """The outcome of :func:`mutate`."""

    examples: int = 0
    mutated: int = 0
    variants: int = 0
    weakenings: list[Weakening] = field(default_factory=list)
    misses: list[Miss] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.weakenings and not self.misses

    def exit_code(self) -> int:
        """0 when no decision was weakened or missed, else 2 (as a failed test)."""
        return 0 if self.ok else 2

    def document(self) -> dict[str, Any]:
        return {"ok": self.ok, "examples": self.examples, "mutated": self.mutated,
                "variants": self.variants,
                "weakenings": [asdict(w) for w in self.weakenings],
                "misses": [asdict(m) for m in self.misses]}

    def format(self) -> str:
        lines = []
        for m in self.misses:
            lines.append(f"MISSED {m.policy}/{m.example}: decided {m.decision}, expected "
                         f"{m.expected}")
            lines.append(f"  arguments: {json.dumps(m.arguments, ensure_ascii=False)}")
        for w in self.weakenings:
            rule = f" (rule {w.rule})" if w.rule else ""
            lines.append(f"WEAKENED {w.policy}/{w.example}: {w.technique} on {w.argument} -> "
                         f"{w.decision}{rule}, the original is {w.original}")
            lines.append(f"  arguments: {json.dumps(w.arguments, ensure_ascii=False)}")
        summary = (f"mutation: {self.mutated} of {self.examples} examples expect deny or "
                   f"require_approval; {self.variants} variants decided; "
                   f"{len(self.weakenings)} weakened, {len(self.misses)} examples missed")
        lines.append(("PASS: " if self.ok else "FAIL: ") + summary)
        return "\n".join(lines)


class _Decider:
    """Decisions of the compiled policies by the guard's embedded engine, facts included."""

    def __init__(self, bundle: Any) -> None:
        from veto_opa.engines import EmbeddedEngine

        self.engine = EmbeddedEngine(bundle, pool_size=1)
        self.facts = Facts(spec_from_data(bundle.data_documents()))

    def decide(self, tool: str, arguments: dict[str, Any], context: dict[str, Any],
               model: str | None) -> Verdict:
        input: dict[str, Any] = {"tool": tool, "args": arguments, "context": context,
                                 "model": model, "call_id": None}
        computed = self.facts.compute(tool, arguments)
        if computed.document:
            input["facts"] = computed.document
        return self.engine.decide(input).verdict

    def close(self) -> None:
        self.engine.close()


def mutate(policies: Sequence[str | Path], *,
           examples: Sequence[str | Path] | None = None) -> MutationReport:
    """Mutation-test policies with their examples (or another file's).

    Args:
        policies: the policy files under test (compiled together, as a bundle).
        examples: policy files whose ``tests:`` to use instead of the policies' own (to test
            a policy without examples, such as the seed, with another's: the examples of
            ``examples/hardened.yaml`` against ``examples/policies.yaml``). Their ``facts:``
            tell what their arguments are.

    Raises:
        PolicyError: a file has problems.
    """
    from veto_opa.translators import build, load_policies

    compiled = build(policies)
    sources = load_policies(examples) if examples else list(compiled.policies)
    hints = merge([*(p.facts for p in sources), *(p.facts for p in compiled.policies)])
    decider = _Decider(compiled.bundle())
    report = MutationReport()
    try:
        for policy in sources:
            for example in policy.tests:
                report.examples += 1
                if example.expect.decision == "allow":
                    continue
                report.mutated += 1
                _mutate_example(decider, policy.name, example, hints.get(example.tool, {}),
                                report)
    finally:
        decider.close()
    return report


def _mutate_example(decider: _Decider, policy: str, example: Example,
                    declared: Mapping[str, FactSpec], report: MutationReport) -> None:
    original = decider.decide(example.tool, example.args, example.context, example.model)
    expected = example.expect.decision
    if _RANK[original.decision] < _RANK[expected]:
        report.misses.append(Miss(policy, example.name, example.args, expected,
                                  original.decision))
        return
    for variant in variants(example.args, declared):
        report.variants += 1
        decision = decider.decide(example.tool, variant.arguments, example.context,
                                  example.model)
        if _RANK[decision.decision] < _RANK[original.decision]:
            report.weakenings.append(Weakening(
                policy, example.name, variant.technique, variant.argument, variant.arguments,
                expected, original.decision, decision.decision, decision.rule))
