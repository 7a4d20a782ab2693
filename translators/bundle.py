"""OPA bundles: build, write, read, sign and verify them, and load them into the embedded engine.

A :class:`Bundle` is plain data (bundle-relative path -> bytes), written as a reproducible
``.tar.gz`` or a directory that ``opa run --bundle``, a bundle service and the embedded engine
all load unchanged::

    bundle = build_bundle({"veto/decision.rego": source}, revision="sha256:...")
    write_tar_gz(sign_bundle(bundle, key=private_pem, key_id="veto"), "bundle.tar.gz")
    verify_bundle(read_bundle("bundle.tar.gz"), key=public_pem, key_id="veto")

Layout, manifest checks and signatures follow OPA's ``v1/bundle`` (bundle.go, file.go, hash.go,
sign.go, verify.go). Deviations from OPA, each where it happens:

- Digests of structured files use :func:`go_json`, Go's encoder as of Go 1.22 (older Go
  wrote ``\\u0008``/``\\u000c`` for ``\\b``/``\\f``). A ``data.yaml`` (or a structured file that
  is not JSON) is read by PyYAML with go-yaml v2's float pattern added; other exotic scalars
  (sexagesimal ``1:20``, non-string keys) still differ from go-yaml.
- :func:`read_bundle` also refuses links, special files and files over :data:`MAX_FILE_SIZE`
  (OPA skips links and allows 1 GiB), and any path ending in ``signatures.json`` but
  ``.signatures.json`` (OPA would read it as the signatures).
- Manifest data checks descend into objects only where a root lies deeper, a simplification of
  OPA's ``dfs`` that differs only for empty objects.
- JSON nested deeper than Python's recursion limit (about 1000 levels; Go allows 10000) is
  refused with a BundleError.
- :func:`load_into_engine` leaves the ``*_test.rego`` modules out unless asked for them (an
  engine that decides does not need them, and they cost compile time); ``opa run`` loads them.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
import os
import re
import stat
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import jwt
import yaml

from veto_opa.errors import BundleError, SignatureError
from veto_opa.translators.source import MAX_DEPTH

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opa_bindings import OpaEngine

MANIFEST = ".manifest"
SIGNATURES = ".signatures.json"
MAX_FILE_SIZE = 64 * 1024 * 1024
"""Largest file :func:`read_bundle` accepts, in bytes."""
MAX_YAML_BYTES = 4 * 1024 * 1024
"""Largest ``data.yaml`` accepted, in bytes: the limit of a policy file (``loader.py``)."""
ALGORITHMS = frozenset(f"{kind}{bits}" for kind in ("RS", "PS", "ES", "HS")
                       for bits in (256, 384, 512))
"""The JWT algorithms OPA signs and verifies bundles with."""

_DATA_FILES = ("data.json", "data.yaml", "data.yml")  # the names OPA loads as data
_STRUCTURED = frozenset({"data.json", "data.yaml", "signatures.json", MANIFEST})  # IsStructuredDoc
_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-224": "sha224", "SHA-256": "sha256",
           "SHA-384": "sha384", "SHA-512": "sha512", "SHA-512-224": "sha512_224",
           "SHA-512-256": "sha512_256"}
_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([^\s#]+)", re.MULTILINE)
_PACKAGE_REF = re.compile(r'[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\["(?:[^"\\]|\\.)*"\])*', re.ASCII)
_PACKAGE_PART = re.compile(r'([A-Za-z_]\w*)|\["((?:[^"\\]|\\.)*)"\]', re.ASCII)
_TAR_KINDS = {tarfile.SYMTYPE: "symbolic link", tarfile.LNKTYPE: "hard link",
              tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
              tarfile.FIFOTYPE: "FIFO"}


@dataclass(frozen=True)
class Bundle:
    """An OPA bundle as data: bundle-relative POSIX path -> bytes, read-only and in path order.

    ``files`` includes ``.manifest`` and, once signed, ``.signatures.json``. Paths are checked on
    construction: relative, no empty, ``.`` or ``..`` parts.
    """

    files: Mapping[str, bytes]

    def __post_init__(self) -> None:
        for path, data in self.files.items():
            _check_path(path)
            if not isinstance(data, bytes):
                raise BundleError(f"{path}: expected bytes, found {type(data).__name__}")
        object.__setattr__(self, "files", MappingProxyType(dict(sorted(self.files.items()))))

    @property
    def manifest(self) -> dict[str, Any]:
        """The parsed ``.manifest``; ``{}`` when absent, as OPA reads a bundle without one."""
        manifest = _parse_json(MANIFEST, self.files.get(MANIFEST, b"{}"))
        if not isinstance(manifest, dict):
            raise BundleError(f"{MANIFEST}: expected a JSON object, found {manifest!r}")
        return manifest

    @property
    def revision(self) -> str:
        """The manifest's ``revision``, ``""`` when absent."""
        revision = self.manifest.get("revision", "")
        if not isinstance(revision, str):
            raise BundleError(f"{MANIFEST}: expected a string revision, found {revision!r}")
        return revision

    def modules(self) -> dict[str, str]:
        """Every ``*.rego`` file as ``{path: source}``; BundleError if one is not UTF-8."""
        try:
            return {p: d.decode("utf-8") for p, d in self.files.items() if p.endswith(".rego")}
        except UnicodeDecodeError as error:
            raise BundleError(f"a Rego module is not valid UTF-8: {error}") from None

    def data_documents(self) -> list[tuple[str, object]]:
        """Every ``data.json``/``data.yaml`` as ``(dotted data path, value)``.

        The file's directory is the path; a root-level file has ``""`` and merges into ``data``.
        """
        return [(".".join(parts), value) for parts, value in self._data()]

    def _data(self) -> list[tuple[list[str], object]]:
        documents = []
        for path, data in self.files.items():
            *parts, name = path.split("/")
            if name in _DATA_FILES:
                value = _parse_json(path, data) if name == "data.json" else _parse_yaml(path, data)
                documents.append((parts, value))
        return documents


