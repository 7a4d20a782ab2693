"""The guard's side of approvals: what a ``require_approval`` decision becomes, and a view
that can read and wait but never approve.

``Veto.guard()`` hands each ``require_approval`` decision to :meth:`ApprovalService.settle`,
which builds the call's :class:`~veto_opa.approvals.model.Request` from the decision (each
applying rule's groups and count, the context keys in its ``binding``, the policy revision)
and asks the store: a grant that verifies turns the call into ``allow`` (once), a rejection
that still holds into ``deny`` (cause ``approval_rejected``), anything else stays
``require_approval`` with the pending request's id.

``veto.approvals`` is an :class:`ApprovalView`: ``get``, ``list``, ``wait`` and
``wait_async``. Approving takes an approver's credential
(:class:`~veto_opa.approvals.approver.Approver`); nothing the agent's ``Veto`` holds can
make a vote.
"""

from __future__ import annotations

import asyncio
import os
import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from veto_opa.approvals.model import ANY, Approval, Requirement, build_request
from veto_opa.approvals.registry import RegistryFile
from veto_opa.errors import ApprovalError, VetoError

if TYPE_CHECKING:
    from veto_opa.approvals.store import SQLiteApprovalStore
    from veto_opa.call import ToolCall
    from veto_opa.decision import Verdict
    from veto_opa.approvals.webhooks import Notifier
    from veto_opa.config import VetoSettings
    from veto_opa.records.store import SQLiteRecordStore

log = logging.getLogger("veto_opa.approvals")


@dataclass(frozen=True)
class Settled:
    """A verdict after approvals, the approval id, and the cause of a deny that approvals
    made (``approval_rejected``, ``approval_error``)."""

    verdict: Verdict
    approval_id: str | None
    cause: str | None


def requirements_of(verdict: Verdict) -> tuple[Requirement, ...]:
    """What a ``require_approval`` verdict needs: one requirement per applying
    ``require_approval`` rule, with that rule's own groups and count; for a policy default,
    its approvers."""
    asking = [m for m in verdict.matched if m.action == "require_approval"]
    if not asking:
        return (Requirement(verdict.policy_name, verdict.rule,
                            tuple(sorted(set(verdict.approvers))), 1),)
    return tuple(Requirement(m.policy, m.rule, tuple(sorted(set(m.approvers))),
                             max(1, m.approvals)) for m in asking)


class ApprovalService:
    """Settles ``require_approval`` decisions for ``Veto.guard()``.

    Args:
        store: the approval store (it holds the record store whose chain gets the events).
        registry: the approvers registry file, read again when it changes.
        key: the veto home's secret key, for the keyed arguments digest.
        notifier: where new requests are announced (webhooks), if anywhere.
    """

    def __init__(self, store: SQLiteApprovalStore, registry: RegistryFile, key: bytes,
                 notifier: Notifier | None = None) -> None:
        self.store = store
        self.registry = registry
        self._key = key
        self._notifier = notifier
        self.view = ApprovalView(store)

    def settle(self, verdict: Verdict, call: ToolCall, decision_id: str) -> Settled:
        """The verdict for a call the policy holds for approval. Never raises: a failure
        is a fail-closed deny naming the cause."""
        try:
            requirements = requirements_of(verdict)
            for requirement in requirements:
                if not requirement.groups:
                    raise ApprovalError(
                        f"rule {requirement.label} names no approvers, so nobody may approve "
                        f"the call (write approvers: [{ANY}] to let any approver decide)")
            request = build_request(
                tool=call.tool, arguments_text=call.arguments_text, context=call.context,
                key=self._key, bound_keys=list(verdict.binding), requirements=requirements,
                policy_revision=verdict.policy_revision)
            settled = self.store.settle(request, decision_id=decision_id, rule=verdict.rule,
                                        reason=verdict.reason,
                                        registry=self.registry.current())
        except (VetoError, TypeError, ValueError, KeyError) as exc:
            log.error("veto-opa could not settle the approval of %s: %s", decision_id, exc)
            return Settled(replace(verdict, decision="deny",
                                   reason=f"approval_error: the approval could not be "
                                          f"requested: {exc}"), None, "approval_error")
        approval = settled.approval
        if settled.outcome == "granted":
            who = ", ".join(approval.decided_by)
            return Settled(replace(verdict, decision="allow",
                                   reason=f"approved by {who} (approval "
                                          f"{approval.approval_id}): {verdict.reason}"),
                           approval.approval_id, None)
        if settled.outcome == "rejected":
            who = ", ".join(approval.decided_by)
            why = approval.justification or "no reason given"
            return Settled(replace(verdict, decision="deny",
                                   reason=f"rejected by {who} (approval "
                                          f"{approval.approval_id}): {why}"),
                           approval.approval_id, "approval_rejected")
        if self._notifier is not None and approval.requested_by_decision == decision_id:
            self._notifier.requested(approval)
        return Settled(verdict, approval.approval_id, None)

    def close(self) -> None:
        """Stop the notifier and close the approval store."""
        if self._notifier is not None:
            self._notifier.close()
        self.store.close()


