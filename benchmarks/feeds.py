"""Feed throughput: a synthetic 750k-trade ES day as a real DBN TBBO file, replayed at full speed.

Measures, over the same file and with the real code (:class:`DbnFileFeed`, :class:`Validator`):

* ``dbn_decode``: DBN records/s out of the decoder alone (the floor set by databento_dbn + zstd);
* ``feed_decode_convert``: feed events/s (each TBBO record is a RawBook then a RawTrade);
* ``feed_decode_convert_validate``: the same events/s through validation, i.e. what a replay can do;
* ``peak_rss``: the measuring process's peak resident memory (and how much of it the replay added on top
  of the interpreter and imports: a streaming replay should not grow with the file).

Rates are the median of 3 runs. The measurement runs in a fresh child process so building the file does
not count towards peak memory. One JSON line per figure on stdout. Standalone:
``.venv/bin/python benchmarks/feeds.py [--trades N] [--plain]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import databento_dbn as dbn
import numpy as np
import zstandard
from databento_dbn.metadata import MappingInterval

from tradebot.core.prices import PRICE_SCALE
from tradebot.core.types import RawBook, RawStatus, RawTrade
from tradebot.feeds.dbn_files import DbnFileFeed, iter_dbn, open_store
from tradebot.feeds.validation import Validator

CT = ZoneInfo("America/Chicago")
TICK_FP = PRICE_SCALE // 4  # ES: 0.25
INSTRUMENT_ID = 4916
SYMBOL = "ESM5"
DAY = dt.date(2025, 3, 11)
RUNS = 3


@dataclass
class _Interval:
    """Satisfies databento_dbn's ``MappingInterval`` protocol (it ships no concrete class)."""

    start_date: dt.date
    end_date: dt.date
    symbol: str


@dataclass
class _Mapping:
    raw_symbol: str
    intervals: Sequence[MappingInterval]


def _ns(day: dt.date, hour: int, minute: int) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=CT).timestamp()) * 1_000_000_000


def write_day(path: Path, n_trades: int, compress: bool, seed: int = 11) -> None:
    """A Globex day (17:00 CT the evening before to 16:00 CT) with most prints in the cash session."""
    rng = np.random.default_rng(seed)
    open_ns, close_ns = _ns(DAY - dt.timedelta(days=1), 17, 0), _ns(DAY, 16, 0)
    rth_open, rth_close = _ns(DAY, 8, 30), _ns(DAY, 15, 0)
    n_rth = int(n_trades * 0.8)
    ts = np.sort(np.concatenate([
        rng.integers(rth_open, rth_close, n_rth),
        rng.integers(open_ns, rth_open, n_trades - n_rth),
    ]))
    steps = rng.choice(np.array([-1, 0, 1]), size=n_trades, p=[0.2, 0.6, 0.2])
    ticks = 5700 * 4 + np.cumsum(steps)
    buy = rng.random(n_trades) < 0.5
    sizes = rng.geometric(0.45, n_trades)
    book_sz = rng.integers(1, 80, size=(n_trades, 2))
    latency = rng.integers(5_000, 60_000, n_trades)
    meta = dbn.Metadata(dataset="GLBX.MDP3", start=open_ns, stype_in=dbn.SType.RAW_SYMBOL,
                        stype_out=dbn.SType.INSTRUMENT_ID, schema=dbn.Schema.TBBO, symbols=[SYMBOL],
                        mappings=[_Mapping(SYMBOL, [_Interval(DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1),
                                                              str(INSTRUMENT_ID))])],
                        end=close_ns)
    raw = path.open("wb")
    out = zstandard.ZstdCompressor(level=3).stream_writer(raw) if compress else raw
    try:
        out.write(bytes(meta))
        chunk: list[bytes] = []
        for i in range(n_trades):
            px = int(ticks[i]) * TICK_FP
            is_buy = bool(buy[i])
            bid, ask = (px - TICK_FP, px) if is_buy else (px, px + TICK_FP)
            ts_event = int(ts[i])
            rec = dbn.MBP1Msg(
                publisher_id=1, instrument_id=INSTRUMENT_ID, ts_event=ts_event, price=px, size=int(sizes[i]),
                action=dbn.Action.TRADE, side=dbn.Side.BID if is_buy else dbn.Side.ASK, depth=0,
                ts_recv=ts_event + int(latency[i]), flags=dbn.F_LAST, sequence=i + 1,
                levels=dbn.BidAskPair(bid_px=bid, ask_px=ask, bid_sz=int(book_sz[i, 0]),
                                      ask_sz=int(book_sz[i, 1])),
            )
            chunk.append(bytes(rec))
            if len(chunk) == 50_000:
                out.write(b"".join(chunk))
                chunk.clear()
        out.write(b"".join(chunk))
    finally:
        out.close()
        if not raw.closed:
            raw.close()


