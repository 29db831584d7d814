"""Configuration from the environment and ``.env``.

The seeds' variable names are kept where they exist (``TRADING_SYMBOL``, ``DAILY_LOSS_LIMIT``, ...) so a
trader's existing ``.env`` keeps working; everything else lives under ``TRADEBOT_`` (nested groups with
``__``, e.g. ``TRADEBOT_VALIDATION__STALE_SECONDS``). A bad value fails fast with one line naming the
variable: see :func:`load_settings`.

The groups live in :mod:`tradebot.core.config_market` (market data and decisions) and
:mod:`tradebot.core.config_trading` (execution and operations); this module assembles them into
:class:`Settings`, loads it, and is where the rest of the code imports every settings name from.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from tradebot.core.config_market import (
    ENV_PREFIX,
    SETTINGS_ROOT,
    FilterSettings,
    FootprintSettings,
    MicrostructureSettings,
    PatternSettings,
    ProfileSettings,
    RegimeSettings,
    RouteOverride,
    RouterSettings,
    RouteTableFile,
    RoutingTableError,
    SimSettings,
    ValidationSettings,
    anchored,
    check_zone,
    load_table_file,
    route_regime,
    route_rows,
)
from tradebot.core.config_trading import (
    DaemonSettings,
    ExecutionSettings,
    PropFirmSettings,
    WatchdogSettings,
    WebSettings,
)
from tradebot.core.config_venues import (
    CoinbaseSettings,
    DatabentoSettings,
    PolygonLiveSettings,
    ProjectXSettings,
    RithmicSettings,
    StockSettings,
)
from tradebot.core.contracts import CONTRACTS, root_of

__all__ = [
    "DISCORD_HOSTS",
    "ENV_PREFIX",
    "MAX_MAGNITUDE",
    "CoinbaseSettings",
    "ConfigError",
    "DaemonSettings",
    "DatabentoSettings",
    "ExecutionSettings",
    "FilterSettings",
    "FootprintSettings",
    "MicrostructureSettings",
    "PatternSettings",
    "PolygonLiveSettings",
    "ProfileSettings",
    "ProjectXSettings",
    "PropFirmSettings",
    "RegimeSettings",
    "RithmicSettings",
    "RouteOverride",
    "RouteTableFile",
    "RouterSettings",
    "RoutingTableError",
    "Settings",
    "SimSettings",
    "StockSettings",
    "ValidationSettings",
    "WatchdogSettings",
    "WebSettings",
    "anchored",
    "check_number",
    "check_symbols",
    "check_webhook_url",
    "check_zone",
    "checked_override",
    "env_name",
    "load_settings",
    "load_table_file",
    "number_problems",
    "route_regime",
    "route_rows",
]


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
        return check_zone(v)

    @field_validator("data_dir")
    @classmethod
    def _anchor_data(cls, v: Path) -> Path:
        return anchored(v) or v

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

    token = SETTINGS_ROOT.set(root)
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
        SETTINGS_ROOT.reset(token)
    bad = number_problems(settings)
    if bad:
        raise ConfigError("\n".join(f"config error: {env_name(loc)}={_shown(loc, v)}: {why}" for loc, v, why in bad))
    return settings


def checked_override(model: type[BaseModel], field: str, value: Any, option: str) -> Any:
    """``value`` for ``model.field`` (a command-line override of a setting) checked by the field's own rules and
    the finite/magnitude bound, exactly as the environment variable would be; :class:`ConfigError` naming the
    option otherwise. ``model_copy(update=...)`` alone validates nothing (``--loss-limit 100`` got through)."""

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
