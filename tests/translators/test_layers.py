"""The compiler stands alone: its modules import nothing of the runtime.

``veto_opa.translators`` may import itself, the shared leaf modules ``veto_opa.errors``,
``veto_opa._types`` and ``veto_opa.decision`` (the one model of a decision: the compiler
writes the decision for calls no rule applies to), the fact parsers' declarations, registry and computation (the compiler
checks ``facts:`` and computes the facts of a policy's examples; the runtime computes those of
each call), and the package version; the runtime (engines, records, the guard) imports the
compiler's public API, never the other way round.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

COMPILER = Path(__file__).resolve().parents[2] / "translators"
ALLOWED = {"veto_opa.errors", "veto_opa._types", "veto_opa.decision"}
# The fact parsers, shared with the runtime: leaf modules themselves (see the last test).
SHARED_FACTS = {"veto_opa.facts.compute", "veto_opa.facts.errors", "veto_opa.facts.registry",
                "veto_opa.facts.spec"}
FACTS = COMPILER.parent / "veto_opa" / "facts"


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names]
    return found


def test_the_compiler_imports_nothing_of_the_runtime() -> None:
    offending = []
    for path in sorted(COMPILER.glob("*.py")):
        for line, module, names in _imports(path):
            if not module.startswith("veto_opa"):
                continue
            if (module.startswith("veto_opa.translators") or module in ALLOWED
                    or module in SHARED_FACTS):
                continue
            if module == "veto_opa" and names in (["__version__"], ["translators"]):
                continue
            offending.append(f"{path.name}:{line}: {module} {names}")
    assert offending == []


def test_redaction_paths_are_the_compilers_public_api() -> None:
    from veto_opa import translators
    from veto_opa.records import redaction

    assert redaction.parse_redact_path is translators.parse_redact_path
    assert translators.parse_redact_path("args.items[*].secret") == ("items", translators.ANY,
                                                                     "secret")
    assert translators.format_path(["items", 0, "a b"]) == 'args.items[0]["a b"]'


def test_importing_the_compiler_registers_no_codec_error_handler() -> None:
    import codecs

    import veto_opa.translators.bundle  # noqa: F401 - imported for its side effects, if any

    with pytest.raises(LookupError):
        codecs.lookup_error("veto_opa.go_replace")


def test_the_shared_fact_parsers_import_nothing_of_the_runtime() -> None:
    # Module-level imports only: veto_opa.facts.runtime (the runtime's cache and records of
    # facts) is not among the shared modules.
    offending = []
    for path in sorted(FACTS.glob("*.py")):
        if path.stem in ("runtime", "__init__"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                    "veto_opa") and not node.module.startswith("veto_opa.facts") \
                    and node.module not in ALLOWED | {"veto_opa._json"} \
                    and [a.name for a in node.names] != ["__version__"]:
                offending.append(f"{path.name}:{node.lineno}: {node.module}")
    assert offending == []
