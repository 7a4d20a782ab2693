"""The semantics corpus (tests/cases/semantics/*.yaml), through both back ends.

Each case names an expression, optionally an input (else the folder's ``inputs.yaml``) and
the expected outcome: ``true``, ``false`` or ``{error: <detail>}``. Every case runs through
the reference evaluator and through the generated Rego in OPA (outcome and detail).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.translators.harness import Batch, check_text, reference

CASES_DIR = Path(__file__).parent.parent / "cases" / "semantics"


def _load() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    default_input = yaml.safe_load((CASES_DIR / "inputs.yaml").read_text(encoding="utf-8"))
    cases = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        if path.name == "inputs.yaml":
            continue
        for case in yaml.safe_load(path.read_text(encoding="utf-8")):
            case["id"] = f"{path.stem}: {case['note']}"
            cases.append(case)
    return default_input, cases


DEFAULT_INPUT, CASES = _load()


def _expected(case: dict[str, Any]) -> tuple[str, ...]:
    expect = case["expect"]
    if expect is True:
        return ("T",)
    if expect is False:
        return ("F",)
    return ("E", expect["error"])


@pytest.fixture(scope="module")
def batch() -> Batch:
    checked = []
    for case in CASES:
        result = check_text(case["expr"])
        assert result is not None, f"{case['id']}: the checker rejects {case['expr']!r}"
        checked.append(result)
    return Batch.build(checked)


def test_corpus_is_substantial() -> None:
    assert len(CASES) >= 100
    outcomes = {_expected(c)[0] for c in CASES}
    assert outcomes == {"T", "F", "E"}


_evaluations: dict[str, list] = {}


def _evaluate(batch: Batch, input: dict[str, Any]) -> list:
    """One engine evaluation per distinct input answers for every case."""
    key = json.dumps(input, sort_keys=True)
    if key not in _evaluations:
        _evaluations[key] = batch.evaluate(input)
    return _evaluations[key]


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c["id"] for c in CASES])
def test_case(batch: Batch, index: int) -> None:
    case = CASES[index]
    input = {**DEFAULT_INPUT, **case.get("input", {})}
    expected = _expected(case)
    assert reference(batch.conditions[index], input) == expected, "reference evaluator"
    assert _evaluate(batch, input)[index] == expected, "generated Rego"
