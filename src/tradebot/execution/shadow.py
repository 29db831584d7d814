"""The shadow model: in live mode the paper broker trades beside the real one on the same market data.

Every request the manager sends to the live broker is mirrored to a paper broker (same client order ids, same
times), and every market event the manager sees goes to both. The paper broker's answers never reach the
manager: they are the *model* of what should have happened. Per order leg the shadow records, on our clock:

- **signal -> submit**: the intent's event time to the moment the request left for the broker;
- **submit -> ack** and **submit -> fill**: how long the broker took to answer and to fill;
- **slippage**: the live average fill price against the model's fill of the same order, in ticks and cents
  (positive = live was worse), so a stop that the exchange filled two ticks beyond where the paper rules filled it
  shows as two ticks and their dollar value.

Rows go to the ``shadow_legs`` table (a measurement, kept apart from the journal: the model never changes
execution state), and the daily digest shows live against model. A failing write is counted and logged, never
raised into the trading loop.

Wiring is one line where the live broker is built: ``broker = ShadowBroker(live, settings, store)``; the wrapper
is itself a :class:`~tradebot.execution.brokers.LiveBroker` and forwards everything else to the live adapter.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from tradebot.core.calendar import calendar_for
from tradebot.core.config import Settings
from tradebot.core.contracts import UnknownContractError, spec_for, tick_value_of
from tradebot.core.logging import get_logger
from tradebot.core.types import MarketEvent, Side
from tradebot.execution.brokers import LiveBroker, PreflightCheck
from tradebot.execution.journal import JournalEntry
from tradebot.execution.model import (
    Ack,
    BracketRequest,
    BrokerEvent,
    Fill,
    FlattenRequest,
    LegRole,
    OrderView,
    StopRequest,
    split_client_order_id,
)
from tradebot.execution.paper import PaperBroker, PaperConfig
from tradebot.state.store import StateStore

log = get_logger(__name__)
TICK_VALUE_SCALE = 1000
"""``tick_value_cents`` in ``shadow_legs`` is stored in thousandths of a cent (exact for every future)."""


@dataclass
class ShadowLeg:
    """One order: when it was decided, sent, acknowledged and filled, live and in the model."""

    client_order_id: str
    signal_id: str
    role: str
    symbol: str
    side: int
    trading_day: str
    signal_ns: int
    submit_ns: int
    tick_value: Fraction
    ack_ns: int | None = None
    fill_ns: int | None = None
    live_qty: int = 0
    live_value: int = 0
    live_commission_cents: int = 0
    model_qty: int = 0
    model_value: int = 0
    model_commission_cents: int = 0
    model_fill_ns: int | None = None

    def row(self) -> dict[str, Any]:
        return {"client_order_id": self.client_order_id, "signal_id": self.signal_id, "role": self.role,
                "symbol": self.symbol, "side": self.side, "trading_day": self.trading_day,
                "signal_ns": self.signal_ns, "submit_ns": self.submit_ns, "ack_ns": self.ack_ns,
                "fill_ns": self.fill_ns, "live_qty": self.live_qty, "live_value": self.live_value,
                "live_commission_cents": self.live_commission_cents, "model_qty": self.model_qty,
                "model_value": self.model_value, "model_commission_cents": self.model_commission_cents,
                "model_fill_ns": self.model_fill_ns,
                "tick_value_cents": round(self.tick_value * TICK_VALUE_SCALE)}


class ShadowBroker:
    """The live broker, with a paper model beside it; the manager sees only the live broker's answers."""

    def __init__(self, live: LiveBroker, settings: Settings, store: StateStore, *,
                 symbols: Sequence[str] | None = None, model: PaperBroker | None = None,
                 clock: Callable[[], int] = time.time_ns, day_of: Callable[[int], str] | None = None) -> None:
        """``symbols``: the market data the daemon feeds (the model fills a tier's MES order from ES data)."""
        self.live = live
        self.name = live.name
        syms = list(symbols) if symbols else settings.symbol_list
        self.model = model if model is not None else PaperBroker(PaperConfig.from_settings(settings),
                                                                 data_symbols=syms)
        self.store = store
        self.clock = clock
        if day_of is None:
            cal = calendar_for(spec_for(syms[0]).session)

            def day_of(ts_ns: int) -> str:
                try:
                    return cal.session_for(ts_ns).trading_date.isoformat()
                except ValueError:
                    return ""
        self.day_of = day_of
        self.legs: dict[str, ShadowLeg] = {}
        self.stats: Counter[str] = Counter()

    # -- bookkeeping --------------------------------------------------------------------------------

    def _leg(self, coid: str, signal_id: str, role: LegRole, symbol: str, side: Side, signal_ns: int,
             submit_ns: int) -> None:
        try:
            tv = Fraction(tick_value_of(spec_for(symbol)))
        except UnknownContractError:
            tv = Fraction(0)
        day = self.day_of(signal_ns)
        if coid not in self.legs:  # saved now, so a request that is never answered shows too
            self.legs[coid] = ShadowLeg(coid, signal_id, role.value, symbol, int(side), day, signal_ns, submit_ns, tv)
            self._save(self.legs[coid])

    def _save(self, leg: ShadowLeg) -> None:
        try:
            self.store.upsert_shadow_leg(leg.row())
            self.stats["rows_written"] += 1
        except Exception as exc:  # a measurement must never stop trading
            self.stats["write_errors"] += 1
            log.error("shadow row not written", client_order_id=leg.client_order_id, error=repr(exc))

    def _mirror(self, method: str, *args: Any) -> None:
        try:
            getattr(self.model, method)(*args)
        except Exception as exc:
            self.stats["model_errors"] += 1
            log.error("shadow model request failed", method=method, error=repr(exc))

    # -- Broker: requests go to both ----------------------------------------------------------------

    def submit_bracket(self, req: BracketRequest) -> None:
        now = self.clock()
        self.live.submit_bracket(req)
        exit_side = Side.SELL if req.side == Side.BUY else Side.BUY
        self._leg(req.entry_id, req.signal_id, LegRole.ENTRY, req.symbol, req.side, req.ts_ns, now)
        self._leg(req.stop_id, req.signal_id, LegRole.STOP, req.symbol, exit_side, req.ts_ns, now)
        self._leg(req.target_id, req.signal_id, LegRole.TARGET, req.symbol, exit_side, req.ts_ns, now)
        self.stats["brackets"] += 1
        self._mirror("submit_bracket", req)

    def cancel(self, client_order_id: str) -> None:
        self.live.cancel(client_order_id)
        self._mirror("cancel", client_order_id)

    def modify_stop(self, client_order_id: str, stop_price: int) -> None:
        self.live.modify_stop(client_order_id, stop_price)
        self._mirror("modify_stop", client_order_id, stop_price)

    def flatten(self, req: FlattenRequest) -> None:
        now = self.clock()
        self.live.flatten(req)
        self._leg(req.exit_id, req.signal_id, LegRole.EXIT, req.symbol, req.side, req.ts_ns, now)
        # The model closes what *it* holds: its stop or target may already have closed what live still has.
        held = abs(self.model.query_positions().get(req.symbol, 0))
        self._mirror("flatten", FlattenRequest(req.signal_id, req.symbol, req.exit_id, req.side,
                                               min(req.quantity, held), req.cancel_ids, req.reason, req.ts_ns))

    def place_stop(self, req: StopRequest) -> None:
        now = self.clock()
        self.live.place_stop(req)
        self._leg(req.stop_id, req.signal_id, LegRole.STOP, req.symbol, req.side, req.ts_ns, now)
        self._mirror("place_stop", req)

    def request_status(self, client_order_id: str) -> None:
        self.live.request_status(client_order_id)

    def query_orders(self) -> list[OrderView]:
        return self.live.query_orders()

    def query_positions(self) -> dict[str, int]:
        return self.live.query_positions()

    def on_market_event(self, ev: MarketEvent) -> None:
        self.live.on_market_event(ev)
        try:
            self.model.on_market_event(ev)
        except Exception as exc:
            self.stats["model_errors"] += 1
            log.error("shadow model market event failed", error=repr(exc))

    def poll_events(self) -> list[BrokerEvent]:
        """The live broker's answers (for the manager), after noting their times; the model's are consumed here."""
        now = self.clock()
        for mev in self.model.poll_events():
            if isinstance(mev, Fill):
                self._model_fill(mev)
        events = self.live.poll_events()
        for ev in events:
            leg = self.legs.get(getattr(ev, "client_order_id", ""))
            if leg is None:
                continue
            if isinstance(ev, Ack) and leg.ack_ns is None:
                leg.ack_ns = now
                self._save(leg)
            elif isinstance(ev, Fill):
                if leg.fill_ns is None:
                    leg.fill_ns = now
                    if leg.ack_ns is None:  # a fill implies the ack (some brokers send only the fill)
                        leg.ack_ns = now
                leg.live_qty += ev.quantity
                leg.live_value += ev.price * ev.quantity
                leg.live_commission_cents += ev.commission_cents
                self.stats["live_fills"] += 1
                self._save(leg)
        return events

    def _model_fill(self, f: Fill) -> None:
        leg = self.legs.get(f.client_order_id)
        if leg is None:
            parsed = split_client_order_id(f.client_order_id)
            if parsed is None:
                return
            sid, role = parsed
            leg = ShadowLeg(f.client_order_id, sid, role.value, f.symbol, int(f.side),
                            self.day_of(f.ts_ns), f.ts_ns, f.ts_ns,
                            Fraction(0))
            self.legs[f.client_order_id] = leg
        leg.model_qty += f.quantity
        leg.model_value += f.price * f.quantity
        leg.model_commission_cents += f.commission_cents
        if leg.model_fill_ns is None:
            leg.model_fill_ns = f.ts_ns
        self.stats["model_fills"] += 1
        self._save(leg)

    # -- LiveBroker: the connection is the live adapter's -------------------------------------------

    async def connect(self) -> None:
        await self.live.connect()

    def preflight(self) -> list[PreflightCheck]:
        return self.live.preflight()

    def set_wakeup(self, callback: Callable[[], None]) -> None:
        self.live.set_wakeup(callback)

    def query_fills(self) -> list[Fill]:
        return self.live.query_fills()

    @property
    def connected(self) -> bool:
        return self.live.connected

    async def close(self) -> None:
        await self.live.close()

    def restore(self, records: Iterable[JournalEntry]) -> None:
        """After a restart the model resumes from the journal (the live account's state); the live adapter
        re-attaches its own orders when it knows how."""
        records = list(records)
        restore = getattr(self.live, "restore", None)
        if restore is not None:
            restore(records)
        self.model.restore(records)

    def __getattr__(self, name: str) -> Any:
        """Adapter-specific extras (a stand-in's test hooks, a vendor's margin call) pass through."""
        return getattr(self.live, name)


