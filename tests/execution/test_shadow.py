"""The shadow model beside a scripted live broker: the manager sees only live answers, the model fills the same
orders on the same market data by the paper rules, and each leg's latency and slippage land in shadow_legs."""

from __future__ import annotations

import itertools
from pathlib import Path

from support.exec_helpers import T0, S, book, intent, settings, trade
from support.fake_broker import ScriptedLiveBroker
from tradebot.core.types import Side
from tradebot.execution.brokers import LiveBroker
from tradebot.execution.manager import ExecutionManager
from tradebot.execution.paper import PaperBroker, PaperConfig
from tradebot.execution.shadow import ShadowBroker, compare, leg_slippage
from tradebot.state.store import StateStore

MS = 1_000_000


def test_live_beside_model_records_latency_and_slippage(tmp_path: Path) -> None:
    cfg = settings(stop_slippage_ticks=1).model_copy(update={"trading_mode": "live"})
    # The "exchange" fills market orders 2 ticks and stops 3 ticks worse than the paper rules the model uses.
    exchange = PaperBroker(PaperConfig.from_settings(cfg.model_copy(update={"execution": cfg.execution.model_copy(
        update={"market_slippage_ticks": 2, "stop_slippage_ticks": 3})})), data_symbols=["ES"])
    live = ScriptedLiveBroker(exchange)
    store = StateStore.open(tmp_path / "live.db", mode="live")
    ticks = itertools.count(T0 + S + 50 * MS, 7 * MS)  # our wall clock: 7 ms per reading, 50 ms after the signal
    shadow = ShadowBroker(live, cfg, store, clock=lambda: next(ticks), day_of=lambda ts: "2025-03-10")
    assert isinstance(shadow, LiveBroker)
    m = ExecutionManager(cfg, store, shadow, symbols=["ES"])
    m.recover(T0)
    m.on_market_event(book(0, 20000, 20001))
    it = intent(1, Side.BUY, stop=19990, target=20040)
    assert m.on_intent(it).taken
    m.on_market_event(book(2, 20000, 20001))
    m.on_market_event(trade(3, 20001))
    m.on_market_event(trade(4, 19990, side=Side.SELL))  # the stop: model 19989, live 19987
    m.on_market_event(trade(5, 19985, side=Side.SELL))
    # The manager's books are the live broker's (the model's fills never reached it).
    b = m.ledger.brackets[it.signal_id]
    assert b.entry_value == 20003 and b.exit_value == 19987
    rows = {r["role"]: r for r in store.shadow_legs("2025-03-10")}
    assert set(rows) == {"E", "S", "T"}
    e, st = rows["E"], rows["S"]
    assert (e["live_value"], e["model_value"]) == (20003, 20001)
    assert (st["live_value"], st["model_value"]) == (19987, 19989)
    assert leg_slippage(e) == (2, 2500) and leg_slippage(st) == (2, 2500)  # $12.50 a tick, worse both times
    assert e["submit_ns"] - e["signal_ns"] >= 0 and e["ack_ns"] > e["submit_ns"] and e["fill_ns"] >= e["ack_ns"]
    assert rows["T"]["live_qty"] == 0 and rows["T"]["model_qty"] == 0
    c = compare(store.shadow_legs("2025-03-10"))
    assert (c["live_trades"], c["model_trades"], c["filled_both"]) == (1, 1, 2)
    assert c["model_pnl_cents"] - c["live_pnl_cents"] == 5000  # four ticks of slippage on one contract
    assert c["slippage_ticks_mean"] == 2.0 and c["slippage_cents_max"] == 2500
    assert c["submit_to_ack_ms"]["p50"] is not None and c["submit_to_ack_ms"]["p50"] > 0
    assert shadow.stats["write_errors"] == 0
    store.close()


def test_a_failing_shadow_write_never_reaches_the_trading_loop(tmp_path: Path) -> None:
    cfg = settings().model_copy(update={"trading_mode": "live"})
    store = StateStore.open(tmp_path / "live.db", mode="live")
    shadow = ShadowBroker(ScriptedLiveBroker(), cfg, store)  # trading day from the exchange calendar

    def broken(row: object) -> None:
        raise OSError("disk I/O error")

    shadow.store.upsert_shadow_leg = broken  # type: ignore[method-assign]
    m = ExecutionManager(cfg, store, shadow, symbols=["ES"])
    m.recover(T0)
    m.on_market_event(book(0, 20000, 20001))
    assert m.on_intent(intent(1, Side.BUY, stop=19990, target=20040)).taken
    m.on_market_event(book(2, 20000, 20001))
    m.on_market_event(trade(3, 20001))
    assert m.ledger.position_qty("ES") == 1
    assert shadow.stats["write_errors"] >= 2
    store.close()


def test_the_digest_shows_live_against_model(tmp_path: Path) -> None:
    import datetime as dt

    from tradebot.ops.digest import digest_data, digest_notification

    test_live_beside_model_records_latency_and_slippage(tmp_path)
    store = StateStore.open(tmp_path / "live.db", mode="live", readonly=True)
    n = digest_notification(digest_data(store, dt.date(2025, 3, 10)), dt.date(2025, 3, 10), T0)
    store.close()
    fields = dict(n.fields)
    assert fields["Live vs model trades"].startswith("1 live, 1 model")
    assert fields["Live vs model P&L"] == "-$203.80 live, -$153.80 model"  # -16 and -12 ticks, $3.80 fees
    assert fields["Slippage vs model"] == "mean +2 ticks, worst +2 ticks (-$25.00), total -$50.00 over 2 fill(s)"
    assert "submit->ack" in fields["Latency p50/p95/p99"]
