"""``tradebot data synth``: synthetic days as real DBN files in the catalog layout, read back like vendor data."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import databento as db
import databento_dbn as dbn
import pytest
import zstandard

from tradebot.core.calendar import calendar_for
from tradebot.core.config import SimSettings, load_settings
from tradebot.core.contracts import spec_for
from tradebot.core.logging import configure_logging
from tradebot.core.types import FeedStatus, RawBook, RawTrade, Side
from tradebot.feeds.catalog import Catalog
from tradebot.feeds.dbn_files import DbnFileFeed
from tradebot.feeds.dbn_write import (
    DbnScanError,
    empty_records,
    metadata_bytes,
    read_all,
    scan_dbn,
    write_dbn,
)
from tradebot.feeds.fetch import add_data_commands
from tradebot.feeds.inspect import CurrentStderr, inspect_command
from tradebot.feeds.simulated import SimulatedMarket
from tradebot.feeds.synth import instrument_id_for, synthesize
from tradebot.feeds.validation import Validator

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
REAL_TBBO = DATA / "databento" / "GLBX.MDP3" / "test_data.tbbo.dbn.zst"
XMAS_EVE = dt.date(2024, 12, 24)  # early close, then Christmas (closed), then a weekend
TRADES = 3000


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data").add_subparsers(dest="data_cmd", required=True)
    add_data_commands(data)
    return p.parse_args(["data", *argv])


def settings() -> Any:
    return load_settings(_env_file=None)


async def replay(paths: list[Path], schema: str | None = None) -> tuple[list[RawTrade], list[RawBook], Validator]:
    feed = DbnFileFeed(paths, schema=schema)
    v = Validator()
    trades: list[RawTrade] = []
    books: list[RawBook] = []
    async for ev in feed:
        if isinstance(ev, FeedStatus):
            continue
        assert v.validate(ev) is not None, (ev, dict(v.rejects))
        if isinstance(ev, RawTrade):
            trades.append(ev)
        elif isinstance(ev, RawBook):
            books.append(ev)
    return trades, books, v


@pytest.fixture(scope="module")
def tbbo_days(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    out = tmp_path_factory.mktemp("synth")
    return synthesize(out, symbol="ES", days=4, start=XMAS_EVE, trades_per_day=TRADES, seed=11, schema="tbbo")


# --- the record layout -------------------------------------------------------------------------------------


def _pair(i: int) -> dbn.BidAskPair:
    return dbn.BidAskPair(bid_px=100 + i, ask_px=200 + i, bid_sz=3 + i, ask_sz=4 + i, bid_ct=5 + i, ask_ct=6 + i)


@pytest.mark.parametrize("schema", ["tbbo", "mbp-10", "trades"])
def test_structured_records_are_byte_identical_to_databento_dbn(schema: str) -> None:
    fields = {"publisher_id": 1, "instrument_id": 4916, "ts_event": 1_700_000_000_123_456_789,
              "price": 5_700_250_000_000, "size": 7, "depth": 2, "ts_recv": 1_700_000_000_123_999_999,
              "flags": dbn.F_LAST, "sequence": 123_456, "ts_in_delta": 18_113}
    rec = empty_records(schema, 1)
    for k, v in fields.items():
        rec[k] = v
    rec["action"], rec["side"] = b"T", b"A"
    if schema == "trades":
        ref: Any = dbn.TradeMsg(**fields, action=dbn.Action.TRADE, side=dbn.Side.ASK)
    else:
        n = 1 if schema == "tbbo" else 10
        for i in range(n):
            for name in ("bid_px", "ask_px", "bid_sz", "ask_sz", "bid_ct", "ask_ct"):
                rec["levels"][name][0, i] = getattr(_pair(i), name)
        cls = dbn.MBP1Msg if n == 1 else dbn.MBP10Msg
        levels: Any = _pair(0) if n == 1 else [_pair(i) for i in range(n)]
        ref = cls(**fields, action=dbn.Action.TRADE, side=dbn.Side.ASK, levels=levels)
    assert rec.tobytes() == bytes(ref)


def test_metadata_carries_dataset_span_and_symbology(tmp_path: Path) -> None:
    s = calendar_for("equity").session_on(XMAS_EVE)
    assert s is not None
    path = tmp_path / "x.dbn.zst"
    write_dbn(path, metadata_bytes(dataset="SIM.GLBX", schema="tbbo", start_ns=s.open_ns, end_ns=s.close_ns,
                                   symbol="ESH5", instrument_id=7), [empty_records("tbbo", 0)])
    store = db.DBNStore.from_file(path)
    assert store.dataset == "SIM.GLBX" and str(store.schema) == "tbbo" and store.symbols == ["ESH5"]
    assert store.metadata.start == s.open_ns and store.metadata.end == s.close_ns
    # the session opens the evening before (UTC date 12-23) and closes on the 24th
    assert store.mappings == {"ESH5": [{"start_date": dt.date(2024, 12, 23), "end_date": dt.date(2024, 12, 25),
                                        "symbol": "7"}]}


# --- completeness check --------------------------------------------------------------------------------------


def test_scan_counts_records_and_rejects_truncation(tmp_path: Path, tbbo_days: list[Any]) -> None:
    assert scan_dbn(REAL_TBBO).records == 4
    path = tbbo_days[0].path
    scan = scan_dbn(path)
    assert scan.records == TRADES and scan.dataset == "SIM.GLBX" and scan.schema == "tbbo"
    raw = path.read_bytes()
    plain = read_all(path)
    # cut inside a record, at a record boundary (zstd frame unfinished), and an uncompressed cut record
    cases = {"mid.dbn.zst": raw[: len(raw) // 2], "frame.dbn.zst": zstandard.ZstdCompressor().compress(plain)[:-9],
             "cut.dbn": plain[:-5], "empty.dbn": b"", "junk.dbn": b"not dbn at all, really"}
    for name, blob in cases.items():
        bad = tmp_path / name
        bad.write_bytes(blob)
        with pytest.raises(DbnScanError):
            scan_dbn(bad)
    whole = tmp_path / "whole.dbn"
    whole.write_bytes(plain)
    assert scan_dbn(whole).records == TRADES


# --- days, calendar, readback --------------------------------------------------------------------------------


def test_days_follow_the_exchange_calendar(tbbo_days: list[Any]) -> None:
    dates = [d.day for d in tbbo_days]
    assert dates == [dt.date(2024, 12, 24), dt.date(2024, 12, 26), dt.date(2024, 12, 27), dt.date(2024, 12, 30)]
    cal = calendar_for("equity")
    assert dates == [s.trading_date for s in cal.sessions_between(XMAS_EVE, dates[-1])]
    root = tbbo_days[0].path.parents[3]
    assert Catalog(root).days("SIM.GLBX", "tbbo", "ES") == dates
    for d in tbbo_days:
        assert d.path == root / "SIM.GLBX" / "tbbo" / "ES" / f"{d.day}.dbn.zst"
        store = db.DBNStore.from_file(d.path)
        s = cal.session_on(d.day)
        assert s is not None and store.metadata.start == s.open_ns and store.metadata.end == s.close_ns
        ts = [r.ts_event for r in store]
        assert s.open_ns <= min(ts) and max(ts) < s.close_ns  # inside the (early-closing) session


def test_files_replay_through_dbn_feed_and_validator_with_zero_rejects(tbbo_days: list[Any]) -> None:
    trades, books, v = asyncio.run(replay([d.path for d in tbbo_days]))
    assert v.total_rejects == 0
    assert len(trades) == len(books) == TRADES * len(tbbo_days)
    assert {t.symbol for t in trades} == {"ESH5"}
    assert [t.ts_recv for t in trades] == sorted(t.ts_recv for t in trades)
    assert len({t.sequence for t in trades}) == len(trades)  # sequences continue across days
    for d in tbbo_days:
        info = Catalog(d.path.parents[3]).info(d.path)
        assert info["trades"] == TRADES and info["seed"] == 11 and info["source"] == "synthetic"


def test_files_hold_exactly_what_the_simulated_feed_streams(tbbo_days: list[Any]) -> None:
    """Same seed, start and size: the DBN days are the simulated market's sessions, trade for trade."""
    sim = SimSettings(seed=11, trades_per_session=TRADES, sessions=len(tbbo_days), start_date=XMAS_EVE.isoformat())

    async def live() -> list[RawTrade]:
        return [ev async for ev in SimulatedMarket(sim, ["ES"]) if isinstance(ev, RawTrade)]

    expected = asyncio.run(live())
    trades, books, _ = asyncio.run(replay([d.path for d in tbbo_days]))
    got = [(t.ts_event, t.ts_recv, t.price_fp, t.size, t.side, t.sequence, t.symbol) for t in trades]
    assert got == [(t.ts_event, t.ts_recv, t.price_fp, t.size, t.side, t.sequence, t.symbol) for t in expected]
    assert {t.side for t in trades} == {Side.BUY, Side.SELL}
    # TBBO carries the book before each trade: a buy lifts the ask, a sell hits the bid
    for b, t in zip(books, trades, strict=True):
        assert t.price_fp == (b.ask_px_fp[0] if t.side is Side.BUY else b.bid_px_fp[0])
        assert b.bid_px_fp[0] is not None and b.ask_px_fp[0] is not None and b.bid_px_fp[0] < b.ask_px_fp[0]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, tbbo_days: list[Any]) -> None:
    again = synthesize(tmp_path / "a", symbol="ES", days=2, start=XMAS_EVE, trades_per_day=TRADES, seed=11)
    for a, b in zip(again, tbbo_days, strict=False):
        assert a.path.read_bytes() == b.path.read_bytes()
        assert a.sha256 == b.sha256 == hashlib.sha256(b.path.read_bytes()).hexdigest()
    other = synthesize(tmp_path / "b", symbol="ES", days=1, start=XMAS_EVE, trades_per_day=TRADES, seed=12)
    assert other[0].sha256 != tbbo_days[0].sha256