def build_bundle(
    modules: Mapping[str, str],
    *,
    revision: str,
    roots: Sequence[str] = ("veto",),
    metadata: Mapping[str, object] | None = None,
    data: Mapping[str, object] | None = None,
) -> Bundle:
    """Build a bundle from Rego sources, with a canonical-JSON ``.manifest``.

    Args:
        modules: bundle path (``"veto/decision.rego"``) -> Rego source.
        revision: the manifest revision (veto-opa uses the sha256 of the policy sources).
        roots: the data paths the bundle owns; they must not overlap.
        metadata: a JSON object, the manifest's ``metadata``.
        data: bundle directory (``"veto/x"``, ``""`` for the root) -> JSON value, written as
            ``<dir>/data.json``.

    Returns:
        The bundle; equal arguments give equal bundles and byte-identical archives.

    Raises:
        BundleError: a path is unsafe or not ``*.rego``, roots overlap, a package or a data
            document lies outside the roots, or a value is not JSON.
    """
    if isinstance(roots, str):
        raise BundleError(f"expected a sequence of roots such as ['veto'], found {roots!r}")
    manifest = {"revision": revision, "roots": list(roots), "rego_version": 1,
                "metadata": dict(metadata or {})}
    files = {MANIFEST: go_json(manifest) + b"\n"}
    for path, source in modules.items():
        if not path.endswith(".rego") or not isinstance(source, str):
            raise BundleError(f"{path}: expected a '.rego' path and its source text")
        files[path] = source.encode("utf-8")
    for directory, value in (data or {}).items():
        # Sorted and compact is enough for reproducible bytes; signatures hash the parsed
        # value (go_json) whatever the layout.
        try:
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)
        except (TypeError, ValueError) as e:
            raise BundleError(f"{directory}/data.json: not JSON: {e}") from None
        files[f"{directory}/data.json".lstrip("/")] = text.encode("utf-8") + b"\n"
    bundle = Bundle(files)
    # The data documents are checked from the values at hand rather than parsed back.
    _check_roots(bundle, [(d.strip("/").split("/") if d.strip("/") else [], v)
                          for d, v in (data or {}).items()])
    return bundle


