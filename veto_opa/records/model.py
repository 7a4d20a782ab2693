"""The shape of a decision record, its hash, and what a valid chain of records is.

Field names follow OPA's decision log (``EventV1`` in ``v1/plugins/logs/plugin.go``) where the
meaning matches: ``decision_id``, ``timestamp``, ``erased``, ``trace_id``, ``span_id``.

Every entry of the store — a :class:`DecisionRecord` or an :class:`OutcomeRecord` — is one link
of a single hash chain, ordered by ``sequence``::

    record_hash = "sha256:" + sha256(prev_hash + canonical_json(entry without record_hash))

with ``prev_hash`` of the first entry equal to :data:`GENESIS_HASH`. The hashed document
includes ``sequence`` and ``kind``, so renumbering, reordering, relabelling or editing any
entry breaks the chain at that entry. :class:`ChainChecker` is the one definition of a valid
chain, used both by the store and by the offline check of an export file.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from veto_opa._json import canonical_json, loads_json, sha256_digest
from veto_opa._types import Action, JSONObject
from veto_opa.decision import Verdict

GENESIS_HASH = "sha256:" + "0" * 64
"""``prev_hash`` of the first entry of every chain."""

HASH_PATTERN = r"^sha256:[0-9a-f]{64}$"
HMAC_PATTERN = r"^hmac-sha256:[0-9a-f]{64}$"
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"

# Fields the store assigns; callers of ``append`` must not supply them.
CHAIN_FIELDS = ("sequence", "prev_hash", "record_hash")

OUTCOME_STATUSES = ("executed", "failed", "skipped")
"""What can happen after a decision: the tool ran, it ran and failed, it was not run.
``executed`` and ``failed`` follow an allow only; a decision has at most one of them."""

REFUSED = "refused"
"""Status of an outcome entry that records an outcome the store refused (an ``executed``
after a deny, a second outcome): the attempt is kept in the chain, not taken as the outcome."""


def arguments_digest(arguments: Any) -> str:
    """``arguments_sha256`` of a tool call's ORIGINAL arguments, for calls whose policy redacts
    nothing (see :class:`~veto_opa.records.redaction.Redactor` for the keyed digest).

    A JSON object (a dict, or text that parses to one) is hashed as its canonical JSON. Anything
    else — text that is not JSON or not an object, an object without a canonical text, bytes —
    is hashed as its raw text, so that even a call that was refused as malformed can be matched
    against what the model sent.
    """
    return sha256_digest(digest_text(arguments))


def digest_text(arguments: Any) -> str | bytes:
    """What the digest of a tool call's arguments is taken over: the canonical JSON of an
    object (a dict, or JSON text of one), else the raw text or bytes, else its ``repr``."""
    if isinstance(arguments, str):
        try:
            parsed = loads_json(arguments)
            return canonical_json(parsed) if isinstance(parsed, dict) else arguments
        except (TypeError, ValueError):   # not JSON, or no canonical text (1e400)
            return arguments
    if isinstance(arguments, bytes | bytearray):
        return bytes(arguments)
    try:
        return canonical_json(arguments)
    except (TypeError, ValueError):
        pass
    try:
        return repr(arguments)
    except RecursionError:
        return f"<{type(arguments).__name__} nested too deeply to be written out>"


def record_hash(document: dict[str, Any]) -> str:
    """The ``record_hash`` of a record document (its own ``record_hash`` key is ignored)."""
    body = {k: v for k, v in document.items() if k != "record_hash"}
    return sha256_digest(str(document["prev_hash"]) + canonical_json(body))


def seal(document: dict[str, Any]) -> tuple[str, str]:
    """Set ``document["record_hash"]``; return the document's canonical text and that hash.

    Raises:
        TypeError, ValueError: a value is not JSON (as :func:`canonical_json` does).
    """
    digest = document["record_hash"] = record_hash(document)
    return canonical_json(document), digest


def new_decision_id() -> str:
    """A new decision id: a version 7 UUID (RFC 9562), which begins with the time in
    milliseconds, so that ids made later sort later and the store's unique index on them
    grows at its end; the other 74 bits are random."""
    milliseconds = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = ((milliseconds & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 68) << 64
             | 0b10 << 62 | rand & 0x3FFF_FFFF_FFFF_FFFF)
    return str(uuid.UUID(int=value))


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and ``Z``; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(value: str | datetime) -> str:
    """Normalise a datetime or ISO 8601 text to the record timestamp format.

    Raises:
        ValueError: ``value`` is not an ISO 8601 date or date-time.
    """
    if isinstance(value, datetime):
        return format_timestamp(value)
    try:
        moment = datetime.fromisoformat(value.strip())
    except (AttributeError, ValueError):
        raise ValueError(f"expected an ISO 8601 date or date-time, found {value!r}") from None
    return format_timestamp(moment)


def now_timestamp() -> str:
    """The current time in the record timestamp format."""
    return format_timestamp(datetime.now(UTC))


def _hex_id(value: Any, digits: int) -> Any:
    # OpenTelemetry hands out trace and span ids as integers; records hold the W3C hex form.
    if isinstance(value, int) and not isinstance(value, bool):
        return format(value, f"0{digits}x")
    return value


class _Entry(BaseModel):
    # Fields are declared in each subclass so that they read in a natural order; the chain
    # fields (sequence, prev_hash, record_hash) and timestamp are common to both.
    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("timestamp", mode="before", check_fields=False)
    @classmethod
    def _timestamp(cls, value: Any) -> Any:
        if isinstance(value, datetime):
            return format_timestamp(value)
        if isinstance(value, str) and not re.match(TIMESTAMP_PATTERN, value):
            return parse_timestamp(value)
        return value

    def document(self) -> dict[str, Any]:
        """The record as the JSON object that is stored, hashed and exported."""
        return self.model_dump(mode="json")


class DecisionRecord(_Entry):
    """One guard call: what was asked, what was decided and why. Immutable.

    ``arguments`` is the argument object after redaction (``None`` when the model's arguments
    were unusable); the digest of the original arguments is ``arguments_sha256`` when the
    policy redacts nothing, ``arguments_hmac`` (keyed) when it does (see :class:`RecordedCall`);
    ``erased`` names the redacted paths. ``cause`` is set when the decision is a fail-closed
    deny (``"engine_timeout"``, ``"invalid_tool_call"``). ``facts`` is ``input.facts`` as the
    engine saw it (each fact names its parser and version), with the facts of redacted
    arguments as keyed digests; None when no fact was declared for the tool (and in records
    written before facts existed).
    """

    kind: Literal["decision"] = "decision"
    sequence: int = Field(ge=1)
    decision_id: str
    timestamp: str = Field(pattern=TIMESTAMP_PATTERN)
    tool: str
    arguments: JSONObject | None
    arguments_sha256: str | None = Field(default=None, pattern=HASH_PATTERN)
    arguments_hmac: str | None = Field(default=None, pattern=HMAC_PATTERN)
    erased: list[str] = Field(default_factory=list)
    context: JSONObject = Field(default_factory=dict)
    context_digest: str | None = None
    facts: JSONObject | None = None
    model: str | None = None
    call_id: str | None = None
    decision: Action
    rule: str | None = None
    reason: str
    approvers: list[str] = Field(default_factory=list)
    matched: list[dict[str, Any]] = Field(default_factory=list)
    errors: list[dict[str, Any]] = Field(default_factory=list)
    approval_id: str | None = None
    policy_name: str | None = None
    policy_revision: str | None = None
    engine: str = Field(min_length=1)
    cause: str | None = None
    latency_us: int = Field(ge=0)
    trace_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    span_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")
    opa_decision_id: str | None = None
    prev_hash: str = Field(pattern=HASH_PATTERN)
    record_hash: str = Field(pattern=HASH_PATTERN)

    @field_validator("decision_id", mode="before")
    @classmethod
    def _decision_id(cls, value: Any) -> Any:
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, str):
            try:
                canonical = str(uuid.UUID(value))
            except ValueError:
                raise ValueError(f"decision_id must be a UUID, found {value!r}") from None
            if canonical != value:
                raise ValueError(
                    f"decision_id must be a lowercase hyphenated UUID, found {value!r}"
                )
        return value

    @field_validator("trace_id", mode="before")
    @classmethod
    def _trace_id(cls, value: Any) -> Any:
        return _hex_id(value, 32)

    @model_validator(mode="after")
    def _one_digest(self) -> DecisionRecord:
        if (self.arguments_sha256 is None) == (self.arguments_hmac is None):
            raise ValueError("a decision record holds exactly one of arguments_sha256 and "
                             "arguments_hmac")
        return self

    @field_validator("span_id", mode="before")
    @classmethod
    def _span_id(cls, value: Any) -> Any:
        return _hex_id(value, 16)


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """A tool call as its decision record keeps it.

    Attributes:
        tool: the tool name (its ``str``, when the model sent something else).
        arguments: the argument object after redaction; None when the arguments were
            unusable (not JSON, not an object, too large or too deep): then only their digest
            is kept.
        arguments_digest: the digest of the original arguments: ``sha256:`` when the policy
            redacts nothing, else ``hmac-sha256:`` under the store's key, so that a redacted
            low-entropy value cannot be recovered by trying candidates.
        erased: the concrete paths that were redacted.
        context: the context object; ``{}`` when it could not be stored as given.
        context_digest: the digest of a context that could not be stored as given.
        model, call_id: as the caller gave them (None when not strings).
    """

    tool: str
    arguments: JSONObject | None
    arguments_digest: str
    erased: tuple[str, ...] = ()
    context: JSONObject = field(default_factory=dict)
    context_digest: str | None = None
    model: str | None = None
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class GuardRecord:
    """Everything ``Veto.guard()`` records for one call; the store adds the chain fields.

    :meth:`document` is the record document, which :class:`DecisionRecord` validates when it
    is read back (the two are held to each other by ``tests/records/test_documents.py``).
    """

    decision_id: str
    timestamp: str
    call: RecordedCall
    verdict: Verdict
    engine: str
    latency_us: int
    approval_id: str | None = None
    cause: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    opa_decision_id: str | None = None
    facts: JSONObject | None = None   # input.facts as recorded (redacted arguments' keyed)

    def document(self) -> dict[str, Any]:
        call, verdict = self.call, self.verdict
        keyed = call.arguments_digest.startswith("hmac-")
        return {
            "kind": "decision",
            "decision_id": self.decision_id,
            "timestamp": self.timestamp,
            "tool": call.tool,
            "arguments": call.arguments,
            "arguments_sha256": None if keyed else call.arguments_digest,
            "arguments_hmac": call.arguments_digest if keyed else None,
            "erased": list(call.erased),
            "context": call.context,
            "context_digest": call.context_digest,
            "facts": self.facts,
            "model": call.model,
            "call_id": call.call_id,
            "decision": verdict.decision,
            "rule": verdict.rule,
            "reason": verdict.reason,
            "approvers": list(verdict.approvers),
            "matched": [m.document() for m in verdict.matched],
            "errors": [e.document() for e in verdict.errors],
            "approval_id": self.approval_id,
            "policy_name": verdict.policy_name,
            "policy_revision": verdict.policy_revision,
            "engine": self.engine,
            "cause": self.cause,
            "latency_us": self.latency_us,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "opa_decision_id": self.opa_decision_id,
        }


class OutcomeRecord(_Entry):
    """What happened after a decision (the tool ran, failed, was skipped), chained on its own.

    Records are append-only: an outcome never updates its decision, it references it.
    """

    kind: Literal["outcome"] = "outcome"
    sequence: int = Field(ge=1)
    decision_id: str
    timestamp: str = Field(pattern=TIMESTAMP_PATTERN)
    status: str = Field(pattern=r"^[a-z][a-z_]{0,31}$")
    error: str | None = None
    prev_hash: str = Field(pattern=HASH_PATTERN)
    record_hash: str = Field(pattern=HASH_PATTERN)


ApprovalEvent = Literal["requested", "approved", "rejected", "expired", "used"]
ApprovalStatus = Literal["pending", "approved", "rejected", "expired", "used"]


class ApprovalRecord(_Entry):
    """One event in the life of an approval (``veto_opa.approvals``), chained like decisions.

    ``decision_id`` is the decision that requested the approval (every event of one approval
    carries it, so its events are found together); ``status`` is the approval's status after
    the event; ``detail`` holds what the event adds (the request's binding for
    ``requested``, the using decision for ``used``, why for ``expired``). A vote
    (``approved``, ``rejected``) holds the approver's statement in ``vote`` and, for an
    approver with a key, its Ed25519 ``signature`` over the canonical JSON of ``vote``.
    """

    kind: Literal["approval"] = "approval"
    sequence: int = Field(ge=1)
    decision_id: str
    timestamp: str = Field(pattern=TIMESTAMP_PATTERN)
    approval_id: str
    event: ApprovalEvent
    status: ApprovalStatus
    tool: str
    binding: str = Field(pattern=HASH_PATTERN)
    detail: dict[str, Any] = Field(default_factory=dict)
    vote: dict[str, Any] | None = None
    signature: str | None = None
    prev_hash: str = Field(pattern=HASH_PATTERN)
    record_hash: str = Field(pattern=HASH_PATTERN)


Entry = DecisionRecord | OutcomeRecord | ApprovalRecord


def entry_from_document(document: dict[str, Any]) -> Entry:
    """Build the model of a stored or exported document (a JSONL line), by its ``kind``.

    Raises:
        pydantic.ValidationError: the document is not a valid record.
    """
    if document.get("kind") == "outcome":
        return OutcomeRecord.model_validate(document)
    if document.get("kind") == "approval":
        return ApprovalRecord.model_validate(document)
    return DecisionRecord.model_validate(document)


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking a chain.

    Attributes:
        ok: every entry's hash recomputes, every link holds and no sequence is missing.
        count: entries found intact (before the first bad one, when there is one).
        first_bad_sequence: the sequence where the chain first breaks (for a missing entry,
            the missing sequence number), or None.
        problem: what is wrong there, in one sentence, or None.
        head_hash: ``record_hash`` of the last good entry, or None for an empty chain.
        head_sequence: its sequence. Kept elsewhere (out of reach of whoever can write the
            store), ``(head_sequence, head_hash)`` is an anchor: a later ``verify`` given it
            catches a chain rewritten, or cut short, before that point.
    """

    ok: bool
    count: int
    first_bad_sequence: int | None = None
    problem: str | None = None
    head_hash: str | None = None
    head_sequence: int | None = None


