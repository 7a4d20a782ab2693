"""What ``Veto.guard()`` calls: the facts of one tool call, cached, as input and as record.

    facts = Facts(spec, key=store_key)
    computed = facts.compute("execute_sql", {"statement": "DROP TABLE x"})
    computed.document   # input.facts: {"statement": {"kinds": ["drop"], ...}}
    computed.text       # its canonical JSON text, for the engine's input text
    recorded(computed, redact_paths, key)   # what the decision record keeps

Facts are computed once per guard, before the engine is asked, and are part of the input
document: the embedded engine and an OPA server see the same ``input.facts``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from veto_opa._json import canonical_json
from veto_opa.facts.cache import FactCache
from veto_opa.facts.compute import fact
from veto_opa.facts.spec import FactSpec, Spec


@dataclass(frozen=True)
class Computed:
    """The facts of one call.

    Attributes:
        document: ``input.facts``: argument name -> fact (an empty object for a tool with no
            declared facts).
        text: the canonical JSON text of ``document``.
    """

    document: dict[str, dict[str, Any]]
    text: str

    def parsers(self) -> list[str]:
        """``"argument=parser"`` for each fact, for spans."""
        return [f"{name}={f.get('parser')}" for name, f in self.document.items()]

    def errors(self) -> list[str]:
        """``"argument: why"`` for each fact that could not be computed."""
        return [f"{name}: {f['error']}" for name, f in self.document.items() if "error" in f]


NONE = Computed({}, "{}")
"""The facts of a call to a tool without declared facts."""


class Facts:
    """Computes the declared facts of tool calls, with a cache.

    Args:
        spec: the declarations, tool -> argument -> how to parse it.
        key: the HMAC key of the cache's digests (the record store's key when records are
            on); default: 32 random bytes for this object's life.
        cache: the cache to use (default: a :class:`FactCache` with its default limits).
    """

    def __init__(self, spec: Spec, *, key: bytes | None = None,
                 cache: FactCache | None = None) -> None:
        self.spec = spec
        self._key = key if key else os.urandom(32)
        self.cache = cache if cache is not None else FactCache()

    def compute(self, tool: str, arguments: Mapping[str, Any]) -> Computed:
        """The facts of one call; never raises for a bad argument (see ``compute``)."""
        declared = self.spec.get(tool)
        if not declared:
            return NONE
        document: dict[str, dict[str, Any]] = {}
        parts = []
        for name in sorted(declared):
            value, text = self._fact(declared[name], name, arguments)
            document[name] = value
            parts.append(f"{json.dumps(name, ensure_ascii=False)}:{text}")
        return Computed(document, "{" + ",".join(parts) + "}")

    def _fact(self, declared: FactSpec, name: str,
              arguments: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        value = arguments.get(name)
        if not isinstance(value, str):
            computed = fact(declared, name, arguments)   # an error: cheap, not cached
            return computed, canonical_json(computed)
        message = f"{declared.key}\0{value}".encode("utf-8", "surrogatepass")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        cached = self.cache.get(digest)
        if cached is not None:
            return cached
        computed = fact(declared, name, arguments)
        text = canonical_json(computed)
        self.cache.put(digest, computed, text)
        return computed, text


FACT_PARSERS = "veto.fact_parsers"
"""Span attribute: ``argument=parser version`` of each fact of the call."""
FACT_ERRORS = "veto.fact_errors"
"""Span attribute: ``argument: why`` of each fact that could not be computed."""
FACTS = "veto.facts"
"""Span attribute: the facts as JSON text, only when argument capture is on."""


def span_attributes(computed: Computed, captured: dict[str, Any] | None) -> dict[str, Any]:
    """The span attributes of a call's facts (none for a call without facts). The facts
    themselves are made of the arguments, so they go on the span only when argument values
    do (``captured``: the recorded, redacted form)."""
    if not computed.document:
        return {}
    attributes: dict[str, Any] = {FACT_PARSERS: computed.parsers()}
    errors = computed.errors()
    if errors:
        attributes[FACT_ERRORS] = errors
    if captured is not None:
        attributes[FACTS] = canonical_json(captured)
    return attributes


def recorded(computed: Computed, redact: Sequence[str | tuple[Any, ...]],
             key: bytes) -> dict[str, Any] | None:
    """The facts as the decision record keeps them: None for a call without facts; the fact
    of an argument that a redaction path reaches (``args.statement``, ``args.*``, or a path
    inside it) becomes ``{"parser": ..., "redacted": "hmac-sha256:..."}``, since it is made
    of that argument's value.

    Args:
        computed: the call's facts.
        redact: redaction paths, as written (``args.token``) or parsed
            (``veto_opa.translators.parse_redact_path``).
        key: the records' HMAC key.
    """
    if not computed.document:
        return None
    if not redact:
        return computed.document
    from veto_opa.records.redaction import hmac_digest
    from veto_opa.translators import parse_redact_path

    parsed = [parse_redact_path(p) if isinstance(p, str) else p for p in redact]
    everything = any(not path or not isinstance(path[0], str) for path in parsed)
    names = {path[0] for path in parsed if path and isinstance(path[0], str)}
    out: dict[str, Any] = {}
    for name, value in computed.document.items():
        if everything or name in names:
            out[name] = {"parser": value.get("parser"), "redacted": hmac_digest(value, key)}
        else:
            out[name] = value
    return out
