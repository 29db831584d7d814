"""DbnFileFeed over the real Databento files in /work/shared/data (and damaged copies of them)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import databento as db
import databento_dbn as dbn
import pytest
import zstandard

from tradebot.core.config import ConfigError
from tradebot.core.logging import configure_logging
from tradebot.core.types import FeedState, FeedStatus, RawBook, RawRecord, RawStatus, RawTrade, Side, SideRule
from tradebot.feeds.base import Feed
from tradebot.feeds.dbn_files import DbnFileError, DbnFileFeed
from tradebot.feeds.files import open_file_feed
from tradebot.feeds.inspect import CurrentStderr
from tradebot.feeds.validation import Validator

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
GLBX = DATA / "databento" / "GLBX.MDP3"
XNAS = DATA / "databento" / "XNAS.ITCH"
LIVE = DATA / "databento" / "LIVE" / "test_data.live.dbn.zst"
REAL_TBBO = DATA / "real" / "ES_2022-01-24_sierra.tbbo.dbn.zst"
REAL_MBP10 = DATA / "real" / "ES_2022-01-24_sierra.mbp-10.dbn.zst"

REPLAYABLE = [GLBX / f"test_data.{s}.dbn.zst" for s in ("trades", "tbbo", "mbp-1", "mbp-10", "status")] + [
    XNAS / "test_data.trades.dbn.zst", XNAS / "test_data.mbp-1.dbn.zst", REAL_TBBO, REAL_MBP10]
NOT_REPLAYABLE = [GLBX / f"test_data.{s}.dbn.zst" for s in ("definition", "mbo", "ohlcv-1m", "statistics")]
SIDE = {"B": Side.BUY, "A": Side.SELL, "N": Side.UNKNOWN}


@pytest.fixture(autouse=True)
def _logs_to_current_stderr() -> None:
    """Other tests may leave structlog bound to a closed capture stream; these log on damaged input."""
    configure_logging("INFO", "console", stream=CurrentStderr())


async def collect(feed: Feed) -> list[Any]:
    return [ev async for ev in feed]


def records(path: Path) -> list[Any]:
    return list(db.DBNStore.from_file(path))


def write_dbn(path: Path, recs: list[Any], like: Path, compress: bool = False) -> Path:
    """A real DBN file holding ``recs`` with the metadata of ``like`` (for splits and damaged copies)."""
    m = db.DBNStore.from_file(like).metadata
    meta = dbn.Metadata(dataset=m.dataset, start=m.start, stype_in=dbn.SType.RAW_SYMBOL,
                        stype_out=dbn.SType.INSTRUMENT_ID, schema=dbn.Schema.from_str(m.schema),
                        symbols=list(m.symbols), end=m.end)
    data = bytes(meta) + b"".join(bytes(r) for r in recs)
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if compress else data)
    return path


def plain_bytes(path: Path) -> bytes:
    with path.open("rb") as fh:
        return zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()


# -- every real file ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", REPLAYABLE, ids=lambda p: f"{p.parent.name}/{p.name}")
async def test_every_replayable_file_converts_each_record(path: Path) -> None:
    src = records(path)
    store = db.DBNStore.from_file(path)
    symbol = store.symbols[0]
    feed = DbnFileFeed([path])
    events = await collect(feed)
    assert feed.state is FeedState.STOPPED
    assert feed.stats["dbn_records"] == len(src)
    assert all(ev.symbol == symbol for ev in events), "instrument ids map to the file's raw symbol"
    trades = [e for e in events if isinstance(e, RawTrade)]
    books = [e for e in events if isinstance(e, RawBook)]
    statuses = [e for e in events if isinstance(e, RawStatus)]
    schema = str(store.schema.value)
    if schema == "status":
        assert len(statuses) == len(src) and not trades and not books
        return
    source_trades = [r for r in src if r.action == "T"]
    if schema in ("tbbo", "mbp-1", "mbp-10"):
        assert len(books) == len(src)
        assert all(len(b.bid_px_fp) == (10 if schema == "mbp-10" else 1) for b in books)
    # A single book file is its own only source of trades: its action-T records become trades.
    assert [(t.ts_event, t.price_fp, t.size, t.side) for t in trades] == [
        (r.ts_event, r.price, r.size, SIDE[str(r.side)]) for r in source_trades]
    assert all(t.side_rule is (SideRule.NONE if t.side is Side.UNKNOWN else SideRule.EXCHANGE) for t in trades)


@pytest.mark.parametrize("path", NOT_REPLAYABLE, ids=lambda p: p.name)
async def test_files_without_trades_or_book_are_refused_clearly(path: Path) -> None:
    with pytest.raises(DbnFileError, match="carries no trades or book"):
        DbnFileFeed([path])
    with pytest.raises(ConfigError, match=path.name):
        open_file_feed([path])
    # Inspection may still open them: nothing market-facing comes out, every record is accounted for.
    feed = DbnFileFeed([path], allow_any_schema=True, count_kinds=True)
    assert await collect(feed) == []
    assert feed.tally is not None
    assert sum(feed.tally.kinds.values()) == len(records(path)) == feed.stats["dbn_records"]


async def test_glbx_symbols_come_from_metadata_mappings() -> None:
    feed = DbnFileFeed([GLBX / "test_data.trades.dbn.zst"])
    trades = await collect(feed)
    assert {(t.instrument_id, t.symbol) for t in trades} == {(5482, "ESH1")}
    assert feed.symbol_maps()[GLBX / "test_data.trades.dbn.zst"].get(5482) == "ESH1"


async def test_xnas_trades_keep_no_side_as_unknown() -> None:
    path = XNAS / "test_data.trades.dbn.zst"
    trades = await collect(DbnFileFeed([path]))
    assert Counter(t.side for t in trades) == Counter(SIDE[str(r.side)] for r in records(path))
    assert Side.UNKNOWN in {t.side for t in trades}


async def test_tbbo_book_precedes_its_trade() -> None:
    events = await collect(DbnFileFeed([REAL_TBBO]))
    assert len(events) == 2 * len(records(REAL_TBBO))
    for book, trade in zip(events[::2], events[1::2], strict=True):
        assert isinstance(book, RawBook) and isinstance(trade, RawTrade)
        assert book.ts_event == trade.ts_event and book.sequence == trade.sequence


async def test_real_mbp10_file_is_the_only_trade_source_and_matches_tbbo() -> None:
    feed = DbnFileFeed([REAL_MBP10])
    assert feed.files[0].trades_from_book is True
    mbp = [(t.ts_event, t.price_fp, t.size, t.side) for t in await collect(feed) if isinstance(t, RawTrade)]
    tbbo = [(t.ts_event, t.price_fp, t.size, t.side) for t in await collect(DbnFileFeed([REAL_TBBO]))
            if isinstance(t, RawTrade)]
    assert len(mbp) == len(records(REAL_MBP10)) and mbp == tbbo


async def test_real_files_pass_validation() -> None:
    v = Validator()
    events = await collect(DbnFileFeed([REAL_TBBO]))
    out = [v.validate(e) for e in events]
    assert v.total_rejects == 0 and v.accepted == len(events) and all(o is not None for o in out)
    assert {o.symbol for o in out if o is not None} == {"ES"}


# -- the mixed live capture --------------------------------------------------------------------------


async def test_live_capture_counts_each_trade_once() -> None:
    src = records(LIVE)
    feed = DbnFileFeed([LIVE])
    assert feed.files[0].schema is None and feed.files[0].trades_from_book is False
    events = await collect(feed)
    trades = [e for e in events if isinstance(e, RawTrade)]
    trade_msgs = [r for r in src if isinstance(r, dbn.TradeMsg)]
    # The capture holds each print twice (MBP-1 action T and TradeMsg); the TradeMsg stream owns trades.
    assert len(trades) == len(trade_msgs) == 2
    assert feed.stats["book_trade_skipped"] == sum(1 for r in src if isinstance(r, dbn.MBP1Msg) and r.action == "T")
    assert {t.symbol for t in events} == {"ESZ4"}, "symbols learnt from the in-stream SymbolMappingMsg"
    assert feed.stats["symbol_mapping"] == sum(1 for r in src if isinstance(r, dbn.SymbolMappingMsg))


@pytest.mark.parametrize(("schema", "n_books", "n_trades", "depth"), [
    ("trades", 0, 2, None), ("tbbo", 2, 2, 1), ("mbp-1", 2, 2, 1), ("mbp-10", 2, 0, 10)])
async def test_live_capture_schema_pick(schema: str, n_books: int, n_trades: int, depth: int | None) -> None:
    feed = DbnFileFeed([LIVE], schema=schema)
    events = await collect(feed)
    books = [e for e in events if isinstance(e, RawBook)]
    assert len(books) == n_books
    assert sum(isinstance(e, RawTrade) for e in events) == n_trades
    if depth is not None:
        assert {len(b.bid_px_fp) for b in books} == {depth}
    assert feed.stats["filtered"] > 0


async def test_schema_must_match_a_single_schema_file() -> None:
    with pytest.raises(DbnFileError, match="holds tbbo records, not the requested trades"):
        DbnFileFeed([REAL_TBBO], schema="trades")
    with pytest.raises(DbnFileError, match="not replayable"):
        DbnFileFeed([LIVE], schema="ohlcv-1m")


# -- several files -----------------------------------------------------------------------------------


async def test_two_files_merge_back_into_time_order(tmp_path: Path) -> None:
    src = records(REAL_TBBO)
    odd = write_dbn(tmp_path / "odd.dbn", src[1::2], REAL_TBBO)
    even = write_dbn(tmp_path / "even.dbn.zst", src[::2], REAL_TBBO, compress=True)
    feed = DbnFileFeed([odd, even])
    assert [f.trades_from_book for f in feed.files] == [True, True], "same schema: two halves, both own trades"
    merged = [e for e in await collect(feed) if isinstance(e, RawTrade)]
    assert [(t.ts_recv, t.sequence) for t in merged] == [(r.ts_recv, r.sequence) for r in src]
    assert feed.stats["files_done"] == 2


async def test_trades_file_owns_trades_over_an_overlapping_book_file() -> None:
    trades_path, book_path = GLBX / "test_data.trades.dbn.zst", GLBX / "test_data.mbp-10.dbn.zst"
    feed = DbnFileFeed([book_path, trades_path])
    assert [f.trades_from_book for f in feed.files] == [False, False]
    events = await collect(feed)
    keys = [e.ts_recv for e in events if not isinstance(e, RawStatus)]
    assert keys == sorted(keys)
    assert sum(isinstance(e, RawTrade) for e in events) == len(records(trades_path))
    assert sum(isinstance(e, RawBook) for e in events) == len(records(book_path))


async def test_book_file_of_another_period_keeps_its_trades() -> None:
    # GLBX trades (2020) do not overlap the Sierra MBP-10 (2022): the MBP-10 is still its own trade source.
    feed = DbnFileFeed([REAL_MBP10, GLBX / "test_data.trades.dbn.zst"])
    assert feed.files[0].trades_from_book is True
    trades = [e for e in await collect(feed) if isinstance(e, RawTrade)]
    assert len(trades) == len(records(REAL_MBP10)) + 4
    assert [t.symbol for t in trades[:4]] == ["ESH1"] * 4 and trades[-1].symbol == "ESH2"


# -- pacing --------------------------------------------------------------------------------------------


async def test_speed_n_replays_the_span_n_times_faster() -> None:
    src = records(REAL_TBBO)
    span_s = (src[-1].ts_recv - src[0].ts_recv) / 1e9  # ~61 s of real trading
    speed = 150.0
    t0 = time.monotonic()
    events = await collect(DbnFileFeed([REAL_TBBO], speed=speed))
    elapsed = time.monotonic() - t0
    assert len(events) == 2 * len(src)
    assert elapsed >= span_s / speed * 0.95, "pacing must not run ahead of the schedule"
    assert elapsed < span_s / speed + 1.5


async def test_speed_zero_does_not_sleep() -> None:
    t0 = time.monotonic()
    await collect(DbnFileFeed([REAL_TBBO], speed=0))
    assert time.monotonic() - t0 < 60.95 / 150  # far below any paced replay of the same span


def test_negative_speed_is_refused() -> None:
    with pytest.raises(ValueError, match="speed"):
        DbnFileFeed([REAL_TBBO], speed=-1)


# -- damage ------------------------------------------------------------------------------------------


async def test_truncated_file_yields_what_it_has_and_reports_the_lost_record(tmp_path: Path) -> None:
    data = plain_bytes(REAL_TBBO)
    cut = tmp_path / "cut.dbn"
    cut.write_bytes(data[: len(data) // 2 + 7])  # mid-record
    feed = DbnFileFeed([cut])
    events = await collect(feed)
    assert not [e for e in events if isinstance(e, FeedStatus)], "damage is read past, not a feed failure"
    assert feed.stats["damaged_truncated_record"] == 1 and feed.stats["records_lost"] == 1
    [line] = feed.damage_report()
    assert "truncated_record" in line and "1 record(s)" in line and "the end" in line
    trades = [e for e in events if isinstance(e, RawTrade)]
    full = records(REAL_TBBO)
    assert 0 < len(trades) < len(full)
    assert [t.sequence for t in trades] == [r.sequence for r in full[: len(trades)]]


async def test_corrupt_bytes_mid_file_cost_only_the_records_they_cover(tmp_path: Path) -> None:
    data = bytearray(plain_bytes(REAL_TBBO))
    mid = len(data) // 2
    data[mid: mid + 400] = b"\xff" * 400
    bad = tmp_path / "bad.dbn"
    bad.write_bytes(bytes(data))
    feed = DbnFileFeed([bad, GLBX / "test_data.trades.dbn.zst"])
    events = await collect(feed)
    assert feed.stats["damaged_resync"] == 1
    [line] = feed.damage_report()
    assert "resync" in line and "bad.dbn" in line and "between 2022-01-24T" in line
    trades = [e for e in events if isinstance(e, RawTrade)]
    assert sum(t.symbol == "ESH1" for t in trades) == 4, "the healthy file is replayed in full"
    got = sum(t.symbol == "ESH2" for t in trades)
    assert len(records(REAL_TBBO)) - 6 <= got < len(records(REAL_TBBO)), "400 bytes cost at most 6 records"
    assert feed.stats["records_lost"] == len(records(REAL_TBBO)) - got


@pytest.mark.parametrize("content", [b"", b"not a dbn file at all" * 10, b"DBN\x03\x10\x00"],
                         ids=["empty", "garbage", "cut-header"])
def test_unreadable_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.dbn"
    path.write_bytes(content)
    with pytest.raises(DbnFileError, match=r"x\.dbn"):
        DbnFileFeed([path])
    with pytest.raises(ConfigError, match=r"x\.dbn"):
        open_file_feed([path])


def test_truncated_compressed_header_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "head.dbn.zst"
    path.write_bytes(REAL_TBBO.read_bytes()[:2000])
    with pytest.raises(ConfigError, match="not a readable DBN file"):
        open_file_feed([path])


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="no such file"):
        open_file_feed([DATA / "nope.dbn.zst"])
    with pytest.raises(DbnFileError, match="no such file"):
        DbnFileFeed([DATA / "nope.dbn.zst"])


# -- dispatch and the feed contract ------------------------------------------------------------------


async def test_open_file_feed_dispatches_dbn_and_sniffs_unusual_names(tmp_path: Path) -> None:
    feed = open_file_feed([REAL_TBBO, GLBX / "test_data.trades.dbn.zst"], speed=0.0, symbol="MES")
    assert isinstance(feed, DbnFileFeed) and isinstance(feed, Feed)
    odd_name = tmp_path / "capture.bin"
    odd_name.write_bytes(REAL_TBBO.read_bytes())
    feed2 = open_file_feed([odd_name])
    trades = [e for e in await collect(feed2) if isinstance(e, RawTrade)]
    assert {t.symbol for t in trades} == {"ESH2"}, "DBN files carry their own symbols; symbol= is for text files"


async def test_close_mid_stream_stops_the_feed() -> None:
    feed = DbnFileFeed([REAL_TBBO])
    seen: list[RawRecord] = []
    async for ev in feed:
        seen.append(ev)
        if len(seen) == 10:
            await feed.close()
            break
    assert feed.state is FeedState.STOPPED
    assert len(seen) == 10


async def test_close_from_another_task_while_pacing() -> None:
    import asyncio

    feed = DbnFileFeed([REAL_TBBO], speed=1.0)  # real time: the reader spends its life in the pacer
    seen: list[Any] = []

    async def consume() -> None:
        async for ev in feed:
            seen.append(ev)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await feed.close()  # must not raise although the generator is suspended inside the pacer's sleep
    assert feed.state is FeedState.STOPPED
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 0 < len(seen) < 2 * len(records(REAL_TBBO))
