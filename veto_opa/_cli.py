"""Small pieces shared by the command groups of the ``veto-opa`` command line."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any, Callable, Sequence

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_C1_IN_JSON = re.compile(r"[\x7f-\x9f]")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}")
    return value


def add_home(parser: argparse.ArgumentParser, holding: str) -> None:
    parser.add_argument("--home", metavar="DIR",
                        help=f"veto home holding {holding} (default: $VETO_HOME or .veto)")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def clean(text: str) -> str:
    """Text from the model or a policy, safe for a terminal: control characters become '?'."""
    return _CONTROL.sub("?", text)


def fail(message: str) -> int:
    print(f"veto-opa: error: {clean(message)}", file=sys.stderr)
    return 1


def print_json(value: Any) -> None:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    # C1 controls are legal in JSON strings but some terminals obey them; escape them too.
    print(_C1_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def truncate(text: str, width: int) -> str:
    text = clean(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def run_alone(register: Callable[[Any], argparse.ArgumentParser],
              argv: Sequence[str] | None) -> int:
    """Run one command group without the rest of the CLI (for tests): returns the exit code."""
    parser = argparse.ArgumentParser(prog="veto-opa")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    register(subparsers)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return int(func(args))
