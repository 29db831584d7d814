"""The ``tradebot`` command line.

Subcommand handlers are imported lazily so ``tradebot status`` over SSH does not pay for numpy, pandas
and matplotlib, and a broken optional dependency only breaks the command that needs it (a test guards the
import set of the operator's commands; ``benchmarks/cli_latency.py`` measures them). Every command finds the
installation's ``.env`` and data from the installation root, not the current directory (core/paths.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tradebot import __version__
from tradebot.core.config import ConfigError, Settings, check_number, load_settings
from tradebot.core.display import set_display_tz
from tradebot.core.logging import configure_logging, register_secret
from tradebot.core.paths import HOME_VAR, install_root

Handler = Callable[[argparse.Namespace, Settings], int]


def _lazy(target: str) -> Handler:
    module, func = target.split(":")

    def run(args: argparse.Namespace, settings: Settings) -> int:
        handler: Handler = getattr(importlib.import_module(module), func)
        return handler(args, settings)

    return run


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="run the trading daemon (default: simulated feed, paper mode)")
    p.add_argument("--symbol", help="contract root to trade (TRADING_SYMBOL)")
    p.add_argument("--symbols", help="several roots at once, comma-separated (e.g. GC,SI,NQ)")
    p.add_argument("--mode", choices=["paper", "live"], help="TRADING_MODE")
    p.add_argument("--broker", choices=["projectx", "rithmic"],
                   help="live mode's broker (TRADING_BROKER): projectx (TopstepX and other ProjectX firms), rithmic")
    p.add_argument("--feed", choices=["demo", "databento", "replay", "polygon", "coinbase", "projectx", "rithmic"],
                   help="market data source (polygon: US stocks, POLYGON_API_KEY; coinbase: crypto, no key; "
                        "projectx: your ProjectX/TopstepX firm's market hub, PROJECTX_USERNAME + PROJECTX_API_KEY; "
                        "rithmic: Rithmic's ticker plant, RITHMIC_USER + RITHMIC_PASSWORD)")
    p.add_argument("--input", nargs="*", help="files for --feed replay")
    p.add_argument("--speed", type=float, help="replay/simulation speed: 0 fastest, 1 real time")
    p.add_argument("--duration", type=float, default=0.0, help="stop after N seconds (0 = until signalled)")
    p.add_argument("--sessions", type=int, help="simulated sessions to generate")
    p.add_argument("--timeframe", type=int, help="footprint bar seconds (default 300)")
    p.add_argument("--profit-target", help="DAILY_PROFIT_TARGET in USD")
    p.add_argument("--loss-limit", help="DAILY_LOSS_LIMIT in USD (negative)")
    p.add_argument("--position-size", type=int, help="max contracts per bracket")
    p.add_argument("--stay", action="store_true", help="keep running after a finite feed ends")
    p.add_argument("--progress", action="store_true",
                   help="console mode (make run): what will happen and how long, one progress line, a summary "
                        "table at the end; log lines go to data/run.log")
    p.set_defaults(handler=_lazy("tradebot.daemon:run_daemon"))


def _add_data(sub: Any) -> None:
    p = sub.add_parser("data", help="market data files: inspect, fetch, synth")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    i = dsub.add_parser("inspect", help="print what a market data file holds")
    i.add_argument("files", nargs="+")
    i.add_argument("--symbol", help="contract root for files without one (CSV)")
    i.add_argument("--json", action="store_true")
    i.set_defaults(handler=_lazy("tradebot.feeds.inspect:inspect_command"))
    from tradebot.feeds.fetch import add_data_commands

    add_data_commands(dsub)
    from tradebot.feeds.record import add_record_command

    add_record_command(dsub, _lazy("tradebot.feeds.record:record_command"))


def _add_analyze(sub: Any) -> None:
    p = sub.add_parser("analyze", help="run a market data file through the order-flow engine")
    p.add_argument("files", nargs="+", help="DBN (.dbn, .dbn.zst) or CSV tick files")
    p.add_argument("--symbol", help="contract root (needed for CSV files)")
    p.add_argument("--contract", help="raw contract to report when the file holds several (e.g. ESH2)")
    p.add_argument("--bar-seconds", type=int, help="footprint bar length (default TRADEBOT_FOOTPRINT__BAR_SECONDS)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--features", metavar="OUT.parquet", help="per-bar feature vectors for research")
    p.add_argument("--plot", metavar="OUT.png", help="footprint chart")
    p.add_argument("--plot-bars", type=int, default=12, help="bars in the chart (the last N)")
    p.add_argument("--decisions", action="store_true", help="list every signal with regime, filters, verdict")
    p.set_defaults(handler=_lazy("tradebot.analyze:analyze_command"))


def _add_watchdog(sub: Any) -> None:
    p = sub.add_parser("watchdog", help="separate health monitor: heartbeat, market data, memory, disk")
    p.add_argument("--once", action="store_true",
                   help="check once, print what each check found, exit non-zero when a problem is open")
    p.add_argument("--json", action="store_true", help="with --once: the checks as one JSON document")
    p.add_argument("--broker", choices=("projectx", "rithmic"), default=None,
                   help="dead-man's switch: the broker to flatten at (default TRADING_BROKER, else the heartbeat's)")
    p.set_defaults(handler=_lazy("tradebot.ops.watchdog:watchdog_command"))


def _add_preflight(sub: Any) -> None:
    p = sub.add_parser("preflight", help="check config, keys, database, disk, clock and webhook before a session")
    p.set_defaults(handler=_lazy("tradebot.ops.preflight:preflight_command"))


def _add_control(sub: Any) -> None:
    helps = {"halt": "stop new entries now (exits still allowed); survives restarts",
             "resume": "allow new entries again", "flatten": "close every position at market",
             "ping": "check that the daemon answers"}
    for name, text in helps.items():
        p = sub.add_parser(name, help=f"operator: {text}")
        p.add_argument("--reason", help="recorded with the command (one line, at most 200 characters)")
        p.add_argument("--json", action="store_true")
        p.add_argument("--timeout", type=float, default=10.0,
                       help="seconds to wait for the daemon's answer (no answer: exit 3)")
        p.set_defaults(handler=_lazy("tradebot.ops.control:control_command"))


def _add_adopt(sub: Any) -> None:
    p = sub.add_parser("adopt", help="operator, live: take over a position the journal does not know (needs a stop)")
    p.add_argument("--symbol", required=True, help="contract root of the position at the broker (e.g. ES)")
    p.add_argument("--stop", required=True, help="protective stop price, on the losing side of the market")
    p.add_argument("--reason", help="recorded with the command (one line, at most 200 characters)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for the daemon's answer (no answer: exit 3)")
    p.set_defaults(handler=_lazy("tradebot.ops.control:control_command"))


def _add_web(sub: Any) -> None:
    p = sub.add_parser("web", help="the dashboard: http://127.0.0.1:8000 (reach it over an SSH tunnel)")
    p.add_argument("--host", help="address to bind (default TRADEBOT_WEB__HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default TRADEBOT_WEB__PORT, 8000; 0 = any free port)")
    p.add_argument("--uds", metavar="PATH", help="serve on this Unix socket instead of TCP")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (not recommended)")
    p.set_defaults(handler=_lazy("tradebot.web.server:web_command"))


def _add_state(sub: Any) -> None:
    from tradebot.execution.status import add_state_commands

    add_state_commands(sub)


def _add_backtest(sub: Any) -> None:
    from tradebot.backtest.cli import add_backtest_commands

    add_backtest_commands(sub)


def _add_replay(sub: Any) -> None:
    from tradebot.replay import add_replay_command

    add_replay_command(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradebot", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tradebot {__version__}")
    parser.add_argument("--env-file", help=f"dotenv file to read (default: .env in the installation root: ${HOME_VAR}, "
                                           "else the folder holding the venv when it has a .env, else the current "
                                           "directory)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_data(sub)
    _add_analyze(sub)
    _add_watchdog(sub)
    _add_preflight(sub)
    _add_control(sub)
    _add_adopt(sub)
    _add_web(sub)
    _add_state(sub)
    _add_backtest(sub)
    _add_replay(sub)
    return parser


_BOUNDS: dict[str, tuple[float, float | None]] = {
    "speed": (0, None), "duration": (0, None), "timeout": (0, None), "port": (0, 65535), "workers": (0, None),
    "walk_forward": (0, None), "footprints": (0, None), "monte_carlo": (0, None), "max_cost": (0, None),
    "retries": (0, 100), "days": (0, None), "trades_per_day": (1, None), "seed": (0, 2**32 - 1), "limit": (0, None),
}
"""Options without a setting behind them: the lowest (and highest) value that means something. Options that
override a setting (``--timeframe``, ``--position-size``, ...) are checked by the setting's own rules later."""


