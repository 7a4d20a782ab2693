"""``mypy --strict`` is clean on the runtime (``veto_opa/``) and the compiler (``translators/``,
imported as ``veto_opa.translators``).

The folder is not importable under its package name as it lies (setuptools maps it there at
install time, which mypy does not follow), so the check runs on a tree of links that puts it
where the package says: ``veto_opa/translators``. Modules the compiler imports are checked
too but their errors are not reported (``--follow-imports=silent``); the cache in
``.mypy_cache`` keeps a second run to a few seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["veto_opa"]


def _package_tree(base: Path) -> Path:
    """``base/veto_opa``: links to every entry of the runtime package, and the compiler and
    the Rego library where the package mapping puts them."""
    package = base / "veto_opa"
    package.mkdir()
    for entry in (ROOT / "veto_opa").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "translators").symlink_to(ROOT / "translators")
    (package / "rego").symlink_to(ROOT / "rego")
    (package / "examples").symlink_to(ROOT / "examples")
    return base


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    tree = _package_tree(tmp_path)
    args = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
            "--follow-imports=silent", "--cache-dir", str(ROOT / ".mypy_cache"),
            "--no-error-summary", "--hide-error-context"]
    for package in PACKAGES:
        args += ["-p", package]
    result = subprocess.run(args, cwd=tree, capture_output=True, text=True,
                            env={**os.environ, "MYPYPATH": str(tree)})
    report = (result.stdout + result.stderr).replace(str(tree) + os.sep, "")
    assert result.returncode == 0, report
