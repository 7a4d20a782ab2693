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

import bisect
import hashlib
import json
import json.encoder
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from veto_opa._types import Action, JSONObject

GENESIS_HASH = "sha256:" + "0" * 64
"""``prev_hash`` of the first entry of every chain."""

HASH_PATTERN = r"^sha256:[0-9a-f]{64}$"
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"

# Fields the store assigns; callers of ``append`` must not supply them.
CHAIN_FIELDS = ("sequence", "prev_hash", "record_hash")


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value``: sorted keys, no whitespace, UTF-8 kept as is.

    This is the text that ``arguments_sha256``, redaction HMACs and record hashes are computed
    over, so that other tools (approvals, auditors' scripts) can reproduce them.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def loads_json(text: str | bytes) -> Any:
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and ``-Infinity`` (Python's json
    module accepts them; they are not JSON, and no canonical text can hold them).

    Raises:
        ValueError: the text is not JSON.
    """
    return json.loads(text, parse_constant=_not_json)


def sha256_digest(data: str | bytes) -> str:
    """``"sha256:<hex>"`` of ``data`` (text is encoded as UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return "sha256:" + hashlib.sha256(data).hexdigest()


def arguments_digest(arguments: Any) -> str:
    """``arguments_sha256`` of a tool call's ORIGINAL arguments.

    A JSON object (a dict, or text that parses to one) is hashed as its canonical JSON. Anything
    else — text that is not JSON or not an object, an object without a canonical text (a
    number such as ``1e400`` that Python reads as infinity), bytes — is hashed as its raw
    text, so that even a call that was refused as malformed can be matched against what the
    model sent.
    """
    if isinstance(arguments, dict):
        return sha256_digest(canonical_json(arguments))
    if isinstance(arguments, str):
        try:
            parsed = loads_json(arguments)
            if isinstance(parsed, dict):
                return sha256_digest(canonical_json(parsed))
        except ValueError:
            pass
        return sha256_digest(arguments)
    if isinstance(arguments, bytes | bytearray):
        return sha256_digest(bytes(arguments))
    try:
        return sha256_digest(canonical_json(arguments))
    except (TypeError, ValueError):
        return sha256_digest(repr(arguments))


def record_hash(document: dict[str, Any]) -> str:
    """The ``record_hash`` of a record document (its own ``record_hash`` key is ignored)."""
    body = {k: v for k, v in document.items() if k != "record_hash"}
    return sha256_digest(str(document["prev_hash"]) + canonical_json(body))


def seal(document: dict[str, Any], texts: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Set ``document["record_hash"]`` and return ``(canonical text, record_hash)``.

    Equal to :func:`record_hash` followed by :func:`canonical_json`, in one pass (the store's
    hot path): the members' texts are made once, in key order, joined without
    ``record_hash`` for the hash, then with it for the stored text. ``texts`` may hold the
    canonical JSON text of some top-level values, already made by the caller (``guard()``
    has those of the arguments and the context from checking them): they are used as they
    are, so they must be ``canonical_json`` of those very values. Strings, integers and None
    are written here; anything else goes through :func:`canonical_json`.

    Raises:
        TypeError, ValueError: a value is not JSON (as :func:`canonical_json` does).
    """
    keys = tuple(document)
    members = _MEMBERS.get(keys)
    if members is None:
        if not all(type(key) is str for key in keys):   # canonical_json's own rules, then
            digest = record_hash(document)
            document["record_hash"] = digest
            return canonical_json(document), digest
        names = sorted(key for key in keys if key != "record_hash")
        members = (tuple((name, _encode_string(name) + ":") for name in names),
                   bisect.bisect(names, "record_hash"))
        if len(_MEMBERS) < 64:   # a few shapes of documents in practice
            _MEMBERS[keys] = members
    order, at = members
    parts = []
    for name, prefix in order:
        if texts is not None and name in texts:
            parts.append(prefix + texts[name])
            continue
        value = document[name]
        kind = type(value)
        if kind is str:
            parts.append(prefix + _encode_string(value))
        elif value is None:
            parts.append(prefix + "null")
        elif kind is int:
            parts.append(prefix + int.__repr__(value))
        elif (kind is list or kind is dict) and not value:
            parts.append(prefix + ("[]" if kind is list else "{}"))
        else:
            parts.append(prefix + canonical_json(value))
    prev_hash = str(document["prev_hash"])
    hashed = hashlib.sha256(prev_hash.encode("utf-8"))
    hashed.update(("{" + ",".join(parts) + "}").encode("utf-8"))
    digest = "sha256:" + hashed.hexdigest()
    document["record_hash"] = digest
    parts.insert(at, '"record_hash":"' + digest + '"')
    return "{" + ",".join(parts) + "}", digest


# Sorted member names and their '"name":' prefixes, and where record_hash goes among them, for
# each order of keys seen; and the string encoder canonical_json uses (ensure_ascii=False).
_MEMBERS: dict[tuple[str, ...], tuple[tuple[tuple[str, str], ...], int]] = {}
_encode_string: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


def new_decision_id() -> str:
    """A new decision id: a version 7 UUID (RFC 9562), which begins with the time in ms.

    Ids made later sort later (within a millisecond, in random order), so the store's unique
    index on them grows at its end instead of at random places: measured on a table of
    200,000 records, an insert costs about 12 µs less than with random (version 4) UUIDs,
    and the gap widens as the table grows. The other 74 bits come from ``os.urandom``, as a
    version 4 UUID's do, read 512 ids' worth at a time (a system call per id cost more than
    the rest of the id); a forked child starts on fresh bytes.
    """
    global _random_bits
    rand = next(_random_bits, None)
    if rand is None:
        _random_bits = _fresh_random_bits()
        rand = next(_random_bits)
    milliseconds = time.time_ns() // 1_000_000
    value = ((milliseconds & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 62) << 64
             | 0b10 << 62 | rand & 0x3FFF_FFFF_FFFF_FFFF)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _fresh_random_bits() -> Iterator[int]:
    # 74-bit numbers in a list iterator: next() on it is one step under the GIL, so threads
    # never get the same one; two threads that both find it empty each make a new one.
    data = os.urandom(_RANDOM_BYTES * 512)
    return iter([int.from_bytes(data[i:i + _RANDOM_BYTES], "big") >> 6
                 for i in range(0, len(data), _RANDOM_BYTES)])


_RANDOM_BYTES = 10   # 80 bits, of which 74 are kept
_random_bits: Iterator[int] = iter(())
os.register_at_fork(after_in_child=lambda: globals().update(_random_bits=iter(())))


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


_second: tuple[int, str] = (-1, "")


def now_timestamp() -> str:
    """The current time in the record timestamp format (``format_timestamp`` of now).

    On every guard's path: the text up to the second is kept from the previous call in the
    same second (a tuple, replaced whole, so threads never see half of an update).
    """
    global _second
    micros = time.time_ns() // 1000
    second, fraction = divmod(micros, 1_000_000)
    cached, prefix = _second
    if cached != second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = (second, prefix)
    return f"{prefix}.{fraction:06d}Z"


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
    were not a JSON object); ``arguments_sha256`` is always the digest of the original
    arguments (see :func:`arguments_digest`); ``erased`` names the redacted paths. ``cause`` is
    set when the decision is a fail-closed deny (``"engine_timeout"``, ``"invalid_tool_call"``).
    ``facts`` is ``input.facts`` as the engine saw it (each fact names its parser and version),
    with the facts of redacted arguments as keyed digests; None when no fact was declared for
    the tool (and in records written before facts existed).
    """

    kind: Literal["decision"] = "decision"
    sequence: int = Field(ge=1)
    decision_id: str
    timestamp: str = Field(pattern=TIMESTAMP_PATTERN)
    tool: str
    arguments: JSONObject | None
    arguments_sha256: str = Field(pattern=HASH_PATTERN)
    erased: list[str] = Field(default_factory=list)
    context: JSONObject = Field(default_factory=dict)
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

    @field_validator("span_id", mode="before")
    @classmethod
    def _span_id(cls, value: Any) -> Any:
        return _hex_id(value, 16)


def decision_document(
    *,
    decision_id: str,
    timestamp: str,
    tool: str,
    arguments: JSONObject | None,
    arguments_sha256: str,
    erased: Sequence[str],
    context: Mapping[str, Any],
    model: str | None,
    call_id: str | None,
    decision: str,
    rule: str | None,
    reason: str,
    approvers: Sequence[str],
    matched: Sequence[dict[str, Any]],
    errors: Sequence[dict[str, Any]],
    approval_id: str | None,
    policy_name: str | None,
    policy_revision: str | None,
    engine: str,
    cause: str | None,
    latency_us: int,
    trace_id: str | None,
    span_id: str | None,
    opa_decision_id: str | None,
    facts: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The document of a decision record, built without validating it (``guard()``'s path).

    Equal to ``DecisionRecord.model_validate(fields).document()`` without the chain fields,
    for well-formed fields: a UUID string, a timestamp from :func:`now_timestamp`, hex trace
    and span ids, JSON values (``tests/records/test_documents.py`` holds the two to each other).
    Validating the same fields with pydantic costs more than the SQLite transaction that
    stores them, so :meth:`SQLiteRecordStore.append_document` is kept for callers that build
    every field themselves; anything else goes through :meth:`SQLiteRecordStore.append`.
    A value that is not JSON still fails when the store serialises the document.
    """
    if decision not in ("allow", "deny", "require_approval"):
        raise ValueError(f"decision must be allow, deny or require_approval, found {decision!r}")
    return {
        "kind": "decision",
        "decision_id": decision_id,
        "timestamp": timestamp,
        "tool": tool,
        "arguments": arguments,
        "arguments_sha256": arguments_sha256,
        "erased": list(erased),
        "context": dict(context),
        "facts": dict(facts) if facts is not None else None,
        "model": model,
        "call_id": call_id,
        "decision": decision,
        "rule": rule,
        "reason": reason,
        "approvers": list(approvers),
        "matched": list(matched),
        "errors": list(errors),
        "approval_id": approval_id,
        "policy_name": policy_name,
        "policy_revision": policy_revision,
        "engine": engine,
        "cause": cause,
        "latency_us": latency_us,
        "trace_id": trace_id,
        "span_id": span_id,
        "opa_decision_id": opa_decision_id,
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


Entry = DecisionRecord | OutcomeRecord


def entry_from_document(document: dict[str, Any]) -> Entry:
    """Build the model of a stored or exported document (a JSONL line), by its ``kind``.

    Raises:
        pydantic.ValidationError: the document is not a valid record.
    """
    if document.get("kind") == "outcome":
        return OutcomeRecord.model_validate(document)
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
