"""Veto YAML → Rego: the policy compiler, imported as ``veto_opa.translators``.

    from veto_opa.translators import build
    compiled = build(["veto/policies.yaml"])       # raises PolicyError listing every problem
    bundle = compiled.bundle()                      # an OPA bundle (roots ["veto"])
    print(compiled.generated()["veto/policies/policies.rego"])

The pipeline, one module each: ``source`` (YAML with positions) → ``schema`` (pydantic) →
``loader`` (checked ``Policy``) with ``tokens`` → ``parser`` → ``checker`` for conditions;
then ``generator`` (conditions → Rego) and ``details`` (Rego naming why a condition is in
error) → ``compiler`` (modules from the ``templates``) → ``bundle`` (manifest, tar.gz,
signatures). ``evaluator`` is the reference semantics the generated Rego is tested against,
with OPA's arithmetic from ``numbers``; ``regotest`` runs Rego unit tests and ``examples``
says why a policy's example failed. ``redaction_paths`` is the grammar of ``redact:``
paths, which the runtime's records use too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from veto_opa.translators.bundle import Bundle, load_into_engine, read_bundle
from veto_opa.translators.compiler import (
    REDACTION_DATA, Compiled, compile_policies, library_modules,
)
from veto_opa.translators.loader import load_policies, load_policy
from veto_opa.translators.redaction_paths import (
    ANY, Segment, Wildcard, format_path, parse_redact_path,
)

__all__ = ["ANY", "REDACTION_DATA", "Bundle", "Compiled", "Segment", "Wildcard", "build", "compile_policies",
           "format_path", "library_modules", "load_into_engine", "load_policies", "load_policy",
           "parse_redact_path", "read_bundle"]


def build(paths: Sequence[str | Path]) -> Compiled:
    """Load, check and compile policy files.

    Raises:
        veto_opa.errors.PolicyError: every problem of every file, as ``file:line:col: message``.
    """
    return compile_policies(load_policies(paths))