class ChainChecker:
    """Feeds on entry documents in order and remembers the first break in the chain.

    Args:
        allow_gaps: accept missing sequence numbers (a filtered export); every entry's own
            hash and every link between consecutive sequences are still checked.
        anchors: ``{sequence: record_hash}`` taken from earlier verifications (their heads).
            A hash chain alone does not catch a forger who rewrites every hash after an
            edit; an anchor kept elsewhere does: the entry at that sequence must still have
            that hash, and the chain must still reach it (without ``allow_gaps``).
    """

    def __init__(self, *, allow_gaps: bool = False,
                 anchors: Mapping[int, str] | None = None) -> None:
        self.allow_gaps = allow_gaps
        self.anchors = dict(anchors or {})
        self.count = 0
        self.last_sequence = 0
        self.last_hash: str | None = None
        self.first_bad_sequence: int | None = None
        self.problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def fail(self, sequence: int, problem: str) -> bool:
        if self.problem is None:
            self.first_bad_sequence, self.problem = sequence, problem
        return False

    def feed(
        self,
        document: Any,
        *,
        expected_sequence: int | None = None,
        columns: dict[str, Any] | None = None,
    ) -> bool:
        """Check the next entry; returns False (and records why) once the chain is broken.

        Args:
            document: the parsed entry.
            expected_sequence: where the entry sits in the store (its row key), if known;
                a mismatch with the document's own ``sequence`` means it was moved.
            columns: values stored beside the document (a store's indexed columns); each
                must equal the document's field of the same name.
        """
        if self.problem is not None:
            return False
        fallback = self.last_sequence + 1
        if not isinstance(document, dict):
            return self.fail(expected_sequence or fallback, "entry is not a JSON object")
        sequence = document.get("sequence")
        if not isinstance(sequence, int) or isinstance(sequence, bool):
            return self.fail(expected_sequence or fallback, "entry has no integer sequence")
        if expected_sequence is not None and sequence != expected_sequence:
            return self.fail(
                expected_sequence,
                f"entry stored at sequence {expected_sequence} claims sequence {sequence}",
            )
        if sequence <= self.last_sequence:
            return self.fail(
                sequence, f"sequence {sequence} follows {self.last_sequence}: out of order"
            )
        consecutive = sequence == self.last_sequence + 1
        if not consecutive and not self.allow_gaps:
            missing = self.last_sequence + 1
            return self.fail(missing, f"sequence {missing} is missing (next entry is {sequence})")
        prev_hash = document.get("prev_hash")
        expected_prev = GENESIS_HASH if sequence == 1 else self.last_hash
        if consecutive and prev_hash != expected_prev:
            return self.fail(
                sequence,
                f"prev_hash {prev_hash} does not match the previous entry's hash {expected_prev}",
            )
        try:
            recomputed = record_hash(document)
        except (KeyError, TypeError, ValueError) as exc:
            return self.fail(sequence, f"entry cannot be hashed: {exc}")
        if document.get("record_hash") != recomputed:
            return self.fail(
                sequence,
                f"record_hash {document.get('record_hash')} does not match the content "
                f"(recomputed {recomputed})",
            )
        for name, value in (columns or {}).items():
            if document.get(name) != value:
                return self.fail(
                    sequence,
                    f"column {name}={value!r} does not match the record's "
                    f"{name}={document.get(name)!r}",
                )
        anchored = self.anchors.get(sequence)
        if anchored is not None and anchored != recomputed:
            return self.fail(
                sequence,
                f"record_hash {recomputed} differs from the anchor {anchored}: this record or "
                "one before it was changed after the anchor was taken",
            )
        self.count += 1
        self.last_sequence = sequence
        self.last_hash = recomputed
        return True

    def result(self) -> VerifyResult:
        """The outcome so far; a chain that ends before an anchored sequence is cut short
        (unless gaps are allowed: a filtered export may end anywhere)."""
        beyond = [sequence for sequence in self.anchors if sequence > self.last_sequence]
        if beyond and not self.allow_gaps:
            self.fail(min(beyond), f"the chain ends at sequence {self.last_sequence}, before "
                                   f"the anchored sequence {min(beyond)}: records were removed")
        return VerifyResult(
            self.ok, self.count, self.first_bad_sequence, self.problem, self.last_hash,
            self.last_sequence if self.count else None,
        )
