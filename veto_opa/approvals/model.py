"""What an approval is: the call it is bound to, what it needs, and what happened to it.

An approval binds **exactly one call**. :class:`Request` holds everything that makes two calls
the same call for an approver: the tool, a keyed digest of the canonical arguments, the
subject (the requester), the context keys the policy decides on, each asking rule with its
approver groups and count, and the policy revision. :meth:`Request.digest` of it is the
approval's ``binding``: a grant is used only by a call whose request has the same digest, and
requests with different digests never share an approval.

The arguments digest is keyed (HMAC-SHA256 with the store's record key, see
:func:`arguments_mac`): the request is shown to approvers and written to the record chain,
and a plain hash of small arguments (a 4-digit PIN) is reversed by trying them all.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from veto_opa._json import canonical_json, keyed_digest, sha256_digest
from veto_opa.decision import WHOLE_CONTEXT

Status = Literal["pending", "approved", "rejected", "expired", "used"]
STATUSES: tuple[Status, ...] = get_args(Status)
Verdict = Literal["approved", "rejected"]

ANY = "any"
"""The approver group that stands for any registered approver (``approvers: [any]``)."""

SUBJECT_KEYS = ("subject", "user", "user_id")
"""Context keys naming the requester; every one present is bound, the first names them."""

ALWAYS_BOUND = ("environment", *SUBJECT_KEYS)


@dataclass(frozen=True)
class Requirement:
    """What one asking rule needs: ``count`` distinct approvers, each in one of ``groups``.

    ``groups == ("any",)`` admits any registered approver. ``rule`` is None for a policy's
    ``default: require_approval``.
    """

    policy: str | None
    rule: str | None
    groups: tuple[str, ...]
    count: int = 1

    def admits(self, groups: Iterable[str]) -> bool:
        """Whether an approver in ``groups`` may count towards this requirement."""
        return ANY in self.groups or not set(self.groups).isdisjoint(groups)

    @property
    def label(self) -> str:
        """``policy/rule`` (``policy/default``) for messages."""
        return f"{self.policy or '?'}/{self.rule or 'default'}"

    def document(self) -> dict[str, Any]:
        return {"policy": self.policy, "rule": self.rule, "groups": list(self.groups),
                "count": self.count}

    @classmethod
    def from_document(cls, value: Mapping[str, Any]) -> Requirement:
        return cls(value["policy"], value["rule"], tuple(value["groups"]), int(value["count"]))


@dataclass(frozen=True)
class Request:
    """The call an approval is bound to (see the module docstring).

    Attributes:
        tool: the tool name.
        arguments_mac: ``"hmac-sha256:<hex>"`` of the canonical arguments.
        subject: canonical JSON of the requester (``context.subject``, ``.user`` or
            ``.user_id``: the first present, any JSON value), None without one.
        context: the bound context keys that the call has, with their values.
        bound_keys: the context keys bound (present or not), sorted; ``("*",)`` binds the
            whole context.
        requirements: each asking rule's requirement, sorted.
        policy_revision: the bundle revision that asked.
    """

    tool: str
    arguments_mac: str
    subject: str | None
    context: dict[str, Any]
    bound_keys: tuple[str, ...]
    requirements: tuple[Requirement, ...]
    policy_revision: str | None

    def document(self) -> dict[str, Any]:
        return {"tool": self.tool, "arguments_mac": self.arguments_mac,
                "subject": self.subject, "context": self.context,
                "bound_keys": list(self.bound_keys),
                "requirements": [r.document() for r in self.requirements],
                "policy_revision": self.policy_revision}

    @classmethod
    def from_document(cls, value: Mapping[str, Any]) -> Request:
        return cls(value["tool"], value["arguments_mac"], value["subject"],
                   dict(value["context"]), tuple(value["bound_keys"]),
                   tuple(Requirement.from_document(r) for r in value["requirements"]),
                   value["policy_revision"])

    def digest(self) -> str:
        """The approval's ``binding``: ``sha256:`` of the canonical request."""
        return sha256_digest(canonical_json(self.document()))

    def call_digest(self) -> str:
        """The same call whatever the policy says about it (no requirements, no revision):
        when the policy changes, a new request for the call supersedes the old ones."""
        document = self.document()
        del document["requirements"], document["policy_revision"]
        return sha256_digest(canonical_json(document))

    def requesters(self) -> frozenset[str]:
        """Every name the requester goes by (see :func:`names_in`); empty without a
        subject."""
        if self.subject is None:
            return frozenset()
        names: set[str] = set()
        for key in SUBJECT_KEYS:
            if key in self.context:
                names |= names_in(self.context[key])
        return frozenset(names)


