"""Generated Rego is compared with golden files in tests/golden/.

After an intended change of the generator, regenerate them with
``VETO_UPDATE_GOLDEN=1 ./dev test tests/translators/test_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from veto_opa.translators import build

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
UPDATE = bool(os.environ.get("VETO_UPDATE_GOLDEN"))   # read at import: tests clear VETO_*
SOURCES = {
    "policies.rego": ["examples/policies.yaml"],
    "platform.rego": ["examples/platform.yaml"],
    "platform_test.rego": ["examples/platform.yaml"],
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_generated_rego_matches_golden_file(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the source path is part of the generated comments
    generated = build(SOURCES[name]).generated()[f"veto/policies/{name}"]
    golden = GOLDEN / name
    if UPDATE:
        golden.write_text(generated, encoding="utf-8")
    assert generated == golden.read_text(encoding="utf-8"), (
        f"{name} differs from tests/golden/{name}; if the change is intended, rerun with "
        "VETO_UPDATE_GOLDEN=1 and review the diff")
