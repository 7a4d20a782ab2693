"""A tool call made usable as policy input: :func:`check_call` turns what the model sent into
a :class:`ToolCall` or says why it cannot be decided.

Arguments may be an object or its JSON text (Mistral sends text, or a dict in mistralai 3.x);
either way they must be a JSON object whose canonical text fits ``max_bytes`` and nests at
most :data:`~veto_opa._json.MAX_DEPTH` levels. The context must be an object too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from veto_opa._json import MAX_DEPTH, canonical_json, depth, loads_json
from veto_opa._types import JSONObject
from veto_opa.errors import InvalidToolCall


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A checked tool call.

    Attributes:
        tool: the tool name.
        arguments, context: JSON objects.
        arguments_text, context_text: their canonical JSON text (what digests are taken over).
        model, call_id: strings, or None.
    """

    tool: str
    arguments: JSONObject
    arguments_text: str
    context: JSONObject
    context_text: str
    model: str | None = None
    call_id: str | None = None

    def input_document(self) -> JSONObject:
        """The OPA input document: the expression roots, one to one."""
        return {"tool": self.tool, "args": self.arguments, "context": self.context,
                "model": self.model, "call_id": self.call_id}


def check_call(tool: object, arguments: object, context: object, model: object = None,
               call_id: object = None, *, max_bytes: int) -> ToolCall:
    """Check a tool call as the model and the caller gave it.

    Args:
        tool: the tool name: a non-empty string.
        arguments: an object, or its JSON text (str or UTF-8 bytes); None or ``""`` is ``{}``.
        context: an object; None is ``{}``.
        model, call_id: strings or None.
        max_bytes: the largest canonical JSON text of the arguments accepted, in bytes.

    Raises:
        InvalidToolCall: naming what is wrong.
    """
    if not isinstance(tool, str) or not tool:
        raise InvalidToolCall(f"the tool name must be a non-empty string, found {tool!r}")
    for name, value in (("model", model), ("call_id", call_id)):
        if value is not None and not isinstance(value, str):
            raise InvalidToolCall(f"{name} must be a string or null, found "
                                  f"{type(value).__name__}")
    args, args_text = _arguments(arguments, max_bytes)
    if context is None:
        context = {}
    if not isinstance(context, Mapping):
        raise InvalidToolCall(f"context must be an object, found {type(context).__name__}")
    ctx = dict(context)
    ctx_text = _canonical(ctx, "context")
    return ToolCall(tool, args, args_text, ctx, ctx_text,
                    model if isinstance(model, str) else None,
                    call_id if isinstance(call_id, str) else None)


def _arguments(arguments: object, max_bytes: int) -> tuple[JSONObject, str]:
    if arguments is None or arguments == "":
        return {}, "{}"
    value: Any
    if isinstance(arguments, bytes | bytearray):
        try:
            arguments = bytes(arguments).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidToolCall(f"arguments are not UTF-8 text: {e}") from None
    if isinstance(arguments, str):
        if len(arguments) > max_bytes:
            raise InvalidToolCall(f"arguments are {len(arguments)} characters of JSON, over "
                                  f"the limit of {max_bytes} bytes")
        try:
            value = loads_json(arguments)
        except ValueError as e:
            raise InvalidToolCall(f"arguments are not valid JSON text: {e}") from None
    elif isinstance(arguments, Mapping):
        value = dict(arguments)
    else:
        raise InvalidToolCall("arguments must be a JSON object or its text, found "
                              f"{_json_type(arguments)}")
    if not isinstance(value, dict):
        raise InvalidToolCall(f"arguments must be a JSON object, found {_json_type(value)}")
    text = _canonical(value, "arguments")
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise InvalidToolCall(f"arguments are {size} bytes of JSON, over the limit of "
                              f"{max_bytes} bytes")
    return value, text


def _canonical(value: JSONObject, what: str) -> str:
    try:
        text = canonical_json(value)
    except (TypeError, ValueError) as e:
        if "nested too deeply" in str(e) or depth(value) > MAX_DEPTH:
            raise InvalidToolCall(f"{what} nest deeper than {MAX_DEPTH} levels") from None
        verb = "are" if what == "arguments" else "is"
        raise InvalidToolCall(f"{what} {verb} not JSON: {e}") from None
    # Each level of nesting takes at least two characters of the text: a short text cannot
    # nest too deeply, and only a long one is walked.
    if len(text) > 2 * MAX_DEPTH and depth(value) > MAX_DEPTH:
        raise InvalidToolCall(f"{what} nest deeper than {MAX_DEPTH} levels")
    return text


_TYPE_NAMES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
               float: "number", type(None): "null"}


def _json_type(value: object) -> str:
    """The JSON type of ``value`` as OPA's ``type_name`` names it, else its Python type."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)