def build_request(*, tool: str, arguments_text: str, context: Mapping[str, Any], key: bytes,
                  bound_keys: Iterable[str], requirements: Iterable[Requirement],
                  policy_revision: str | None) -> Request:
    """The request of one call.

    Args:
        tool: the tool name.
        arguments_text: the canonical JSON text of the arguments object.
        context: the call's context.
        key: the store's secret key (``records.load_or_create_key``).
        bound_keys: the context keys the decision binds (its ``binding``); ``environment``
            and the subject keys are always added; ``"*"`` binds the whole context.
        requirements: the asking rules' requirements.
        policy_revision: the revision that decided.

    Raises:
        TypeError, ValueError: a context value is not JSON.
    """
    keys = set(bound_keys)
    if WHOLE_CONTEXT in keys:
        bound: tuple[str, ...] = (WHOLE_CONTEXT,)
        values = dict(context)
    else:
        bound = tuple(sorted(keys | set(ALWAYS_BOUND)))
        values = {k: context[k] for k in bound if k in context}
    values = _plain(values)
    subject = next((canonical_json(values[k]) for k in SUBJECT_KEYS if k in values), None)
    return Request(tool, arguments_mac(arguments_text, key), subject, values, bound,
                   tuple(sorted(set(requirements), key=_requirement_order)), policy_revision)


def arguments_mac(arguments_text: str, key: bytes) -> str:
    """``"hmac-sha256:<hex>"`` of canonical arguments text under ``key`` (domain-separated
    from the record key's other use, redaction digests)."""
    return keyed_digest(key, "veto-opa approval arguments\0" + arguments_text)


def names_in(value: Any) -> frozenset[str]:
    """Every name a subject value may stand for: each string (NFKC, case-folded) and number
    in it, at any depth. Deliberately broad: it only ever refuses an approver, as the
    requester, who would otherwise approve a call of their own (``{"id": "Bob"}`` and
    ``"bob"`` are the same person here)."""
    names: set[str] = set()
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, str):
            names.add(_fold(current))
        elif isinstance(current, bool) or current is None:
            continue
        elif isinstance(current, int | float):
            names.add(_fold(canonical_json(current)))
        elif isinstance(current, Mapping):
            stack.extend(current.values())
        elif isinstance(current, list | tuple):
            stack.extend(current)
    names.discard("")
    return frozenset(names)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().strip()


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    # The canonical form of the values (tuples become lists, 1.0 stays 1.0): what is hashed
    # and what is stored must be the same.
    import json

    result: dict[str, Any] = json.loads(canonical_json(values))
    return result


def _requirement_order(r: Requirement) -> tuple[str, str, tuple[str, ...], int]:
    return (r.policy or "", r.rule or "", r.groups, r.count)


@dataclass(frozen=True)
class Vote:
    """One approver's verdict on an approval, as recorded.

    Attributes:
        approver: the approver's registry name.
        verdict: ``approved`` or ``rejected``.
        groups: the approver's groups (from the registry) when they voted.
        justification: why, in their words.
        at: when (RFC 3339 UTC).
        key_id: the registry key that signed the vote.
        sequence: the vote's entry in the record chain.
    """

    approver: str
    verdict: Verdict
    groups: tuple[str, ...]
    justification: str | None
    at: str
    key_id: str
    sequence: int

    def document(self) -> dict[str, Any]:
        return {"approver": self.approver, "verdict": self.verdict, "groups": list(self.groups),
                "justification": self.justification, "at": self.at, "key_id": self.key_id,
                "sequence": self.sequence}

    @classmethod
    def from_document(cls, value: Mapping[str, Any]) -> Vote:
        return cls(value["approver"], value["verdict"], tuple(value["groups"]),
                   value["justification"], value["at"], value["key_id"], int(value["sequence"]))


