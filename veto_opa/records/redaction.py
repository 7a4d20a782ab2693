"""Redaction of tool-call arguments before they are recorded.

A policy lists the argument paths that must never be stored in clear::

    redact: [args.password, args.credentials.token, args.items[*].secret, args.*.token]

Path syntax (:mod:`veto_opa.translators.redaction_paths`, which the policy loader checks
paths with too): ``args`` followed by ``.name``, ``["any key"]``, ``[N]`` or a wildcard
``.*`` / ``[*]``. Both wildcard spellings match every member of an object and every element
of a list — redaction errs on the side of hiding more.

Each value found at a path is replaced by ``"hmac-sha256:<hex>"``, the HMAC-SHA-256 of its
canonical JSON under the store's secret key (see ``load_or_create_key``). The digest is keyed
because a plain hash of a low-entropy secret (a PIN, a short password) can be reversed by
trying every candidate; with the key, equal values still give equal digests, so records can be
correlated without revealing the value. Like OPA's ``erased``, the concrete paths that were
redacted are returned (``args.items[0].secret``).

Usage::

    redacted, erased = redact(arguments, ["args.password"], key)
    prepared = prepare_arguments(raw_arguments_from_the_model, paths, key)
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from veto_opa._json import canonical_json, keyed_digest, loads_json, sha256_digest
from veto_opa.records.model import arguments_digest
from veto_opa.translators.redaction_paths import ANY, Segment, format_path, parse_redact_path

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from veto_opa._types import JSONObject


HMAC_PREFIX = "hmac-sha256:"


def hmac_digest(value: Any, key: bytes) -> str:
    """``"hmac-sha256:<hex>"`` of the canonical JSON of ``value`` under ``key``."""
    return keyed_digest(key, canonical_json(value))


def _matches(
    node: Any, segments: tuple[Segment, ...], at: tuple[str | int, ...]
) -> Iterator[tuple[str | int, ...]]:
    if not segments:
        yield at
        return
    head, rest = segments[0], segments[1:]
    if isinstance(node, dict):
        if head is ANY:
            for name in node:
                yield from _matches(node[name], rest, (*at, name))
        elif isinstance(head, str) and head in node:
            yield from _matches(node[head], rest, (*at, head))
    elif isinstance(node, list | tuple):
        if head is ANY:
            for index, item in enumerate(node):
                yield from _matches(item, rest, (*at, index))
        elif isinstance(head, int) and not isinstance(head, bool) and head < len(node):
            yield from _matches(node[head], rest, (*at, head))


def _lookup(node: Any, at: tuple[str | int, ...]) -> Any:
    for segment in at:
        node = node[segment]
    return node


def _copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {name: _copy(value) for name, value in node.items()}
    if isinstance(node, list | tuple):
        return [_copy(value) for value in node]
    return node


def find_redacted(
    arguments: JSONObject, paths: Sequence[str | tuple[Segment, ...]]
) -> list[tuple[str | int, ...]]:
    """The concrete places in ``arguments`` that ``paths`` redact, outermost only (a match
    inside another is hidden with it), in the order of ``paths`` and then of the document.

    Raises:
        ValueError: a path is malformed.
    """
    parsed = [parse_redact_path(p) if isinstance(p, str) else tuple(p) for p in paths]
    found: list[tuple[str | int, ...]] = []
    seen: set[tuple[str | int, ...]] = set()
    for segments in parsed:
        for at in _matches(arguments, segments, ()):
            if at not in seen:
                seen.add(at)
                found.append(at)
    return [at for at in found if not any(at[:n] in seen for n in range(1, len(at)))]


def redact(
    arguments: JSONObject, paths: Sequence[str | tuple[Segment, ...]], key: bytes
) -> tuple[JSONObject, list[str]]:
    """Replace the values at ``paths`` with keyed digests.

    Matches are found in the original arguments; when one match lies inside another, only the
    outer one is replaced, so every digest is of an original value. The input is not modified.

    Args:
        arguments: the tool call's argument object.
        paths: redaction paths as written in the policy, or already parsed.
        key: the HMAC key (at least 16 bytes).

    Returns:
        A redacted copy of the arguments and the concrete paths that were erased, in the order
        of ``paths`` and then of the document.

    Raises:
        ValueError: a path is malformed or the key is too short.
    """
    if not isinstance(key, bytes | bytearray) or len(key) < 16:
        raise ValueError("the redaction key must be at least 16 bytes")
    outer = find_redacted(arguments, paths)
    if not outer:
        return _copy(arguments), []
    result = _copy(arguments)
    for at in outer:
        parent = _lookup(result, at[:-1])
        parent[at[-1]] = hmac_digest(_lookup(arguments, at), bytes(key))
    return result, [format_path(at) for at in outer]


class Redactor:
    """What a record may keep of a call's arguments: redaction paths and the store's key.

    When any path is configured, every digest of arguments or context that leaves the process
    is keyed (:meth:`digest` is an HMAC under ``key``): a plain sha256 of arguments holding a
    redacted 4-digit PIN is reversed by trying the 10,000 candidates.

    Args:
        paths: redaction paths (``args.password``), as written in policies and settings.
        key: the HMAC key (at least 16 bytes; the store's ``record.key``).

    Raises:
        ValueError: a path is malformed or the key is too short.
    """

    def __init__(self, paths: Sequence[str], key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the redaction key must be at least 16 bytes")
        self.paths = tuple(dict.fromkeys(paths))
        self._parsed = [parse_redact_path(p) for p in self.paths]
        self._key = bytes(key)

    @property
    def parsed(self) -> tuple[tuple[Segment, ...], ...]:
        """The configured paths, parsed."""
        return tuple(self._parsed)

    @property
    def keyed(self) -> bool:
        """Whether digests are keyed: some path is configured."""
        return bool(self.paths)

    def digest(self, data: str | bytes) -> str:
        """The digest of canonical JSON or raw text: ``hmac-sha256:`` when keyed, else
        ``sha256:``."""
        return keyed_digest(self._key, data) if self.keyed else sha256_digest(data)

    def arguments(self, arguments: JSONObject) -> tuple[JSONObject, list[str]]:
        """The arguments with every configured path replaced by its keyed digest, and the
        concrete paths erased (see :func:`redact`); the arguments themselves when no path is
        configured."""
        if not self._parsed:
            return arguments, []
        return redact(arguments, self._parsed, self._key)


@dataclass(frozen=True)
class PreparedArguments:
    """The three argument fields of a decision record."""

    arguments: JSONObject | None
    arguments_sha256: str
    erased: list[str]

    def fields(self) -> dict[str, Any]:
        return {
            "arguments": self.arguments,
            "arguments_sha256": self.arguments_sha256,
            "erased": list(self.erased),
        }


def prepare_arguments(
    raw: Any, paths: Sequence[str | tuple[Segment, ...]], key: bytes
) -> PreparedArguments:
    """Turn a tool call's arguments, as the model sent them, into record fields.

    ``raw`` may be the argument object or its JSON text (Mistral sends text). An object is
    redacted and hashed canonically; anything else is recorded as ``arguments=None`` with the
    digest of its raw text.
    """
    digest = arguments_digest(raw)
    obj: Any = raw
    if isinstance(raw, str):
        try:
            obj = loads_json(raw)
        except ValueError:
            obj = None
    if not isinstance(obj, dict):
        return PreparedArguments(None, digest, [])
    redacted, erased = redact(obj, paths, key)
    return PreparedArguments(redacted, digest, erased)
