"""``veto-opa approvals``: list, show, approve and reject the approvals of ``require_approval``.

The main CLI adds this command group with ``register(subparsers)``; every leaf parser sets
``func``, which takes the parsed namespace and returns the exit code::

    parser = argparse.ArgumentParser(prog="veto-opa")
    subparsers = parser.add_subparsers(dest="command")
    veto_opa.approvals_cli.register(subparsers)
    args = parser.parse_args()
    sys.exit(args.func(args))

``main(argv)`` does exactly that for this group alone (tests, ``python -m``).

``show`` also prints the call as its decision record holds it (arguments after redaction,
context, policy revision), read from ``<home>/records.sqlite3`` when it is there: the approver
should see what they are approving, not only its digest.

``--as`` is the name the approver gives; this command does not authenticate anyone. Whoever
can run it with write access to the veto home can decide approvals, so protect the home (file
permissions, or run approvals through a service that authenticates) where that matters.

Exit codes: 0 success, 1 failure (no such approval, refused, expired, store unreadable),
2 usage. Text output strips control characters: tool names and reasons come from a model and
a policy, and must not drive the terminal.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veto_opa._cli import (
    add_home,
    add_json,
    clean,
    fail,
    positive_int,
    print_json,
    run_alone,
    truncate,
    usage,
)
from veto_opa.approvals import STATUSES, Approval, SQLiteApprovalStore, store_path
from veto_opa.errors import ApprovalError, RecordError
from veto_opa.records import store as record_store
from veto_opa.records.cli import text_value

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

_EPILOG_GROUP = """\
examples:
  veto-opa approvals list --status pending
  veto-opa approvals show 0b6f3c1e-5d2a-4c8e-9f7a-2e4d6b8a1c3f
  veto-opa approvals approve 0b6f3c1e-5d2a-4c8e-9f7a-2e4d6b8a1c3f --as alice --group dba
  veto-opa approvals reject 0b6f3c1e-5d2a-4c8e-9f7a-2e4d6b8a1c3f --as alice --group dba
"""
_EPILOG_LIST = """\
examples:
  veto-opa approvals list
  veto-opa approvals list --status pending --limit 20
  veto-opa approvals list --json --home /var/lib/agent/.veto
"""
_EPILOG_SHOW = """\
example:
  veto-opa approvals show 0b6f3c1e-5d2a-4c8e-9f7a-2e4d6b8a1c3f --json
"""
_EPILOG_APPROVE = """\
example:
  veto-opa approvals approve 0b6f3c1e-5d2a-4c8e-9f7a-2e4d6b8a1c3f \\
      --as alice --group dba --justification "ticket OPS-1234, maintenance window"
"""
_EPILOG_REJECT = """\
example:
  veto-opa approvals reject 0b6f3c1e-5d2a-4c8e-9f7a-2e4d6b8a1c3f \\
      --as alice --group security-team --justification "drops a production table"
"""

_COLUMNS = ("approval_id", "status", "tool", "approvers", "requested_at", "expires_at", "reason")
_WIDTH = {"tool": 32, "approvers": 32, "reason": 48}






def _add_decider(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("approval_id", metavar="ID")
    parser.add_argument(
        "--as", dest="approver", metavar="NAME", required=True, help="who decides (recorded)"
    )
    parser.add_argument(
        "--group",
        dest="groups",
        metavar="G",
        action="append",
        default=[],
        help="an approver group you belong to; repeat for several. One must be among the "
        "approval's approvers (unless it names none)",
    )
    parser.add_argument("--justification", metavar="TEXT", help="why (recorded)")
    add_json(parser)
    add_home(parser, "approvals.sqlite3")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``approvals`` command group to an argparse subparsers object.

    Args:
        subparsers: the result of ``parser.add_subparsers()`` of the ``veto-opa`` parser.

    Returns:
        The ``approvals`` parser.
    """
    formatter = argparse.RawDescriptionHelpFormatter
    group: argparse.ArgumentParser = subparsers.add_parser(
        "approvals",
        help="list, show, approve and reject approval requests",
        description=(
            "Decide the approvals that require_approval rules ask for. An approved request "
            "lets exactly the same tool call (tool, arguments, subject) through once, before "
            "it expires."
        ),
        epilog=_EPILOG_GROUP,
        formatter_class=formatter,
    )
    group.set_defaults(func=lambda args: usage(group))
    commands = group.add_subparsers(dest="approvals_command", metavar="COMMAND")

    listing = commands.add_parser(
        "list",
        help="approval requests, newest first",
        description="Approval requests, newest first, as a table or JSON. Pending requests "
        "past their expiry are marked expired first.",
        epilog=_EPILOG_LIST,
        formatter_class=formatter,
    )
    listing.add_argument("--status", choices=STATUSES, help="only requests with this status")
    listing.add_argument("--limit", type=positive_int, default=100, help="default: 100")
    add_json(listing)
    add_home(listing, "approvals.sqlite3")
    listing.set_defaults(func=cmd_list)

    show = commands.add_parser(
        "show",
        help="one approval request and the call it is for",
        description="Every field of one approval, and the call as its decision record holds "
        "it (arguments after redaction, context, policy revision).",
        epilog=_EPILOG_SHOW,
        formatter_class=formatter,
    )
    show.add_argument("approval_id", metavar="ID")
    add_json(show)
    add_home(show, "approvals.sqlite3")
    show.set_defaults(func=cmd_show)

    approve = commands.add_parser(
        "approve",
        help="let the call through once",
        description="Approve a pending request: the same tool call may then run once, "
        "before the request expires. Your name, qualifying groups, the time and the "
        "justification are recorded.",
        epilog=_EPILOG_APPROVE,
        formatter_class=formatter,
    )
    _add_decider(approve)
    approve.set_defaults(func=cmd_approve)

    reject = commands.add_parser(
        "reject",
        help="refuse the call",
        description="Reject a pending request; the call stays blocked. Your name, qualifying "
        "groups, the time and the justification are recorded.",
        epilog=_EPILOG_REJECT,
        formatter_class=formatter,
    )
    _add_decider(reject)
    reject.set_defaults(func=cmd_reject)
    return group


