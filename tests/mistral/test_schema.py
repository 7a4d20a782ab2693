"""JSON Schemas of functions: from type hints and Google-style docstrings, strict checks."""

from __future__ import annotations

import socket
from typing import Any, Literal

import pytest

from veto_opa.mistral.schema import (
    function_schema, parse_docstring, schema_errors, strict_schema, validator,
)


def test_docstring_description_and_arguments() -> None:
    doc = """Rotate a secret.

    Only for services we own.

    Args:
        secret_path (str): where the secret lives,
            under /secrets.
        service: the service.
        **options: ignored.

    Returns:
        The new version.
    """
    description, parameters = parse_docstring(doc)
    assert description == "Rotate a secret.\n\nOnly for services we own."
    assert parameters == {"secret_path": "where the secret lives, under /secrets.",
                          "service": "the service.", "options": "ignored."}
    assert parse_docstring(None) == ("", {})


def test_schema_from_hints_defaults_and_docs() -> None:
    def search(query: str, limit: int = 10, kind: Literal["a", "b"] | None = None,
               json: list[str] | None = None) -> list[str]:
        """Search.

        Args:
            query: what to look for.
        """
        return []

    description, schema = function_schema(search)
    assert description == "Search."
    assert schema == {
        "type": "object", "required": ["query"],
        "properties": {
            "query": {"type": "string", "description": "what to look for."},
            "limit": {"type": "integer", "default": 10},
            "kind": {"anyOf": [{"enum": ["a", "b"], "type": "string"}, {"type": "null"}],
                     "default": None},
            "json": {"anyOf": [{"items": {"type": "string"}, "type": "array"},
                               {"type": "null"}], "default": None},
        }}


def test_parameters_without_hints_take_any_json() -> None:
    def anything(x, y=None):  # type: ignore[no-untyped-def]
        return x

    _, schema = function_schema(anything)
    check = validator(strict_schema(schema), "anything")
    assert schema_errors(check, {"x": [1, {"a": None}]}) == []
    assert schema_errors(check, {}) == ["'x' is a required property"]


@pytest.mark.parametrize(("function", "message"), [
    (lambda *args: None, "cannot be passed by name"),
    (lambda **kw: None, "cannot be passed by name"),
])
def test_unusable_signatures(function: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        function_schema(function)


def test_unusable_hints() -> None:
    def takes_socket(s: socket.socket) -> None: ...

    def forward(s: "Nope") -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(ValueError, match="takes_socket: Unable to generate"):
        function_schema(takes_socket)
    with pytest.raises(ValueError, match="forward: a type hint cannot be resolved"):
        function_schema(forward)


def test_strict_refuses_unnamed_properties_and_says_where() -> None:
    schema = strict_schema({"type": "object", "properties": {
        "rows": {"type": "array", "items": {"type": "integer"}}}, "required": ["rows"]})
    check = validator(schema, "t")
    assert schema_errors(check, {"rows": [1, "2"], "admin": True}) == [
        "Additional properties are not allowed ('admin' was unexpected)",
        "args.rows[1]: '2' is not of type 'integer'"]
    assert strict_schema({"type": "object", "additionalProperties": True}) == {
        "type": "object", "additionalProperties": True}
