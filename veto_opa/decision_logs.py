"""Decision logs in OPA's format: every decision also sent to an OPA decision-log service.

    logs = DecisionLogs("https://logs.example/logs", labels={"env": "prod"})
    logs.submit(decision_id=..., input_text=..., result=..., revision=..., ...)  # never blocks
    logs.close()                                                                   # flushes

Each decision becomes one event of OPA's ``EventV1`` (:class:`~veto_opa.opa_formats.
DecisionLogEvent`): ``labels`` (``id`` of this process, ``version``, ``type: veto-opa`` and the
configured ones), ``decision_id``, ``trace_id``/``span_id``, ``bundles: {"veto": {revision}}``,
``path: "veto/decision"``, ``input`` (the OPA input, with the argument paths the policies
``redact:`` removed and listed in ``erased`` as JSON pointers, as OPA's ``mask`` rules erase),
``result`` (the decision object), ``timestamp`` and ``metrics`` (``timer_veto_guard_ns``).
They go out as OPA's ``decision_logs`` plugin sends them (``uploadChunk`` in
``v1/plugins/logs/plugin.go``): ``POST`` of a JSON array, gzip-compressed, ``Content-Type:
application/json``, ``Content-Encoding: gzip``, each body at most ``upload_size_limit``
compressed bytes (OPA's ``upload_size_limit_bytes``, 32768); an event that alone exceeds it is
dropped and counted, as OPA drops it.

``submit`` only appends to a bounded buffer (``buffer_limit`` events, OPA's event buffer
default 10,000; when full the oldest event is dropped and counted). A background thread
builds, masks, encodes and uploads the events every ``min_delay``..``max_delay`` seconds
(OPA's defaults, 300..600 s, suit a server; an agent process is short-lived, so these default
to 1..5 s and ``close()`` flushes); a failed upload puts its events back and is retried with
OPA's backoff. Nothing here can make ``guard()`` wait or fail.
"""

from __future__ import annotations

import collections
import gzip
import json
import logging
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from veto_opa import __version__
from veto_opa.bundles import backoff
from veto_opa.engines.rest import tls_context
from veto_opa.errors import VetoError
from veto_opa.records.redaction import find_redacted

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from veto_opa.config import VetoSettings
    from veto_opa.translators import Segment

log = logging.getLogger("veto_opa")

PATH = "veto/decision"
"""The decision's path, as OPA logs ``POST /v1/data/veto/decision``."""


@dataclass(frozen=True)
class _Pending:
    """What ``guard()`` hands over: immutable texts and values, turned into an event later."""

    decision_id: str
    input_text: str
    result: dict[str, Any]
    revision: str | None
    timestamp: str
    trace_id: str | None
    span_id: str | None
    latency_ns: int
    redact: tuple[tuple[Segment, ...], ...]


@dataclass
class Counters:
    """What happened to the events so far."""

    submitted: int = 0
    uploaded: int = 0
    dropped_buffer_full: int = 0
    dropped_too_large: int = 0
    dropped_unencodable: int = 0
    failed_uploads: int = 0


