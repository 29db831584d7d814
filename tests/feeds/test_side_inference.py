"""Unknown aggressor sides are inferred in the validation layer, on every source, with the rule on the event.

The real ES tape (``../shared/data/real``) carries the exchange's sides; copies with the sides stripped go
through the real commands and the fast backtest path, and the agreement figures the benchmark prints are
recomputed here independently from the raw records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import databento as db
import numpy as np
import pytest

from tradebot.backtest.fast.load import load_day
from tradebot.backtest.runner import load_events
from tradebot.core.config import load_settings
from tradebot.core.types import BookUpdate, RawBook, RawTrade, Side, SideRule, Trade
from tradebot.feeds.csv_ticks import SIERRA_TICKS, CsvTickFeed
from tradebot.feeds.validation import Validator

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "data" / "real"
TBBO = REAL / "ES_2022-01-24_sierra.tbbo.dbn.zst"
SIERRA = ROOT.parent / "shared" / "data" / "sierra" / "ES_2022-01-24_tick_dom40.txt"
BENCH = ROOT / "benchmarks" / "side_inference.py"
T0 = 1_643_052_600_000_000_000
ES_FP = 250_000_000  # one ES tick in fixed point


def _book(bid: int | None, ask: int | None, ts: int, sym: str = "ESH2") -> RawBook:
    return RawBook(sym, ts, ts, (None if bid is None else bid * ES_FP,), (0 if bid is None else 5,),
                   (None if ask is None else ask * ES_FP,), (0 if ask is None else 5,))


def _trade(px: int, ts: int, side: Side = Side.UNKNOWN, sym: str = "ESH2") -> RawTrade:
    rule = SideRule.NONE if side is Side.UNKNOWN else SideRule.EXCHANGE
    return RawTrade(sym, ts, ts, px * ES_FP, 1, side, rule)


def test_quote_rule_then_tick_rule_per_contract() -> None:
    v = Validator(symbols=["ES"])
    stream: list[tuple[RawTrade | RawBook, tuple[Side, SideRule] | None]] = [
        (_trade(18000, T0 + 1), (Side.UNKNOWN, SideRule.NONE)),  # no book, no previous price: undecided
        (_trade(18001, T0 + 2), (Side.BUY, SideRule.TICK)),  # uptick
        (_trade(18001, T0 + 3), (Side.BUY, SideRule.TICK)),  # zero tick keeps the last direction
        (_book(18000, 18002, T0 + 4), None),
        (_trade(18002, T0 + 5), (Side.BUY, SideRule.QUOTE)),  # at the ask
        (_trade(18000, T0 + 6), (Side.SELL, SideRule.QUOTE)),  # at the bid
        (_trade(18001, T0 + 7), (Side.BUY, SideRule.TICK)),  # at the mid: tick rule (up from 18000)
        (_trade(18003, T0 + 8), (Side.BUY, SideRule.QUOTE)),  # through the ask
        (_trade(17999, T0 + 9, Side.BUY), (Side.BUY, SideRule.EXCHANGE)),  # exchange side kept, price remembered
        (_trade(18001, T0 + 10), (Side.BUY, SideRule.TICK)),  # mid again: up from the exchange-sided 17999
        (_book(18001, 18002, T0 + 11, "ESM2"), None),  # another contract's book says nothing about ESH2
        (_trade(18001, T0 + 12), (Side.BUY, SideRule.TICK)),
        (_trade(18002, T0 + 13, sym="ESM2"), (Side.BUY, SideRule.QUOTE)),
        (_book(None, 18002, T0 + 14), None),  # an empty bid: no quote to compare with
        (_trade(18000, T0 + 15), (Side.SELL, SideRule.TICK)),
        (_book(18003, 18002, T0 + 16), None),  # crossed: rejected, the last accepted book prevails
        (_trade(18000, T0 + 17), (Side.SELL, SideRule.TICK)),
    ]
    for rec, want in stream:
        ev = v.validate(rec)
        if want is None:
            continue
        assert isinstance(ev, Trade), rec
        assert (ev.side, ev.side_rule) == want, rec
    assert v.rejects == {"crossed_book": 1}
    assert v.sides.counts() == {"none": 1, "exchange": 1, "quote": 4, "tick": 7}
    got = v.validate(_trade(18001, T0 + 18, sym="ESM2"))
    assert isinstance(got, Trade) and got.side_rule is SideRule.QUOTE  # at ESM2's bid 18001: a sell
    assert got.side is Side.SELL
    v.on_gap()  # a gap: neither the book nor the last price before it decide
    got = v.validate(_trade(18001, T0 + 19, sym="ESM2"))
    assert isinstance(got, Trade) and (got.side, got.side_rule) == (Side.UNKNOWN, SideRule.NONE)
    got = v.validate(_trade(18000, T0 + 20, sym="ESM2"))
    assert isinstance(got, Trade) and (got.side, got.side_rule) == (Side.SELL, SideRule.TICK)


def _strip(src: Path, dst: Path, *, bare: bool) -> None:
    sys.path.insert(0, str(BENCH.parent))
    try:
        import side_inference
    finally:
        sys.path.remove(str(BENCH.parent))
    side_inference.stripped_copy(src, dst, bare=bare)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    return subprocess.run([sys.executable, "-m", "tradebot", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def _independent(bare: bool) -> tuple[int, int, int]:
    """(trades, agreeing prints, agreeing contracts) from the raw TBBO columns, without the project's code."""
    rec = db.DBNStore.from_file(TBBO).to_ndarray()
    px = rec["price"].astype(np.int64)
    true = np.where(rec["side"] == b"B", 1, np.where(rec["side"] == b"A", -1, 0))
    diff = np.sign(np.diff(px, prepend=px[0]))
    tick = np.zeros(len(px), np.int64)
    last = 0
    for i, d in enumerate(diff):
        last = d if d else last
        tick[i] = last
    if bare:
        got = tick
    else:
        q = np.sign(2 * px - rec["bid_px_00"].astype(np.int64) - rec["ask_px_00"].astype(np.int64))
        got = np.where(q != 0, q, tick)
    ok = got == true
    return len(px), int(ok.sum()), int(rec["size"][ok].sum())