@dataclass(frozen=True)
class Approval:
    """One approval request and everything that happened to it. Immutable.

    Attributes:
        approval_id: a UUID4.
        status: ``pending``, ``approved``, ``rejected``, ``expired`` or ``used``.
        binding: ``request.digest()``.
        request: the call it is bound to.
        rule, reason: the deciding rule and its message, shown to approvers.
        requested_by_decision: the decision record of the guard call that asked.
        requested_at: when.
        expires_at: when a ``pending`` request expires; for ``approved``, when the grant
            does; for ``rejected``, until when the same call stays denied.
        votes: every approver's vote, in order.
        used_by_decision, used_at: the guard call the grant let through, and when.
        expired_cause: why it expired: ``not_decided``, ``grant_unused`` or
            ``policy_changed``.
        events: ``(event, sequence, record_hash)`` of its entries in the record chain.
    """

    approval_id: str
    status: Status
    binding: str
    request: Request
    rule: str | None
    reason: str
    requested_by_decision: str
    requested_at: str
    expires_at: str
    votes: tuple[Vote, ...] = ()
    used_by_decision: str | None = None
    used_at: str | None = None
    expired_cause: str | None = None
    events: tuple[tuple[str, int, str], ...] = field(default=())

    @property
    def tool(self) -> str:
        return self.request.tool

    @property
    def subject(self) -> str | None:
        return self.request.subject

    @property
    def decided_by(self) -> tuple[str, ...]:
        """The approvers whose votes decided it (those with the final verdict)."""
        if self.status == "rejected":
            return tuple(v.approver for v in self.votes if v.verdict == "rejected")
        return tuple(v.approver for v in self.votes if v.verdict == "approved")

    @property
    def decided_at(self) -> str | None:
        return self.votes[-1].at if self.votes and self.status != "pending" else None

    @property
    def justification(self) -> str | None:
        """The deciding vote's justification (the rejection's, for a rejected request)."""
        for vote in reversed(self.votes):
            if self.status != "rejected" or vote.verdict == "rejected":
                return vote.justification
        return None

    def missing(self) -> list[tuple[Requirement, int]]:
        """Each requirement not yet met, with how many more approvers it needs."""
        return missing_approvals(self.request.requirements,
                                 [v for v in self.votes if v.verdict == "approved"])

    def document(self) -> dict[str, Any]:
        """The approval as a JSON object (for ``--json``, the store and exports)."""
        return {"approval_id": self.approval_id, "status": self.status,
                "binding": self.binding, "tool": self.tool, "request": self.request.document(),
                "rule": self.rule, "reason": self.reason,
                "requested_by_decision": self.requested_by_decision,
                "requested_at": self.requested_at, "expires_at": self.expires_at,
                "votes": [v.document() for v in self.votes],
                "decided_by": list(self.decided_by), "decided_at": self.decided_at,
                "justification": self.justification,
                "used_by_decision": self.used_by_decision, "used_at": self.used_at,
                "expired_cause": self.expired_cause,
                "events": [list(e) for e in self.events]}

    @classmethod
    def from_document(cls, value: Mapping[str, Any]) -> Approval:
        return cls(
            approval_id=value["approval_id"], status=value["status"], binding=value["binding"],
            request=Request.from_document(value["request"]), rule=value["rule"],
            reason=value["reason"], requested_by_decision=value["requested_by_decision"],
            requested_at=value["requested_at"], expires_at=value["expires_at"],
            votes=tuple(Vote.from_document(v) for v in value["votes"]),
            used_by_decision=value["used_by_decision"], used_at=value["used_at"],
            expired_cause=value["expired_cause"],
            events=tuple((str(e[0]), int(e[1]), str(e[2])) for e in value["events"]))


def missing_approvals(requirements: Iterable[Requirement],
                      votes: Iterable[Vote]) -> list[tuple[Requirement, int]]:
    """Each requirement that ``votes`` (approving votes of distinct approvers) do not meet,
    with how many more approvers it needs. One approver may count for several rules (each
    rule's own groups decide), never twice for one."""
    votes = list(votes)
    missing = []
    for requirement in requirements:
        approvers = {v.approver for v in votes if requirement.admits(v.groups)}
        if len(approvers) < requirement.count:
            missing.append((requirement, requirement.count - len(approvers)))
    return missing
