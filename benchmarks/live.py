"""The live (event-driven) path, one record at a time: raw record -> Validator -> TradingCore (paper execution).

This is what the daemon's ``_consume`` loop does per decoded record (minus its own bookkeeping): validate the
adapter's record, then hand the validated event to the trading core (execution manager and paper broker first,
then the symbol's strategy: footprint, profiles, microstructure, alerts, patterns, regime and router on bar
close). The records are built up front from a synthetic 750k-trade ES day (the simulated market's columns as
adapter output), so decoding is not timed. Three shapes: trades only, trades + L1 book (MBP-1), trades + MBP-10.

Figures (one JSON line each; every figure is the median of ``--runs`` runs, with min and max):

* ``live_<shape>_throughput``: records/s and trades/s with nothing but the loop around the calls;
* ``live_<shape>_latency``: ``time.perf_counter_ns`` around each record: p50/p99/p99.9 of ordinary records
  (no bar closed), p50/p99/max of bar-close records (a bar closed on the record: patterns, regime, router and,
  for taken decisions, the journaled intent), and for the records that produced an order intent the latency
  from the record's arrival to the moment the intent reached the execution manager
  (``ExecutionManager.on_intent`` called) and to the end of that record's processing. ``bar_close_unjournaled``
  leaves out the bar closes whose record also journaled an execution event (an intent, an exit signal, a fill:
  a synced SQLite commit, milliseconds on a disk that honours fsync, by design).

``--gc0 N`` sets the cyclic GC's generation-0 threshold (default 700) for the whole run, to show what GC tuning
in the daemon would change; the figures' names then carry ``_gc0_N``.

Each run uses a fresh validator, trading core and state database (WAL, ``synchronous=FULL`` as the daemon).

    .venv/bin/python benchmarks/live.py [--trades 750000] [--runs 5] [--shapes trades_only,trades_l1,trades_mbp10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tradebot.core.config import Settings, load_settings
from tradebot.core.contracts import spec_for
from tradebot.core.types import RawBook, RawRecord, RawTrade
from tradebot.feeds.simulated import generate_session, raw_records, trading_sessions
from tradebot.feeds.validation import Validator
from tradebot.state.store import StateStore
from tradebot.trading import TradingCore

SHAPES = {"trades_only": 0, "trades_l1": 1, "trades_mbp10": 10}


def build_records(n_trades: int, depth: int, seed: int = 5) -> tuple[list[RawRecord], int]:
    """A simulated ES day as adapter output; ``depth`` 0 keeps the trades only, else books cut to ``depth``."""
    spec = spec_for("ES")
    session = trading_sessions(spec.session, dt.date(2025, 3, 11), 1)[0]
    data = generate_session(spec, session, n_trades, np.random.default_rng(seed), depth=10)
    out: list[RawRecord] = []
    for rec in raw_records(data):
        if isinstance(rec, RawTrade) or depth >= 10:
            out.append(rec)
        elif depth > 0:
            assert isinstance(rec, RawBook)
            out.append(RawBook(rec.symbol, rec.ts_event, rec.ts_recv, rec.bid_px_fp[:depth], rec.bid_sz[:depth],
                               rec.ask_px_fp[:depth], rec.ask_sz[:depth], rec.sequence, rec.instrument_id,
                               rec.source))
    return out, data.n_trades


class Live:
    """A fresh validator + trading core on a fresh state database (the daemon's wiring, minus the feed)."""

    def __init__(self, settings: Settings, first_ts: int) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="tradebot-live-bench-")
        self.store = StateStore.open(Path(self._tmp.name) / "state.db", mode=settings.trading_mode)
        self.validator = Validator(settings.validation, ["ES"])
        self.core = TradingCore(settings, ["ES"], self.store)
        self.core.start(first_ts)

    def close(self) -> dict[str, Any]:
        self.core.finish()
        out = {"bars": self.core.strategies["ES"].engine.stats["bars"],
               "intents": len(self.core.verdicts),
               "trades_closed": len(self.core.closed_trades()),
               "rejects": self.validator.total_rejects}
        self.store.close()
        self._tmp.cleanup()
        return out


def run_throughput(settings: Settings, records: list[RawRecord]) -> tuple[float, dict[str, Any]]:
    live = Live(settings, records[0].ts_event)
    validate = live.validator.validate
    on_event = live.core.on_event
    gc.collect()
    t0 = time.perf_counter()
    for rec in records:
        ev = validate(rec)
        if ev is not None:
            on_event(ev)
    elapsed = time.perf_counter() - t0
    return elapsed, live.close()


