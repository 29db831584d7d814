"""The settings groups of the market-data and decision stages: validation, the simulated market, footprint,
patterns, profile, microstructure, regime, the routing table and router, tradeability filters.

Part of the settings model :mod:`tradebot.core.config` assembles (and re-exports: import them from there); split
from it by stage so no module holds the whole model. Also the path anchoring and zone check every group uses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode

from tradebot.core.blackouts import BlackoutSchedule, load_blackouts
from tradebot.core.contracts import CONTRACTS, root_of
from tradebot.core.signals import Direction, Pattern, Regime
from tradebot.core.values import (
    IsoDate,
    RootMap,
    TimeWindows,
)

ENV_PREFIX = "TRADEBOT_"

SETTINGS_ROOT: ContextVar[Path | None] = ContextVar("tradebot_settings_root", default=None)
"""The installation root relative settings paths are anchored to while :func:`load_settings` runs (see paths.py)."""


def anchored(v: Path | None) -> Path | None:
    """A relative settings path under the installation root being loaded (unchanged outside a load)."""
    root = SETTINGS_ROOT.get()
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


def check_zone(name: str) -> str:
    """``name`` when it is an IANA zone; ``ValueError`` with an example otherwise."""
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
        path = anchored(Path(v))
        assert path is not None
        return load_blackouts(path, info.data.get("blackout_tz", "America/New_York"))

    @field_serializer("blackout_file")
    def _blackout_path(self, v: BlackoutSchedule | None) -> str | None:
        return None if v is None else v.source

    @field_validator("trading_windows_tz", "blackout_tz")
    @classmethod
    def _zone(cls, v: str) -> str:
        return check_zone(v)

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
        path = anchored(Path(v))
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
