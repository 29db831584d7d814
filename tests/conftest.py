"""Shared test setup."""

from __future__ import annotations

import pytest

from tradebot.core.logging import configure_logging


@pytest.fixture(autouse=True)
def _fresh_logging() -> None:
    """structlog's configuration is global: give every test JSON logs on the current stdout."""
    configure_logging("INFO", "json")


@pytest.fixture(autouse=True)
def _instrument_registry() -> object:
    """Registered stocks/crypto are process-global: what one test registers (an NVDA file, a BTC-USD feed) must
    not make the symbol known in the next one."""
    from tradebot.core.contracts import INSTRUMENTS
    from tradebot.core.instruments import DEFAULTS

    saved, defaults = dict(INSTRUMENTS), (DEFAULTS.extended_hours, DEFAULTS.day_boundary)
    yield
    INSTRUMENTS.clear()
    INSTRUMENTS.update(saved)
    DEFAULTS.extended_hours, DEFAULTS.day_boundary = defaults
