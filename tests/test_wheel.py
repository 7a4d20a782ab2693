"""The built wheel is enough to run ``veto-opa demo``: the seed policy, the Rego library and
the templates ship inside it (a non-editable install once failed to find
``examples/policies.yaml``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

SOURCES = ("pyproject.toml", "README.md", "veto_opa", "translators", "rego", "examples")


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("VETO_", "MISTRAL_", "PYTHON"))}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources with this environment's setuptools (the
    test extra's), offline."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(path, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--wheel-dir", str(work / "dist"),
                    str(source)],
                   check=True, env=_environment(), capture_output=True, text=True)
    (built,) = (work / "dist").glob("veto_opa-*.whl")
    return built


def _run_demo(python_bin: Path, home: Path) -> subprocess.CompletedProcess[str]:
    home.mkdir()
    return subprocess.run([str(python_bin / "veto-opa"), "demo", "--home", str(home)],
                          cwd=home, env=_environment(), capture_output=True, text=True,
                          timeout=120)


def test_wheel_ships_the_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("veto_opa/examples/policies.yaml", "veto_opa/examples/platform.yaml",
                    "veto_opa/rego/veto/decision.rego", "veto_opa/mistral/standin.py",
                    "veto_opa/translators/templates/policy.rego.j2", "veto_opa/py.typed"):
        assert shipped in names
    assert not any(name.startswith(("examples/", "tests/", "translators/")) for name in names)


def test_installed_wheel_runs_the_demo(wheel: Path, tmp_path: Path) -> None:
    # A fresh venv holding only the wheel; its dependencies are this environment's, on the
    # path through a .pth file (whose directory's own .pth files, the editable install's
    # among them, are not read: veto_opa can only come from the wheel).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, env=_environment(), capture_output=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "dev-dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    result = _run_demo(venv / "bin", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert f"policies: {site}/veto_opa/examples/policies.yaml" in result.stdout
    assert "DENY      block_production_database_deletes" in result.stdout
    assert "hash chain intact" in result.stdout


@pytest.mark.slow
def test_wheel_installs_with_its_dependencies_from_the_index(wheel: Path,
                                                             tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--ignore-requires-python", f"{wheel}[mistral]"],
                   check=True, env=_environment(), capture_output=True)
    result = _run_demo(venv / "bin", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    assert "Rotated the stripe secret" in result.stdout
