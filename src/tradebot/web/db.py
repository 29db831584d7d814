"""Read-only views of the state database for the dashboard's REST API.

The file is validated once (schema, mode) through :class:`StateStore` read-only; each request then opens its
own ``mode=ro`` connection with ``query_only`` (SQLite connections are per thread, requests run in a thread
pool), so the web process can never write a row, and a browser can never hold a lock the daemon waits for.
Money stays integer cents; prices are converted from ticks with the contract's own tick size.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tradebot.core.contracts import UnknownContractError, spec_for
from tradebot.core.stats import equity_curve, json_ratio, summarize
from tradebot.state import queries
from tradebot.state.store import StateError, StateStore


class NoDatabaseError(Exception):
    """The daemon has not created its state database yet (or it cannot be read)."""


def _px(symbol: str, ticks: int | None) -> str | None:
    if ticks is None:
        return None
    try:
        return spec_for(symbol).fmt(int(ticks))
    except UnknownContractError:
        return str(ticks)


def _avg_px(symbol: str, value: int, qty: int) -> str | None:
    if not qty:
        return None
    q, r = divmod(int(value), int(qty))
    if not r:
        return _px(symbol, q)
    spec = spec_for(symbol)
    return str(round(value / qty * float(spec.tick_size), 6))


class ReadOnlyDB:
    def __init__(self, path: Path, mode: str) -> None:
        self.path = path
        self.mode = mode
        self._validated = False

    def _validate(self) -> None:
        if self._validated:
            return
        try:
            StateStore.open(self.path, mode=self.mode, readonly=True).close()
        except StateError as exc:
            raise NoDatabaseError(str(exc)) from None
        self._validated = True

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        self._validate()
        try:
            conn = queries.readonly_connection(self.path)
        except sqlite3.Error as exc:
            raise NoDatabaseError(f"{self.path}: {exc}") from None
        try:
            yield conn
        finally:
            conn.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """One read on its own connection (:class:`tradebot.state.queries.Reader`)."""
        with self.connect() as c:
            return [dict(r) for r in c.execute(sql, tuple(params)).fetchall()]

    # -- views ---------------------------------------------------------------------------------------

    def trading_state(self) -> dict[str, Any] | None:
        return queries.trading_state(self)

    def trades(self, limit: int, day: dt.date | None) -> list[dict[str, Any]]:
        rows = queries.filled_closed_brackets(self, day=day.isoformat() if day is not None else None,
                                              newest_first=True, limit=limit)
        return [self._trade(r) for r in rows]

    @staticmethod
    def _trade(r: dict[str, Any]) -> dict[str, Any]:
        sym = str(r["symbol"])
        return {"signal_id": r["signal_id"], "symbol": sym, "side": "LONG" if int(r["side"]) > 0 else "SHORT",
                "quantity": int(r["entry_filled"]), "entry": _avg_px(sym, r["entry_value"], r["entry_filled"]),
                "exit": _avg_px(sym, r["exit_value"], r["exit_filled"]), "stop": _px(sym, r["stop_price"]),
                "target": _px(sym, r["target_price"]), "opened_ns": r["opened_ns"], "closed_ns": r["closed_ns"],
                "pnl_cents": int(r["realized_cents"]) - int(r["commission_cents"]),
                "realized_cents": int(r["realized_cents"]), "commission_cents": int(r["commission_cents"]),
                "exit_reason": r["exit_reason"], "pattern": r["pattern"], "trading_day": r["trading_day"]}

    def positions(self) -> dict[str, Any]:
        pos = queries.open_positions(self)
        marks = queries.marks(self)
        brackets = queries.unclosed_brackets(self)
        out_pos = []
        for p in pos:
            m = marks.get(p["symbol"])
            out_pos.append({"symbol": p["symbol"], "qty": int(p["qty"]), "updated_ns": p["updated_ns"],
                            "mark": _px(p["symbol"], m["price"]) if m else None,
                            "mark_ns": m["ts_ns"] if m else None})
        open_ = []
        for b in brackets:
            sym = str(b["symbol"])
            open_.append({"signal_id": b["signal_id"], "symbol": sym, "side": "LONG" if int(b["side"]) > 0 else "SHORT",
                          "quantity": int(b["quantity"]), "state": b["state"],
                          "open_qty": int(b["entry_filled"]) - int(b["exit_filled"]),
                          "entry_order": _px(sym, b["entry_price"]),
                          "entry": _avg_px(sym, b["entry_value"], b["entry_filled"]),
                          "stop": _px(sym, b["stop_price"]), "target": _px(sym, b["target_price"]),
                          "submitted_ns": b["submitted_ns"], "opened_ns": b["opened_ns"], "pattern": b["pattern"]})
        return {"positions": out_pos, "open_brackets": open_}

    def signals(self, limit: int, outcome: str | None) -> list[dict[str, Any]]:
        """Taken and refused (risk manager) signals from the journal's projection, and router rejections."""
        out: list[dict[str, Any]] = []
        if outcome in (None, "taken", "refused"):
            for r in queries.recent_signals(self, limit):
                o = "taken" if r["verdict"] == "taken" else "refused"
                if outcome is not None and o != outcome:
                    continue
                sym = str(r["symbol"])
                out.append({"signal_id": r["signal_id"], "ts_ns": r["ts_ns"], "symbol": sym, "outcome": o,
                            "pattern": r["pattern"], "direction": "LONG" if int(r["side"]) > 0 else "SHORT",
                            "regime": r["regime"], "confidence": r["confidence"],
                            "reasons": [r["reason"]] if r["reason"] else _json_list(r["reasons"]),
                            "entry": _px(sym, r["entry_price"]), "stop": _px(sym, r["stop_price"]),
                            "target": _px(sym, r["target_price"]), "quantity": r["quantity"],
                            "traded_symbol": r["traded_symbol"], "traded_qty": r["traded_qty"]})
        if outcome in (None, "rejected"):
            for r in queries.recent_router_decisions(self, limit):
                out.append({"signal_id": r["signal_id"], "ts_ns": r["ts_ns"], "symbol": r["symbol"],
                            "outcome": "rejected", "pattern": r["pattern"], "direction": r["direction"],
                            "regime": r["regime"], "confidence": r["confidence"],
                            "codes": [c for c in str(r["codes"]).split(",") if c],
                            "reasons": _json_list(r["reasons"])})
        out.sort(key=lambda d: (-int(d["ts_ns"]), str(d["signal_id"])))
        return out[:limit]

    def statistics(self, days: int) -> dict[str, Any]:
        daily = queries.recent_daily_stats(self, days)
        trades = queries.filled_closed_nets(self)
        nets = [int(t["net"]) for t in trades]
        s = summarize(nets)  # the definitions `tradebot stats`, the digest and backtests use (core/stats.py)
        equity = [[int(t["closed_ns"]), v] for t, v in zip(trades, equity_curve(nets)[1:], strict=True)]
        return {
            "trades": s.trades, "wins": s.wins, "losses": s.losses, "scratches": s.scratches,
            "win_rate": round(s.win_rate, 4) if s.win_rate is not None else None,
            "net_cents": s.net_cents, "gross_profit_cents": s.gross_profit_cents,
            "gross_loss_cents": s.gross_loss_cents, "profit_factor": json_ratio(s.profit_factor, 4),
            "avg_trade_cents": round(s.expectancy_cents) if s.expectancy_cents is not None else None,
            "max_drawdown_cents": s.max_drawdown_cents, "daily": daily, "equity": equity[-2000:],
        }


def _json_list(text: Any) -> list[str]:
    try:
        v = json.loads(text)
    except (TypeError, ValueError):
        return [str(text)] if text else []
    return [str(x) for x in v] if isinstance(v, list) else [str(v)]
