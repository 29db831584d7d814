"""``tradebot replay``: recorded market data through the daemon itself, the same code path as live trading.

A layer above the daemon (it runs one) and the backtest tools (it finds catalog days and hashes the trades the
way a backtest does); nothing below imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

from tradebot.backtest.cli import find_days
from tradebot.backtest.stats import fmt_usd
from tradebot.core.config import ConfigError, Settings
from tradebot.execution.trades import trade_hash


def add_replay_command(sub: Any) -> None:
    """The ``replay`` subcommand's options (the daemon itself is imported only when a replay runs)."""
    r = sub.add_parser("replay", help="recorded data through the daemon itself (same code path as live)")
    r.add_argument("--input", nargs="*", default=[], help="DBN or CSV files")
    r.add_argument("--date", help="a day from the catalog (with --symbol, --data)")
    r.add_argument("--symbol", help="contract root (default TRADING_SYMBOL)")
    r.add_argument("--data", type=Path, help="catalog root (default TRADEBOT_DATA_DIR/catalog)")
    r.add_argument("--speed", type=float, default=0.0, help="0 as fast as possible, 1 real time, N times")
    r.add_argument("--name", help="the replay's folder under TRADEBOT_DATA_DIR/replays/ (default: symbol, first "
                                  "input and the UTC time; a name already used is refused)")
    r.add_argument("--db", type=Path, help="state database for this replay (default: replay.db in its folder); an "
                                           "existing one is continued, the daemon's own is refused")
    r.add_argument("--json", action="store_true", help="one JSON document on stdout")
    r.set_defaults(handler=replay_command)


REPLAYS_DIR = "replays"
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def replay_paths(args: argparse.Namespace, settings: Settings, symbol: str, inputs: list[str],
                 now: dt.datetime | None = None) -> tuple[Path, Path]:
    """(the replay's own folder, its state database). Raises :class:`ConfigError` (exit 2) when the name is not
    a plain folder name, is taken, or the database is the daemon's own.

    A replay never shares the daemon's state: its journal, control socket, heartbeat and alert outbox live in
    ``data/replays/<name>/``, so it neither reports the daemon's trades as its own nor leaves a halt, a position or
    a far-future clock in the database the daemon trades from.
    """
    from tradebot.state.store import default_db_path

    if args.name is not None:
        name = args.name
        if not _NAME_OK.match(name) or name in (".", ".."):
            raise ConfigError(f"config error: --name {name!r}: use letters, digits, '.', '_' or '-' (a folder name)")
    else:
        stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S%fZ")
        first = Path(inputs[0]).name.split(".", 1)[0] if inputs else "replay"
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{symbol}-{first}")[:60] + f"-{stamp}"
    run_dir = (settings.data_dir / REPLAYS_DIR / name).absolute()
    if run_dir.exists():
        raise ConfigError(f"replay: {run_dir} already exists (another replay's state); choose another --name, or "
                          f"--db PATH to continue a database on purpose")
    db = (args.db if args.db is not None else run_dir / "replay.db").expanduser().absolute()
    daemon_dbs = {default_db_path(settings.data_dir, m).absolute() for m in ("paper", "live")}
    if settings.execution.db_path is not None:
        daemon_dbs.add(settings.execution.db_path.absolute())
    if db.resolve() in {d.resolve() for d in daemon_dbs}:
        raise ConfigError(f"config error: --db '{db}': the daemon's own state database; a replay gets its own")
    if db.is_dir():
        raise ConfigError(f"config error: --db '{db}': a folder; give a database file")
    return run_dir, db


def replay_command(args: argparse.Namespace, settings: Settings) -> int:
    from tradebot.core.config import check_number, check_symbols
    from tradebot.core.logging import get_logger
    from tradebot.daemon import Daemon
    from tradebot.state.store import StateStore
    from tradebot.trading import closed_trades

    check_number("--speed", args.speed, minimum=0)
    symbol = check_symbols("--symbol", [args.symbol])[0] if args.symbol else settings.trading_symbol
    inputs = list(args.input)
    if args.date:
        root = args.data or settings.data_dir / "catalog"
        day = dt.date.fromisoformat(args.date)
        found = find_days(root, symbol, day, day)
        if not found:
            print(f"replay: no {symbol} file for {day} under {root} (try `tradebot data fetch`)", file=sys.stderr)
            return 2
        inputs += [str(p) for p in found.values()]
    if not inputs:
        print("replay: give --input FILE... or --date YYYY-MM-DD --symbol ROOT", file=sys.stderr)
        return 2
    run_dir, db = replay_paths(args, settings, symbol, inputs)
    existed = db.exists()
    # The daemon's code on the replay's own folder and database; no alert reaches the operator's Discord channel
    # (they stay in the replay's outbox), since a replay's "halted" or "filled" is not about the live account.
    rs = settings.model_copy(update={
        "data_dir": run_dir, "discord_webhook_url": None,
        "execution": settings.execution.model_copy(update={"db_path": db}),
    })
    get_logger("tradebot.replay").info("replay state", database=str(db), folder=str(run_dir),
                                       continued=existed)
    print(f"replay: state database {db}" + (" (continued)" if existed else ""), file=sys.stderr)
    code = asyncio.run(Daemon(rs, [symbol], "replay", inputs, args.speed, 0.0, exit_on_feed_end=True).run())
    doc: dict[str, Any] = {"exit_code": code, "database": str(db), "folder": str(run_dir), "inputs": inputs}
    if db.exists():
        store = StateStore.open(db, readonly=True)
        try:
            trades = closed_trades(store)
        finally:
            store.close()
        net = sum(t.net_pnl_cents for t in trades)
        doc.update(trades=len(trades), net_pnl_cents=net, trade_hash=trade_hash(trades))
        line = f"replay: {len(trades)} trades, net {fmt_usd(net, signed=True)}, trade hash {trade_hash(trades)}"
    else:
        line = "replay: no state was written"
    if args.json:
        print(json.dumps(doc, separators=(",", ":")))
    else:
        print(f"{line}\nreplay: state database {db}")
    return code
