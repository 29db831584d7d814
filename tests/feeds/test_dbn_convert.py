"""DBN record conversion on the real Databento / converted Sierra files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import databento as db
import databento_dbn as dbn
import pytest

from tradebot.core.prices import UNDEF_PRICE
from tradebot.core.types import RawBook, RawStatus, RawTrade, Side, SideRule
from tradebot.feeds.dbn_convert import DbnConverter, SymbolMap, iter_store
from tradebot.feeds.validation import Validator

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
GLBX = DATA / "databento" / "GLBX.MDP3"
LIVE = DATA / "databento" / "LIVE" / "test_data.live.dbn.zst"
XNAS = DATA / "databento" / "XNAS.ITCH"
SIERRA_TBBO = DATA / "real" / "ES_2022-01-24_sierra.tbbo.dbn.zst"
SIERRA_MBP10 = DATA / "real" / "ES_2022-01-24_sierra.mbp-10.dbn.zst"
SIERRA_TXT = DATA / "sierra" / "ES_2022-01-24_tick_dom40.txt"


def _load(path: Path) -> tuple[Any, list[Any]]:
    store = db.DBNStore.from_file(path)
    return store, list(store)


def _convert(path: Path, **kw: Any) -> tuple[DbnConverter, list[Any]]:
    store = db.DBNStore.from_file(path)
    conv = DbnConverter(SymbolMap.from_store(store), **kw)
    return conv, list(iter_store(store, conv))


def test_trades_file_sides_prices_symbols() -> None:
    _, recs = _load(GLBX / "test_data.trades.dbn.zst")
    conv, out = _convert(GLBX / "test_data.trades.dbn.zst")
    assert len(out) == len(recs) == 4
    assert all(isinstance(t, RawTrade) for t in out)
    for rec, t in zip(recs, out, strict=True):
        assert isinstance(t, RawTrade)
        assert t.symbol == "ESH1" and t.instrument_id == rec.instrument_id == 5482
        assert t.price_fp == rec.price and t.size == rec.size
        assert (t.ts_event, t.ts_recv, t.sequence) == (rec.ts_event, rec.ts_recv, rec.sequence)
        want = {"B": Side.BUY, "A": Side.SELL}[str(rec.side)]
        assert t.side is want and t.side_rule is SideRule.EXCHANGE
        assert t.source == "databento"
    assert conv.stats["trade"] == 4


def test_tbbo_book_is_emitted_before_its_trade() -> None:
    _, recs = _load(GLBX / "test_data.tbbo.dbn.zst")
    _, out = _convert(GLBX / "test_data.tbbo.dbn.zst")
    assert len(out) == 2 * len(recs)
    for i, rec in enumerate(recs):
        book, trade = out[2 * i], out[2 * i + 1]
        assert isinstance(book, RawBook) and isinstance(trade, RawTrade)
        assert book.bid_px_fp == (rec.levels[0].bid_px,) and book.ask_sz == (rec.levels[0].ask_sz,)
        assert trade.ts_event == book.ts_event == rec.ts_event
        assert trade.price_fp == rec.price


def test_mbp10_levels_best_first() -> None:
    _, recs = _load(GLBX / "test_data.mbp-10.dbn.zst")
    conv, out = _convert(GLBX / "test_data.mbp-10.dbn.zst")
    assert len(out) == len(recs) and conv.stats["book"] == len(recs)  # action 'A' records: no trades
    for rec, book in zip(recs, out, strict=True):
        assert isinstance(book, RawBook)
        assert len(book.bid_px_fp) == len(book.ask_px_fp) == 10
        assert book.bid_px_fp[0] == rec.bid_px_00 and book.ask_px_fp[9] == rec.ask_px_09
        assert book.bid_sz[3] == rec.bid_sz_03
        bids = [p for p in book.bid_px_fp if p is not None]
        asks = [p for p in book.ask_px_fp if p is not None]
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
        assert bids[0] < asks[0]


def test_mbp1_non_trade_actions_yield_only_books() -> None:
    _, recs = _load(GLBX / "test_data.mbp-1.dbn.zst")
    _, out = _convert(GLBX / "test_data.mbp-1.dbn.zst")
    n_trades = sum(1 for r in recs if r.action == "T")
    assert sum(isinstance(o, RawBook) for o in out) == len(recs)
    assert sum(isinstance(o, RawTrade) for o in out) == n_trades


def test_live_capture_mapping_resolves_symbols_record_by_record() -> None:
    _, recs = _load(LIVE)
    assert sum(isinstance(r, dbn.SymbolMappingMsg) for r in recs) == 20
    conv = DbnConverter()  # live: the metadata has no mappings, only SymbolMappingMsg records teach it
    trade_rec = next(r for r in recs if isinstance(r, dbn.TradeMsg))
    early = conv.convert(trade_rec)
    assert isinstance(early[0], RawTrade) and early[0].symbol == ""  # unknown id: no crash...
    validator = Validator(symbols=["ES"])
    assert validator.validate(early[0]) is None and validator.rejects["unknown_instrument"] == 1  # ...rejected
    out = []
    for rec in recs:
        out.extend(conv.convert(rec))
    assert conv.stats["symbol_mapping"] == 20
    assert conv.symbols.get(183748) == "ESZ4"
    market = [o for o in out if isinstance(o, RawTrade | RawBook)]
    assert market and {o.symbol for o in market} == {"ESZ4"}
    # MBO, stats, OHLCV, definitions: handled, counted, not emitted
    for name in ("MBOMsg", "StatMsg", "OHLCVMsg"):
        assert conv.stats["ignored_" + name] == sum(type(r).__name__ == name for r in recs) > 0
    assert conv.stats["definition"] == sum(isinstance(r, dbn.InstrumentDefMsg) for r in recs)
    for o in market:
        validator.validate(o)
    assert validator.rejects["unknown_instrument"] == 1  # only the record seen before its mapping


def test_live_capture_trades_from_book_off_counts_each_print_once() -> None:
    _, recs = _load(LIVE)
    n_trade_msgs = sum(isinstance(r, dbn.TradeMsg) for r in recs)
    n_book_trades = sum(isinstance(r, dbn.MBP1Msg | dbn.MBP10Msg) and r.action == "T" for r in recs)
    assert n_trade_msgs and n_book_trades
    both = DbnConverter(trades_from_book=True).convert_many(recs)
    once = DbnConverter(trades_from_book=False).convert_many(recs)
    assert sum(isinstance(o, RawTrade) for o in both) == n_trade_msgs + n_book_trades
    assert sum(isinstance(o, RawTrade) for o in once) == n_trade_msgs
    assert sum(isinstance(o, RawBook) for o in once) == sum(isinstance(o, RawBook) for o in both)


def _sierra_rows() -> list[list[str]]:
    lines = SIERRA_TXT.read_text().splitlines()
    return [line.split(";") for line in lines[1:] if line.strip()]


def test_sierra_tbbo_and_mbp10_trades_match_the_sierra_export() -> None:
    _, tbbo = _convert(SIERRA_TBBO)
    conv10, mbp10 = _convert(SIERRA_MBP10)
    t1 = [o for o in tbbo if isinstance(o, RawTrade)]
    t10 = [o for o in mbp10 if isinstance(o, RawTrade)]
    assert t1 == t10
    rows = _sierra_rows()
    assert len(t1) == len(rows) > 2000
    assert {t.symbol for t in t1} == {"ESH2"} and {t.instrument_id for t in t1} == {1}
    # Sierra trade type 2 = at ask = buy aggressor; 1 = at bid = sell aggressor
    vol = Counter[Side]()
    for t in t1:
        vol[t.side] += t.size
    assert vol[Side.BUY] == sum(int(r[5]) for r in rows if r[6] == "2")
    assert vol[Side.SELL] == sum(int(r[5]) for r in rows if r[6] == "1")
    assert vol[Side.UNKNOWN] == 0
    assert [t.side for t in t1] == [Side.BUY if r[6] == "2" else Side.SELL for r in rows]
    # every MBP-10 record gives a ten-level book followed by its trade
    books = [o for o in mbp10 if isinstance(o, RawBook)]
    assert len(books) == len(t10) and all(len(b.bid_px_fp) == 10 for b in books)
    assert conv10.stats["trade_from_book"] == len(rows)
    validator = Validator(symbols=["ES"])
    assert all(validator.validate(o) is not None for o in tbbo)
    assert validator.total_rejects == 0


def test_nasdaq_side_n_is_unknown() -> None:
    _, recs = _load(XNAS / "test_data.trades.dbn.zst")
    _, out = _convert(XNAS / "test_data.trades.dbn.zst")
    by_side = {str(r.side): t for r, t in zip(recs, out, strict=True)}
    assert set(by_side) == {"A", "B", "N"}
    n = by_side["N"]
    assert isinstance(n, RawTrade) and n.side is Side.UNKNOWN and n.side_rule is SideRule.NONE
    assert n.symbol == "NVDA"
    _, books = _convert(XNAS / "test_data.mbp-1.dbn.zst")
    assert books and all(o.symbol == "NVDA" for o in books if isinstance(o, RawBook))


def test_undefined_prices_become_none() -> None:
    trade = dbn.TradeMsg(publisher_id=1, instrument_id=7, ts_event=10, price=UNDEF_PRICE, size=1,
                         action=dbn.Action.TRADE, side=dbn.Side.NONE, depth=0, ts_recv=11, sequence=5)
    conv = DbnConverter(SymbolMap({7: "ESH2"}))
    (t,) = conv.convert(trade)
    assert isinstance(t, RawTrade) and t.price_fp is None and t.side is Side.UNKNOWN
    v = Validator(symbols=["ES"])
    assert v.validate(t) is None and v.rejects["non_finite_price"] == 1
    levels = [dbn.BidAskPair(bid_px=4_000_000_000_000, ask_px=4_000_250_000_000, bid_sz=3, ask_sz=4)]
    levels += [dbn.BidAskPair(bid_px=UNDEF_PRICE, ask_px=UNDEF_PRICE, bid_sz=5, ask_sz=6)] * 9  # stale sizes
    mbp = dbn.MBP10Msg(publisher_id=1, instrument_id=7, ts_event=10, price=UNDEF_PRICE, size=0, action=dbn.Action.ADD,
                       side=dbn.Side.BID, depth=0, ts_recv=11, levels=levels)
    (b,) = conv.convert(mbp)
    assert isinstance(b, RawBook)
    assert b.bid_px_fp[0] == 4_000_000_000_000 and b.bid_px_fp[1:] == (None,) * 9 and b.ask_sz[1:] == (0,) * 9
    assert b.bid_sz == (3,) + (0,) * 9 and b.ask_px_fp == (4_000_250_000_000,) + (None,) * 9
    assert v.validate(b) is not None


def test_status_file_and_halt() -> None:
    conv, out = _convert(GLBX / "test_data.status.dbn.zst")
    assert len(out) == 4 and all(isinstance(s, RawStatus) and not s.halted for s in out)
    assert isinstance(out[0], RawStatus) and out[0].symbol == "ESH1" and out[0].reason == "trading/scheduled"
    halt = dbn.StatusMsg(publisher_id=1, instrument_id=5482, ts_event=1, ts_recv=2, action=dbn.StatusAction.HALT,
                         reason=dbn.StatusReason.REGULATORY)
    (s,) = conv.convert(halt)
    assert isinstance(s, RawStatus) and s.halted and s.reason == "halt/regulatory" and s.symbol == "ESH1"


def test_gateway_messages_and_junk_are_counted_never_raised() -> None:
    conv = DbnConverter()
    assert conv.convert(dbn.ErrorMsg(ts_event=1, err="auth failed")) == []
    assert conv.last_error == "auth failed"
    assert conv.convert(dbn.SystemMsg(ts_event=1, msg="Heartbeat", code=dbn.SystemCode.HEARTBEAT)) == []
    assert conv.convert(dbn.SystemMsg(ts_event=1, msg="slow", code=dbn.SystemCode.SLOW_READER_WARNING)) == []
    assert conv.convert(dbn.SystemMsg(ts_event=1, msg="Subscription ack")) == []
    assert conv.convert(object()) == []
    assert conv.convert(None) == []
    assert conv.stats == Counter({"error_msg": 1, "heartbeat": 1, "slow_reader": 1, "system_msg": 1,
                                  "ignored_object": 1, "ignored_NoneType": 1})


@pytest.mark.parametrize("name", ["trades", "tbbo", "mbp-1", "mbp-10", "status"])
def test_symbol_map_from_store_metadata(name: str) -> None:
    store = db.DBNStore.from_file(GLBX / f"test_data.{name}.dbn.zst")
    smap = SymbolMap.from_store(store)
    assert smap.get(5482) == "ESH1" and smap.get(1) == ""


def test_symbol_map_single_symbol_file_without_mappings() -> None:
    store = db.DBNStore.from_file(SIERRA_TBBO)
    assert store.mappings == {}
    assert SymbolMap.from_store(store).get(1) == "ESH2"
    assert SymbolMap.from_store(object()).get(1) == ""  # not a store: empty map, no crash
