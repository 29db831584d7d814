"""The trading core: validated market events in, decisions, orders and trades out.

Deterministic and synchronous on purpose: the daemon (live or on a replayed file) and the event-driven
backtest drive this same object with the same events and therefore make the same trades. Order of work per
event: the broker sees the tick first (orders already working fill on it), then the strategy, then the
scheduler; an order decided on this event can only fill on a later one, as in reality.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tradebot.core.calendar import ExchangeCalendar, calendar_for
from tradebot.core.config import Settings
from tradebot.core.contracts import decode_tick_value, spec_for
from tradebot.core.logging import get_logger
from tradebot.core.notifications import Notification, NotificationKind, Severity
from tradebot.core.types import MarketEvent
from tradebot.execution.broker import Broker
from tradebot.execution.ledger import Bracket
from tradebot.execution.manager import ExecutionManager, NotificationSink
from tradebot.execution.model import TERMINAL_BRACKET, Verdict
from tradebot.execution.paper import PaperBroker, PaperConfig
from tradebot.execution.reconcile import RecoveryReport
from tradebot.execution.risk import same_family
from tradebot.execution.trades import TradeRecord
from tradebot.ops.scheduler import DailyJob, Scheduler
from tradebot.orderflow.alerts import AlertKind
from tradebot.regime.decisions import Decision
from tradebot.regime.pipeline import StrategyStep, SymbolStrategy
from tradebot.state import queries
from tradebot.state.store import StateStore

DigestHook = Callable[[dt.date, int], None]
StepObserver = Callable[[StrategyStep, dict[str, Verdict]], None]
"""Sees every bar close / alert step with the risk manager's verdicts by signal id (the live stream)."""


