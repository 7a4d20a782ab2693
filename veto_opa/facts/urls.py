"""URL facts: scheme, host, port and path as an HTTP client would use them.

    facts("HTTPS://B\u00dccher.example.:443/a/./b/%2E%2E/c%20d?q=1")
    # {"scheme": "https", "host": "xn--bcher-kva.example", "port": 443,
    #  "path": "/a/c d", "segments": ["a", "c d"], "query": "q=1", ...}

As the WHATWG URL standard (browsers, curl) and Python's ``urllib.parse`` both do, leading and
trailing C0 controls and spaces are stripped and tabs and newlines anywhere are removed. The
scheme is lower-cased; the host is percent-decoded, lower-cased and IDNA-encoded (UTS #46, the
``idna`` package), with one trailing dot dropped (``example.com.`` is the same DNS name); an
IPv4 address in any form the WHATWG parser accepts (``2130706433``, ``0x7f.1``, ``0177.0.0.1``)
becomes its dotted-decimal form and an IPv6 address its compressed form. ``port`` is the
explicit port or the scheme's default (null when it has none). ``path`` has its dot segments
removed (``%2e`` counts as a dot) and is then percent-decoded; ``segments`` are its non-empty
segments and ``prefixes`` the path of each directory, as for path facts.

Refused (a fact error), because clients disagree on what they mean: a backslash (browsers read
it as ``/`` in http(s) URLs, Python does not: ``http://evil.example\\@good.example``), other
control characters, a host that is not a valid DNS name or address, a port out of range.
"""

from __future__ import annotations

import ipaddress
import platform
import re
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import idna

from veto_opa.facts.errors import FactError

NAME = "url"
MAX_CHARS = 16_384
"""Longest URL accepted."""


DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}
_SPECIAL = frozenset(DEFAULT_PORTS) | {"file"}
_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))
_TAB_OR_NEWLINE = re.compile("[\t\n\r]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_DOT = frozenset({".", "%2e"})
_DOT_DOT = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})


def library() -> str:
    """The parser and its version, as facts and records name it."""
    return f"urllib.parse (Python {platform.python_version()}), idna {idna.__version__}"


def option_problem(name: str, value: Any) -> str | None:
    """URL facts take no options."""
    return f"unknown option {name!r}"


def facts(text: str) -> dict[str, Any]:
    """The facts of a URL.

    Raises:
        FactError: the URL has no scheme, holds characters clients read differently, or has
            a host or port that is not valid.
    """
    if "\x00" in text:
        raise FactError("the URL contains a NUL character")
    url = _TAB_OR_NEWLINE.sub("", text.strip(_C0_OR_SPACE))
    if _CONTROL.search(url):
        raise FactError("the URL contains a control character")
    if "\\" in url:
        raise FactError("the URL contains a backslash, which browsers read as '/' and Python "
                        "does not")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise FactError(f"the URL cannot be parsed: {e}") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise FactError("the URL has no scheme (expected an absolute URL such as "
                        "https://example.com/)")
    host, ip = _host(parts, scheme)
    if port is None:
        port = DEFAULT_PORTS.get(scheme)
    path, segments = _path(parts.path, scheme)
    return {
        "scheme": scheme,
        "host": host,
        "port": port,
        "path": path,
        "segments": segments,
        "prefixes": ["/" + "/".join(segments[:i]) for i in range(1, len(segments) + 1)],
        "query": parts.query,
        "userinfo": "@" in parts.netloc,
        "ip": ip,
    }


def _host(parts: SplitResult, scheme: str) -> tuple[str, bool]:
    netloc = parts.netloc.rpartition("@")[2]
    if netloc.startswith("["):
        literal = netloc[1:].partition("]")[0]
        try:
            return ipaddress.IPv6Address(literal).compressed, True
        except ValueError:
            raise FactError("the URL's host is not a valid IPv6 address") from None
    try:
        raw = unquote(parts.hostname or "", errors="strict")
    except UnicodeDecodeError:
        raise FactError("the URL's host is percent-encoded bytes that are not UTF-8") from None
    if raw.endswith("."):
        raw = raw[:-1]
    if not raw:
        if scheme in _SPECIAL and scheme != "file":
            raise FactError(f"the {scheme} URL has no host")
        return "", False
    ipv4 = _ipv4(raw)
    if ipv4 is not None:
        return ipv4, True
    try:
        return idna.encode(raw, uts46=True).decode("ascii").lower(), False
    except (idna.IDNAError, UnicodeError) as e:
        raise FactError(f"the URL's host is not a valid domain name: {e}") from None


def _ipv4(host: str) -> str | None:
    """The dotted-decimal form of a host that WHATWG's parser reads as an IPv4 address; None
    when the host does not end in a number (it is a domain name).

    Raises:
        FactError: it ends in a number but is not a valid IPv4 address (WHATWG fails too).
    """
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    if not (last.isdigit() or re.fullmatch(r"0[xX][0-9A-Fa-f]*", last)):
        return None
    numbers = []
    for part in parts:
        number = _ipv4_number(part)
        if number is None:
            raise FactError("the URL's host ends in a number but is not a valid IPv4 address")
        numbers.append(number)
    if len(numbers) > 4 or any(n > 255 for n in numbers[:-1]) or \
            numbers[-1] >= 256 ** (5 - len(numbers)):
        raise FactError("the URL's host is an IPv4 address out of range")
    value = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        value += n * 256 ** (3 - i)
    return str(ipaddress.IPv4Address(value))


def _ipv4_number(part: str) -> int | None:
    if part == "":
        return None
    try:
        if part[:2] in ("0x", "0X"):
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part[1:], 8)
        return int(part, 10) if part.isdigit() else None
    except ValueError:
        return None


def _path(raw: str, scheme: str) -> tuple[str, list[str]]:
    segments: list[str] = []
    pieces = raw.split("/")[1:] if raw.startswith("/") else raw.split("/")
    for i, piece in enumerate(pieces):
        lowered = piece.lower()
        last = i == len(pieces) - 1
        if lowered in _DOT_DOT:
            if segments:
                segments.pop()
            if last:
                segments.append("")
        elif lowered in _DOT:
            if last:
                segments.append("")
        else:
            segments.append(piece)
    decoded = [unquote(s, errors="replace") for s in segments]
    if raw.startswith("/") or (not raw and scheme in _SPECIAL):
        path = "/" + "/".join(decoded)
    else:
        path = "/".join(decoded)        # a URL without a path, or mailto:x@example.com
    return path, [s for s in decoded if s]
