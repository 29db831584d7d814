"""Honest simulation on the real path: market fills never beat the quote, and the past never depends on the future.

* Market orders on the real ES TBBO and MBP-10 files (``../shared/data/real``) fill at the prevailing opposite
  best or worse, never inside the event group that produced the decision: both for the strategy's own orders
  (the daemon's trading core over the file) and for a market order sent on every 7th print through the real
  paper broker (hundreds of fills).
* Cutting the input at a time T never changes a decision, an order or a fill stamped before T, on trades,
  TBBO and MBP-10 days (cuts just after bar ends, including bars whose closing print filled a stop).
* A status (halt) record that arrives after a bar's end is not seen by that bar's decision.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tradebot.backtest.overrides import apply_overrides
from tradebot.backtest.runner import load_events
from tradebot.core.calendar import to_ns
from tradebot.core.config import Settings, load_settings
from tradebot.core.contracts import spec_for
from tradebot.core.types import BookUpdate, MarketEvent, Side, SideRule, StatusEvent, Trade
from tradebot.execution.model import BracketRequest, Fill, FlattenRequest, OrderType
from tradebot.execution.paper import PaperBroker, PaperConfig
from tradebot.feeds.synth import synthesize
from tradebot.regime.pipeline import SymbolStrategy
from tradebot.regime.router import Router
from tradebot.state.store import StateStore
from tradebot.trading import TradingCore

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
REAL = sorted((DATA / "real").glob("*.dbn.zst"))

SHORT_BARS = {  # one real minute: short bars and warm-ups so the strategy trades (as in the parity test)
    "footprint.bar_seconds": "2", "regime.adx_period": "2", "regime.atr_period": "2", "regime.ema_fast": "2",
    "regime.ema_slow": "3", "regime.structure_lookback": "1", "regime.atr_min_history": "1",
    "regime.atr_history_bars": "10", "regime.volume_min_history": "1", "regime.open_buffer_minutes": "0",
    "regime.close_buffer_minutes": "0", "router.cooldown_seconds": "0", "min_confidence": "0.3",
    "router.intensity_min_history": "1", "DAILY_PROFIT_TARGET": "400", "DAILY_LOSS_LIMIT": "-400",
    "router.stop_points_by_symbol": "ES:0.5"}


class QuoteSpy:
    """Tracks the prevailing quote independently of the broker and records every market fill against it."""

    def __init__(self) -> None:
        self.quote: tuple[int | None, int | None] = (None, None)
        self.group_ts = 0
        self.market_fills: list[tuple[Side, int, int | None, int | None, int, int]] = []
        """(side, price, best bid, best ask, fill time, armed time) per market fill."""

    @contextmanager
    def installed(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[QuoteSpy]:
        on_event, fill = PaperBroker.on_market_event, PaperBroker._fill
        spy = self

        def spy_event(broker: PaperBroker, ev: MarketEvent) -> None:
            if type(ev) is BookUpdate:
                spy.quote = (ev.bid_px[0] if ev.bid_px else None, ev.ask_px[0] if ev.ask_px else None)
            on_event(broker, ev)

        def spy_fill(broker: PaperBroker, o: Any, qty: int, price: int, ts_ns: int,
                     commission: int | None = None) -> None:
            if o.order_type == OrderType.MARKET:
                spy.market_fills.append((o.side, price, *spy.quote, ts_ns, o.armed_ns))
            fill(broker, o, qty, price, ts_ns, commission)

        monkeypatch.setattr(PaperBroker, "on_market_event", spy_event)
        monkeypatch.setattr(PaperBroker, "_fill", spy_fill)
        yield self

    def check(self, slip: int) -> int:
        """No market fill better than the quote (plus slippage), none at or before its arming time."""
        for side, price, bid, ask, ts, armed in self.market_fills:
            assert ts > armed, "a market order filled inside the event group that produced it"
            if side == Side.BUY:
                assert ask is not None and price == ask + slip, (price, bid, ask)
            else:
                assert bid is not None and price == bid - slip, (price, bid, ask)
        return len(self.market_fills)


def _run_core(events: list[MarketEvent], s: Settings, db: Path, *, record: bool = False) -> TradingCore:
    store = StateStore.open(db, synchronous="OFF")
    core = TradingCore(s, ["ES"], store, record_decisions=record)
    core.start(events[0].ts_event)
    for ev in events:
        core.on_event(ev)
    core.finish()
    return core


@pytest.mark.parametrize("path", REAL, ids=[p.name.split(".")[1] for p in REAL])
def test_strategy_market_fills_on_real_data_never_beat_the_quote(path: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(REAL) == 2, "the real TBBO and MBP-10 files are missing"
    n = 0
    for slip, bar_s in ((0, "1"), (1, "2"), (0, "5")):
        s = apply_overrides(load_settings(), {**SHORT_BARS, "footprint.bar_seconds": bar_s,
                                              "execution.market_slippage_ticks": str(slip)})
        events, _ = load_events([path], s, "ES")
        spy = QuoteSpy()
        with spy.installed(monkeypatch):
            core = _run_core(events, s, tmp_path / f"{bar_s}.db")
        n += spy.check(slip)
        core.store.close()
    assert n >= 8  # entries and market exits of the strategy's own trades on the real minute


@pytest.mark.parametrize("path", REAL, ids=[p.name.split(".")[1] for p in REAL])
def test_a_market_order_on_every_seventh_real_print_pays_the_quote(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decision made while a print's record is processed (quote then print, same nanosecond) is armed at the
    print's time: it fills on a later event at the then prevailing opposite best; the exit likewise."""
    events, _ = load_events([path], load_settings(), "ES")
    spy = QuoteSpy()
    with spy.installed(monkeypatch):
        b = PaperBroker(PaperConfig(), data_symbols=["ES"])
        prints, k, open_sid = 0, 0, ""
        for ev in events:
            b.on_market_event(ev)
            for f in b.poll_events():
                if isinstance(f, Fill) and f.client_order_id.endswith("-E"):
                    open_sid = f.client_order_id[:-2]
                    exit_side = Side.SELL if f.side == Side.BUY else Side.BUY
                    b.flatten(FlattenRequest(open_sid, "ES", f"{open_sid}-X", exit_side, f.quantity,
                                             (f"{open_sid}-S", f"{open_sid}-T"), "test", f.ts_ns))
                elif isinstance(f, Fill) and f.client_order_id.endswith("-X"):
                    open_sid = ""
            if type(ev) is Trade:
                prints += 1
                if prints % 7 == 0 and not open_sid and not b.query_positions():
                    k += 1
                    side = Side.BUY if k % 2 else Side.SELL
                    stop, target = (ev.price - 400, ev.price + 400) if side == Side.BUY else (ev.price + 400,
                                                                                             ev.price - 400)
                    sid = f"ES-{k}"
                    open_sid = sid
                    # decided at an earlier bar end, sent while this print's group is processed
                    b.submit_bracket(BracketRequest(sid, "ES", side, 1, OrderType.MARKET, None, stop, target,
                                                    ev.ts_event - 10**9, ev.ts_event))
                    b.poll_events()
    assert spy.check(0) >= 200


