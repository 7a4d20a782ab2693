"""``veto-opa approvals`` (list, show, approve, reject), ``veto-opa approvers`` (add, list,
remove) and ``veto-opa serve`` (the approvers' web console).

The main CLI adds each group with ``register(subparsers)``; ``main(argv)`` runs them alone.

Deciding takes a credential, never a name: ``--token-file FILE`` or ``VETO_APPROVER_TOKEN``
(a token ``veto-opa approvers add`` printed), or ``--key-file FILE`` (an Ed25519 private key
whose public key is registered). The registry says who that is and in which groups.

Exit codes: 0 success, 1 failure (no such approval, refused, expired, bad credential, store
unreadable), 2 usage. Text output strips control characters: tool names and reasons come
from a model and a policy, and must not drive the terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veto_opa._cli import add_json, clean, fail, positive_int, print_json, run_alone, truncate, \
    usage
from veto_opa.approvals.model import STATUSES, Approval
from veto_opa.errors import ApprovalError, RecordError, VetoError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from veto_opa.approvals.approver import Approver
    from veto_opa.approvals.store import SQLiteApprovalStore

_RAW = argparse.RawDescriptionHelpFormatter
_COLUMNS = ("approval_id", "status", "tool", "needs", "subject", "requested_at", "reason")
_WIDTH = {"tool": 28, "needs": 36, "subject": 20, "reason": 44}


def _add_home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", metavar="DIR",
                        help="veto home holding the stores (default: $VETO_HOME or .veto)")
    parser.add_argument("--approvers", metavar="FILE",
                        help="the approvers registry (default: $VETO_APPROVERS or "
                             "HOME/approvers.yaml)")


def _add_credential(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--token-file", metavar="FILE",
                       help="file holding your approver token (default: $VETO_APPROVER_TOKEN)")
    group.add_argument("--key-file", metavar="FILE",
                       help="your Ed25519 private key (PEM) whose public key is registered")


def register(subparsers: Any) -> None:
    """Add ``approvals``, ``approvers`` and ``serve`` to the ``veto-opa`` parser's
    subparsers."""
    _register_approvals(subparsers)
    _register_approvers(subparsers)
    serve = subparsers.add_parser(
        "serve", help="the approvers' web console", formatter_class=_RAW,
        description="Serve the approvers' web console: sign in with an approver token, see "
                    "pending calls, approve or reject them, browse recent decisions and the "
                    "record chain's status. Listens on 127.0.0.1 unless told otherwise; put "
                    "it behind HTTPS (and --secure-cookies) to reach it from elsewhere.",
        epilog="example:\n  veto-opa serve --home /var/lib/agent/.veto --port 8700")
    _add_home(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8700)
    serve.add_argument("--secure-cookies", action="store_true",
                       help="send the session cookie over HTTPS only")
    serve.set_defaults(func=cmd_serve)


def _register_approvals(subparsers: Any) -> None:
    group: argparse.ArgumentParser = subparsers.add_parser(
        "approvals", help="list, show, approve and reject approval requests",
        formatter_class=_RAW,
        description="Decide the approvals that require_approval rules ask for. An approved "
                    "request lets exactly the same call (tool, arguments, requester, bound "
                    "context, rules and policy revision) through once, within its grant "
                    "validity.",
        epilog="examples:\n  veto-opa approvals list --status pending\n"
               "  veto-opa approvals show ID\n"
               "  veto-opa approvals approve ID --token-file ~/.veto-token "
               "--justification 'OPS-1234'\n"
               "  VETO_APPROVER_TOKEN=... veto-opa approvals reject ID --justification "
               "'drops a production table'")
    group.set_defaults(func=lambda args: usage(group))
    commands = group.add_subparsers(dest="approvals_command", metavar="COMMAND")

    listing = commands.add_parser("list", help="approval requests, newest first")
    listing.add_argument("--status", choices=STATUSES, help="only requests with this status")
    listing.add_argument("--limit", type=positive_int, default=100, help="default: 100")
    add_json(listing)
    _add_home(listing)
    listing.set_defaults(func=cmd_list)

    show = commands.add_parser("show", help="one request and the call it is for")
    show.add_argument("approval_id", metavar="ID")
    add_json(show)
    _add_home(show)
    show.set_defaults(func=cmd_show)

    for verdict in ("approve", "reject"):
        decide = commands.add_parser(
            verdict, help="let the call through once" if verdict == "approve"
            else "refuse the call (it stays denied, with your justification)")
        decide.add_argument("approval_id", metavar="ID")
        decide.add_argument("--justification", metavar="TEXT", required=verdict == "reject",
                            help="why (recorded, and told to the agent on a rejection)")
        _add_credential(decide)
        add_json(decide)
        _add_home(decide)
        decide.set_defaults(func=cmd_approve if verdict == "approve" else cmd_reject)


def _register_approvers(subparsers: Any) -> None:
    group: argparse.ArgumentParser = subparsers.add_parser(
        "approvers", help="add, list and remove approvers", formatter_class=_RAW,
        description="Manage the approvers registry: who may decide approvals, in which "
                    "groups, with which credential. Whoever can write the registry can add "
                    "an approver: keep it where the agent's user cannot write "
                    "(VETO_APPROVERS).",
        epilog="examples:\n  veto-opa approvers add alice --group dba --group sre-oncall\n"
               "  veto-opa approvers add bob --group dba --subject '\"user:bob\"' "
               "--public-key bob.pub\n"
               "  veto-opa approvers list\n  veto-opa approvers remove alice")
    group.set_defaults(func=lambda args: usage(group))
    commands = group.add_subparsers(dest="approvers_command", metavar="COMMAND")

    add = commands.add_parser("add", help="register an approver (prints a new token once)")
    add.add_argument("name")
    add.add_argument("--group", dest="groups", action="append", default=[], metavar="G",
                     help="an approver group; repeat for several")
    add.add_argument("--subject", dest="subjects", action="append", default=[], metavar="JSON",
                     help="a JSON value this person's own calls carry as subject (beside "
                          "their name); repeat for several")
    add.add_argument("--public-key", metavar="FILE",
                     help="their Ed25519 public key (PEM or OpenSSH) instead of a token")
    add.add_argument("--replace", action="store_true",
                     help="replace an existing approver of that name (a new token)")
    _add_home(add)
    add.set_defaults(func=cmd_approvers_add)

    listing = commands.add_parser("list", help="registered approvers")
    add_json(listing)
    _add_home(listing)
    listing.set_defaults(func=cmd_approvers_list)

    remove = commands.add_parser("remove", help="remove an approver (their votes stop "
                                                "counting for grants not yet used)")
    remove.add_argument("name")
    _add_home(remove)
    remove.set_defaults(func=cmd_approvers_remove)


# -- helpers -------------------------------------------------------------------------------

def _settings(args: argparse.Namespace) -> Any:
    from veto_opa.config import VetoSettings

    values: dict[str, Any] = {}
    if args.home:
        values["home"] = Path(args.home)
    if args.approvers:
        values["approvers"] = Path(args.approvers)
    return VetoSettings(**values)


def _registry_path(args: argparse.Namespace) -> Path:
    from veto_opa.approvals.registry import registry_path

    settings = _settings(args)
    return registry_path(settings.home, settings.approvers)


def _with_store(args: argparse.Namespace,
                action: Callable[[SQLiteApprovalStore], int]) -> int:
    from veto_opa.approvals.store import SQLiteApprovalStore, store_path
    from veto_opa.records.store import SQLiteRecordStore
    from veto_opa.records.store import store_path as records_path

    settings = _settings(args)
    path = store_path(settings.home)
    if not path.is_file():
        return fail(f"no approval store at {path} (no approval was requested under this home)")
    try:
        records = SQLiteRecordStore(records_path(settings.home), create=False)
    except RecordError as exc:
        return fail(str(exc))
    try:
        store = SQLiteApprovalStore(path, records, ttl=settings.approval_ttl,
                                    grant_ttl=settings.approval_grant_ttl,
                                    rejection_ttl=settings.rejection_ttl, create=False)
        try:
            return action(store)
        finally:
            store.close()
    except (VetoError, ValueError) as exc:
        return fail(str(exc))
    finally:
        records.close()


def _approver(args: argparse.Namespace) -> Approver:
    """The approver the credential of ``args`` proves.

    Raises:
        ApprovalError: no credential, unreadable, or unknown.
    """
    from veto_opa.approvals.approver import Approver

    settings = _settings(args)
    try:
        if args.key_file:
            return Approver(settings.home, private_key=Path(args.key_file).read_bytes(),
                            settings=settings, create=False)
        if args.token_file:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        else:
            token = os.environ.get("VETO_APPROVER_TOKEN", "").strip()
    except OSError as exc:
        raise ApprovalError(f"cannot read the credential: {exc}") from None
    if not token:
        raise ApprovalError("deciding needs your credential: --token-file FILE, "
                            "VETO_APPROVER_TOKEN, or --key-file FILE")
    return Approver(settings.home, token=token, settings=settings, create=False)


def _needs(approval: Approval) -> str:
    return "; ".join(f"{', '.join(r.groups)}×{r.count}" for r in approval.request.requirements)


def format_table(approvals: Sequence[Approval]) -> str:
    """Approvals as an aligned text table."""
    cells = [[a.approval_id, a.status, truncate(a.tool, _WIDTH["tool"]),
              truncate(_needs(a), _WIDTH["needs"]),
              truncate(a.subject or "-", _WIDTH["subject"]), a.requested_at[:19] + "Z",
              truncate(a.reason, _WIDTH["reason"])] for a in approvals]
    widths = [max([len(n)] + [len(c[i]) for c in cells]) for i, n in enumerate(_COLUMNS)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in [list(_COLUMNS), *cells])


def _describe(approval: Approval) -> list[str]:
    request = approval.request
    lines = [f"approval_id      {approval.approval_id}", f"status           {approval.status}",
             f"tool             {approval.tool}", f"rule             {approval.rule or '-'}",
             f"reason           {approval.reason}",
             f"requester        {request.subject or '- (no subject)'}",
             f"context          {json.dumps(request.context, ensure_ascii=False)}",
             f"bound keys       {', '.join(request.bound_keys)}",
             f"arguments        {request.arguments_mac}",
             f"policy revision  {request.policy_revision or '-'}",
             f"requested        {approval.requested_at} by decision "
             f"{approval.requested_by_decision}",
             f"expires          {approval.expires_at}"]
    for r in request.requirements:
        lines.append(f"needs            {r.count} of {', '.join(r.groups)} ({r.label})")
    for vote in approval.votes:
        why = f": {vote.justification}" if vote.justification else ""
        lines.append(f"vote             {vote.verdict} by {vote.approver} "
                     f"({', '.join(vote.groups)}) at {vote.at}{why}")
    if approval.used_by_decision:
        lines.append(f"used             {approval.used_at} by decision "
                     f"{approval.used_by_decision}")
    if approval.expired_cause:
        lines.append(f"expired          {approval.expired_cause}")
    return [clean(line) for line in lines]


# -- approvals -----------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    def action(store: SQLiteApprovalStore) -> int:
        approvals = store.list(status=args.status, limit=args.limit)
        if args.json:
            print_json([a.document() for a in approvals])
        elif approvals:
            print(format_table(approvals))
        else:
            print("no matching approvals")
        return 0

    return _with_store(args, action)


def cmd_show(args: argparse.Namespace) -> int:
    def action(store: SQLiteApprovalStore) -> int:
        approval = store.get(args.approval_id)
        if approval is None:
            return fail(f"no approval {args.approval_id!r}")
        record = store.records.get(approval.requested_by_decision)
        if args.json:
            print_json({"approval": approval.document(),
                        "decision_record": record.document() if record else None})
            return 0
        print("\n".join(_describe(approval)))
        if record is not None:
            print(clean(f"arguments (redacted, from the decision record): "
                        f"{json.dumps(record.arguments, ensure_ascii=False, sort_keys=True)}"))
        return 0

    return _with_store(args, action)


def _decide(args: argparse.Namespace, verdict: str) -> int:
    try:
        approver = _approver(args)
    except (VetoError, ValueError) as exc:
        return fail(str(exc))
    try:
        if verdict == "approve":
            approval = approver.approve(args.approval_id, args.justification)
        else:
            approval = approver.reject(args.approval_id, args.justification)
    except VetoError as exc:
        return fail(str(exc))
    finally:
        approver.close()
    if args.json:
        print_json(approval.document())
        return 0
    print(clean(f"{verdict}d {approval.approval_id} as {approver.identity.name}: "
                f"{approval.tool} is now {approval.status}"))
    if approval.status == "approved":
        print(f"the same call may run once, until {approval.expires_at}")
    elif approval.status == "pending":
        still = "; ".join(f"{n} more from {', '.join(r.groups)} ({r.label})"
                          for r, n in approval.missing())
        print(clean(f"still needs {still}"))
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    return _decide(args, "approve")


def cmd_reject(args: argparse.Namespace) -> int:
    return _decide(args, "reject")


# -- approvers -----------------------------------------------------------------------------

def cmd_approvers_add(args: argparse.Namespace) -> int:
    from veto_opa.approvals.registry import (
        Identity,
        Registry,
        ed25519_key,
        load_public_key,
        new_token_key,
    )

    path = _registry_path(args)
    try:
        registry = Registry.load(path)
        if args.name in registry.approvers and not args.replace:
            return fail(f"{args.name} is already an approver in {path} (--replace gives them "
                        "a new credential)")
        subjects = [json.loads(text) for text in args.subjects]
        token = None
        if args.public_key:
            key = ed25519_key(load_public_key(Path(args.public_key).read_bytes()))
        else:
            taken = [k.key_id for i in registry.approvers.values() for k in i.keys]
            token, key = new_token_key(taken)
        registry = registry.with_approver(Identity(args.name, tuple(dict.fromkeys(args.groups)),
                                                   tuple(subjects), (key,)))
        registry.save(path)
    except json.JSONDecodeError as exc:
        return fail(f"--subject must be JSON (quote strings: '\"user:bob\"'): {exc}")
    except (VetoError, OSError) as exc:
        return fail(str(exc))
    print(clean(f"added {args.name} ({', '.join(args.groups) or 'no groups'}) to {path}, "
                f"key {key.key_id}"))
    if token is not None:
        print("their approver token (shown once, not stored; give it to them privately):")
        print(token)
    return 0


def cmd_approvers_list(args: argparse.Namespace) -> int:
    from veto_opa.approvals.registry import Registry

    try:
        registry = Registry.load(_registry_path(args))
    except VetoError as exc:
        return fail(str(exc))
    rows = [{"name": i.name, "groups": list(i.groups), "subjects": list(i.subjects),
             "keys": [f"{k.key_id} ({k.kind})" for k in i.keys]}
            for i in sorted(registry.approvers.values(), key=lambda i: i.name)]
    if args.json:
        print_json(rows)
    elif not rows:
        print(f"no approvers in {registry.path}")
    for row in rows if not args.json else []:
        print(clean(f"{row['name']}  groups: {', '.join(row['groups']) or '-'}  "
                    f"keys: {', '.join(row['keys'])}"))
    return 0


def cmd_approvers_remove(args: argparse.Namespace) -> int:
    from veto_opa.approvals.registry import Registry

    path = _registry_path(args)
    try:
        Registry.load(path, missing_ok=False).without(args.name).save(path)
    except VetoError as exc:
        return fail(str(exc))
    print(clean(f"removed {args.name} from {path}"))
    return 0


# -- serve ---------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    from veto_opa.approvals.console import serve

    try:
        return serve(_settings(args), host=args.host, port=args.port,
                     secure_cookies=args.secure_cookies)
    except VetoError as exc:
        return fail(str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    """Run these command groups alone: ``main(["approvals", "list"])``; the exit code."""
    return run_alone(_register_all, argv)


def _register_all(subparsers: Any) -> argparse.ArgumentParser:
    register(subparsers)
    return argparse.ArgumentParser()


if __name__ == "__main__":
    sys.exit(main())
