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
