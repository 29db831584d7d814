"""Paper broker: fills simulated from the market event stream the engine sees, tick by tick.

Fill rules (the README's "Paper fill assumptions" section says the same in prose):

- Orders are evaluated only on market events with a timestamp strictly after the time they were placed
  (their decision time); children of a bracket are armed at the entry fill's time. A reaction to a print never
  trades in that print or in the rest of its same-nanosecond sweep, and one print never both opens and closes
  a trade. Because the rule uses journaled times, a restored broker behaves exactly like the original.
- Market orders are armed at the moment they can first execute: the later of the decision time and the time
  of the event group being processed when they were sent (``BracketRequest.armed_ns``), so an order decided on
  the first event after a bar's end never trades in that event's same-nanosecond group (in TBBO the quote and
  the print of one record). They fill, for the whole quantity, on the first event strictly after that, at the
  prevailing opposite best: on a book update at its best ask (buy) / bid (sell); on a trade at the best ask /
  bid of the latest book update seen for the symbol (the quote the print traded against), never at the
  print's own price when a quote is known. Trades-only data (no quote ever seen, or that side of the book
  empty): at the print's price when the print's aggressor was on our side (a buy print lifted the ask we would
  pay), else one tick worse (a sell print hit the bid; the ask was at least one tick above it; an unknown
  aggressor counts as the opposite side). Then ``market_slippage_ticks`` against us.
- Limit orders fill at the limit price, never better. Rule ``through``: a trade strictly beyond the limit
  fills the whole remainder. Rule ``queue``: a trade beyond fills everything too; prints *at* the limit first
  consume ``queue_ahead_contracts`` (the orders ahead of ours), then fill ours, possibly partially.
- The per-order price rules are the pure functions of :mod:`tradebot.execution.fills`, which the fast path's
  compiled bracket loop runs too (one statement of each rule for both engines).
- Stop orders elect on a trade at or beyond the stop and fill at the stop, or at the trade price if it gapped
  past, plus ``stop_slippage_ticks`` against us.
- Stop and target are one-cancels-other: a fill of one shrinks the other to the open position, and a flat
  position cancels the rest.
- Bars only (``on_bar``): a market order fills at the open; a limit needs the bar to trade through it; a stop
  elects when the range reaches it (at the open if the bar opened beyond). A bar touching both stop and
  target is a stop (pessimistic), and on the bar that fills the entry only the stop is checked.
- Commission plus exchange fees per contract per side, integer cents, on every fill.
- Fill ids are ``<client order id>.<n>`` (n-th fill of that order): deterministic, so a replay after a crash
  regenerates the same id and the manager's de-duplication drops what it already has.
- State is restored from the journal (:meth:`PaperBroker.restore`); queue progress of resting limits is not
  journaled, so a restored limit starts again behind ``queue_ahead_contracts``.

Size: one broker: the fill rules above (the per-order arithmetic shared with the fast path in execution/fills.py),
the working-order book and its restore from the journal all act on the same orders.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from tradebot.core.config import Settings
from tradebot.core.contracts import UnknownContractError, spec_for, tick_value_of
from tradebot.core.logging import get_logger
from tradebot.core.types import BookUpdate, MarketEvent, Side, Trade
from tradebot.execution import fills
from tradebot.execution.journal import (
    CancelRequested,
    FlattenRequested,
    JournalEntry,
    ModifyRequested,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    ProtectRequested,
    SignalDecided,
)
from tradebot.execution.model import (
    TERMINAL_LEG,
    Ack,
    BracketRequest,
    BrokerEvent,
    Cancelled,
    Fill,
    FlattenRequest,
    Leg,
    LegRole,
    LegState,
    Modified,
    OrderType,
    OrderView,
    Reject,
    StatusReport,
    StopRequest,
    client_order_id,
)
from tradebot.execution.risk import MICRO_OF, MINI_OF, fee_table

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PaperConfig:
    stop_slippage_ticks: int = 1
    market_slippage_ticks: int = 0
    limit_fill_rule: str = "through"
    queue_ahead_contracts: int = 0
    fees_cents: dict[str, int] = field(default_factory=dict)
    """Commission + fees per contract per side, by root."""
    stock_cents_per_share: Decimal = Decimal(0)
    crypto_fee_bps: Decimal = Decimal(120)

    @classmethod
    def from_settings(cls, settings: Settings) -> PaperConfig:
        ex = settings.execution
        return cls(ex.stop_slippage_ticks, ex.market_slippage_ticks, ex.limit_fill_rule, ex.queue_ahead_contracts,
                   fee_table(settings), settings.stocks.commission_cents_per_share, settings.coinbase.taker_fee_bps)

    def fee_for(self, symbol: str, qty: int, price: int) -> int:
        """Commission and fees of one fill, whole cents rounded up (never in the trader's favour)."""
        per = self.fees_cents.get(symbol)
        if per is not None:
            return per * qty
        try:
            spec = spec_for(symbol)
        except UnknownContractError:
            return 0
        if spec.kind == "stock":
            return math.ceil(Fraction(self.stock_cents_per_share) * qty)
        if spec.kind == "crypto":  # a taker fee on the notional (paper fills are taken liquidity: the worse case)
            notional = price * qty * tick_value_of(spec)
            return math.ceil(notional * Fraction(self.crypto_fee_bps) / 10_000)
        return 0


@dataclass(slots=True)
class _SimLeg(Leg):
    """The one order representation (:class:`~tradebot.execution.model.Leg`) plus what only a simulated venue
    tracks."""

    queue_left: int = 0
    armed_ns: int = 0
    """Event time at activation: the order is evaluated only on events strictly later (a reaction to a print
    cannot trade in that print, nor in the rest of its same-timestamp sweep)."""


@dataclass(slots=True)
class _Bracket:
    signal_id: str
    entry: _SimLeg
    stop: _SimLeg
    target: _SimLeg
    exit_filled: int = 0
    exits: list[_SimLeg] = field(default_factory=list)

    @property
    def position(self) -> int:
        return self.entry.filled_qty - self.exit_filled


_ROLE_ORDER = {LegRole.ENTRY: 0, LegRole.EXIT: 1, LegRole.STOP: 2, LegRole.TARGET: 3}


class PaperBroker:
    """Implements :class:`~tradebot.execution.broker.Broker` (and ``restore``) with simulated fills."""

    name = "paper"

    def __init__(self, config: PaperConfig | None = None, data_symbols: Collection[str] | None = None) -> None:
        self.config = config or PaperConfig()
        self.data_symbols = set(data_symbols) if data_symbols is not None else None
        self._orders: dict[str, _SimLeg] = {}
        self._brackets: dict[str, _Bracket] = {}
        self._working: dict[str, list[_SimLeg]] = {}
        self._positions: dict[str, int] = {}
        self._events: deque[BrokerEvent] = deque()
        self._restoring = False
        self.anomalies: Counter[str] = Counter()
        """Transitions the order table refused (a simulator bug if ever non-zero)."""
        self._quotes: dict[str, BookUpdate] = {}
        """Latest book update per data symbol: the prevailing quote a market order meets on a trade."""

    # -- requests -----------------------------------------------------------------------------------

    def submit_bracket(self, req: BracketRequest) -> None:
        if req.entry_id in self._orders:
            self._status(req.entry_id, req.ts_ns)  # a re-sent request is answered, never executed twice
            return
        problem = _check_bracket(req)
        exit_side = Side.SELL if req.side == Side.BUY else Side.BUY
        ts = req.ts_ns
        entry = _SimLeg(req.entry_id, req.signal_id, LegRole.ENTRY, req.symbol, req.side, req.entry_type,
                        req.quantity, req.entry_price, LegState.WORKING, ts, ts,
                        queue_left=self.config.queue_ahead_contracts)
        stop = _SimLeg(req.stop_id, req.signal_id, LegRole.STOP, req.symbol, exit_side, OrderType.STOP, 0,
                       req.stop_price, LegState.HELD, ts, ts)
        target = _SimLeg(req.target_id, req.signal_id, LegRole.TARGET, req.symbol, exit_side, OrderType.LIMIT, 0,
                         req.target_price, LegState.HELD, ts, ts, queue_left=self.config.queue_ahead_contracts)
        for o in (entry, stop, target):
            self._orders[o.client_order_id] = o
        self._brackets[req.signal_id] = _Bracket(req.signal_id, entry, stop, target)
        if problem:
            for o in (entry, stop, target):
                self._move(o, LegState.REJECTED)
                o.reason = problem
            self._emit(Reject(req.entry_id, req.ts_ns, problem))
            return
        self._activate(entry, max(req.ts_ns, req.armed_ns))
        self._emit(Ack(req.entry_id, req.ts_ns))

    def cancel(self, client_order_id: str, ts_ns: int | None = None, reason: str = "requested") -> None:
        o = self._orders.get(client_order_id)
        if o is None or o.state in TERMINAL_LEG:
            return  # unknown or already done: nothing to cancel (the fill or cancel event already went out)
        ts = o.updated_ns if ts_ns is None else ts_ns
        self._terminate(o, LegState.CANCELLED, ts, reason)
        self._emit(Cancelled(o.client_order_id, ts, reason))
        b = self._brackets.get(o.signal_id)
        if b is not None and o.role == LegRole.ENTRY and b.position == 0:
            self._close_children(b, ts, "entry cancelled, flat" if o.filled_qty else "")

    def modify_stop(self, client_order_id: str, stop_price: int, ts_ns: int | None = None) -> None:
        o = self._orders.get(client_order_id)
        if o is None or o.state in TERMINAL_LEG or o.role != LegRole.STOP:
            return
        o.price = stop_price
        ts = o.updated_ns if ts_ns is None else ts_ns
        o.updated_ns = ts
        self._emit(Modified(o.client_order_id, ts, stop_price))

    def flatten(self, req: FlattenRequest) -> None:
        for coid in req.cancel_ids:
            self.cancel(coid, req.ts_ns, req.reason)
        if req.quantity <= 0 or req.exit_id in self._orders:
            return
        b = self._brackets.get(req.signal_id)
        o = _SimLeg(req.exit_id, req.signal_id, LegRole.EXIT, req.symbol, req.side, OrderType.MARKET, req.quantity,
                    None, LegState.WORKING, req.ts_ns, req.ts_ns)
        self._orders[o.client_order_id] = o
        if b is not None:
            b.exits.append(o)
        self._activate(o, req.ts_ns)
        self._emit(Ack(o.client_order_id, req.ts_ns))

    def place_stop(self, req: StopRequest) -> None:
        """A stand-alone stop for an open position (re-placed by the no-naked-position rule); it closes the
        bracket's position like the bracket's own stop (the target shrinks with it, one-cancels-other)."""
        if req.stop_id in self._orders:
            self._status(req.stop_id, req.ts_ns)
            return
        o = _SimLeg(req.stop_id, req.signal_id, LegRole.STOP, req.symbol, req.side, OrderType.STOP, req.quantity,
                    req.stop_price, LegState.WORKING, req.ts_ns, req.ts_ns)
        self._orders[o.client_order_id] = o
        if req.quantity <= 0:  # (no bracket of ours is fine: an adopted position's stop)
            self._move(o, LegState.REJECTED)
            o.reason = "no open position to protect"
            self._emit(Reject(o.client_order_id, req.ts_ns, o.reason))
            return
        self._activate(o, req.ts_ns)
        self._emit(Ack(o.client_order_id, req.ts_ns))

    def place_order(self, coid: str, symbol: str, side: Side, order_type: OrderType, quantity: int,
                    price: int | None, ts_ns: int) -> None:
        """One order outside any bracket, filled by the same rules (a broker stand-in's working order: the
        ProjectX stand-in serves its REST orders through this, so live-against-stand-in equals paper)."""
        if coid in self._orders:
            self._status(coid, ts_ns)
            return
        role = {OrderType.MARKET: LegRole.EXIT, OrderType.STOP: LegRole.STOP}.get(order_type, LegRole.TARGET)
        o = _SimLeg(coid, coid, role, symbol, side, order_type, quantity, price, LegState.WORKING, ts_ns, ts_ns,
                    queue_left=self.config.queue_ahead_contracts)
        self._orders[coid] = o
        self._activate(o, ts_ns)
        self._emit(Ack(coid, ts_ns))

    def amend_order(self, coid: str, ts_ns: int, quantity: int | None = None, price: int | None = None) -> bool:
        """Change a working standalone order's total size or price; ``False`` when it is not working."""
        o = self._orders.get(coid)
        if o is None or o.state in TERMINAL_LEG or o.state == LegState.HELD:
            return False
        if quantity is not None:
            if quantity < o.filled_qty or quantity <= 0:
                return False
            o.quantity = quantity
        if price is not None:
            o.price = price
        o.updated_ns = ts_ns
        if o.filled_qty >= o.quantity:
            self._terminate(o, LegState.FILLED, ts_ns)
        return True

    def request_status(self, client_order_id: str) -> None:
        o = self._orders.get(client_order_id)
        self._status(client_order_id, o.updated_ns if o else 0)

    def query_orders(self) -> list[OrderView]:
        return [o.view() for o in self._orders.values()]

    def query_positions(self) -> dict[str, int]:
        return {s: q for s, q in self._positions.items() if q}

    def poll_events(self) -> list[BrokerEvent]:
        out = list(self._events)
        self._events.clear()
        return out

    # -- market data --------------------------------------------------------------------------------

    def observe(self, ev: MarketEvent) -> None:
        """Keep the prevailing quote only (a restarted daemon re-reading data its journal already covers)."""
        if type(ev) is BookUpdate:
            self._quotes[ev.symbol] = ev

    def on_market_event(self, ev: MarketEvent) -> None:
        if type(ev) is BookUpdate:
            self._quotes[ev.symbol] = ev
        orders = self._working.get(ev.symbol)
        if not orders:
            return
        ts = ev.ts_event
        if isinstance(ev, Trade):
            for o in sorted(orders, key=_priority):
                if o.armed_ns < ts and o.state not in TERMINAL_LEG:
                    self._on_trade(o, ev, ev.price, ev.size, ev.ts_event)
        elif isinstance(ev, BookUpdate):
            slip = self.config.market_slippage_ticks
            bid, ask = _best(ev)
            for o in sorted(orders, key=_priority):
                if o.order_type != OrderType.MARKET or o.armed_ns >= ts or o.state in TERMINAL_LEG:
                    continue
                px = fills.market_on_book(o.side, bid, ask)
                if px != fills.NO_QUOTE:
                    self._fill(o, o.quantity - o.filled_qty, fills.slipped(o.side, px, slip), ev.ts_event)

    def on_bar(self, symbol: str, ts_ns: int, open_: int, high: int, low: int, close: int) -> None:
        """Bars only: see the module docstring for the (pessimistic) rules."""
        if not self._working.get(symbol):
            return
        for roles in ((LegRole.ENTRY, LegRole.EXIT), (LegRole.STOP,), (LegRole.TARGET,)):
            # Re-read the working list per role group: a stop armed by an entry filled on this bar is checked
            # on this bar too (pessimistic: the range may have reached it after the entry).
            for o in [o for o in self._working.get(symbol, ()) if o.role in roles]:
                if o.state not in TERMINAL_LEG:
                    self._bar_order(o, ts_ns, open_, high, low)

    def _bar_order(self, o: _SimLeg, ts_ns: int, open_: int, high: int, low: int) -> None:
        if o.armed_ns > ts_ns:
            return
        fresh_child = o.armed_ns == ts_ns
        if fresh_child and o.role != LegRole.STOP:
            return  # armed on this bar: only the stop may be hit on the entry's bar
        remaining = o.quantity - o.filled_qty
        if remaining <= 0:
            return
        # The bar's extreme against the order (a buy meets the low for a limit, the high for a stop).
        if o.order_type == OrderType.MARKET:
            self._fill(o, remaining, fills.slipped(o.side, open_, self.config.market_slippage_ticks), ts_ns)
        elif o.order_type == OrderType.LIMIT and o.price is not None:
            if fills.limit_through(o.side, o.price, low if o.side == Side.BUY else high):
                self._fill(o, remaining, o.price, ts_ns)
        elif (o.order_type == OrderType.STOP and o.price is not None
              and fills.stop_elected(o.side, o.price, high if o.side == Side.BUY else low)):
            base = o.price if fresh_child else open_  # a bar that opened beyond fills at its open
            self._fill(o, remaining, fills.stop_fill(o.side, o.price, base, self.config.stop_slippage_ticks), ts_ns)

    # -- restore ------------------------------------------------------------------------------------

    def restore(self, entries: Iterable[JournalEntry]) -> None:
        """Rebuild orders and positions from the journal (our only record of a simulated broker)."""
        self._restoring = True
        try:
            for entry in entries:
                self._restore_one(entry)
        finally:
            self._restoring = False
            self._events.clear()
        for o in self._orders.values():
            o.queue_left = self.config.queue_ahead_contracts

    def _restore_one(self, entry: JournalEntry) -> None:
        ev, ts = entry.event, entry.ts_ns
        if isinstance(ev, SignalDecided):
            if ev.taken:
                self.submit_bracket(BracketRequest(
                    ev.signal_id, ev.traded_symbol, ev.side, ev.traded_qty, ev.entry_type, ev.entry_price,
                    ev.stop_price, ev.target_price, ts, ev.armed_ns))
        elif isinstance(ev, CancelRequested | OrderCancelled):
            self.cancel(ev.client_order_id, ts, ev.reason)
        elif isinstance(ev, ModifyRequested):
            self.modify_stop(ev.client_order_id, ev.stop_price, ts)
        elif isinstance(ev, FlattenRequested):
            self.flatten(FlattenRequest(ev.signal_id, ev.symbol, ev.exit_id, ev.side, ev.quantity, ev.cancel_ids,
                                        ev.reason, ts))
        elif isinstance(ev, OrderFilled):
            o = self._orders.get(ev.client_order_id)
            if o is not None:
                self._fill(o, ev.quantity, ev.price, ev.ts_ns, ev.commission_cents)
        elif isinstance(ev, ProtectRequested):
            self.place_stop(StopRequest(ev.signal_id, ev.symbol, ev.stop_id, ev.side, ev.quantity, ev.stop_price, ts))
        elif isinstance(ev, OrderRejected):
            o = self._orders.get(ev.client_order_id)
            if o is not None and o.state not in TERMINAL_LEG:
                self._terminate(o, LegState.REJECTED, ts, ev.reason)

    # -- internals ----------------------------------------------------------------------------------

    def _driver(self, symbol: str) -> str:
        """The market data symbol that drives fills of ``symbol`` (an MES order on an ES-only feed: ES)."""
        if self.data_symbols is None or symbol in self.data_symbols:
            return symbol
        for other in (MINI_OF.get(symbol), MICRO_OF.get(symbol)):
            if other is not None and other in self.data_symbols:
                return other
        return symbol

    def _activate(self, o: _SimLeg, ts_ns: int) -> None:
        o.armed_ns = ts_ns
        self._working.setdefault(self._driver(o.symbol), []).append(o)

    def _terminate(self, o: _SimLeg, state: LegState, ts_ns: int, reason: str = "") -> None:
        was_working = o.state in (LegState.WORKING, LegState.PARTIALLY_FILLED)
        if not self._move(o, state):
            return
        o.updated_ns = ts_ns
        o.reason = reason or o.reason
        if was_working:
            lst = self._working.get(self._driver(o.symbol))
            if lst is not None and o in lst:
                lst.remove(o)

    def _close_children(self, b: _Bracket, ts_ns: int, reason: str) -> None:
        for child in (b.stop, b.target):
            if child.state not in TERMINAL_LEG:
                announce = child.state != LegState.HELD or child.filled_qty > 0
                self._terminate(child, LegState.CANCELLED, ts_ns, reason)
                if announce:
                    self._emit(Cancelled(child.client_order_id, ts_ns, reason))

    def _market_on_trade(self, o: _SimLeg, t: Trade) -> int:
        """The price a market order pays on a print, before slippage (module docstring: prevailing quote, else
        the print with the adverse trades-only assumption)."""
        q = self._quotes.get(t.symbol)
        bid, ask = _best(q) if q is not None else (fills.NO_QUOTE, fills.NO_QUOTE)
        return fills.market_on_trade(o.side, t.price, t.side, bid, ask)

    def _on_trade(self, o: _SimLeg, t: Trade, price: int, size: int, ts_ns: int) -> None:
        remaining = o.quantity - o.filled_qty
        if remaining <= 0:
            return
        if o.order_type == OrderType.MARKET:
            px = self._market_on_trade(o, t)
            self._fill(o, remaining, fills.slipped(o.side, px, self.config.market_slippage_ticks), ts_ns)
        elif o.order_type == OrderType.LIMIT and o.price is not None:
            if fills.limit_through(o.side, o.price, price):
                self._fill(o, remaining, o.price, ts_ns)
            elif price == o.price and self.config.limit_fill_rule == "queue":
                if o.queue_left >= size:
                    o.queue_left -= size
                    return
                available = size - o.queue_left
                o.queue_left = 0
                self._fill(o, min(remaining, available), o.price, ts_ns)
        elif (o.order_type == OrderType.STOP and o.price is not None
              and fills.stop_elected(o.side, o.price, price)):
            self._fill(o, remaining, fills.stop_fill(o.side, o.price, price, self.config.stop_slippage_ticks), ts_ns)

    def _fill(self, o: _SimLeg, qty: int, price: int, ts_ns: int, commission: int | None = None) -> None:
        if qty <= 0:
            return
        o.filled_qty += qty
        o.fills += 1
        o.updated_ns = ts_ns
        if o.filled_qty >= o.quantity:
            self._terminate(o, LegState.FILLED, ts_ns)
        else:
            self._move(o, LegState.PARTIALLY_FILLED)
        signed = qty if o.side == Side.BUY else -qty
        self._positions[o.symbol] = self._positions.get(o.symbol, 0) + signed
        fee = self.config.fee_for(o.symbol, qty, price) if commission is None else commission
        self._emit(Fill(f"{o.client_order_id}.{o.fills}", o.client_order_id, o.symbol, o.side, qty, price, ts_ns, fee))
        b = self._brackets.get(o.signal_id)
        if b is None:
            return
        if o.role == LegRole.ENTRY:
            for child in (b.stop, b.target):
                if child.state in TERMINAL_LEG:
                    continue
                child.quantity = child.filled_qty + b.position
                if child.state == LegState.HELD and self._move(child, LegState.WORKING):
                    child.updated_ns = ts_ns
                    self._activate(child, ts_ns)
            return
        b.exit_filled += qty
        for child in (b.stop, b.target):
            if child is not o and child.state not in TERMINAL_LEG:
                child.quantity = child.filled_qty + max(b.position, 0)
        if b.position <= 0 and b.entry.state in TERMINAL_LEG:
            self._close_children(b, ts_ns, "oco")

    def _move(self, o: _SimLeg, state: LegState) -> bool:
        """The simulated venue obeys the same order transition table as the ledger; a move it refuses would be a
        simulator bug: counted and logged, the order left as it was."""
        if o.can_move(state):
            o.state = state
            return True
        self.anomalies["illegal_leg_transition"] += 1
        log.error("paper broker: illegal order transition refused", client_order_id=o.client_order_id,
                  state=o.state.value, to=state.value)
        return False

    def _status(self, coid: str, ts_ns: int) -> None:
        o = self._orders.get(coid)
        self._emit(StatusReport(coid, ts_ns, o.state if o else None, o.filled_qty if o else 0))

    def _emit(self, ev: BrokerEvent) -> None:
        if not self._restoring:
            self._events.append(ev)


def _best(book: BookUpdate) -> tuple[int, int]:
    """Best bid and ask of a book update (``fills.NO_QUOTE`` for an empty side)."""
    return (book.bid_px[0] if book.bid_px else fills.NO_QUOTE, book.ask_px[0] if book.ask_px else fills.NO_QUOTE)


def _priority(o: _SimLeg) -> int:
    return _ROLE_ORDER[o.role]


def _check_bracket(req: BracketRequest) -> str:
    if req.quantity <= 0:
        return "quantity must be positive"
    long = req.side == Side.BUY
    if (req.stop_price >= req.target_price) if long else (req.stop_price <= req.target_price):
        return "stop must be on the losing side of the target"
    if req.entry_price is not None and req.entry_type != OrderType.MARKET:
        e = req.entry_price
        if not ((req.stop_price < e < req.target_price) if long else (req.target_price < e < req.stop_price)):
            return "entry must lie between stop and target"
    elif req.entry_type != OrderType.MARKET:
        return f"{req.entry_type.value} entry needs a price"
    return ""


__all__ = ["PaperBroker", "PaperConfig", "client_order_id"]