def test_mbp10_days_replay_clean_and_book_records_name_the_change(tmp_path: Path) -> None:
    days = synthesize(tmp_path, symbol="NQ", days=2, start=dt.date(2025, 3, 7), trades_per_day=2000, seed=3,
                      schema="mbp-10")
    assert [d.day for d in days] == [dt.date(2025, 3, 7), dt.date(2025, 3, 10)]  # Friday, then Monday
    trades, books, v = asyncio.run(replay([d.path for d in days]))
    assert v.total_rejects == 0 and len(trades) == 4000
    assert all(len(b.bid_px_fp) == 10 and None not in b.bid_px_fp for b in books)
    tick = spec_for("NQ").tick_fp
    recs = list(db.DBNStore.from_file(days[0].path))
    assert len(recs) == days[0].records == scan_dbn(days[0].path).records
    assert recs[0].flags & dbn.F_SNAPSHOT  # the opening book
    n_book = 0
    for r in recs:
        assert r.instrument_id == instrument_id_for("NQ")
        if r.action == "T":
            continue
        n_book += 1
        assert r.action in ("A", "C") and r.side in ("B", "A")
        level = r.levels[r.depth]
        px, sz = (level.bid_px, level.bid_sz) if r.side == "B" else (level.ask_px, level.ask_sz)
        assert (r.price, r.size) == (px, sz) and r.price % tick == 0
    assert n_book == len(recs) - 2000 > 0


