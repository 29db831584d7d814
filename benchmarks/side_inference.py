"""Aggressor-side inference against the exchange's own sides, on the real ES tape.

``../shared/data/real/*.dbn.zst`` hold the same 2,025 CME ES trades (2022-01-24, one minute from 13:30 CT) with
the exchange's aggressor side on every print, as TBBO (trade + the BBO before it) and as MBP-10 (trade + the
10-level book). Each file is copied with every side set to ``N`` and replayed through the real read path
(:class:`~tradebot.feeds.dbn_files.DbnFileFeed` and :class:`~tradebot.feeds.validation.Validator`, which
infers the missing sides), twice:

* **quote rule**: the copy keeps its book, so the side comes from the prevailing quote (ties at the mid and
  trades without a quote fall back to the tick rule; the rule used is counted);
* **tick rule**: the copy is re-encoded as the ``trades`` schema (bare prints, no book), so only the tick rule
  can decide.

Agreement is the share of prints (and of contracts) whose inferred side equals the exchange's; an undecided
trade counts as a disagreement. Standalone: ``.venv/bin/python benchmarks/side_inference.py [--json]``; exits
non-zero when a file cannot be read in full (every trade must come back to be compared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import databento as db
import numpy as np

from tradebot.core.types import RawBook, RawStatus, RawTrade, Side, Trade
from tradebot.feeds.dbn_files import DbnFileFeed
from tradebot.feeds.dbn_write import SIDE_NONE, empty_records, metadata_bytes, write_dbn
from tradebot.feeds.validation import Validator

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
_TRUE = {b"B": Side.BUY, b"A": Side.SELL}


def stripped_copy(src: Path, dst: Path, *, bare: bool) -> tuple[list[Side], list[int]]:
    """``src`` with every trade's side ``N`` (``bare``: as trades-schema records, no book) written to ``dst``;
    returns the exchange's sides and sizes of the trades, in file order."""
    store = db.DBNStore.from_file(src)
    schema = str(store.schema.value)
    rec = np.concatenate(list(store.to_ndarray(count=1 << 16)))
    trades = rec["action"] == b"T"
    truth = [_TRUE.get(bytes(s), Side.UNKNOWN) for s in rec["side"][trades]]
    sizes = [int(x) for x in rec["size"][trades]]
    if bare:
        out = empty_records("trades", int(trades.sum()))
        for name in out.dtype.names or ():
            if name not in ("length", "rtype"):
                out[name] = rec[name][trades]
        schema, rec = "trades", out
    else:
        rec = rec.copy()
    rec["side"][rec["action"] == b"T"] = SIDE_NONE
    m = store.metadata
    meta = metadata_bytes(dataset=str(m.dataset), schema=schema, start_ns=int(m.start), end_ns=int(m.end),
                          symbol=str(m.symbols[0]), instrument_id=int(rec["instrument_id"][0]))
    write_dbn(dst, meta, [rec], compress=True)
    return truth, sizes


async def _replay(path: Path) -> tuple[list[Trade], Validator]:
    validator = Validator(symbols=["ES"])
    out: list[Trade] = []
    feed = DbnFileFeed([path])
    try:
        async for ev in feed:
            if isinstance(ev, RawTrade | RawBook | RawStatus):
                got = validator.validate(ev)
                if isinstance(got, Trade):
                    out.append(got)
    finally:
        await feed.close()
    return out, validator


def measure(src: Path, *, bare: bool, tmp: Path) -> dict[str, Any]:
    dst = tmp / f"{src.name.split('.')[0]}.{'trades' if bare else 'book'}.dbn.zst"
    truth, sizes = stripped_copy(src, dst, bare=bare)
    trades, validator = asyncio.run(_replay(dst))
    if len(trades) != len(truth):
        raise SystemExit(f"{src.name}: {len(trades)} of {len(truth)} trades came back "
                         f"(rejects {dict(validator.rejects)}); cannot compare")
    agree = [t.side is s for t, s in zip(trades, truth, strict=True)]
    by_rule: dict[str, dict[str, int]] = {}
    for t, ok in zip(trades, agree, strict=True):
        r = by_rule.setdefault(t.side_rule.name.lower(), {"trades": 0, "agree": 0})
        r["trades"] += 1
        r["agree"] += ok
    n, vol = len(truth), sum(sizes)
    n_ok = sum(agree)
    vol_ok = sum(sz for sz, ok in zip(sizes, agree, strict=True) if ok)
    return {
        "file": src.name, "method": "tick rule (bare trades)" if bare else "quote rule (book kept)",
        "trades": n, "agree": n_ok, "agreement": round(n_ok / n, 4) if n else None,
        "volume": vol, "volume_agree": vol_ok, "volume_agreement": round(vol_ok / vol, 4) if vol else None,
        "by_rule": by_rule,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON document on stdout")
    ap.add_argument("files", nargs="*", type=Path, help=f"DBN files with exchange sides (default {REAL}/*.dbn.zst)")
    args = ap.parse_args(argv)
    files = args.files or sorted(REAL.glob("*.dbn.zst"))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sides-") as tmp:
        for f in files:
            for bare in (False, True):
                rows.append(measure(f, bare=bare, tmp=Path(tmp)))
    if args.json:
        print(json.dumps({"results": rows}, indent=2))
        return 0
    print(f"{'file':<38} {'method':<26} {'trades':>6} {'agree':>7} {'by volume':>9}  decided by")
    for r in rows:
        rules = ", ".join(f"{k} {v['trades']} ({v['agree'] / v['trades']:.1%})"
                          for k, v in sorted(r["by_rule"].items()))
        print(f"{r['file']:<38} {r['method']:<26} {r['trades']:>6} {r['agreement']:>7.2%} "
              f"{r['volume_agreement']:>9.2%}  {rules}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
