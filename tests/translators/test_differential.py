"""The generated Rego, evaluated by OPA, agrees with the reference evaluator.

A random corpus of expressions over random inputs (6,000 expression/input pairs by default,
``--corpus-size`` or ``--slow`` for more) is evaluated two ways: by the reference evaluator
and by the generated Rego in OPA (true, false, or the error with its detail). They must agree
on every pair, details included. The seed is printed on failure; rerun with ``--seed``.
"""

from __future__ import annotations

import random

import pytest

from tests.translators.harness import Batch, check_text, reference
from tests.translators.randcorpus import ExpressionGenerator, random_input

EXPRESSIONS_PER_BATCH = 300
INPUTS_PER_BATCH = 10


def _corpus(seed: int, pairs: int):
    r = random.Random(seed)
    batches = max(1, pairs // (EXPRESSIONS_PER_BATCH * INPUTS_PER_BATCH))
    rejected = 0
    for _ in range(batches):
        conditions = []
        while len(conditions) < EXPRESSIONS_PER_BATCH:
            text = ExpressionGenerator(r).condition(r.randrange(1, 5))
            checked = check_text(text)
            if checked is None:
                rejected += 1
                continue
            conditions.append(checked)
        inputs = [random_input(r) for _ in range(INPUTS_PER_BATCH)]
        yield conditions, inputs
    assert rejected < pairs, "the generator produces mostly ill-typed expressions"


def test_generated_rego_agrees_with_reference_evaluator(request: pytest.FixtureRequest) -> None:
    seed = request.config.getoption("--seed") or 20261125
    pairs = request.config.getoption("--corpus-size") or (
        60_000 if request.config.getoption("--slow") else 6_000)
    checked_pairs = 0
    outcomes = {"T": 0, "F": 0, "E": 0}
    for conditions, inputs in _corpus(seed, pairs):
        batch = Batch.build(conditions)
        for input in inputs:
            results = batch.evaluate(input)
            for condition, generated in zip(conditions, results):
                expected = reference(condition, input)
                context = (f"seed={seed} expression={condition.node.text!r} input={input!r}")
                assert generated == expected, f"generated Rego: {generated} != {expected}; {context}"
                outcomes[expected[0]] += 1
                checked_pairs += 1
    assert checked_pairs >= min(pairs, 6_000)
    # The corpus must exercise every outcome substantially, or it proves little.
    assert all(count > checked_pairs // 20 for count in outcomes.values()), outcomes
