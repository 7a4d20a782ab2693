from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veto_opa.translators.tokens import Kind, TokenizeError, tokenize


def kinds(text: str) -> list[tuple[str, str]]:
    return [(t.kind.name, t.text) for t in tokenize(text)[:-1]]


def test_operators_take_the_longest_match() -> None:
    assert kinds("a<=b||!c") == [("IDENT", "a"), ("OP", "<="), ("IDENT", "b"), ("OP", "||"),
                                 ("OP", "!"), ("IDENT", "c")]


def test_positions_are_character_offsets() -> None:
    tokens = tokenize('args.x ==\n  "é"')
    assert [(t.start, t.end) for t in tokens] == [(0, 4), (4, 5), (5, 6), (7, 9), (12, 15),
                                                   (15, 15)]
    assert tokens[-1].kind is Kind.EOF


@pytest.mark.parametrize("text, value", [
    ("'a'", "a"),
    ('"a\\"b"', 'a"b'),
    ("'it\\'s'", "it's"),
    ("'\\\\'", "\\"),
    ("'\\n\\t\\r'", "\n\t\r"),
    ("'\\u00e9'", "é"),
    ("'\\ud83d\\ude00'", "😀"),
    ("'😀'", "😀"),
])
def test_string_escapes(text: str, value: str) -> None:
    token = tokenize(text)[0]
    assert token.kind is Kind.STRING and token.value == value


@pytest.mark.parametrize("text, value, kind", [
    ("0", 0, Kind.INT), ("42", 42, Kind.INT), ("1.5", Decimal("1.5"), Kind.FLOAT),
    ("1e3", 1000, Kind.FLOAT), ("2E-2", Decimal("0.02"), Kind.FLOAT),
    ("0.1", Decimal("0.1"), Kind.FLOAT),      # a tenth, not the float nearest to it
    ("0.30000000000000000001", Decimal("0.30000000000000000001"), Kind.FLOAT),
    ("123456789012345678901234567890", 123456789012345678901234567890, Kind.INT),
])
def test_numbers(text: str, value: object, kind: Kind) -> None:
    token = tokenize(text)[0]
    assert (token.kind, token.value) == (kind, value)
    assert type(token.value) is type(value)


@pytest.mark.parametrize("text", ["1e309", "9" * 401])
def test_numbers_beyond_a_float_are_refused(text: str) -> None:
    with pytest.raises(TokenizeError, match="is too large"):
        tokenize(text)


@pytest.mark.parametrize("text, offset, message", [
    ("'abc", 0, "unterminated string"),
    ("'a\nb'", 0, "unterminated string: a newline ends it"),
    ("a = b", 2, "unexpected '=': use '==' to compare"),
    ("a & b", 2, "unexpected '&': use '&&'"),
    ("a | b", 2, "unexpected '|': use '||'"),
    ("a @ b", 2, "unexpected character '@'"),
    ("'\\x'", 1, "bad escape '\\x' in string: write '\\\\x' for a backslash followed by 'x' "
                 "(as in regular expressions)"),
    ("'\\u12'", 1, "bad escape: \\u needs four hex digits"),
    ("'\\ud800'", 1, "bad escape: lone surrogate"),
    ("12abc", 2, "unexpected 'a' after number '12'"),
    ("1e999", 0, "number 1e999 is too large"),
])
def test_errors_name_the_offset(text: str, offset: int, message: str) -> None:
    with pytest.raises(TokenizeError) as info:
        tokenize(text)
    assert (info.value.problem.offset, info.value.problem.message) == (offset, message)


@given(st.text())
def test_any_text_tokenizes_or_fails_cleanly(text: str) -> None:
    try:
        tokens = tokenize(text)
    except TokenizeError as e:
        assert 0 <= e.problem.offset <= len(text)
    else:
        assert tokens[-1].kind is Kind.EOF
        assert all(text[t.start:t.end] == t.text for t in tokens)
