"""Replay parity with the batch backtest, the Dask path, sweeps, summaries, stress and the report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tradebot.backtest.cli import find_days
from tradebot.backtest.db import BacktestDB
from tradebot.backtest.overrides import apply_overrides, grid_combinations, parse_pairs
from tradebot.backtest.runner import DayTask, run_day
from tradebot.cli import main
from tradebot.core.config import ConfigError, load_settings
from tradebot.execution.trades import TradeRecord, trade_hash

SEED_VARS = ("TRADING_MODE", "TRADING_SYMBOL", "DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY", "POLYGON_API_KEY")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
    env.update({"TRADEBOT_LOG_LEVEL": "WARNING", **extra})
    return env


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cat")
    r = subprocess.run([sys.executable, "-m", "tradebot", "data", "synth", "--days", "3", "--out", str(out),
                        "--symbol", "ES", "--trades-per-day", "15000", "--seed", "11", "--start", "2025-03-10"],
                       capture_output=True, text=True, timeout=300, env=clean_env())
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("TRADEBOT_") or k in SEED_VARS:
            monkeypatch.delenv(k)
    monkeypatch.setenv("TRADEBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TRADEBOT_LOG_LEVEL", "WARNING")
    monkeypatch.chdir(tmp_path)


def test_find_days_in_the_catalog(catalog: Path) -> None:
    days = find_days(catalog, "ES", None, None)
    assert [d.isoformat() for d in days] == ["2025-03-10", "2025-03-11", "2025-03-12"]
    assert find_days(catalog, "NQ", None, None) == {}
    import datetime as dt

    assert list(find_days(catalog, "ES", dt.date(2025, 3, 11), dt.date(2025, 3, 11))) == [dt.date(2025, 3, 11)]


def test_replay_through_the_daemon_equals_the_batch_backtest(catalog: Path, tmp_path: Path) -> None:
    day = next(iter(find_days(catalog, "ES", None, None).values()))
    r = subprocess.run([sys.executable, "-m", "tradebot", "replay", "--input", str(day), "--symbol", "ES"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env=clean_env(TRADEBOT_DATA_DIR=str(tmp_path / "replay")))
    assert r.returncode == 0, r.stderr[-3000:]
    m = re.search(r"replay: (\d+) trades, net .* trade hash ([0-9a-f]{64})", r.stdout)
    assert m, r.stdout[-2000:]
    n_replay, replay_hash = int(m.group(1)), m.group(2)
    res = run_day(DayTask("x", (str(day),), "ES", load_settings()))
    assert res.error is None
    trades = [TradeRecord.from_dict(t) for t in res.combos[0].trades]
    assert n_replay == len(trades) >= 1
    assert trade_hash(trades) == replay_hash


def test_chained_backtest_equals_a_multi_day_replay_trade_for_trade(catalog: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The headline backtest is the daemon running through the days: same trades as `tradebot replay` of all
    the files at once (balance, tier, strategy state and daily limits carried from day to day)."""
    files = [str(p) for p in find_days(catalog, "ES", None, None).values()]
    r = subprocess.run([sys.executable, "-m", "tradebot", "replay", "--input", *files, "--symbol", "ES"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env=clean_env(TRADEBOT_DATA_DIR=str(tmp_path / "replay")))
    assert r.returncode == 0, r.stderr[-3000:]
    m = re.search(r"replay: (\d+) trades, net .* trade hash ([0-9a-f]{64})", r.stdout)
    assert m, r.stdout[-2000:]
    assert main(["backtest", "--data", str(catalog), "--symbol", "ES", "--json", "--no-report"]) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out.strip().splitlines()[-1])
    assert doc["mode"] == "chained" and "(chained days)" in out.err
    db = BacktestDB(tmp_path / "data" / "backtests.db")
    run = db.run(doc["run_id"])
    trades = db.trades(doc["run_id"])
    db.close()
    assert run is not None and "(chained days)" in run["name"]
    assert len(trades) == int(m.group(1)) >= 2 and run["trade_hash"] == trade_hash(trades) == m.group(2)
    assert {d["day"] for d in doc["daily"]} == {"2025-03-10", "2025-03-11", "2025-03-12"}
    # The tiers the trades used, from the run's journal: the starting balance's Tier 1 (MES) on every day here.
    assert [d["tier"] for d in doc["daily"]] == [1, 1, 1] and {t.symbol for t in trades} == {"MES"}
    # The named variant: every day on its own (equal to single-day replays), said so in the report; with tiers
    # off the report names no tier (not "MES Building" for ES trades).
    assert main(["backtest", "--data", str(catalog), "--symbol", "ES", "--json", "--no-report", "--mode",
                 "independent", "--set", "execution.tiers_enabled=false"]) == 0
    out = capsys.readouterr()
    ind = json.loads(out.out.strip().splitlines()[-1])
    assert ind["mode"] == "independent" and "(independent days)" in out.err
    assert ind["tier_changes"] == [] and [d["tier"] for d in ind["daily"]] == [0, 0, 0]


