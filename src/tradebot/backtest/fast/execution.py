"""The execution manager's decisions for the fast path: sessions, tiers, margin, gates, daily state.

Between brackets nothing in the manager depends on individual ticks: the trading day starts with the first
event (tier evaluated, margin checked), the auto-flatten happens once event time reaches it, and daily limits
only move with fills. So this model keeps that state in Python at bar granularity and hands each taken
intent to :func:`tradebot.backtest.fast.kernels.run_bracket`, which plays the bracket tick by tick until it
closes and reports the fills, the limit hit and the auto-flatten it saw. The rules are the manager's own
functions where they are functions (``choose_contract``, ``tier_for_balance``, ``margin_for``, ``fee_table``,
the intent checks), restated where they are methods of the journaled manager; the parity tests pin both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tradebot.backtest.fast import kernels as kn
from tradebot.backtest.fast.load import DayColumns, UnsupportedError
from tradebot.core.calendar import ET, ExchangeCalendar, Session, local_ns
from tradebot.core.config import Settings
from tradebot.core.contracts import spec_for
from tradebot.core.orders import OrderIntent
from tradebot.core.values import CapitalTier
from tradebot.execution.gate import intent_problem
from tradebot.execution.risk import (
    choose_contract,
    fee_table,
    margin_for,
    same_family,
    tier_for_balance,
    usd_to_cents,
)
from tradebot.execution.trades import TradeRecord

_FAR = 1 << 62
_REASONS = {kn.X_STOP: "stop", kn.X_TARGET: "target", kn.X_AUTO_FLATTEN: "auto_flatten",
            kn.X_PROFIT_TARGET: "profit_target", kn.X_LOSS_LIMIT: "loss_limit"}


@dataclass
class FastBracket:
    signal_id: str
    symbol: str
    side: int
    quantity: int
    submitted_ns: int
    pattern: str
    close_pos: int | None = None
    """Position code of the event that ended it (closed or cancelled); ``None``: still live at the end."""
    closed_ns: int | None = None
    """Time of the exit fill (closed brackets only)."""
    record: TradeRecord | None = None


class ExecutionModel:
    """One trading day of the manager as seen by the decisions (started by the day's first event)."""

    def __init__(self, settings: Settings, cols: DayColumns, calendar: ExchangeCalendar) -> None:
        self.settings = settings
        self.ex = ex = settings.execution
        self.cols = cols
        self.root = cols.spec.root
        self.fees = fee_table(settings)
        self.tiers = settings.execution.tiers
        self.profit_cents = usd_to_cents(settings.daily_profit_target)
        self.loss_cents = usd_to_cents(settings.daily_loss_limit)
        self.balance = usd_to_cents(ex.starting_balance)
        ok = np.flatnonzero(cols.book_ok | cols.trade_ok)
        self.first_pos = int(2 * ok[0] + (0 if cols.book_ok[ok[0]] else 1))
        self.resume_ns = int(cols.rts[ok[0]])
        self._trade_rec: NDArray[np.int32] = cols.trade_records
        self._book_rec: NDArray[np.int32] = cols.book_records
        self.market = kn.BracketMarket(cols.rts, cols.book_ok, cols.trade_ok, cols.tpx, cols.tside, cols.bid, cols.ask)
        sess: Session = calendar.session_for(self.resume_ns)
        self.session = sess
        self.day = sess.trading_date
        self.flatten_at = (min(local_ns(sess.trading_date, ex.auto_flatten_time, ET),
                               sess.close_ns - 300 * 1_000_000_000) if ex.auto_flatten else _FAR)
        self.flattened = False
        self.halted = False
        """Trading state is not ACTIVE (margin at the session start, a daily limit, the auto-flatten)."""
        self.limit_done = False
        self.had_fill = False
        self.day_net = 0
        self.tier: CapitalTier | None = tier_for_balance(self.tiers, self.balance) if ex.tiers_enabled else None
        self.margin_ok: dict[str, bool] = {}
        traded = choose_contract(settings, self.tier, self.root, 1)[0]
        if not self._margin(traded):
            self.halted = True  # the session-wide check blocked every traded contract
        self.signals: set[str] = set()
        self.brackets: list[FastBracket] = []
        self.taken = 0

    # -- queries ---------------------------------------------------------------------------------------

    def _margin(self, symbol: str) -> bool:
        ok = self.margin_ok.get(symbol)
        if ok is None:
            ok = self.margin_ok[symbol] = margin_for(self.settings, symbol, self.day, None).ok
        return ok

    def _live(self, pos: int) -> FastBracket | None:
        """The bracket not yet ended by the events up to ``pos`` (``-1``: all events), if any."""
        if not self.brackets:
            return None
        b = self.brackets[-1]
        if b.close_pos is None or (pos >= 0 and b.close_pos > pos):
            return b
        return None

    def has_position(self, pos: int, decided_ns: int) -> bool:
        """As of the bar's end ``decided_ns`` (``TradingCore.has_position``): submitted before it and not closed
        by an event before it, even if the bar's closing event (at ``pos``) closed it."""
        if not self.brackets:
            return False
        b = self.brackets[-1]
        if b.submitted_ns >= decided_ns:
            return False
        if b.close_pos is None or (pos >= 0 and b.close_pos > pos):
            return True
        return b.closed_ns is not None and b.closed_ns >= decided_ns

    def _time_at(self, pos: int) -> int:
        """The manager's clock after the events up to ``pos``: the latest event time it saw. Each validated
        stream (trades, books) is in time order, so that is the later of the two streams' last events."""
        r = pos // 2 if pos >= 0 else self.cols.n
        latest = -1
        for recs, limit in ((self._trade_rec, r + 1 if pos < 0 or pos % 2 == 1 else r), (self._book_rec, r + 1)):
            k = int(np.searchsorted(recs, np.int32(limit)))  # the array's own dtype: no per-call cast
            if k:
                latest = max(latest, int(self.cols.rts[recs[k - 1]]))
        return latest

    # -- the intent ------------------------------------------------------------------------------------

    def on_intent(self, intent: OrderIntent, pos: int) -> bool:
        """The manager's verdict on a taken decision made at the close of a bar (``pos``: the closing event)."""
        if intent.signal_id in self.signals:
            return False
        self.signals.add(intent.signal_id)
        t = intent.ts_ns
        if t >= self.session.close_ns:
            return False  # the manager rolls to the next session: an intent from before it
        if self.ex.auto_flatten and not self.flattened and max(self._time_at(pos), t) >= self.flatten_at:
            self.flattened = self.halted = True
        if t < self.session.open_ns or self.halted or intent_problem(intent):
            return False
        symbol, qty = choose_contract(self.settings, self.tier, intent.symbol, intent.quantity)
        if qty <= 0 or not self._margin(symbol):
            return False
        live = self._live(pos)
        if live is not None and same_family(live.symbol, symbol):
            return False
        self.taken += 1
        b = FastBracket(intent.signal_id, symbol, int(intent.side), qty, t, intent.pattern)
        self.brackets.append(b)
        if pos < 0:
            return True  # decided at the end of data: nothing left to fill it
        self._play(b, intent, pos)
        return True

    def _play(self, b: FastBracket, intent: OrderIntent, pos: int) -> None:
        ex = self.ex
        tv = spec_for(b.symbol).tick_value_cents
        fee = self.fees.get(b.symbol, 0)
        before = self.day_net
        o = kn.run_bracket(self.market, kn.BracketParams(
            start_pos=pos + 1, resume_ns=self.resume_ns, armed_ns=max(intent.ts_ns, self._time_at(pos)),
            side=b.side, qty=b.quantity, stop=int(intent.stop_price), target=int(intent.target_price), tick_value=tv,
            fee=fee, market_slip=ex.market_slippage_ticks, stop_slip=ex.stop_slippage_ticks, day_net=self.day_net,
            had_fill=self.had_fill, profit_cents=self.profit_cents, loss_cents=self.loss_cents,
            include_unrealized=ex.limits_include_unrealized, flatten_on_limit=ex.flatten_on_limit,
            limit_done=self.limit_done, flatten_at=self.flatten_at if not self.flattened else _FAR,
            session_close=self.session.close_ns))
        if o.status == kn.ST_UNSUPPORTED:
            raise UnsupportedError("a position lives across a session roll")
        self.day_net = o.day_net
        self.had_fill = o.had_fill
        self.balance += self.day_net - before
        if o.flatten_pos >= 0:
            self.flattened = self.halted = True
        if o.limit > 0:
            self.limit_done = self.halted = True
        if o.status in (kn.ST_CLOSED, kn.ST_CANCELLED):
            b.close_pos = o.exit_pos
        if o.status == kn.ST_CLOSED:
            b.closed_ns = o.exit_ts
            b.record = TradeRecord.make(
                trade_id=b.signal_id, symbol=b.symbol, side=b.side, quantity=b.quantity, entry_ns=o.entry_ts,
                exit_ns=o.exit_ts, entry_price=o.entry_px, exit_price=o.exit_px, tick_value_cents=tv,
                commission_cents=2 * fee * b.quantity, pattern=b.pattern, exit_reason=_REASONS[o.reason],
                signal_id=b.signal_id)

    def trades(self) -> list[TradeRecord]:
        recs = [b.record for b in self.brackets if b.record is not None]
        return sorted(recs, key=lambda t: (t.exit_ns, t.signal_id))
