"""Which settings the fast path reproduces: an allowlist over every field of :class:`~tradebot.core.config.Settings`.

The fast path is only allowed to answer where it gives the event path's exact trades. A denylist of the
settings it cannot model ("everything else is fine") let every new setting through unexamined, so a setting
added for the live path could silently change the event path's trades while the fast path ignored it. Here
every field of the settings tree (nested groups included, by dotted path) is classified as one of:

* :class:`Modelled`: the fast path reproduces every value (it reuses the event path's own object, or the
  kernel restates the rule and the parity tests pin it);
* :class:`EventPath`: some values are outside the fast path's model; ``fast_when(value)`` says which values it
  reproduces, any other value runs the event path (``why`` is the reason the backtest reports);
* :class:`Irrelevant`: a backtest's trades never depend on it (credentials, live feeds, notifications, the
  daemon, the dashboard).

A field missing from :data:`FIELDS` is not guessed at: :func:`fast_supported` sends the run to the event path
(and names the field), and ``tests/backtest/test_fast_support.py`` fails naming it, so the author of a new
setting decides here which of the three it is.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from operator import attrgetter
from typing import Any

from pydantic import BaseModel

from tradebot.core.config import Settings


@dataclass(frozen=True)
class Modelled:
    """The fast path reproduces every value; ``how`` names the part of it that does."""

    how: str


@dataclass(frozen=True)
class EventPath:
    """Only values with ``fast_when(value)`` are reproduced; others run the event path because of ``why``
    (a format string: ``{value}`` is the setting's value)."""

    fast_when: Callable[[Any], bool]
    why: str


@dataclass(frozen=True)
class Irrelevant:
    """No backtest trade depends on the setting; ``why`` says why not."""

    why: str


Classification = Modelled | EventPath | Irrelevant


def _fields(group: str, kind: Classification, *names: str) -> list[tuple[str, Classification]]:
    prefix = f"{group}." if group else ""
    return [(prefix + n, kind) for n in names]


def _table(*groups: list[tuple[str, Classification]]) -> dict[str, Classification]:
    out: dict[str, Classification] = {}
    for group in groups:
        for path, kind in group:
            if path in out:
                raise ValueError(f"{path} is classified twice for the fast path")
            out[path] = kind
    return out


# Shared reasons (one instance each, so the table reads as groups).
_PATTERNS = Modelled("the event path's PatternEngine runs on the fast path's bars")
_REGIME = Modelled("the event path's RegimeDetector runs on the fast path's bars")
_ROUTER = Modelled("the event path's Router decides on the fast path's bars and contexts")
_FILTERS = Modelled("the Router's own tradeability filters, fed the book state by fast.context")
_BARS = Modelled("kernels.assign_bars restates the footprint builder's bar boundaries (parity tests)")
_MANAGER = Modelled("fast.execution restates the manager's rules with its own functions (parity tests)")
_KERNEL = Modelled("kernels.run_bracket restates the paper broker's fills (parity tests)")
_LOAD = Modelled("fast.load applies the validator's rule to the columns (parity tests)")
_NO_DECISION = Irrelevant("no decision reads it (fast.context leaves OFI, impact, VWAP and HVN/LVN out)")
_LIVE_FEED = Irrelevant("live or simulated feeds only: a backtest reads recorded files")
_OPS = Irrelevant("the daemon, the watchdog, alerts or the dashboard: not part of a backtest's trades")
_SECRET = Irrelevant("a credential or an endpoint: never read by a backtest")
_NOT_FUTURES = Irrelevant("stocks and crypto only: the fast path refuses any other instrument than a future "
                          "(FastDay raises UnsupportedError)")
_ALERTS = Irrelevant("order-flow alerts: they change trades only with ORDER_FLOW_EXIT_MODE=auto, which runs the "
                     "event path")
_PAPER_ANSWERS = Irrelevant("the paper broker answers at once and fills each order once: no timeout, no duplicate")


FIELDS: dict[str, Classification] = _table(
    # --- top level (the seeds' names and TRADEBOT_*) -------------------------------------------------------
    _fields("", _SECRET, "databento_api_key", "polygon_api_key", "discord_webhook_url"),
    _fields("", Irrelevant("live mode's broker: a backtest fills on paper"), "trading_broker"),
    _fields("", Modelled("the symbol is an argument of every fast run (FastDay(paths, symbol, ...))"),
            "trading_symbol"),
    _fields("", Irrelevant("a backtest trades the one symbol it is given"), "symbols"),
    _fields("", Irrelevant("labels the journal and the database; a backtest fills on paper either way"),
            "trading_mode"),
    _fields("", _MANAGER, "daily_profit_target", "daily_loss_limit", "mes_margin_limit", "es_margin_limit"),
    _fields("", _ALERTS, "order_flow_large_order_size", "order_flow_volume_spike_threshold",
            "order_flow_red_burst_threshold", "order_flow_alert_window_seconds", "order_flow_monitoring_mode",
            "order_flow_book_resting_size"),
    _fields("", EventPath(lambda v: v == "alert",
                          "ORDER_FLOW_EXIT_MODE={value} (order-flow exit signals close positions tick by tick)"),
            "order_flow_exit_mode"),
    _fields("", _ROUTER, "min_confidence"),
    _fields("", Irrelevant("where files go, logs and display: not part of a backtest's trades"),
            "data_dir", "log_level", "log_format", "display_tz"),
    _fields("", Irrelevant("the daemon's feed choice: a backtest reads the files it is given"), "feed"),
    # --- validation -----------------------------------------------------------------------------------------
    _fields("validation", _LOAD, "future_seconds", "max_jump_ticks", "jump_confirm_prints", "max_size",
            "range_slack_seconds"),
    _fields("validation", Irrelevant("live only (with check_staleness, which runs the event path)"),
            "stale_seconds"),
    _fields("validation", Irrelevant("applies to sources without a declared time span; fast.load refuses those"),
            "max_time_gap_seconds"),
    _fields("validation", EventPath(lambda v: not v, "validation.check_staleness (depends on the wall clock)"),
            "check_staleness"),
    _fields("validation", EventPath(
        lambda v: v == 0, "validation.out_of_order_ms={value} > 0 (late prints joining open bars are not modelled)"),
        "out_of_order_ms"),
    # --- live feeds, daemon, watchdog, dashboard -------------------------------------------------------------
    _fields("sim", _LIVE_FEED, "seed", "speed", "trades_per_session", "book_depth", "sessions", "start_date"),
    _fields("databento", _LIVE_FEED, "dataset", "book_schema", "stype_in", "gateway", "port",
            "reconnect_initial_seconds", "reconnect_max_seconds", "heartbeat_interval_seconds"),
    _fields("daemon", _OPS, "heartbeat_seconds", "stale_feed_seconds", "flatten_on_shutdown",
            "shutdown_flush_seconds", "loop_lag_seconds", "notify_disabled", "status_log_seconds", "record_live",
            "record_checkpoint_seconds", "stream_queue",
            "min_free_mb"),
    _fields("watchdog", _OPS, "interval_seconds", "stale_heartbeat_seconds", "stale_data_seconds", "max_rss_mb",
            "max_memory_percent", "min_disk_free_mb", "reconnect_storm_count", "reconnect_storm_seconds",
            "realert_seconds", "report_at", "deadman", "deadman_stale_seconds", "deadman_flat_seconds"),
    _fields("web", _OPS, "host", "port", "allow_remote", "session_hours", "bars", "client_queue"),
    _fields("web", _SECRET, "token"),
    _fields("polygon", _LIVE_FEED, "ws_url", "rest_url", "quotes", "reconnect_initial_seconds",
            "reconnect_max_seconds", "rest_fallback", "rest_requests_per_minute", "retry_socket_seconds"),
    _fields("", _SECRET, "projectx_api_url", "projectx_user_hub_url", "projectx_market_hub_url", "projectx_username",
            "projectx_api_key", "projectx_account_id"),
    _fields("projectx", Irrelevant("the ProjectX live broker's connection: a backtest fills on paper"),
            "request_timeout_seconds", "retries", "backoff_initial_seconds", "backoff_max_seconds",
            "token_refresh_seconds", "native_brackets", "ping_seconds", "server_timeout_seconds"),
    _fields("", _SECRET, "rithmic_user", "rithmic_password", "rithmic_account_id", "rithmic_system_name",
            "rithmic_url", "rithmic_app_name", "rithmic_ca_file"),
    _fields("rithmic", Irrelevant("the Rithmic live broker's and feed's connection: a backtest fills on paper"),
            "app_version", "request_timeout_seconds", "reconnect_interval_seconds", "reconnect_max_seconds",
            "max_reconnects", "fail_after_seconds", "depth_levels"),
    _fields("coinbase", _NOT_FUTURES, "book_depth", "day_boundary", "flatten_at_day_end", "lot_size",
            "taker_fee_bps"),
    _fields("coinbase", _LIVE_FEED, "ws_url", "rest_url", "reconnect_initial_seconds", "reconnect_max_seconds"),
    _fields("stocks", _NOT_FUTURES, "extended_hours", "watchlist", "sub_dollar", "lot_shares",
            "commission_cents_per_share"),
    # --- the order-flow engine --------------------------------------------------------------------------------
    _fields("footprint", _BARS, "bar_seconds", "bar_type", "bar_volume"),
    _fields("patterns", _PATTERNS, "imbalance_ratio", "imbalance_min_volume", "imbalance_min_volume_by_symbol",
            "stacked_min_levels", "exhaustion_abs_volume", "exhaustion_mean_fraction", "exhaustion_levels",
            "absorption_mean_multiple", "absorption_close_ticks", "absorption_zone_ticks", "unfinished_max_open",
            "flow_patterns", "flow_imbalance_ratio", "flow_min_volume", "burst_spike_ratio", "burst_baseline_bars"),
    _fields("profile", Modelled("fast.context builds the developing profile with profile.value_area"),
            "value_area_pct", "value_area_method"),
    _fields("profile", _NO_DECISION, "node_smoothing_ticks", "node_min_prominence"),
    _fields("profile", Irrelevant("the profile's bias and naked POCs: no decision reads them"),
            "max_naked_pocs", "bias_reference", "bias_buffer_ticks"),
    _fields("microstructure", Modelled("fast.context computes the top-N depth and the flow window"),
            "depth_levels", "flow_window_seconds", "bucket_ms"),
    _fields("microstructure", _NO_DECISION, "ofi_levels", "ofi_windows_seconds", "impact_size", "vwap_reset"),
    # --- execution --------------------------------------------------------------------------------------------
    _fields("execution", Irrelevant("a backtest journals to a temporary database"), "db_path"),
    _fields("execution", _KERNEL, "stop_slippage_ticks", "market_slippage_ticks"),
    _fields("execution", EventPath(lambda v: v == "through",
                                   "execution.limit_fill_rule={value} (queue position is not modelled)"),
            "limit_fill_rule"),
    _fields("execution", Irrelevant("the queue rule only (limit_fill_rule=queue runs the event path)"),
            "queue_ahead_contracts"),
    _fields("execution", _PAPER_ANSWERS, "submit_timeout_seconds", "fill_dedupe_size"),
    _fields("execution", _MANAGER, "commission_cents", "fees_cents", "flatten_on_limit", "limits_include_unrealized",
            "auto_flatten", "auto_flatten_time", "starting_balance", "tiers_enabled", "tiers", "max_position_size",
            "margin_overrides", "margin_limits"),
    _fields("execution", Irrelevant("tradebot status only"), "heartbeat_stale_seconds"),
    _fields("execution", Irrelevant("live broker only: a backtest fills on paper"), "reconcile_seconds", "shadow_model",
            "protect_seconds", "connect_backoff_max_seconds"),
    # --- prop-firm account rules ------------------------------------------------------------------------------
    _fields("propfirm", EventPath(lambda v: not v, "propfirm.profile={value} (prop-firm account rules are not "
                                                   "modelled)"), "profile"),
    _fields("propfirm", Irrelevant("only with propfirm.profile set, which runs the event path"), "profiles_file",
            "stop_within_headroom", "balance", "high_water", "intraday_journal_step"),
    _fields("propfirm", Irrelevant("headroom alerts only"), "alert_steps"),
    # --- regime, router, filters --------------------------------------------------------------------------
    _fields("regime", _REGIME, "adx_period", "atr_period", "ema_fast", "ema_slow", "structure_lookback",
            "adx_trend_threshold", "volatile_percentile", "atr_history_bars", "atr_min_history", "session_basis",
            "open_buffer_minutes", "close_buffer_minutes", "low_volume_ratio", "volume_average_bars",
            "volume_min_history", "trading_windows", "trading_windows_tz", "blackout_file", "blackout_tz"),
    _fields("router", _ROUTER, "table", "table_file", "base_size", "cooldown_seconds", "stop_mode",
            "stop_points_by_symbol", "atr_stop_multiple", "min_stop_ticks", "risk_reward", "weight_trigger",
            "weight_cum_delta", "weight_buy_pressure", "weight_depth_imbalance", "weight_intensity", "weight_profile",
            "min_confirmations", "cum_delta_threshold", "cum_delta_threshold_by_symbol", "buy_pressure_threshold",
            "depth_imbalance_threshold", "intensity_ratio", "intensity_bars", "intensity_min_history",
            "near_extreme_atr", "near_extreme_ticks"),
    _fields("router", EventPath(lambda v: v == "market",
                                "router.entry_type={value} (only market entries are modelled)"), "entry_type"),
    _fields("filters", _FILTERS, "mode", "safe_max_spread_ticks", "safe_min_depth_usd", "aggressive_max_spread_ticks",
            "aggressive_min_depth_usd", "depth_levels", "missing_book", "book_stale_seconds", "gap_max_pct",
            "gap_window_seconds", "gap_max_ticks", "halt_recent_seconds", "no_trade_seconds"),
    _fields("filters", _NOT_FUTURES, "pct_safe_max_spread", "pct_safe_min_depth_usd", "pct_aggressive_max_spread",
            "pct_aggressive_min_depth_usd"),
)
"""Every settings field by dotted path (``execution.limit_fill_rule``; top-level fields by their Python name)."""

HOW_TO_CLASSIFY = (
    "Classify each in FIELDS in src/tradebot/backtest/fast/support.py, as one of: "
    "Modelled(how) if the fast path reproduces every value (say which part of it does); "
    "EventPath(fast_when=lambda v: v == <the value the fast path reproduces, usually the default>, why='...') if "
    "the setting can change a backtest's trades and the fast path does not model it (a risk rule, an order type, a "
    "fill rule: the run then falls back to the exact event path); "
    "Irrelevant(why) if no backtest trade depends on it (credentials, endpoints, live-only or broker connection "
    "settings, notifications). When unsure, EventPath: it is always exact, only slower.")
"""What the author of a new setting is told (by the test and by the fallback reason)."""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The settings group a field holds (``Group`` or ``Group | None``), or ``None`` for a leaf value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1 and all(a is type(None) or a in models for a in typing.get_args(annotation)):
            return models[0]
    return None


def setting_paths(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[str]:
    """Dotted paths of every leaf field of a settings model (nested groups walked; maps and lists are leaves)."""
    for name, info in model.model_fields.items():
        sub = _model_of(info.annotation)
        if sub is None:
            yield prefix + name
        else:
            yield from setting_paths(sub, f"{prefix}{name}.")


@cache
def unclassified(model: type[BaseModel] = Settings) -> tuple[str, ...]:
    """Fields of ``model`` that :data:`FIELDS` does not classify (empty when the table is complete)."""
    return tuple(p for p in setting_paths(model) if p not in FIELDS)


def _value(settings: BaseModel, path: str) -> Any:
    try:
        return attrgetter(path)(settings)
    except AttributeError:
        return None  # a group set to None: its fields have no value to refuse


def fast_supported(settings: Settings) -> str | None:
    """Why these settings need the event path (``None``: the fast path reproduces them exactly)."""
    missing = unclassified(type(settings))
    if missing:
        return (f"settings not classified for the fast path: {', '.join(missing)} (the event path runs until they are "
                f"classified in backtest/fast/support.py)")
    for path, kind in _CONDITIONS:
        value = _value(settings, path)
        if not kind.fast_when(value):
            return kind.why.format(value=value)
    return None


_CONDITIONS = [(path, kind) for path, kind in FIELDS.items() if isinstance(kind, EventPath)]


__all__ = ["FIELDS", "HOW_TO_CLASSIFY", "Classification", "EventPath", "Irrelevant", "Modelled", "fast_supported",
           "setting_paths", "unclassified"]
