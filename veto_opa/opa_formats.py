"""OPA's own wire formats for what veto-opa sends to, and reads from, OPA's services.

- :class:`DecisionLogEvent` — one decision-log event as OPA's ``decision_logs`` plugin uploads
  it (``EventV1`` in OPA's ``v1/plugins/logs/plugin.go``): a JSON array of these, gzipped,
  is what a decision-log service receives.
- :class:`BundleStatus` — a bundle's status (``Status`` in ``v1/plugins/bundle/status.go``).
- :class:`StatusReport` — what OPA's ``status`` plugin POSTs to ``/status``
  (``UpdateRequestV1`` in ``v1/plugins/status/plugin.go``).

Field names, optionality and JSON shapes follow OPA's structs and their ``json`` tags: fields
OPA omits when empty (``omitempty``) are None here and left out by :meth:`document`; unknown
fields are kept (``extra="allow"``), so a newer OPA's events still round-trip.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_CONFIG = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class _Wire(BaseModel):
    model_config = _CONFIG

    def document(self) -> dict[str, Any]:
        """The JSON object OPA writes: fields OPA omits when empty are left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class BundleInfo(_Wire):
    """``BundleInfoV1``: the revision of a bundle a decision was made with."""

    revision: str | None = None


class HTTPRequestContext(_Wire):
    headers: dict[str, list[str]] | None = None


class RequestContext(_Wire):
    http: HTTPRequestContext | None = None


class DecisionLogEvent(_Wire):
    """One decision-log event (OPA's ``EventV1``).

    ``labels`` and ``decision_id`` are always written; ``timestamp`` is RFC 3339 with
    nanoseconds as Go writes a ``time.Time``; ``erased``/``masked`` list JSON pointers
    (``/input/args/password``) that masking removed or replaced.
    """

    labels: dict[str, str] | None
    decision_id: str
    trace_id: str | None = None
    span_id: str | None = None
    revision: str | None = None
    bundles: dict[str, BundleInfo] | None = None
    path: str | None = None
    query: str | None = None
    input: Any = None
    result: Any = None
    mapped_result: Any = None
    nd_builtin_cache: Any = None
    erased: list[str] | None = None
    masked: list[str] | None = None
    error: Any = None
    requested_by: str | None = None
    timestamp: str
    metrics: dict[str, Any] | None = None
    req_id: int | None = None
    request_context: RequestContext | None = None

    def document(self) -> dict[str, Any]:
        """As OPA writes it: ``labels`` always (null when unset), the rest when set."""
        out = super().document()
        out.setdefault("labels", None)
        return out


class BundleStatus(_Wire):
    """A bundle's status (OPA's bundle ``Status``): the four times are always written (Go's
    zero time ``0001-01-01T00:00:00Z`` before the first one); ``code`` is ``bundle_error``
    after a failure, with ``message`` and, for an HTTP failure, ``http_code``."""

    name: str
    active_revision: str | None = None
    last_successful_activation: str = "0001-01-01T00:00:00Z"
    type: str | None = None
    size: int | None = None
    last_successful_download: str = "0001-01-01T00:00:00Z"
    last_successful_request: str = "0001-01-01T00:00:00Z"
    last_request: str = "0001-01-01T00:00:00Z"
    code: str | None = None
    message: str | None = None
    errors: list[Any] | None = None
    metrics: dict[str, Any] | None = None
    http_code: str | None = None


class PluginStatus(_Wire):
    state: str
    message: str | None = None


class StatusReport(_Wire):
    """A status update (OPA's ``UpdateRequestV1``), as ``/v1/status`` shows it under
    ``result`` and the status plugin POSTs it."""

    labels: dict[str, str]
    bundle: BundleStatus | None = None
    bundles: dict[str, BundleStatus] | None = None
    discovery: BundleStatus | None = None
    metrics: dict[str, Any] | None = None
    plugins: dict[str, PluginStatus] | None = None
    decision_logs: dict[str, Any] | None = Field(default=None)
