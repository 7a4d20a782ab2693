"""Argument facts: what a tool call's arguments mean, computed with real parsers.

A policy declares which arguments of which tools are parsed (``facts:``); before each
decision the runtime computes them and passes them to OPA as ``input.facts``, which
conditions read through the root ``facts``::

    facts:
      execute_sql: {statement: {sql: {dialect: postgres}}}
    rules:
      - name: no_deletes
        tool: execute_sql
        when: '"delete" in facts.statement.kinds'
        action: deny

One module per parser (``sql``, ``paths``, ``kubernetes``, ``urls``), the table of parsers
(``registry``), the declarations (``spec``), the computation (``compute``), its cache
(``cache``) and what the guard calls (``runtime``)::

    from veto_opa.facts import FactSpec, compute
    compute({"statement": FactSpec("sql")}, {"statement": "DROP TABLE x"})

This package parses; it imports nothing of the runtime (engines, records, the guard), so the
compiler can compute the facts of a policy's examples.
"""

from __future__ import annotations

from veto_opa.facts.cache import FactCache
from veto_opa.facts.compute import compute, fact
from veto_opa.facts.errors import FactError
from veto_opa.facts.registry import COMMON_FIELDS, PARSERS, Parser
from veto_opa.facts.runtime import NONE, Computed, Facts, recorded, span_attributes
from veto_opa.facts.spec import (
    FactSpec, Spec, ToolFacts, merge, spec_document, spec_from_data, spec_from_document,
)

__all__ = [
    "COMMON_FIELDS",
    "Computed",
    "FactCache",
    "FactError",
    "FactSpec",
    "Facts",
    "NONE",
    "PARSERS",
    "Parser",
    "Spec",
    "ToolFacts",
    "compute",
    "fact",
    "merge",
    "recorded",
    "span_attributes",
    "spec_document",
    "spec_from_data",
    "spec_from_document",
]
