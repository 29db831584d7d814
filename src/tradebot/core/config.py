"""Configuration from the environment and ``.env``.

The seeds' variable names are kept where they exist (``TRADING_SYMBOL``, ``DAILY_LOSS_LIMIT``, ...) so a
trader's existing ``.env`` keeps working; everything else lives under ``TRADEBOT_`` (nested groups with
``__``, e.g. ``TRADEBOT_VALIDATION__STALE_SECONDS``). A bad value fails fast with one line naming the
variable: see :func:`load_settings`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tradebot.core.blackouts import BlackoutSchedule, load_blackouts
from tradebot.core.contracts import CONTRACTS, root_of
from tradebot.core.notifications import NotificationKind, parse_kinds
from tradebot.core.signals import Direction, Pattern, Regime
from tradebot.core.values import (
    ClockTime,
    ClockTimeSeconds,
    IsoDate,
    PercentSteps,
    RootMap,
    Tickers,
    Tiers,
    TimeWindows,
)

ENV_PREFIX = "TRADEBOT_"

_ROOT: ContextVar[Path | None] = ContextVar("tradebot_settings_root", default=None)
"""The installation root relative settings paths are anchored to while :func:`load_settings` runs (see paths.py)."""


def _anchored(v: Path | None) -> Path | None:
    root = _ROOT.get()
    if v is None or root is None or v.is_absolute():
        return v
    return root / v


class ValidationSettings(BaseModel):
    """Thresholds of the validation layer between feeds and the engine (seed 000's rules)."""

    stale_seconds: float = Field(5.0, gt=0, description="live only: reject events older than this")
    future_seconds: float = Field(2.0, gt=0, description="reject events this far ahead of the clock")
    out_of_order_ms: float = Field(0.0, ge=0, description="tolerated backwards step per stream")
    max_jump_ticks: int = Field(400, gt=0, description="fat-finger bound vs the last accepted price")
    jump_confirm_prints: int = Field(
        5, ge=1, description="consecutive beyond-bound prints rejected before the level is believed")
    check_staleness: bool = Field(False, description="on for live feeds; replay timestamps are old")
    max_size: int = Field(
        0, ge=0, description="largest plausible print or book level, contracts; 0 = per contract "
                             "(1,000 x its large-print size: 100,000 for ES)")
    max_time_gap_seconds: float = Field(
        345_600.0, gt=0, description="a record this far ahead of its stream is implausible until "
                                     "jump_confirm_prints records confirm it (sources without a declared span)")
    range_slack_seconds: float = Field(
        21_600.0, ge=0, description="tolerance around a file's declared time span (DBN metadata start/end; 6 h "
                                    "covers files stamped with a session's regular hours that hold pre/post-market "
                                    "prints)")


class SimSettings(BaseModel):
    """The built-in simulated market."""

    seed: int = 7
    speed: float = Field(0.0, ge=0, description="0 = as fast as possible, 1 = real time, N = N times")
    trades_per_session: int = Field(60_000, gt=0)
    book_depth: int = Field(10, ge=1, le=10)
    sessions: int = Field(1, ge=1)
    start_date: IsoDate = Field("2025-03-10", validate_default=True,
                                description="first trading date of the simulated sessions")


class DatabentoSettings(BaseModel):
    dataset: str = "GLBX.MDP3"
    book_schema: Literal["mbp-1", "mbp-10", "tbbo", "none"] = "mbp-1"
    stype_in: Literal["parent", "continuous", "raw_symbol"] = "parent"
    gateway: str | None = Field(None, description="override the live gateway host (tests, proxies)")
    port: int = Field(13000, gt=0, lt=65536)
    reconnect_initial_seconds: float = Field(0.5, gt=0)
    reconnect_max_seconds: float = Field(30.0, gt=0)
    heartbeat_interval_seconds: int = Field(10, ge=5)


class FootprintSettings(BaseModel):
    """Footprint bars and cumulative delta (order-flow engine)."""

    bar_seconds: int = Field(300, gt=0, description="time-bar length; bars align to the session open")
    bar_type: Literal["time", "volume"] = Field(
        "time", description="time = bar_seconds bars aligned to the session open; volume = bar_volume contracts")
    bar_volume: int = Field(
        1000, gt=0, description="volume bars: a bar closes once it holds this many contracts (last trade kept whole)")


class PatternSettings(BaseModel):
    """Pattern detector thresholds; defaults from reference/ORDERFLOW.md."""

    imbalance_ratio: float = Field(
        3.0, gt=0, description="R: buy imbalance when ask(p) > R * bid(p - 1 tick) (strict), sell mirrored")
    imbalance_min_volume: int = Field(
        10, ge=0, description="imbalanced side needs at least this volume (default for every symbol)")
    imbalance_min_volume_by_symbol: dict[str, int] = Field(
        default_factory=dict, description='per-root override of imbalance_min_volume, JSON: {"ES": 20, "MES": 5}')
    stacked_min_levels: int = Field(3, ge=2, description="stacked imbalance: this many adjacent same-side levels")
    exhaustion_abs_volume: int = Field(
        5, ge=0, description="a: exhaustion when the aggressor volume at the extreme <= max(a, f * mean level volume)")
    exhaustion_mean_fraction: float = Field(0.2, ge=0, description="f of the exhaustion rule")
    exhaustion_levels: int = Field(
        3, ge=2, description="k: aggressor volume must fall strictly over the last k levels toward the extreme")
    absorption_mean_multiple: float = Field(
        2.0, gt=0, description="m: absorption when aggressor volume at/near the extreme >= m * mean level volume")
    absorption_close_ticks: int = Field(
        2, ge=1, description="n: ...while the close stays at least this many ticks away from that extreme")
    absorption_zone_ticks: int = Field(
        1, ge=0, description="'near' the extreme: levels within this many ticks of it are checked")
    unfinished_max_open: int = Field(
        64, ge=0, description="unfinished-business levels kept open (oldest dropped first)")
    flow_patterns: bool = Field(
        True, description="run the bar-total patterns VOLUME_IMBALANCE and RED_BURST (ticks and bar data alike)")
    flow_imbalance_ratio: float = Field(
        0.6, gt=0, le=1, description="VOLUME_IMBALANCE (seed 004): |ask - bid| / bar volume at least this")
    flow_min_volume: int = Field(100, ge=0, description="VOLUME_IMBALANCE: bars with fewer contracts are ignored")
    burst_spike_ratio: float = Field(
        3.0, gt=0, description="RED_BURST (seed 000): bar volume above this x the average of the previous bars")
    burst_baseline_bars: int = Field(1, ge=1, le=8, description="RED_BURST: bars in the baseline average")

    @field_validator("imbalance_min_volume_by_symbol")
    @classmethod
    def _roots(cls, v: dict[str, int]) -> dict[str, int]:
        out = {}
        for sym, n in v.items():
            root = root_of(sym)
            if root is None:
                raise ValueError(f"unknown contract {sym!r}; allowed: {', '.join(CONTRACTS)}")
            if n < 0:
                raise ValueError(f"minimum volume for {sym} must be >= 0")
            out[root] = n
        return out

    def min_volume_for(self, symbol: str) -> int:
        """Imbalance minimum for a root or contract code (the override map wins over the default)."""
        root = root_of(symbol) or symbol
        return self.imbalance_min_volume_by_symbol.get(root, self.imbalance_min_volume)


class ProfileSettings(BaseModel):
    """Volume profile: value area, HVN/LVN, naked POCs, trading bias (reference/ORDERFLOW.md defaults)."""

    value_area_pct: float = Field(0.70, gt=0, le=1, description="share of session volume in the value area")
    value_area_method: Literal["two_level", "one_level"] = Field(
        "two_level", description="two_level = Dalton/CBOT pairs; one_level = one tick at a time")
    node_smoothing_ticks: int = Field(
        1, ge=0, le=20, description="HVN/LVN: half-width of the moving sum smoothing the profile (1 = 3 ticks)")
    node_min_prominence: float = Field(
        0.10, gt=0, le=1, description="HVN/LVN: prominence as a share of the smoothed profile's maximum")
    max_naked_pocs: int = Field(20, ge=0, description="naked POCs of prior sessions kept (newest first)")
    bias_reference: Literal["prior_session", "developing"] = Field(
        "prior_session", description="value area the trading bias compares price against")
    bias_buffer_ticks: int = Field(0, ge=0, description="price must be this far beyond VAH/VAL to leave NEUTRAL")


class MicrostructureSettings(BaseModel):
    """Book and trade-flow microstructure features."""

    depth_levels: tuple[int, ...] = Field((5, 10), description="book depth/imbalance over these top-N levels")
    ofi_levels: int = Field(5, ge=1, le=10, description="levels summed by the multi-level OFI")
    ofi_windows_seconds: tuple[int, ...] = Field((10, 60, 300), description="OFI sums over these windows")
    flow_window_seconds: int = Field(
        60, gt=0, description="window of trade intensity, buy pressure and order imbalance")
    bucket_ms: int = Field(100, gt=0, le=60_000, description="time resolution of the rolling windows")
    impact_size: int = Field(10, gt=0, description="market-order size (contracts) for the slippage estimate")
    vwap_reset: Literal["session", "never"] = Field("session", description="VWAP resets at the 17:00 CT boundary")

    @field_validator("depth_levels", "ofi_windows_seconds")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(x <= 0 for x in v):
            raise ValueError("give one or more positive integers")
        return tuple(sorted(set(v)))


class DaemonSettings(BaseModel):
    """The trading daemon (``tradebot run``)."""

    heartbeat_seconds: float = Field(5.0, gt=0, description="how often data/heartbeat.json is rewritten")
    stale_feed_seconds: float = Field(30.0, gt=0, description="live feed: no data this long in session = reconnect")
    flatten_on_shutdown: bool = Field(False, description="flatten open positions on SIGTERM (else resume them)")
    shutdown_flush_seconds: float = Field(10.0, gt=0, description="time to deliver queued alerts on shutdown")
    loop_lag_seconds: float = Field(2.0, gt=0, description="event-loop lag above this withholds WATCHDOG=1")
    notify_disabled: Annotated[frozenset[NotificationKind], NoDecode] = Field(
        frozenset(), description="comma-separated alert kinds not to send (e.g. trade_opened); an unknown kind is "
                                 "an error that lists the valid ones")
    status_log_seconds: float = Field(10.0, gt=0, description="how often a one-line status is logged")
    record_live: bool = Field(
        True, description="record a live futures session's market data (Databento, ProjectX, Rithmic) into the "
        "catalog as DBN (<data_dir>/catalog/LIVE.<FEED>/mbp-10/<ROOT>/<day>.dbn.zst) so the day can be replayed")
    stream_queue: int = Field(1000, ge=10, le=100_000,
                              description="live stream: messages queued per reader before drops (counted, resync)")
    min_free_mb: float = Field(4.0, ge=0, description="refuse to start (exit 75) with less free space under the "
                               "database: it could not journal a trade")

    @field_validator("notify_disabled", mode="before")
    @classmethod
    def _kinds(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_kinds(v)
        if isinstance(v, list | tuple | set | frozenset):
            return parse_kinds(",".join(str(x) for x in v))
        return v

    @field_serializer("notify_disabled")
    def _kinds_text(self, v: frozenset[NotificationKind]) -> str:
        return ",".join(sorted(v))


class WebSettings(BaseModel):
    """The dashboard (``tradebot web``): its own process, loopback only unless told otherwise."""

    token: SecretStr | None = Field(
        None, description="secret for the dashboard: logging in (reads) and every control action; "
                          "`tradebot web` refuses to start without it (e.g. `openssl rand -hex 24`)")
    host: str = Field("127.0.0.1", description="address to bind; non-loopback needs TRADEBOT_WEB__ALLOW_REMOTE=true")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = any free port)")
    allow_remote: bool = Field(False, description="allow binding a non-loopback address (reach it via SSH instead)")
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="a login session lasts this long")
    bars: int = Field(60, ge=1, le=1000, description="closed footprint bars kept for the page")
    client_queue: int = Field(2000, ge=10, le=100_000,
                              description="messages queued per browser before the oldest are dropped (counted)")


