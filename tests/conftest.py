"""Fixtures shared by several test files (helpers that are not fixtures live in tests/*.py modules)."""

import pytest

from served_library import build_library


@pytest.fixture(scope="session")
def served_library(tmp_path_factory) -> dict:
    """A tiny base and a library of two routed experts with base statistics (tests/served_library.py)."""
    return build_library(tmp_path_factory.mktemp("served"))
