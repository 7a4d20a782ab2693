"""``veto-opa traces``: list and show decisions from traces (Jaeger or a collector file).

    veto-opa traces list --file out/traces/traces.jsonl --decision deny
    veto-opa traces list --jaeger http://localhost:16686 --tool execute_sql --json
    veto-opa traces show 0193a1b2 --file out/traces/traces.jsonl

Filters are those of ``veto-opa decisions`` (``--decision``, ``--tool``, ``--rule``,
``--since``, ``--until``); with ``--jaeger`` they are also sent to Jaeger as ``tags`` and
times. Exit codes: 0 success, 1 a source that cannot be read or no such decision, 2 usage.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from veto_opa._cli import add_json, clean, fail, positive_int, print_json, run_alone, truncate
from veto_opa.errors import VetoError
from veto_opa.records.model import parse_timestamp

if TYPE_CHECKING:
    from collections.abc import Sequence

    from veto_opa.traces import TracedDecision

_COLUMNS = ("time", "decision", "tool", "rule", "reason", "decision_id", "trace_id")
_WIDTH = {"tool": 32, "rule": 40, "reason": 48}


def _timestamp(text: str) -> str:
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sources(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("source (one of)")
    source = group.add_mutually_exclusive_group(required=True)
    source.add_argument("--jaeger", metavar="URL",
                        help="Jaeger's query API, e.g. http://localhost:16686")
    source.add_argument("--file", metavar="PATH",
                        help="an OpenTelemetry Collector file exporter's output (OTLP JSON "
                             "lines)")
    group.add_argument("--service", default="veto-opa",
                       help="the service name of veto-opa's spans in Jaeger (veto-opa)")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``traces`` command group to the ``veto-opa`` parser's subparsers."""
    raw = argparse.RawDescriptionHelpFormatter
    group: argparse.ArgumentParser = subparsers.add_parser(
        "traces", help="list and show decisions from traces (Jaeger or a collector file)",
        description=__doc__.split("\n\n")[0], formatter_class=raw,
        epilog="examples:\n  veto-opa traces list --file out/traces/traces.jsonl --decision "
               "deny\n  veto-opa traces list --jaeger http://localhost:16686 --json\n"
               "  veto-opa traces show DECISION_ID --jaeger http://localhost:16686")
    group.set_defaults(func=lambda args: _usage(group))
    commands = group.add_subparsers(dest="traces_command", metavar="COMMAND")

    listing = commands.add_parser(
        "list", help="decision spans, newest first", formatter_class=raw,
        description="Decision spans (veto.guard <tool>) matching every filter, newest first.",
        epilog="example:\n  veto-opa traces list --file out/traces/traces.jsonl "
               "--decision deny --since 2026-11-25")
    _sources(listing)
    filters = listing.add_argument_group("filters")
    filters.add_argument("--decision", choices=("allow", "deny", "require_approval"))
    filters.add_argument("--tool", metavar="T", help="tool name (exact)")
    filters.add_argument("--rule", metavar="R", help="deciding rule (exact)")
    filters.add_argument("--since", metavar="ISO", type=_timestamp,
                         help="from this UTC time, inclusive")
    filters.add_argument("--until", metavar="ISO", type=_timestamp,
                         help="before this UTC time, exclusive")
    listing.add_argument("--limit", type=positive_int, default=100, help="default: 100")
    add_json(listing)
    listing.set_defaults(func=cmd_list)

    show = commands.add_parser(
        "show", help="every attribute of one decision span", formatter_class=raw,
        description="One decision span, by decision id, trace id or span id (or a unique "
                    "prefix of one).",
        epilog="example:\n  veto-opa traces show 0193a1b2 --file out/traces/traces.jsonl")
    show.add_argument("id", metavar="ID")
    _sources(show)
    add_json(show)
    show.set_defaults(func=cmd_show)
    return group


def _usage(parser: argparse.ArgumentParser) -> int:
    import sys

    parser.print_help(sys.stderr)
    return 2


def _load(args: argparse.Namespace, **filters: Any) -> list[TracedDecision]:
    from veto_opa.traces import from_jaeger, from_otlp_file

    if args.file:
        return from_otlp_file(args.file)
    return from_jaeger(args.jaeger, service=args.service, **filters)


def format_table(rows: Sequence[TracedDecision]) -> str:
    cells = [[row.time[:19] + "Z", row.decision or "-", truncate(row.tool or "-", _WIDTH["tool"]),
              truncate(row.rule or "-", _WIDTH["rule"]),
              truncate(row.reason or "-", _WIDTH["reason"]), row.decision_id or "-",
              row.trace_id] for row in rows]
    widths = [max([len(name)] + [len(line[i]) for line in cells])
              for i, name in enumerate(_COLUMNS)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths,
                                                                        strict=True)).rstrip()
                     for line in [list(_COLUMNS), *cells])


def cmd_list(args: argparse.Namespace) -> int:
    from veto_opa.traces import select

    filters = {"decision": args.decision, "tool": args.tool, "rule": args.rule,
               "since": args.since, "until": args.until}
    try:
        found = _load(args, **filters, limit=args.limit) if args.jaeger else _load(args)
    except VetoError as exc:
        return fail(str(exc))
    rows = select(found, **filters, limit=args.limit)
    if args.json:
        print_json([row.document() for row in rows])
    elif rows:
        print(format_table(rows))
    else:
        print("no matching decisions")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from veto_opa.traces import find

    try:
        found = _load(args) if args.file else _load(args, decision_id=args.id)
    except VetoError as exc:
        return fail(str(exc))
    matches = find(found, args.id)
    if not matches:
        return fail(f"no decision span {args.id!r}")
    if len({m.span_id for m in matches}) > 1:
        return fail(f"{args.id!r} matches {len(matches)} decision spans; give more of it")
    row = matches[0]
    if args.json:
        print_json(row.document())
        return 0
    document = row.document()
    attributes = document.pop("attributes")
    width = max(len(name) for name in [*document, *attributes])
    for name, value in document.items():
        print(f"{name.ljust(width)}  {clean(str(value)) if value is not None else '-'}")
    print("attributes")
    for name, value in sorted(attributes.items()):
        print(f"  {clean(name).ljust(width)}  {clean(str(value))}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``veto-opa traces ...`` alone (tests)."""
    return run_alone(register, argv)
