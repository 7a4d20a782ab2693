"""Which arguments of which tools are parsed, and how: the ``facts:`` declarations.

A policy declares, per tool name, the arguments to parse and the parser of each::

    facts:
      execute_sql:
        statement: {sql: {dialect: postgres}}
      rotate_secret:
        secret_path: {path: {root: /}}
      kubectl_apply:
        manifest: kubernetes

The loader checks them (``translators/loader.py``); the compiler writes the declarations of all
policies, merged, to the bundle's data as ``data.veto.facts`` in the JSON form of
:func:`spec_document`, which is where the runtime reads them from (a built bundle, an OPA
server) with :func:`spec_from_document`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from veto_opa.facts.registry import PARSERS, option_problem


@dataclass(frozen=True)
class FactSpec:
    """How one argument is parsed.

    Attributes:
        parser: a parser of :data:`~veto_opa.facts.registry.PARSERS` (``sql``).
        options: its options (``{"dialect": "postgres"}``); absent ones take their defaults.
    """

    parser: str
    options: Mapping[str, str] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The JSON form: ``{"parser": "sql", "options": {"dialect": "postgres"}}``."""
        return {"parser": self.parser, "options": dict(sorted(self.options.items()))}

    @property
    def key(self) -> str:
        """The canonical JSON text of :meth:`document`: equal specs, equal keys."""
        return json.dumps(self.document(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)


ToolFacts = Mapping[str, FactSpec]
"""The facts of one tool: argument name -> how it is parsed."""

Spec = Mapping[str, ToolFacts]
"""Every declared fact: tool name -> argument name -> how it is parsed."""


def spec_document(spec: Spec) -> dict[str, Any]:
    """The JSON form of a spec, sorted: ``{tool: {argument: {"parser", "options"}}}``."""
    return {tool: {arg: spec[tool][arg].document() for arg in sorted(spec[tool])}
            for tool in sorted(spec)}


def spec_from_document(document: Any) -> dict[str, dict[str, FactSpec]]:
    """Read the JSON form back (from a bundle or an OPA server).

    Raises:
        ValueError: the document is not a spec: wrong shape, an unknown parser or option.
    """
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ValueError(f"facts declarations must be an object, found {type(document).__name__}")
    spec: dict[str, dict[str, FactSpec]] = {}
    for tool, arguments in document.items():
        if not isinstance(arguments, dict):
            raise ValueError(f"the facts of tool {tool!r} must be an object")
        spec[tool] = {}
        for arg, entry in arguments.items():
            where = f"facts of {tool}.{arg}"
            if not isinstance(entry, dict) or not isinstance(entry.get("parser"), str):
                raise ValueError(f"{where}: expected {{\"parser\": ..., \"options\": {{...}}}}")
            parser = PARSERS.get(entry["parser"])
            if parser is None:
                raise ValueError(f"{where}: unknown parser {entry['parser']!r}")
            options = entry.get("options") or {}
            if not isinstance(options, dict):
                raise ValueError(f"{where}: options must be an object")
            for name, value in options.items():
                problem = option_problem(parser, name, value)
                if problem:
                    raise ValueError(f"{where}: {problem}")
            spec[tool][arg] = FactSpec(parser.name, dict(options))
    return spec


DATA_PATH = "veto.facts"
"""Where the merged declarations are in a bundle's data (``data.veto.facts``)."""


def spec_from_data(documents: list[tuple[str, object]]) -> dict[str, dict[str, FactSpec]]:
    """The declarations in a bundle's data documents (``Bundle.data_documents()``); none
    when the bundle has no ``data.veto.facts``.

    Raises:
        ValueError: ``data.veto.facts`` is not a spec.
    """
    for path, value in documents:
        if path == DATA_PATH:
            return spec_from_document(value)
    return {}


def merge(specs: list[Spec]) -> dict[str, dict[str, FactSpec]]:
    """The union of several specs; the loader has already refused conflicting declarations
    (the same tool and argument parsed two ways), so the first declaration is kept."""
    merged: dict[str, dict[str, FactSpec]] = {}
    for spec in specs:
        for tool, arguments in spec.items():
            for arg, declared in arguments.items():
                merged.setdefault(tool, {}).setdefault(arg, declared)
    return merged
