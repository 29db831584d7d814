"""Operator commands over the state database: ``status``, ``trades``, ``signals``, ``stats``.

They open the database read-only and never need the daemon (or pandas): over SSH on a stopped or halted
box they still say what is open and why. ``status`` exits non-zero when something needs a human: no or a
stale heartbeat, or trading halted by an error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tradebot.core.config import Settings
from tradebot.core.contracts import UnknownContractError, decode_tick_value, money_cents
from tradebot.core.display import fmt_ts
from tradebot.core.instruments import spec_or_register
from tradebot.core.stats import equity_curve, json_ratio, max_drawdown, summarize
from tradebot.execution.risk import fmt_cents, usd_to_cents
from tradebot.state import queries
from tradebot.state.store import StateError, StateStore, default_db_path

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_STATE_ERROR = 2
OPEN_STATES = ("pending", "working", "partially_filled", "filled", "unknown")


def add_state_commands(sub: Any) -> None:
    """Register ``status``, ``trades``, ``signals`` and ``stats`` on the CLI's subparsers."""
    p = sub.add_parser("status", help="mode, trading state, tier, open positions, today's P&L, heartbeat")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=status_command)
    p = sub.add_parser("trades", help="closed trades with P&L and exit reason")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--today", action="store_true", help="only the current trading day")
    g.add_argument("--days", type=int, default=0, help="the last N trading days")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=trades_command)
    p = sub.add_parser("signals", help="recent signals and what became of them")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=signals_command)
    p = sub.add_parser("stats", help="trading statistics over all recorded days")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=stats_command)


def db_path(settings: Settings) -> Path:
    return settings.execution.db_path or default_db_path(settings.data_dir, settings.trading_mode)


def _open(settings: Settings) -> StateStore:
    return StateStore.open(db_path(settings), mode=settings.trading_mode, readonly=True)


def _when(ts_ns: Any) -> str:
    if not ts_ns:
        return ""
    return fmt_ts(int(ts_ns))


def _px(symbol: str, ticks: int | None) -> str:
    if ticks is None:
        return ""
    try:
        return spec_or_register(symbol).fmt(int(ticks))
    except UnknownContractError:
        return str(ticks)