class WatchdogSettings(BaseModel):
    """The separate watchdog process (``tradebot watchdog``)."""

    interval_seconds: float = Field(15.0, gt=0, description="how often the watchdog checks")
    stale_heartbeat_seconds: float = Field(45.0, gt=0, description="heartbeat older than this: daemon stuck or dead")
    stale_data_seconds: float = Field(120.0, gt=0, description="no market data for this long inside the session")
    max_rss_mb: float = Field(1500.0, gt=0, description="daemon resident memory alert threshold")
    max_memory_percent: float = Field(90.0, gt=0, le=100, description="machine memory use alert threshold")
    min_disk_free_mb: float = Field(1024.0, ge=0, description="free space under the data directory")
    reconnect_storm_count: int = Field(5, gt=0, description="this many feed reconnects ...")
    reconnect_storm_seconds: float = Field(600.0, gt=0, description="... within this window is a storm")
    realert_seconds: float = Field(1800.0, gt=0, description="repeat an unresolved alert this often")
    report_at: ClockTime = Field("16:05", validate_default=True,
                                 description="end-of-day health report time, America/New_York (HH:MM)")
    deadman: Literal["auto", "on", "off"] = Field(
        "auto", description="dead-man's switch: a stale heartbeat with a position open makes the watchdog cancel "
        "working orders and flatten at the broker; auto = on in live mode, off in paper")
    deadman_stale_seconds: float = Field(
        90.0, gt=0, description="dead-man's switch: heartbeat older than this (and not a clean stop) = daemon dead")
    deadman_flat_seconds: float = Field(
        30.0, gt=0, description="dead-man's switch: how long to wait for the broker to report the account flat")


