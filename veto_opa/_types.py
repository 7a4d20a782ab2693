"""Type aliases shared across veto-opa."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

JSON: TypeAlias = Any
"""A JSON value: None, bool, int, float, str, list of JSON, or dict of str to JSON."""

JSONObject: TypeAlias = dict[str, Any]

Action: TypeAlias = Literal["allow", "deny", "require_approval"]

ACTIONS: tuple[Action, ...] = ("deny", "require_approval", "allow")
"""Every action, strongest first: the order of decision precedence."""
