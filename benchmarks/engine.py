"""Incremental order-flow engine throughput on a synthetic 750k-trade ES day.

Feeds validated events (built up front from the simulated market's columns, so only the engine is timed) through
:class:`tradebot.orderflow.engine.OrderFlowEngine` — footprints, all ten patterns on bar close, session profiles,
microstructure and seed 000's alerts — in three shapes: trades only, trades + L1 book (MBP-1), trades + MBP-10.
Prints one JSON line per figure (median of ``--runs`` runs, with min and max) and the process's peak RSS.

    .venv/bin/python benchmarks/engine.py [--trades 750000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from typing import Any

import numpy as np

from tradebot.core.config import load_settings
from tradebot.core.contracts import spec_for
from tradebot.core.types import BookUpdate, MarketEvent, Side, SideRule, Trade
from tradebot.feeds.simulated import generate_session, trading_sessions
from tradebot.orderflow.engine import OrderFlowEngine


def build_events(n_trades: int, depth: int, seed: int = 5) -> tuple[list[MarketEvent], int]:
    spec = spec_for("ES")
    session = trading_sessions(spec.session, __import__("datetime").date(2025, 3, 11), 1)[0]
    data = generate_session(spec, session, n_trades, np.random.default_rng(seed), depth=10)
    ts = data.ts_event.tolist()
    trade = data.is_trade.tolist()
    px = data.price.tolist()
    sz = data.size.tolist()
    sd = data.side.tolist()
    bi = data.book_idx.tolist()
    bpx = [tuple(r[:depth]) for r in data.bid_px.tolist()]
    apx = [tuple(r[:depth]) for r in data.ask_px.tolist()]
    bsz = [tuple(r[:depth]) for r in data.bid_sz.tolist()]
    asz = [tuple(r[:depth]) for r in data.ask_sz.tolist()]
    out: list[MarketEvent] = []
    for i in range(len(ts)):
        if trade[i]:
            out.append(Trade("ES", ts[i], ts[i], px[i], sz[i], Side.BUY if sd[i] > 0 else Side.SELL,
                             SideRule.EXCHANGE, i + 1, data.symbol))
        elif depth:
            b = bi[i]
            out.append(BookUpdate("ES", ts[i], ts[i], bpx[b], bsz[b], apx[b], asz[b], i + 1, data.symbol))
    return out, sum(trade)


def run_once(events: list[MarketEvent]) -> tuple[float, dict[str, Any]]:
    settings = load_settings()
    engine = OrderFlowEngine(spec_for("ES"), settings)
    on_event = engine.on_event
    t0 = time.perf_counter()
    for ev in events:
        on_event(ev)
    engine.flush()
    elapsed = time.perf_counter() - t0
    return elapsed, dict(engine.stats)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trades", type=int, default=750_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    for name, depth in (("trades_only", 0), ("trades_l1", 1), ("trades_mbp10", 10)):
        events, n_trades = build_events(args.trades, depth)
        times = []
        stats: dict[str, Any] = {}
        for _ in range(args.runs):
            elapsed, stats = run_once(events)
            times.append(elapsed)
        med = statistics.median(times)
        print(json.dumps({
            "figure": f"engine_{name}", "trades": n_trades, "events": len(events),
            "trades_per_s": round(n_trades / med), "events_per_s": round(len(events) / med),
            "min_s": round(min(times), 3), "median_s": round(med, 3), "max_s": round(max(times), 3),
            "runs": args.runs, "bars": stats.get("bars"), "patterns": stats.get("patterns"),
        }), flush=True)
        del events
    print(json.dumps({"figure": "engine_peak_rss_mb",
                      "value": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "note": "includes the pre-built event lists of the largest case"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