def test_benchmark_figures_on_the_real_tape_match_an_independent_count() -> None:
    r = subprocess.run([sys.executable, str(BENCH), "--json", str(TBBO)], capture_output=True, text=True,
                       timeout=120, check=True)
    rows = {row["method"].split()[0]: row for row in json.loads(r.stdout)["results"]}
    for method, bare in (("quote", False), ("tick", True)):
        n, agree, vol_agree = _independent(bare)
        row = rows[method]
        assert (row["trades"], row["agree"], row["volume_agree"]) == (n, agree, vol_agree), method
    assert rows["quote"]["agreement"] > 0.99 > rows["tick"]["agreement"] > 0.7
    assert rows["tick"]["by_rule"]["none"]["trades"] >= 1  # the opening prints have no previous price


@pytest.mark.parametrize("bare", [False, True], ids=["tbbo-no-sides", "bare-trades-no-sides"])
def test_inspect_and_analyze_show_the_rule_used(tmp_path: Path, bare: bool) -> None:
    path = tmp_path / ("bare.dbn.zst" if bare else "book.dbn.zst")
    _strip(TBBO, path, bare=bare)
    ins = _cli("data", "inspect", "--json", str(path), cwd=tmp_path)
    assert ins.returncode == 0, ins.stderr
    rules = json.loads(ins.stdout)["files"][0]["side_rules"]
    ana = _cli("analyze", "--json", "--symbol", "ES", str(path), cwd=tmp_path)
    assert ana.returncode == 0, ana.stderr
    assert json.loads(ana.stdout)["side_rules"] == rules
    n = sum(rules.values())
    assert n == 2026 and rules["exchange"] == 0
    if bare:
        assert rules["quote"] == 0 and rules["tick"] > 0.99 * n and rules["none"] >= 1
        return
    assert rules["quote"] == n
    text = _cli("data", "inspect", str(path), cwd=tmp_path).stdout
    assert f"quote rule {rules['quote']:,}, tick rule {rules['tick']:,}" in text
    text = _cli("analyze", "--symbol", "ES", str(path), cwd=tmp_path).stdout
    assert f"trade sides: exchange 0, quote rule {rules['quote']:,}" in text
    # the original keeps the exchange's word on every print
    orig = json.loads(_cli("data", "inspect", "--json", str(TBBO), cwd=tmp_path).stdout)["files"][0]["side_rules"]
    assert orig == {"none": 0, "exchange": 2026, "quote": 0, "tick": 0}


