"""The shadow model in the daemon process: ``tradebot run --mode live`` (the scripted live broker, filling by the
paper rules) records every order leg beside the model's fill of it; on the same rules live equals model."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tradebot.execution.shadow import compare, leg_slippage
from tradebot.ops.digest import digest_data, digest_notification
from tradebot.state.store import StateStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def day_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    r = subprocess.run([sys.executable, "-m", "tradebot", "data", "synth", "--days", "1", "--out", str(out),
                        "--symbol", "ES", "--trades-per-day", "12000", "--seed", "3", "--start", "2025-03-11"],
                       capture_output=True, text=True, timeout=300, env=env | {"TRADEBOT_DATA_DIR": str(out / "d")})
    assert r.returncode == 0, r.stderr
    (path,) = list(out.rglob("*.dbn.zst"))
    return path


def test_live_daemon_records_every_leg_beside_the_model(tmp_path: Path, day_file: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TRADEBOT_") and k not in ("TRADING_MODE", "TRADING_BROKER", "DISCORD_WEBHOOK_URL")}
    env.update({"TRADEBOT_DATA_DIR": str(tmp_path / "data"), "TRADEBOT_LOG_LEVEL": "WARNING",
                "TRADEBOT_DAEMON__HEARTBEAT_SECONDS": "0.5", "TRADEBOT_TEST_BROKER": json.dumps({}),
                "TRADEBOT_EXECUTION__CONNECT_BACKOFF_MAX_SECONDS": "0.2"})
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "support" / "live_tradebot.py"), "run", "--mode", "live",
                        "--broker", "projectx", "--feed", "replay", "--input", str(day_file), "--symbol", "ES",
                        "--speed", "0", "--timeframe", "60"], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    store = StateStore.open(tmp_path / "data" / "tradebot-live.db", mode="live", readonly=True)
    try:
        legs = store.shadow_legs("2025-03-11")
        orders = store.query("SELECT client_order_id FROM orders")
        fills = store.query("SELECT client_order_id, price, quantity FROM fills")
        data = digest_data(store, dt.date(2025, 3, 11))
    finally:
        store.close()
    assert fills, "the day must trade for the comparison to mean something"
    assert {leg["client_order_id"] for leg in legs} == {o["client_order_id"] for o in orders}
    by_id = {leg["client_order_id"]: leg for leg in legs}
    for f in fills:
        leg = by_id[f["client_order_id"]]
        assert leg["live_qty"] > 0 and leg["submit_ns"] >= 0 and leg["fill_ns"] is not None
        assert leg_slippage(leg) == (0, 0), leg  # the same rules live and in the model: no slippage
    c = compare(legs)
    assert c["live_trades"] == c["model_trades"] > 0 and c["live_pnl_cents"] == c["model_pnl_cents"]
    fields = dict(digest_notification(data, dt.date(2025, 3, 11), 0).fields)
    assert fields["Slippage vs model"].startswith("mean +0 ticks, worst +0 ticks")