def test_backtest_local_run_summary_stress_and_report(catalog: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", "--data", str(catalog), "--symbol", "ES", "--json", "--footprints", "1"]) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out.strip().splitlines()[-1])
    run_id = doc["run_id"]
    assert doc["trades"] >= 1 and "report:" in out.err
    reports = list((tmp_path / "data" / "reports" / run_id).glob("*.html"))
    assert reports and "data:image/png;base64," in reports[0].read_text()
    assert list((tmp_path / "data" / "reports" / run_id).glob("footprint-*.png"))
    db = BacktestDB(tmp_path / "data" / "backtests.db")
    run = db.run(None)
    assert run is not None and run["run_id"] == run_id and run["days"] == 3
    row = db.conn.execute("SELECT code_version, data_fingerprint, config FROM runs").fetchone()
    assert row[0].startswith("0.1.0") and len(row[1]) == 64 and json.loads(row[2])["trading_symbol"] == "MES"
    assert db.conn.execute("SELECT count(*) FROM daily WHERE run_id = ?", (run_id,)).fetchone()[0] == 3
    db.close()
    assert main(["backtest", "summary", "--json"]) == 0
    summ = json.loads(capsys.readouterr().out)
    assert summ["run_id"] == run_id and summ["trades"] == doc["trades"]
    code = main(["backtest", "stress", run_id[:10], "--json"])
    stress = json.loads(capsys.readouterr().out)
    assert code == (0 if stress["passed"] else 1)
    assert stress["monte_carlo"]["runs"] == 1000 and [s["ticks"] for s in stress["slippage"]] == [1, 2]
    assert main(["backtest", "stress", "--monte-carlo", "200"]) in (0, 1)
    assert "Monte Carlo (200 orderings)" in capsys.readouterr().out


def test_backtest_on_a_dask_local_cluster_gives_the_same_trades(catalog: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from distributed import LocalCluster

    assert main(["backtest", "--data", str(catalog), "--symbol", "ES", "--workers", "1", "--no-report",
                 "--json", "--name", "local"]) == 0
    local = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert main(["backtest", "--data", str(catalog), "--symbol", "ES", "--scheduler", cluster.scheduler_address,
                     "--no-report", "--json", "--name", "dask"]) == 0
    dask = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    db = BacktestDB(tmp_path / "data" / "backtests.db")
    hashes = {r["name"]: r["trade_hash"] for r in db.runs()}
    db.close()
    assert hashes["local"] == hashes["dask"] and local["net_pnl_cents"] == dask["net_pnl_cents"]


def test_grid_sweep_runs_every_combination(catalog: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["backtest", "--data", str(catalog), "--symbol", "ES", "--start", "2025-03-10", "--end",
                 "2025-03-10", "--grid", "router.risk_reward=1.5,3", "--grid", "min_confidence=0.6,0.9",
                 "--no-report"]) == 0
    out = capsys.readouterr().out
    assert out.count('"router.risk_reward"') == 4
    db = BacktestDB(tmp_path / "data" / "backtests.db")
    params = [json.loads(r["params"]) for r in db.runs()]
    db.close()
    assert {(p["router.risk_reward"], p["min_confidence"]) for p in params} == {
        ("1.5", "0.6"), ("1.5", "0.9"), ("3", "0.6"), ("3", "0.9")}


def test_overrides_are_validated() -> None:
    s = load_settings()
    t = apply_overrides(s, parse_pairs(["router.risk_reward=3", "MIN_CONFIDENCE=0.7",
                                        "TRADEBOT_FOOTPRINT__BAR_SECONDS=60"]))
    assert (t.router.risk_reward, t.min_confidence, t.footprint.bar_seconds) == (3.0, 0.7, 60)
    for bad in (["router.risk_reward=abc"], ["nosuch=1"], ["router.nosuch=1"], ["novalue"]):
        with pytest.raises(ConfigError):
            apply_overrides(s, parse_pairs(bad))
    assert grid_combinations([]) == [{}]
    assert len(grid_combinations(["a=1,2,3", "b=x,y"])) == 6


def test_backtest_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str], catalog: Path) -> None:
    assert main(["backtest"]) == 2
    assert "--data DIR is required" in capsys.readouterr().err
    assert main(["backtest", "--data", str(tmp_path)]) == 2
    assert "no MES day files" in capsys.readouterr().err
    assert main(["backtest", "--data", str(catalog), "--symbol", "ES", "--set", "router.risk_reward=x"]) == 2
    assert "risk_reward" in capsys.readouterr().err
    assert main(["backtest", "summary", "nope"]) == 2


def test_fast_and_event_engines_store_the_same_trades(catalog: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    for engine in ("event", "fast"):
        assert main(["backtest", "--data", str(catalog), "--symbol", "ES", "--engine", engine, "--no-report",
                     "--name", engine, "--workers", "1"]) == 0
    capsys.readouterr()
    db = BacktestDB(tmp_path / "data" / "backtests.db")
    hashes = {r["name"]: r["trade_hash"] for r in db.runs()}
    counts = {r["name"]: json.loads(r["summary"])["trades"] for r in db.runs()}
    db.close()
    assert hashes["event"] == hashes["fast"] and counts["fast"] >= 1