def _pct(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return float(s[min(len(s) - 1, int(q * len(s)))])


def run_latency(settings: Settings, records: list[RawRecord]) -> dict[str, float]:
    live = Live(settings, records[0].ts_event)
    validate = live.validator.validate
    on_event = live.core.on_event
    engine = live.core.strategies["ES"].engine
    manager = live.core.manager
    pc = time.perf_counter_ns
    intent_at: list[int] = []
    orig: Callable[..., Any] = manager.on_intent

    def on_intent(intent: Any) -> Any:
        intent_at.append(pc())
        return orig(intent)

    manager.on_intent = on_intent  # type: ignore[method-assign]
    # Count durable writes: every store transaction, and separately the router's diagnostics (TradingCore._record),
    # so bar closes whose record also journaled an execution event (a synced commit) can be told apart.
    writes = [0, 0]
    transaction = live.store.transaction
    record = live.core._record

    def counting_transaction() -> Any:
        writes[0] += 1
        return transaction()

    def counting_record(decisions: Any) -> None:
        writes[1] += 1
        record(decisions)

    live.store.transaction = counting_transaction  # type: ignore[method-assign]
    live.core._record = counting_record  # type: ignore[method-assign]
    ordinary: list[int] = []
    closing: list[int] = []
    closing_quiet: list[int] = []
    to_intent: list[int] = []
    intent_records: list[int] = []
    last_close = engine.last_close
    n_int = 0
    gc.collect()
    for rec in records:
        w = writes[0] - writes[1]
        t0 = pc()
        ev = validate(rec)
        if ev is not None:
            on_event(ev)
        t1 = pc()
        lc = engine.last_close
        if lc is last_close:
            ordinary.append(t1 - t0)
        else:
            last_close = lc
            closing.append(t1 - t0)
            if writes[0] - writes[1] == w:
                closing_quiet.append(t1 - t0)
        if len(intent_at) != n_int:
            to_intent.extend(x - t0 for x in intent_at[n_int:])
            n_int = len(intent_at)
            intent_records.append(t1 - t0)
    info = live.close()
    return {
        "ordinary_p50_us": _pct(ordinary, 0.50) / 1e3, "ordinary_p99_us": _pct(ordinary, 0.99) / 1e3,
        "ordinary_p999_us": _pct(ordinary, 0.999) / 1e3, "ordinary_max_us": max(ordinary) / 1e3,
        "bar_close_p50_us": _pct(closing, 0.50) / 1e3, "bar_close_p99_us": _pct(closing, 0.99) / 1e3,
        "bar_close_max_us": max(closing, default=0) / 1e3,
        "bar_close_unjournaled_p50_us": _pct(closing_quiet, 0.50) / 1e3,
        "bar_close_unjournaled_p99_us": _pct(closing_quiet, 0.99) / 1e3,
        "intent_p50_us": _pct(to_intent, 0.50) / 1e3, "intent_p99_us": _pct(to_intent, 0.99) / 1e3,
        "intent_max_us": max(to_intent, default=0) / 1e3,
        "intent_record_p50_us": _pct(intent_records, 0.50) / 1e3,
        "intent_record_p99_us": _pct(intent_records, 0.99) / 1e3,
        "n_ordinary": len(ordinary), "n_bar_close": len(closing), "n_bar_close_unjournaled": len(closing_quiet),
        "n_intents": len(to_intent),
        "bars": info["bars"], "intents_total": info["intents"],
    }


def _summary(values: list[float], digits: int = 2) -> dict[str, float]:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trades", type=int, default=750_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--gc0", type=int, default=0, help="generation-0 GC threshold (0: leave the default)")
    args = ap.parse_args()
    suffix = ""
    if args.gc0:
        gc.set_threshold(args.gc0, *gc.get_threshold()[1:])
        suffix = f"_gc0_{args.gc0}"
    settings = load_settings()
    for name in args.shapes.split(","):
        records, n_trades = build_records(args.trades, SHAPES[name])
        # The daemon streams records and never holds a day of them: keep the pre-built list out of the cyclic
        # GC's scans so collections cost what they cost the daemon.
        gc.collect()
        gc.freeze()
        times: list[float] = []
        info: dict[str, Any] = {}
        for _ in range(args.runs):
            elapsed, info = run_throughput(settings, records)
            times.append(elapsed)
        med = statistics.median(times)
        print(json.dumps({
            "figure": f"live_{name}_throughput{suffix}", "records": len(records), "trades": n_trades,
            "trades_per_s": round(n_trades / med), "trades_per_s_min": round(n_trades / max(times)),
            "trades_per_s_max": round(n_trades / min(times)), "records_per_s": round(len(records) / med),
            "us_per_record": round(med / len(records) * 1e6, 3),
            "seconds": _summary(times, 3), "runs": args.runs, **info,
        }), flush=True)
        if not args.no_latency:
            runs = [run_latency(settings, records) for _ in range(args.runs)]
            fig: dict[str, Any] = {"figure": f"live_{name}_latency{suffix}", "runs": args.runs}
            for key in runs[0]:
                vals = [r[key] for r in runs]
                fig[key] = _summary(vals) if key.endswith("_us") else runs[0][key]
            print(json.dumps(fig), flush=True)
        del records
        gc.unfreeze()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