def test_inspect_reads_a_synthetic_day_like_real_data(tbbo_days: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "console", stream=CurrentStderr())
    args = argparse.Namespace(files=[str(tbbo_days[0].path)], json=True, symbol=None)
    assert inspect_command(args, settings()) == 0
    (rep,) = json.loads(capsys.readouterr().out)["files"]
    assert rep["schema"] == "tbbo" and rep["dataset"] == "SIM.GLBX"
    assert rep["instruments"] == {str(instrument_id_for("ES")): "ESH5"}
    assert rep["trades"]["count"] == TRADES and rep["validation"]["rejected"] == 0
    assert rep["time_range"]["timezone"] == "America/Chicago"


# --- the command ---------------------------------------------------------------------------------------------


def test_synth_command_writes_the_days_and_reports_speed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("synth", "--days", "3", "--out", str(tmp_path), "--symbol", "MES", "--trades-per-day", "1500",
                 "--seed", "5", "--start", "2025-03-14")
    assert args.handler(args, settings()) == 0
    out = capsys.readouterr().out
    cat = Catalog(tmp_path)
    days = cat.days("SIM.GLBX", "tbbo", "MES")
    assert days == [dt.date(2025, 3, 14), dt.date(2025, 3, 17), dt.date(2025, 3, 18)]
    assert "wrote 3 day(s), 4,500 trades" in out and "MB/s of DBN" in out
    assert [scan_dbn(p).records for p in cat.files("SIM.GLBX", "tbbo", "MES")] == [1500] * 3
    # MES rolls from H5 to M5 on 2025-03-13 (six business days before the third Friday)
    assert {db.DBNStore.from_file(p).symbols[0] for p in cat.files("SIM.GLBX", "tbbo", "MES")} == {"MESM5"}


@pytest.mark.parametrize(("argv", "needle"), [
    (["--symbol", "XYZ"], "unknown contract"),
    (["--start", "2025-02-30"], "not a date"),
    (["--start", "2040-01-02"], "outside the exchange calendar"),
    (["--trades-per-day", "0"], "at least 1"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                            needle: str) -> None:
    args = parse("synth", "--days", "1", "--out", str(tmp_path), *argv)
    assert args.handler(args, settings()) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not list(tmp_path.rglob("*.dbn.zst"))


@pytest.mark.bench
def test_full_day_write_speed(tmp_path: Path) -> None:
    """A 750k-trade day: generation and writing each within seconds (``pytest -m bench tests/feeds/test_synth.py``)."""
    t0 = time.perf_counter()
    for schema in ("tbbo", "mbp-10"):
        (day,) = synthesize(tmp_path / schema, symbol="ES", days=1, start=dt.date(2025, 3, 10),
                            trades_per_day=750_000, seed=1, schema=schema)
        assert day.trades == 750_000 and scan_dbn(day.path).records == day.records
        assert day.seconds < 5.0, (schema, day.seconds)
    assert time.perf_counter() - t0 < 20.0
