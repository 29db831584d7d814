"""The trading core: wall-clock jobs in a quiet market, and positions answered as of a decision time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tradebot.core.calendar import ET, to_ns
from tradebot.core.config import load_settings
from tradebot.core.orders import EntryType, OrderIntent
from tradebot.core.types import Side, SideRule, Trade
from tradebot.state.store import StateStore
from tradebot.trading import TradingCore


def t(ts: int, px: int, side: Side = Side.BUY) -> Trade:
    return Trade("MES", ts, ts, px, 1, side, SideRule.EXCHANGE, 0, "MESM5")


def core_with_open_long(tmp_path: Path) -> tuple[TradingCore, int]:
    settings = load_settings(_env_file=None).model_copy(update={"trading_symbol": "MES"})
    store = StateStore.open(tmp_path / "t.db", synchronous="OFF")
    core = TradingCore(settings, ["MES"], store)
    t0 = to_ns(dt.datetime(2025, 3, 11, 15, 0, tzinfo=ET))
    core.start(t0)
    core.on_event(t(t0, 23000))
    verdict = core.manager.on_intent(OrderIntent("sig-1", "MES", Side.BUY, 1, EntryType.MARKET, None, 22980, 23040,
                                                 t0 + 1, 0.8, "BUY_IMBALANCE"))
    assert verdict.taken
    core.on_event(t(t0 + 10**9, 23001))  # the market entry fills on the next print
    assert core.manager.ledger.position_qty("MES") == 1
    return core, t0


def test_quiet_market_is_flattened_by_the_wall_clock_job(tmp_path: Path) -> None:
    core, _ = core_with_open_long(tmp_path)
    before = to_ns(dt.datetime(2025, 3, 11, 15, 54, tzinfo=ET))
    core.on_time(before)
    assert core.manager.ledger.trading.auto_flatten_day is None
    after = to_ns(dt.datetime(2025, 3, 11, 15, 56, tzinfo=ET))
    core.on_time(after)  # no market event since 15:00: only the clock can do it
    assert core.manager.ledger.trading.auto_flatten_day == "2025-03-11"
    assert core.stats["job_auto_flatten"] == 1
    core.on_event(t(after + 10**9, 23005, Side.SELL))  # the flatten order fills on the next print
    assert core.manager.ledger.position_qty("MES") == 0
    (row,) = core.store.query("SELECT exit_reason FROM brackets")
    assert row["exit_reason"] == "auto_flatten"


def test_has_position_is_answered_as_of_the_decision_time(tmp_path: Path) -> None:
    core, t0 = core_with_open_long(tmp_path)
    assert core.has_position("MES") and core.has_position("ES")  # one position per contract family
    assert not core.has_position("NQ")
    assert not core.has_position("MES", asof_ns=t0 + 1)  # a decision at the bracket's own time: not yet open
    assert core.has_position("MES", asof_ns=t0 + 2)


def test_a_decision_sees_the_position_as_of_the_bar_end_even_if_the_closing_print_stopped_it(tmp_path: Path) -> None:
    """The print that closes a bar at T also fills the open bracket's stop: the broker sees it first, but the
    decision stamped T still sees the position (the state at T), exactly as a run cut just after T would."""
    core, t0 = core_with_open_long(tmp_path)
    bar_end = t0 + 300 * 10**9
    core.on_event(t(bar_end + 5, 22975, Side.SELL))  # through the 22980 stop: closed at bar_end + 5
    assert core.manager.ledger.position_qty("MES") == 0
    assert not core.has_position("MES")  # now: flat
    assert core.has_position("MES", asof_ns=bar_end)  # as of the bar's end: still long
    assert core.has_position("MES", asof_ns=bar_end + 5)  # the closing print's own time: not yet seen either
    assert not core.has_position("MES", asof_ns=bar_end + 6)


def test_a_replay_starting_exactly_at_the_1700_ct_open_sends_no_digest_for_the_previous_day(tmp_path: Path) -> None:
    settings = load_settings(_env_file=None).model_copy(update={"trading_symbol": "MES"})
    store = StateStore.open(tmp_path / "t.db", synchronous="OFF")
    core = TradingCore(settings, ["MES"], store)
    digests: list[dt.date] = []
    core.on_digest = lambda day, _at: digests.append(day)
    from tradebot.core.calendar import CT

    open_ = to_ns(dt.datetime(2025, 3, 11, 17, 0, tzinfo=CT))  # the 2025-03-12 session opens
    core.start(open_)
    for i in range(3):
        core.on_event(t(open_ + i * 10**9, 23000))
    assert digests == []  # not the 0-trade, starting-balance digest of 2025-03-11, a day this replay never saw
    end = to_ns(dt.datetime(2025, 3, 12, 16, 1, tzinfo=ET))
    core.on_event(t(end, 23000))
    assert digests == [dt.date(2025, 3, 12)]


def test_jobs_of_days_the_daemon_was_down_for_are_recorded_missed_once(tmp_path: Path) -> None:
    """Down from Tuesday 15:00 ET to Thursday 10:00 ET: Tuesday's flatten and digest and all of Wednesday's jobs
    are recorded missed, with one alert each, never run late; a second restart records nothing new."""
    core, _ = core_with_open_long(tmp_path)
    store = core.store
    thursday = to_ns(dt.datetime(2025, 3, 13, 10, 0, tzinfo=ET))
    for _ in range(2):
        again = TradingCore(core.settings, ["MES"], store)
        again.start(thursday)
        missed = store.query("SELECT name, trading_day FROM job_runs WHERE status = 'missed' "
                             "ORDER BY trading_day, name")
        assert [(r["name"], r["trading_day"]) for r in missed] == [
            ("auto_flatten", "2025-03-11"), ("daily_digest", "2025-03-11"),
            ("auto_flatten", "2025-03-12"), ("daily_digest", "2025-03-12"), ("margin_check", "2025-03-12")]
        alerts = store.query("SELECT json_extract(payload, '$.title') AS t FROM outbox WHERE kind = 'job_missed'")
        assert len(alerts) == 5 and alerts[0]["t"] == "Missed: auto_flatten for 2025-03-11"
    assert not store.query("SELECT 1 FROM journal WHERE kind = 'auto_flatten'")  # nothing ran late



def test_a_job_due_before_the_databases_first_start_is_never_reported_missed(tmp_path: Path) -> None:
    """A new install started at 10:00 ET owes nothing for a job due before that (here a digest stamped at the
    previous evening's open): the database did not exist then. Without this, first starts of a live daemon sent
    "Missed" alerts. A job due after the first start (the daemon was down) is still recorded missed, once."""
    settings = load_settings(_env_file=None).model_copy(update={"trading_symbol": "MES"})
    store = StateStore.open(tmp_path / "t.db", synchronous="OFF")
    core = TradingCore(settings, ["MES"], store)
    start = to_ns(dt.datetime(2025, 3, 11, 10, 0, tzinfo=ET))
    core.start(start)
    core.on_event(t(start + 10**9, 23000))
    assert store.query("SELECT trading_day FROM sessions") == [{"trading_day": "2025-03-11"}]
    evening_open = to_ns(dt.datetime(2025, 3, 10, 18, 0, tzinfo=ET))
    core._job_missed("daily_digest", dt.date(2025, 3, 11), evening_open, start + 2 * 10**9, "test")
    assert store.query("SELECT 1 FROM job_runs WHERE status = 'missed'") == []
    assert store.query("SELECT 1 FROM outbox WHERE kind = 'job_missed'") == []
    assert core.stats["jobs_before_history"] == 1
    flatten = to_ns(dt.datetime(2025, 3, 11, 15, 55, tzinfo=ET))
    core._job_missed("auto_flatten", dt.date(2025, 3, 11), flatten, flatten + 10**9, "test")
    assert [r["name"] for r in store.query("SELECT name FROM job_runs WHERE status = 'missed'")] == ["auto_flatten"]
    assert len(store.query("SELECT 1 FROM outbox WHERE kind = 'job_missed'")) == 1
