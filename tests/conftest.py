"""Test options shared by the whole suite.

    --slow              also run the long soaks and large random corpora (marker ``slow``)
    --corpus-size N     expression/input pairs in the differential corpus (default 6,000)
    --seed N            seed of the random corpora (default: a fixed seed per test)
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="run long soaks and large corpora")
    parser.addoption("--corpus-size", type=int, default=None,
                     help="cases in the differential corpus (default 6000; 60000 with --slow)")
    parser.addoption("--seed", type=int, default=None, help="seed of the random corpora")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# -- shared fixtures ----------------------------------------------------------------------

from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "examples" / "policies.yaml"


@pytest.fixture(autouse=True)
def _no_veto_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure Veto explicitly; VETO_* variables of the shell must not leak in."""
    import os

    for name in list(os.environ):
        if name.startswith("VETO_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def seed_bundle():
    """The seed policy compiled into a bundle, once per session."""
    from veto_opa.translators import build

    return build([SEED]).bundle()


@pytest.fixture
def spans_out():
    """An SDK tracer provider exporting to memory: ``(provider, exporter)``. Not global."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "veto-opa-tests"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()
