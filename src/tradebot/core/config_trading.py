"""The settings groups of the trading and operating stages: the daemon, the dashboard, the watchdog, prop-firm
rules, execution (fills, risk, tiers, margin, reconciliation).

Part of the settings model :mod:`tradebot.core.config` assembles (and re-exports: import them from there); split
from it by stage so no module holds the whole model.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode

from tradebot.core.config_market import anchored
from tradebot.core.notifications import NotificationKind, parse_kinds
from tradebot.core.propfirm_profile import ProfilesFile, PropFirmProfile, read_profiles
from tradebot.core.values import (
    ClockTime,
    PercentSteps,
    RootMap,
    Tiers,
)


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
    record_checkpoint_seconds: float = Field(
        900.0, gt=0, description="commit the live recording this often (event time): a kill -9 loses at most this "
        "much of the day's recording")
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
    profiles_file: Annotated[ProfilesFile | None, NoDecode] = Field(
        None, validate_default=True,
        description="TOML file of profiles replacing the built-in src/tradebot/data/propfirms.toml")
    """Read once, at load (with the built-in file when a profile is chosen without one); dumps as its path."""
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

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @field_validator("profiles_file", mode="before")
    @classmethod
    def _read_profiles(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, ProfilesFile):
            return v
        if v is None or (isinstance(v, str) and not v.strip()):  # an empty .env value means "the built-in file"
            return read_profiles(None) if info.data.get("profile") else None
        if not isinstance(v, str | Path):
            raise ValueError("give the path of a TOML profiles file")
        return read_profiles(anchored(Path(v)))

    @field_serializer("profiles_file")
    def _profiles_path(self, v: ProfilesFile | None) -> str | None:
        return None if v is None or v.path is None else str(v.path)

    @model_validator(mode="after")
    def _known_profile(self) -> PropFirmSettings:
        """A profile name that is not in the file (a typo) fails at startup, with the names that are."""
        if self.profile and self.account is None:
            names = list(self.profiles_file.profiles) if self.profiles_file is not None else []
            raise ValueError(f"unknown prop-firm profile {self.profile!r}; the profiles file has: {', '.join(names)}")
        return self

    @property
    def account(self) -> PropFirmProfile | None:
        """The chosen profile's rules; ``None`` when prop-firm rules are off."""
        if not self.profile or self.profiles_file is None:
            return None
        return self.profiles_file.profiles.get(self.profile)


class ExecutionSettings(BaseModel):
    """Execution: paper fills, daily risk, capital tiers, margin protection, the state database."""

    db_path: Path | None = Field(None, description="state database; empty = <data_dir>/tradebot-<mode>.db")

    @field_validator("db_path")
    @classmethod
    def _anchor_db(cls, v: Path | None) -> Path | None:
        return anchored(v)

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