def check_options(args: argparse.Namespace) -> None:
    """Every number on the command line finite and within bounds (:class:`ConfigError`, one line, exit 2): argparse
    turns ``nan``/``inf``/``1e999`` into floats happily, and a NaN compares false with every limit."""
    for dest, value in vars(args).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        option = "--" + dest.replace("_", "-")
        low, high = _BOUNDS.get(dest, (None, None))
        check_number(option, value, minimum=low)
        if high is not None and value > high:
            raise ConfigError(f"config error: {option} {value}: Input should be at most {high:g}")


def _is_daemon(args: argparse.Namespace) -> bool:
    return args.command == "run" or (args.command == "watchdog" and not getattr(args, "once", False))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        root = install_root()
        settings = load_settings(root=None if root.source == "cwd" else root.path,
                                 _env_file=args.env_file or root.env_file)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    set_display_tz(settings.display_tz)
    for secret in (settings.databento_api_key, settings.polygon_api_key, settings.discord_webhook_url,
                   settings.web.token):
        if secret is not None:
            register_secret(secret.get_secret_value())
    # Daemons (run, the watchdog loop) log JSON lines to stdout for journald; every other command, replay included
    # (its stdout is the replay's result, one JSON document with --json), keeps stdout for its data.
    configure_logging(settings.log_level, settings.log_format, stderr=not _is_daemon(args))
    try:
        check_options(args)
        handler: Handler = args.handler
        return handler(args, settings)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
