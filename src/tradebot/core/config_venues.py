"""The settings groups of the venues: data vendors (Databento, Polygon/Massive, Coinbase), US stocks, and the
live brokers' connection tuning (ProjectX, Rithmic); the credentials are top-level ``*_API_KEY``/``PROJECTX_*``/
``RITHMIC_*`` variables in :class:`tradebot.core.config.Settings`.

Part of the settings model :mod:`tradebot.core.config` assembles (and re-exports: import them from there).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import (
    BaseModel,
    Field,
)

from tradebot.core.values import (
    ClockTimeSeconds,
    Tickers,
)


class DatabentoSettings(BaseModel):
    dataset: str = "GLBX.MDP3"
    book_schema: Literal["mbp-1", "mbp-10", "tbbo", "none"] = "mbp-1"
    stype_in: Literal["parent", "continuous", "raw_symbol"] = "parent"
    gateway: str | None = Field(None, description="override the live gateway host (tests, proxies)")
    port: int = Field(13000, gt=0, lt=65536)
    reconnect_initial_seconds: float = Field(0.5, gt=0)
    reconnect_max_seconds: float = Field(30.0, gt=0)
    heartbeat_interval_seconds: int = Field(10, ge=5)


class StockSettings(BaseModel):
    """US stocks (``--feed polygon``): NYSE calendar, seed 000's share thresholds, seed 003's filters."""

    extended_hours: bool = Field(
        False, description="sessions include pre/post market (04:00-20:00 ET); off = 09:30-16:00 ET only")
    watchlist: Tickers = Field(
        "", validate_default=True,
        description="ORDER_FLOW_MONITORING_MODE=all: extra tickers streamed besides the traded symbols")
    sub_dollar: Tickers = Field(
        "", validate_default=True,
        description="tickers trading below $1, quoted in $0.0001 (comma-separated); others use the $0.01 grid")
    lot_shares: int = Field(
        100, gt=0, description="shares per router 'contract' (TRADEBOT_EXECUTION__MAX_POSITION_SIZE counts these)")
    commission_cents_per_share: Decimal = Field(
        Decimal(0), ge=0, description="paper commission per share per side, cents (0 = a commission-free broker)")


class PolygonLiveSettings(BaseModel):
    """Polygon/Massive stocks websocket (``--feed polygon``) and its REST-polling fallback."""

    ws_url: str = Field("wss://socket.polygon.io/stocks", description="websocket cluster URL (Massive: "
                        "wss://socket.massive.com/stocks; 15-minute delayed: wss://delayed.polygon.io/stocks)")
    rest_url: str = Field("https://api.polygon.io", description="REST base URL for the polling fallback")
    quotes: bool = Field(True, description="subscribe to quotes (Q.*) for the quote rule and the book")
    reconnect_initial_seconds: float = Field(1.0, gt=0, description="first reconnect delay")
    reconnect_max_seconds: float = Field(60.0, gt=0, description="reconnect delay cap (doubling, with jitter)")
    rest_fallback: bool = Field(True, description="poll REST when the socket is refused (plan without websocket)")
    rest_requests_per_minute: int = Field(
        5, gt=0, description="REST budget while polling (5 = Polygon's free plan; raise it on a paid plan)")
    retry_socket_seconds: float = Field(300.0, gt=0, description="while polling, try the socket again this often")


class CoinbaseSettings(BaseModel):
    """Coinbase Advanced Trade public market data (``--feed coinbase``): no key needed."""

    ws_url: str = Field("wss://advanced-trade-ws.coinbase.com", description="market data websocket URL")
    rest_url: str = Field("https://api.coinbase.com", description="public REST base (the product list)")
    book_depth: int = Field(10, ge=1, le=50, description="levels per side passed on from the full L2 book")
    day_boundary: ClockTimeSeconds = Field(
        "00:00", validate_default=True, description="crypto trading day starts at this UTC HH:MM[:SS] (24/7 market)")
    flatten_at_day_end: bool = Field(
        False, description="flatten crypto positions 5 minutes before the day boundary (off: hold through it)")
    lot_size: Decimal = Field(
        Decimal("0.001"), gt=0, description="coins per router 'contract' (BTC-USD: 0.001 BTC); "
                                            "TRADEBOT_EXECUTION__MAX_POSITION_SIZE counts these")
    taker_fee_bps: Decimal = Field(
        Decimal(120), ge=0, description="paper fee per fill in basis points of the notional (Coinbase Advanced's "
                                         "entry-tier taker fee: 1.20%)")
    reconnect_initial_seconds: float = Field(1.0, gt=0, description="first reconnect delay")
    reconnect_max_seconds: float = Field(60.0, gt=0, description="reconnect delay cap (doubling, with jitter)")


class ProjectXSettings(BaseModel):
    """ProjectX Gateway (TopstepX and the other ProjectX firms): the adapter's tuning; credentials are PROJECTX_*."""

    request_timeout_seconds: float = Field(10.0, gt=0, description="one REST request's timeout")
    retries: int = Field(4, ge=0, le=20, description="retries of a read (429/5xx/timeout) before giving up; an "
                         "order placement is never retried: a lost answer is resolved by searching for its tag")
    backoff_initial_seconds: float = Field(0.5, gt=0, description="first retry / reconnect delay")
    backoff_max_seconds: float = Field(30.0, gt=0, description="retry / reconnect delay cap (doubling, with jitter)")
    token_refresh_seconds: float = Field(
        6 * 3600.0, gt=0, description="re-validate the session token this often (tokens live 24 h)")
    native_brackets: bool = Field(
        False, description="limit entries carry stop and target as the order's stopLossBracket/takeProfitBracket "
                           "(ticks from the limit; needs the account's auto-OCO brackets; verify on the firm's demo "
                           "first); false = our own OCO placed at the entry fill, at the model's exact prices")
    ping_seconds: float = Field(15.0, gt=0, description="SignalR keep-alive ping interval")
    server_timeout_seconds: float = Field(
        60.0, gt=0, description="a hub silent this long (no message, no ping) is treated as dropped")


class RithmicSettings(BaseModel):
    """Rithmic R|Protocol session tuning (``--broker rithmic``, ``--feed rithmic``); credentials are RITHMIC_*."""

    app_version: str = Field("1.0", description="app version sent at login (with RITHMIC_APP_NAME)")
    request_timeout_seconds: float = Field(
        10.0, gt=0, description="an order/cancel/query without an answer after this is unanswered (an order is "
                                "then looked up by its user_tag, never re-sent)")
    reconnect_interval_seconds: float = Field(2.0, gt=0, description="reconnect delay step (linear, with jitter)")
    reconnect_max_seconds: float = Field(30.0, gt=0, description="reconnect delay cap")
    max_reconnects: int = Field(
        0, ge=0, description="reconnect attempts per outage before giving up (0 = keep trying: after a fail-closed "
                             "halt the link still comes back for exits and the view)")
    fail_after_seconds: float = Field(
        120.0, gt=0, description="no connection for this long: fail closed (no new entries, critical alert)")
    depth_levels: int = Field(10, ge=1, le=50, description="--feed rithmic: book levels per side passed on")
