"""The approvers registry: who may decide approvals, in which groups, with which credentials.

``approvers.yaml`` under the veto home, or the file ``VETO_APPROVERS`` names::

    version: 1
    approvers:
      alice:
        groups: [dba, sre-oncall]
        subjects: ["user:alice", {"id": 4711}]    # how her own calls name her (optional)
        keys:
          - id: tok-3f9a1c2b                       # an API token: only its salted scrypt hash
            kind: token
            salt: 9xW0...
            public_key: q3Zk...
          - id: key-5e1f0a9c2d7b8e44               # an Ed25519 key whose private half she keeps
            kind: ed25519
            public_key: Rr8p...

**Every vote is signed.** A token is never stored: the registry keeps a random salt and the
Ed25519 public key of ``scrypt(token, salt)``, so the token is checked by deriving the key
again and comparing, and the derived private key signs the approver's votes. An approver
with an Ed25519 key of their own signs with it. Whoever verifies a vote (the guard, before it
lets a call through; ``decisions verify``) needs only this file's public keys: an agent
process that can write the approval and record databases still cannot make a vote.

**The registry is the trust anchor.** Whoever can write it can add an approver. It is
created mode 0600 and refused when group or others may write it; where the agent runs as
the same user as the veto home, point ``VETO_APPROVERS`` at a file the agent's user cannot
write (owned by another user, readable by the agent).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from veto_opa.approvals.model import ANY, Request, names_in
from veto_opa.errors import ApprovalError
from veto_opa._json import canonical_json

REGISTRY_FILE = "approvers.yaml"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
TOKEN_PREFIX = "vat_"
# scrypt cost: 16 MiB and about 40 ms per check. Tokens are 256 random bits, so the cost
# is not what protects them; it keeps a stolen registry from being a fast oracle all the same.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_HEADER = ("# veto-opa approvers: who may decide approvals. Edit with `veto-opa approvers`;\n"
           "# tokens are not stored here, only salted scrypt hashes (as Ed25519 public keys).\n")

KeyKind = Literal["token", "ed25519"]


@dataclass(frozen=True)
class PublicKey:
    """A credential as the registry knows it."""

    key_id: str
    kind: KeyKind
    public_key: bytes
    salt: bytes | None = None

    def verify(self, signature: str, payload: bytes) -> bool:
        """Whether ``signature`` (``ed25519:<base64url>``) signs ``payload`` with this key."""
        if not signature.startswith("ed25519:"):
            return False
        try:
            raw = _b64decode(signature[len("ed25519:"):])
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(raw, payload)
        except (InvalidSignature, ValueError):
            return False
        return True

    def document(self) -> dict[str, Any]:
        value: dict[str, Any] = {"id": self.key_id, "kind": self.kind}
        if self.salt is not None:
            value["salt"] = _b64encode(self.salt)
        value["public_key"] = _b64encode(self.public_key)
        return value


@dataclass(frozen=True)
class Identity:
    """One registered approver.

    Attributes:
        name: the registry name, recorded with each vote.
        groups: the approver groups they belong to.
        subjects: the JSON values their own calls carry as subject, beside their name.
        keys: their credentials.
    """

    name: str
    groups: tuple[str, ...]
    subjects: tuple[Any, ...] = ()
    keys: tuple[PublicKey, ...] = ()

    def names(self) -> frozenset[str]:
        """Every name this person goes by as a requester (see ``model.names_in``)."""
        return names_in([self.name, *self.subjects])

    def requested(self, request: Request) -> bool:
        """Whether this approver is (or may be) the requester of ``request``."""
        return not self.names().isdisjoint(request.requesters())


class Signer:
    """An approver's private key, proven against the registry: signs their votes."""

    def __init__(self, identity: Identity, key_id: str, private_key: Ed25519PrivateKey) -> None:
        self.identity = identity
        self.key_id = key_id
        self._private_key = private_key

    def sign(self, payload: Mapping[str, Any]) -> str:
        """``ed25519:<base64url>`` over the canonical JSON of ``payload``."""
        raw = self._private_key.sign(canonical_json(dict(payload)).encode("utf-8"))
        return "ed25519:" + _b64encode(raw)

    def __repr__(self) -> str:   # never the key
        return f"Signer({self.identity.name!r}, key_id={self.key_id!r})"


