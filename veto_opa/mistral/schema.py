"""JSON Schemas of Python functions, for Mistral's ``tools=``, and their strict checking.

The schema of a function comes from its type hints (through pydantic, as the ``mistralai``
SDK's own ``RunContext`` builds them) and its Google-style docstring: the text before the
first section is the tool's description, each ``Args:`` entry its parameter's description.
A strict schema (the default) refuses properties it does not name
(``additionalProperties: false``) and requires every parameter without a default.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from typing import Annotated, Any

import jsonschema
import pydantic
from pydantic_core import PydanticSerializationError
from typing_extensions import NotRequired, TypedDict

FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
"""A name Mistral accepts for a function."""

_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters|"
    r"Returns?|Yields?|Raises|Examples?|Notes?|Attributes|Warnings?|See Also|Todo):\s*$")
_ARGUMENT_SECTIONS = frozenset({"Args", "Arguments", "Parameters", "Params", "Keyword Args",
                                "Keyword Arguments", "Other Parameters"})
_PARAMETER = re.compile(r"^(\s+)\**(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description (text before the first section) and each documented parameter's
    description, from a Google-style docstring."""
    description: list[str] = []
    parameters: dict[str, str] = {}
    section: str | None = None
    indent: str | None = None
    current: str | None = None
    for line in inspect.cleandoc(doc or "").splitlines():
        header = _SECTION.match(line) if not line[:1].isspace() else None
        if header:
            section, indent, current = header.group(1), None, None
            continue
        if section is None:
            description.append(line)
            continue
        if section not in _ARGUMENT_SECTIONS or not line.strip():
            continue
        match = _PARAMETER.match(line)
        if match and (indent is None or match.group(1) == indent):
            indent, current = match.group(1), match.group(2)
            parameters[current] = match.group(3).strip()
        elif current is not None and indent is not None and line.startswith(indent):
            parameters[current] = f"{parameters[current]} {line.strip()}".strip()
    return "\n".join(description).strip(), parameters


def function_schema(function: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
    """The description and the JSON Schema of ``function``'s keyword arguments.

    Raises:
        ValueError: a parameter cannot be passed by name (``*args``, ``**kwargs``,
            positional-only), or a type hint has no JSON Schema.
    """
    description, documented = parse_docstring(inspect.getdoc(function))
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except (NameError, TypeError) as e:
        raise ValueError(f"{function.__name__}: a type hint cannot be resolved: {e}") from None
    fields: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            raise ValueError(f"{function.__name__}: parameter {parameter.name!r} cannot be "
                             "passed by name; give the tool's parameters schema")
        annotation: Any = hints.get(parameter.name, Any)
        if parameter.name in documented:
            annotation = Annotated[annotation,
                                   pydantic.Field(description=documented[parameter.name])]
        if parameter.default is parameter.empty:
            fields[parameter.name] = annotation
        else:
            fields[parameter.name] = NotRequired[annotation]
            defaults[parameter.name] = parameter.default
    # A TypedDict rather than a model: any parameter name works (a model's fields may not be
    # called "json" or "copy").
    make_typed_dict: Any = TypedDict   # built at run time: mypy checks only literal ones
    shape = make_typed_dict(f"{function.__name__}_arguments", fields)
    try:
        schema = pydantic.TypeAdapter(shape).json_schema()
    except (TypeError, RuntimeError) as e:   # pydantic's user errors are RuntimeErrors
        raise ValueError(f"{function.__name__}: {str(e).splitlines()[0]}") from None
    schema.pop("title", None)
    properties = schema.setdefault("properties", {})
    for name, value in properties.items():
        value.pop("title", None)
        if name in defaults:
            try:
                value["default"] = pydantic.TypeAdapter(Any).dump_python(defaults[name],
                                                                         mode="json")
            except PydanticSerializationError:
                pass   # a default that is not JSON is not shown
    schema.setdefault("required", [])
    if not schema["required"]:
        del schema["required"]
    return description, schema


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` refusing properties it does not name, unless it says otherwise."""
    if schema.get("type") == "object" and "additionalProperties" not in schema:
        return {**schema, "additionalProperties": False}
    return schema


def validator(schema: dict[str, Any], name: str) -> jsonschema.protocols.Validator:
    """A validator of arguments against ``schema`` (its own dialect, 2020-12 by default).

    Raises:
        ValueError: the schema is not a valid JSON Schema, or not of an object.
    """
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise ValueError(f"{name}: the parameters are not a valid JSON Schema: "
                         f"{e.message}") from None
    if schema.get("type") != "object":
        raise ValueError(f"{name}: the parameters schema must describe an object "
                         f"(\"type\": \"object\"), found {schema.get('type')!r}")
    return cls(schema)


def schema_errors(check: jsonschema.protocols.Validator, arguments: dict[str, Any]) -> list[str]:
    """Every way ``arguments`` fail the schema, each prefixed by where, in a stable order."""
    problems = []
    for error in sorted(check.iter_errors(arguments), key=lambda e: (list(map(str, e.path)),
                                                                     e.message)):
        where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.path)
        problems.append(f"args{where}: {error.message}" if where else error.message)
    return problems
