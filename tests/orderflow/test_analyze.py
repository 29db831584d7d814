"""``tradebot analyze`` on the real files: identical footprints through every path, every output form."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pandas as pd
import pytest

from tradebot.analyze import AnalyzeResult, run_file
from tradebot.cli import main
from tradebot.core.config import load_settings
from tradebot.orderflow.events import Pattern

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TBBO = DATA / "real" / "ES_2022-01-24_sierra.tbbo.dbn.zst"
MBP10 = DATA / "real" / "ES_2022-01-24_sierra.mbp-10.dbn.zst"
SIERRA = DATA / "sierra" / "ES_2022-01-24_tick_dom40.txt"


def analyze(path: Path, bar_seconds: int = 15) -> AnalyzeResult:
    s = load_settings()
    s = s.model_copy(update={"footprint": s.footprint.model_copy(update={"bar_seconds": bar_seconds})})
    return asyncio.run(run_file([path], s, symbol="ES"))


def footprints(res: AnalyzeResult) -> list[tuple[object, ...]]:
    assert res.chosen is not None
    return [(bc.bar.start_ns, bc.bar.open, bc.bar.high, bc.bar.low, bc.bar.close, bc.bar.poc, bc.bar.delta,
             tuple((lv.price, lv.bid, lv.ask, lv.trades) for lv in bc.bar.levels),
             tuple((p.pattern, p.direction, p.prices) for p in bc.patterns)) for bc in res.chosen.bars]


def input_side_volumes() -> tuple[int, int]:
    """Straight from the Sierra text: trade type 2 = at ask (buy aggressor), 1 = at bid."""
    df = pd.read_csv(SIERRA, sep=";", skipinitialspace=True)
    df.columns = [c.strip() for c in df.columns]
    type_col = next(c for c in df.columns if c.lower().replace(" ", "") in ("tradetype", "type"))
    vol_col = next(c for c in df.columns if c.lower() in ("volume", "size", "qty"))
    buys = int(df.loc[df[type_col] == 2, vol_col].sum())
    sells = int(df.loc[df[type_col] == 1, vol_col].sum())
    return buys, sells


@pytest.fixture(scope="module")
def tbbo() -> AnalyzeResult:
    return analyze(TBBO)


def test_three_paths_give_identical_footprints(tbbo: AnalyzeResult) -> None:
    fp = footprints(tbbo)
    assert len(fp) >= 4
    assert footprints(analyze(MBP10)) == fp
    assert footprints(analyze(SIERRA)) == fp


def test_volumes_by_side_sum_to_the_input(tbbo: AnalyzeResult) -> None:
    assert tbbo.chosen is not None
    bars = [bc.bar for bc in tbbo.chosen.bars]
    buys, sells = input_side_volumes()
    assert sum(b.ask_volume for b in bars) == buys
    assert sum(b.bid_volume for b in bars) == sells
    assert sum(b.volume for b in bars) == buys + sells
    assert bars[-1].cum_delta == buys - sells == tbbo.chosen.engine.footprint.cum_delta
    assert tbbo.validator.total_rejects == 0


def test_json_output_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(TBBO), "--bar-seconds", "20", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["symbol"] == "ES" and doc["contract"] == "ESH2"
    b0 = doc["bars"][0]
    assert set(b0) >= {"start_ns", "open", "high", "low", "close", "volume", "delta", "poc", "levels", "patterns"}
    assert all(isinstance(lv["price"], float) and (lv["price"] * 4).is_integer() for lv in b0["levels"])
    level_total = sum(lv["bid"] + lv["ask"] for b in doc["bars"] for lv in b["levels"])
    assert level_total == sum(b["volume"] for b in doc["bars"])
    prof = doc["profile"]
    assert prof["val"] <= prof["poc"] <= prof["vah"]
    assert doc["microstructure"]["book_available"] is True and doc["microstructure"]["spread_ticks"] >= 1


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(SIERRA), "--symbol", "ES", "--bar-seconds", "30"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ES (") and "session profile: POC" in out and "validation:" in out


def test_features_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    feat, png = tmp_path / "f.parquet", tmp_path / "fp.png"
    assert main(["analyze", str(MBP10), "--bar-seconds", "10", "--features", str(feat), "--plot", str(png)]) == 0
    df = pd.read_parquet(feat)
    for col in ("order_imbalance", "bid_depth", "ask_depth", "spread_bps", "depth_imbalance", "ofi", "delta", "cvd"):
        assert col in df.columns
    assert {f"pat_{p.value.lower()}" for p in Pattern} <= set(df.columns)
    assert df["bid_depth"].notna().all() and (df["spread_bps"] > 0).all()
    assert int(df["delta"].sum()) == int(df["cvd"].iloc[-1])
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "/nonexistent.dbn"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_an_equity_file_has_nothing_to_analyze_and_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    res = analyze(DATA / "databento" / "XNAS.ITCH" / "test_data.trades.dbn.zst")
    assert res.chosen is None and res.validator.rejects["unknown_instrument"] > 0