@dataclass(frozen=True)
class Registry:
    """The approvers, by name. Immutable: editing returns a new registry (then ``save``)."""

    approvers: Mapping[str, Identity] = field(default_factory=dict)
    path: Path | None = None

    # -- reading -------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, missing_ok: bool = True) -> Registry:
        """Read a registry file.

        Args:
            path: the file.
            missing_ok: a missing file is an empty registry (nobody may approve).

        Raises:
            ApprovalError: unreadable, writable by group or others, or malformed.
        """
        path = Path(path)
        try:
            info = path.stat()
        except FileNotFoundError:
            if missing_ok:
                return cls({}, path)
            raise ApprovalError(f"no approvers registry at {path}") from None
        except OSError as exc:
            raise ApprovalError(f"cannot read the approvers registry {path}: {exc}") from exc
        check_permissions(path, info)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ApprovalError(f"cannot read the approvers registry {path}: {exc}") from exc
        return cls(_parse(data, path), path)

    def key(self, key_id: str) -> tuple[Identity, PublicKey] | None:
        """The approver holding key ``key_id`` and the key, or None."""
        for identity in self.approvers.values():
            for key in identity.keys:
                if key.key_id == key_id:
                    return identity, key
        return None

    def verify(self, approver: str, key_id: str, payload: Mapping[str, Any],
               signature: str | None) -> Identity:
        """The approver who signed ``payload``, checked against this registry.

        Raises:
            ApprovalError: no such approver or key, or the signature does not verify.
        """
        identity = self.approvers.get(approver)
        key = next((k for k in identity.keys if k.key_id == key_id), None) if identity else None
        if identity is None or key is None:
            raise ApprovalError(f"{approver!r} with key {key_id!r} is not a registered approver")
        if signature is None or not key.verify(
                signature, canonical_json(dict(payload)).encode("utf-8")):
            raise ApprovalError(f"the signature of {approver}'s vote does not verify")
        return identity

    # -- authenticating ------------------------------------------------------------------

    def signer_for_token(self, token: str) -> Signer:
        """The approver a token belongs to, with the key it derives.

        Raises:
            ApprovalError: not a token of this registry (the message does not say which
                part was wrong).
        """
        token = token.strip()
        parts = token.split("_", 2)
        found = (self.key(f"tok-{parts[1]}") if len(parts) == 3 and token.startswith(TOKEN_PREFIX)
                 else None)
        salt = found[1].salt if found is not None else None
        if found is None or salt is None:
            _derive(token, b"\0" * 16)   # the same work as a real check: no timing hint
            raise ApprovalError("the approver token is not valid")
        identity, key = found
        private_key = _derive(token, salt)
        public = private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                       serialization.PublicFormat.Raw)
        if not hmac.compare_digest(public, key.public_key):
            raise ApprovalError("the approver token is not valid")
        return Signer(identity, key.key_id, private_key)

    def signer_for_key(self, private_key: Ed25519PrivateKey) -> Signer:
        """The approver whose registered public key matches ``private_key``.

        Raises:
            ApprovalError: the key is not registered.
        """
        key_id = key_id_of(private_key.public_key())
        found = self.key(key_id)
        if found is None or found[1].kind != "ed25519":
            raise ApprovalError(f"the key {key_id} is not a registered approver's key")
        return Signer(found[0], key_id, private_key)

    # -- editing -------------------------------------------------------------------------

    def with_approver(self, identity: Identity) -> Registry:
        """This registry with ``identity`` added or replaced.

        Raises:
            ApprovalError: a bad name or group, or a key id another approver holds.
        """
        _check_identity(identity, self.path)
        for other in self.approvers.values():
            if other.name != identity.name:
                clash = {k.key_id for k in other.keys} & {k.key_id for k in identity.keys}
                if clash:
                    raise ApprovalError(f"key {sorted(clash)[0]} already belongs to {other.name}")
        return replace(self, approvers={**self.approvers, identity.name: identity})

    def without(self, name: str) -> Registry:
        """This registry without ``name``.

        Raises:
            ApprovalError: no such approver.
        """
        if name not in self.approvers:
            raise ApprovalError(f"no approver {name!r} in the registry")
        return replace(self, approvers={k: v for k, v in self.approvers.items() if k != name})

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the registry atomically, mode 0600 (its directory is created 0700).

        Raises:
            ApprovalError: the file cannot be written.
        """
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ApprovalError("the registry has no path to save to")
        document = {"version": 1, "approvers": {
            name: _identity_document(self.approvers[name]) for name in sorted(self.approvers)}}
        text = _HEADER + yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        try:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, target)
            except BaseException:
                if os.path.exists(temp):
                    os.unlink(temp)
                raise
        except OSError as exc:
            raise ApprovalError(f"cannot write the approvers registry {target}: {exc}") from exc
        return target


class RegistryFile:
    """A registry file, read again when it changes (size, mtime or inode), for long-lived
    processes: an approver removed from the file stops counting at the next check."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._registry: Registry | None = None

    def current(self) -> Registry:
        """The registry as the file holds it now.

        Raises:
            ApprovalError: as :meth:`Registry.load`.
        """
        try:
            info = self.path.stat()
            seen: tuple[int, int, int] | None = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            seen = None
        except OSError as exc:
            raise ApprovalError(f"cannot read the approvers registry {self.path}: {exc}") from exc
        with self._lock:
            if self._registry is None or seen != self._seen:
                self._registry = Registry.load(self.path)
                self._seen = seen
            return self._registry


def registry_path(home: str | os.PathLike[str], configured: str | os.PathLike[str] | None
                  = None) -> Path:
    """``configured`` (``VETO_APPROVERS``) if given, else ``<home>/approvers.yaml``."""
    return Path(configured) if configured else Path(home) / REGISTRY_FILE