class PropFirmSettings(BaseModel):
    """Prop-firm account rules (Topstep and the like), checked before every entry; see README."""

    profile: str = Field(
        "", description="account profile from the profiles file (topstep-50k, topstep-100k, topstep-150k); "
        "empty = no prop-firm rules. VERIFY the profile's values with your firm")
    profiles_file: Path | None = Field(
        None, description="TOML file of profiles replacing the built-in src/tradebot/data/propfirms.toml")
    alert_steps: PercentSteps = Field(
        "50,25,10", validate_default=True,
        description="alert when the headroom left to a loss limit falls to these percentages")
    stop_within_headroom: bool = Field(
        True, description="refuse an entry whose stop-out loss would reach a loss limit's headroom")
    balance: Decimal | None = Field(
        None, gt=0, description="the account's balance at the firm when the bot first runs on it (USD); "
        "empty = the profile's account size. Used once, before the journal holds prop-firm state")
    high_water: Decimal | None = Field(
        None, gt=0, description="the firm's current balance high-water mark when the bot first runs on it (USD)")
    intraday_journal_step: Decimal = Field(
        Decimal(10), gt=0, description="intraday trailing: a new equity peak is journaled once it rises this many "
        "USD (a restart forgets less than this of a peak)")

    @field_validator("profiles_file", mode="before")
    @classmethod
    def _no_file(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("profiles_file")
    @classmethod
    def _anchor_profiles(cls, v: Path | None) -> Path | None:
        return _anchored(v)

    @model_validator(mode="after")
    def _known_profile(self) -> PropFirmSettings:
        """A profile name that is not in the file (a typo) fails at startup, with the names that are."""
        if not self.profile:
            return self
        import tomllib
        from importlib import resources

        try:
            text = (self.profiles_file.read_text(encoding="utf-8") if self.profiles_file is not None
                    else resources.files("tradebot").joinpath("data/propfirms.toml").read_text(encoding="utf-8"))
            names = list(tomllib.loads(text))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read the prop-firm profiles file: {exc}") from None
        if self.profile not in names:
            raise ValueError(f"unknown prop-firm profile {self.profile!r}; the profiles file has: {', '.join(names)}")
        return self


class ExecutionSettings(BaseModel):
    """Execution: paper fills, daily risk, capital tiers, margin protection, the state database."""

    db_path: Path | None = Field(None, description="state database; empty = <data_dir>/tradebot-<mode>.db")

    @field_validator("db_path")
    @classmethod
    def _anchor_db(cls, v: Path | None) -> Path | None:
        return _anchored(v)

    commission_cents: int = Field(50, ge=0, description="broker commission per contract per side, cents")
    fees_cents: RootMap = Field(
        "", validate_default=True,
        description="exchange+NFA fees per contract per side, ROOT:cents pairs overriding the built-in table")
    stop_slippage_ticks: int = Field(1, ge=0, le=20, description="paper: stop fills this many ticks beyond")
    market_slippage_ticks: int = Field(0, ge=0, le=20, description="paper: market orders fill this much worse")
    limit_fill_rule: Literal["through", "queue"] = Field(
        "through", description="paper: limit fills when price trades through it, or at it after queue_ahead")
    queue_ahead_contracts: int = Field(
        0, ge=0, description="paper, queue rule: contracts traded at the limit price before ours fill")
    submit_timeout_seconds: float = Field(5.0, gt=0, description="no broker answer: order UNKNOWN, then queried")
    fill_dedupe_size: int = Field(1000, ge=10, description="fill ids remembered in memory (the DB is the backstop)")
    reconcile_seconds: float = Field(
        10.0, gt=0, description="live: seconds between checks of broker positions, orders, fills against the journal")
    protect_seconds: float = Field(
        3.0, gt=0, description="live: an open position's stop must be confirmed working at the broker within this; "
        "else it is re-placed, and after as long again the position is flattened")
    connect_backoff_max_seconds: float = Field(
        60.0, gt=0, description="live: longest wait between broker connection attempts (backoff doubles from 1 s)")
    shadow_model: bool = Field(
        True, description="live: the paper broker trades beside the live one on the same data; each trade's latency "
        "and slippage against it are recorded and the digest shows live vs model")
    flatten_on_limit: bool = Field(True, description="flatten open positions when a daily limit is reached")
    limits_include_unrealized: bool = Field(True, description="daily limits count open P&L at the last price")
    auto_flatten: bool = Field(True, description="flatten everything at auto_flatten_time")
    auto_flatten_time: ClockTime = Field("15:55", validate_default=True,
                                         description="America/New_York HH:MM; no new entries after it")
    starting_balance: Decimal = Field(Decimal(2500), gt=0, description="paper account balance in USD at the start")
    tiers_enabled: bool = Field(
        True, description="pick contract and size by account balance, once per trading day at its start")
    tiers: Tiers = Field(
        "0:MES:2:MES Building,3500:ES:1:ES Entry,5000:ES:2:ES Growth,7500:ES:3:ES Scaling,10000:ES:4:ES Full",
        validate_default=True, description="capital tiers, min_balance_usd:ROOT:max_contracts[:name], ascending")
    max_position_size: int = Field(2, ge=1, description="contracts per bracket when no tier applies")
    margin_overrides: RootMap = Field("", validate_default=True,
                                      description="margin requirement per contract in USD, ROOT:usd pairs")
    margin_limits: RootMap = Field(
        "", validate_default=True,
        description="ROOT:usd margin limits beyond MES_MARGIN_LIMIT/ES_MARGIN_LIMIT (others: no limit)")
    heartbeat_stale_seconds: float = Field(60.0, gt=0, description="tradebot status: heartbeat older = unhealthy")



def _check_zone(name: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. America/New_York)") from None
    return name


class RegimeSettings(BaseModel):
    """Regime detection on each closed bar (seed 002): trending, ranging, volatile or no-trade."""

    adx_period: int = Field(14, ge=2, le=500, description="ADX/DMI period (Wilder)")
    atr_period: int = Field(14, ge=1, le=500, description="ATR period (Wilder)")
    ema_fast: int = Field(9, ge=2, le=500, description="fast EMA period")
    ema_slow: int = Field(21, ge=3, le=500, description="slow EMA period")
    structure_lookback: int = Field(
        5, ge=1, le=100, description="market structure: swing high/low of the last N bars vs the N before")
    adx_trend_threshold: float = Field(
        25.0, gt=0, lt=100, description="trend when ADX is above this with matching structure; range otherwise")
    volatile_percentile: float = Field(
        0.90, gt=0, lt=1, description="VOLATILE when the ATR's mid-rank in its recent history is at least this")
    atr_history_bars: int = Field(100, ge=10, le=10_000, description="ATR values kept for the percentile")
    atr_min_history: int = Field(
        20, ge=1, le=10_000, description="ATR values needed before the percentile counts (part of the warm-up)")
    session_basis: Literal["rth", "full"] = Field(
        "rth", description="rth = trade regular hours only, edges from the RTH open/close; full = the Globex session")
    open_buffer_minutes: int = Field(15, ge=0, le=600, description="no trading in the first N minutes (basis)")
    close_buffer_minutes: int = Field(15, ge=0, le=600, description="no trading in the last N minutes (basis)")
    low_volume_ratio: float = Field(
        0.25, ge=0, le=1, description="NO_TRADE when bar volume < this x the recent average (0 = off)")
    volume_average_bars: int = Field(20, ge=1, le=10_000, description="bars in the rolling volume average")
    volume_min_history: int = Field(10, ge=1, le=10_000, description="bars needed before the low-volume rule applies")
    trading_windows: TimeWindows = Field(
        "", validate_default=True,
        description="HH:MM-HH:MM[,...] in trading_windows_tz when entries are allowed; empty = whole session "
        "(seed 000: 07:00-10:00)")
    trading_windows_tz: str = Field("America/New_York", description="IANA zone of trading_windows (DST-correct)")
    blackout_tz: str = Field(
        "America/New_York", description="zone of blackout times that carry no offset and no tz column")
    blackout_file: Annotated[BlackoutSchedule | None, NoDecode] = Field(
        None, description="CSV or JSON of news blackouts (FOMC, CPI); see data/samples/blackouts.example.csv")
    """Read once, at load: a bad file fails at startup with every bad line named (held as the parsed schedule;
    it dumps as its path)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @field_validator("blackout_file", mode="before")
    @classmethod
    def _load_blackouts(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, BlackoutSchedule) or v is None:
            return v
        if isinstance(v, str) and not v.strip():
            return None  # an empty .env value means "none"
        if not isinstance(v, str | Path):
            raise ValueError("give the path of a blackout file")
        path = _anchored(Path(v))
        assert path is not None
        return load_blackouts(path, info.data.get("blackout_tz", "America/New_York"))

    @field_serializer("blackout_file")
    def _blackout_path(self, v: BlackoutSchedule | None) -> str | None:
        return None if v is None else v.source

    @field_validator("trading_windows_tz", "blackout_tz")
    @classmethod
    def _zone(cls, v: str) -> str:
        return _check_zone(v)

    @model_validator(mode="after")
    def _periods(self) -> RegimeSettings:
        if self.ema_fast >= self.ema_slow:
            raise ValueError(f"ema_fast ({self.ema_fast}) must be shorter than ema_slow ({self.ema_slow})")
        if self.atr_min_history > self.atr_history_bars:
            raise ValueError("atr_min_history cannot exceed atr_history_bars")
        return self


class RoutingTableError(ValueError):
    """A routing-table row that names an unknown regime or pattern, or tries to trade in NO_TRADE."""


def route_regime(name: Any) -> Regime:
    """The regime a routing-table row is keyed by (case and spaces forgiven); NO_TRADE's row is fixed."""
    key = str(name).strip().upper()
    if key not in Regime.__members__:
        raise RoutingTableError(f"unknown regime {name!r}; known: {', '.join(Regime)}")
    if key == Regime.NO_TRADE:
        raise RoutingTableError("NO_TRADE never trades: its row cannot be overridden")
    return Regime(key)


class RouteOverride(BaseModel):
    """One regime's row of the routing table; unset fields keep the built-in default (regime/router.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    patterns: tuple[Pattern, ...] | None = None
    directions: tuple[Direction, ...] | None = None
    size_multiplier: float | None = Field(None, ge=0, le=10)
    min_strength: float | None = Field(None, ge=0, le=1)
    min_confidence: float | None = Field(None, ge=0, le=1)
    location: Literal["any", "extreme"] | None = None
    style: Literal["trend", "reversion"] | None = None

    @field_validator("patterns", mode="before")
    @classmethod
    def _pattern_names(cls, v: Any) -> Any:
        if not isinstance(v, list | tuple):
            return v
        out: list[Pattern] = []
        for p in v:
            key = str(p).strip().upper()
            if key not in Pattern.__members__:
                raise ValueError(f"unknown pattern {p!r}; known: {', '.join(Pattern)}")
            if Pattern(key) not in out:
                out.append(Pattern(key))
        return tuple(out)


def route_rows(doc: Any) -> Any:
    """Routing-table rows keyed by :class:`Regime` (validation of the rows themselves is pydantic's)."""
    if not isinstance(doc, Mapping):
        return doc
    return {route_regime(k): row for k, row in doc.items()}


def load_table_file(path: Path | str) -> dict[Regime, RouteOverride]:
    """A JSON file of routing-table overrides, ``{regime: row}``; :class:`RoutingTableError` names the file."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RoutingTableError(f"{p}: cannot read routing table ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RoutingTableError(f"{p}: not a JSON object of regime rows ({exc})") from None
    if not isinstance(doc, dict):
        raise RoutingTableError(f"{p}: expected a JSON object {{regime: row}}")
    out: dict[Regime, RouteOverride] = {}
    for name, row in doc.items():
        try:
            out[route_regime(name)] = RouteOverride.model_validate(row)
        except RoutingTableError as exc:
            raise RoutingTableError(f"{p}: {exc}") from None
        except ValidationError as exc:
            msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise RoutingTableError(f"{p}: {name}: {msgs}") from None
    return out


@dataclass(frozen=True, slots=True)
class RouteTableFile:
    """A routing-table file as read at load: its path (what the settings dump shows) and its validated rows."""

    path: Path
    rows: Mapping[Regime, RouteOverride]


class RouterSettings(BaseModel):
    """Strategy router: regime table, confluence scoring (seed 004), cooldown, stops and targets."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    table: dict[Regime, RouteOverride] = Field(
        default_factory=dict,
        description='routing-table overrides per regime, JSON: {"VOLATILE": {"size_multiplier": 0.25}}')
    table_file: Annotated[RouteTableFile | None, NoDecode] = Field(
        None, description="JSON file of routing-table overrides (applied before table)")
    base_size: int = Field(1, ge=1, le=1000, description="contracts before the regime multiplier")
    cooldown_seconds: int = Field(300, ge=0, description="per symbol: no new signal this long after a taken one")
    stop_mode: Literal["fixed", "atr"] = Field(
        "fixed", description="fixed = the contract's stop_points (or stop_points_by_symbol); atr = k x ATR")
    stop_points_by_symbol: RootMap = Field(
        "", validate_default=True, description="ROOT:points pairs overriding the contracts' stop distance")
    atr_stop_multiple: float = Field(1.5, gt=0, le=50, description="k of the ATR stop")
    min_stop_ticks: int = Field(1, ge=1, description="no stop tighter than this many ticks")
    risk_reward: float = Field(2.0, gt=0, le=50, description="target distance = this x stop distance (rounded up)")
    entry_type: Literal["market", "limit"] = Field("market", description="limit = at the signal bar's last price")
    weight_trigger: float = Field(0.50, gt=0, le=1, description="confluence weight of the pattern's strength")
    weight_cum_delta: float = Field(0.15, ge=0, le=1, description="... cumulative delta beyond the threshold")
    weight_buy_pressure: float = Field(0.10, ge=0, le=1, description="... aggressive buy/sell share")
    weight_depth_imbalance: float = Field(0.10, ge=0, le=1, description="... book depth imbalance")
    weight_intensity: float = Field(0.05, ge=0, le=1, description="... trade intensity above its average")
    weight_profile: float = Field(0.10, ge=0, le=1, description="... volume-profile location")
    min_confirmations: int = Field(
        1, ge=0, le=5, description="confirmed terms (besides the trigger) a signal needs, whatever its confidence")
    cum_delta_threshold: int = Field(1000, ge=0, description="session cumulative delta confirming a signal (seed 004)")
    cum_delta_threshold_by_symbol: RootMap = Field(
        "", validate_default=True, description="ROOT:contracts pairs overriding cum_delta_threshold")
    buy_pressure_threshold: float = Field(
        0.55, gt=0.5, le=1, description="aggressor share in the signal's direction that confirms it")
    depth_imbalance_threshold: float = Field(
        0.20, gt=0, le=1, description="book depth imbalance in the signal's direction that confirms it")
    intensity_ratio: float = Field(1.5, gt=0, description="trades/minute vs its recent average that confirms")
    intensity_bars: int = Field(20, ge=1, le=10_000, description="bars in the trade-intensity average")
    intensity_min_history: int = Field(5, ge=1, le=10_000, description="bars needed before intensity counts")
    near_extreme_atr: float = Field(
        0.5, ge=0, le=10, description="'near' a value-area edge or session extreme: within this x ATR ...")
    near_extreme_ticks: int = Field(4, ge=0, description="... but never less than this many ticks")

    @field_validator("table", mode="before")
    @classmethod
    def _table(cls, v: Any) -> Any:
        return route_rows(v)

    @field_validator("table_file", mode="before")
    @classmethod
    def _table_file(cls, v: Any) -> Any:
        """Read once, at load (held as its rows; it dumps as its path)."""
        if isinstance(v, RouteTableFile) or v is None:
            return v
        if isinstance(v, str) and not v.strip():
            return None  # an empty .env value means "none"
        if not isinstance(v, str | Path):
            raise ValueError("give the path of a JSON routing-table file")
        path = _anchored(Path(v))
        assert path is not None
        return RouteTableFile(path, load_table_file(path))

    @field_serializer("table_file")
    def _table_path(self, v: RouteTableFile | None) -> str | None:
        return None if v is None else str(v.path)


class FilterSettings(BaseModel):
    """Tradeability filters (seed 003) in futures terms: spread in ticks, dollar depth, gaps, halts."""

    mode: Literal["safe", "aggressive"] = Field("safe", description="which spread/depth thresholds apply")
    safe_max_spread_ticks: int = Field(1, ge=1, description="SAFE: widest best bid/ask spread, ticks")
    safe_min_depth_usd: Decimal = Field(
        Decimal(2_000_000), ge=0, description="SAFE: notional of the thinner side's top-N levels, USD")
    aggressive_max_spread_ticks: int = Field(2, ge=1, description="AGGRESSIVE: widest spread, ticks")
    aggressive_min_depth_usd: Decimal = Field(
        Decimal(500_000), ge=0, description="AGGRESSIVE: thinner side's top-N notional, USD")
    depth_levels: int = Field(5, ge=1, le=10, description="N of the depth rule (must be a microstructure depth)")
    pct_safe_max_spread: Decimal = Field(
        Decimal("0.5"), gt=0, description="stocks/crypto SAFE: widest spread, % of the mid (seed 003's own terms)")
    pct_safe_min_depth_usd: Decimal = Field(
        Decimal(100_000), ge=0, description="stocks/crypto SAFE: thinner side's top-N dollar depth (seed 003)")
    pct_aggressive_max_spread: Decimal = Field(
        Decimal("1.0"), gt=0, description="stocks/crypto AGGRESSIVE: widest spread, % of the mid (seed 003)")
    pct_aggressive_min_depth_usd: Decimal = Field(
        Decimal(50_000), ge=0, description="stocks/crypto AGGRESSIVE: thinner side's top-N dollar depth (seed 003)")
    missing_book: Literal["pass", "fail"] = Field(
        "pass", description="no (fresh) book: the spread/depth checks report unavailable and then pass or fail")
    book_stale_seconds: float = Field(10.0, gt=0, description="a book older than this counts as unavailable")
    gap_max_pct: float = Field(5.0, gt=0, le=100, description="risky when price moved more than this % ...")
    gap_window_seconds: int = Field(300, gt=0, description="... within this window (seed 003: 5% in 5 minutes)")
    gap_max_ticks: int = Field(0, ge=0, description="also risky when the move exceeds this many ticks (0 = off)")
    halt_recent_seconds: int = Field(300, ge=0, description="risky for this long after an exchange halt ends")
    no_trade_seconds: int = Field(
        120, ge=0, description="risky when no trade for this long inside the session (0 = off)")


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
        False, description="send stop and target as the order's stopLossBracket/takeProfitBracket (ticks from the "
                           "fill; needs the account's auto-OCO brackets); false = our own OCO placed at the entry "
                           "fill, at the model's exact prices")
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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        env_ignore_empty=True,  # `KEY=` in a copied .env.example means "use the default", not "empty"
    )

    # --- the seeds' names ---------------------------------------------------------------------------
    databento_api_key: SecretStr | None = Field(None, validation_alias="DATABENTO_API_KEY")
    polygon_api_key: SecretStr | None = Field(None, validation_alias="POLYGON_API_KEY")
    discord_webhook_url: SecretStr | None = Field(
        None, validation_alias="DISCORD_WEBHOOK_URL",
        description="https://discord.com/api/webhooks/<id>/<token> (plain http:// only to a stand-in on this machine)")
    trading_symbol: str = Field("MES", validation_alias="TRADING_SYMBOL")
    trading_mode: Literal["paper", "live"] = Field("paper", validation_alias="TRADING_MODE")
    trading_broker: Literal["projectx", "rithmic"] | None = Field(
        None, validation_alias="TRADING_BROKER",
        description="live mode's broker (projectx: TopstepX and other ProjectX firms; rithmic); paper ignores it")
    daily_profit_target: Decimal = Field(Decimal(500), gt=0, validation_alias="DAILY_PROFIT_TARGET")
    daily_loss_limit: Decimal = Field(Decimal(-300), lt=0, validation_alias="DAILY_LOSS_LIMIT")
    mes_margin_limit: Decimal = Field(Decimal(40), gt=0, validation_alias="MES_MARGIN_LIMIT")
    es_margin_limit: Decimal = Field(Decimal(400), gt=0, validation_alias="ES_MARGIN_LIMIT")
    order_flow_large_order_size: int | None = Field(
        None, gt=0, validation_alias="ORDER_FLOW_LARGE_ORDER_SIZE",
        description="unset: each contract's own default (the seed's 10,000 is a share count)",
    )
    order_flow_volume_spike_threshold: float = Field(
        3.0, gt=0, validation_alias="ORDER_FLOW_VOLUME_SPIKE_THRESHOLD")
    order_flow_red_burst_threshold: float = Field(4.0, gt=0, validation_alias="ORDER_FLOW_RED_BURST_THRESHOLD")
    order_flow_alert_window_seconds: int = Field(120, gt=0, validation_alias="ORDER_FLOW_ALERT_WINDOW_SECONDS")
    order_flow_monitoring_mode: Literal["positions_only", "all"] = Field(
        "positions_only", validation_alias="ORDER_FLOW_MONITORING_MODE")
    order_flow_book_resting_size: bool = Field(
        True, validation_alias="ORDER_FLOW_BOOK_RESTING_SIZE",
        description="large resting size counts too: on the best offer as a large seller, on the best bid as a large "
                    "buyer (false = large prints only)")
    order_flow_exit_mode: Literal["alert", "auto"] = Field(
        "alert", validation_alias="ORDER_FLOW_EXIT_MODE",
        description="exit signals: alert = notify only (human in the loop), auto = close the position at market")
    min_confidence: float = Field(
        0.6, ge=0, le=1, validation_alias="MIN_CONFIDENCE",
        description="router: trade only when the confluence confidence is at least this (seed 004)")
    rithmic_user: str | None = Field(None, validation_alias="RITHMIC_USER", description="Rithmic user name")
    rithmic_password: SecretStr | None = Field(None, validation_alias="RITHMIC_PASSWORD")
    rithmic_account_id: str | None = Field(
        None, validation_alias="RITHMIC_ACCOUNT_ID", description="the account orders go to (required for live mode)")
    rithmic_system_name: str = Field(
        "Rithmic Test", validation_alias="RITHMIC_SYSTEM_NAME",
        description="Rithmic system (your FCM/prop firm names it: Rithmic 01, Rithmic Paper Trading, Apex...)")
    rithmic_url: str = Field(
        "wss://rituz00100.rithmic.com:443", validation_alias="RITHMIC_URL",
        description="R|Protocol gateway websocket (the test gateway by default; your firm gives the live one)")
    rithmic_app_name: str = Field(
        "tradebot", validation_alias="RITHMIC_APP_NAME",
        description="app name sent at login (Rithmic's conformance process assigns production names)")
    rithmic_ca_file: str | None = Field(
        None, validation_alias="RITHMIC_CA_FILE",
        description="PEM CA to trust instead of the certificate async-rithmic bundles (a stand-in's, a renewed one)")

    # --- ProjectX Gateway (TopstepX): `run --mode live --broker projectx`, `--feed projectx` -----------
    projectx_api_url: str = Field("https://api.topstepx.com", validation_alias="PROJECTX_API_URL",
                                  description="ProjectX Gateway REST base URL (your firm's; TopstepX shown)")
    projectx_user_hub_url: str = Field(
        "https://rtc.topstepx.com/hubs/user", validation_alias="PROJECTX_USER_HUB_URL",
        description="SignalR user hub (orders, positions, trades, account); https:// is dialled as wss://")
    projectx_market_hub_url: str = Field(
        "https://rtc.topstepx.com/hubs/market", validation_alias="PROJECTX_MARKET_HUB_URL",
        description="SignalR market hub (quotes, trades, depth) for --feed projectx")
    projectx_username: str = Field("", validation_alias="PROJECTX_USERNAME",
                                   description="the platform user name the API key belongs to")
    projectx_api_key: SecretStr | None = Field(
        None, validation_alias="PROJECTX_API_KEY",
        description="API key from the firm's dashboard (ProjectX API subscription); a secret, never logged")
    projectx_account_id: int | None = Field(
        None, validation_alias="PROJECTX_ACCOUNT_ID",
        description="the trading account's numeric id (shown in the platform; unset: the only active account "
                    "that can trade, preflight fails when there are several)")

    # --- TRADEBOT_* ------------------------------------------------------------------------------------
    data_dir: Path = Field(Path("data"), validate_default=True,
                           description="state database, heartbeat, control socket, reports; relative = under the "
                           "installation root (TRADEBOT_HOME, see README)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    display_tz: str = Field(
        "America/New_York", description="the one time zone the operator sees (status, alerts, reports, charts), "
        "labelled EST/EDT...; America/Chicago = CME exchange time")
    feed: Literal["demo", "databento", "dbn", "polygon", "coinbase", "csv", "projectx", "rithmic"] = "demo"
    symbols: str = Field("", description="comma-separated roots to trade at once; empty = TRADING_SYMBOL")
    validation: ValidationSettings = ValidationSettings()
    sim: SimSettings = SimSettings()
    databento: DatabentoSettings = DatabentoSettings()
    daemon: DaemonSettings = DaemonSettings()
    watchdog: WatchdogSettings = WatchdogSettings()
    web: WebSettings = WebSettings()
    footprint: FootprintSettings = FootprintSettings()
    patterns: PatternSettings = PatternSettings()
    profile: ProfileSettings = ProfileSettings()
    microstructure: MicrostructureSettings = MicrostructureSettings()
    execution: ExecutionSettings = ExecutionSettings()
    propfirm: PropFirmSettings = PropFirmSettings()
    regime: RegimeSettings = RegimeSettings()
    router: RouterSettings = RouterSettings()
    filters: FilterSettings = FilterSettings()
    stocks: StockSettings = StockSettings()
    polygon: PolygonLiveSettings = PolygonLiveSettings()
    coinbase: CoinbaseSettings = CoinbaseSettings()
    projectx: ProjectXSettings = ProjectXSettings()
    rithmic: RithmicSettings = RithmicSettings()

    @model_validator(mode="before")
    @classmethod
    def _register_feed_symbols(cls, data: Any) -> Any:
        """``TRADEBOT_FEED=polygon``/``coinbase`` makes its stock/crypto symbols known before they are checked."""
        if isinstance(data, dict):
            feed = data.get("feed")
            if feed in ("polygon", "coinbase"):
                import contextlib

                from tradebot.core.instruments import register_for_feed

                syms = [str(data.get(k) or "") for k in ("trading_symbol", "TRADING_SYMBOL", "symbols")]
                with_parts = [p for s in syms for p in s.split(",") if p.strip()]
                with contextlib.suppress(ValueError):  # the symbol validators below name the bad variable
                    register_for_feed(str(feed), with_parts)
        return data

    @field_validator("discord_webhook_url")
    @classmethod
    def _discord_webhook(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            check_webhook_url(v.get_secret_value())
        return v

    @field_validator("display_tz")
    @classmethod
    def _display_zone(cls, v: str) -> str:
        return _check_zone(v)

    @field_validator("data_dir")
    @classmethod
    def _anchor_data(cls, v: Path) -> Path:
        return _anchored(v) or v

    @model_validator(mode="after")
    def _instrument_defaults(self) -> Settings:
        """Stocks/crypto registered later without explicit sessions (a recorded file's symbols) follow these."""
        from tradebot.core.instruments import DEFAULTS

        DEFAULTS.extended_hours = self.stocks.extended_hours
        DEFAULTS.day_boundary = self.coinbase.day_boundary
        return self

    @field_validator("trading_symbol")
    @classmethod
    def _known_symbol(cls, v: str) -> str:
        root = root_of(v)
        if root is None:
            raise ValueError(f"unknown contract; allowed: {', '.join(CONTRACTS)} "
                             "(stocks with TRADEBOT_FEED=polygon, crypto with TRADEBOT_FEED=coinbase)")
        return root

    @field_validator("symbols")
    @classmethod
    def _known_symbols(cls, v: str) -> str:
        roots = []
        for part in filter(None, (p.strip() for p in v.split(","))):
            root = root_of(part)
            if root is None:
                raise ValueError(f"unknown contract {part!r}; allowed: {', '.join(CONTRACTS)} "
                                 "(stocks with TRADEBOT_FEED=polygon, crypto with TRADEBOT_FEED=coinbase)")
            roots.append(root)
        return ",".join(roots)

    @property
    def symbol_list(self) -> list[str]:
        return self.symbols.split(",") if self.symbols else [self.trading_symbol]


DISCORD_HOSTS = frozenset({"discord.com", "discordapp.com", "canary.discord.com", "ptb.discord.com"})
_WEBHOOK_PATH = re.compile(r"/api(?:/v\d+)?/webhooks/\d+/[A-Za-z0-9_-]+/?")
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def check_webhook_url(url: str) -> None:
    """A Discord webhook (``https://discord.com/api/webhooks/<id>/<token>``) or a stand-in on this machine
    (``http://127.0.0.1:PORT/api/webhooks/<id>/<token>``, which the tests use); ``ValueError`` otherwise, without
    the URL in the message (it holds the token). A Slack URL or a typo would otherwise fail only at the first
    alert, silently, and a malformed one (``http://[::1/x``) crashed the daemon's shutdown."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"not a URL ({exc})") from None
    loopback = host in _LOOPBACK or host.startswith("127.")
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError("not an http(s) URL; expected https://discord.com/api/webhooks/<id>/<token>")
    if not loopback and (parts.scheme != "https" or host not in DISCORD_HOSTS):
        raise ValueError(f"not a Discord webhook (host {host!r}); expected https://discord.com/api/webhooks/<id>/"
                         f"<token> (plain http only on this machine, for a stand-in)")
    if not _WEBHOOK_PATH.fullmatch(parts.path) or parts.query or parts.fragment:
        raise ValueError("not a Discord webhook path; expected /api/webhooks/<id>/<token>")


class ConfigError(Exception):
    """One line per problem, each naming the environment variable; the CLI prints it and exits 2."""


def env_name(loc: tuple[Any, ...]) -> str:
    """The environment variable a pydantic error location refers to."""
    if not loc:
        return "(settings)"
    aliases = {f.validation_alias for f in Settings.model_fields.values() if isinstance(f.validation_alias, str)}
    if str(loc[0]) in aliases:
        return str(loc[0])
    field = Settings.model_fields.get(str(loc[0]))
    if field is not None and isinstance(field.validation_alias, str):
        return field.validation_alias
    if field is not None and isinstance(field.validation_alias, AliasChoices):
        return str(field.validation_alias.choices[0])
    return ENV_PREFIX + "__".join(str(p).upper() for p in loc)


MAX_MAGNITUDE = 10**15
"""No setting is a number beyond this (money in USD, seconds, sizes, ticks): ``1e999999`` is a typo, not a target,
and a Decimal that large makes every later conversion to cents hang or raise."""


def _shown(loc: tuple[Any, ...], value: Any) -> str:
    name = env_name(loc)
    return "<secret>" if any(w in name for w in ("KEY", "WEBHOOK", "TOKEN")) else repr(_short(value))


def _short(value: Any) -> Any:
    """A value as it may appear in an error line: never a huge number's digits (``repr`` of a 1e999999 Decimal
    is short, but ``int()`` of it is not and must never happen in a message)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str) and len(value) > 80:
        return value[:77] + "..."
    return value


