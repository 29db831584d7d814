"""The dashboard API's response shapes (they make the OpenAPI document say what each endpoint returns).

Prices are exact decimal strings in the contract's tick grid; money is integer cents; times are UTC nanoseconds
(the page shows them in US Eastern).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class Health(_Out):
    ok: bool
    service: str
    version: str
    started_ns: int
    daemon_stream: bool
    database: bool
    heartbeat_age_s: float | None


class Trade(_Out):
    signal_id: str
    symbol: str
    side: Literal["LONG", "SHORT"]
    quantity: int
    entry: str | None
    exit: str | None
    stop: str | None
    target: str | None
    opened_ns: int | None
    closed_ns: int
    pnl_cents: int
    realized_cents: int
    commission_cents: int
    exit_reason: str
    pattern: str
    trading_day: str | None


class Trades(_Out):
    trades: list[Trade]


class Signal(_Out):
    signal_id: str
    ts_ns: int
    symbol: str
    outcome: Literal["taken", "refused", "rejected"]
    pattern: str
    direction: str
    regime: str
    confidence: float
    reasons: list[str]


class Signals(_Out):
    signals: list[Signal]


class Position(_Out):
    symbol: str
    qty: int
    mark: str | None
    mark_ns: int | None
    updated_ns: int


class OpenBracket(_Out):
    signal_id: str
    symbol: str
    side: Literal["LONG", "SHORT"]
    quantity: int
    open_qty: int
    state: str
    entry_order: str | None
    entry: str | None
    stop: str | None
    target: str | None


class Positions(_Out):
    positions: list[Position]
    open_brackets: list[OpenBracket]


class Statistics(_Out):
    trades: int
    wins: int
    losses: int
    scratches: int
    """Trades closed at exactly 0 net: neither a win nor a loss (core/stats.py)."""
    win_rate: float | None
    net_cents: int
    gross_profit_cents: int
    gross_loss_cents: int
    """<= 0, as in ``tradebot stats``."""
    profit_factor: float | str | None
    """``"inf"`` with profit and no losing trade."""
    avg_trade_cents: int | None
    max_drawdown_cents: int
    daily: list[dict[str, Any]]
    equity: list[tuple[int, int]]
    """(closed_ns, cumulative net cents) per closed trade."""


class Status(_Out):
    time_zone: str
    mode: str
    daemon: dict[str, Any]
    trading_state: str | None
    halt_reason: str | None
    day_pnl_cents: int | None
    positions: dict[str, int] | None
    balance_cents: int | None
    stream: dict[str, int]


class ControlAck(_Out):
    ok: bool
    state: str | None = None