class TradingCore:
    def __init__(self, settings: Settings, symbols: Sequence[str], store: StateStore, broker: Broker | None = None,
                 *, calendar: ExchangeCalendar | None = None, on_notification: NotificationSink | None = None,
                 record_decisions: bool = True, logger: Any = None) -> None:
        self.settings = settings
        self.symbols = [spec_for(s).root for s in symbols]
        self.store = store
        self.log = logger or get_logger("tradebot.trading")
        cal = calendar or calendar_for(spec_for(self.symbols[0]).session)
        self.calendar = cal
        self.broker: Broker = broker or PaperBroker(PaperConfig.from_settings(settings), data_symbols=self.symbols)
        self.manager = ExecutionManager(settings, store, self.broker, on_notification=on_notification,
                                        symbols=self.symbols, calendar=cal)
        self.strategies = {r: SymbolStrategy(spec_for(r), settings, calendar_for(spec_for(r).session),
                                             has_position=self.has_position, logger=logger) for r in self.symbols}
        # The manager also acts on these in event time; the jobs cover a quiet market (wall-clock ticks) and are
        # idempotent per day, so replay and live agree.
        jobs = [
            DailyJob("margin_check", None, catch_up_seconds=24 * 3600),
            DailyJob("auto_flatten", settings.execution.auto_flatten_time, close_lead_seconds=300,
                     catch_up_seconds=4 * 3600, within_session=True),
            DailyJob("daily_digest", dt.time(16, 0), close_lead_seconds=0, catch_up_seconds=6 * 3600),
        ]
        if getattr(cal, "twenty_four_seven", False):
            # A 24/7 market has no break: the digest goes out a minute before the day boundary, and positions are
            # flattened five minutes before it only when asked (crypto traders usually hold through midnight).
            day_s = 86_400
            jobs = [DailyJob("margin_check", None, catch_up_seconds=day_s),
                    DailyJob("daily_digest", None, offset_seconds=day_s - 60, catch_up_seconds=6 * 3600)]
            if settings.coinbase.flatten_at_day_end:
                jobs.insert(1, DailyJob("auto_flatten", None, offset_seconds=day_s - 300, catch_up_seconds=4 * 3600,
                                        within_session=True))
        self.scheduler = Scheduler(cal, jobs, already_fired=self._job_done)
        self.on_digest: DigestHook | None = None
        self.observer: StepObserver | None = None
        self.record_decisions = record_decisions
        self.stats: Counter[str] = Counter()
        self.verdicts: list[Verdict] = []
        self.last_event_ns = 0
        self._next_job_ns = 0
        self._positions_seen: dict[str, int | None] = {}
        self._resume_ns = 0
        """Last journaled time at start: events up to it are a replay of what the journal already holds."""
        self._sync_mode: tuple[sqlite3.Connection, tuple[int, bool]] | None = None
        """(connection, PRAGMA synchronous, WAL?) of the store, read once (see _record)."""

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self, now_ns: int) -> RecoveryReport:
        # What the journal held before this start: recovery's own records (at ``now_ns``) are not a replay, and a job
        # due before now but after the last record is a catch-up, not a job the journal already passed.
        self._resume_ns = queries.last_journal_ns(self.store)
        report = self.manager.recover(now_ns)
        for sym in self.symbols:
            self._sync_position(sym)
        self._record_missed_jobs(now_ns)
        return report

    def _record_missed_jobs(self, now_ns: int) -> None:
        """A daemon that was down while jobs were due (a whole day, or past a job's catch-up) records each of
        them missed once, from the last day this database traded on; none is run late."""
        if self.store.readonly:
            return
        last = queries.last_session_day(self.store)
        if last is None:
            return
        try:
            missed = self.scheduler.missed_since(dt.date.fromisoformat(last), now_ns)
        except ValueError:
            return
        for name, day, at in missed:
            self._job_missed(name, day, at, now_ns, "the daemon was not running when it was due")

    def finish(self) -> None:
        """End of data (a replay or backtest): close the open bars so their decisions are made."""
        for strat in self.strategies.values():
            self._handle(strat.flush(), self.last_event_ns)

    # -- inputs ----------------------------------------------------------------------------------------

    def on_event(self, ev: MarketEvent) -> None:
        ts = ev.ts_event
        if ts > self.last_event_ns:
            self.last_event_ns = ts
        if ts >= self._resume_ns:
            self.manager.on_market_event(ev)
        else:
            # Catching up after a restart: execution already reflects these events (the journal holds their
            # effects); only the strategy re-reads them to rebuild its bars and indicators. Feeding them to the
            # manager would mark an open position at stale prices. The paper broker still notes the quotes, so a
            # market order of the restarted run meets the same prevailing quote as the original run's.
            self.stats["catch_up_events"] += 1
            observe = getattr(self.broker, "observe", None)
            if observe is not None:
                observe(ev)
        strat = self.strategies.get(ev.symbol)
        if strat is None:
            self.stats["unrouted_events"] += 1
            return
        step = strat.on_event(ev)
        if step.closed is not None or step.alerts:
            self._handle(step, ts)
        if ts >= self._next_job_ns:
            self._run_jobs(ts)

    def on_time(self, now_ns: int) -> None:
        """Wall-clock tick from the daemon: bars close and jobs run in a quiet market too."""
        for strat in self.strategies.values():
            step = strat.on_time(now_ns)
            if step.closed is not None:
                self._handle(step, now_ns)
        if now_ns >= self._next_job_ns:
            self._run_jobs(now_ns)
        self.manager.check_timeouts(now_ns)

    # -- queries ---------------------------------------------------------------------------------------

    def has_position(self, symbol: str, asof_ns: int | None = None) -> bool:
        """One position per symbol: a bracket on the contract family open as of ``asof_ns`` (a decision time,
        the bar's end) or, without it, open now.

        As of a bar's end T means: submitted before T and not ended by an event before T. The event that closes
        the bar arrives after T and the broker sees it first; when that print also fills the bracket's stop, the
        decision still sees the position (the state at T), so the answer never depends on which event happened
        to close the bar (and a run cut just after T decides the same). While a restarted daemon re-reads data
        the journal already covers, it is answered from the bracket history, so the router sees the positions
        the original run saw then (and makes the same decisions, which the manager recognises as duplicates).
        """
        t = self.last_event_ns
        ledger = self.manager.ledger
        if asof_ns is None:
            now_pool = ledger.brackets.values() if t <= self._resume_ns else ledger.live.values()
            return any(same_family(b.symbol, symbol) and b.submitted_ns <= t
                       and (b.closed_ns is None or b.closed_ns > t) for b in now_pool)
        decided = asof_ns
        pool: Iterable[Bracket] = ledger.brackets.values() if t <= self._resume_ns else [
            *ledger.live.values(), *ledger.last_ended.values()]
        for b in pool:
            if not same_family(b.symbol, symbol) or b.submitted_ns >= decided:
                continue  # a decision at bar end T sees brackets from earlier bars (submitted < T) only
            if b.closed_ns is None:
                if b.state not in TERMINAL_BRACKET:
                    return True
                continue  # cancelled or rejected without a fill: there never was a position
            if b.closed_ns >= decided:
                return True
        return False

    def closed_trades(self) -> list[TradeRecord]:
        return closed_trades(self.store)

    # -- internals -------------------------------------------------------------------------------------

    def _handle(self, step: StrategyStep, now_ns: int) -> None:
        for alert in step.alerts:
            if alert.kind == AlertKind.EXIT_SIGNAL:
                threat = alert.detail("threatens")
                decision = self.manager.on_exit_signal(alert.symbol, alert.ts_ns, alert.reason,
                                                       str(threat) if threat is not None else None)
                self.stats[f"exit_signal_{decision}"] += 1
        verdicts: dict[str, Verdict] = {}
        if step.decisions:
            rejected = [d for d in step.decisions if not d.taken]
            for d in step.decisions:
                if d.taken and d.intent is not None:
                    verdict = self.manager.on_intent(d.intent)
                    self.verdicts.append(verdict)
                    verdicts[d.signal_id] = verdict
                    self.stats["intents_taken" if verdict.taken else "intents_refused_by_risk"] += 1
            self.stats["decisions_rejected"] += len(rejected)
            if self.record_decisions and rejected:
                self._record(rejected)
        if step.closed is not None:
            self._sync_position(step.closed.bar.symbol)
        if self.observer is not None:
            self.observer(step, verdicts)  # the observer guards itself; it must never raise into trading

    def _sync_position(self, symbol: str) -> None:
        """Tell the symbol's alert engine whether (and which way) it holds a position: large sellers threaten a
        long, large buyers a short."""
        side = self._position_side(symbol) if self.has_position(symbol) else None
        if symbol not in self._positions_seen or self._positions_seen[symbol] != side:
            self._positions_seen[symbol] = side
            strat = self.strategies.get(symbol)
            if strat is not None:
                strat.engine.set_position(side is not None, side or 0)

    def _position_side(self, symbol: str) -> int:
        """+1 long, -1 short, 0 both or unknown (the open brackets on the family)."""
        sides = {int(b.side) for b in self.manager.ledger.live.values() if same_family(b.symbol, symbol)}
        return sides.pop() if len(sides) == 1 else 0

    def _record(self, decisions: list[Decision]) -> None:
        """Router rejections, kept so the operator can see why the bot did *not* trade (one transaction).

        Written without a sync of their own: on a FULL-sync store an fsync per bar close costs milliseconds on
        the event path (the bar-close latency), and these rows are diagnostics, not execution state. In WAL mode
        the commit still reaches the OS before this returns, so a crash of the process (kill -9) loses nothing;
        only an OS crash or power loss before the next synced commit (any journaled execution event) could.
        """
        rows = [{"signal_id": d.signal_id, "ts_ns": d.ts_ns, "symbol": d.symbol, "pattern": str(d.pattern),
                 "direction": str(d.direction), "regime": str(d.regime), "confidence": round(d.confidence, 6),
                 "verdict": str(d.verdict), "codes": ",".join(str(c) for c in d.codes),
                 "reasons": json.dumps(list(d.reasons))} for d in decisions]
        conn = self.store.conn
        if self._sync_mode is None or self._sync_mode[0] is not conn:
            self._sync_mode = (conn, queries.sync_mode(self.store))
        with queries.unsynced_commits(self.store, self._sync_mode[1]), self.store.transaction() as tx:
            tx.upsert({"router_decisions": rows})

    def _run_jobs(self, now_ns: int) -> None:
        """Calendar jobs, each at most once per trading day, recorded in ``job_runs``.

        A job whose time the journal has already passed (a restart re-reading data it covered) or that is too late
        (the session is over, or past its catch-up) is never run: it is recorded as missed, once, with one alert.
        So a restart never re-fires a past day's auto-flatten, margin check or digest."""
        due = self.scheduler.tick(now_ns)
        missed, self.scheduler.missed = self.scheduler.missed, []
        for name, day, at in due:
            if at < self._resume_ns:
                missed.append((name, day, at))
                continue
            self.stats[f"job_{name}"] += 1
            if name == "daily_digest" and self.on_digest is not None:
                self.on_digest(day, at)
            elif name == "auto_flatten" and self.manager.ledger.trading.trading_day:
                self.manager.auto_flatten(now_ns)
            elif name == "margin_check" and self.manager.ledger.trading.trading_day:
                todo = [s for s in self.symbols if (day.isoformat(), s) not in self.manager.ledger.margin]
                if todo:
                    self.manager.check_margin(day, todo)
            self._job_record(name, day, "done", now_ns, "")
        for name, day, at in missed:
            why = ("the journal already covers that time (restart)" if at < self._resume_ns
                   else "the daemon got there too late (session over or past the catch-up window)")
            self._job_missed(name, day, at, now_ns, why)
        nxt = self.scheduler.next_fire(now_ns)
        self._next_job_ns = nxt[1] if nxt is not None else now_ns + 3600 * 10**9
        # Open positions must meet the manager's own auto-flatten even without events.
        for sym in self.symbols:
            self._sync_position(sym)

    def _job_record(self, name: str, day: dt.date, status: str, now_ns: int, detail: str) -> bool:
        if self.store.readonly:
            return False
        return self.store.record_job(name, day.isoformat(), status, now_ns, detail)

    def _job_missed(self, name: str, day: dt.date, at: int, now_ns: int, why: str) -> None:
        if self._job_done(name, day):
            return
        first = queries.first_session(self.store)
        if first is None or day.isoformat() < first[0] or at < first[1]:
            # Due before this database's first start (a day it never traded, or earlier on its first day: a fresh
            # install started mid-session owes no margin check for the morning): nothing was missed.
            self.stats["jobs_before_history"] += 1
            return
        if self.store.readonly:
            return
        with self.store.transaction() as tx:
            if queries.insert_job_run(self.store, name, day.isoformat(), "missed", now_ns, why):
                note = Notification(
                    NotificationKind.JOB_MISSED, Severity.WARNING, f"Missed: {name} for {day.isoformat()}", now_ns,
                    f"{name} was due for {day.isoformat()} and did not run: {why}. It is not run late; check that "
                    "day's positions and report by hand.", (("Job", name), ("Trading day", day.isoformat())))
                tx.outbox(now_ns, note.kind, note.severity, note.to_outbox())
                self.stats["jobs_missed"] += 1
                self.log.warning("calendar job missed", job=name, day=day.isoformat(), reason=why)

    def _job_done(self, job: str, day: dt.date) -> bool:
        """Done or already recorded missed: in ``job_runs``; else the auto-flatten's journal event of that day or
        the digest's outbox row keyed by that day (never a match on a title: display text is not a key)."""
        iso = day.isoformat()
        if self.store.job_status(job, iso) is not None:
            return True
        if job == "auto_flatten":
            return queries.auto_flatten_journaled(self.store, iso)
        return job == queries.DIGEST_KIND and queries.digest_queued(self.store, iso)


def closed_trades(store: StateStore) -> list[TradeRecord]:
    """Closed brackets as trade records (average fill prices; the paper broker fills a leg at one price)."""
    rows = queries.filled_closed_brackets(store)
    out: list[TradeRecord] = []
    for r in rows:
        qty = int(r["entry_filled"])
        entry, exit_ = divmod(int(r["entry_value"]), qty), divmod(int(r["exit_value"]), max(1, int(r["exit_filled"])))
        if entry[1] or exit_[1] or int(r["exit_filled"]) != qty:
            continue  # mixed-price legs: not representable as one record (the paper broker never does this)
        out.append(TradeRecord.make(
            trade_id=str(r["signal_id"]), symbol=str(r["symbol"]), side=int(r["side"]), quantity=qty,
            entry_ns=int(r["opened_ns"] or r["submitted_ns"]), exit_ns=int(r["closed_ns"]), entry_price=entry[0],
            exit_price=exit_[0], tick_value_cents=decode_tick_value(r["tick_value_cents"]),
            commission_cents=int(r["commission_cents"]), pattern=str(r["pattern"]),
            exit_reason=str(r["exit_reason"]), signal_id=str(r["signal_id"])))
    return out
