"""CsvTickFeed over the real Sierra Chart tick export, cross-checked against its DBN conversions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import databento as db
import pytest

from tradebot.core.calendar import to_ns
from tradebot.core.config import ConfigError
from tradebot.core.logging import configure_logging
from tradebot.core.prices import decimal_to_fp
from tradebot.core.types import FeedState, RawBook, RawTrade, Side, SideRule
from tradebot.feeds.base import Feed
from tradebot.feeds.csv_ticks import SIERRA_TICKS, CsvMapping, CsvMappingError, CsvTickFeed, DomColumns
from tradebot.feeds.files import open_file_feed
from tradebot.feeds.inspect import CurrentStderr
from tradebot.feeds.validation import Validator

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SIERRA = DATA / "sierra" / "ES_2022-01-24_tick_dom40.txt"
BARS = DATA / "sierra" / "ESZ24_5m_bars.txt"
REAL_TBBO = DATA / "real" / "ES_2022-01-24_sierra.tbbo.dbn.zst"
REAL_MBP10 = DATA / "real" / "ES_2022-01-24_sierra.mbp-10.dbn.zst"
CT = ZoneInfo("America/Chicago")


@pytest.fixture(autouse=True)
def _logs_to_current_stderr() -> None:
    """Other tests may leave structlog bound to a closed capture stream; these log on damaged input."""
    configure_logging("INFO", "console", stream=CurrentStderr())


async def collect(feed: Feed) -> list[Any]:
    return [ev async for ev in feed]


def chicago_ns(day: dt.date, h: int, m: int, s: int, us: int) -> int:
    return to_ns(dt.datetime(day.year, day.month, day.day, h, m, s, us, tzinfo=CT))


def sierra_lines() -> list[str]:
    return SIERRA.read_text().splitlines()


@pytest.fixture(scope="module")
def sierra_events() -> list[Any]:
    import asyncio

    return asyncio.run(collect(CsvTickFeed(SIERRA, SIERRA_TICKS, "ESH2")))


def trades_of(events: list[Any]) -> list[RawTrade]:
    return [e for e in events if isinstance(e, RawTrade)]


def test_every_sierra_row_is_a_trade(sierra_events: list[Any]) -> None:
    data_rows = len(sierra_lines()) - 1  # header; the last row has no trailing newline
    trades = trades_of(sierra_events)
    # The data README says 2,025; the file holds 2,026 rows (wc -l misses the unterminated last line),
    # and the two DBN conversions of it hold 2,026 records too.
    assert len(trades) == data_rows == 2026
    assert len(trades) == len(list(db.DBNStore.from_file(REAL_TBBO)))
    assert sum(t.size for t in trades) == sum(int(line.split(";")[5]) for line in sierra_lines()[1:])


def test_microsecond_quirk_and_chicago_time(sierra_events: list[Any]) -> None:
    by_seq = {t.sequence: t for t in trades_of(sierra_events)}
    day = dt.date(2022, 1, 24)
    # Sequence -> the Time text in the file: the fraction is a count of microseconds, unpadded.
    assert by_seq[2314222].ts_event == chicago_ns(day, 13, 30, 0, 5000)  # "13:30:00.5000"
    assert by_seq[2314223].ts_event == chicago_ns(day, 13, 30, 0, 5001)  # "13:30:00.5001"
    assert by_seq[2319372].ts_event == chicago_ns(day, 13, 30, 29, 33000)  # "13:30:29.33000"
    assert by_seq[2320647].ts_event == chicago_ns(day, 13, 30, 42, 28001)  # "13:30:42.28001"
    assert by_seq[2314533].ts_event == chicago_ns(day, 13, 30, 5, 550026)  # "13:30:05.550026"
    # January: Chicago is UTC-6, so 13:30:00.005 CT is 19:30:00.005 UTC.
    assert by_seq[2314222].ts_event == to_ns(dt.datetime(2022, 1, 24, 19, 30, 0, 5000, tzinfo=dt.UTC))
    ts = [t.ts_event for t in trades_of(sierra_events)]
    assert ts == sorted(ts), "with the quirk read right, the file is in time order"


def test_dst_comes_from_the_zone_database(tmp_path: Path) -> None:
    lines = sierra_lines()
    summer = tmp_path / "summer.txt"
    summer.write_text(lines[0] + "\n" + lines[1].replace("2022-01-24", "2022-07-15") + "\n")
    import asyncio

    (trade,) = trades_of(asyncio.run(collect(CsvTickFeed(summer, SIERRA_TICKS, "ESU2"))))
    assert trade.ts_event == to_ns(dt.datetime(2022, 7, 15, 18, 30, 0, 5000, tzinfo=dt.UTC))  # CDT = UTC-5


def test_sides_from_trade_type(sierra_events: list[Any]) -> None:
    rows = [line.split(";") for line in sierra_lines()[1:]]
    trades = trades_of(sierra_events)
    expected = [Side.BUY if r[6] == "2" else Side.SELL for r in rows]  # 2 = at ask, 1 = at bid
    assert [t.side for t in trades] == expected
    assert {t.side_rule for t in trades} == {SideRule.EXCHANGE}
    assert trades[0].side is Side.BUY and rows[0][6] == "2"


def test_trade_sequence_identical_to_the_tbbo_conversion(sierra_events: list[Any]) -> None:
    side = {"B": Side.BUY, "A": Side.SELL}
    dbn = [(r.ts_event, r.price, r.size, side[str(r.side)]) for r in db.DBNStore.from_file(REAL_TBBO)]
    csv = [(t.ts_event, t.price_fp, t.size, t.side) for t in trades_of(sierra_events)]
    assert csv == dbn


def test_dom_book_matches_the_mbp10_conversion_and_precedes_each_trade(sierra_events: list[Any]) -> None:
    pairs = list(zip(sierra_events[::2], sierra_events[1::2], strict=True))
    assert all(isinstance(b, RawBook) and isinstance(t, RawTrade) and b.ts_event == t.ts_event for b, t in pairs)
    mbp = list(db.DBNStore.from_file(REAL_MBP10))
    for (book, _), rec in zip(pairs, mbp, strict=True):
        assert book.bid_px_fp == tuple(lv.bid_px for lv in rec.levels)
        assert book.ask_px_fp == tuple(lv.ask_px for lv in rec.levels)
        assert book.bid_sz == tuple(lv.bid_sz for lv in rec.levels)
        assert book.ask_sz == tuple(lv.ask_sz for lv in rec.levels)


def test_dom_levels_are_one_tick_apart_from_the_dom_base() -> None:
    import asyncio

    header, first = sierra_lines()[0].split(";"), sierra_lines()[1].split(";")
    row = dict(zip(header, first, strict=True))
    events = asyncio.run(collect(CsvTickFeed(SIERRA, SIERRA_TICKS, "ES", book_levels=40)))
    book = events[0]
    assert isinstance(book, RawBook) and len(book.ask_px_fp) == 40
    quarter, ask_base, bid_base = (decimal_to_fp(x) for x in ("0.25", row["AskDOMPrice"], row["BidDOMPrice"]))
    assert quarter is not None and ask_base is not None and bid_base is not None
    assert book.ask_px_fp[39] == ask_base + 39 * quarter
    assert book.bid_px_fp[39] == bid_base - 39 * quarter
    assert book.ask_sz[39] == int(row["AskDOM_39"]) and book.bid_sz[39] == int(row["BidDOM_39"])


async def test_book_levels_cap_and_trades_only() -> None:
    three = await collect(CsvTickFeed(SIERRA, SIERRA_TICKS, "ES", book_levels=3))
    assert {len(e.bid_px_fp) for e in three if isinstance(e, RawBook)} == {3}
    bare = await collect(CsvTickFeed(SIERRA, SIERRA_TICKS, "ES", book_levels=0))
    assert all(isinstance(e, RawTrade) for e in bare) and len(bare) == 2026


async def test_everything_passes_validation(sierra_events: list[Any]) -> None:
    v = Validator()
    for ev in sierra_events:
        v.validate(ev)
    assert v.total_rejects == 0 and v.accepted == len(sierra_events)


async def test_malformed_rows_are_counted_and_skipped(tmp_path: Path) -> None:
    lines = sierra_lines()
    good = lines[1].split(";")

    def variant(**changes: str) -> str:
        cols = lines[0].split(";")
        row = list(good)
        for name, value in changes.items():
            row[cols.index(name)] = value
        return ";".join(row)

    bad_rows = [
        variant(Time="13:30:xx.5"),  # bad_timestamp
        variant(Time="13:30:00.1234567"),  # more than 6 microsecond digits
        variant(Price="4347.7.5"),  # bad_price
        variant(Price="NaN"),
        variant(Volume="one"),  # bad_size
        variant(AskDOM_3="?"),  # bad_dom_size
        variant(BidDOMPrice=""),  # bad_dom_price
        variant(Sequence="x"),  # bad_sequence
        ";".join(good[:20]),  # short_row
    ]
    odd = variant(TradeType="9")  # unknown side: kept, counted, side UNKNOWN
    path = tmp_path / "dirty.txt"
    path.write_text("\n".join([lines[0], *bad_rows, "", odd, *lines[1:]]) + "\n")
    feed = CsvTickFeed(path, SIERRA_TICKS, "ES")
    events = await collect(feed)
    trades = trades_of(events)
    assert len(trades) == 2026 + 1
    assert feed.stats["malformed_rows"] == len(bad_rows)
    assert feed.stats["malformed:bad_timestamp"] == 2
    assert feed.stats["malformed:bad_price"] == 2
    assert feed.stats["malformed:bad_size"] == 1
    assert feed.stats["malformed:bad_dom_size"] == 1
    assert feed.stats["malformed:bad_dom_price"] == 1
    assert feed.stats["malformed:bad_sequence"] == 1
    assert feed.stats["malformed:short_row"] == 1
    assert feed.stats["blank_rows"] == 1
    assert feed.stats["unknown_side"] == 1
    assert trades[0].side is Side.UNKNOWN and trades[0].side_rule is SideRule.NONE
    assert feed.state is FeedState.STOPPED


async def test_generic_mapping_epoch_and_bbo(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text("ts,px,qty,aggressor,bid,bidsz,ask,asksz\n"
                    "1700000000123456789,4500.25,3,b,4500.00,10,4500.25,7\n"
                    "1700000000223456789,4500.00,2,S,4500.00,9,4500.25,8\n"
                    "1700000000323456789,4500.00,1,,4500.00,9,4500.25,8\n")
    mapping = CsvMapping(price="px", size="qty", time="ts", time_format="epoch_ns", side="aggressor",
                         bid_price="bid", bid_size="bidsz", ask_price="ask", ask_size="asksz")
    events = await collect(CsvTickFeed(path, mapping, "MES"))
    books = [e for e in events if isinstance(e, RawBook)]
    trades = trades_of(events)
    assert [t.ts_event for t in trades] == [1700000000123456789, 1700000000223456789, 1700000000323456789]
    assert [t.side for t in trades] == [Side.BUY, Side.SELL, Side.UNKNOWN]
    assert trades[0].price_fp == 4_500_250_000_000
    assert books[0].bid_px_fp == (4_500_000_000_000,) and books[0].ask_sz == (7,)


async def test_generic_mapping_decimal_fraction_and_zone(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text("when,price,size\n2024-03-08 09:30:00.5,5000.25,1\n2024-03-11 09:30:00.000001,5001,2\n")
    mapping = CsvMapping(price="price", size="size", time="when", timezone="America/New_York")
    trades = trades_of(await collect(CsvTickFeed(path, mapping, "ES")))
    # Friday before the DST switch is UTC-5, the Monday after is UTC-4.
    assert trades[0].ts_event == to_ns(dt.datetime(2024, 3, 8, 14, 30, 0, 500000, tzinfo=dt.UTC))
    assert trades[1].ts_event == to_ns(dt.datetime(2024, 3, 11, 13, 30, 0, 1, tzinfo=dt.UTC))
    assert trades[1].price_fp == 5_001_000_000_000 and trades[0].side is Side.UNKNOWN


def test_mapping_that_does_not_fit_the_header_fails_at_open(tmp_path: Path) -> None:
    with pytest.raises(CsvMappingError, match="'Last'"):
        CsvTickFeed(SIERRA, CsvMapping(price="Last", size="Volume", time="Time", delimiter=";"), "ES")
    with pytest.raises(CsvMappingError, match="all four"):
        CsvTickFeed(SIERRA, CsvMapping(price="Price", size="Volume", time="Time", delimiter=";",
                                       bid_price="BidPrice"), "ES")
    with pytest.raises(CsvMappingError, match="time zone"):
        CsvTickFeed(SIERRA, CsvMapping(price="Price", size="Volume", time="Time", delimiter=";",
                                       timezone="Mars/Olympus"), "ES")
    with pytest.raises(CsvMappingError, match="DOM"):
        CsvTickFeed(SIERRA, CsvMapping(price="Price", size="Volume", time="Time", delimiter=";",
                                       dom=DomColumns(ask_prefix="Ask_", tick_size=Decimal("0.25"))), "ES")


async def test_open_file_feed_sniffs_sierra_and_names_the_symbol() -> None:
    feed = open_file_feed([SIERRA], symbol="ES")
    assert isinstance(feed, CsvTickFeed) and isinstance(feed, Feed) and feed.mapping is SIERRA_TICKS
    assert {t.symbol for t in trades_of(await collect(feed))} == {"ES"}
    guessed = open_file_feed([SIERRA])
    assert isinstance(guessed, CsvTickFeed) and guessed.symbol == "ES", "root from the file name"


def test_open_file_feed_refuses_what_it_cannot_replay(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds bars"):
        open_file_feed([BARS])
    other = tmp_path / "mystery.csv"
    other.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ConfigError, match="CsvMapping"):
        open_file_feed([other], symbol="ES")
    with pytest.raises(ConfigError, match="--symbol"):
        open_file_feed([_copy(SIERRA, tmp_path / "ticks.txt")])  # no root in the name, none given
    with pytest.raises(ConfigError, match="one at a time"):
        open_file_feed([SIERRA, SIERRA], symbol="ES")
    with pytest.raises(ConfigError, match="no such file"):
        open_file_feed([tmp_path / "absent.txt"], symbol="ES")


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


async def test_speed_paces_csv_replay(tmp_path: Path) -> None:
    import time

    lines = sierra_lines()
    all_trades = trades_of(await collect(CsvTickFeed(SIERRA, SIERRA_TICKS, "ES", book_levels=0)))
    t0_ns = all_trades[0].ts_event
    n = sum(1 for t in all_trades if t.ts_event - t0_ns < 800_000_000)  # the file's first 0.8 s
    path = tmp_path / "head.txt"
    path.write_text("\n".join(lines[: n + 1]) + "\n")
    span = (all_trades[n - 1].ts_event - t0_ns) / 1e9
    assert span > 0.1
    t0 = time.monotonic()
    trades = trades_of(await collect(CsvTickFeed(path, SIERRA_TICKS, "ES", speed=4.0, book_levels=0)))
    elapsed = time.monotonic() - t0
    assert len(trades) == n
    assert span / 4 * 0.95 <= elapsed < span / 4 + 1.0


def test_symbol_that_contradicts_the_file_name_is_refused() -> None:
    # The daemon's default TRADING_SYMBOL is MES: it must not silently relabel an ES file.
    with pytest.raises(ConfigError, match="pass --symbol ES"):
        open_file_feed([SIERRA], symbol="MES")
    feed = open_file_feed([SIERRA], symbol="ESH2")  # a contract of the same root is fine
    assert isinstance(feed, CsvTickFeed) and feed.symbol == "ESH2"