def number_problems(model: BaseModel, loc: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any, str]]:
    """``(location, value, why)`` for every number in the settings tree that is not finite or is beyond
    :data:`MAX_MAGNITUDE` (pydantic accepts ``inf`` floats and any Decimal exponent that meets ``gt``/``lt``)."""
    out: list[tuple[tuple[Any, ...], Any, str]] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        here = (*loc, name)
        if isinstance(value, BaseModel):
            out += number_problems(value, here)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, float | Decimal | int):
            if not (math.isfinite(value) if isinstance(value, float) else
                    value.is_finite() if isinstance(value, Decimal) else True):
                out.append((here, value, "Input should be a finite number"))
            elif _too_big(value):
                out.append((here, value, f"Input should be at most {MAX_MAGNITUDE:.0e} in magnitude"))
    return out


def _too_big(value: int | float | Decimal) -> bool:
    if isinstance(value, Decimal):  # adjusted() first: abs() of a 1e999999999 Decimal overflows the context
        return value.adjusted() > 15 or abs(value) > Decimal(MAX_MAGNITUDE)
    return abs(value) > MAX_MAGNITUDE


def load_settings(root: Path | None = None, **overrides: Any) -> Settings:
    """Load settings or raise :class:`ConfigError` whose message has one line per bad variable.

    ``root``: the installation root (:mod:`tradebot.core.paths`) relative paths resolve against; None keeps them
    relative to the current directory.
    """
    from pydantic_settings import SettingsError

    token = _ROOT.set(root)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            lines.append(f"config error: {env_name(err['loc'])}={_shown(err['loc'], err.get('input'))}: "
                         f"{err['msg']}")
        raise ConfigError("\n".join(lines)) from None
    except SettingsError as exc:  # a nested group's JSON that does not parse: pydantic-settings names the field only
        raise ConfigError(_settings_error_line(exc)) from None
    finally:
        _ROOT.reset(token)
    bad = number_problems(settings)
    if bad:
        raise ConfigError("\n".join(f"config error: {env_name(loc)}={_shown(loc, v)}: {why}" for loc, v, why in bad))
    return settings