# --- truncation: the past never depends on the future --------------------------------------------------------

SCHEMAS = {"trades": ("2025-03-13", 9), "tbbo": ("2025-03-12", 7), "mbp-10": ("2025-03-11", 2)}
TRUNC = {"footprint.bar_seconds": "30", "min_confidence": "0.3", "router.cooldown_seconds": "0",
         "router.stop_points_by_symbol": "ES:0.5", "DAILY_PROFIT_TARGET": "5000", "DAILY_LOSS_LIMIT": "-5000"}


def _observed(core: TradingCore) -> dict[str, list[tuple[int, str]]]:
    """Everything stamped: router decisions, journaled orders (signals and requests), fills."""
    st = core.store
    decisions = [(int(r["ts_ns"]), f"{r['signal_id']} {r['verdict']} {r['codes']}")
                 for r in st.query("SELECT * FROM router_decisions")]
    orders = []
    for rec in st.journal():
        if rec.kind in ("signal", "flatten_request", "cancel_request", "modify_request"):
            p = {k: v for k, v in rec.payload.items() if k != "armed_ns"}  # when it may fill: after the cut
            orders.append((rec.ts_ns, f"{rec.kind} {json.dumps(p, sort_keys=True)}"))
    fills = [(int(r["ts_ns"]), f"{r['fill_id']} {r['quantity']} @ {r['price']}")
             for r in st.query("SELECT * FROM fills")]
    return {"decisions": sorted(decisions), "orders": sorted(orders), "fills": sorted(fills)}


