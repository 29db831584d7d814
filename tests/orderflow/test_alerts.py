"""Seed 000's alerts: large seller, red burst, exit signal; thresholds at and just past, cooldowns, scope, real ES."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import databento as db
import pandas as pd
import pytest

from tradebot.core.clock import ManualClock
from tradebot.core.config import load_settings
from tradebot.core.contracts import spec_for
from tradebot.core.types import BookUpdate, Side, SideRule, Trade
from tradebot.feeds.dbn_convert import iter_store
from tradebot.feeds.validation import Validator
from tradebot.orderflow.alerts import Alert, AlertEngine, AlertKind, AlertSettings, Severity

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SIERRA_TBBO = DATA / "real" / "ES_2022-01-24_sierra.tbbo.dbn.zst"
SIERRA_TXT = DATA / "sierra" / "ES_2022-01-24_tick_dom40.txt"

ES = spec_for("ES")
S = 1_000_000_000
T0 = 1_741_700_000 * S  # a whole second, 2025-03-11 (any time works: alerts run on event time)
PX = ES.to_ticks("5000.00")


def sell(size: int, t: float, symbol: str = "ES", side: Side = Side.SELL) -> Trade:
    ts = T0 + int(t * S)
    return Trade(symbol, ts, ts, PX, size, side, SideRule.EXCHANGE)


def bid(size: int, t: float, px: int = PX, symbol: str = "ES") -> BookUpdate:
    ts = T0 + int(t * S)
    return BookUpdate(symbol, ts, ts, (px,), (size,), (px + 1,), (5,))


def ask(size: int, t: float, px: int = PX + 1, symbol: str = "ES") -> BookUpdate:
    ts = T0 + int(t * S)
    return BookUpdate(symbol, ts, ts, (px - 1,), (5,), (px,), (size,))


def engine(**kw: Any) -> AlertEngine:
    kw.setdefault("monitoring_mode", "all")
    return AlertEngine(AlertSettings(**kw))


def kinds(alerts: tuple[Alert, ...]) -> list[AlertKind]:
    return [a.kind for a in alerts]


# --- large seller ----------------------------------------------------------------------------------


def test_large_sell_print_alerts_at_the_threshold_not_below() -> None:
    e = engine()
    assert e.threshold("ES") == ES.large_order_size == 100
    assert e.on_trade(sell(99, 0)) == ()
    out = e.on_trade(sell(100, 1))
    assert kinds(out) == [AlertKind.LARGE_SELLER]
    a = out[0]
    assert a.symbol == "ES" and a.ts_ns == T0 + S and a.severity is Severity.WARNING
    assert a.reason.startswith("Large seller detected") and "5000.00" in a.reason
    assert a.detail("size") == 100 and a.detail("source") == "print at the bid" and a.detail("missing") is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.symbol = "NQ"  # type: ignore[misc]


def test_large_buy_print_is_a_buyer_not_a_seller_and_the_threshold_is_configurable() -> None:
    e = engine(large_order_size=20)
    out = e.on_trade(sell(500, 0, side=Side.BUY))
    assert kinds(out) == [AlertKind.LARGE_BUYER] and out[0].detail("source") == "print at the offer"
    assert out[0].reason.startswith("Large buyer detected")
    assert e.on_trade(sell(500, 0, side=Side.UNKNOWN)) == ()
    assert kinds(e.on_trade(sell(20, 1))) == [AlertKind.LARGE_SELLER]
    assert e.threshold("ES") == 20


def test_large_resting_bid_is_a_buyer_and_large_resting_offer_a_seller_once_per_appearance() -> None:
    e = engine(large_order_size=50, exit_min_alerts=99)
    assert e.on_book(bid(49, 0)) == ()
    first = e.on_book(bid(50, 1))
    assert kinds(first) == [AlertKind.LARGE_BUYER] and first[0].detail("source") == "resting bid"
    assert e.on_book(bid(80, 2)) == ()  # the same resting order: no repeat
    assert kinds(e.on_book(bid(60, 3, px=PX - 1))) == [AlertKind.LARGE_BUYER]  # a new best bid price
    assert e.on_book(bid(10, 4, px=PX - 1)) == ()  # gone ...
    assert kinds(e.on_book(bid(55, 5, px=PX - 1))) == [AlertKind.LARGE_BUYER]  # ... and back
    offer = e.on_book(ask(50, 6))
    assert kinds(offer) == [AlertKind.LARGE_SELLER] and offer[0].detail("source") == "resting offer"
    assert e.on_book(ask(70, 7)) == ()
    empty = BookUpdate("ES", T0 + 8 * S, T0 + 8 * S, (), (), (PX,), (3,))
    assert e.on_book(empty) == ()  # an empty bid side is nothing, not an error
    off = engine(large_order_size=50, book_resting_size=False)
    assert off.on_book(bid(500, 0)) == () and off.on_book(ask(500, 0)) == ()


# --- exit signal -----------------------------------------------------------------------------------


def test_three_large_sellers_within_the_window_raise_one_exit_signal() -> None:
    e = engine(large_order_size=10)
    assert kinds(e.on_trade(sell(10, 0))) == [AlertKind.LARGE_SELLER]
    assert kinds(e.on_trade(sell(10, 60))) == [AlertKind.LARGE_SELLER]
    out = e.on_trade(sell(10, 120))  # exactly 120 s after the first: inside the window
    assert kinds(out) == [AlertKind.LARGE_SELLER, AlertKind.EXIT_SIGNAL]
    ex = out[1]
    assert ex.severity is Severity.CRITICAL and ex.reason.startswith("Exit signal for a long")
    assert ex.detail("alerts") == 3 and ex.detail("span_seconds") == 120 and ex.detail("threatens") == "long"
    assert e.exit_signals("ES") == 1


def test_alerts_just_over_the_window_apart_do_not_raise_an_exit_signal() -> None:
    e = engine(large_order_size=10)
    e.on_trade(sell(10, 0))
    e.on_trade(sell(10, 60))
    out = e.on_trade(Trade("ES", T0 + 120 * S + 1, 0, PX, 10, Side.SELL, SideRule.EXCHANGE))
    assert kinds(out) == [AlertKind.LARGE_SELLER]
    assert kinds(e.on_trade(sell(10, 121))) == [AlertKind.LARGE_SELLER, AlertKind.EXIT_SIGNAL]


def test_one_episode_one_exit_signal_and_a_new_episode_after_the_cooldown() -> None:
    e = engine(large_order_size=10, exit_cooldown_seconds=300)
    exits = [a for t in range(0, 60, 5) for a in e.on_trade(sell(10, t)) if a.kind is AlertKind.EXIT_SIGNAL]
    assert len(exits) == 1 and exits[0].ts_ns == T0 + 10 * S  # 12 alerts in a minute: one episode
    # Still in the cooldown (until t=310): alerts are raised, no signal, and they do not count later.
    for t in (200, 250, 309):
        assert kinds(e.on_trade(sell(10, t))) == [AlertKind.LARGE_SELLER]
    assert kinds(e.on_trade(sell(10, 310))) == [AlertKind.LARGE_SELLER]
    assert kinds(e.on_trade(sell(10, 320))) == [AlertKind.LARGE_SELLER]
    assert kinds(e.on_trade(sell(10, 330))) == [AlertKind.LARGE_SELLER, AlertKind.EXIT_SIGNAL]
    assert e.exit_signals("ES") == 2 and e.stats["exit_signal"] == 2


def test_default_exit_cooldown_is_the_alert_window_and_books_count_too() -> None:
    e = engine(large_order_size=10, alert_window_seconds=30)
    e.on_trade(sell(10, 0))
    e.on_book(ask(10, 1))  # resting size on the offer is a seller too
    assert AlertKind.EXIT_SIGNAL in kinds(e.on_trade(sell(10, 2)))
    for t in (10, 20, 31):  # 31 < 2 + 30: still quiet, and not counted later
        e.on_trade(sell(10, t))
    e.on_trade(sell(10, 32))  # the cooldown is over: counts again
    e.on_trade(sell(10, 40))
    assert e.exit_signals("ES") == 1
    assert AlertKind.EXIT_SIGNAL in kinds(e.on_trade(sell(10, 50)))


# --- red burst -------------------------------------------------------------------------------------


def baseline(e: AlertEngine, symbol: str = "ES") -> None:
    """50 contracts over the 5 minutes (99, 399] s -> 10 per 60 s window; the burst comes at t=459."""
    for t in (100, 160, 220, 280, 340):
        assert e.on_trade(sell(10, t, symbol, Side.BUY)) == ()


def burst(e: AlertEngine, sizes: list[int], t: float = 459, side: Side = Side.SELL) -> list[Alert]:
    """Red-burst alerts raised by prints of ``sizes`` at ``t``."""
    return [a for q in sizes for a in e.on_trade(sell(q, t, side=side)) if a.kind is AlertKind.RED_BURST]


def test_red_burst_needs_more_than_the_spike_threshold() -> None:
    e = engine()
    baseline(e)
    assert burst(e, [30]) == []  # exactly 3.0x the 10-per-window average: not "more than 300%"
    out = burst(e, [1])  # 31 -> 3.1x
    assert kinds(tuple(out)) == [AlertKind.RED_BURST]
    a = out[0]
    assert a.severity is Severity.WARNING and a.detail("ratio") == pytest.approx(3.1)
    assert a.detail("average") == pytest.approx(10.0) and a.detail("sell_volume") == 31


def test_red_burst_severity_escalates_above_the_red_burst_threshold_once() -> None:
    e = engine()
    baseline(e)
    assert kinds(tuple(burst(e, [31]))) == [AlertKind.RED_BURST]
    assert burst(e, [9]) == []  # 40 = exactly 4.0x: still WARNING, and within the cooldown
    out = burst(e, [1])  # 41 -> above 4.0x: CRITICAL, raised although within the cooldown
    assert len(out) == 1 and out[0].severity is Severity.CRITICAL
    assert burst(e, [20]) == []  # nothing higher than CRITICAL


def test_red_burst_needs_a_majority_of_sells() -> None:
    e = engine()
    baseline(e)
    assert burst(e, [20], side=Side.BUY) == []
    assert burst(e, [20]) == []  # 40 in the window, exactly half sold: not a majority
    assert kinds(tuple(burst(e, [1]))) == [AlertKind.RED_BURST]  # 21 of 41


def test_red_burst_cooldown_then_a_new_alert_while_the_burst_lasts() -> None:
    e = engine(burst_cooldown_seconds=30, red_burst_threshold=100)  # WARNING only
    baseline(e)
    assert len(burst(e, [35])) == 1
    assert burst(e, [5], t=470) == []  # 40 vs an average of 8 (baseline now (110, 410]): quiet
    assert len(burst(e, [5], t=489)) == 1  # 30 s after the alert, 45 vs 8: still a burst


def test_no_red_burst_before_a_full_baseline_or_against_a_zero_baseline() -> None:
    e = engine()
    e.on_trade(sell(10, 100, side=Side.BUY))
    assert burst(e, [500], t=458) == []  # the baseline (98, 398] started before the first print
    quiet = engine()
    quiet.on_trade(sell(1, 0))
    assert burst(quiet, [500], t=1000) == []  # nothing traded in the previous 5 minutes
    ok = engine()
    ok.on_trade(sell(10, 100, side=Side.BUY))
    assert kinds(tuple(burst(ok, [31], t=459))) == [AlertKind.RED_BURST]  # 359 s later: baseline complete


def test_thresholds_from_the_seed_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_FLOW_LARGE_ORDER_SIZE", "25")
    monkeypatch.setenv("ORDER_FLOW_VOLUME_SPIKE_THRESHOLD", "2.0")
    monkeypatch.setenv("ORDER_FLOW_RED_BURST_THRESHOLD", "5.0")
    monkeypatch.setenv("ORDER_FLOW_ALERT_WINDOW_SECONDS", "90")
    monkeypatch.setenv("ORDER_FLOW_MONITORING_MODE", "all")
    s = AlertSettings.from_settings(load_settings(_env_file=None), burst_window_seconds=30)
    assert s == AlertSettings(25, 2.0, 5.0, 90, "all", burst_window_seconds=30)
    e = AlertEngine(s)
    baseline(e)
    # W = 30 s: the window is (429, 459], the baseline (129, 429] holds 40 -> 4 per 30 s; 11 is 2.75x.
    out = burst(e, [11])
    assert len(out) == 1 and out[0].severity is Severity.WARNING and out[0].detail("ratio") == pytest.approx(2.75)
    with pytest.raises(ValueError):
        AlertSettings(volume_spike_threshold=0)
    with pytest.raises(ValueError):
        AlertSettings(large_order_size=0)


# --- scope -----------------------------------------------------------------------------------------


def test_positions_only_monitors_only_open_positions() -> None:
    e = AlertEngine(AlertSettings(large_order_size=10))  # default mode: positions_only
    assert not e.monitored("ES")
    assert e.on_trade(sell(50, 0)) == ()
    assert e.on_book(bid(50, 0)) == ()
    e.set_open_positions(["ESM5"])  # a contract code counts for its root
    assert e.monitored("ES")
    assert kinds(e.on_trade(sell(50, 1))) == [AlertKind.LARGE_SELLER]
    assert kinds(e.on_book(ask(50, 2))) == [AlertKind.LARGE_SELLER]  # a large offer already there is reported
    assert e.on_trade(sell(50, 1, symbol="NQ")) == ()
    e.close_position("ES")
    assert e.on_trade(sell(50, 3)) == ()
    e.open_position("NQ")
    assert kinds(e.on_trade(sell(50, 4, symbol="NQ"))) == [AlertKind.LARGE_SELLER]


def test_the_exit_signal_follows_the_position() -> None:
    """Large sellers threaten a long, large buyers a short; the other side is good news, not an alert."""
    e = AlertEngine(AlertSettings(large_order_size=10))
    e.open_position("ES", side=1)  # long
    assert e.on_trade(sell(50, 0, side=Side.BUY)) == () and e.on_book(bid(50, 0)) == ()
    out = [a for t in (1, 2, 3) for a in e.on_trade(sell(50, t))]
    assert kinds(tuple(out))[-1] is AlertKind.EXIT_SIGNAL and out[-1].detail("threatens") == "long"
    e.open_position("ES", side=-1)  # now short
    assert e.on_trade(sell(50, 10)) == () and e.on_book(ask(50, 10)) == ()
    out = [a for t in (11, 12) for a in e.on_trade(sell(50, t, side=Side.BUY))] + list(e.on_book(bid(60, 13)))
    assert [a.kind for a in out] == [AlertKind.LARGE_BUYER] * 3 + [AlertKind.EXIT_SIGNAL]
    assert out[-1].detail("threatens") == "short" and "for a short" in out[-1].reason


def test_all_mode_monitors_every_symbol() -> None:
    e = engine(large_order_size=10)
    assert kinds(e.on_trade(sell(10, 0, "NQ"))) == [AlertKind.LARGE_SELLER]
    assert kinds(e.on_trade(sell(10, 0, "CL"))) == [AlertKind.LARGE_SELLER]


def test_volume_is_tracked_before_a_position_opens_so_a_burst_is_judged_at_once() -> None:
    e = AlertEngine(AlertSettings())
    baseline(e)
    assert burst(e, [20]) == []  # not monitored
    e.open_position("ES")
    assert kinds(tuple(burst(e, [15]))) == [AlertKind.RED_BURST]


def test_unknown_symbol_is_counted_not_raised() -> None:
    e = engine()
    assert e.on_trade(sell(10_000, 0, "ZZZ")) == ()
    assert e.on_book(bid(10_000, 0, symbol="ZZZ")) == ()
    assert e.stats["unknown_symbol"] == 2 and e.threshold("ZZZ") is None and e.exit_signals("ZZZ") == 0


def test_alerts_are_logged_with_the_seed_grep_phrases() -> None:
    lines: list[tuple[str, dict[str, Any]]] = []

    class Log:
        def warning(self, event: str, **kw: Any) -> None:
            lines.append((event, kw))

    e = AlertEngine(AlertSettings(large_order_size=10, monitoring_mode="all"), logger=Log())
    for t in (0, 1, 2):
        e.on_trade(sell(10, t))
    assert [ev.split(":")[0] for ev, _ in lines] == ["Large seller detected"] * 3 + ["Exit signal for a long"]
    assert lines[-1][1]["kind"] == "exit_signal" and lines[-1][1]["symbol"] == "ES"


# --- real data -------------------------------------------------------------------------------------


def test_real_es_minute_alerts_match_the_sierra_export() -> None:
    """Real TBBO through converter and validator; counts checked against the Sierra text export."""
    src = pd.read_csv(SIERRA_TXT, sep=";")
    thr_print, thr_bid = 10, 30
    expected_prints = int(((src.TradeType == 1) & (src.Volume >= thr_print)).sum())

    def appearances(prices: str, sizes: str) -> int:
        n, large_px = 0, None
        for px, sz in zip(src[prices], src[sizes], strict=True):  # TBBO book = the BBO before each trade
            if sz >= thr_bid:
                if large_px != px:
                    n += 1
                large_px = px
            else:
                large_px = None
        return n

    expected_bids = appearances("BidPrice", "BidSize")
    expected_offers = appearances("AskPrice", "AskSize")

    def run(**kw: Any) -> list[Alert]:
        e = AlertEngine(AlertSettings(monitoring_mode="all", **kw))
        v = Validator(symbols=["ES"], clock=ManualClock(0), wall_clock_future=False)  # recorded data
        out: list[Alert] = []
        for raw in iter_store(db.DBNStore.from_file(SIERRA_TBBO)):
            ev = v.validate(raw)
            if isinstance(ev, Trade):
                out.extend(e.on_trade(ev))
            elif isinstance(ev, BookUpdate):
                out.extend(e.on_book(ev))
        return out

    prints = run(large_order_size=thr_print, book_resting_size=False)
    sellers = [a for a in prints if a.kind is AlertKind.LARGE_SELLER]
    assert expected_prints >= 3 and len(sellers) == expected_prints
    # The minute is shorter than the 120 s window and cooldown: one episode per side, one exit signal each
    # (all mode watches both: sellers threaten a long, buyers a short).
    buy_prints = int(((src.TradeType == 2) & (src.Volume >= thr_print)).sum())
    assert len([a for a in prints if a.kind is AlertKind.LARGE_BUYER]) == buy_prints
    threatens = [a.detail("threatens") for a in prints if a.kind is AlertKind.EXIT_SIGNAL]
    assert threatens.count("long") == 1 and threatens.count("short") == (1 if buy_prints >= 3 else 0)
    assert not any(a.kind is AlertKind.RED_BURST for a in prints)  # one minute of data: no 5-minute baseline
    book = run(large_order_size=thr_bid)
    resting_bids = [a for a in book if a.kind is AlertKind.LARGE_BUYER and a.detail("source") == "resting bid"]
    assert expected_bids > 0 and len(resting_bids) == expected_bids  # buyers, never sellers
    offers = [a for a in book if a.kind is AlertKind.LARGE_SELLER and a.detail("source") == "resting offer"]
    assert len(offers) == expected_offers
    assert not any(a.kind is AlertKind.LARGE_SELLER and a.detail("source") == "resting bid" for a in book)