def _home(args: argparse.Namespace) -> Path:
    return Path(args.home) if args.home else record_store.default_home()


def _with_store(args: argparse.Namespace, action: Callable[[SQLiteApprovalStore], int]) -> int:
    path = store_path(_home(args))
    if not path.is_file():
        return fail(f"no approval store at {path} (no approval was requested under this home)")
    try:
        store = SQLiteApprovalStore(path, create=False)
    except ApprovalError as exc:
        return fail(str(exc))
    try:
        return action(store)
    except ApprovalError as exc:
        return fail(str(exc))
    finally:
        store.close()


def _short_time(timestamp: str | None) -> str:
    return timestamp[:19] + "Z" if timestamp else "-"


def format_table(approvals: Sequence[Approval]) -> str:
    """Approvals as an aligned text table with :data:`_COLUMNS`."""
    cells = [
        [
            approval.approval_id,
            approval.status,
            truncate(approval.tool, _WIDTH["tool"]),
            truncate(", ".join(approval.approvers) or "(any)", _WIDTH["approvers"]),
            _short_time(approval.requested_at),
            _short_time(approval.expires_at),
            truncate(approval.reason, _WIDTH["reason"]),
        ]
        for approval in approvals
    ]
    widths = [
        max([len(name)] + [len(line[i]) for line in cells]) for i, name in enumerate(_COLUMNS)
    ]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(_COLUMNS), *cells]
    )


def cmd_list(args: argparse.Namespace) -> int:
    def action(store: SQLiteApprovalStore) -> int:
        approvals = store.list(status=args.status, limit=args.limit)
        if args.json:
            print_json([approval.document() for approval in approvals])
        elif approvals:
            print(format_table(approvals))
        else:
            print("no matching approvals")
        return 0

    return _with_store(args, action)


def _decision_record(home: Path, decision_id: str) -> tuple[dict[str, Any] | None, str | None]:
    # The requesting call's decision record: (document, None), or (None, why it is missing).
    path = record_store.store_path(home)
    if not path.is_file():
        return None, f"no decision record store at {path}"
    try:
        with record_store.SQLiteRecordStore(path, create=False) as records:
            record = records.get(decision_id)
    except RecordError as exc:
        return None, str(exc)
    if record is None:
        return None, f"decision {decision_id} is not in {path}"
    return record.document(), None


def _print_fields(document: dict[str, Any], width: int, indent: str = "") -> None:
    for name, value in document.items():
        print(f"{indent}{name.ljust(width)}  {text_value(value)}")


def cmd_show(args: argparse.Namespace) -> int:
    def action(store: SQLiteApprovalStore) -> int:
        approval = store.get(args.approval_id)
        if approval is None:
            return fail(f"no approval {args.approval_id!r}")
        record, missing = _decision_record(_home(args), approval.requested_by_decision)
        if args.json:
            print_json({"approval": approval.document(), "decision_record": record})
            return 0
        document = approval.document()
        width = max(len(name) for name in document)
        _print_fields(document, width)
        print(f"requested call (decision record {approval.requested_by_decision}):")
        if record is None:
            print(f"  unavailable: {clean(missing or '')}")
            return 0
        call = {
            name: record.get(name)
            for name in ("arguments", "erased", "context", "model", "call_id", "policy_name")
        }
        call["policy_revision"] = record.get("policy_revision")
        _print_fields(call, width - 2, indent="  ")
        if record.get("arguments_sha256") != approval.arguments_sha256:
            print(
                f"  WARNING: the record's arguments_sha256 {record.get('arguments_sha256')} "
                "differs from the approval's"
            )
        return 0

    return _with_store(args, action)


def _decide(args: argparse.Namespace, verdict: str) -> int:
    def action(store: SQLiteApprovalStore) -> int:
        decide = store.approve if verdict == "approved" else store.reject
        approval = decide(
            args.approval_id,
            approver=args.approver,
            groups=args.groups,
            justification=args.justification,
        )
        if args.json:
            print_json(approval.document())
            return 0
        groups = f" ({', '.join(approval.decided_groups)})" if approval.decided_groups else ""
        subject = f" for {approval.subject}" if approval.subject else ""
        print(
            clean(
                f"{verdict} {approval.approval_id}: {approval.tool}{subject}, "
                f"by {approval.decided_by}{groups} at {approval.decided_at}"
            )
        )
        if verdict == "approved":
            print(f"the same call may run once, until {approval.expires_at}")
        return 0

    try:
        return _with_store(args, action)
    except (TypeError, ValueError) as exc:  # a malformed group name from the command line
        return fail(str(exc))


def cmd_approve(args: argparse.Namespace) -> int:
    return _decide(args, "approved")


def cmd_reject(args: argparse.Namespace) -> int:
    return _decide(args, "rejected")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``veto-opa approvals ...`` alone: ``main(["approvals", "list"])``; the exit code."""
    return run_alone(register, argv)


if __name__ == "__main__":
    raise SystemExit(main())
