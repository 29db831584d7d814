"""Shared test setup."""

from __future__ import annotations

import pytest

from tradebot.core.logging import configure_logging


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    """structlog's configuration is global: give every test JSON logs on the current stdout."""
    configure_logging("INFO", "json")
