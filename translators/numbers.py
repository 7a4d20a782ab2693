"""Numbers as OPA has them: exact decimals, and OPA's arithmetic on them.

OPA keeps a JSON number as its decimal text and compares numbers exactly (``0.1 + 0.2 ==
0.3`` is true, ``0.3 == 0.30000000000000000001`` is false). Its arithmetic (OPA v1.20,
``v1/topdown/arithmetic.go``, checked against the embedded engine by
``tests/translators/test_numbers.py``) is:

- ``+ - *`` on two whole numbers: exact, however large (``1e400 + 1`` has 401 digits);
- ``+ - *`` with a fraction, and every ``/``: Go's ``big.Float`` with 64 bits of mantissa,
  rounding to nearest even, and the result written back as the shortest decimal that reads
  back as the same 64-bit float (``1 / 3`` is ``0.33333333333333333334``);
- ``%`` on two whole numbers: the exact remainder, with the sign of the dividend (Go's
  ``big.Int.Rem``); on a fraction, an error.

Here a number is an ``int`` (whole) or a :class:`~decimal.Decimal` (its exact value); a
Python ``float`` read from JSON stands for its shortest decimal text, as ``json.dumps``
writes it and OPA reads it. No operation here rounds through a Python float.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

Number = int | Decimal

PRECISION = 64
"""Bits of mantissa of OPA's non-integer arithmetic (Go's default ``big.Float`` precision)."""


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def number(value: int | float | Decimal) -> Number:
    """The exact number a JSON value stands for: a float is its shortest decimal text."""
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        return int(value) if _is_integral(value) and abs(value.adjusted()) < 100 else value
    return value


def exact(value: Any) -> Any:
    """A JSON value with every number made exact (floats read as their decimal text)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        return number(value)
    if isinstance(value, list):
        return [exact(v) for v in value]
    if isinstance(value, dict):
        return {k: exact(v) for k, v in value.items()}
    return value


def is_whole(value: Number) -> bool:
    return isinstance(value, int) or _is_integral(value)


def _is_integral(value: Decimal) -> bool:
    return value == value.to_integral_value()


def add(a: Number, b: Number) -> Number:
    if is_whole(a) and is_whole(b):
        return int(a) + int(b)
    return _float(_rounded(a) + _rounded(b))


def subtract(a: Number, b: Number) -> Number:
    if is_whole(a) and is_whole(b):
        return int(a) - int(b)
    return _float(_rounded(a) - _rounded(b))


def multiply(a: Number, b: Number) -> Number:
    if is_whole(a) and is_whole(b):
        return int(a) * int(b)
    return _float(_rounded(a) * _rounded(b))


def divide(a: Number, b: Number) -> Number:
    """``a / b`` for ``b != 0``: always through 64-bit floats, whole operands too."""
    return _float(_rounded(a) / _rounded(b))


def remainder(a: Number, b: Number) -> int:
    """``a % b`` for whole ``a`` and ``b != 0``: truncated, with the sign of ``a``."""
    x, y = int(a), int(b)
    r = abs(x) % abs(y)
    return -r if x < 0 else r


def _rounded(value: Number) -> Fraction:
    """The operand as Go reads its text into a 64-bit ``big.Float``."""
    return _round(Fraction(value))


def _float(value: Fraction) -> Number:
    """The result of a float operation: rounded to 64 bits, then the shortest decimal that
    reads back as the same float (Go's ``big.Float.Text('g', -1)``)."""
    if value == 0:
        return 0
    sign = -1 if value < 0 else 1
    m, e = _mantissa(abs(value))
    digits, exp = _shortest(m, e)
    result = Decimal(f"{'-' if sign < 0 else ''}{digits}E{exp - len(digits)}")
    return number(result)


def _round(value: Fraction) -> Fraction:
    """``value`` rounded to nearest even with :data:`PRECISION` bits of mantissa."""
    if value == 0:
        return value
    m, e = _mantissa(abs(value))
    rounded = Fraction(m) * (Fraction(2) ** e)
    return rounded if value > 0 else -rounded


def _mantissa(value: Fraction) -> tuple[int, int]:
    """``(m, e)`` with ``value ≈ m * 2**e``, ``2**63 <= m < 2**64``, rounded to nearest even."""
    n, d = value.numerator, value.denominator
    k = n.bit_length() - d.bit_length()
    if (n << -k if k < 0 else n) < (d << k if k > 0 else d):
        k -= 1
    e = k - (PRECISION - 1)            # 2**k <= value < 2**(k + 1)
    num, den = (n << -e, d) if e < 0 else (n, d << e)
    m, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and m & 1):
        m += 1
    if m == 1 << PRECISION:
        m, e = m >> 1, e + 1
    return m, e


# -- Go's math/big shortest decimal (ftoa.go roundShortest, decimal.go) ------------------
# A decimal is (digits, exp): the value 0.digits × 10**exp, no leading or trailing zeros.


def _decimal(m: int, shift: int) -> tuple[str, int]:
    """The exact decimal of ``m * 2**shift``."""
    if shift >= 0:
        text = str(m << shift)
        exp = len(text)
    else:
        text = str(m * 5 ** -shift)     # m / 2**s = m * 5**s / 10**s
        exp = len(text) + shift
    return text.rstrip("0"), exp


def _shortest(m: int, e: int) -> tuple[str, int]:
    """The shortest decimal in the interval of numbers that round to ``m * 2**e`` at
    :data:`PRECISION` bits (Go's ``roundShortest``, digit for digit, ties included)."""
    digits, exp = _decimal(m, e)
    lower, _ = _decimal(2 * m - 1, e - 1)
    upper, _ = _decimal(2 * m + 1, e - 1)
    inclusive = m & 1 == 0
    for i, c in enumerate(digits):
        lo = lower[i] if i < len(lower) else "0"
        up = upper[i] if i < len(upper) else "0"
        okdown = lo != c or (inclusive and i + 1 == len(lower))
        okup = c != up and (inclusive or ord(c) + 1 < ord(up) or i + 1 < len(upper))
        if okdown and okup:
            return _round_half_even(digits, exp, i + 1)
        if okdown:
            return _round_down(digits, exp, i + 1)
        if okup:
            return _round_up(digits, exp, i + 1)
    return digits, exp


def _round_half_even(digits: str, exp: int, n: int) -> tuple[str, int]:
    if n >= len(digits):
        return digits, exp
    if digits[n] == "5" and n + 1 == len(digits):
        up = n > 0 and int(digits[n - 1]) % 2 == 1
    else:
        up = digits[n] >= "5"
    return _round_up(digits, exp, n) if up else _round_down(digits, exp, n)


def _round_up(digits: str, exp: int, n: int) -> tuple[str, int]:
    if n >= len(digits):
        return digits, exp
    while n > 0 and digits[n - 1] == "9":
        n -= 1
    if n == 0:
        return "1", exp + 1
    return digits[:n - 1] + chr(ord(digits[n - 1]) + 1), exp


def _round_down(digits: str, exp: int, n: int) -> tuple[str, int]:
    if n >= len(digits):
        return digits, exp
    kept = digits[:n].rstrip("0")
    return (kept, exp) if kept else ("", 0)
