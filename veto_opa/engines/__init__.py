"""Policy engines: where ``data.veto.decision`` is evaluated for a tool call.

    from veto_opa.engines import EmbeddedEngine, RestEngine, FakeEngine

- :class:`EmbeddedEngine` (:mod:`.embedded`): OPA's evaluator in-process, a pool of engines.
- :class:`RestEngine` (:mod:`.rest`): an OPA server's Data API, trace context in the headers.
- :class:`FakeEngine` (:mod:`.fake`): a plain function, for tests of the callers.

All implement :class:`Engine` (:mod:`.base`): ``decide(input_text, *, headers=None)`` returns
an :class:`EngineAnswer` or raises an :class:`~veto_opa.errors.EngineError` naming the cause.
The embedded and REST engines are imported on first use, so importing this package loads
neither the OPA library nor the HTTP stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from veto_opa.engines.base import Engine, EngineAnswer
from veto_opa.engines.fake import FakeEngine

if TYPE_CHECKING:
    from veto_opa.engines.embedded import EmbeddedEngine
    from veto_opa.engines.rest import RestEngine

__all__ = [
    "EmbeddedEngine",
    "Engine",
    "EngineAnswer",
    "FakeEngine",
    "RestEngine",
]

_LAZY = {"EmbeddedEngine": "veto_opa.engines.embedded", "RestEngine": "veto_opa.engines.rest"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
