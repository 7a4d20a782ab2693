"""The error a parser raises for input it cannot judge, and a helper for its messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FactError(Exception):
    """The argument could not be parsed; the message says why, without quoting the input.

    :func:`veto_opa.facts.compute` turns it into the fact ``{"error": message, "parser": ...}``,
    which a rule reading the fact sees as an error (a deny rule then applies: fail closed).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def suggest(given: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known``, or ``""``."""
    close = difflib.get_close_matches(given, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
