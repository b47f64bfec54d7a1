"""Markers for the Terraform tests (`make check-infra` runs the fast ones)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: runs the real checkers on broken copies (left out of `make check-infra`)")