def shadowed(live: LiveBroker, settings: Settings, store: StateStore, symbols: Sequence[str]) -> LiveBroker:
    """The live broker with the shadow model beside it (``TRADEBOT_EXECUTION__SHADOW_MODEL``, on by default)."""
    return ShadowBroker(live, settings, store, symbols=symbols) if settings.execution.shadow_model else live


# ---------------------------------------------------------------------------------------------------
# Live against model, for the digest and ``status``


def _percentile(values: Sequence[int], pct: float) -> int | None:
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(pct / 100 * (len(s) - 1))))
    return s[k]


def leg_slippage(row: dict[str, Any]) -> tuple[Fraction, int] | None:
    """``(ticks per contract, cents)`` the live fill was worse than the model's (negative: better); ``None``
    when either side has no fill."""
    lq, mq = int(row["live_qty"]), int(row["model_qty"])
    if lq <= 0 or mq <= 0:
        return None
    sign = 1 if int(row["side"]) == int(Side.BUY) else -1
    ticks = (Fraction(int(row["live_value"]), lq) - Fraction(int(row["model_value"]), mq)) * sign
    cents = round(ticks * lq * Fraction(int(row["tick_value_cents"]), TICK_VALUE_SCALE))
    return ticks, cents


def _net_cents(rows: Sequence[dict[str, Any]], which: str) -> int:
    """Net P&L of the closed round trips among ``rows`` (one bracket's legs) on the ``live`` or ``model`` side."""
    total = Fraction(0)
    buy_qty = sell_qty = 0
    fees = 0
    for r in rows:
        q, v = int(r[f"{which}_qty"]), int(r[f"{which}_value"])
        tv = Fraction(int(r["tick_value_cents"]), TICK_VALUE_SCALE)
        if int(r["side"]) == int(Side.BUY):
            total -= v * tv
            buy_qty += q
        else:
            total += v * tv
            sell_qty += q
        fees += int(r[f"{which}_commission_cents"])
    if buy_qty != sell_qty or buy_qty == 0:
        return 0
    return round(total) - fees


