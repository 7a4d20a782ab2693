"""The grammar of ``redact:`` paths, shared by the compiler and the records.

The policy loader checks each path of a policy's ``redact:`` list with
:func:`parse_redact_path`; the runtime (``veto_opa.records.redaction``) parses the same paths
to find the values to redact, and writes concrete paths back with :func:`format_path`.

Path syntax: ``args`` followed by ``.name`` (``[A-Za-z_][A-Za-z0-9_]*``), ``["any key"]``
(a JSON string), ``[N]`` (a list index) or a wildcard ``.*`` / ``[*]``. Both wildcard
spellings match every member of an object and every element of a list.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Sequence


class Wildcard:
    """``*`` in a redaction path: any member of an object, any element of a list."""

    _instance: Wildcard | None = None

    def __new__(cls) -> Wildcard:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ANY"


ANY: Final = Wildcard()

Segment = str | int | Wildcard
"""One step of a parsed path: an object key, a list index, or :data:`ANY`."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEX = re.compile(r"\[(\*|0|[1-9][0-9]*)\]")
_ROOT = "args"


def parse_redact_path(text: str) -> tuple[Segment, ...]:
    """Parse a redaction path such as ``args.items[*].secret`` into its segments.

    Returns:
        The segments after ``args``: ``("items", ANY, "secret")``.

    Raises:
        ValueError: the path is malformed; the message says what was expected where.
    """
    if not isinstance(text, str):
        raise ValueError(f"redact path must be a string, found {type(text).__name__}")
    if not (text == _ROOT or text.startswith(_ROOT + ".") or text.startswith(_ROOT + "[")):
        raise ValueError(f"redact path {text!r} must start with 'args.'")
    segments: list[Segment] = []
    pos = len(_ROOT)
    while pos < len(text):
        char = text[pos]
        if char == ".":
            pos += 1
            if text.startswith("*", pos):
                segments.append(ANY)
                pos += 1
                continue
            match = _NAME.match(text, pos)
            if match is None:
                found = repr(text[pos]) if pos < len(text) else "end of path"
                raise ValueError(
                    f"redact path {text!r}: expected a field name or '*' after '.' "
                    f"at offset {pos}, found {found}"
                )
            segments.append(match.group())
            pos = match.end()
        elif char == "[":
            if text.startswith('["', pos):
                key, end = _parse_quoted_key(text, pos + 1)
                if not text.startswith("]", end):
                    raise ValueError(
                        f"redact path {text!r}: expected ']' after the quoted key at offset {end}"
                    )
                segments.append(key)
                pos = end + 1
                continue
            match = _INDEX.match(text, pos)
            if match is None:
                raise ValueError(
                    f"redact path {text!r}: expected '[*]', '[N]' or '[\"key\"]' at offset {pos}"
                )
            inner = match.group(1)
            segments.append(ANY if inner == "*" else int(inner))
            pos = match.end()
        else:
            raise ValueError(
                f"redact path {text!r}: expected '.' or '[' at offset {pos}, found {char!r}"
            )
    if not segments:
        raise ValueError(
            f"redact path {text!r} must name a field under args (the arguments themselves "
            "stay an object)"
        )
    return tuple(segments)


def _parse_quoted_key(text: str, start: int) -> tuple[str, int]:
    decoder = json.JSONDecoder()
    try:
        key, end = decoder.raw_decode(text, start)
    except ValueError:
        raise ValueError(
            f"redact path {text!r}: unterminated or invalid quoted key at offset {start}"
        ) from None
    if not isinstance(key, str):  # pragma: no cover - raw_decode at '"' yields a string
        raise ValueError(f"redact path {text!r}: expected a quoted key at offset {start}")
    return key, end


def format_path(segments: Sequence[str | int]) -> str:
    """Render concrete segments back to path text: ``args.items[0].secret``."""
    parts = [_ROOT]
    for segment in segments:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif _NAME.fullmatch(segment):
            parts.append(f".{segment}")
        else:
            parts.append(f"[{json.dumps(segment, ensure_ascii=False)}]")
    return "".join(parts)