async def _feed(path: Path, validate: bool) -> tuple[int, int, float]:
    feed = DbnFileFeed([path])
    validator = Validator() if validate else None
    events = trades = 0
    t0 = time.perf_counter()
    if validator is None:
        async for ev in feed:
            events += 1
            if type(ev) is RawTrade:
                trades += 1
    else:
        check = validator.validate
        async for ev in feed:
            events += 1
            if isinstance(ev, RawTrade | RawBook | RawStatus):  # what the runner does with each event
                check(ev)
        trades = validator.accepted
        if validator.total_rejects:
            raise SystemExit(f"synthetic day had rejects: {dict(validator.rejects)}")
    return events, trades, time.perf_counter() - t0


def _decode(path: Path) -> tuple[int, float]:
    stats: Counter[str] = Counter()
    t0 = time.perf_counter()
    n = sum(1 for _ in iter_dbn(open_store(path), stats))
    return n, time.perf_counter() - t0


def measure(path: Path, n_trades: int) -> list[dict[str, object]]:
    base = {"file": path.name, "file_mb": round(path.stat().st_size / 1e6, 2), "trades": n_trades,
            "runs": RUNS, "python": platform.python_version()}
    out: list[dict[str, object]] = []
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # interpreter + imports, Linux: KiB
    decode = [_decode(path) for _ in range(RUNS)]
    assert all(n == n_trades for n, _ in decode)
    secs = statistics.median(s for _, s in decode)
    out.append({"figure": "dbn_decode", "unit": "records/s", "value": round(n_trades / secs),
                "seconds": round(secs, 3), **base})
    for name, validate in (("feed_decode_convert", False), ("feed_decode_convert_validate", True)):
        runs = [asyncio.run(_feed(path, validate)) for _ in range(RUNS)]
        events, trades, _ = runs[0]
        assert trades == n_trades or validate, (trades, n_trades)
        secs = statistics.median(s for _, _, s in runs)
        out.append({"figure": name, "unit": "events/s", "value": round(events / secs), "events": events,
                    "trades_per_s": round(n_trades / secs), "seconds": round(secs, 3), **base})
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.append({"figure": "peak_rss", "unit": "MB", "value": round(peak_kb / 1024, 1),
                "after_imports_mb": round(baseline_kb / 1024, 1),
                "replay_mb": round((peak_kb - baseline_kb) / 1024, 1), **base})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trades", type=int, default=750_000)
    ap.add_argument("--plain", action="store_true", help="write the DBN uncompressed (default zstd)")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args()
    if args.measure is not None:
        for line in measure(args.measure, args.trades):
            print(json.dumps(line), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="tradebot-bench-") as tmp:
        path = Path(tmp) / f"{SYMBOL}_{DAY:%Y%m%d}.tbbo.dbn{'' if args.plain else '.zst'}"
        t0 = time.perf_counter()
        write_day(path, args.trades, compress=not args.plain)
        print(json.dumps({"figure": "write_synthetic_day", "unit": "s", "value": round(time.perf_counter() - t0, 2),
                          "file": path.name, "file_mb": round(path.stat().st_size / 1e6, 2)}), flush=True)
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        return subprocess.run([sys.executable, __file__, "--measure", str(path), "--trades", str(args.trades)],
                              env=env, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
