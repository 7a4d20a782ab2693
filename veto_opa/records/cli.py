"""``veto-opa decisions``: list, show, export and verify decision records.

The main CLI adds this command group with ``register(subparsers)``; every leaf parser sets
``func``, which takes the parsed namespace and returns the exit code::

    parser = argparse.ArgumentParser(prog="veto-opa")
    subparsers = parser.add_subparsers(dest="command")
    veto_opa.records.cli.register(subparsers)
    args = parser.parse_args()
    sys.exit(args.func(args))

``main(argv)`` does exactly that for this group alone (tests, ``python -m``).

Exit codes: 0 success, 1 failure (record not found, chain broken, store unreadable), 2 usage.
Text output strips control characters: tool names, reasons and arguments come from a model
and must not drive the terminal.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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
from veto_opa.errors import RecordError
from veto_opa.records.export import verify_export
from veto_opa.records.model import parse_timestamp
from veto_opa._paths import default_home
from veto_opa.records.store import SQLiteRecordStore, store_path

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from veto_opa.records.model import VerifyResult

_EPILOG_GROUP = """\
examples:
  veto-opa decisions list --decision deny --since 2026-11-25
  veto-opa decisions show 5603b8ea-7b12-4535-a05f-a71712cbe37a
  veto-opa decisions export audit.jsonl --since 2026-11-01 --until 2026-12-01
  veto-opa decisions verify
"""
_EPILOG_LIST = """\
examples:
  veto-opa decisions list
  veto-opa decisions list --decision deny --tool execute_sql --limit 20
  veto-opa decisions list --since 2026-11-25T08:00:00Z --json
"""
_EPILOG_SHOW = """\
example:
  veto-opa decisions show 5603b8ea-7b12-4535-a05f-a71712cbe37a --json
"""
_EPILOG_EXPORT = """\
examples:
  veto-opa decisions export audit.jsonl          (also writes audit.jsonl.sha256)
  veto-opa decisions export denies.csv --decision deny --since 2026-11-01
"""
_EPILOG_VERIFY = """\
examples:
  veto-opa decisions verify                      (the store under --home, and its
                                                  approvals checked against the chain)
  veto-opa decisions verify --export audit.jsonl (an export file, offline)
  veto-opa decisions verify --anchor 1200:sha256:9f2c...  (a head printed by an earlier
                                                  verify, kept where the store's writers
                                                  cannot change it)