def compare(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Live against model over one day's legs: counts, P&L, slippage, latency percentiles (ms)."""
    by_bracket: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_bracket.setdefault(str(r["signal_id"]), []).append(r)

    def closed(legs: list[dict[str, Any]], which: str) -> bool:
        b = sum(int(r[f"{which}_qty"]) for r in legs if int(r["side"]) == int(Side.BUY))
        s = sum(int(r[f"{which}_qty"]) for r in legs if int(r["side"]) != int(Side.BUY))
        return b > 0 and b == s

    live_trades = sum(closed(legs, "live") for legs in by_bracket.values())
    model_trades = sum(closed(legs, "model") for legs in by_bracket.values())
    live_pnl = sum(_net_cents(legs, "live") for legs in by_bracket.values())
    model_pnl = sum(_net_cents(legs, "model") for legs in by_bracket.values())
    slips = [s for r in rows if (s := leg_slippage(r)) is not None]
    ack = [int(r["ack_ns"]) - int(r["submit_ns"]) for r in rows if r["ack_ns"] is not None
           and str(r["role"]) in (LegRole.ENTRY.value, LegRole.EXIT.value)]
    fill = [int(r["fill_ns"]) - int(r["submit_ns"]) for r in rows if r["fill_ns"] is not None
            and str(r["role"]) in (LegRole.ENTRY.value, LegRole.EXIT.value)]
    decide = [int(r["submit_ns"]) - int(r["signal_ns"]) for r in rows if str(r["role"]) == LegRole.ENTRY.value]

    def ms(values: list[int]) -> dict[str, float | None]:
        return {f"p{p}": (None if (v := _percentile(values, p)) is None else round(v / 1e6, 1)) for p in (50, 95, 99)}

    only_live = sum(1 for r in rows if int(r["live_qty"]) > 0 and int(r["model_qty"]) == 0)
    only_model = sum(1 for r in rows if int(r["model_qty"]) > 0 and int(r["live_qty"]) == 0)
    return {
        "brackets": len(by_bracket), "live_trades": live_trades, "model_trades": model_trades,
        "live_pnl_cents": live_pnl, "model_pnl_cents": model_pnl,
        "filled_both": len(slips), "filled_live_only": only_live, "filled_model_only": only_model,
        "slippage_ticks_mean": round(float(sum((t for t, _ in slips), Fraction(0)) / len(slips)), 2) if slips else None,
        "slippage_ticks_max": round(float(max(t for t, _ in slips)), 2) if slips else None,
        "slippage_cents_total": sum(c for _, c in slips),
        "slippage_cents_max": max((c for _, c in slips), default=None),
        "signal_to_submit_ms": ms(decide), "submit_to_ack_ms": ms(ack), "submit_to_fill_ms": ms(fill),
    }