def _sides(events: list[Any]) -> list[tuple[int, int]]:
    return [(e.ts_event, int(e.side)) for e in events if isinstance(e, Trade)]


@pytest.mark.parametrize("bare", [False, True], ids=["tbbo", "trades"])
def test_fast_path_infers_exactly_as_the_event_path(tmp_path: Path, bare: bool) -> None:
    path = tmp_path / "day.dbn.zst"
    _strip(TBBO, path, bare=bare)
    s = load_settings()
    cols = load_day(path, "ES", depth_levels=(5,), tolerance_ns=0, max_jump_ticks=400, jump_confirm_prints=5)
    events, validator = load_events([path], s, "ES")
    fast = [(int(cols.rts[r]), int(cols.tside[r])) for r in cols.trade_records.tolist()]
    assert fast == _sides(events)
    assert validator.sides.counts()["exchange"] == 0 and {side for _, side in fast} == {-1, 0, 1} - ({0} if not
                                                                                                   bare else set())


def test_csv_without_a_side_column_through_analyze(tmp_path: Path) -> None:
    """The Sierra export with its TradeType column removed: still recognised, every side inferred and labelled."""
    src = SIERRA.read_text().splitlines()
    drop = src[0].split(";").index("TradeType")
    path = tmp_path / "ES_2022-01-24_no_side.txt"
    path.write_text("\n".join(";".join(c for k, c in enumerate(line.split(";")) if k != drop) for line in src) + "\n")
    r = _cli("analyze", "--json", "--symbol", "ES", str(path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rules = json.loads(r.stdout)["side_rules"]
    assert rules["exchange"] == 0 and sum(rules.values()) == 2026 and rules["quote"] > 1900


def test_csv_without_a_side_column(tmp_path: Path) -> None:
    """A Sierra export read without its trade-type column: the BBO/DOM book before each print decides."""
    import asyncio
    import dataclasses

    mapping = dataclasses.replace(SIERRA_TICKS, side=None)
    v = Validator(symbols=["ES"])

    async def run() -> list[Trade]:
        out: list[Trade] = []
        feed = CsvTickFeed(SIERRA, mapping, "ESH2")
        try:
            async for ev in feed:
                if isinstance(ev, RawTrade):
                    assert ev.side is Side.UNKNOWN
                if isinstance(ev, RawTrade | RawBook):
                    got = v.validate(ev)
                    if isinstance(got, Trade):
                        out.append(got)
                    else:
                        assert isinstance(got, BookUpdate) or got is None
        finally:
            await feed.close()
        return out

    trades = asyncio.run(run())
    assert len(trades) == 2026
    counts = v.sides.counts()
    assert counts["exchange"] == 0 and counts["quote"] > 1900 and sum(counts.values()) == len(trades)
    assert all(t.side_rule in (SideRule.QUOTE, SideRule.TICK, SideRule.NONE) for t in trades)
    assert {t.side for t in trades if t.side_rule is not SideRule.NONE} == {Side.BUY, Side.SELL}
