"""Operator commands (status, trades, signals, stats) over a real state database, daemon stopped."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest

from support.exec_helpers import T0, S, System, intent, scenario, scenario_settings, settings, trade
from tradebot.core.config import Settings
from tradebot.execution.model import HaltKind
from tradebot.execution.status import (
    add_state_commands,
    db_path,
    signals_command,
    stats_command,
    status_command,
    trades_command,
)


def cfg_for(tmp_path: Path, base: Settings | None = None) -> Settings:
    base = base or scenario_settings()
    return base.model_copy(update={"data_dir": tmp_path})


def heartbeat(tmp_path: Path, age_s: float = 1.0, feed: str = "streaming") -> None:
    ts = time.time_ns() - int(age_s * 1e9)
    (tmp_path / "heartbeat.json").write_text(json.dumps({"ts_ns": ts, "feed_state": feed}))


def args(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**{"json": False, "today": False, "days": 0, "limit": 20, **kw})


@pytest.fixture
def scripted(tmp_path: Path) -> Settings:
    cfg = cfg_for(tmp_path)
    s = System(db_path(cfg), cfg, synchronous="OFF")
    for _, _, action in scenario():
        action(s.manager)
    s.close()
    return cfg


def test_parser_registration() -> None:
    parser = argparse.ArgumentParser()
    add_state_commands(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["status", "--json"])
    assert ns.handler is status_command and ns.json
    ns = parser.parse_args(["trades", "--days", "3"])
    assert ns.handler is trades_command and ns.days == 3 and not ns.today
    assert parser.parse_args(["trades", "--today"]).today
    with pytest.raises(SystemExit):
        parser.parse_args(["trades", "--today", "--days", "2"])
    assert parser.parse_args(["signals", "--limit", "5"]).limit == 5
    assert parser.parse_args(["stats"]).handler is stats_command


def test_status_open_position_with_stop_target_and_open_pnl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cfg_for(tmp_path, settings())
    s = System(db_path(cfg), cfg)
    s.manager.on_market_event(trade(1, 1000))
    s.manager.on_intent(intent(2, stop=992, target=1016))
    s.manager.on_market_event(trade(3, 1001))
    s.manager.on_market_event(trade(4, 1005))
    s.manager.flush_marks()
    s.close()
    heartbeat(tmp_path)
    before = db_path(cfg).read_bytes()
    assert status_command(args(), cfg) == 0
    out = capsys.readouterr().out
    assert "mode        paper" in out and "ACTIVE" in out
    assert "ES   long  1 @ 250.25  stop 248.00  target 254.00  [filled]  open P&L $50.00" in out
    assert "feed streaming" in out and "health      OK" in out
    assert status_command(args(json=True), cfg) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["positions"][0]["unrealized_cents"] == 4 * 1250 and st["today"]["commission_cents"] == 190
    assert st["today"]["net_cents"] == -190 and st["healthy"] is True
    assert db_path(cfg).read_bytes() == before  # read-only: the database is not touched


def test_status_unhealthy_without_or_with_a_stale_heartbeat(scripted: Settings,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert status_command(args(), scripted) == 1
    assert "UNHEALTHY: no heartbeat" in capsys.readouterr().out
    heartbeat(scripted.data_dir, age_s=3600)
    assert status_command(args(json=True), scripted) == 1
    st = json.loads(capsys.readouterr().out)
    assert st["problems"] == ["stale heartbeat (3600s old)"]
    assert st["trading"]["state"] == "reducing" and st["session"]["trading_day"] == "2025-03-11"
    (scripted.data_dir / "heartbeat.json").write_text("{not json")
    assert status_command(args(), scripted) == 1
    assert "heartbeat unreadable" in capsys.readouterr().out


def test_status_unhealthy_when_halted_by_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cfg_for(tmp_path, settings())
    s = System(db_path(cfg), cfg)
    s.manager.on_market_event(trade(1, 1000))
    s.manager.halt("broker mismatch", T0 + 2 * S, kind=HaltKind.ERROR)
    s.close()
    heartbeat(tmp_path)
    assert status_command(args(), cfg) == 1
    out = capsys.readouterr().out
    assert "HALTED (error): broker mismatch" in out and "halted by error" in out


def test_status_without_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cfg_for(tmp_path)
    assert status_command(args(), cfg) == 2
    out = capsys.readouterr().out
    assert "no state database" in out and "no heartbeat" in out
    assert not db_path(cfg).exists()
    assert trades_command(args(), cfg) == 2 and signals_command(args(), cfg) == 2 and stats_command(args(), cfg) == 2


def test_trades_today_days_and_all(scripted: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert trades_command(args(json=True, today=True), scripted) == 0
    today = json.loads(capsys.readouterr().out)
    assert [t["reason"] for t in today] == ["auto_flatten"] and today[0]["trading_day"] == "2025-03-11"
    assert (today[0]["entry"], today[0]["exit"], today[0]["net_cents"]) == ("249.50", "250.75", 5 * 1250 - 380)
    assert trades_command(args(json=True, days=2), scripted) == 0
    two = json.loads(capsys.readouterr().out)
    assert [t["reason"] for t in two] == ["auto_flatten", "loss_limit", "exit_signal", "stop", "target"]
    assert trades_command(args(), scripted) == 0
    out = capsys.readouterr().out
    assert "5 trades, net -$205.40" in out and "stop (SCRIPT)" in out


def test_signals_lists_verdicts_with_reasons(scripted: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert signals_command(args(json=True, limit=3), scripted) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3
    assert rows[0]["verdict"] == "rejected" and rows[0]["reason"].startswith("trading reducing")
    assert rows[1]["verdict"] == "taken" and rows[1]["traded_symbol"] == "ES" and rows[1]["entry"] == "249.50"
    assert signals_command(args(limit=50), scripted) == 0
    out = capsys.readouterr().out
    assert out.count("taken 1 ES") == 3 and "rejected: trading halted: operator check" in out


def test_stats_over_the_recorded_days(scripted: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert stats_command(args(json=True), scripted) == 0
    st = json.loads(capsys.readouterr().out)
    nets = [22500 - 760, -37500 - 1140, 3750 - 380, -12500 - 380, 6250 - 380]
    assert (st["days"], st["trades"], st["wins"], st["losses"]) == (2, 5, 3, 2)
    assert st["net_cents"] == sum(nets) == -20540
    wins, losses = sum(n for n in nets if n > 0), -sum(n for n in nets if n < 0)
    assert st["profit_factor"] == round(wins / losses, 2)
    # Closed-trade equity 0, 21740, -16900, -13530, -26410, -20540: peak 21740 to trough -26410 (day 1 alone);
    # on end-of-day balances (0, -26410, -20540) the fall is 26410.
    assert st["max_drawdown_cents"] == 21740 + 26410 and st["max_daily_drawdown_cents"] == 26410
    assert st["max_consecutive_losses"] == 1 and st["scratches"] == 0
    assert st["by_pattern"]["SCRIPT"]["trades"] == 5
    assert stats_command(args(), scripted) == 0
    assert "days 2 (1 winning)   trades 5   win rate 60%" in capsys.readouterr().out
