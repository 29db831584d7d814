"""The typed journal's cost: codec per record, and a start-up replay of a long journal (issue 13).

A synthetic account history of ``--brackets`` closed brackets, five records each as the manager writes them
(signal, entry ack, entry fill, stop fill, target cancelled by OCO), committed to a real state database. Then:

- ``encode`` / ``decode``: the codec alone, per record (event -> JSON-ready dict -> event, no SQL, no JSON text);
- ``read_raw``: the store's own read (SQL + ``json.loads``), what a start paid before the journal was typed;
- ``read_typed``: the same read decoded into typed entries (what recovery reads now);
- ``replay``: typed read + ledger replay + the projection rewrite, i.e. a daemon start's rebuild.

Prints one JSON line per figure (median of ``--runs``, with min and max).

    .venv/bin/python benchmarks/journal.py [--brackets 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tradebot.core.types import Side
from tradebot.execution import journal as jn
from tradebot.execution.ledger import rebuild_from_journal
from tradebot.execution.model import OrderType
from tradebot.state.store import StateStore

T0 = 1_741_611_600_000_000_000  # 2025-03-10 13:00 UTC
DAY = "2025-03-10"


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def history(brackets: int) -> list[tuple[int, jn.JournalEvent]]:
    out: list[tuple[int, jn.JournalEvent]] = []
    for i in range(brackets):
        ts = T0 + i * 60_000_000_000
        sid = f"ES-{ts}-{i:012x}"
        long = i % 2 == 0
        side, exit_side = (Side.BUY, Side.SELL) if long else (Side.SELL, Side.BUY)
        px = 20_000 + (i % 40)
        stop, target = (px - 8, px + 12) if long else (px + 8, px - 12)
        out.append((ts, jn.SignalDecided(sid, ts, "ES", side, 1, OrderType.MARKET, None, stop, target, 0.7,
                                         "BUY_IMBALANCE", "trend", ("stacked imbalance", "delta"),
                                         jn.IntentVerdict.TAKEN, "", "ES", 1, 1250, ts)))
        out.append((ts, jn.OrderAcknowledged(f"{sid}-E")))
        out.append((ts + 1, jn.OrderFilled(f"{sid}-E.1", f"{sid}-E", "ES", side, 1, px, ts + 1, 140, DAY, 1250)))
        win = i % 3 != 0
        role, fill = ("T", target) if win else ("S", stop)
        other = "S" if win else "T"
        out.append((ts + 2, jn.OrderFilled(f"{sid}-{role}.1", f"{sid}-{role}", "ES", exit_side, 1, fill, ts + 2,
                                           140, DAY, 1250)))
        out.append((ts + 2, jn.OrderCancelled(f"{sid}-{other}", "oco", DAY)))
    return out


def timed(fn: Any, runs: int) -> tuple[float, float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brackets", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    records = history(args.brackets)
    n = len(records)
    events = [ev for _, ev in records]
    encoded = [jn.encode(ev) for ev in events]

    med, lo, hi = timed(lambda: [jn.encode(ev) for ev in events], args.runs)
    emit(figure="encode", records=n, us_per_record=round(med / n * 1e6, 2), min=round(lo / n * 1e6, 2),
         max=round(hi / n * 1e6, 2))
    med, lo, hi = timed(lambda: [jn.decode(k, p) for k, p in encoded], args.runs)
    emit(figure="decode", records=n, us_per_record=round(med / n * 1e6, 2), min=round(lo / n * 1e6, 2),
         max=round(hi / n * 1e6, 2))

    with tempfile.TemporaryDirectory(prefix="tradebot-journal-bench-") as tmp:
        store = StateStore.open(Path(tmp) / "tradebot-paper.db", synchronous="OFF")
        try:
            with store.transaction() as tx:
                for ts, ev in records:
                    jn.append(tx, ts, ev)
            for name, fn in (("read_raw", lambda: list(store.journal())),
                             ("read_typed", lambda: list(jn.read(store))),
                             ("replay", lambda: rebuild_from_journal(store, 250_000))):
                med, lo, hi = timed(fn, args.runs)
                emit(figure=name, records=n, seconds=round(med, 3), min=round(lo, 3), max=round(hi, 3),
                     records_per_second=round(n / med))
        finally:
            store.close()


if __name__ == "__main__":
    main()