class ApprovalView:
    """Approvals as the agent side sees them: read and wait, never decide."""

    def __init__(self, store: SQLiteApprovalStore) -> None:
        self._store = store

    def get(self, approval_id: str) -> Approval | None:
        """The approval, or None.

        Raises:
            ApprovalError: the store cannot be read.
        """
        return self._store.get(approval_id)

    def list(self, *, status: str | None = None, limit: int = 100) -> list[Approval]:
        """Approvals, newest first (see ``SQLiteApprovalStore.list``)."""
        return self._store.list(status=status, limit=limit)

    def wait(self, approval_id: str, timeout: float, *, poll: float = 0.1) -> Approval:
        """Block until the approval is no longer pending, or ``timeout`` seconds passed.

        Returns:
            The approval as it is then (still ``pending`` after a timeout).

        Raises:
            ApprovalError: no such approval, or the store cannot be read.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            approval = self._current(approval_id)
            remaining = deadline - time.monotonic()
            if approval.status != "pending" or remaining <= 0:
                return approval
            time.sleep(min(poll, remaining))

    async def wait_async(self, approval_id: str, timeout: float, *,
                         poll: float = 0.1) -> Approval:
        """:meth:`wait` for asyncio code: the event loop keeps running meanwhile."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            approval = await asyncio.to_thread(self._current, approval_id)
            remaining = deadline - time.monotonic()
            if approval.status != "pending" or remaining <= 0:
                return approval
            await asyncio.sleep(min(poll, remaining))

    def _current(self, approval_id: str) -> Approval:
        approval = self._store.get(approval_id)
        if approval is None:
            raise ApprovalError(f"no approval {approval_id!r}")
        return approval


def open_service(settings: VetoSettings, records: SQLiteRecordStore,
                 key: bytes) -> ApprovalService:
    """The approval service of a ``Veto``: the store under ``settings.home`` chaining into
    ``records``, the registry file, and the webhook notifier the settings configure.

    Raises:
        ApprovalError: the approval store cannot be opened.
    """
    from veto_opa.approvals.registry import registry_path
    from veto_opa.approvals.store import SQLiteApprovalStore, store_path
    from veto_opa.approvals.webhooks import notifier_from_settings

    store = SQLiteApprovalStore(store_path(settings.home), records, ttl=settings.approval_ttl,
                                grant_ttl=settings.approval_grant_ttl,
                                rejection_ttl=settings.rejection_ttl)
    path = registry_path(settings.home, settings.approvers)
    if os.access(path if path.exists() else path.parent, os.W_OK):
        log.warning("veto-opa: the approvers registry %s can be %s by this process, so an "
                    "agent running here could register itself as an approver; set "
                    "VETO_APPROVERS to a file another user owns (see the README's trust "
                    "boundary)", path, "written" if path.exists() else "created")
    registry = RegistryFile(path)
    return ApprovalService(store, registry, key, notifier_from_settings(settings))
