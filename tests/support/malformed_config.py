"""Config and command-line cases of the malformed-input corpus (:mod:`support.malformed`).

Each case gives good market data (the clean real TBBO base file) with a bad setting in the environment or a bad
option on the command line. A correct program refuses before touching anything: exit 2, one ``config error``
line on stderr naming the variable or option, no traceback. A setting is checked by every command (they all load
the settings); an option only by the commands that have it. The last cases are good values the checks must let
through (plain ``http://`` to a loopback webhook stand-in, a decimal loss limit).
"""

from __future__ import annotations

from support.malformed import Case, dbn_records, register

GOOD = dbn_records()
ERR = "config error"
RUN = ("run",)
REPLAY = ("replay",)
ANALYZE = ("analyze",)


def _env(name: str, env: dict[str, str], reason: str = ERR) -> Case:
    return Case(f"config_{name}", "config", GOOD, 2, reason, env=env)


def _opt(name: str, commands: tuple[str, ...], args: tuple[str, ...], reason: str = ERR, *,
         symbol: str = "ES") -> Case:
    return Case(f"cli_{name}", "cli", GOOD, 2, reason, args=args, commands=commands, symbol=symbol)


register(
    # -- settings from the environment: every command refuses them ------------------------------------------
    _env("profit_target_1e999999", {"DAILY_PROFIT_TARGET": "1e999999"}, "DAILY_PROFIT_TARGET"),
    _env("profit_target_nan", {"DAILY_PROFIT_TARGET": "nan"}, "finite"),
    _env("profit_target_negative", {"DAILY_PROFIT_TARGET": "-5"}, "DAILY_PROFIT_TARGET"),
    _env("loss_limit_positive", {"DAILY_LOSS_LIMIT": "100"}, "DAILY_LOSS_LIMIT"),
    _env("loss_limit_huge", {"DAILY_LOSS_LIMIT": "-1e999999999"}, "DAILY_LOSS_LIMIT"),
    _env("starting_balance_1e999999999", {"TRADEBOT_EXECUTION__STARTING_BALANCE": "1e999999999"},
         "STARTING_BALANCE"),
    _env("stale_seconds_inf", {"TRADEBOT_VALIDATION__STALE_SECONDS": "inf"}, "finite"),
    _env("max_jump_ticks_20_digits", {"TRADEBOT_VALIDATION__MAX_JUMP_TICKS": "99999999999999999999"},
         "MAX_JUMP_TICKS"),
    _env("bar_seconds_zero", {"TRADEBOT_FOOTPRINT__BAR_SECONDS": "0"}, "BAR_SECONDS"),
    _env("bar_seconds_text", {"TRADEBOT_FOOTPRINT__BAR_SECONDS": "five"}, "BAR_SECONDS"),
    _env("router_table_bad_json", {"TRADEBOT_ROUTER__TABLE": '{"VOLATILE": {"size_multiplier": 0.25'},
         "not valid JSON"),
    _env("router_table_unknown_regime", {"TRADEBOT_ROUTER__TABLE": '{"SIDEWAYS": {"size_multiplier": 0.5}}'},
         "ROUTER__TABLE"),
    _env("webhook_not_a_url", {"DISCORD_WEBHOOK_URL": "not-a-url"}, "DISCORD_WEBHOOK_URL=<secret>"),
    _env("webhook_slack", {"DISCORD_WEBHOOK_URL": "https://hooks.slack.com/services/T00/B00/XXXXXXXX"},
         "not a Discord webhook"),
    _env("webhook_broken_ipv6", {"DISCORD_WEBHOOK_URL": "http://[::1/x"}, "not a URL"),
    _env("webhook_plain_http_remote", {"DISCORD_WEBHOOK_URL": "http://example.com/api/webhooks/1/token"},
         "not a Discord webhook"),
    _env("trading_symbol_unknown", {"TRADING_SYMBOL": "BOGUS"}, "TRADING_SYMBOL"),
    _env("trading_mode_yolo", {"TRADING_MODE": "yolo"}, "TRADING_MODE"),
    _env("log_level_loud", {"TRADEBOT_LOG_LEVEL": "LOUD"}, "TRADEBOT_LOG_LEVEL"),
    # -- command-line overrides: the commands that take them -----------------------------------------------
    _opt("timeframe_negative", RUN, ("--timeframe", "-5"), "--timeframe -5"),
    _opt("timeframe_zero", RUN, ("--timeframe", "0"), "--timeframe 0"),
    _opt("timeframe_text", RUN, ("--timeframe", "abc"), "invalid int value"),
    _opt("position_size_negative", RUN, ("--position-size", "-3"), "--position-size -3"),
    _opt("position_size_zero", RUN, ("--position-size", "0"), "--position-size 0"),
    _opt("run_speed_nan", RUN, ("--speed", "nan"), "--speed nan"),
    _opt("run_speed_inf", RUN, ("--speed", "inf"), "--speed inf"),
    _opt("run_speed_negative", RUN, ("--speed", "-1"), "--speed -1"),
    _opt("profit_target_nan", RUN, ("--profit-target", "nan"), "--profit-target 'nan'"),
    _opt("profit_target_1e999999", RUN, ("--profit-target", "1e999999"), "--profit-target"),
    _opt("loss_limit_positive", RUN, ("--loss-limit", "100"), "--loss-limit '100'"),
    _opt("loss_limit_text", RUN, ("--loss-limit", "lots"), "--loss-limit 'lots'"),
    _opt("symbols_one_bogus", RUN, ("--symbols", "ES,BOGUS"), "--symbols 'BOGUS'"),
    _opt("run_symbol_bogus", RUN, (), "--symbol 'BOGUS'", symbol="BOGUS"),
    _opt("duration_nan", RUN, ("--duration", "nan"), "--duration nan"),
    _opt("sessions_zero", RUN, ("--sessions", "0"), "--sessions 0"),
    _opt("replay_speed_nan", REPLAY, ("--speed", "nan"), "--speed nan"),
    _opt("replay_speed_inf", REPLAY, ("--speed", "inf"), "--speed inf"),
    _opt("replay_symbol_bogus", REPLAY, (), "--symbol 'BOGUS'", symbol="BOGUS"),
    _opt("replay_name_escapes", REPLAY, ("--name", "../daemon"), "--name '../daemon'"),
    _opt("replay_db_is_a_folder", REPLAY, ("--db", "/"), "a folder"),
    _opt("bar_seconds_zero", ANALYZE, ("--bar-seconds", "0"), "--bar-seconds 0"),
    _opt("bar_seconds_negative", ANALYZE, ("--bar-seconds", "-60"), "--bar-seconds -60"),
    _opt("plot_bars_zero", ANALYZE, ("--plot-bars", "0"), "--plot-bars 0"),
    _opt("analyze_symbol_bogus", ANALYZE, (), "--symbol 'BOGUS'", symbol="BOGUS"),
    # -- good values the checks must let through ------------------------------------------------------------
    Case("config_webhook_loopback_http", "config", GOOD, 0, env={"DISCORD_WEBHOOK_URL":
                                                                 "http://127.0.0.1:9/api/webhooks/1/token"},
         commands=("analyze", "inspect", "replay")),
    Case("cli_loss_limit_decimal", "cli", GOOD, 0, args=("--loss-limit", "-250.50"), commands=RUN),
)
