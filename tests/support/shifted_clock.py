"""Runs ``python -m tradebot ...`` with the wall clock shifted by ``TRADEBOT_TEST_CLOCK_OFFSET_NS`` (tests only).

A stock session is open only during NYSE hours; to run a live paper session on the Polygon stand-in whatever
time the test suite runs, the daemon, its operator commands and the stand-in all read the same shifted wall clock
(``time.time``/``time.time_ns``; monotonic time, which drives the event loop, is untouched). Everything else is
the real program."""

from __future__ import annotations

import os
import runpy
import sys
import time

_offset = int(os.environ.get("TRADEBOT_TEST_CLOCK_OFFSET_NS", "0"))
_time_ns, _time = time.time_ns, time.time
time.time_ns = lambda: _time_ns() + _offset
time.time = lambda: _time() + _offset / 1e9

if __name__ == "__main__":
    sys.argv = ["tradebot", *sys.argv[1:]]
    runpy.run_module("tradebot", run_name="__main__", alter_sys=True)