def to_tar_gz(bundle: Bundle) -> bytes:
    """Return the bundle as a byte-for-byte reproducible gzipped tarball.

    Entries are the files in path order, named ``/<path>`` as ``opa build`` names them (OPA's
    reader strips the ``/``), regular files with mode 0644, uid/gid 0, no owner names and mtime
    0, without directory entries. The gzip header has mtime 0 and no file name; the level is
    fixed at 9, so the bytes depend only on the files and the zlib build.

    Args:
        bundle: the bundle to archive.

    Returns:
        The ``.tar.gz`` bytes.
    """
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in bundle.files.items():
            info = tarfile.TarInfo("/" + path)
            info.size, info.mode, info.mtime, info.type = len(data), 0o644, 0, tarfile.REGTYPE
            info.uid, info.gid, info.uname, info.gname = 0, 0, "", ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        gz.write(tar_bytes.getvalue())
    return out.getvalue()


def bundle_digest(bundle: Bundle) -> str:
    """Return the sha256 of a bundle's archive: equal digests mean byte-identical archives.

    Args:
        bundle: the bundle.

    Returns:
        The hex digest of :func:`to_tar_gz` of the bundle.
    """
    return hashlib.sha256(to_tar_gz(bundle)).hexdigest()


def write_tar_gz(bundle: Bundle, path: str | os.PathLike[str]) -> None:
    """Write the bundle's :func:`to_tar_gz` bytes to a file, atomically (a temporary file
    renamed over it): a bundle server serving the file's directory never serves half of it.

    Args:
        bundle: the bundle.
        path: the file to write, replaced if it exists.
    """
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_bytes(to_tar_gz(bundle))
    os.replace(temporary, target)   # a bundle server never serves half a file