def check_permissions(path: Path, info: os.stat_result | None = None) -> None:
    """Refuse a registry that group or others may write: whoever writes it adds approvers.

    Raises:
        ApprovalError: naming the mode and the fix.
    """
    info = info or path.stat()
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ApprovalError(
            f"the approvers registry {path} is writable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):o}); anyone who can write it can add an approver: "
            f"chmod 600 {path}")


def new_token_key(existing: Iterable[str] = ()) -> tuple[str, PublicKey]:
    """A fresh API token and the registry key that checks it; the token is shown once."""
    taken = set(existing)
    while True:
        token_id = secrets.token_hex(4)
        if f"tok-{token_id}" not in taken:
            break
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    salt = secrets.token_bytes(16)
    public = _derive(token, salt).public_key().public_bytes(serialization.Encoding.Raw,
                                                            serialization.PublicFormat.Raw)
    return token, PublicKey(f"tok-{token_id}", "token", public, salt)


def ed25519_key(public_key: Ed25519PublicKey) -> PublicKey:
    """The registry entry of an approver's own Ed25519 public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(key_id_of(public_key), "ed25519", raw)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """``key-`` and the first 16 hex digits of the sha256 of the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "key-" + hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(data: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS #8, unencrypted).

    Raises:
        ApprovalError: not an unencrypted Ed25519 private key.
    """
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ApprovalError(f"not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ApprovalError("the private key is not an Ed25519 key")
    return key


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM or OpenSSH (``ssh-ed25519 AAAA...``).

    Raises:
        ApprovalError: not an Ed25519 public key.
    """
    try:
        key = (serialization.load_ssh_public_key(data) if data.startswith(b"ssh-")
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError) as exc:
        raise ApprovalError(f"not a PEM or OpenSSH public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ApprovalError("the public key is not an Ed25519 key")
    return key


def _derive(token: str, salt: bytes) -> Ed25519PrivateKey:
    seed = hashlib.scrypt(token.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                          dklen=32)
    return Ed25519PrivateKey.from_private_bytes(seed)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _identity_document(identity: Identity) -> dict[str, Any]:
    value: dict[str, Any] = {"groups": list(identity.groups)}
    if identity.subjects:
        value["subjects"] = list(identity.subjects)
    value["keys"] = [k.document() for k in identity.keys]
    return value


def _check_identity(identity: Identity, path: Path | None) -> None:
    where = f" in {path}" if path else ""
    if not NAME_PATTERN.match(identity.name):
        raise ApprovalError(f"approver name {identity.name!r}{where} must be 1 to 64 letters, "
                            "digits or . _ @ -, starting with a letter or digit")
    for group in identity.groups:
        if not isinstance(group, str) or not group.strip():
            raise ApprovalError(f"approver {identity.name}{where}: group names must be "
                                f"non-empty strings, found {group!r}")
        if group == ANY:
            raise ApprovalError(f"approver {identity.name}{where}: '{ANY}' is reserved "
                                "(approvers: [any] means any registered approver)")
    if not identity.keys:
        raise ApprovalError(f"approver {identity.name}{where} has no credential (a token or "
                            "an Ed25519 public key)")


def _parse(data: Any, path: Path) -> dict[str, Identity]:
    def bad(message: str) -> ApprovalError:
        return ApprovalError(f"the approvers registry {path} is malformed: {message}")

    if data is None:
        return {}
    if not isinstance(data, dict) or data.get("version") != 1:
        raise bad("expected a mapping with 'version: 1' and 'approvers'")
    approvers = data.get("approvers") or {}
    if not isinstance(approvers, dict):
        raise bad("'approvers' must be a mapping of names")
    result: dict[str, Identity] = {}
    for name, entry in approvers.items():
        if not isinstance(name, str) or not isinstance(entry, dict):
            raise bad(f"approver {name!r} must be a mapping")
        groups = entry.get("groups", [])
        subjects = entry.get("subjects", [])
        raw_keys = entry.get("keys", [])
        if not isinstance(groups, list) or not isinstance(subjects, list) or not isinstance(
                raw_keys, list):
            raise bad(f"approver {name}: groups, subjects and keys must be lists")
        keys = []
        for raw in raw_keys:
            try:
                kind = raw["kind"]
                if kind not in ("token", "ed25519"):
                    raise ValueError(f"unknown key kind {kind!r}")
                public = _b64decode(raw["public_key"])
                salt = _b64decode(raw["salt"]) if kind == "token" else None
                if len(public) != 32 or (salt is not None and len(salt) < 16):
                    raise ValueError("wrong key or salt length")
                keys.append(PublicKey(str(raw["id"]), kind, public, salt))
            except (KeyError, TypeError, ValueError) as exc:
                raise bad(f"approver {name}: a key is malformed ({exc})") from None
        identity = Identity(name, tuple(groups), tuple(subjects), tuple(keys))
        _check_identity(identity, path)
        result[name] = identity
    seen: dict[str, str] = {}
    for identity in result.values():
        for key in identity.keys:
            if key.key_id in seen:
                raise bad(f"key {key.key_id} belongs to both {seen[key.key_id]} and "
                          f"{identity.name}")
            seen[key.key_id] = identity.name
    return result
