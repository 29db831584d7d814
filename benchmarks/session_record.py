#!/usr/bin/env python3
"""What recording a live session costs the trading loop: ``SessionRecorder.add`` per event (the encoding,
compression and file writes run on the recorder's own thread), and the file size.

Run: ``.venv/bin/python benchmarks/session_record.py [events]`` (default 200,000: one third trades, two thirds
10-level book updates, the shape of an ES MBP-10 stream).
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

from tradebot.core.calendar import calendar_for, to_ns
from tradebot.core.types import RawBook, RawTrade, Side, SideRule
from tradebot.feeds.catalog import Catalog
from tradebot.feeds.session_record import SessionRecorder


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    t0 = to_ns(dt.datetime(2025, 3, 11, 14, 30, tzinfo=dt.UTC))
    bp = tuple(6_000_000_000_000 - i * 250_000_000 for i in range(10))
    ap = tuple(6_000_250_000_000 + i * 250_000_000 for i in range(10))
    sz = tuple(range(10, 20))
    events: list[RawTrade | RawBook] = []
    for i in range(n):
        ts = t0 + i * 1_000_000
        if i % 3 == 0:
            events.append(RawTrade("ES", ts, ts, 6_000_000_000_000, 1 + i % 7, Side.BUY, SideRule.EXCHANGE, i))
        else:
            events.append(RawBook("ES", ts, ts, bp, sz, ap, sz, i))
    calendar_for("equity")  # built once at daemon start, not per event
    with tempfile.TemporaryDirectory() as tmp:
        rec = SessionRecorder(Catalog(Path(tmp)), "projectx")
        start = time.perf_counter()
        for ev in events:
            rec.add(ev)
        on_loop = time.perf_counter() - start
        start = time.perf_counter()
        (written,) = rec.close()
        closing = time.perf_counter() - start
        size = Path(written["path"]).stat().st_size
    print(f"{n:,} events: {on_loop / n * 1e6:.2f} us per event on the loop, close (drain + commit) {closing:.2f} s, "
          f"file {size / 1e6:.2f} MB ({size / n:.1f} bytes per event)")


if __name__ == "__main__":
    main()
