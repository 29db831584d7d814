"""Databento (DBN) records -> the project's raw records.

One converter serves the live gateway and DBN files so both paths agree on sides, symbols and what a
"trade" is. Conversion is deliberately dumb: prices stay fixed point (DBN already is 1e-9), garbage is
passed through as ``None`` / an empty symbol and left to the validation layer to count and reject.
Nothing here raises on a record: an unexpected record is counted in :attr:`DbnConverter.stats`.

Trade double counting is the subtle part. A book schema (MBP-1, MBP-10, TBBO) also carries trades as
records with action ``T``; when the trades schema is subscribed too, the same print would arrive twice.
``trades_from_book`` decides which stream owns trades.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

import databento_dbn as dbn

from tradebot.core.prices import UNDEF_PRICE
from tradebot.core.types import RawBook, RawRecord, RawStatus, RawTrade, Side, SideRule

SOURCE = "databento"

UNKNOWN_SYMBOL = ""
"""What an unmapped instrument id converts to: the validator rejects it as ``unknown_instrument``."""

_SIDES: dict[object, tuple[Side, SideRule]] = {}
for _k, _v in (("B", (Side.BUY, SideRule.EXCHANGE)), ("A", (Side.SELL, SideRule.EXCHANGE))):
    _SIDES[_k] = _v
_SIDES[dbn.Side.BID] = _SIDES["B"]
_SIDES[dbn.Side.ASK] = _SIDES["A"]
_NO_SIDE = (Side.UNKNOWN, SideRule.NONE)

_HALT_ACTIONS = frozenset(
    int(a) for a in (dbn.StatusAction.HALT, dbn.StatusAction.PAUSE, dbn.StatusAction.SUSPEND,
                     dbn.StatusAction.NOT_AVAILABLE_FOR_TRADING)
)
"""Status actions during which no trading happens. ``PRE_OPEN``/``CLOSE`` are scheduled, not halts."""

_SLOW_READER = int(dbn.SystemCode.SLOW_READER_WARNING)


def _getters(depth: int) -> tuple[Callable[[Any], Any], ...]:
    # One C-level call per side fetching every level; much cheaper than building ``rec.levels`` objects.
    return tuple(attrgetter(*[f"{f}_{i:02d}" for i in range(depth)]) for f in ("bid_px", "bid_sz", "ask_px", "ask_sz"))


def _as_tuple(v: Any) -> tuple[int, ...]:
    return v if isinstance(v, tuple) else (v,)  # attrgetter with one name returns the bare value


def _side_levels(px: tuple[int, ...], sz: tuple[int, ...]) -> tuple[tuple[int | None, ...], tuple[int, ...]]:
    """Undefined levels become ``None`` with size 0 (the gateway may leave a stale size there)."""
    if UNDEF_PRICE not in px:
        return px, sz
    return (tuple(None if p == UNDEF_PRICE else p for p in px),
            tuple(0 if p == UNDEF_PRICE else q for p, q in zip(px, sz, strict=True)))


def _fp(px: int) -> int | None:
    return None if px == UNDEF_PRICE else px


def _enum_name(value: Any) -> str:
    name = getattr(value, "name", None)
    return str(name if name is not None else value).lower()


class SymbolMap:
    """instrument_id -> raw symbol (``ESH2``).

    Live sessions learn it from ``SymbolMappingMsg`` (and definitions); files from the metadata. An
    unknown id maps to ``default`` (empty unless a single-symbol file says otherwise), never an error.
    """

    __slots__ = ("_ids", "default")

    def __init__(self, mapping: dict[int, str] | None = None, default: str = UNKNOWN_SYMBOL) -> None:
        self._ids: dict[int, str] = dict(mapping or {})
        self.default = default

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, instrument_id: object) -> bool:
        return instrument_id in self._ids

    def get(self, instrument_id: int) -> str:
        return self._ids.get(instrument_id, self.default)

    def set(self, instrument_id: int, symbol: str) -> None:
        if symbol:
            self._ids[int(instrument_id)] = symbol

    def update(self, rec: Any) -> None:
        """Learn from a ``SymbolMappingMsg`` (``stype_out_symbol`` is the raw contract symbol)."""
        self.set(rec.instrument_id, str(rec.stype_out_symbol))

    def as_dict(self) -> dict[int, str]:
        return dict(self._ids)

    @classmethod
    def from_metadata(cls, mappings: dict[str, list[dict[str, Any]]], symbols: Iterable[str] = (),
                      stype_in: str | None = None) -> SymbolMap:
        """Build from a DBN store's ``mappings`` ({input symbol: [{start_date, end_date, symbol=id}]}).

        For raw-symbol requests the key *is* the contract; for parent/continuous requests it is
        ``ES.FUT``/``ES.c.0``, which still resolves to the right root downstream. Files converted from
        other sources may carry one symbol and no mappings: every id then means that symbol.
        """
        out = cls()
        for in_symbol, intervals in (mappings or {}).items():
            for iv in intervals:
                try:
                    out.set(int(iv["symbol"]), str(in_symbol))
                except (KeyError, TypeError, ValueError):
                    continue
        syms = [s for s in symbols if s]
        if not out._ids and len(syms) == 1 and stype_in in (None, "raw_symbol"):
            out.default = syms[0]
        return out

    @classmethod
    def from_store(cls, store: Any) -> SymbolMap:
        """From a ``databento.DBNStore`` (tolerates a store whose metadata lacks symbology)."""
        try:
            stype = store.stype_in
            stype_in = None if stype is None else str(getattr(stype, "value", stype))
            return cls.from_metadata(store.mappings, store.symbols or (), stype_in)
        except Exception:
            return cls()


class DbnConverter:
    """Converts DBN records to :data:`RawRecord` lists; counts everything in :attr:`stats`.

    ``trades_from_book``: emit a :class:`RawTrade` for book records with action ``T`` (TBBO, or a book
    schema alone). Turn it off when the trades schema is subscribed too, so no print counts twice.
    The book comes first: in TBBO (and MBP for a trade action) the book is the state *before* the trade,
    and quote-rule consumers must see that state before the print.
    """

    def __init__(self, symbols: SymbolMap | None = None, *, trades_from_book: bool = True,
                 source: str = SOURCE, logger: Any = None) -> None:
        self.symbols = symbols if symbols is not None else SymbolMap()
        self.trades_from_book = trades_from_book
        self.source = source
        self.log = logger
        self.stats: Counter[str] = Counter()
        self.last_error = ""
        """Text of the most recent gateway ``ErrorMsg`` (the live feed reports it)."""
        self._dispatch: dict[type, Callable[[Any], list[RawRecord]]] = {
            dbn.TradeMsg: self._trade,
            dbn.MBP1Msg: self._book,
            dbn.MBP10Msg: self._book,
            dbn.StatusMsg: self._status,
            dbn.SymbolMappingMsg: self._mapping,
            dbn.SystemMsg: self._system,
            dbn.ErrorMsg: self._error,
            dbn.InstrumentDefMsg: self._definition,
        }
        self._levels = {dbn.MBP1Msg: _getters(1), dbn.MBP10Msg: _getters(10)}

    def convert(self, rec: Any) -> list[RawRecord]:
        handler = self._dispatch.get(type(rec))
        try:
            if handler is None:
                self.stats["ignored_" + type(rec).__name__] += 1
                return []
            return handler(rec)
        except Exception as exc:  # a malformed record must never take the feed down
            self.stats["malformed"] += 1
            if self.log is not None and self.stats["malformed"] <= 5:
                self.log.warning("dbn record not converted", record=repr(rec)[:300], error=repr(exc))
            return []

    def convert_many(self, recs: Iterable[Any]) -> list[RawRecord]:
        out: list[RawRecord] = []
        for rec in recs:
            out.extend(self.convert(rec))
        return out

    # -- handlers ----------------------------------------------------------------------------------

    def _trade_of(self, rec: Any) -> RawTrade:
        side, rule = _SIDES.get(rec.side, _NO_SIDE)
        iid = rec.instrument_id
        return RawTrade(self.symbols.get(iid), rec.ts_event, rec.ts_recv, _fp(rec.price), rec.size, side, rule,
                        rec.sequence, iid, self.source)

    def _trade(self, rec: Any) -> list[RawRecord]:
        self.stats["trade"] += 1
        return [self._trade_of(rec)]

    def _book(self, rec: Any) -> list[RawRecord]:
        bpx_get, bsz_get, apx_get, asz_get = self._levels[type(rec)]
        bpx, bsz = _side_levels(_as_tuple(bpx_get(rec)), _as_tuple(bsz_get(rec)))
        apx, asz = _side_levels(_as_tuple(apx_get(rec)), _as_tuple(asz_get(rec)))
        iid = rec.instrument_id
        book = RawBook(self.symbols.get(iid), rec.ts_event, rec.ts_recv, bpx, bsz, apx, asz, rec.sequence, iid,
                       self.source)
        self.stats["book"] += 1
        if rec.action == "T":
            if self.trades_from_book:
                self.stats["trade_from_book"] += 1
                return [book, self._trade_of(rec)]
            self.stats["book_trade_skipped"] += 1
        return [book]

    def _status(self, rec: Any) -> list[RawRecord]:
        action = rec.action
        halted = action is not None and int(action) in _HALT_ACTIONS
        reason = f"{_enum_name(action)}/{_enum_name(rec.reason)}"
        self.stats["status"] += 1
        return [RawStatus(self.symbols.get(rec.instrument_id), rec.ts_event, halted, reason, self.source)]

    def _mapping(self, rec: Any) -> list[RawRecord]:
        self.symbols.update(rec)
        self.stats["symbol_mapping"] += 1
        return []

    def _definition(self, rec: Any) -> list[RawRecord]:
        if rec.instrument_id not in self.symbols:
            self.symbols.set(rec.instrument_id, str(rec.raw_symbol))
        self.stats["definition"] += 1
        return []

    def _system(self, rec: Any) -> list[RawRecord]:
        code = rec.code
        if rec.is_heartbeat():
            self.stats["heartbeat"] += 1
        elif code is not None and int(code) == _SLOW_READER:
            self.stats["slow_reader"] += 1
            if self.log is not None:
                self.log.warning("databento gateway: slow reader", msg=str(rec.msg))
        else:
            self.stats["system_msg"] += 1
            if self.log is not None:
                self.log.info("databento gateway", msg=str(rec.msg), code=_enum_name(code))
        return []

    def _error(self, rec: Any) -> list[RawRecord]:
        self.stats["error_msg"] += 1
        self.last_error = str(rec.err)
        if self.log is not None:
            self.log.error("databento gateway error", err=self.last_error, code=_enum_name(rec.code))
        return []


def iter_store(store: Any, converter: DbnConverter | None = None) -> Iterable[RawRecord]:
    """Raw records of a ``databento.DBNStore``, mapped with its own metadata (helper for file feeds)."""
    conv = converter or DbnConverter(SymbolMap.from_store(store))
    for rec in store:
        yield from conv.convert(rec)
