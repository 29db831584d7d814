"""Aggressor side inference: the one place a trade without an exchange side gets one.

Databento trades with side ``N``, Polygon equity prints, CSV files without a side column and any file whose
side was stripped all reach the engine through :class:`tradebot.feeds.validation.Validator`, which hands every
accepted book and trade to a :class:`SideInference`. A trade the source left unsided is classified there:

* **quote rule** against the prevailing book of its contract (the last *accepted* book before the trade, in
  stream order: in TBBO and in MBP records of a trade the book is the state just before the print): above the
  midpoint a buy, below a sell;
* **tick rule** at the midpoint, or when there is no book (or one side of it is empty): a price above the
  previous trade's is a buy, below a sell, unchanged keeps the previous direction;
* ``UNKNOWN`` / ``SideRule.NONE`` when neither knows (the first trade of a stream, at the mid or bookless).

The rule that decided is carried on the event (``Trade.side_rule``) so inspection and analytics can tell an
exchange side from an inferred one. Exchange-sided trades pass unchanged but still move the tick-rule state
(a price is a price whoever labelled its side). State is per raw contract: ESH2's book says nothing about an
ESM2 print. Prices are compared as integers in whatever unit the caller uses (ticks, fixed point): the rules
only order prices and compare ``2 * price`` with ``bid + ask``, so no midpoint is ever rounded.

Agreement against true sides (``benchmarks/side_inference.py`` on the real ES tape) is in the README.
"""

from __future__ import annotations

from tradebot.core.types import BookUpdate, Side, SideRule, Trade, new_trade

_UNKNOWN = Side.UNKNOWN
_BUY = Side.BUY
_SELL = Side.SELL


class SideClassifier:
    """One stream's state: the prevailing quote and the tick-rule memory."""

    __slots__ = ("ask", "bid", "last_px", "tick_side")

    def __init__(self) -> None:
        self.bid: int | None = None
        self.ask: int | None = None
        self.last_px: int | None = None
        self.tick_side = _UNKNOWN

    def quote(self, bid: int | None, ask: int | None) -> None:
        """The book now prevailing; an empty side (``None``) or a crossed quote leaves only the tick rule."""
        usable = bid is not None and ask is not None and 0 < bid <= ask
        self.bid, self.ask = (bid, ask) if usable else (None, None)

    def observe(self, price: int) -> None:
        """A trade whose side is already known: only the tick-rule memory moves."""
        last = self.last_px
        if last is not None:
            if price > last:
                self.tick_side = _BUY
            elif price < last:
                self.tick_side = _SELL
        self.last_px = price

    def trade(self, price: int | None) -> tuple[Side, SideRule]:
        """:meth:`classify` for a feed's raw price, which may be missing (the validator will reject it)."""
        if price is None:
            return _UNKNOWN, SideRule.NONE
        return self.classify(price)

    def classify(self, price: int) -> tuple[Side, SideRule]:
        """Side and rule of an unsided trade at ``price`` (which then becomes the previous price)."""
        self.observe(price)
        bid, ask = self.bid, self.ask
        if bid is not None and ask is not None:
            twice, spread_sum = 2 * price, bid + ask  # integer midpoint comparison, no halves
            if twice > spread_sum:
                return _BUY, SideRule.QUOTE
            if twice < spread_sum:
                return _SELL, SideRule.QUOTE
        if self.tick_side is not _UNKNOWN:
            return self.tick_side, SideRule.TICK
        return _UNKNOWN, SideRule.NONE


class SideInference:
    """Per-contract classifiers over a validated stream, with a count of trades by the rule that decided."""

    __slots__ = ("_streams", "by_rule")

    def __init__(self) -> None:
        self._streams: dict[str, SideClassifier] = {}
        self.by_rule = [0] * len(SideRule)
        """Accepted trades by ``SideRule`` value (exchange, quote, tick, none)."""

    def _stream(self, key: str) -> SideClassifier:
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = SideClassifier()
        return st

    def book(self, ev: BookUpdate) -> None:
        st = self._streams.get(ev.raw_symbol)
        if st is None:
            st = self._stream(ev.raw_symbol)
        bid = ev.bid_px
        ask = ev.ask_px
        if bid and ask and 0 < bid[0] <= ask[0]:  # SideClassifier.quote, written out (once per book on the live path)
            st.bid = bid[0]
            st.ask = ask[0]
        else:
            st.bid = st.ask = None

    def trade(self, ev: Trade) -> Trade:
        """``ev`` itself when it has a side, else the same trade with the inferred side and its rule."""
        st = self._streams.get(ev.raw_symbol)
        if st is None:
            st = self._stream(ev.raw_symbol)
        if ev.side is not _UNKNOWN:
            price = ev.price  # SideClassifier.observe, written out: every exchange-sided print passes here
            last = st.last_px
            if last is not None and price != last:
                st.tick_side = _BUY if price > last else _SELL
            st.last_px = price
            self.by_rule[ev.side_rule] += 1
            return ev
        side, rule = st.classify(ev.price)
        self.by_rule[rule] += 1
        if rule is SideRule.NONE and ev.side_rule is SideRule.NONE:
            return ev
        return _with_side(ev, side, rule)

    def on_gap(self) -> None:
        """Market data was missed (a reconnect): neither the books nor the last prices seen before the gap say
        anything reliable about the prints after it."""
        self._streams.clear()

    def counts(self) -> dict[str, int]:
        """``{"exchange": n, "quote": n, "tick": n, "none": n}`` over the trades seen so far."""
        return {r.name.lower(): self.by_rule[r] for r in SideRule}


def _with_side(ev: Trade, side: Side, rule: SideRule) -> Trade:
    return new_trade(ev.symbol, ev.ts_event, ev.ts_recv, ev.price, ev.size, side, rule, ev.sequence, ev.raw_symbol)


def format_side_rules(counts: dict[str, int]) -> str:
    """Accepted trades by who decided their aggressor side (``data inspect`` and ``analyze`` print this)."""
    return (f"exchange {counts.get('exchange', 0):,}, quote rule {counts.get('quote', 0):,}, "
            f"tick rule {counts.get('tick', 0):,}, undecided {counts.get('none', 0):,}")
