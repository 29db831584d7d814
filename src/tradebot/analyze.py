"""``tradebot analyze FILE``: any supported market data file through validation and the order-flow engine.

A file can hold several contracts of one root (a roll, a live capture with every ES expiry); mixing them would
corrupt footprints, so each raw contract gets its own engine and the busiest one is reported unless
``--contract`` names another.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradebot.core.config import ConfigError, FootprintSettings, Settings, check_symbols, checked_override
from tradebot.core.contracts import spec_for
from tradebot.core.types import GapEvent, RawBook, RawStatus, RawTrade, StatusEvent, Trade
from tradebot.feeds.base import damage_of
from tradebot.feeds.files import open_file_feed
from tradebot.feeds.sides import format_side_rules
from tradebot.feeds.validation import DAMAGE_REASONS, Validator
from tradebot.orderflow.engine import BarClose, OrderFlowEngine
from tradebot.orderflow.events import Pattern
from tradebot.orderflow.microstructure import MicrostructureSnapshot
from tradebot.regime.decisions import Decision, decision_to_dict, format_decision
from tradebot.regime.pipeline import StrategyStep, SymbolStrategy


@dataclass
class ContractRun:
    raw_symbol: str
    strategy: SymbolStrategy
    bars: list[BarClose] = field(default_factory=list)
    micro_at_close: list[MicrostructureSnapshot] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    volume: int = 0

    @property
    def engine(self) -> OrderFlowEngine:
        return self.strategy.engine


@dataclass
class AnalyzeResult:
    runs: dict[str, ContractRun]
    validator: Validator
    chosen: ContractRun | None
    damage: list[str] = field(default_factory=list)
    """What damaged input cost (file damage, broken records); empty for clean input."""


async def run_file(paths: list[Path], settings: Settings, symbol: str | None = None,
                   contract: str | None = None) -> AnalyzeResult:
    feed = open_file_feed(paths, speed=0.0, symbol=symbol)
    validator = Validator(settings.validation, [symbol] if symbol else [])
    validator.declare_spans_of(feed)
    runs: dict[str, ContractRun] = {}

    def run_for(raw: str, root: str) -> ContractRun:
        r = runs.get(raw)
        if r is None:
            r = runs[raw] = ContractRun(raw, SymbolStrategy(spec_for(root), settings))
        return r

    def closed(r: ContractRun, step: StrategyStep) -> None:
        r.decisions.extend(step.decisions)
        if step.closed is None:
            return
        r.bars.append(step.closed)
        r.micro_at_close.append(r.engine.micro.snapshot(step.closed.bar.end_ns))

    try:
        async for ev in feed:
            if isinstance(ev, GapEvent):
                validator.on_gap()
                for r in runs.values():
                    r.engine.on_gap()
                continue
            if not isinstance(ev, RawTrade | RawBook | RawStatus):
                continue
            out = validator.validate(ev)
            if out is None:
                continue
            if isinstance(out, StatusEvent):
                for r in runs.values():
                    if r.strategy.symbol == out.symbol:
                        r.strategy.on_event(out)
                continue
            r = run_for(out.raw_symbol or out.symbol, out.symbol)
            if isinstance(out, Trade):
                r.volume += out.size
            closed(r, r.strategy.on_event(out))
        damage = damage_of(feed)
    finally:
        await feed.close()
    for r in runs.values():
        closed(r, r.strategy.flush())
    chosen = runs.get(contract) if contract else max(runs.values(), key=lambda r: r.volume, default=None)
    if validator.damaged:
        damage.append(f"{validator.damaged:,} broken record(s) rejected: " + ", ".join(
            f"{k} {v:,}" for k, v in sorted(validator.rejects.items()) if k in DAMAGE_REASONS))
    return AnalyzeResult(runs, validator, chosen, damage)


# -- rendering ---------------------------------------------------------------------------------------------


def bar_json(bc: BarClose, fmt: Callable[[int], str]) -> dict[str, Any]:
    b = bc.bar
    return {
        "start_ns": b.start_ns, "end_ns": b.end_ns, "open": _num(fmt(b.open)), "high": _num(fmt(b.high)),
        "low": _num(fmt(b.low)), "close": _num(fmt(b.close)), "volume": b.volume, "delta": b.delta,
        "max_delta": b.max_delta, "min_delta": b.min_delta, "trades": b.trades, "cum_delta": b.cum_delta,
        "poc": _num(fmt(b.poc)),
        "levels": [{"price": _num(fmt(lv.price)), "bid": lv.bid, "ask": lv.ask} for lv in b.levels],
        "patterns": [{"pattern": str(p.pattern), "direction": str(p.direction),
                      "prices": [_num(fmt(x)) for x in p.prices], "strength": round(p.strength, 4),
                      "reasons": list(p.reasons)} for p in bc.patterns],
    }


def _num(text: str) -> float | int:
    """A decimal price as a JSON number (its shortest repr is the exact decimal text)."""
    return int(text) if "." not in text else float(text)


def result_json(res: AnalyzeResult) -> dict[str, Any]:
    run = res.chosen
    if run is None:
        return {"bars": [], "profile": None, "microstructure": None, "validation": res.validator.snapshot(),
                "side_rules": res.validator.sides.counts()}
    spec = run.engine.spec
    a = run.engine.analyze()
    prof = a.profile
    m = a.microstructure
    return {
        "symbol": spec.root, "contract": run.raw_symbol, "bar_seconds": run.engine.settings.footprint.bar_seconds,
        "bars": [bar_json(bc, spec.fmt) for bc in run.bars],
        "profile": None if prof is None else {
            "poc": _num(spec.fmt(prof.poc)), "vah": _num(spec.fmt(prof.vah)), "val": _num(spec.fmt(prof.val)),
            "hvn": [_num(spec.fmt(n.price)) for n in prof.hvn], "lvn": [_num(spec.fmt(n.price)) for n in prof.lvn],
            "total": prof.total,
        },
        "microstructure": {
            "book_available": m.book_available, "spread_ticks": m.spread_ticks, "spread_bps": m.spread_bps,
            "depth_imbalance": m.depth_imbalance, "buy_pressure": m.buy_pressure,
            "order_imbalance": m.order_imbalance, "trade_intensity": m.trade_intensity, "vwap": m.vwap,
            "vwap_deviation_pct": m.vwap_deviation_pct,
        },
        "cum_delta": a.cum_delta,
        "signal": {"direction": str(a.signal.direction) if a.signal.direction else "NEUTRAL",
                   "strength": round(a.signal.strength, 4), "reasons": list(a.signal.reasons)},
        "validation": res.validator.snapshot(),
        "side_rules": res.validator.sides.counts(),
        "other_contracts": {k: r.volume for k, r in res.runs.items() if r is not run},
    }


def print_table(res: AnalyzeResult, out: Any = None) -> None:
    out = out or sys.stdout
    run = res.chosen
    if run is None:
        print("no valid trades in the input", file=out)
        return
    spec = run.engine.spec
    from tradebot.core.display import display_tz_name, local, zone_label

    zone = zone_label(run.bars[0].bar.start_ns) if run.bars else zone_label()
    print(f"{spec.root} ({run.raw_symbol})  bars of {run.engine.settings.footprint.bar_seconds}s, times {zone} "
          f"({display_tz_name()})", file=out)
    print(f"{'start':>8} {'open':>10} {'high':>10} {'low':>10} {'close':>10} {'volume':>8} {'delta':>7} "
          f"{'POC':>10}  patterns", file=out)
    for bc in run.bars:
        b = bc.bar
        pats = ", ".join(f"{p.pattern}/{p.direction}" for p in bc.patterns)
        print(f"{local(b.start_ns):%H:%M:%S} {spec.fmt(b.open):>10} {spec.fmt(b.high):>10} "
              f"{spec.fmt(b.low):>10} {spec.fmt(b.close):>10} {b.volume:>8} {b.delta:>+7} "
              f"{spec.fmt(b.poc):>10}  {pats}", file=out)
    a = run.engine.analyze()
    if a.profile is not None:
        p = a.profile
        print(f"session profile: POC {spec.fmt(p.poc)}  VAH {spec.fmt(p.vah)}  VAL {spec.fmt(p.val)}  "
              f"HVN {[spec.fmt(n.price) for n in p.hvn]}  LVN {[spec.fmt(n.price) for n in p.lvn]}", file=out)
    print(a.summary, file=out)
    rej = {k: v for k, v in res.validator.rejects.items()}
    print(f"validation: {res.validator.accepted} accepted, rejects {rej or 'none'}", file=out)
    print(f"trade sides: {format_side_rules(res.validator.sides.counts())}", file=out)


def features_frame(run: ContractRun) -> Any:
    import pandas as pd

    rows = []
    for bc, m in zip(run.bars, run.micro_at_close, strict=True):
        b = bc.bar
        d5 = m.depth_for(5)
        ofi = m.ofi[0].ofi if m.ofi else None
        row: dict[str, Any] = {
            "start_ns": b.start_ns, "end_ns": b.end_ns, "close": float(spec_for(b.symbol).fmt(b.close)),
            "volume": b.volume, "delta": b.delta, "cvd": b.cum_delta, "order_imbalance": m.order_imbalance,
            "bid_depth": d5.bid_size if d5 else None, "ask_depth": d5.ask_size if d5 else None,
            "spread_bps": m.spread_bps, "depth_imbalance": m.depth_imbalance, "ofi": ofi,
            "buy_pressure": m.buy_pressure, "trade_intensity": m.trade_intensity,
        }
        present = {p.pattern for p in bc.patterns}
        for pat in Pattern:
            row[f"pat_{pat.value.lower()}"] = int(pat in present)
        rows.append(row)
    return pd.DataFrame(rows)


def analyze_command(args: argparse.Namespace, settings: Settings) -> int:
    paths = [Path(p) for p in args.files]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"analyze: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.symbol:  # an unknown root used to be ignored silently (every contract of the file analysed instead)
        check_symbols("--symbol", [args.symbol])
    if args.bar_seconds is not None:
        bar = checked_override(FootprintSettings, "bar_seconds", args.bar_seconds, "--bar-seconds")
        settings = settings.model_copy(update={"footprint": settings.footprint.model_copy(
            update={"bar_seconds": bar})})
    if args.plot_bars < 1:
        raise ConfigError(f"config error: --plot-bars {args.plot_bars}: Input should be at least 1")
    try:
        res = asyncio.run(run_file(paths, settings, args.symbol, args.contract))
    except (ValueError, OSError) as exc:
        print(f"analyze: {exc}", file=sys.stderr)
        return 2
    if args.features and res.chosen is not None:
        features_frame(res.chosen).to_parquet(args.features, index=False)
    if args.plot and res.chosen is not None:
        from tradebot.orderflow.plot import plot_footprint

        plot_footprint(res.chosen.engine, res.chosen.bars, Path(args.plot), max_bars=args.plot_bars)
    decisions = res.chosen.decisions if res.chosen is not None and args.decisions else []
    for line in res.damage:
        print(f"analyze: damaged input: {line}", file=sys.stderr)
    if args.json:
        doc = result_json(res)
        doc["damage"] = res.damage
        if args.decisions:
            doc["decisions"] = [decision_to_dict(d, spec_for(d.symbol)) for d in decisions]
        json.dump(doc, sys.stdout, separators=(",", ":"))
        print()
    else:
        print_table(res)
        if args.decisions:
            print(f"decisions ({len(decisions)}, {sum(d.taken for d in decisions)} taken):")
            for d in decisions:
                print("  " + format_decision(d, spec_for(d.symbol)))
    return 1 if res.damage else 0
