"""Configuration: one value object, read from ``VETO_*`` environment variables.

Every setting can also be passed to :class:`veto_opa.Veto` directly; an explicit argument
wins over the environment, the environment over the default.

==============================  ===========================================================
variable                        meaning (default)
==============================  ===========================================================
``VETO_POLICIES``               policy files for the embedded engine, separated by ``:``
                                (``veto/policies.yaml``)
``VETO_BUNDLE``                 a built bundle (``.tar.gz`` or directory) for the embedded
                                engine, instead of policy files
``VETO_BUNDLE_KEY``             public key (PEM) or HS* secret file: bundles must be signed
                                with it (``VETO_BUNDLE``, ``VETO_BUNDLE_URL``)
``VETO_BUNDLE_KEY_ID``          its key id, required with a key (OPA's ``signing.keyid``)
``VETO_BUNDLE_KEY_ALGORITHM``   the key's algorithm (``RS256``)
``VETO_BUNDLE_SCOPE``           the signing scope the bundle must carry (none)
``VETO_BUNDLE_URL``             a bundle service to poll for the embedded engine, as OPA
                                polls one (ETag, 304, jittered delays, persisted copy)
``VETO_BUNDLE_TOKEN``           bearer token for the bundle service
``VETO_BUNDLE_CA``              CA bundle for the bundle service's certificate
``VETO_BUNDLE_INSECURE``        ``true`` to skip its TLS verification (``false``)
``VETO_BUNDLE_CLIENT_CERT``     client certificate (PEM with key) for mutual TLS
``VETO_BUNDLE_MIN_DELAY``       seconds between polls, drawn between the two (``60``,
``VETO_BUNDLE_MAX_DELAY``       ``120``, OPA's defaults)
``VETO_BUNDLE_LONG_POLLING_TIMEOUT``  ask the server to hold each poll this long (none)
``VETO_BUNDLE_PERSIST_DIR``     keep the last activated bundle there and start from it
``VETO_DECISION_LOGS_URL``      also send every decision as an OPA decision-log event to this
                                decision-log service endpoint (gzipped JSON batches)
``VETO_DECISION_LOGS_TOKEN``    bearer token for it
``VETO_DECISION_LOGS_LABELS``   extra event labels, ``key=value`` separated by ``,``
``VETO_OPA_URL``                an OPA server that already holds the bundle; set, it is
                                used instead of the embedded engine
``VETO_OPA_TOKEN``              bearer token for the OPA server
``VETO_OPA_TIMEOUT``            seconds to wait for the OPA server (``1.0``)
``VETO_OPA_CA``                 CA bundle to verify the OPA server's certificate with
``VETO_OPA_INSECURE``           ``true`` to skip TLS verification (``false``)
``VETO_OPA_CLIENT_CERT``        client certificate (PEM, with its key) for mutual TLS
``VETO_HOME``                   where records and their key live (``.veto``)
``VETO_RECORDS``                ``false`` to write no decision records (``true``)
``VETO_RECORDS_SYNC``           SQLite durability, ``normal`` (survives a killed process)
                                or ``full`` (survives power loss) (``normal``)
``VETO_REDACT``                 extra argument paths to redact, ``:``-separated
                                (``args.password:args.token``); policy files add theirs
``VETO_MAX_ARGUMENT_BYTES``     arguments larger than this, as JSON, are denied
                                (``1048576``)
``VETO_POOL_SIZE``              embedded engines evaluating in parallel (CPU count)
``VETO_GO_HEAP_RESERVE``        MiB kept alive in the embedded engine's Go heap so that its
                                garbage collector runs less often (``16``; ``0`` for
                                none; ignored when ``GOGC`` or ``GOMEMLIMIT`` is set)
``VETO_RELOAD_INTERVAL``        seconds between checks of the policy files for changes;
                                ``0`` turns automatic reloading off (``2``)
``VETO_SPANS``                  ``false`` to emit no spans (``true``)
``VETO_CAPTURE_ARGUMENTS``      ``true`` to put the (redacted) arguments on spans as
                                ``gen_ai.tool.call.arguments`` (``false``; GenAI content
                                capture is opt-in)
``VETO_APPROVAL_TTL``           seconds a pending approval stays valid (``3600``)
``VETO_APPROVAL_GRANT_TTL``     seconds an approved grant stays usable, counted from the
                                approval (``900``)
``VETO_REJECTION_TTL``          seconds a rejected call stays denied (``3600``)
``VETO_APPROVERS``              the approvers registry (``<VETO_HOME>/approvers.yaml``);
                                keep it where the agent's user cannot write
``VETO_APPROVAL_WEBHOOK``       URL that approval requests and decisions are POSTed to
``VETO_APPROVAL_WEBHOOK_SECRET``  HMAC-SHA256 key of the ``X-Veto-Signature`` header
``VETO_APPROVAL_WEBHOOK_FORMAT``  ``json`` (the event) or ``slack`` (``json``)
``VETO_CONSOLE_URL``            the approvers' console address, linked from webhooks
==============================  ===========================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from veto_opa.errors import ConfigurationError


def _split_paths(value: object) -> object:
    if isinstance(value, str):
        return [part for part in value.split(os.pathsep) if part.strip()]
    return value


class VetoSettings(BaseSettings):
    """Every ``VETO_*`` setting, validated; see the module docstring for the list."""

    model_config = SettingsConfigDict(env_prefix="VETO_", extra="ignore", frozen=True)

    policies: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path("veto/policies.yaml")])
    bundle: Path | None = None
    bundle_key: Path | None = None
    bundle_key_id: str | None = None
    bundle_key_algorithm: str = "RS256"
    bundle_scope: str | None = None
    bundle_url: str | None = None
    bundle_token: str | None = None
    bundle_ca: Path | None = None
    bundle_insecure: bool = False
    bundle_client_cert: Path | None = None
    bundle_min_delay: float = Field(default=60.0, ge=0)
    bundle_max_delay: float = Field(default=120.0, ge=0)
    bundle_long_polling_timeout: int | None = Field(default=None, ge=1)
    bundle_persist_dir: Path | None = None
    decision_logs_url: str | None = None
    decision_logs_token: str | None = None
    decision_logs_labels: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    opa_url: str | None = None
    opa_token: str | None = None
    opa_timeout: float = Field(default=1.0, gt=0)
    opa_ca: Path | None = None
    opa_insecure: bool = False
    opa_client_cert: Path | None = None
    home: Path = Path(".veto")
    records: bool = True
    records_sync: Literal["normal", "full"] = "normal"
    redact: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_argument_bytes: int = Field(default=1024 * 1024, gt=0)
    pool_size: int | None = Field(default=None, gt=0)
    go_heap_reserve: int = Field(default=16, ge=0, le=4096)
    reload_interval: float = Field(default=2.0, ge=0)
    spans: bool = True
    capture_arguments: bool = False
    approval_ttl: float = Field(default=3600.0, gt=0)
    approval_grant_ttl: float = Field(default=900.0, gt=0)
    rejection_ttl: float = Field(default=3600.0, gt=0)
    approvers: Path | None = None
    approval_webhook: str | None = None
    approval_webhook_secret: str | None = None
    approval_webhook_format: Literal["json", "slack"] = "json"
    console_url: str | None = None

    @field_validator("decision_logs_labels", mode="before")
    @classmethod
    def _labels(cls, value: object) -> object:
        if isinstance(value, str):
            pairs = [part.partition("=") for part in value.split(",") if part.strip()]
            return {key.strip(): label.strip() for key, _, label in pairs}
        return value

    @field_validator("policies", "redact", mode="before")
    @classmethod
    def _paths(cls, value: object) -> object:
        return _split_paths(value)


def load_settings(**overrides: Any) -> VetoSettings:
    """The settings from ``VETO_*`` variables, with ``overrides`` (keyword arguments of
    ``Veto``) taking precedence.

    Raises:
        ConfigurationError: a setting is invalid; each problem names the setting and its variable
            (``VETO_OPA_TIMEOUT: Input should be a valid number, found 'abc'``).
    """
    try:
        return VetoSettings(**overrides)
    except ValidationError as e:
        problems = []
        for error in e.errors():
            name = str(error["loc"][0]) if error["loc"] else "?"
            where = (f"{name}= (argument)" if name in overrides
                     else f"VETO_{name.upper()}")
            problems.append(f"{where}: {error['msg']}, found {error.get('input')!r}")
        raise ConfigurationError("invalid settings:\n  " + "\n  ".join(problems)) from None