def _before(obs: dict[str, list[tuple[int, str]]], t: int) -> dict[str, list[tuple[int, str]]]:
    return {k: [x for x in v if x[0] < t] for k, v in obs.items()}


@pytest.fixture(scope="module")
def synth_days(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("trunc")
    paths = {}
    for schema, (start, seed) in SCHEMAS.items():
        (d,) = synthesize(out / schema, symbol="ES", days=1, start=dt.date.fromisoformat(start),
                          trades_per_day=8_000, seed=seed, schema=schema)
        paths[schema] = d.path
    return paths


@pytest.mark.parametrize("schema", list(SCHEMAS))
def test_cutting_the_input_at_t_never_changes_what_was_stamped_before_t(synth_days: dict[str, Path],
                                                                        schema: str) -> None:
    s = apply_overrides(load_settings(), TRUNC)
    events, _ = load_events([synth_days[schema]], s, "ES")
    with tempfile.TemporaryDirectory() as tmp:
        core = _run_core(events, s, Path(tmp) / "full.db", record=True)
        full = _observed(core)
        # Bar ends whose first later event closed a position (the closing print filled the stop or target),
        # then the other decision times: cut 1 ns after each.
        closes = {int(r["closed_ns"]) for r in core.store.query("SELECT closed_ns FROM brackets "
                                                                 "WHERE closed_ns IS NOT NULL")}
        core.store.close()
    assert full["fills"], f"the {schema} day trades (the test needs fills to cut around)"
    ends = sorted({t for t, _ in full["decisions"]} | {t for t, _ in full["orders"] if t})
    times = [e.ts_event for e in events]
    special = [t for t in ends if _first_after(times, t) in closes]
    assert special, "no bar whose closing event closed a position: the case this test exists for"
    cuts = sorted(set(special[:2] + ends[len(ends) // 3:: max(1, len(ends) // 3)][:2]))
    for t in cuts:
        cut_events = [e for e in events if e.ts_event <= t]  # input cut 1 ns after the bar's end
        with tempfile.TemporaryDirectory() as tmp:
            core = _run_core(cut_events, s, Path(tmp) / "cut.db", record=True)
            part = _observed(core)
            core.store.close()
        assert _before(part, t + 1) == _before(full, t + 1), f"{schema}: cut at {t} changed the past"


def _first_after(times: list[int], t: int) -> int | None:
    import bisect

    i = bisect.bisect_left(times, t)
    return times[i] if i < len(times) else None


# --- a status record after the bar's end ---------------------------------------------------------------------


def test_a_halt_after_the_bar_end_is_not_seen_by_that_bars_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    halted_at_decision: list[tuple[int, bool]] = []
    original = Router.on_bar

    def spy(self: Router, bar: Any, *a: Any, **kw: Any) -> Any:
        halted_at_decision.append((bar.end_ns, self.filters.halted))
        return original(self, bar, *a, **kw)

    monkeypatch.setattr(Router, "on_bar", spy)
    spec = spec_for("ES")
    strat = SymbolStrategy(spec, load_settings())
    t0 = to_ns(dt.datetime(2025, 3, 11, 15, 0, tzinfo=dt.UTC))
    for i in range(50):
        strat.on_event(Trade("ES", t0 + i * 10**9, t0 + i * 10**9, 22000 + i % 3, 1, Side.BUY, SideRule.EXCHANGE))
    bar_end = t0 + 300 * 10**9
    step = strat.on_event(StatusEvent("ES", bar_end + 1000, True, "halted"))
    assert step.closed is not None and step.closed.bar.end_ns == bar_end  # the status closed the due bar first
    assert halted_at_decision == [(bar_end, False)]
    assert strat.router.filters.halted  # and then applied the halt
    strat.on_event(Trade("ES", bar_end + 2000, bar_end + 2000, 22000, 1, Side.BUY, SideRule.EXCHANGE))
    assert len(halted_at_decision) == 1
