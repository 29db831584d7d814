"""The 16:00 ET daily digest: the day's numbers and a P&L chart with the trades marked.

Built from the state database only (read in a worker thread), so it shows what was really recorded and can be
rebuilt for any past day.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from typing import Any

from tradebot.core.calendar import ET, local_ns
from tradebot.core.display import display_tz, fmt_ts, local
from tradebot.core.notifications import Notification, NotificationKind, Severity
from tradebot.core.stats import summarize
from tradebot.state import queries
from tradebot.state.store import StateStore


def _usd(cents: int) -> str:
    sign = "-" if cents < 0 else "+"
    return f"{sign}${abs(cents) / 100:,.2f}"


DigestData = dict[str, list[dict[str, Any]]]


def digest_data(store: StateStore, day: dt.date, propfirm: dict[str, Any] | None = None) -> DigestData:
    """The rows a digest needs (read on the store's own thread); ``propfirm``: the prop-firm account's summary
    (:meth:`~tradebot.execution.propfirm_guard.PropFirmGuard.summary`) when a profile is configured."""
    iso = day.isoformat()
    # The trading day's alerts: from the previous day's 18:00 ET (the CME session's start) to this day's.
    start = local_ns(day - dt.timedelta(days=1), dt.time(18, 0), ET)
    end = local_ns(day, dt.time(18, 0), ET)
    ts = queries.trading_state(store)
    stats = queries.daily_stats(store, iso)
    return {
        "alerts": [queries.alert_counts(store, start, end)],
        "stats": [stats] if stats is not None else [],
        "trades": queries.filled_closed_brackets(store, day=iso),
        "state": [ts] if ts is not None else [],
        "shadow": store.shadow_legs(iso),
        "propfirm": [propfirm] if propfirm else [],
    }


def digest_notification(data: DigestData, day: dt.date, now_ns: int) -> Notification:
    iso = day.isoformat()
    stats, trades, state = data["stats"], data["trades"], data["state"]
    s = stats[0] if stats else {}
    net = int(s.get("net_cents", 0) or 0)
    # The day's closed trades by the shared definitions (core/stats.py), as `tradebot stats` and backtests count.
    summ = summarize([int(r["realized_cents"]) - int(r["commission_cents"]) for r in trades])
    pf = summ.profit_factor
    fields: list[tuple[str, str]] = [
        ("Net P&L", _usd(net)), ("Trades", str(summ.trades)),
        ("Win rate", f"{summ.win_rate:.0%}" if summ.win_rate is not None else "-"),
        ("Wins / losses / scratches", f"{summ.wins} / {summ.losses} / {summ.scratches}"),
        ("Profit factor", "-" if pf is None else "inf" if math.isinf(pf) else f"{pf:.2f}"),
        ("Gross profit", _usd(summ.gross_profit_cents)),
        ("Gross loss", _usd(summ.gross_loss_cents)),
        ("Commission", _usd(-int(s.get("commission_cents", 0) or 0))),
        ("Max drawdown", _usd(-summ.max_drawdown_cents)),
    ]
    if state:
        st = state[0]
        fields += [("Balance", f"${int(st['balance_cents']) / 100:,.2f}"), ("Tier", str(st.get("tier_name") or "-")),
                   ("State", str(st["state"]))]
    if data.get("alerts"):
        a = data["alerts"][0]
        # Webhooks are at-least-once: a post retried after an unanswered attempt may show twice in the channel.
        fields.append(("Alerts", f"{int(a['sent'])} sent of {int(a['alerts'])}, {int(a['duplicates'])} possible "
                                 f"duplicate(s), {int(a['collapsed'])} repeat(s) collapsed"))
    fields += shadow_fields(data.get("shadow") or [])
    fields += propfirm_fields(data.get("propfirm") or [])
    for t in trades[:10]:
        side = "LONG" if int(t["side"]) > 0 else "SHORT"
        pnl = int(t["realized_cents"]) - int(t["commission_cents"])
        fields.append((f"{fmt_ts(int(t['closed_ns']), '%H:%M')} {t['symbol']} {side} {t['pattern']}",
                       f"{_usd(pnl)} ({t['exit_reason']})"))
    png = _chart(day, trades) if trades else None
    sev = Severity.SUCCESS if net > 0 else Severity.WARNING if net < 0 else Severity.INFO
    # The subject is the digest's key (the day): "already sent?" never reads the title, which is display text.
    return Notification(NotificationKind.DAILY_DIGEST, sev, f"Daily digest {iso}: {_usd(net)}", now_ns,
                        f"day {iso}; {summ.trades} trade(s)", tuple(fields), png, f"digest-{iso}.png",
                        subject=queries.digest_subject(iso))


def propfirm_fields(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The prop-firm account at digest time: floor, headroom per limit, alerts sent today, any breach."""
    if not rows:
        return []
    p = rows[0]
    money = [("Prop-firm " + str(p["profile"]), f"floor ${int(p['floor_cents']) / 100:,.2f}, equity "
              f"${int(p['equity_cents']) / 100:,.2f}, high-water ${int(p['high_water_cents']) / 100:,.2f} "
              f"({p['drawdown']} trailing)")]
    for rule, h in (p.get("headroom") or {}).items():
        money.append((f"Headroom {rule.replace('_', ' ')}", f"${int(h['left_cents']) / 100:,.2f} of "
                      f"${int(h['limit_cents']) / 100:,.2f} ({h['left_pct']}%)"))
    alerts = [a for a in p.get("alerts_today") or [] if not a.endswith(":breach")]
    breach = p.get("breached") or p.get("day_breached")
    money.append(("Prop-firm alerts today", ", ".join(alerts) or "none"))
    if breach:
        money.append(("Prop-firm BREACH", str(breach)))
    return money


def shadow_fields(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Live mode: the day's live trading against the paper model on the same data (see execution/shadow.py)."""
    if not rows:
        return []
    from tradebot.execution.shadow import compare

    c = compare(rows)

    def lat(d: dict[str, float | None]) -> str:
        return " / ".join("-" if v is None else f"{v:g}" for v in d.values()) + " ms"

    mean, worst = c["slippage_ticks_mean"], c["slippage_ticks_max"]
    return [
        ("Live vs model trades", f"{c['live_trades']} live, {c['model_trades']} model ({c['filled_live_only']} fill(s) "
                                 f"live only, {c['filled_model_only']} model only)"),
        ("Live vs model P&L", f"{_usd(c['live_pnl_cents'])} live, {_usd(c['model_pnl_cents'])} model"),
        ("Slippage vs model", "-" if mean is None else
         f"mean {mean:+g} ticks, worst {worst:+g} ticks ({_usd(-(c['slippage_cents_max'] or 0))}), "
         f"total {_usd(-c['slippage_cents_total'])} over {c['filled_both']} fill(s)"),
        ("Latency p50/p95/p99", f"signal->submit {lat(c['signal_to_submit_ms'])}; submit->ack "
                                f"{lat(c['submit_to_ack_ms'])}; submit->fill {lat(c['submit_to_fill_ms'])}"),
    ]


def _chart(day: dt.date, trades: list[dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    times, equity = [], []
    total = 0
    for t in trades:
        total += int(str(t["realized_cents"])) - int(str(t["commission_cents"]))
        times.append(local(int(str(t["closed_ns"]))))
        equity.append(total / 100)
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    xs = [float(x) for x in mdates.date2num(times)]  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=display_tz()))  # type: ignore[no-untyped-call]
    ax.step(xs, equity, where="post", color="#1f4e9c", linewidth=1.8)
    ax.axhline(0, color="#888", linewidth=0.8)
    for tm, eq, t in zip(xs, equity, trades, strict=True):
        win = int(str(t["realized_cents"])) - int(str(t["commission_cents"])) >= 0
        ax.plot([tm], [eq], marker="^" if int(str(t["side"])) > 0 else "v", color="#1b9e4b" if win else "#d62728",
                markersize=8)
    ax.set_title(f"Closed-trade P&L through {day.isoformat()} (markers: ^ long, v short; green win, red loss)",
                 fontsize=9)
    ax.set_ylabel("USD")
    ax.set_xlabel("time (US Eastern)")
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
