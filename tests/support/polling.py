"""Waiting on a daemon running as a subprocess: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def poll_until(cond: Callable[[], Any], within: float) -> Any:
    """The condition's first truthy value, polled every 0.1 s; AssertionError after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while loop.time() < end:
        v = cond()
        if v:
            return v
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")