def write_directory(bundle: Bundle, directory: str | os.PathLike[str]) -> None:
    """Write the bundle's files under ``directory``, which then holds exactly those files.

    Args:
        bundle: the bundle to write.
        directory: created if missing. An existing one must be empty or hold a previous bundle
            (a top-level ``.manifest``), whose files the new bundle lacks are removed so that
            OPA loads no stale module.

    Raises:
        BundleError: the directory is a file, holds something that is not a bundle, or holds
            a link or special file.
    """
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise BundleError(f"{root}: expected a directory, found a file")
    if root.is_dir() and any(root.iterdir()):
        if not (root / MANIFEST).is_file():
            raise BundleError(f"{root}: expected an empty directory or a previous bundle "
                              f"(with a {MANIFEST}), found other files")
        for stale in set(_read_directory(root)) - set(bundle.files):
            root.joinpath(stale).unlink()
        for dirpath, _, _ in sorted(os.walk(root), reverse=True):  # deepest first
            if Path(dirpath) != root and not any(Path(dirpath).iterdir()):
                Path(dirpath).rmdir()
    for path, data in bundle.files.items():
        target = root.joinpath(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def read_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read a bundle from a ``.tar.gz`` file or a directory.

    Tar names may start with one ``/`` (as ``opa build`` writes them) or ``./`` (as ``tar -C``
    does); directory entries are skipped, as OPA's loader skips them.

    Args:
        path: the archive or directory.

    Returns:
        The bundle, with its manifest checked as :func:`build_bundle` checks it.

    Raises:
        BundleError: not a gzipped tar, or an entry that is absolute, contains ``..``, is a link
            or another non-regular file, or is larger than :data:`MAX_FILE_SIZE`.
    """
    source = Path(path)
    if source.is_dir():
        bundle = Bundle(_read_directory(source))
    elif source.is_file():
        bundle = Bundle(_read_tar_gz(source))
    else:
        raise BundleError(f"{source}: expected a bundle archive or directory, found nothing")
    _check_roots(bundle)
    return bundle


def load_into_engine(bundle: Bundle, engine: OpaEngine, *, tests: bool = False) -> None:
    """Add the bundle's modules (named by their bundle paths) and data documents to an engine.

    Unlike ``opa run``, which compiles every module of a bundle, test modules (``*_test.rego``)
    are left out unless ``tests`` is true: an engine that makes decisions never reads them,
    and OPA checks each rule that depends on ``data.veto.decision`` for recursion with a walk
    of every generated rule, so the library's own tests made up about a third of the time
    to load 1,000 rules. The bundle itself keeps them; ``regotest`` runs them.

    Args:
        bundle: the bundle; its ``rego_version`` must be 1, the engine's Rego.
        engine: an ``opa_bindings.OpaEngine``.
        tests: also add the ``*_test.rego`` modules, as ``opa run`` would.

    Raises:
        BundleError: the engine rejected a module or a data document (with OPA's message).
    """
    from opa_bindings import OpaError

    if (version := bundle.manifest.get("rego_version", 1)) != 1:
        raise BundleError(f"{MANIFEST}: expected rego_version 1, found {version!r}")
    try:
        for path, source in bundle.modules().items():
            if tests or not path.endswith("_test.rego"):
                engine.add_policy(path, source)
        for parts, value in bundle._data():
            if not parts and not isinstance(value, dict):
                raise BundleError(f"data.json: expected an object at the root, found {value!r}")
            for part in reversed(parts):  # nested, not a dotted path: a segment may hold a dot
                value = {part: value}
            engine.add_data(value)
    except OpaError as error:
        raise BundleError(f"the engine rejected the bundle: {error.message}") from None


def sign_bundle(
    bundle: Bundle,
    *,
    key: bytes | str,
    algorithm: str = "RS256",
    key_id: str | None = None,
    scope: str | None = None,
    claims: Mapping[str, object] | None = None,
) -> Bundle:
    """Return the bundle with a ``.signatures.json`` in OPA's format, replacing any old one.

    It holds one JWT: header ``{"alg", "typ": "JWT", "kid"?}``, payload ``{"files": [{"name",
    "hash", "algorithm": "SHA-256"}, ...], "scope"?, **claims}`` with the files sorted by name.
    RS* and HS* signatures are deterministic, so signed bundles stay reproducible.

    Args:
        bundle: the bundle to sign.
        key: a PEM private key (RS*, PS*, ES*) or the raw shared secret (HS*).
        algorithm: one of :data:`ALGORITHMS`.
        key_id: the header ``kid``.
        scope: the ``scope`` claim.
        claims: more payload claims, not ``files``.

    Returns:
        The signed bundle.

    Raises:
        BundleError: an unknown algorithm, an unusable key, or ``files`` among the claims.
    """
    if algorithm not in ALGORITHMS:
        raise BundleError(f"expected an algorithm in {sorted(ALGORITHMS)}, found {algorithm!r}")
    if claims and "files" in claims:
        raise BundleError("expected claims without 'files', found 'files' (the files are listed)")
    files = {p: d for p, d in bundle.files.items() if p != SIGNATURES}
    listed = [{"name": p, "hash": _digest(p, d, "SHA-256"), "algorithm": "SHA-256"}
              for p, d in files.items()]
    payload: dict[str, Any] = {**(claims or {}), "files": listed}
    if scope is not None:
        payload["scope"] = scope
    try:
        token = jwt.encode(payload, key, algorithm, headers={"kid": key_id} if key_id else None)
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        raise BundleError(f"cannot sign the bundle with {algorithm}: {error}") from None
    return Bundle({**files, SIGNATURES: go_json({"signatures": [token]}) + b"\n"})


def verify_bundle(
    bundle: Bundle,
    *,
    key: bytes | str,
    algorithm: str = "RS256",
    key_id: str | None = None,
    scope: str | None = None,
) -> None:
    """Verify a signed bundle as OPA's ``v1/bundle/verify.go`` does.

    ``.signatures.json`` must hold exactly one JWT. Its key id is ``key_id``, else the header
    ``kid``, else the deprecated ``keyid`` claim; an empty one fails (with one key given, the id
    only has to be there). The signature must verify with ``key``; the ``scope`` claim must
    equal ``scope``, an absent one counting as ``""`` on both sides as in OPA; the signed files
    must be exactly the bundle's files but ``.signatures.json``, each with its digest.

    Args:
        bundle: the bundle to check.
        key: the PEM public key (RS*, PS*, ES*) or the shared secret (HS*).
        algorithm: the algorithm the key is for.
        key_id: the configured key id, which takes precedence over the token's.
        scope: the configured scope.

    Raises:
        SignatureError: a missing or malformed ``.signatures.json``, a bad signature, a scope
            mismatch, or a file that is unsigned, missing or altered (naming the file).
    """
    if SIGNATURES not in bundle.files:
        raise SignatureError(f"expected a signed bundle, found no {SIGNATURES}")
    if algorithm not in ALGORITHMS:
        raise SignatureError(f"expected an algorithm in {sorted(ALGORITHMS)}, found {algorithm!r}")
    config = _parse_json(SIGNATURES, bundle.files[SIGNATURES])
    tokens = config.get("signatures") if isinstance(config, dict) else None
    if isinstance(config, dict) and config.get("plugin"):
        raise SignatureError(f"{SIGNATURES}: expected no plugin, found {config['plugin']!r}")
    if not isinstance(tokens, list) or len(tokens) != 1 or not isinstance(tokens[0], str):
        raise SignatureError(f"{SIGNATURES}: expected exactly one JWT, found {tokens!r}")
    try:
        unverified = jwt.PyJWS().decode_complete(tokens[0], options={"verify_signature": False})
        if not (key_id or unverified["header"].get("kid")
                or json.loads(unverified["payload"]).get("keyid")):
            raise SignatureError("verification key ID is empty: pass key_id or sign with one")
        signed = jwt.PyJWS().decode_complete(tokens[0], key, algorithms=[algorithm])
        payload = json.loads(signed["payload"])
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError) as error:
        raise SignatureError(f"{SIGNATURES}: the JWT does not verify with the {algorithm} "
                             f"key: {error}") from None
    files = _signed_files(payload)
    if (payload.get("scope") or "") != (scope or ""):
        raise SignatureError(f"scope mismatch: expected {scope or ''!r}, "
                             f"found {payload.get('scope') or ''!r}")
    for path, data in bundle.files.items():
        if path == SIGNATURES:
            continue
        if path not in files:
            raise SignatureError(f"{path}: file not included in the bundle signature")
        want, hash_algorithm = files.pop(path)
        try:
            got = _digest(path, data, hash_algorithm)
        except BundleError as error:  # e.g. a data.json altered into something unparsable
            raise SignatureError(str(error)) from None
        if want.lower() != got:
            raise SignatureError(f"{path}: digest mismatch (signed {want}, found {got})")
    if files:
        raise SignatureError(f"file(s) {sorted(files)} specified in the bundle signature "
                             "but not found in the bundle")


def go_json(value: object) -> bytes:
    """Encode a JSON value as OPA's ``v1/bundle/hash.go`` does before hashing it.

    Objects have their keys sorted bytewise; there is no whitespace. Strings are escaped as
    Go's ``encoding/json`` escapes them with HTML escaping off: ``\\"``, ``\\\\`` and the short
    forms ``\\b \\f \\n \\r \\t``, other controls as ``\\u00xx``, U+2028/U+2029 as ``\\u2028``/
    ``\\u2029``, everything else (``<>&``, DEL, non-ASCII) as raw UTF-8. A lone surrogate becomes
    U+FFFD, as Go's decoder makes ``"\\ud800"`` U+FFFD (Go's ``\\ufffd`` escape for invalid UTF-8
    cannot arise from a Python string). Floats are formatted as Go formats a float64: shortest
    digits, exponent form below 1e-6 and from 1e21 (``1e+21``, ``1e-7``), ``-0`` for -0.0. Ints
    are decimal, as the json.Number literal OPA keeps when it parses a file.

    Args:
        value: None, bool, int, float, str, list/tuple, or a mapping with string keys.

    Returns:
        The encoded bytes (UTF-8, no trailing newline).

    Raises:
        BundleError: NaN or an infinity (Go refuses them), a non-string key or a non-JSON type.
    """
    out = bytearray()
    _encode(value, out)
    return bytes(out)


# -- JSON as Go writes and reads it --------------------------------------------------------------

class _Number(str):
    """A JSON number literal kept verbatim, as Go's decoder keeps a ``json.Number``."""


_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPED = re.compile('["\\\\\x00-\x1f\u2028\u2029\ud800-\udfff]')
_SURROGATE = re.compile("[\ud800-\udfff]")


def _encode(value: object, out: bytearray) -> None:
    if isinstance(value, _Number):
        out += value.encode()
    elif value is None or isinstance(value, bool):
        out += b"null" if value is None else b"true" if value else b"false"
    elif isinstance(value, int):
        out += str(value).encode()
    elif isinstance(value, float):
        out += _go_float(value).encode()
    elif isinstance(value, str):
        out += b'"' + _GO_ESCAPED.sub(_go_escape, value).encode() + b'"'
    elif isinstance(value, (list, tuple)):
        out += b"["
        for i, item in enumerate(value):
            out += b"," if i else b""
            _encode(item, out)
        out += b"]"
    elif isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        # Go sorts the decoded keys bytewise (surrogates already U+FFFD; a repeated key: last wins)
        items = {_SURROGATE.sub("\ufffd", k).encode(): v for k, v in value.items()}
        out += b"{"
        for i, key in enumerate(sorted(items)):
            out += b"," if i else b""
            _encode(key.decode(), out)
            out += b":"
            _encode(items[key], out)
        out += b"}"
    else:
        raise BundleError(f"expected a JSON value with string keys, found {value!r:.100}")


def _go_escape(match: re.Match[str]) -> str:
    char = match.group()
    if "\ud800" <= char <= "\udfff":
        return "\ufffd"
    return _GO_ESCAPES.get(char) or f"\\u{ord(char):04x}"


def _go_float(value: float) -> str:
    if value != value or abs(value) == float("inf"):
        raise BundleError(f"expected a finite number, found {value}: Go's encoding/json refuses it")
    if value != 0 and not 1e-6 <= abs(value) < 1e21:
        # repr writes these in exponent form with shortest digits; Go cuts "e-07" to "e-7".
        return re.sub(r"e-0(\d)$", r"e-\1", repr(value))
    return format(Decimal(repr(value)).normalize(), "f")


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _go_decode(data: bytes) -> str:
    """UTF-8 as Go's decoder reads it: each byte of an ill-formed sequence is one U+FFFD
    (Python's "replace" would make one U+FFFD of a whole truncated sequence)."""
    return _ESCAPED_BYTE.sub("\ufffd", data.decode("utf-8", "surrogateescape"))


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _parse_json(path: str, data: bytes) -> Any:
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        raise BundleError(f"{path}: expected JSON, found invalid text ({error})") from None


class _YamlLoader(yaml.SafeLoader):
    """YAML read as JSON data: timestamps stay strings, 1e21 is a float as in go-yaml v2."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


_YamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(  # go-yaml resolve.go
    r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"), list("-+.0123456789"))


def _parse_yaml(path: str, data: bytes) -> Any:
    """YAML bundle data, under the limits policy files have (``source.py``): at most
    :data:`MAX_YAML_BYTES`, :data:`~veto_opa.translators.source.MAX_DEPTH` levels, and no
    more values, aliases expanded, than the text has characters plus 100,000 — so that an
    alias bomb (``a: &a [*b, *b, ...]``) is refused after composing, which is cheap, and
    before it is built, which is not."""
    if len(data) > MAX_YAML_BYTES:
        raise BundleError(f"{path}: expected at most {MAX_YAML_BYTES} bytes of YAML data "
                          f"(the limit of a policy file), found {len(data)}")
    try:
        loader = _YamlLoader(data)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_yaml_size(node, budget=len(data) + 100_000)
                value = loader.construct_document(node)
            else:
                value = None
        finally:
            loader.dispose()
        go_json(value)  # refuses what JSON cannot hold
    except _YamlLimit as error:
        raise BundleError(f"{path}: {error}") from None
    except (yaml.YAMLError, BundleError, RecursionError) as error:
        raise BundleError(f"{path}: expected JSON or YAML data, found: {error}") from None
    return value


class _YamlLimit(Exception):
    """YAML data over one of the limits policy files have."""


def _check_yaml_size(root: yaml.Node, *, budget: int) -> None:
    """Refuse a composed YAML document that nests deeper than MAX_DEPTH or expands, through
    aliases, to more than ``budget`` values. Each node's expanded size is computed once
    (aliases share nodes), so the check costs the size of the text, not of the expansion."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    # Iterative, post-order: (node, depth, children visited?)
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 0, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            children = _yaml_children(node)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[key] > budget:
                raise _YamlLimit("the document expands to too many values through aliases "
                                 f"(more than {budget}; a YAML alias bomb?)")
            continue
        if key in sizes:
            continue
        if depth >= MAX_DEPTH:
            raise _YamlLimit(f"the YAML nests too deeply (more than {MAX_DEPTH} levels)")
        if key in active:
            raise _YamlLimit("recursive alias: a value contains itself")
        active.add(key)
        stack.append((node, depth, True))
        for child in _yaml_children(node):
            if id(child) in active:
                raise _YamlLimit("recursive alias: a value contains itself")
            if id(child) not in sizes:
                stack.append((child, depth + 1, False))


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def _digest(path: str, data: bytes, algorithm: str) -> str:
    """Hash a file as OPA's VerifyBundleFile: structured files parsed as util.Unmarshal does
    (BOM dropped; JSON with numbers verbatim and bad UTF-8 as U+FFFD; else YAML)."""
    if algorithm not in _HASHES:
        raise SignatureError(f"{path}: expected a hash in {sorted(_HASHES)}, found {algorithm!r}")
    if path.rsplit("/", 1)[-1] in _STRUCTURED:
        text = _go_decode(data.removeprefix(codecs.BOM_UTF8))
        try:
            value = json.loads(text, parse_float=_Number, parse_int=_Number,
                               parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            value = _parse_yaml(path, data)
        data = go_json(value)
    return hashlib.new(_HASHES[algorithm], data).hexdigest()


def _signed_files(payload: object) -> dict[str, tuple[str, str]]:
    files = payload.get("files") if isinstance(payload, dict) else None
    fields = ("name", "hash", "algorithm")
    if not isinstance(files, list) or not all(
            isinstance(f, dict) and all(isinstance(f.get(k), str) for k in fields) for f in files):
        raise SignatureError(f"expected 'files' of {{name, hash, algorithm}}, found {files!r}")
    assert isinstance(payload, dict)
    if not isinstance(scope := payload.get("scope"), (str, type(None))):
        raise SignatureError(f"expected a string scope, found {scope!r}")
    return {f["name"]: (f["hash"], f["algorithm"]) for f in files}  # a repeated name: last wins


# -- paths, roots, archives ----------------------------------------------------------------------

def _check_path(path: object) -> None:
    if not isinstance(path, str) or not path or "\\" in path or "\0" in path:
        raise BundleError(f"expected a bundle-relative POSIX path, found {path!r}")
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        raise BundleError(f"{path!r}: expected a bundle-relative path, found an absolute path")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise BundleError(f"{path!r}: expected a path inside the bundle, found a {part!r} part")
    if path.endswith("signatures.json") and path != SIGNATURES:
        raise BundleError(f"{path!r}: OPA reads any file ending in 'signatures.json' as the "
                          f"signatures; expected only {SIGNATURES}")


def _root_contains(root: str, path: str) -> bool:
    """OPA's RootPathsContain for one root: "" holds everything, else a segment prefix."""
    r, p = root.strip("/").split("/"), path.strip("/").split("/")
    return r == [""] or r == p[:len(r)]


def _package_path(path: str, source: str) -> str:
    match = _PACKAGE.search(source)
    if not match:
        raise BundleError(f"{path}: expected a 'package' declaration, found none")
    if not _PACKAGE_REF.fullmatch(ref := match.group(1)):
        raise BundleError(f"{path}: expected a package path such as 'veto.lib', found {ref!r}")
    return "/".join(m[0] or json.loads(f'"{m[1]}"') for m in _PACKAGE_PART.findall(ref))


def _check_roots(bundle: Bundle,
                 data: list[tuple[list[str], object]] | None = None) -> None:
    """Refuse what OPA's validateAndInjectDefaults refuses: overlapping roots, packages and
    data outside the roots (``data``: the bundle's data documents, read from it if None)."""
    roots = bundle.manifest.get("roots", [""])
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise BundleError(f"{MANIFEST}: expected 'roots' to be a list of strings, found {roots!r}")
    for i, a in enumerate(roots):
        for b in roots[i + 1:]:
            if _root_contains(a, b) or _root_contains(b, a):
                raise BundleError(f"{MANIFEST}: expected roots that do not overlap, "
                                  f"found {a!r} and {b!r}")
    for path, source in bundle.modules().items():
        if not any(_root_contains(r, package := _package_path(path, source)) for r in roots):
            raise BundleError(f"{path}: expected a package under the roots {roots}, "
                              f"found 'package {package.replace('/', '.')}'")
    for parts, value in bundle._data() if data is None else data:
        _check_data_roots(roots, parts, value)


def _check_data_roots(roots: list[str], parts: list[str], value: object) -> None:
    path = "/".join(parts)
    if any(_root_contains(r, path) for r in roots):
        return
    if not isinstance(value, dict) or not any(_root_contains(path, r) for r in roots):
        raise BundleError(f"expected data under the roots {roots}, found data at '/{path}'")
    for key, child in value.items():  # a root lies deeper: each child must fit under one
        _check_data_roots(roots, [*parts, key], child)


def from_tar_gz(data: bytes, *, source: str = "the archive") -> Bundle:
    """Read a bundle from ``.tar.gz`` bytes (a download), as :func:`read_bundle` reads a file.

    Raises:
        BundleError: as :func:`read_bundle`; messages name ``source``.
    """
    bundle = Bundle(_read_tar_gz(io.BytesIO(data), source))
    _check_roots(bundle)
    return bundle


def _read_tar_gz(source: Path | io.BytesIO, name: str | None = None) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    try:
        with (tarfile.open(source, mode="r:gz") if isinstance(source, Path)
              else tarfile.open(fileobj=source, mode="r:gz")) as tar:
            for member in tar:
                if member.isdir():
                    continue
                _check_path(name := member.name.removeprefix("/").removeprefix("./"))
                if not member.isreg():
                    kind = _TAR_KINDS.get(member.type, f"member of type {member.type!r}")
                    raise BundleError(f"{member.name}: expected a regular file, found a {kind}")
                if member.size > MAX_FILE_SIZE:
                    raise BundleError(f"{member.name}: expected at most {MAX_FILE_SIZE} bytes, "
                                      f"found {member.size}")
                if name in files:
                    raise BundleError(f"{member.name}: expected each path once, found it twice")
                extracted = tar.extractfile(member)   # a regular file: never None
                if extracted is None:
                    raise BundleError(f"{member.name}: cannot be read")
                files[name] = extracted.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise BundleError(f"{name or source}: expected a gzip-compressed tar archive, "
                          f"found unreadable data ({error})") from None
    return files


def _read_directory(root: Path) -> dict[str, bytes]:
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in (Path(dirpath, name) for name in dirnames + filenames):
            status, path = entry.lstat(), entry.relative_to(root).as_posix()
            if stat.S_ISDIR(status.st_mode):
                continue
            if not stat.S_ISREG(status.st_mode):
                kind = "symbolic link" if stat.S_ISLNK(status.st_mode) else "special file"
                raise BundleError(f"{path}: expected a regular file or directory, found a {kind}")
            if status.st_size > MAX_FILE_SIZE:
                raise BundleError(f"{path}: expected at most {MAX_FILE_SIZE} bytes, "
                                  f"found {status.st_size}")
            files[path] = entry.read_bytes()
    return files