def _avg_px(symbol: str, value: int, qty: int) -> str:
    if qty <= 0:
        return ""
    try:
        spec = spec_or_register(symbol)
    except UnknownContractError:
        return f"{value / qty:.2f}"
    if value % qty == 0:
        return spec.fmt(value // qty)
    return str((value * spec.tick_size / qty).quantize(spec.tick_size / 100))


def _flag(args: argparse.Namespace, name: str, default: Any = None) -> Any:
    return getattr(args, name, default)


# ---------------------------------------------------------------------------------------------------
# status


def read_heartbeat(path: Path, now_ns: int, stale_seconds: float) -> dict[str, Any]:
    """Heartbeat health from ``heartbeat.json`` (``ts_ns``, ``feed_state``): absent or unreadable is unhealthy."""
    if not path.exists():
        return {"present": False, "healthy": False, "detail": "no heartbeat"}
    try:
        data = json.loads(path.read_text())
        ts = int(data["ts_ns"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return {"present": True, "healthy": False, "detail": f"heartbeat unreadable: {exc}"}
    age = (now_ns - ts) / 1e9
    healthy = age <= stale_seconds
    detail = "ok" if healthy else f"stale heartbeat ({age:.0f}s old)"
    pid = data.get("pid") if isinstance(data, dict) else None
    running = _pid_alive(pid) if isinstance(pid, int) else None
    if running is False:  # a clean stop leaves a fresh heartbeat: the process itself must be there
        healthy, detail = False, f"daemon not running (pid {pid} gone)"
    return {"present": True, "healthy": healthy, "age_seconds": round(age, 1), "ts_ns": ts, "pid": pid,
            "running": running, "feed_state": str(data.get("feed_state", "")) if isinstance(data, dict) else "",
            "detail": detail}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user (the service user)
        return True
    return True


def collect_status(settings: Settings, now_ns: int | None = None) -> dict[str, Any]:
    """Everything ``tradebot status`` shows, from the database and the heartbeat file only."""
    now = time.time_ns() if now_ns is None else now_ns
    hb = read_heartbeat(settings.data_dir / "heartbeat.json", now, settings.execution.heartbeat_stale_seconds)
    out: dict[str, Any] = {"mode": settings.trading_mode, "database": str(db_path(settings)), "heartbeat": hb}
    store = _open(settings)
    try:
        t = queries.trading_state(store) or {
            "state": "active", "halt_kind": "", "reason": "", "since_ns": 0, "trading_day": None, "tier_name": None,
            "tier_symbol": None, "tier_max": None, "balance_cents": 0}
        sess = queries.latest_session(store)
        day = t.get("trading_day") or (sess["trading_day"] if sess else None)
        today = queries.daily_stats(store, day) if day else None
        daily = [today] if today is not None else []
        marks = queries.marks(store)
        brackets = queries.brackets_in_states(store, OPEN_STATES)
        last_journal_ns = queries.last_journal_ns(store)
        books = queries.open_position_lots(store)
        propfirm_state = queries.last_propfirm_state(store) if settings.propfirm.profile else None
    finally:
        store.close()
    unrealized: dict[str, int] = {}
    for row in books:
        mark = marks.get(row["symbol"])
        if mark is not None:
            # Exact: every open lot carries its own entry price and tick value (FIFO, see positions.py).
            unrealized[row["symbol"]] = money_cents(sum(((int(mark["price"]) - int(px)) * int(q) * decode_tick_value(tv)
                                                         for q, px, tv in json.loads(row["lots"])), 0))
    positions = []
    for b in brackets:
        pos = int(b["entry_filled"]) - int(b["exit_filled"])
        mark = marks.get(b["symbol"])
        positions.append({
            "signal_id": b["signal_id"], "symbol": b["symbol"], "side": "long" if int(b["side"]) > 0 else "short",
            "state": b["state"], "position": pos, "entry": _avg_px(b["symbol"], b["entry_value"], b["entry_filled"]),
            "stop": _px(b["symbol"], b["stop_price"]), "target": _px(b["symbol"], b["target_price"]),
            "mark": _px(b["symbol"], mark["price"]) if mark else "",
            "unrealized_cents": unrealized.get(b["symbol"]) if pos else None,
            "pattern": b["pattern"], "submitted": _when(b["submitted_ns"]),
        })
    unrealized_total = sum(unrealized.values())
    d = daily[0] if daily else None
    error_halt = t["state"] != "active" and t.get("halt_kind") == "error"
    problems = []
    if not hb["healthy"]:
        problems.append(hb["detail"])
    if error_halt:
        problems.append(f"halted by error: {t['reason']}")
    out.update({
        "session": {"trading_day": day, "started": _when(sess["started_ns"]) if sess else ""},
        "trading": {"state": t["state"], "kind": t.get("halt_kind", ""), "reason": t.get("reason", ""),
                    "since": _when(t.get("since_ns"))},
        "tier": {"name": t.get("tier_name"), "contract": t.get("tier_symbol"), "max_contracts": t.get("tier_max"),
                 "balance_cents": t.get("balance_cents")},
        "positions": positions,
        "today": {"trading_day": day, "net_cents": d["net_cents"] if d else 0,
                  "realized_cents": d["realized_cents"] if d else 0,
                  "commission_cents": d["commission_cents"] if d else 0, "trades": d["trades"] if d else 0,
                  "wins": d["wins"] if d else 0, "losses": d["losses"] if d else 0,
                  "unrealized_cents": unrealized_total},
        "last_event": _when(last_journal_ns),
        "healthy": not problems, "problems": problems,
    })
    if settings.propfirm.profile:
        out["propfirm"] = _propfirm_status(settings, propfirm_state, int(t.get("balance_cents") or 0),
                                           unrealized_total, (d["net_cents"] if d else 0) + unrealized_total,
                                           positions)
        breach = out["propfirm"].get("breached") or out["propfirm"].get("day_breached")
        if breach:
            problems.append(f"prop-firm rule breached: {breach}")
            out["healthy"] = False
    return out


def _propfirm_status(settings: Settings, payload: dict[str, Any] | None, ledger_balance_cents: int,
                     unrealized_cents: int, day_pnl_cents: int, positions: list[dict[str, Any]]) -> dict[str, Any]:
    """The prop-firm account as the journal last recorded it, priced at the last marks (as the daemon does)."""
    from tradebot.execution.propfirm import AccountView, PropFirmState, initial_state, summary, units_of
    from tradebot.execution.risk import MICRO_OF

    profile = settings.propfirm.account
    assert profile is not None
    net = ledger_balance_cents - usd_to_cents(settings.execution.starting_balance)
    st = (PropFirmState.from_payload(payload) if payload is not None and payload.get("profile") == profile.name
          else initial_state(profile))
    if payload is None or payload.get("profile") != profile.name:
        st = PropFirmState(st.high_water_cents, day_start_balance_cents=st.day_start_balance_cents,
                           offset_cents=st.day_start_balance_cents - net)
    bal = st.offset_cents + net
    units = sum(units_of(p["symbol"], int(p["position"]), profile.micro_ratio, MICRO_OF) for p in positions)
    out = summary(profile, st, AccountView(bal, bal + unrealized_cents, day_pnl_cents, units))
    out["journaled"] = payload is not None
    out["source"] = profile.source
    return out


def status_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        st = collect_status(settings)
    except StateError as exc:
        hb = read_heartbeat(settings.data_dir / "heartbeat.json", time.time_ns(),
                            settings.execution.heartbeat_stale_seconds)
        if _flag(args, "json", False):
            print(json.dumps({"mode": settings.trading_mode, "error": str(exc), "heartbeat": hb, "healthy": False}))
        else:
            print(f"tradebot status ({settings.trading_mode}): {exc}")
            print(f"heartbeat: {hb['detail']}")
        return EXIT_STATE_ERROR
    if _flag(args, "json", False):
        print(json.dumps(st, indent=2, default=str))
        return EXIT_OK if st["healthy"] else EXIT_UNHEALTHY
    t, tier, today, hb = st["trading"], st["tier"], st["today"], st["heartbeat"]
    lines = [
        f"mode        {st['mode']}   ({st['database']})",
        f"session     {st['session']['trading_day'] or '-'}   started {st['session']['started'] or '-'}",
        f"trading     {t['state'].upper()}" + (f" ({t['kind']}): {t['reason']}" if t["state"] != "active" else ""),
        "tier        " + (f"{tier['name']}   {tier['contract']} max {tier['max_contracts']}" if tier["name"]
                              else "tiers off") + f"   balance {fmt_cents(int(tier['balance_cents'] or 0))}",
        f"today       {fmt_cents(today['net_cents'])} net ({today['trades']} trades, {today['wins']}W/"
        f"{today['losses']}L, commissions {fmt_cents(today['commission_cents'])}), open "
        f"{fmt_cents(today['unrealized_cents'])}",
        "heartbeat   " + (f"{hb['age_seconds']}s ago, feed {hb.get('feed_state') or '?'}" if hb.get("ts_ns")
                          else hb["detail"]),
        f"last event  {st['last_event'] or '-'}",
    ]
    if st["positions"]:
        lines.append("open:")
        for p in st["positions"]:
            un = "" if p["unrealized_cents"] is None else f"  open P&L {fmt_cents(p['unrealized_cents'])}"
            lines.append(f"  {p['symbol']:<4} {p['side']:<5} {p['position']} @ {p['entry'] or '-'}  stop {p['stop']}"
                         f"  target {p['target']}  [{p['state']}]{un}")
    else:
        lines.append("open:       none")
    if st.get("propfirm"):
        from tradebot.execution.propfirm_guard import describe

        lines += describe(st["propfirm"])
    lines.append("health      " + ("OK" if st["healthy"] else "UNHEALTHY: " + "; ".join(st["problems"])))
    print("\n".join(lines))
    return EXIT_OK if st["healthy"] else EXIT_UNHEALTHY


# ---------------------------------------------------------------------------------------------------
# trades / signals / stats


def load_trades(store: StateStore, today: bool = False, days: int = 0, limit: int = 500) -> list[dict[str, Any]]:
    if today or days:
        recent = queries.recent_trading_days(store, 1 if today else days)
        if today:
            ts = queries.trading_state(store)
            wanted = [ts["trading_day"]] if ts and ts["trading_day"] else recent
        else:
            wanted = recent
        if not wanted:
            return []
        raw = queries.closed_brackets(store, days=wanted, limit=limit)
    else:
        raw = queries.closed_brackets(store, limit=limit)
    out = []
    for b in raw:
        out.append({
            "signal_id": b["signal_id"], "trading_day": b["trading_day"], "closed": _when(b["closed_ns"]),
            "opened": _when(b["opened_ns"]), "symbol": b["symbol"], "side": "long" if b["side"] > 0 else "short",
            "quantity": b["entry_filled"], "entry": _avg_px(b["symbol"], b["entry_value"], b["entry_filled"]),
            "exit": _avg_px(b["symbol"], b["exit_value"], b["exit_filled"]),
            "gross_cents": b["realized_cents"], "commission_cents": b["commission_cents"],
            "net_cents": b["realized_cents"] - b["commission_cents"], "reason": b["exit_reason"],
            "pattern": b["pattern"],
        })
    return out


def trades_command(args: argparse.Namespace, settings: Settings) -> int:
    rows = _rows(args, settings, "trades", "no closed trades", lambda st: load_trades(
        st, bool(_flag(args, "today", False)), int(_flag(args, "days", 0) or 0)))
    if isinstance(rows, int):
        return rows
    print(f"{'closed':<23} {'sym':<4} {'side':<5} {'qty':>3} {'entry':>10} {'exit':>10} {'net':>11}  reason")
    for r in rows:
        print(f"{r['closed']:<23} {r['symbol']:<4} {r['side']:<5} {r['quantity']:>3} {r['entry']:>10} "
              f"{r['exit']:>10} {fmt_cents(r['net_cents']):>11}  {r['reason']} ({r['pattern']})")
    total = sum(r["net_cents"] for r in rows)
    print(f"{len(rows)} trades, net {fmt_cents(total)}")
    return EXIT_OK


def load_signals(store: StateStore, limit: int = 20) -> list[dict[str, Any]]:
    """Every signal, newest first: the ones sent to execution (taken, or refused by risk) and the ones the router
    turned down (``router_decisions``), each with its reasons, so the operator sees why the bot did not trade."""
    rows = queries.recent_signals(store, max(1, limit))
    routed = queries.recent_router_decisions(store, max(1, limit))
    out = _execution_signals(rows) + [{
        "signal_id": r["signal_id"], "time": _when(r["ts_ns"]), "symbol": r["symbol"],
        "side": "long" if r["direction"] == "LONG" else "short", "pattern": r["pattern"],
        "confidence": r["confidence"], "regime": r["regime"], "verdict": "rejected",
        "reason": f"router: {r['codes']}", "traded_symbol": "", "traded_qty": 0, "entry_type": "", "entry": "",
        "stop": "", "target": "", "reasons": json.loads(r["reasons"]), "ts_ns": r["ts_ns"],
    } for r in routed]
    out.sort(key=lambda r: (-int(r["ts_ns"]), r["signal_id"]))
    return out[:max(1, limit)]


def _execution_signals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{
        "signal_id": r["signal_id"], "time": _when(r["ts_ns"]), "symbol": r["symbol"],
        "side": "long" if r["side"] > 0 else "short", "pattern": r["pattern"], "confidence": r["confidence"],
        "regime": r["regime"], "verdict": r["verdict"], "reason": r["reason"], "traded_symbol": r["traded_symbol"],
        "traded_qty": r["traded_qty"], "entry_type": r["entry_type"], "entry": _px(r["symbol"], r["entry_price"]),
        "stop": _px(r["symbol"], r["stop_price"]), "target": _px(r["symbol"], r["target_price"]),
        "reasons": [x for x in str(r["reasons"]).split("\n") if x], "ts_ns": r["ts_ns"],
    } for r in rows]


def _state_error(args: argparse.Namespace, command: str, exc: Exception) -> None:
    """The error on stderr; with ``--json`` stdout still holds one document (``{"error": ...}``), as ``status``."""
    print(f"tradebot {command}: {exc}", file=sys.stderr)
    if _flag(args, "json", False):
        print(json.dumps({"error": str(exc)}))


def _rows(args: argparse.Namespace, settings: Settings, command: str, empty: str,
          load: Callable[[StateStore], list[dict[str, Any]]]) -> list[dict[str, Any]] | int:
    """Rows to print as a table, or the exit code once they were printed as JSON / found empty / unreadable."""
    try:
        store = _open(settings)
    except StateError as exc:
        _state_error(args, command, exc)
        return EXIT_STATE_ERROR
    try:
        rows = load(store)
    finally:
        store.close()
    if _flag(args, "json", False):
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print(empty)
        return EXIT_OK
    return rows


def signals_command(args: argparse.Namespace, settings: Settings) -> int:
    rows = _rows(args, settings, "signals", "no signals",
                 lambda st: load_signals(st, int(_flag(args, "limit", 20) or 20)))
    if isinstance(rows, int):
        return rows
    for r in rows:
        taken = r["verdict"] == "taken"
        what = f"taken {r['traded_qty']} {r['traded_symbol']}" if taken else f"rejected: {r['reason']}"
        print(f"{r['time']:<23} {r['symbol']:<4} {r['side']:<5} {r['pattern']:<24} conf {r['confidence']:.2f}  {what}")
    return EXIT_OK


def compute_stats(store: StateStore) -> dict[str, Any]:
    """Statistics over every recorded day, by the definitions of :mod:`tradebot.core.stats` (shared with the digest
    and backtests): trade figures from the closed trades in closing order, daily ones from ``daily_stats``."""
    days = queries.all_daily_stats(store)
    trades = queries.closed_trade_nets(store)
    nets = [int(t["net"]) for t in trades]
    s = summarize(nets)
    by_nets: dict[str, list[int]] = {}
    for t in trades:
        by_nets.setdefault(t["pattern"] or "-", []).append(int(t["net"]))
    by_pattern: dict[str, dict[str, Any]] = {}
    for name, pn in by_nets.items():
        ps = summarize(pn)
        by_pattern[name] = {"trades": ps.trades, "wins": ps.wins, "losses": ps.losses, "scratches": ps.scratches,
                            "net_cents": ps.net_cents, "win_rate": round(ps.win_rate or 0.0, 4),
                            "profit_factor": json_ratio(ps.profit_factor)}
    day_nets = [int(d["net_cents"]) for d in days]
    net = sum(day_nets)
    return {
        "days": len(days), "winning_days": sum(1 for v in day_nets if v > 0),
        "losing_days": sum(1 for v in day_nets if v < 0), "trades": s.trades, "wins": s.wins, "losses": s.losses,
        "scratches": s.scratches, "win_rate": round(s.win_rate, 4) if s.win_rate is not None else None,
        "net_cents": net, "commission_cents": sum(int(d["commission_cents"]) for d in days),
        "gross_profit_cents": s.gross_profit_cents, "gross_loss_cents": s.gross_loss_cents,
        "profit_factor": json_ratio(s.profit_factor),
        "expectancy_cents": round(s.expectancy_cents) if s.expectancy_cents is not None else None,
        "avg_daily_cents": net // len(days) if days else 0,
        "best_day_cents": max(day_nets, default=0), "worst_day_cents": min(day_nets, default=0),
        "max_drawdown_cents": s.max_drawdown_cents,
        "max_daily_drawdown_cents": max_drawdown(equity_curve(day_nets)),
        "max_consecutive_losses": s.max_consecutive_losses, "max_consecutive_wins": s.max_consecutive_wins,
        "by_pattern": by_pattern,
    }


def stats_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        store = _open(settings)
    except StateError as exc:
        _state_error(args, "stats", exc)
        return EXIT_STATE_ERROR
    try:
        st = compute_stats(store)
    finally:
        store.close()
    if _flag(args, "json", False):
        print(json.dumps(st, indent=2))
        return EXIT_OK
    wr = f"{st['win_rate'] * 100:.0f}%" if st["win_rate"] is not None else "-"
    pf = st["profit_factor"] if st["profit_factor"] is not None else "-"
    print(f"days {st['days']} ({st['winning_days']} winning)   trades {st['trades']}   win rate {wr}   "
          f"profit factor {pf}   ({st['wins']} won, {st['losses']} lost, {st['scratches']} scratch)")
    print(f"net {fmt_cents(st['net_cents'])}   avg/day {fmt_cents(st['avg_daily_cents'])}   best "
          f"{fmt_cents(st['best_day_cents'])}   worst {fmt_cents(st['worst_day_cents'])}   commissions "
          f"{fmt_cents(st['commission_cents'])}")
    print(f"max drawdown {fmt_cents(st['max_drawdown_cents'])} (closed trades), "
          f"{fmt_cents(st['max_daily_drawdown_cents'])} (end of day)   max consecutive losses "
          f"{st['max_consecutive_losses']}")
    for name, p in sorted(st["by_pattern"].items(), key=lambda kv: -kv[1]["net_cents"]):
        print(f"  {name:<24} {p['trades']:>4} trades  {p['win_rate'] * 100:5.1f}%  {fmt_cents(p['net_cents']):>12}"
              f"  PF {p['profit_factor'] if p['profit_factor'] is not None else '-'}")
    return EXIT_OK
