"""Bundles at runtime: signature checks at load, and a client of an OPA bundle service.

    key = BundleKey.from_file("public.pem", key_id="veto")        # RS256 unless told
    bundle = load_bundle("build/veto.tar.gz", key)                 # SignatureError if not signed
    service = BundleService("https://bundles.example/veto.tar.gz", activate=engine.reload,
                            key=key, persist_dir=Path(".veto"))
    service.start()      # the persisted copy, one download, then polling in a thread
    service.status()     # BundleStatus, in OPA's status format

**Signatures.** With a :class:`BundleKey`, a bundle is refused unless ``.signatures.json``
verifies with that key as OPA >= 1.21.3 verifies it with ``signing.keyid`` set (OPA's
``v1/bundle/verify.go``, through :func:`~veto_opa.translators.bundle.verify_bundle`): an
unsigned bundle is refused, the configured key id selects the key whatever the token's
``kid`` says, the token's algorithm must be the key's, every file must be signed with its
digest, no signed file may be missing and the ``scope`` claim must equal the configured one.
The key id is required (GHSA-g2pf-6v5v-qcc8: OPA before 1.21.3 skipped verification of a
bundle stripped of its signatures when no key id was configured).

**The bundle service**, as OPA's bundle plugin and downloader (``v1/download/download.go``,
``v1/plugins/bundle/plugin.go``) poll one: ``GET <url>`` with ``If-None-Match: <ETag>`` of the
bundle last activated and ``Prefer: modes=snapshot,delta`` (``;wait=N`` with long polling);
``304`` keeps what is active; ``200`` is read, verified and activated atomically (the
embedded engine's ``reload`` keeps calls in flight on the old engines); any failure keeps
the last good bundle and is reported in :meth:`BundleService.status`. Delays: after a
success a uniform draw between ``min_delay`` and ``max_delay`` (0 when the server long-polls:
it answered ``Content-Type: application/vnd.openpolicyagent.bundles``); after the n-th failure
in a row OPA's backoff (0, then 0.1 s x 1.6^n up to ``max_delay``, +-20 % jitter). With
``persist_dir`` the raw archive of each activated bundle is written to
``<persist_dir>/bundles/<name>/bundle.tar.gz`` (a temporary file renamed) and, verified again,
activated at the next start before anything is downloaded, as OPA's ``persist: true``.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from veto_opa import __version__
from veto_opa.engines.rest import tls_context
from veto_opa.errors import BundleError, VetoError
from veto_opa.opa_formats import BundleStatus
from veto_opa.translators.bundle import (
    ALGORITHMS,
    MAX_FILE_SIZE,
    Bundle,
    from_tar_gz,
    read_bundle,
    verify_bundle,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from veto_opa.config import VetoSettings

log = logging.getLogger("veto_opa")

LONG_POLL_TYPE = "application/vnd.openpolicyagent.bundles"
"""The content type with which a bundle server says it long-polls."""


@dataclass(frozen=True)
class BundleKey:
    """The key bundles must be signed with.

    Attributes:
        key: the PEM public key (RS*, PS*, ES*) or the shared secret (HS*).
        key_id: the key's id (OPA's ``signing.keyid``); required, never taken from the bundle.
        algorithm: one of OPA's JWT algorithms (``RS256`` by default, as OPA's).
        scope: the ``scope`` claim the signature must carry (None: no scope).
    """

    key: bytes
    key_id: str
    algorithm: str = "RS256"
    scope: str | None = None

    def __post_init__(self) -> None:
        if not self.key_id:
            raise VetoError("a bundle verification key needs an explicit key id (key_id=, "
                            "VETO_BUNDLE_KEY_ID), as OPA >= 1.21.3 is configured with "
                            "signing.keyid")
        if self.algorithm not in ALGORITHMS:
            raise VetoError(f"expected a bundle signing algorithm in {sorted(ALGORITHMS)}, "
                            f"found {self.algorithm!r}")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, key_id: str | None,
                  algorithm: str = "RS256", scope: str | None = None) -> BundleKey:
        """Read the key from a file (a shared secret without its trailing newline).

        Raises:
            VetoError: the file cannot be read, no key id, or an unknown algorithm.
        """
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise VetoError(f"cannot read the bundle verification key {path}: "
                            f"{error.strerror}") from None
        if algorithm.upper().startswith("HS"):
            data = data.rstrip(b"\r\n")
        return cls(data, key_id or "", algorithm, scope)

    def verify(self, bundle: Bundle) -> Bundle:
        """Return ``bundle`` if its signature verifies with this key.

        Raises:
            SignatureError: unsigned, tampered, signed with another key or scope.
        """
        verify_bundle(bundle, key=self.key, algorithm=self.algorithm, key_id=self.key_id,
                      scope=self.scope)
        return bundle


def load_bundle(path: str | os.PathLike[str], key: BundleKey | None) -> Bundle:
    """Read a bundle (``.tar.gz`` or directory) and, with a key, verify it.

    Raises:
        BundleError: unreadable or malformed; SignatureError (a BundleError) when a key is
            given and the signature does not verify.
    """
    bundle = read_bundle(path)
    return key.verify(bundle) if key is not None else bundle


@dataclass(frozen=True)
class Polling:
    """When to poll (OPA's ``polling`` of a bundle): seconds between successful polls are
    drawn between ``min_delay`` and ``max_delay``; ``long_polling_timeout`` asks the server
    to hold the request up to that many seconds (``Prefer: wait=N``)."""

    min_delay: float = 60.0
    max_delay: float = 120.0
    long_polling_timeout: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.min_delay <= self.max_delay:
            raise VetoError(f"bundle polling needs 0 <= min_delay <= max_delay, found "
                            f"{self.min_delay} and {self.max_delay}")
        if self.long_polling_timeout is not None and self.long_polling_timeout < 1:
            raise VetoError("long_polling_timeout must be at least 1 second, found "
                            f"{self.long_polling_timeout}")


def backoff(retries: int, max_delay: float) -> float:
    """OPA's retry delay after ``retries`` failures in a row (``util.DefaultBackoff``)."""
    if retries == 0:
        return 0.0
    delay = 0.1
    while delay < max_delay and retries > 0:
        delay *= 1.6
        retries -= 1
    delay = min(delay, max_delay)
    return max(0.0, delay * (1 + 0.2 * (random.random() * 2 - 1)))


@dataclass
class _State:
    etag: str = ""                 # the ETag of the bundle last activated
    long_poll: bool = False        # ask for long polls (the server answers LONG_POLL_TYPE)
    retries: int = 0


class BundleService:
    """Polls one bundle from a bundle service and activates each new, verified revision.

    Args:
        url: the bundle's URL (OPA's ``services[].url`` + ``/`` + ``resource``).
        activate: called with each new bundle, e.g. ``EmbeddedEngine.reload``; if it raises,
            the bundle is not taken and the last good one stays.
        key: verify every bundle with it (None: no verification, as OPA without ``signing``).
        token: sent as ``Authorization: Bearer <token>``.
        verify: TLS verification of the server: True, False, or a CA file or directory.
        cert: client certificate for mutual TLS (a PEM path or ``(cert, key)``).
        polling: delays and long polling.
        persist_dir: keep the last activated archive there, and start from it.
        name: the bundle's name (OPA's ``bundles.<name>``), in paths and the status.
        timeout: seconds for the connection and each read (long polls add their wait).
        size_limit: largest archive accepted, in bytes.

    Raises:
        VetoError: an unusable URL or TLS file.
    """

    def __init__(self, url: str, *, activate: Callable[[Bundle], None],
                 key: BundleKey | None = None, token: str | None = None,
                 verify: bool | str = True, cert: str | tuple[str, str] | None = None,
                 polling: Polling | None = None, persist_dir: Path | None = None,
                 name: str = "veto", timeout: float = 10.0,
                 size_limit: int = MAX_FILE_SIZE) -> None:
        if not url.startswith(("http://", "https://")):
            raise VetoError(f"expected an http(s) URL of a bundle, found {url!r}")
        self.url = url
        self.name = name
        self.key = key
        self.polling = polling or Polling()
        self.persist_dir = persist_dir
        self.timeout = timeout
        self.size_limit = size_limit
        self._activate = activate
        headers = {"User-Agent": f"veto-opa/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            self._client = httpx.Client(headers=headers, verify=tls_context(
                verify, cert, what="the bundle service"))
        except ValueError as error:
            raise VetoError(str(error)) from None
        # As OPA: long polling is asked for until a full answer lacks its content type.
        self._state = _State(long_poll=self.polling.long_polling_timeout is not None)
        self._lock = threading.Lock()        # one poll at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = BundleStatus(name=name)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, *, first_poll: bool = True) -> None:
        """Activate the persisted bundle (if any), poll once now (unless ``first_poll`` is
        false), then keep polling in a background thread."""
        self.load_persisted()
        delay = self.poll() if first_poll else 0.0
        self._thread = threading.Thread(target=self._run, args=(delay,),
                                        name=f"veto-bundle-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (an open long poll is cut); idempotent."""
        self._stop.set()
        self._client.close()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)

    def status(self) -> BundleStatus:
        """The bundle's status in OPA's format (``active_revision``, the four times, and
        ``code``/``message`` of the last failure while it lasts)."""
        return self._status

    @property
    def persisted_path(self) -> Path | None:
        """Where the activated archive is kept, with ``persist_dir``."""
        if self.persist_dir is None:
            return None
        return self.persist_dir / "bundles" / self.name / "bundle.tar.gz"

    # -- one step ------------------------------------------------------------------------

    def load_persisted(self) -> bool:
        """Verify and activate the persisted archive; whether one was activated."""
        path = self.persisted_path
        if path is None or not path.is_file():
            return False
        try:
            bundle = self._check(from_tar_gz(path.read_bytes(), source=str(path)))
            self._activate(bundle)
        except Exception as error:  # noqa: BLE001 - a bad copy on disk is reported, not fatal
            log.error("veto-opa could not activate the persisted bundle %s: %s", path, error)
            self._update(code="bundle_error", message=f"{path}: {error}")
            return False
        self._update(activated=bundle.revision, clear=True)
        log.info("veto-opa activated the persisted bundle %s (revision %s)", path,
                 bundle.revision)
        return True

    def poll(self) -> float:
        """Download once, activate what is new; the seconds to wait before the next poll."""
        with self._lock:
            try:
                changed = self._poll_once()
            except Exception as error:  # noqa: BLE001 - every failure keeps the last bundle
                self._failed(error)
                delay = backoff(self._state.retries, self.polling.max_delay)
                self._state.retries += 1
                return delay
            self._state.retries = 0
            if changed is not None:
                log.info("veto-opa activated bundle %s revision %s from %s", self.name,
                         changed, self.url)
            if self._state.long_poll:
                return 0.0
            return random.uniform(self.polling.min_delay, self.polling.max_delay)

    def _poll_once(self) -> str | None:
        """One request; the revision activated, or None when nothing changed."""
        state = self._state
        headers = {"Prefer": "modes=snapshot,delta"}
        timeout = httpx.Timeout(self.timeout)
        wait = self.polling.long_polling_timeout
        if wait is not None and state.long_poll:
            headers["Prefer"] += f";wait={wait}"
            timeout = httpx.Timeout(self.timeout, read=self.timeout + wait)
        if state.etag:
            headers["If-None-Match"] = state.etag
        self._update(requested=True)
        try:
            with self._client.stream("GET", self.url, headers=headers,
                                     timeout=timeout) as response:
                if response.status_code == 304:
                    state.etag = response.headers.get("ETag") or state.etag
                    self._update(succeeded=True, clear=True)
                    return None
                if response.status_code != 200:
                    raise _HTTPFailure(response.status_code)
                data = self._read(response)
                etag = response.headers.get("ETag", "")
                long_poll = response.headers.get("Content-Type") == LONG_POLL_TYPE
        except httpx.TimeoutException:
            raise BundleError(f"the bundle service at {self.url} did not answer within "
                              f"{self.timeout:g} s") from None
        except httpx.HTTPError as error:
            raise BundleError(f"request failed: {error}") from None
        self._update(succeeded=True, downloaded=True)
        bundle = self._check(from_tar_gz(data, source=self.url))
        self._activate(bundle)
        revision: str = bundle.revision
        state.etag = etag
        state.long_poll = long_poll
        self._persist(data)
        self._update(activated=revision, size=len(data), clear=True)
        return revision

    def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.size_limit:
            raise BundleError(f"the bundle is {declared} bytes, over the limit of "
                              f"{self.size_limit}")
        chunks, size = [], 0
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > self.size_limit:
                raise BundleError(f"the bundle is over the limit of {self.size_limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _check(self, bundle: Bundle) -> Bundle:
        return self.key.verify(bundle) if self.key is not None else bundle

    def _persist(self, data: bytes) -> None:
        path = self.persisted_path
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temporary = path.with_name(f".bundle.tar.gz.{os.getpid()}.tmp")
            temporary.write_bytes(data)
            os.replace(temporary, path)
        except OSError as error:   # OPA too keeps the activated bundle when this fails
            log.error("veto-opa could not persist bundle %s to %s: %s", self.name, path, error)

    def _failed(self, error: Exception) -> None:
        http_code = str(error.status) if isinstance(error, _HTTPFailure) else None
        log.error("veto-opa kept bundle %s revision %r; the download failed: %s", self.name,
                  self._status.active_revision or "", error)
        self._update(code="bundle_error", message=str(error), http_code=http_code)

    def _update(self, *, requested: bool = False, succeeded: bool = False,
                downloaded: bool = False, activated: str | None = None, size: int | None = None,
                clear: bool = False, code: str | None = None, message: str | None = None,
                http_code: str | None = None) -> None:
        now = _now()
        fields = self._status.model_dump()
        if requested:
            fields["last_request"] = now
        if succeeded:
            fields["last_successful_request"] = fields["last_request"]
        if downloaded:
            fields["last_successful_download"] = fields["last_request"]
        if activated is not None:
            fields["active_revision"] = activated
            fields["last_successful_activation"] = now
            fields["type"] = "snapshot"
        if size is not None:
            fields["size"] = size
        if clear:
            fields.update(code=None, message=None, http_code=None, errors=None)
        if code is not None:
            fields.update(code=code, message=message, http_code=http_code)
        self._status = BundleStatus(**fields)

    def _run(self, delay: float) -> None:
        while not self._stop.wait(delay):
            delay = self.poll()

    def __enter__(self) -> BundleService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _HTTPFailure(BundleError):
    """The bundle service answered with a status other than 200 or 304."""

    def __init__(self, status: int) -> None:
        self.status = status
        phrase = httpx.codes.get_reason_phrase(status) or "an unknown status"
        super().__init__(f"server replied with {phrase}")


def key_from_settings(settings: VetoSettings) -> BundleKey | None:
    """The :class:`BundleKey` of ``VETO_BUNDLE_KEY`` and its companions, or None."""
    if settings.bundle_key is None:
        return None
    return BundleKey.from_file(settings.bundle_key, key_id=settings.bundle_key_id,
                               algorithm=settings.bundle_key_algorithm,
                               scope=settings.bundle_scope)


def service_from_settings(settings: VetoSettings,
                          activate: Callable[[Bundle], None]) -> BundleService:
    """The :class:`BundleService` of ``VETO_BUNDLE_URL`` and its companions (not started)."""
    assert settings.bundle_url is not None
    verify: bool | str = (False if settings.bundle_insecure else
                          str(settings.bundle_ca) if settings.bundle_ca else True)
    persist = settings.bundle_persist_dir
    return BundleService(
        settings.bundle_url, activate=activate, key=key_from_settings(settings),
        token=settings.bundle_token, verify=verify,
        cert=str(settings.bundle_client_cert) if settings.bundle_client_cert else None,
        polling=Polling(settings.bundle_min_delay, settings.bundle_max_delay,
                        settings.bundle_long_polling_timeout),
        persist_dir=persist if persist is None else Path(persist))


def _now() -> str:
    """UTC now as Go writes a time.Time in JSON (RFC 3339, nanoseconds trimmed)."""
    moment = datetime.now(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"

