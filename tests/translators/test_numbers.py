"""The reference arithmetic (translators/numbers.py) against OPA's, in the embedded engine.

Operands are number texts as a policy or a JSON input holds them — small and huge whole
numbers, decimals with more digits than a float, exponents — and each result is compared by
value with what OPA computes from the same texts (``json.marshal`` shows OPA's number text).
"""

from __future__ import annotations

import json
import random
from decimal import Decimal

import opa_bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veto_opa.translators import numbers

OPS = {"+": numbers.add, "-": numbers.subtract, "*": numbers.multiply, "/": numbers.divide,
       "%": numbers.remainder}


def _text(r: random.Random) -> str:
    sign = r.choice(["", "", "-"])
    whole = str(r.choice([0, 1, 2, 3, 7, 10, 999, 1000, 2**31, 2**53 + 1, 2**64 + 3,
                          12345678901234567890123, r.randrange(10**r.randrange(1, 30))]))
    kind = r.randrange(4)
    if kind == 0:
        return sign + whole
    if kind == 1:
        return f"{sign}{whole}.{r.randrange(10**r.randrange(1, 25))}"
    if kind == 2:
        return f"{sign}{whole}e{r.randrange(-25, 25)}"
    return f"{sign}{r.choice(['0.1', '0.2', '0.3', '0.7', '1.5', '3.0', '2.5e3', '1e-7'])}"


def _opa(cases: list[tuple[str, str, str]]) -> list[object]:
    """OPA's result of each ``a op b`` (number texts), or "error"."""
    engine = opa_bindings.OpaEngine()
    lines = ["package n", ""]
    for i, (a, op, b) in enumerate(cases):
        # A builtin error stops the whole evaluation: guard what OPA refuses.
        guard = f"{b} != 0" if op in "/%" else "true"
        lines.append(f"r{i} := json.marshal({a} {op} {b}) if {{ {guard} }} else := \"error\"")
    lines.append("results := [" + ", ".join(f"r{i}" for i in range(len(cases))) + "]")
    engine.add_policy("n.rego", "\n".join(lines))
    try:
        return list(engine.eval_document("n.results", {}))
    finally:
        engine.close()


def _ours(a: str, op: str, b: str) -> object:
    x, y = numbers.number(Decimal(a)), numbers.number(Decimal(b))
    if op in "/%" and y == 0:
        return "error"
    if op == "%" and not (numbers.is_whole(x) and numbers.is_whole(y)):
        return "modulo of a fraction"
    return OPS[op](x, y)


def test_arithmetic_agrees_with_opa() -> None:
    r = random.Random(20261206)
    cases = [(_text(r), r.choice(list(OPS)), _text(r)) for _ in range(1500)]
    cases = [(a, op, b) for a, op, b in cases if not (op == "%" and not _whole(a, b))]
    answers = _opa(cases)
    for (a, op, b), answer in zip(cases, answers):
        ours = _ours(a, op, b)
        if answer == "error":
            assert ours == "error", (a, op, b)
        else:
            assert json.loads(answer, parse_float=Decimal) == ours, (a, op, b, answer, ours)


def _whole(a: str, b: str) -> bool:
    return all(numbers.is_whole(numbers.number(Decimal(t))) for t in (a, b))


@pytest.mark.parametrize("a, op, b, expected", [
    ("0.1", "+", "0.2", "0.3"),
    ("1", "/", "3", "0.33333333333333333334"),
    ("10", "/", "3", "3.3333333333333333333"),
    ("1180591620717411303426", "/", "2", "590295810358705651700"),   # no integer division
    ("12345678901234567890123.5", "+", "1", "12345678901234567890000"),
    ("1e400", "+", "1", "1" + "0" * 399 + "1"),
    ("-7", "%", "3", "-1"),
    ("7", "%", "-3", "1"),
    ("3.0", "%", "2", "1"),
])
def test_known_results(a: str, op: str, b: str, expected: str) -> None:
    assert _ours(a, op, b) == Decimal(expected)


@settings(max_examples=300, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: abs(d.adjusted()) < 40))
def test_a_float_result_reads_back_as_the_same_64_bit_float(value: Decimal) -> None:
    """The shortest decimal lies in the rounding interval: it rounds to the same float."""
    result = numbers.add(value, Decimal("0.5"))    # a fraction: through a 64-bit float
    exact = numbers._round(numbers.Fraction(value)) + numbers.Fraction(1, 2)
    assert numbers._round(numbers.Fraction(result)) == numbers._round(exact)


def test_floats_are_their_shortest_decimal() -> None:
    assert numbers.exact({"a": [0.1, 1e20, 2.0]}) == {"a": [Decimal("0.1"), 10**20, 2]}
    assert numbers.add(numbers.number(0.1), numbers.number(0.2)) == Decimal("0.3")