class DecisionLogs:
    """Ships decisions to a decision-log service in OPA's format, from a background thread.

    Args:
        url: where to POST (OPA's ``services[].url`` + ``decision_logs.resource``, by default
            ``/logs``).
        labels: extra labels for every event.
        token: sent as ``Authorization: Bearer <token>``.
        verify: TLS verification: True, False, or a CA file or directory.
        cert: client certificate for mutual TLS.
        min_delay, max_delay: seconds between uploads, drawn between the two.
        upload_size_limit: largest gzip body of one upload, in bytes.
        buffer_limit: most events waiting; beyond it the oldest are dropped.
        timeout: seconds for one upload.

    Raises:
        VetoError: an unusable URL, TLS file or delay.
    """

    def __init__(self, url: str, *, labels: Mapping[str, str] | None = None,
                 token: str | None = None, verify: bool | str = True,
                 cert: str | tuple[str, str] | None = None, min_delay: float = 1.0,
                 max_delay: float = 5.0, upload_size_limit: int = 32768,
                 buffer_limit: int = 10000, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise VetoError(f"expected an http(s) URL of a decision-log service, found {url!r}")
        if not 0 <= min_delay <= max_delay:
            raise VetoError(f"decision logs need 0 <= min_delay <= max_delay, found "
                            f"{min_delay} and {max_delay}")
        self.url = url
        self.labels = {"id": str(uuid.uuid4()), "version": __version__, "type": "veto-opa",
                       **(labels or {})}
        self.min_delay, self.max_delay = min_delay, max_delay
        self.upload_size_limit = upload_size_limit
        self.buffer_limit = buffer_limit
        self.counters = Counters()
        headers = {"User-Agent": f"veto-opa/{__version__}", "Content-Type": "application/json",
                   "Content-Encoding": "gzip"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            self._client = httpx.Client(headers=headers, timeout=timeout, verify=tls_context(
                verify, cert, what="the decision-log service"))
        except ValueError as error:
            raise VetoError(str(error)) from None
        self._buffer: collections.deque[_Pending] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._retries = 0
        self._thread = threading.Thread(target=self._run, name="veto-decision-logs",
                                        daemon=True)
        self._thread.start()

    # -- the guard's side ----------------------------------------------------------------

    def submit(self, *, decision_id: str, input_text: str, result: dict[str, Any],
               revision: str | None, trace_id: str | None, span_id: str | None,
               latency_ns: int, redact: Sequence[tuple[Segment, ...]] = (),
               timestamp: str | None = None) -> None:
        """Queue one decision; returns at once (the event is built on the background thread).

        Args:
            decision_id: the record's decision id.
            input_text: the JSON text of the OPA input the engine was given.
            result: the decision object (``data.veto.decision``'s shape).
            revision: the policy revision it was decided with.
            trace_id, span_id: the guard span's ids.
            latency_ns: the guard call's duration.
            redact: parsed argument paths whose values must not leave the process.
            timestamp: RFC 3339; now when None.
        """
        pending = _Pending(decision_id, input_text, result, revision,
                           timestamp or _now(), trace_id, span_id, latency_ns, tuple(redact))
        with self._lock:
            self._buffer.append(pending)
            self.counters.submitted += 1
            while len(self._buffer) > self.buffer_limit:
                self._buffer.popleft()
                self.counters.dropped_buffer_full += 1

    # -- lifecycle -----------------------------------------------------------------------

    def flush(self) -> bool:
        """Upload everything waiting now, on the caller's thread; whether all went out."""
        return self._upload()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and upload what is waiting (for at most ``timeout`` seconds)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=timeout)
        self._client.close()

    def __enter__(self) -> DecisionLogs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the background thread -----------------------------------------------------------

    def _run(self) -> None:
        delay = random.uniform(self.min_delay, self.max_delay)
        while not self._stop.is_set():
            self._wake.wait(delay)
            if self._stop.is_set():
                break
            if self._upload():
                self._retries = 0
                delay = random.uniform(self.min_delay, self.max_delay)
            else:
                self._retries += 1
                delay = max(backoff(self._retries, self.max_delay), 0.1)
        self._upload()   # the last events, once

    def _upload(self) -> bool:
        with self._lock:
            pending = list(self._buffer)
            self._buffer.clear()
        if not pending:
            return True
        events = []
        for item in pending:
            try:
                events.append((item, json.dumps(self.event(item), separators=(",", ":"),
                                                ensure_ascii=False).encode("utf-8")))
            except (TypeError, ValueError) as error:
                self.counters.dropped_unencodable += 1
                log.error("veto-opa dropped decision log event %s: %s", item.decision_id, error)
        for chunk in self._chunks(events):
            body = gzip.compress(b"[" + b",".join(e for _, e in chunk) + b"]")
            try:
                response = self._client.post(self.url, content=body)
                ok = 200 <= response.status_code < 300
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as error:
                ok, problem = False, str(error)
            if not ok:
                self.counters.failed_uploads += 1
                log.warning("veto-opa decision log upload to %s failed (%s); %d events kept",
                            self.url, problem, len(pending))
                self._requeue([p for p, _ in chunk] + self._rest(events, chunk))
                return False
            self.counters.uploaded += len(chunk)
        return True

    def _chunks(self, events: list[tuple[_Pending, bytes]]
                ) -> list[list[tuple[_Pending, bytes]]]:
        """Greedy chunks whose gzip body fits the upload limit; an event too large alone is
        dropped (counted)."""
        chunks: list[list[tuple[_Pending, bytes]]] = []
        current: list[tuple[_Pending, bytes]] = []
        for event in events:
            candidate = [*current, event]
            if self._size(candidate) <= self.upload_size_limit:
                current = candidate
                continue
            if current:
                chunks.append(current)
            if self._size([event]) > self.upload_size_limit:
                self.counters.dropped_too_large += 1
                log.error("veto-opa dropped decision log event %s: larger than the upload "
                          "limit of %d bytes compressed", event[0].decision_id,
                          self.upload_size_limit)
                current = []
            else:
                current = [event]
        if current:
            chunks.append(current)
        return chunks

    @staticmethod
    def _size(chunk: list[tuple[_Pending, bytes]]) -> int:
        return len(gzip.compress(b"[" + b",".join(e for _, e in chunk) + b"]"))

    @staticmethod
    def _rest(events: list[tuple[_Pending, bytes]],
              chunk: list[tuple[_Pending, bytes]]) -> list[_Pending]:
        start = events.index(chunk[-1]) + 1
        return [p for p, _ in events[start:]]

    def _requeue(self, items: list[_Pending]) -> None:
        with self._lock:
            self._buffer.extendleft(reversed(items))
            while len(self._buffer) > self.buffer_limit:
                self._buffer.popleft()
                self.counters.dropped_buffer_full += 1

    def event(self, item: _Pending) -> dict[str, Any]:
        """The OPA decision-log event of one submitted decision."""
        input = json.loads(item.input_text)
        erased: list[str] = []
        args = input.get("args") if isinstance(input, dict) else None
        if item.redact and isinstance(args, dict):
            erased = _erase(args, item.redact)
        event: dict[str, Any] = {"labels": self.labels, "decision_id": item.decision_id}
        if item.trace_id:
            event["trace_id"] = item.trace_id
        if item.span_id:
            event["span_id"] = item.span_id
        if item.revision:
            event["bundles"] = {"veto": {"revision": item.revision}}
        event.update(path=PATH, input=input, result=item.result)
        if erased:
            event["erased"] = erased
        event["timestamp"] = item.timestamp
        event["metrics"] = {"timer_veto_guard_ns": item.latency_ns}
        return event


def _erase(args: dict[str, Any], paths: Sequence[tuple[Segment, ...]]) -> list[str]:
    """Remove the redacted values from ``args`` in place, as OPA's ``remove`` mask does
    (object members deleted, list elements taken out); their JSON pointers, sorted."""
    found = find_redacted(args, paths)
    pointers = [_pointer(("input", "args", *at)) for at in found]
    # Deepest and last first, so that removing a list element leaves earlier indexes valid.
    for at in sorted(found, key=lambda p: [(0, s) if isinstance(s, int) else (1, 0)
                                           for s in p], reverse=True):
        parent: Any = args
        for step in at[:-1]:
            parent = parent[step]
        del parent[at[-1]]
    return sorted(pointers)


def _pointer(parts: Sequence[str | int]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _now() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


def from_settings(settings: VetoSettings) -> DecisionLogs | None:
    """The :class:`DecisionLogs` of ``VETO_DECISION_LOGS_URL`` (None when unset)."""
    if not settings.decision_logs_url:
        return None
    return DecisionLogs(settings.decision_logs_url, labels=settings.decision_logs_labels,
                        token=settings.decision_logs_token)
