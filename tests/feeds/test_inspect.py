"""``tradebot data inspect`` through the real CLI entry point, numbers checked against the files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import databento as db
import databento_dbn as dbn
import pytest
import zstandard

from tradebot.cli import main
from tradebot.core.logging import configure_logging
from tradebot.feeds.inspect import CurrentStderr

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
REAL_TBBO = DATA / "real" / "ES_2022-01-24_sierra.tbbo.dbn.zst"
REAL_MBP10 = DATA / "real" / "ES_2022-01-24_sierra.mbp-10.dbn.zst"
SIERRA = DATA / "sierra" / "ES_2022-01-24_tick_dom40.txt"
LIVE = DATA / "databento" / "LIVE" / "test_data.live.dbn.zst"
XNAS_TRADES = DATA / "databento" / "XNAS.ITCH" / "test_data.trades.dbn.zst"
GLBX_DEF = DATA / "databento" / "GLBX.MDP3" / "test_data.definition.dbn.zst"


@pytest.fixture(autouse=True)
def _logs_to_current_stderr() -> None:
    """Other tests may leave structlog bound to a closed capture stream; these log on damaged input."""
    configure_logging("INFO", "console", stream=CurrentStderr())


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--env-file", str(tmp_path / "absent.env"), "data", "inspect", *args])
    out, err = capsys.readouterr()
    return code, out, err


def inspect_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], *files: Path) -> list[dict[str, Any]]:
    code, out, _ = run(tmp_path, capsys, *map(str, files), "--json")
    assert code == 0
    reports: list[dict[str, Any]] = json.loads(out)["files"]
    return reports


def side_volumes(path: Path) -> dict[str, list[int]]:
    out = {"buy": [0, 0], "sell": [0, 0], "unknown": [0, 0]}
    for r in db.DBNStore.from_file(path):
        key = {"B": "buy", "A": "sell"}.get(str(r.side), "unknown")
        out[key][0] += 1
        out[key][1] += r.size
    return out


def test_tbbo_report_matches_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (rep,) = inspect_json(tmp_path, capsys, REAL_TBBO)
    src = list(db.DBNStore.from_file(REAL_TBBO))
    assert rep["format"] == "dbn" and rep["schema"] == "tbbo" and rep["dataset"] == "GLBX.MDP3"
    assert rep["instruments"] == {"1": "ESH2"}
    assert rep["records"] == {"MBP1Msg": len(src)}
    assert rep["events"] == {"book": len(src), "trade": len(src)}
    sides = side_volumes(REAL_TBBO)
    for key, (count, volume) in sides.items():
        assert rep["trades"][key] == {"count": count, "volume": volume}
    assert rep["trades"]["count"] == len(src) and rep["trades"]["volume"] == sum(r.size for r in src)
    tr = rep["time_range"]
    assert tr["start_ns"] == min(r.ts_event for r in src) and tr["end_ns"] == max(r.ts_event for r in src)
    assert tr["start_utc"] == "2022-01-24T19:30:00.005000000Z"
    assert tr["timezone"] == "America/Chicago" and tr["start_local"] == "2022-01-24T13:30:00.005000000-06:00"
    assert rep["book"] == {"levels": 1, "max_filled_levels": 1}
    assert rep["validation"] == {"accepted": 2 * len(src), "rejected": 0, "rejects": {}}
    assert rep["errors"] == []


def test_sierra_text_report_agrees_with_its_dbn_conversion(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    csv_rep, mbp_rep = inspect_json(tmp_path, capsys, SIERRA, REAL_MBP10)
    assert csv_rep["format"] == "csv" and csv_rep["schema"] == "sierra-chart-ticks" and csv_rep["symbol"] == "ES"
    assert csv_rep["trades"] == mbp_rep["trades"]
    assert csv_rep["time_range"] == mbp_rep["time_range"]
    assert csv_rep["book"] == mbp_rep["book"] == {"levels": 10, "max_filled_levels": 10}
    assert csv_rep["records"] == {"rows": len(SIERRA.read_text().splitlines()) - 1, "malformed_rows": 0}
    assert csv_rep["validation"]["rejected"] == 0


def test_symbol_option_names_a_text_file_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(tmp_path, capsys, str(SIERRA), "--symbol", "ESH2", "--json")
    assert code == 0 and json.loads(out)["files"][0]["instruments"] == {"0": "ESH2"}


def test_mixed_live_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (rep,) = inspect_json(tmp_path, capsys, LIVE)
    src = list(db.DBNStore.from_file(LIVE))
    assert rep["schema"] == "mixed"
    assert rep["records"] == dict(Counter(type(r).__name__ for r in src))
    assert rep["instruments"] == {"183748": "ESZ4"}
    assert rep["trades"]["count"] == sum(isinstance(r, dbn.TradeMsg) for r in src)
    assert rep["trades_from_book"] is False
    assert rep["book"]["levels"] == 10  # the capture includes MBP-10
    # The capture's records are not in time order; validation says so instead of hiding it.
    assert rep["validation"]["rejects"].get("out_of_order", 0) == rep["validation"]["rejected"] > 0


def test_equities_unknown_side_and_rejections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (rep,) = inspect_json(tmp_path, capsys, XNAS_TRADES)
    sides = side_volumes(XNAS_TRADES)
    assert rep["trades"]["unknown"] == {"count": sides["unknown"][0], "volume": sides["unknown"][1]} != {
        "count": 0, "volume": 0}
    assert rep["time_range"]["timezone"] == "America/New_York"
    # The XNAS tickers are registered from the dataset: every print accepted, the one without a side (N) inferred
    assert rep["validation"]["rejected"] == 0 and rep["validation"]["accepted"] == rep["trades"]["count"]
    rules = rep["side_rules"]
    assert rules["exchange"] == sides["buy"][0] + sides["sell"][0]
    assert rules["tick"] + rules["none"] == sides["unknown"][0] and rules["quote"] == 0  # no book in a trades file


def test_definition_file_lists_instruments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (rep,) = inspect_json(tmp_path, capsys, GLBX_DEF)
    assert rep["schema"] == "definition" and rep["instruments"] == {"5482": "ESH1"}
    assert rep["events"] == {} and rep["time_range"]["start_utc"].startswith("2020-12-27T17:05:15.926494829")


def test_table_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(tmp_path, capsys, str(REAL_TBBO))
    assert code == 0
    assert "schema tbbo, dataset GLBX.MDP3" in out
    assert "1 -> ESH2" in out
    buy = side_volumes(REAL_TBBO)["buy"]
    assert f"buy {buy[0]:,} ({buy[1]:,} lots)" in out
    assert "2022-01-24T13:30:00.005000000-06:00" in out and "accepted 4,052, rejected 0" in out


def test_missing_and_unsupported_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(tmp_path, capsys, str(tmp_path / "nope.dbn.zst"))
    assert code == 2 and "no such file" in err and out == ""
    code, out, err = run(tmp_path, capsys, str(DATA / "sierra" / "ESU24_5m_bars.txt"))
    assert code == 0 and "text bars with bid/ask volume" in out  # bar exports are read (tradebot.feeds.bars)
    weird = tmp_path / "data.parquet"
    weird.write_bytes(b"PAR1....")
    code, _, err = run(tmp_path, capsys, str(weird))
    assert code == 2 and "unsupported file type" in err
    garbage = tmp_path / "bad.dbn"
    garbage.write_bytes(b"\x00" * 100)
    code, _, err = run(tmp_path, capsys, str(garbage))
    assert code == 2 and "not a readable DBN file" in err


def test_damaged_file_reports_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with REAL_TBBO.open("rb") as fh:
        data = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()
    cut = tmp_path / "cut.dbn"
    cut.write_bytes(data[: len(data) - 30])
    code, out, err = run(tmp_path, capsys, str(cut), "--json")
    assert code == 1
    (rep,) = json.loads(out)["files"]  # stdout stays one JSON document; the log line goes to stderr
    assert rep["errors"] and "truncated" in rep["errors"][0]
    assert rep["trades"]["count"] == len(list(db.DBNStore.from_file(REAL_TBBO))) - 1
    assert "truncated" in err