def checked_override(model: type[BaseModel], field: str, value: Any, option: str) -> Any:
    """``value`` for ``model.field`` (a command-line override of a setting) checked by the field's own rules and
    the finite/magnitude bound, exactly as the environment variable would be; :class:`ConfigError` naming the
    option otherwise. ``model_copy(update=...)`` alone validates nothing (``--loss-limit 100`` got through)."""
    from typing import Annotated

    from pydantic import TypeAdapter

    info = model.model_fields[field]
    try:
        form: Any = Annotated[info.annotation, *info.metadata]
        got = TypeAdapter(form).validate_python(value)
    except ValidationError as exc:
        raise ConfigError(f"config error: {option} {_short(value)!r}: {exc.errors()[0]['msg']}") from None
    check_number(option, got)
    return got


def check_number(option: str, value: Any, *, minimum: float | None = None) -> None:
    """A command-line number: finite, within :data:`MAX_MAGNITUDE`, and at least ``minimum`` when given."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return
    if isinstance(value, float | Decimal) and not (math.isfinite(value) if isinstance(value, float)
                                                   else value.is_finite()):
        raise ConfigError(f"config error: {option} {_short(value)!r}: Input should be a finite number")
    if _too_big(value):
        raise ConfigError(f"config error: {option} {_short(value)!r}: Input should be at most "
                          f"{MAX_MAGNITUDE:.0e} in magnitude")
    if minimum is not None and float(value) < minimum:
        raise ConfigError(f"config error: {option} {_short(value)!r}: Input should be greater than or equal to "
                          f"{minimum:g}")


def check_symbols(option: str, symbols: list[str]) -> list[str]:
    """Contract roots for ``--symbol``/``--symbols``, each known (as ``TRADING_SYMBOL`` is checked)."""
    roots = []
    for part in symbols:
        root = root_of(part)
        if root is None:
            raise ConfigError(f"config error: {option} {_short(part)!r}: unknown contract; allowed: "
                              f"{', '.join(CONTRACTS)} (stocks with --feed polygon, crypto with --feed coinbase)")
        roots.append(root)
    if not roots:
        raise ConfigError(f"config error: {option}: no symbol given")
    return roots


def _settings_error_line(exc: Exception) -> str:
    """One line for pydantic-settings' "error parsing value for field X": the variable and the JSON error."""
    import json
    import os
    import re

    m = re.search(r'field "([^"]+)"', str(exc))
    field = m.group(1) if m else ""
    prefix = (ENV_PREFIX + field).upper()
    for key, value in sorted(os.environ.items()):
        if key.upper() == prefix or key.upper().startswith(prefix + "__"):
            try:
                json.loads(value)
            except ValueError as jexc:
                return f"config error: {key}={_short(value)!r}: not valid JSON ({jexc})"
    cause = exc.__cause__ or exc
    return f"config error: {prefix or 'settings'}: not valid JSON ({_short(str(cause))})"
