"""Rendering Python values as Rego source: strings, JSON values, refs and comments.

Everything taken from a policy file reaches the generated Rego through these functions, so
that no content — quotes, backslashes, newlines, braces, Unicode, Rego keywords — can change
the program: strings become escaped string literals, names become refs only when they are
plain identifiers, and free text in comments cannot end its comment line.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

KEYWORDS = frozenset({
    "as", "contains", "default", "else", "every", "false", "if", "import", "in", "not",
    "null", "package", "some", "true", "with",
})
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                  "\b": "\\b", "\f": "\\f"}


_PLAIN = re.compile(r'[^"\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]*\Z')


def string(s: str) -> str:
    """A Rego string literal for ``s``.

    Control characters (C0, DEL, C1) and the Unicode line and paragraph separators are
    written as ``\\uXXXX`` escapes (all in the BMP, so Go's unquoting accepts them); every
    other character is written as itself in UTF-8.

    Raises:
        ValueError: when ``s`` holds a lone surrogate, which has no UTF-8 form.
    """
    if _PLAIN.match(s):
        return f'"{s}"'
    out = ['"']
    for c in s:
        o = ord(c)
        if c in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[c])
        elif o < 0x20 or 0x7F <= o <= 0x9F or o in (0x2028, 0x2029):
            out.append(f"\\u{o:04x}")
        elif 0xD800 <= o <= 0xDFFF:
            raise ValueError(f"string holds a lone surrogate U+{o:04X}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def number(n: int | float | Decimal) -> str:
    """A Rego number literal: exact for ints and decimals, a float's shortest decimal."""
    if isinstance(n, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(n, int):
        return str(n)
    if isinstance(n, Decimal):
        if not n.is_finite():
            raise ValueError(f"{n} has no JSON or Rego form")
        return str(n).replace("E", "e")
    if math.isnan(n) or math.isinf(n):
        raise ValueError(f"{n} has no JSON or Rego form")
    return repr(n)


def value(v: Any) -> str:
    """A Rego term for a JSON value (objects keep their key order; Rego sorts them anyway)."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float, Decimal)):
        return number(v)
    if isinstance(v, str):
        return string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{string(k)}: {value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"not a JSON value: {type(v).__name__}")


def is_identifier(name: str) -> bool:
    return bool(_IDENT.match(name)) and name not in KEYWORDS


def ref(base: str, key: str) -> str:
    """``base.key`` when ``key`` is a plain identifier, else ``base["key"]``."""
    if is_identifier(key):
        return f"{base}.{key}"
    return f"{base}[{string(key)}]"


_COMMENT_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def comment_lines(text: str, prefix: str = "# ") -> list[str]:
    """Free text as comment lines: one per source line, control characters replaced."""
    lines = text.replace("\r\n", "\n").split("\n")
    return [(prefix + _COMMENT_UNSAFE.sub("\ufffd", line)).rstrip() for line in lines]


def yaml_string(s: str) -> str:
    """A YAML double-quoted scalar for ``s`` (for ``# METADATA`` blocks, which OPA parses
    as YAML): printable ASCII as itself, everything else escaped."""
    out = ['"']
    for c in s:
        o = ord(c)
        if c in '"\\':
            out.append("\\" + c)
        elif 0x20 <= o < 0x7F:
            out.append(c)
        elif o <= 0xFF:
            out.append(f"\\x{o:02x}")
        elif o <= 0xFFFF:
            if 0xD800 <= o <= 0xDFFF:
                raise ValueError(f"string holds a lone surrogate U+{o:04X}")
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)
