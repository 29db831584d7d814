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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import zstandard

from tradebot.core.prices import PRICE_SCALE
from tradebot.core.types import RawBook, RawStatus, RawTrade
from tradebot.feeds.dbn_files import DbnFileFeed, iter_dbn, open_store
from tradebot.feeds.validation import Validator

CT = ZoneInfo("America/Chicago")
TICK_FP = PRICE_SCALE // 4  # ES: 0.25
INSTRUMENT_ID = 4916
SYMBOL = "ESM5"
DAY = dt.date(2025, 3, 11)
RUNS = 5


def write_day(path: Path, n_trades: int, compress: bool, seed: int = 11) -> None:
    """A simulated Globex day as a real DBN TBBO file, written by ``tradebot data synth``'s own writer."""
    from tradebot.feeds.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        synthesize(Path(tmp), symbol="ES", days=1, start=DAY, trades_per_day=n_trades, seed=seed)
        src = next(Path(tmp).rglob("*.dbn.zst"))
        if compress:
            shutil.copyfile(src, path)
        else:
            with src.open("rb") as fin, path.open("wb") as fout:
                zstandard.ZstdDecompressor().copy_stream(fin, fout)


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
