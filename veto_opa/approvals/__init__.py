"""Approvals: the human decision that a ``require_approval`` tool call may run, once.

Modules, each with one job:

- :mod:`~veto_opa.approvals.model`: what an approval is bound to (:class:`Request`) and
  what happened to it (:class:`Approval`);
- :mod:`~veto_opa.approvals.registry`: the approvers, their groups and credentials;
- :mod:`~veto_opa.approvals.store`: the SQLite index and the record-chain events;
- :mod:`~veto_opa.approvals.service`: what ``Veto.guard()`` calls, and the read-only
  :class:`ApprovalView` that ``veto.approvals`` is;
- :mod:`~veto_opa.approvals.approver`: :class:`Approver`, the only way to vote;
- :mod:`~veto_opa.approvals.webhooks`: notifications;
- :mod:`~veto_opa.approvals.console`: the approvers' web console (``veto-opa serve``);
- :mod:`~veto_opa.approvals.cli`: ``veto-opa approvals`` and ``veto-opa approvers``.
"""

from __future__ import annotations

from veto_opa.approvals.approver import Approver
from veto_opa.approvals.model import STATUSES, Approval, Request, Requirement, Status, Vote
from veto_opa.approvals.registry import Identity, Registry
from veto_opa.approvals.service import ApprovalView
from veto_opa.approvals.store import SQLiteApprovalStore, store_path

__all__ = [
    "STATUSES",
    "Approval",
    "ApprovalView",
    "Approver",
    "Identity",
    "Registry",
    "Request",
    "Requirement",
    "SQLiteApprovalStore",
    "Status",
    "Vote",
    "store_path",
]