"""

_COLUMNS = ("time", "decision", "tool", "rule", "reason", "decision_id")
_WIDTH = {"tool": 32, "rule": 40, "reason": 48}


def _anchor_arg(text: str) -> tuple[int, str]:
    sequence, _, digest = text.partition(":")
    if (not sequence.isdigit() or int(sequence) < 1 or not digest.startswith("sha256:")
            or len(digest) != 71 or any(c not in "0123456789abcdef" for c in digest[7:])):
        raise argparse.ArgumentTypeError(
            f"expected SEQUENCE:sha256:<64 hex digits>, as verify prints the head, found {text!r}")
    return int(sequence), digest


def _timestamp_arg(text: str) -> str:
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None






def _add_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters")
    group.add_argument("--decision", choices=("allow", "deny", "require_approval"))
    group.add_argument("--tool", metavar="T", help="tool name (exact)")
    group.add_argument("--rule", metavar="R", help="deciding rule (exact)")
    group.add_argument(
        "--since", metavar="ISO", type=_timestamp_arg, help="from this UTC time, inclusive"
    )
    group.add_argument(
        "--until", metavar="ISO", type=_timestamp_arg, help="before this UTC time, exclusive"
    )




def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
             ) -> argparse.ArgumentParser:
    """Add the ``decisions`` command group to an argparse subparsers object.

    Args:
        subparsers: the result of ``parser.add_subparsers()`` of the ``veto-opa`` parser.

    Returns:
        The ``decisions`` parser.
    """
    formatter = argparse.RawDescriptionHelpFormatter
    group = subparsers.add_parser(
        "decisions",
        help="list, show, export and verify decision records",
        description="Read the hash-chained decision records under the veto home.",
        epilog=_EPILOG_GROUP,
        formatter_class=formatter,
    )
    group.set_defaults(func=lambda args: usage(group))
    commands = group.add_subparsers(dest="decisions_command", metavar="COMMAND")

    listing = commands.add_parser(
        "list",
        help="recent decisions, newest first",
        description="Decisions matching every filter, newest first, as a table or JSON.",
        epilog=_EPILOG_LIST,
        formatter_class=formatter,
    )
    _add_filters(listing)
    listing.add_argument("--limit", type=positive_int, default=100, help="default: 100")
    add_json(listing)
    add_home(listing, "records.sqlite3")
    listing.set_defaults(func=cmd_list)

    show = commands.add_parser(
        "show",
        help="one decision and its outcomes",
        description="Every field of one decision record, and the outcomes recorded for it.",
        epilog=_EPILOG_SHOW,
        formatter_class=formatter,
    )
    show.add_argument("decision_id", metavar="DECISION_ID")
    add_json(show)
    add_home(show, "records.sqlite3")
    show.set_defaults(func=cmd_show)

    export = commands.add_parser(
        "export",
        help="write decisions and outcomes to JSONL or CSV",
        description=(
            "Write matching decisions and their outcomes in sequence order, atomically. JSONL "
            "is the verifiable audit format (one record per line, plus PATH.sha256); CSV is "
            "for spreadsheets."
        ),
        epilog=_EPILOG_EXPORT,
        formatter_class=formatter,
    )
    export.add_argument("path", metavar="PATH")
    export.add_argument(
        "--format",
        choices=("jsonl", "csv"),
        help="default: csv for a .csv PATH, else jsonl",
    )
    _add_filters(export)
    add_home(export, "records.sqlite3")
    export.set_defaults(func=cmd_export)

    verify = commands.add_parser(
        "verify",
        help="recompute the hash chain",
        description=(
            "Recompute every record hash and link in sequence order. Exit 0 when the chain is "
            "intact, 1 with the first bad sequence when it is not."
        ),
        epilog=_EPILOG_VERIFY,
        formatter_class=formatter,
    )
    verify.add_argument("--export", metavar="FILE", help="verify a JSONL export file instead")
    verify.add_argument(
        "--anchor",
        metavar="SEQUENCE:HASH",
        type=_anchor_arg,
        action="append",
        default=[],
        help="a head printed by an earlier verify: the record at SEQUENCE must still have "
        "HASH and the chain must still reach it (repeatable)",
    )
    verify.add_argument(
        "--allow-gaps",
        action="store_true",
        help="with --export: accept missing sequences (an export made with filters)",
    )
    verify.add_argument("--approvers", metavar="FILE",
                        help="the approvers registry votes are checked against (default: "
                             "$VETO_APPROVERS or HOME/approvers.yaml)")
    add_json(verify)
    add_home(verify, "records.sqlite3")
    verify.set_defaults(func=cmd_verify)
    return group










def _open(args: argparse.Namespace) -> SQLiteRecordStore:
    home = Path(args.home) if args.home else default_home()
    return SQLiteRecordStore(store_path(home), create=False)


def _with_store(args: argparse.Namespace, action: Callable[[SQLiteRecordStore], int]) -> int:
    try:
        store = _open(args)
    except RecordError as exc:
        return fail(str(exc))
    try:
        return action(store)
    except RecordError as exc:
        return fail(str(exc))
    finally:
        store.close()


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "decision": args.decision,
        "tool": args.tool,
        "rule": args.rule,
        "since": args.since,
        "until": args.until,
    }




def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Decision documents as an aligned text table with :data:`_COLUMNS`."""
    cells = [
        [
            row["timestamp"][:19] + "Z",
            row["decision"],
            truncate(row["tool"], _WIDTH["tool"]),
            truncate(row.get("rule") or "-", _WIDTH["rule"]),
            truncate(row["reason"], _WIDTH["reason"]),
            row["decision_id"],
        ]
        for row in rows
    ]
    widths = [
        max([len(name)] + [len(line[i]) for line in cells]) for i, name in enumerate(_COLUMNS)
    ]
    lines = [list(_COLUMNS), *cells]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def cmd_list(args: argparse.Namespace) -> int:
    def action(store: SQLiteRecordStore) -> int:
        records = store.query(**_filters(args), limit=args.limit)
        documents = [record.document() for record in records]
        if args.json:
            print_json(documents)
        elif documents:
            print(format_table(documents))
        else:
            print("no matching decisions")
        return 0

    return _with_store(args, action)


def text_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return clean(", ".join(value)) if value else "-"
    return clean(json.dumps(value, ensure_ascii=False, sort_keys=True))


