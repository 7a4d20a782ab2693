"""The approver's client: the one way to approve or reject, and it needs a credential.

    from veto_opa.approvals import Approver

    with Approver(".veto", token=os.environ["VETO_APPROVER_TOKEN"]) as me:
        for approval in me.pending():
            ...
        me.approve(approval_id, justification="ticket OPS-1234")
        me.reject(other_id, justification="drops a production table")

The credential is checked against the approvers registry when the client is made (an API
token, or an Ed25519 private key registered with ``veto-opa approvers add --public-key``);
every vote is signed with it and verified again by the guard before a grant is used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veto_opa.approvals.registry import Registry, RegistryFile, load_private_key, registry_path
from veto_opa.approvals.store import SQLiteApprovalStore, store_path
from veto_opa.errors import ApprovalError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from veto_opa.approvals.model import Approval
    from veto_opa.approvals.registry import Identity
    from veto_opa.approvals.webhooks import Notifier
    from veto_opa.config import VetoSettings
    from veto_opa.records.store import SQLiteRecordStore


class Approver:
    """An authenticated approver, deciding approvals under one veto home.

    Args:
        home: the veto home (default: the settings' ``VETO_HOME``).
        token: an API token (``veto-opa approvers add`` printed it).
        private_key: an Ed25519 private key (an object, or PEM bytes) whose public key is
            registered.
        registry: the approvers registry file (default ``VETO_APPROVERS`` or
            ``<home>/approvers.yaml``).
        settings: TTLs and webhooks (default: read from ``VETO_*``).
        create: create the stores when missing (the CLI says no: a mistyped home must not
            look like an empty one).

    Raises:
        ApprovalError: no credential, or one the registry does not know; the stores cannot
            be opened.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, *, token: str | None = None,
                 private_key: Ed25519PrivateKey | bytes | None = None,
                 registry: str | os.PathLike[str] | None = None,
                 settings: VetoSettings | None = None, create: bool = True) -> None:
        from veto_opa.config import VetoSettings
        from veto_opa.records.store import SQLiteRecordStore
        from veto_opa.records.store import store_path as records_path

        self.settings = settings or VetoSettings()
        self.home = Path(home) if home is not None else self.settings.home
        self.registry = RegistryFile(registry_path(self.home, registry or self.settings.approvers))
        if (token is None) == (private_key is None):
            raise ApprovalError("an approver needs exactly one credential: a token or a key")
        current = self.registry.current()
        if token is not None:
            self._signer = current.signer_for_token(token)
        else:
            key = (load_private_key(private_key) if isinstance(private_key, bytes)
                   else private_key)
            assert key is not None
            self._signer = current.signer_for_key(key)
        s = self.settings
        self._records: SQLiteRecordStore = SQLiteRecordStore(records_path(self.home),
                                                             create=create)
        try:
            self.store = SQLiteApprovalStore(
                store_path(self.home), self._records, ttl=s.approval_ttl,
                grant_ttl=s.approval_grant_ttl, rejection_ttl=s.rejection_ttl, create=create)
        except BaseException:
            self._records.close()
            raise
        from veto_opa.approvals.webhooks import notifier_from_settings

        self._notifier: Notifier | None = notifier_from_settings(s)

    @property
    def identity(self) -> Identity:
        """Who this approver is, as the registry says."""
        return self._signer.identity

    def approve(self, approval_id: str, justification: str | None = None) -> Approval:
        """Approve: with every asking rule's approvals given, the same call may run once.

        Raises:
            ApprovalError: see ``SQLiteApprovalStore.vote`` (the requester, a second vote,
                no qualifying group, not pending); ApprovalExpired when it expired.
        """
        return self._vote(approval_id, "approved", justification)

    def reject(self, approval_id: str, justification: str) -> Approval:
        """Reject: the call stays denied, and the agent is told by whom and why.

        Raises:
            ApprovalError: as :meth:`approve`, or an empty justification.
        """
        return self._vote(approval_id, "rejected", justification)

    def _vote(self, approval_id: str, verdict: Any, justification: str | None) -> Approval:
        decided = self.store.vote(approval_id, signer=self._signer, verdict=verdict,
                                  justification=justification,
                                  registry=self._registry_now())
        if self._notifier is not None:
            self._notifier.decided(decided, self.identity.name, verdict)
        return decided

    def get(self, approval_id: str) -> Approval | None:
        """The approval, or None."""
        return self.store.get(approval_id)

    def pending(self, limit: int = 100) -> list[Approval]:
        """Pending approvals, newest first."""
        return self.store.list(status="pending", limit=limit)

    def why_not(self, approval: Approval) -> str | None:
        """Why this approver cannot approve ``approval``, or None (see :func:`why_not`)."""
        return why_not(self.identity, approval)

    def _registry_now(self) -> Registry:
        registry = self.registry.current()
        if registry.approvers.get(self.identity.name) != self.identity:
            raise ApprovalError(f"{self.identity.name} is no longer registered as when this "
                                "approver signed in; sign in again")
        return registry

    def close(self) -> None:
        """Flush notifications and close the stores."""
        if self._notifier is not None:
            self._notifier.close()
        self.store.close()
        self._records.close()

    def __enter__(self) -> Approver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Approver({self.identity.name!r}, home={str(self.home)!r})"


def why_not_reject(identity: Identity, approval: Approval) -> str | None:
    """Why ``identity`` cannot reject ``approval`` now, or None."""
    if approval.status != "pending":
        return f"it is {approval.status}"
    if identity.requested(approval.request):
        return "you requested this call: separation of duties"
    if identity.name in {v.approver for v in approval.votes}:
        return "you have already voted on it"
    if not any(r.admits(identity.groups) for r in approval.request.requirements):
        return "you are in none of its approver groups"
    return None


def why_not(identity: Identity, approval: Approval) -> str | None:
    """Why ``identity`` cannot approve ``approval`` now, or None: what the store would refuse,
    for showing it before anyone tries (the store checks again)."""
    refused = why_not_reject(identity, approval)
    if refused is None and not any(r.admits(identity.groups) for r, _ in approval.missing()):
        return "none of your groups can give what it still needs"
    return refused
