"""JSON as veto-opa hashes, records and sends it: one canonical text, strict parsing.

``canonical_json`` is the text that record hashes, argument digests and redaction HMACs are
computed over (sorted keys, no whitespace, UTF-8 kept as is), so that auditors' scripts can
reproduce them. ``loads_json`` refuses what Python's ``json`` accepts but JSON does not:
``NaN`` and the infinities. Both raise ``ValueError`` for a value nested too deeply and for
strings that UTF-8 cannot hold (lone surrogates), instead of ``RecursionError`` or an error
later when the text is encoded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

MAX_DEPTH = 200
"""Deepest nesting of objects and lists accepted in tool-call arguments and contexts."""


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value``.

    Raises:
        TypeError: ``value`` holds something that is not JSON (or keys of mixed types).
        ValueError: NaN or an infinity, nesting deeper than Python's recursion limit, or a
            string with a lone surrogate.
    """
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except RecursionError:
        raise ValueError("the value is nested too deeply") from None
    _check_encodable(text)
    return text


def loads_json(text: str | bytes) -> Any:
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and ``-Infinity``.

    Raises:
        ValueError: the text is not JSON, is nested too deeply, or holds a lone surrogate.
    """
    try:
        value = json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise ValueError("the JSON text is nested too deeply") from None
    return value


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply objects and lists nest in ``value`` (0 for a scalar), counted up to
    ``limit + 1`` at most, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level) for child in children)
    return deepest


def sha256_digest(data: str | bytes) -> str:
    """``"sha256:<hex>"`` of ``data`` (text is encoded as UTF-8, lone surrogates kept)."""
    return "sha256:" + hashlib.sha256(_bytes(data)).hexdigest()


def keyed_digest(key: bytes, data: str | bytes) -> str:
    """``"hmac-sha256:<hex>"`` of ``data`` under ``key``: a digest that cannot be reversed by
    trying candidate values without the key."""
    return "hmac-sha256:" + hmac.new(key, _bytes(data), hashlib.sha256).hexdigest()


def _bytes(data: str | bytes) -> bytes:
    return data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _check_encodable(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"a string holds {text[e.start:e.end]!r}, which UTF-8 cannot "
                         "encode (a lone surrogate)") from None