def cmd_show(args: argparse.Namespace) -> int:
    def action(store: SQLiteRecordStore) -> int:
        record = store.get(args.decision_id)
        if record is None:
            found = store.decision_ids_starting_with(args.decision_id, limit=6)
            if not found:
                return fail(f"no decision {args.decision_id!r}")
            if len(found) > 1:
                shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
                return fail(f"{args.decision_id!r} is the start of several decision ids "
                            f"({shown}); give more of it")
            record = store.get(found[0])
            assert record is not None
        outcomes = [outcome.document() for outcome in store.outcomes(record.decision_id)]
        document = record.document()
        if args.json:
            print_json({"record": document, "outcomes": outcomes})
            return 0
        width = max(len(name) for name in document)
        for name, value in document.items():
            print(f"{name.ljust(width)}  {text_value(value)}")
        print(f"{'outcomes'.ljust(width)}  {'-' if not outcomes else ''}".rstrip())
        for outcome in outcomes:
            error = f"  {clean(outcome['error'])}" if outcome.get("error") else ""
            print(f"  {outcome['timestamp']}  #{outcome['sequence']}  {outcome['status']}{error}")
        return 0

    return _with_store(args, action)


def cmd_export(args: argparse.Namespace) -> int:
    fmt: Literal["jsonl", "csv"] = (args.format or
                                    ("csv" if args.path.lower().endswith(".csv") else "jsonl"))

    def action(store: SQLiteRecordStore) -> int:
        count = store.export(args.path, fmt, **_filters(args))
        extra = f" (digest in {args.path}.sha256)" if fmt == "jsonl" else ""
        print(f"wrote {count} records to {args.path}{extra}")
        return 0

    return _with_store(args, action)


def _report(result: VerifyResult, what: str, as_json: bool, hint: str | None = None) -> int:
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "count": result.count,
                "first_bad_sequence": result.first_bad_sequence,
                "problem": result.problem,
                "head_hash": result.head_hash,
                "head_sequence": result.head_sequence,
            }
        )
    elif result.ok:
        head = (f", head {result.head_hash} (anchor: --anchor "
                f"{result.head_sequence}:{result.head_hash})" if result.head_hash else "")
        print(f"ok: {what}: {result.count} records, chain intact{head}")
    else:
        where = (
            f"sequence {result.first_bad_sequence}"
            if result.first_bad_sequence is not None
            else "file"
        )
        print(f"FAILED: {what}: {where}: {clean(result.problem or '')}")
        print(f"{result.count} records before it are intact")
        if hint:
            print(hint)
    return 0 if result.ok else 1


def cmd_verify(args: argparse.Namespace) -> int:
    anchors: dict[int, str] = {}
    for sequence, digest in args.anchor:
        if anchors.setdefault(sequence, digest) != digest:
            return fail(f"two anchors for sequence {sequence}: {anchors[sequence]} and {digest}")
    if args.export:
        try:
            result = verify_export(args.export, allow_gaps=args.allow_gaps, anchors=anchors)
        except RecordError as exc:
            return fail(str(exc))
        hint = None
        if not result.ok and not args.allow_gaps and "is missing" in (result.problem or ""):
            hint = ("hint: an export made with filters (--decision, --tool, --since, ...) has "
                    "gaps by design; verify it with --allow-gaps, which still checks every "
                    "record's hash and every link between consecutive records")
        return _report(result, args.export, args.json, hint)
    if args.allow_gaps:
        return fail("--allow-gaps applies to --export only")

    def action(store: SQLiteRecordStore) -> int:
        code = _report(store.verify(anchors=anchors), str(store.path), args.json)
        return max(code, _check_approvals(args, store))

    return _with_store(args, action)


def _check_approvals(args: argparse.Namespace, store: SQLiteRecordStore) -> int:
    # Approvals are checked against the chain: a status flipped in approvals.sqlite3, or a
    # row inserted there, fails the verification like an edited record.
    from veto_opa.approvals.store import audit_home

    result = audit_home(store, store.path.parent, getattr(args, "approvers", None))
    if result is None:
        return 0
    if not args.json:
        verdict = "ok" if result.ok else "FAILED"
        print(f"{verdict}: {result.checked} approvals checked against the chain")
        for problem in result.problems:
            print(f"  problem: {clean(problem)}")
        for note in result.notes:
            print(f"  note: {clean(note)}")
    else:
        print_json({"approvals": {"ok": result.ok, "checked": result.checked,
                                  "problems": list(result.problems),
                                  "notes": list(result.notes)}})
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``veto-opa decisions ...`` alone: ``main(["decisions", "list"])``; the exit code."""
    return run_alone(register, argv)


if __name__ == "__main__":
    raise SystemExit(main())
