"""Path facts: a POSIX path as the file system would resolve it, lexically.

    facts("secrets/app/../root//token", root="/")
    # {"normalized": "/secrets/root/token", "segments": ["secrets", "root", "token"],
    #  "prefixes": ["/secrets", "/secrets/root", "/secrets/root/token"], ...}

A relative path is resolved against ``root`` (an absolute directory, ``/`` by default); then
empty and ``.`` segments are dropped and each ``..`` removes the segment before it (``..`` at
the top stays at the top, as ``/..`` is ``/``). Two leading slashes are one slash (POSIX leaves
``//x`` to the implementation; Linux reads it as ``/x``). ``prefixes`` lists the path and every
directory above it, so that "under /secrets/root" is ``"/secrets/root" in prefixes`` rather
than a ``startswith`` that also matches ``/secrets/rootless``. ``folded`` and its segments and
prefixes are the same, case-folded (``str.casefold``), for stores that ignore case.

The resolution is lexical: symbolic links are not followed (``a/../b`` is ``b`` even when ``a``
is a link). A backslash is an ordinary character, as in POSIX file names.
"""

from __future__ import annotations

from typing import Any

from veto_opa import __version__
from veto_opa.facts.errors import FactError

NAME = "path"
MAX_CHARS = 4096
"""Longest path accepted (PATH_MAX on Linux)."""

DEFAULT_ROOT = "/"


def library() -> str:
    """The parser and its version, as facts and records name it."""
    return f"veto-opa {__version__} posix paths"


def option_problem(name: str, value: Any) -> str | None:
    """Why an option value is not usable, or None."""
    if name == "root":
        if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
            return f"root must be an absolute path such as /srv/data, found {value!r}"
        return None
    return f"unknown option {name!r}"


def resolve(segments: list[str]) -> list[str]:
    """The segments left once empty and ``.`` segments are dropped and ``..`` applied."""
    out: list[str] = []
    for segment in segments:
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    return out


def facts(text: str, *, root: str = DEFAULT_ROOT) -> dict[str, Any]:
    """The facts of a path.

    Raises:
        FactError: the path is empty or holds a NUL character.
    """
    if text == "":
        raise FactError("the path is empty")
    if "\x00" in text:
        raise FactError("the path contains a NUL character")
    base = resolve(root.split("/"))
    absolute = text.startswith("/")
    segments = resolve(text.split("/") if absolute else [*base, *text.split("/")])
    folded = [s.casefold() for s in segments]
    return {
        "normalized": _join(segments),
        "segments": segments,
        "prefixes": _prefixes(segments),
        "folded": _join(folded),
        "folded_segments": folded,
        "folded_prefixes": _prefixes(folded),
        "absolute": absolute,
        "outside_root": segments[:len(base)] != base,
        "root": _join(base),
    }


def _join(segments: list[str]) -> str:
    return "/" + "/".join(segments)


def _prefixes(segments: list[str]) -> list[str]:
    return [_join(segments[:i]) for i in range(1, len(segments) + 1)]
