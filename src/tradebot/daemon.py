"""The headless trading daemon: one asyncio application wiring every stage.

feed -> validation -> trading core (engine, regime, router, execution, state) with the notifier, heartbeat,
scheduler hooks, operator control socket and systemd integration beside it. Nothing on the event path waits
on the network or a log flush: notifications are queued (and durable in SQLite), heartbeats are written from
a worker thread, and the notifier delivers from its own task.

Failure policy: a bad record is a counted rejection; every exception inside the core (not only the first:
also after an operator ``resume``) is logged with the event, turns trading into HALTED (error) with a critical
alert, and the loop carries on managing exits; a live feed that dies or goes quiet is reconnected with alerts
on both edges; an authentication failure is fatal (exit 2) because restarting cannot fix a wrong key.

A full disk (SQLite "database or disk is full", ENOSPC) cannot be traded through: nothing could be journaled.
The daemon sends one alert straight from memory (the outbox is on the full disk), stops, and exits 75 so
systemd restarts it; a start on a disk still full is refused with the same code and no alert, and once space
returns the next start carries on from the journal, which a failed write never changes.

Exit codes: 0 clean stop, 1 crash of a finite feed, 2 configuration or refusal (restarting cannot help),
4 another process already writes the database, 75 disk full (restart later).

Size: one asyncio application: its tasks (feed, clock, heartbeat, stream, broker, control) share the loop's state
and one shutdown order; everything that is not wiring lives in the stage it wires.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import signal
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import psutil

from tradebot import __version__
from tradebot.core.config import (
    ConfigError,
    ExecutionSettings,
    FootprintSettings,
    Settings,
    SimSettings,
    check_number,
    check_symbols,
    checked_override,
)
from tradebot.core.contracts import spec_for
from tradebot.core.display import fmt_ts
from tradebot.core.logging import configure_logging, get_logger
from tradebot.core.notifications import Notification, NotificationKind, Severity
from tradebot.core.types import FeedState, FeedStatus, GapEvent, RawBook, RawStatus, RawTrade
from tradebot.execution.journal import UnknownJournalKindError
from tradebot.execution.journal import check_kinds as check_journal_kinds
from tradebot.execution.model import HaltKind
from tradebot.execution.shadow import shadowed
from tradebot.feeds.base import Feed, damage_of
from tradebot.feeds.factory import make_feed
from tradebot.feeds.session_record import live_recorder
from tradebot.feeds.validation import DAMAGE_REASONS, Validator
from tradebot.ops.console import Console, RunPlan, intro, progress_line, session_of, summary_table
from tradebot.ops.control import SOCKET_NAME, ControlServer, sanitize_reason
from tradebot.ops.digest import digest_data, digest_notification
from tradebot.ops.heartbeat import HEARTBEAT_FILE, write_heartbeat
from tradebot.ops.notifier import Notifier
from tradebot.ops.store_outbox import StoreOutbox
from tradebot.ops.stream import STREAM_SOCKET_NAME, StreamHub
from tradebot.ops.systemd import SystemdNotifier
from tradebot.publish import LivePublisher
from tradebot.state.store import (
    DiskFullError,
    StateError,
    StateLockedError,
    StateStore,
    default_db_path,
    is_disk_full,
    private_dir,
)
from tradebot.trading import TradingCore

if TYPE_CHECKING:
    from tradebot.ops.broker_session import BrokerSession

NS = 1_000_000_000
RUN_LOG = "run.log"
"""With ``--progress`` the daemon's log lines go here instead of the console."""
LIVE_FEEDS = {"databento", "polygon", "coinbase", "projectx", "rithmic"}
EXIT_LOCKED = 4
EXIT_DISK_FULL = 75  # EX_TEMPFAIL: systemd's Restart=on-failure tries again later


class FatalFeedError(Exception):
    pass


class Daemon:
    def __init__(self, settings: Settings, symbols: list[str], feed_kind: str, inputs: list[str] | None = None,
                 speed: float | None = None, duration: float = 0.0, exit_on_feed_end: bool = True,
                 progress: bool = False) -> None:
        self.broker_session: BrokerSession | None = None
        """Live mode: the broker adapter and its connection, reconciliation and protection duties."""
        self.settings = settings
        self.symbols = [spec_for(s).root for s in symbols]
        self.feed_kind = feed_kind
        self.inputs = inputs or []
        self.speed = speed
        self.duration = duration
        self.exit_on_feed_end = exit_on_feed_end
        self.console: Console | None = Console() if progress else None
        self.plan: RunPlan | None = None
        self._progress_session = -1
        self.live = feed_kind in LIVE_FEEDS
        self.log = get_logger("tradebot.daemon")
        self.recorder = live_recorder(settings, feed_kind)
        """A live futures session's accepted market data, into the catalog as DBN (feeds/session_record.py)."""
        self.cfg = settings.daemon
        self.data_dir = settings.data_dir
        self.started_ns = time.time_ns()
        self.stop_event = asyncio.Event()
        self.exit_code = 0
        self.stats: Counter[str] = Counter()
        self.feed: Feed | None = None
        self.feed_state = FeedState.CONNECTING
        self.reconnects = 0
        self.last_event_wall: dict[str, int] = {}
        self.last_event_ts: dict[str, int] = {}
        self.last_any_wall = 0
        self.loop_lag = 0.0
        self.errors = 0
        self.halts_on_error = 0
        self.disk_full = False
        self._lost_since: int | None = None
        self.systemd = SystemdNotifier()
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self.core_started = False
        self.store: StateStore | None = None
        self.core: TradingCore | None = None
        self.notifier: Notifier | None = None
        self.publisher: LivePublisher | None = None
        self.hub: StreamHub | None = None
        # A simulated market keeps its own time (it may be set in the future); everything else is recorded or
        # live, and cannot come from beyond the wall clock.
        self.validator = Validator(settings.validation, self.symbols, logger=self.log,
                                   wall_clock_future=feed_kind != "demo")
        self.input_damage: list[str] = []
        """What damaged input files cost (replay); the run exits 1 when there is any."""
        if self.live:
            self.validator.settings = settings.validation.model_copy(update={"check_staleness": True})

    # -- time ------------------------------------------------------------------------------------------

    def market_now(self) -> int:
        """Wall time for a live feed; event time for simulated and replayed data (so journals match replays)."""
        if self.live or self.core is None or not self.core.last_event_ns:
            return time.time_ns()
        return self.core.last_event_ns

    # -- lifecycle -------------------------------------------------------------------------------------

    async def run(self) -> int:
        db = self.settings.execution.db_path or default_db_path(self.data_dir, self.settings.trading_mode)
        os.umask(0o077)  # files 0600 and folders 0700 whatever the caller's umask (systemd sets the same)
        try:
            private_dir(self.data_dir)
            if db.parent != self.data_dir:
                private_dir(db.parent, tighten_existing=False)  # maybe a shared folder: only what we create
            free = psutil.disk_usage(str(db.parent)).free
            if free < self.cfg.min_free_mb * 2**20:
                raise DiskFullError(f"{db.parent}: disk full ({free // 1024} KiB free, need at least "
                                    f"{self.cfg.min_free_mb:g} MiB); free space and start again")
            self.store = StateStore.open(db, mode=self.settings.trading_mode)
            try:
                check_journal_kinds(self.store.journal_kinds())
            except UnknownJournalKindError:
                self.store.close()
                raise
        except StateLockedError as exc:
            print(f"refusing to start: {exc}", file=sys.stderr)
            return EXIT_LOCKED
        except (StateError, OSError, UnknownJournalKindError) as exc:
            print(f"refusing to start: {exc}", file=sys.stderr)
            return EXIT_DISK_FULL if is_disk_full(exc) else 2
        webhook = self.settings.discord_webhook_url
        self.notifier = Notifier(webhook.get_secret_value() if webhook else None,
                                 StoreOutbox(self.store, attachment_dir=self.data_dir / "outbox"),
                                 disabled_kinds=self.cfg.notify_disabled)
        try:
            self.feed = self._open_feed()  # bad feed settings stop us before anything starts
        except (ValueError, ConfigError) as exc:
            print(f"refusing to start: {exc}", file=sys.stderr)
            self.store.close()
            return 2
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        notifier_task: asyncio.Task[Any] | None = None
        if self.settings.trading_mode == "live":
            notifier_task = asyncio.create_task(self.notifier.run(), name="notifier")  # alerts while connecting
            code = await self._open_broker()
            if code is not None:
                self.notifier.stop()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(notifier_task, 5)
                with contextlib.suppress(Exception):
                    await self.notifier.flush(self.cfg.shutdown_flush_seconds)
                self.store.close()
                return code
        self.core = TradingCore(self.settings, self.symbols, self.store, on_notification=self._core_note,
                                logger=self.log,
                                broker=shadowed(self.broker_session.broker, self.settings, self.store, self.symbols)
                                if self.broker_session is not None else None)
        self.core.on_digest = self._digest
        self._wire_stream(self.core)
        if self.live:
            try:
                self._start_core(time.time_ns())
            except Exception as exc:
                if not is_disk_full(exc):
                    raise
                print(f"refusing to start: disk full: {exc}", file=sys.stderr)
                self.store.close()
                return EXIT_DISK_FULL
        control = ControlServer(self.data_dir / SOCKET_NAME, self._control)
        try:
            await control.start()
        except (RuntimeError, OSError) as exc:
            print(f"refusing to start: {exc}", file=sys.stderr)
            self.store.close()
            return 2
        assert self.hub is not None
        try:
            await self.hub.start()
        except OSError as exc:  # the dashboard is optional: trading goes on without its stream
            self.log.error("live stream socket failed; the dashboard will not update", error=str(exc))
        tasks = [asyncio.create_task(self._feed_loop(), name="feed"),
                 asyncio.create_task(self._stream_loop(), name="stream"),
                 asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
                 notifier_task or asyncio.create_task(self.notifier.run(), name="notifier")]
        if self.broker_session is not None:
            tasks.append(asyncio.create_task(self.broker_session.run(), name="broker"))
        if self.live:
            tasks.append(asyncio.create_task(self._clock_loop(), name="clock"))
        if self.duration:
            tasks.append(asyncio.create_task(self._stop_after(self.duration), name="duration"))
        if self.console is not None:
            self.plan = self._run_plan()
            self.console.say(intro(self.plan, self.settings.trading_mode))
            tasks.append(asyncio.create_task(self._progress_loop(), name="progress"))
        self.systemd.ready(self._status_line())
        self.log.info("daemon ready", version=__version__, symbols=self.symbols, feed=self.feed_kind,
                      mode=self.settings.trading_mode)
        try:
            await self.stop_event.wait()
        finally:
            await self._shutdown(tasks, control)
        return self.exit_code

    # -- the console for `make run` (--progress) --------------------------------------------------------

    def _run_plan(self) -> RunPlan:
        from tradebot.feeds.simulated import trading_sessions

        sim = self.settings.sim
        sessions = (trading_sessions(spec_for(self.symbols[0]).session, sim.start_date, sim.sessions)
                    if self.feed_kind == "demo" else [])
        speed = self.speed if self.speed is not None else sim.speed
        return RunPlan(self.feed_kind, self.symbols, speed, sessions, self.data_dir / RUN_LOG)

    def progress_text(self) -> str:
        assert self.plan is not None
        snap: dict[str, Any] = self.core.manager.snapshot() if self.core is not None else {}
        daily = self.core.manager.ledger.daily if self.core is not None else {}
        day = snap.get("trading_day")
        today = daily.get(day) if day else None
        return progress_line(
            plan=self.plan, market_ns=max(self.last_event_ts.values(), default=0),
            trades=today.trades if today else 0, day_pnl_cents=int(snap.get("day_pnl_cents") or 0),
            total_pnl_cents=sum(d.net_cents for d in daily.values()), positions=snap.get("positions") or {},
            state=str(snap.get("trading_state", "starting")), errors=self.errors, day=day)

    async def _progress_loop(self) -> None:
        assert self.console is not None and self.plan is not None
        every = 1.0 if self.console.tty else 15.0
        while True:
            await asyncio.sleep(every)
            last = max(self.last_event_ts.values(), default=0)
            where = session_of(self.plan.sessions, last) if last else None
            if where is not None and where[0] != self._progress_session:
                self.console.end_line()  # the finished session's last line stays on screen
                self._progress_session = where[0]
            self.console.progress(self.progress_text())

    def _start_core(self, now_ns: int) -> None:
        """Recover and start trading. Live: at wall time on start-up. Replayed or simulated data: at the first
        event's time, so the journal is in market time and a backtest of the same file starts identically."""
        assert self.core is not None and self.notifier is not None
        report = self.core.start(now_ns)
        self.core_started = True
        if not report.ok:
            self.notifier.notify(self._note(NotificationKind.HALTED, Severity.CRITICAL,
                                            "Recovery mismatch: trading halted", "; ".join(report.mismatches)[:1000]))
        self.log.info("trading core started", recovery=report.actions or "clean", open=report.open_brackets)
        if self.broker_session is not None:
            self.broker_session.attach(self.core.manager, self.market_now, self._component_error_short)
            self.core.manager.protection.check(time.monotonic_ns())
        self._boot_notifications(report.open_brackets)

    async def _open_broker(self) -> int | None:
        """Live mode: build, connect and preflight the broker; the exit code when the start is refused."""
        from tradebot.ops.broker_session import BrokerSession, LiveStartError

        try:
            self.broker_session = BrokerSession.open(self.settings, self.settings.trading_broker,
                                                     self._broker_note, self.log, self.symbols)
            if not await self.broker_session.connect(self.stop_event):
                await self.broker_session.close()
                return 0  # stopped while waiting for the broker
            self.broker_session.preflight()
        except LiveStartError as exc:
            print(f"refusing to start: {exc}", file=sys.stderr)
            if self.broker_session is not None:
                await self.broker_session.close()
            return 2
        return None

    def _broker_note(self, kind: NotificationKind, sev: Severity, title: str, desc: str) -> None:
        self.notifier_notify(kind, sev, title, desc, subject=self.settings.trading_broker or "broker")

    def _component_error_short(self, where: str, exc: Exception) -> None:
        self._component_error(where, exc, "")

    def _on_signal(self, sig: signal.Signals) -> None:
        self.log.info("signal received, shutting down", signal=sig.name)
        self.stop_event.set()

    async def _stop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.log.info("duration reached, shutting down", seconds=seconds)
        self.stop_event.set()

    async def _shutdown(self, tasks: list[asyncio.Task[Any]], control: ControlServer) -> None:
        """Every step is bounded and guarded: a full disk or a failing step never keeps the process alive."""
        assert self.core is not None and self.store is not None and self.notifier is not None
        self.systemd.stopping()
        for t in tasks:
            if t.get_name() != "notifier":
                t.cancel()
        for t in tasks:
            if t.get_name() != "notifier":
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        if self.feed is not None:
            with contextlib.suppress(Exception):
                await self.feed.close()
        if self._side_tasks and not self.disk_full:  # a digest being rendered still goes out
            await asyncio.wait(list(self._side_tasks), timeout=self.cfg.shutdown_flush_seconds)
        now = self.market_now()
        if not self.disk_full:
            try:
                if self.core_started and self.cfg.flatten_on_shutdown and self.core.manager.ledger.open_brackets():
                    n = self.core.manager.flatten("shutdown", now)
                    self.log.info("flattened on shutdown", brackets=n)
            except Exception as exc:
                self._shutdown_error("flatten on shutdown", exc)
            if self.broker_session is not None:
                await self._settle_broker()
            try:
                snap = self.core.manager.snapshot()
                self.notifier.notify(self._note(NotificationKind.SYSTEM_STOP, Severity.INFO, "tradebot stopped",
                                                f"day P&L {snap['day_pnl_cents'] / 100:+.2f} USD; "
                                                f"open brackets {len(snap['open_brackets'])}"))
            except Exception as exc:
                self._shutdown_error("stop notification", exc)
        self.notifier.stop()
        notifier_task = next(t for t in tasks if t.get_name() == "notifier")
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(notifier_task, 5)
        try:
            delivered = await self.notifier.flush(self.cfg.shutdown_flush_seconds)
        except Exception as exc:
            self._shutdown_error("alert flush", exc)
            delivered = False
        if not delivered:
            self.log.warning("some alerts were not delivered before shutdown; they stay in the outbox")
        with contextlib.suppress(Exception):
            await control.stop()
        if self.hub is not None:
            with contextlib.suppress(Exception):
                await self.hub.stop()
        self.feed_state = FeedState.STOPPED
        if self.recorder is not None:
            try:
                await asyncio.to_thread(self.recorder.close)
            except Exception as exc:
                self._shutdown_error("live session recording", exc)
        try:
            await asyncio.to_thread(write_heartbeat, self.data_dir / HEARTBEAT_FILE, self._heartbeat())
        except Exception as exc:
            self._shutdown_error("last heartbeat", exc)
        if self.broker_session is not None:
            await self.broker_session.close()
        with contextlib.suppress(Exception):
            self.store.close()
        self.log.info("daemon stopped", exit_code=self.exit_code, events=self.stats["events"],
                      rejects=self.validator.total_rejects, errors=self.errors)

    async def _settle_broker(self) -> None:
        """Live shutdown: give exits in flight (a flatten on shutdown) a few seconds to come back journaled."""
        assert self.core is not None
        m = self.core.manager
        deadline = time.monotonic() + self.cfg.shutdown_flush_seconds
        while self.core_started and time.monotonic() < deadline:
            try:
                m.pump()
            except Exception as exc:
                self._shutdown_error("broker events", exc)
                return
            closing = [b for b in m.ledger.open_brackets() if b.pending_exit_reason]
            if not closing:
                return
            await asyncio.sleep(0.1)

    def _shutdown_error(self, step: str, exc: Exception) -> None:
        self.log.error("shutdown step failed", step=step, error=repr(exc))
        if is_disk_full(exc) and not self.disk_full:
            self._disk_full(step, exc)

    # -- market data -------------------------------------------------------------------------------------

    def _open_feed(self) -> Feed:
        return make_feed(self.feed_kind, self.settings, self.symbols, self.inputs, self.speed)

    async def _feed_loop(self) -> None:
        backoff = 1.0
        while not self.stop_event.is_set():
            if self.feed is None:
                try:
                    self.feed = self._open_feed()
                except (ValueError, ConfigError) as exc:
                    self.log.error("cannot open the feed", error=str(exc))
                    self.exit_code = 2
                    self.stop_event.set()
                    return
            try:
                ended = await self._consume(self.feed)
            except FatalFeedError as exc:
                self.log.error("feed failed permanently", error=str(exc))
                self.notifier_notify(NotificationKind.CONNECTION_LOST, Severity.CRITICAL, "Market data failed",
                                     str(exc))
                if self.live:
                    self.core_halt(f"market data failed: {exc}")
                    self.exit_code = 2
                else:
                    # A file that cannot be read further is damaged input, not a trading fault: the run ends
                    # non-zero, and no HALTED(error) is left in the database for the next session to inherit.
                    self.input_damage.append(str(exc))
                    self.exit_code = 1
                self.stop_event.set()
                return
            except Exception as exc:
                self.log.error("feed crashed", error=repr(exc), exc_info=True)
                if not self.live:  # a file or simulation cannot resume where it was: stop, loudly
                    self.notifier_notify(NotificationKind.COMPONENT_ERROR, Severity.CRITICAL,
                                         "Market data feed crashed", repr(exc))
                    self.exit_code = 1
                    self.stop_event.set()
                    return
                ended = False
            finally:
                with contextlib.suppress(Exception):
                    await self.feed.close()
                self.feed = None
            if self.stop_event.is_set():
                return  # stopping on a failure (disk full, an unrecordable halt): no end-of-data work, no reconnect
            if ended and not self.live:
                assert self.core is not None
                self.core.finish()
                self.feed_state = FeedState.STOPPED
                self.log.info("feed finished", events=self.stats["events"], rejects=self.validator.total_rejects)
                if self.validator.damaged:
                    self.input_damage.append(f"{self.validator.damaged:,} broken record(s) rejected: " + ", ".join(
                        f"{k} {v:,}" for k, v in sorted(self.validator.rejects.items()) if k in DAMAGE_REASONS))
                if self.input_damage:
                    for line in self.input_damage:
                        self.log.error("damaged input", detail=line)
                    self.notifier_notify(NotificationKind.COMPONENT_ERROR, Severity.WARNING, "Replay input was damaged",
                                         "; ".join(self.input_damage)[:1000])
                    self.exit_code = max(self.exit_code, 1)
                if self.exit_on_feed_end:
                    self.stop_event.set()
                return
            # A live feed ended or crashed: reconnect with backoff.
            self.reconnects += 1
            self._connection_lost("feed ended" if ended else "feed crashed")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 60.0)

    async def _consume(self, feed: Feed) -> bool:
        assert self.core is not None
        core, validator, log = self.core, self.validator, self.log
        validator.declare_spans_of(feed)
        wall = time.time_ns
        async for ev in feed:
            if isinstance(ev, RawTrade | RawBook | RawStatus):
                out = validator.validate(ev)
                if out is None:
                    continue
                if self.recorder is not None and not isinstance(ev, RawStatus):
                    self.recorder.add(ev)
                now = wall()
                self.last_any_wall = now
                self.last_event_wall[out.symbol] = now
                self.last_event_ts[out.symbol] = out.ts_event
                if self._lost_since is not None:
                    self._connection_restored(now)
                if not self.core_started:
                    try:
                        self._start_core(out.ts_event)
                    except Exception as exc:
                        if not is_disk_full(exc):
                            raise
                        self._disk_full("trading core start", exc)
                        return True
                self.stats["events"] += 1
                try:
                    core.on_event(out)
                except Exception as exc:
                    self._component_error("trading core", exc, repr(out)[:300])
                    if self.disk_full or self.stop_event.is_set():
                        return True  # stopping (disk full, or a halt that could not be recorded): no more events
            elif isinstance(ev, FeedStatus):
                self._feed_status(ev)
            elif isinstance(ev, GapEvent):
                self.stats["gaps"] += 1
                self.validator.on_gap()  # a pre-gap book or price must not decide a post-gap print's side
                for strat in core.strategies.values():
                    strat.engine.on_gap()
                log.warning("market data gap", start=ev.start_ns, end=ev.end_ns, seconds=(ev.end_ns - ev.start_ns) / NS)
            if self.feed_state != FeedState.STREAMING and self.stats["events"]:
                self.feed_state = FeedState.STREAMING
        self.input_damage.extend(damage_of(feed))
        return True

    def _feed_status(self, ev: FeedStatus) -> None:
        prev = self.feed_state
        self.feed_state = ev.state
        if ev.state == FeedState.FAILED:
            raise FatalFeedError(ev.detail or "feed failed")
        if ev.state == FeedState.RECONNECTING and prev != FeedState.RECONNECTING:
            self.reconnects += 1
            self._connection_lost(ev.detail or "feed reconnecting")
        elif ev.state == FeedState.STREAMING and self._lost_since is not None:
            self._connection_restored(time.time_ns())

    def _connection_lost(self, why: str) -> None:
        if self._lost_since is None:
            self._lost_since = time.time_ns()
            self.feed_state = FeedState.RECONNECTING
            self.notifier_notify(NotificationKind.CONNECTION_LOST, Severity.WARNING, "Connection lost",
                                 f"{why} at {fmt_ts(time.time_ns(), '%H:%M:%S')}", subject=self.feed_kind)

    def _connection_restored(self, now_ns: int) -> None:
        assert self._lost_since is not None
        gap = (now_ns - self._lost_since) / NS
        self._lost_since = None
        self.feed_state = FeedState.STREAMING
        self.notifier_notify(NotificationKind.CONNECTION_RESTORED, Severity.SUCCESS, "Connection restored",
                             f"market data back after {gap:.1f}s", (("Gap", f"{gap:.1f} s"),), subject=self.feed_kind)

    async def _clock_loop(self) -> None:
        """Live only: bars close and jobs run on wall time in a quiet market; a silent feed is reconnected."""
        assert self.core is not None
        while True:
            await asyncio.sleep(1.0)
            now = time.time_ns()
            try:
                self.core.on_time(now)
            except Exception as exc:
                self._component_error("clock tick", exc, "")
            set_positions = getattr(self.feed, "set_positions", None)
            if set_positions is not None:  # seed 000's positions_only scope follows the open brackets
                set_positions({b.symbol for b in self.core.manager.ledger.open_brackets()})
            if self.feed is not None and self.last_any_wall and self._in_session(now) \
                    and now - self.last_any_wall > self.cfg.stale_feed_seconds * NS:
                self.log.warning("no market data in session, reconnecting",
                                 silent_s=(now - self.last_any_wall) / NS)
                self.last_any_wall = now
                self._connection_lost("no market data inside the session")
                with contextlib.suppress(Exception):
                    await self.feed.close()

    def _in_session(self, now_ns: int) -> bool:
        assert self.core is not None
        return self.core.calendar.session_at(now_ns) is not None

    # -- failures ----------------------------------------------------------------------------------------

    def _component_error(self, where: str, exc: Exception, context: str) -> None:
        """Fail closed every time: each unexpected exception halts new entries (exits stay managed) and alerts.

        Repeats of the same failure collapse in the notifier (kind + component), never the halt itself: after an
        operator ``resume`` the next exception halts again and says so."""
        self.errors += 1
        if is_disk_full(exc):
            self._disk_full(where, exc)
            return
        if self.errors <= 5 or self.errors % 1000 == 0:
            self.log.error("component error", component=where, error=repr(exc), record=context, count=self.errors,
                           exc_info=self.errors <= 5)
        if self.core is not None and self.core_started:
            t = self.core.manager.ledger.trading
            already = str(t.state) == "halted" and t.kind == HaltKind.ERROR
        else:
            already = False
        if not already:
            self.halts_on_error += 1
            self.core_halt(f"{where} error: {type(exc).__name__}: {exc}"[:500])
        self.notifier_notify(NotificationKind.COMPONENT_ERROR, Severity.CRITICAL, f"Trading halted: {where} error",
                             f"{type(exc).__name__}: {exc}"[:1000], subject=where)

    def core_halt(self, reason: str) -> None:
        if self.core is None:
            return
        try:
            self.core.manager.halt(reason, self.market_now(), HaltKind.ERROR)
        except Exception as exc:
            self.log.error("could not record the halt", error=repr(exc))
            if is_disk_full(exc):
                self._disk_full("recording the halt", exc)
            else:
                # A halt that cannot be recorded cannot be trusted to hold: stop the process (systemd restarts
                # it, recovery starts from the journal) rather than trade on unrecorded state.
                self.notifier_notify(NotificationKind.COMPONENT_ERROR, Severity.CRITICAL,
                                     "Trading stopped: the halt could not be recorded", repr(exc)[:1000],
                                     subject="halt")
                if not self.exit_code:
                    self.exit_code = 1
                self.stop_event.set()

    def _disk_full(self, where: str, exc: BaseException) -> None:
        """Once per process: one alert from memory (the outbox is on the full disk), stop, exit 75."""
        if self.disk_full:
            return
        self.disk_full = True
        self.exit_code = EXIT_DISK_FULL
        self.log.critical("DISK FULL: trading stopped, nothing more can be journaled; exiting for a restart "
                          "once space is freed", where=where, error=str(exc))
        if self.notifier is not None:
            self.notifier.notify_direct(self._note(
                NotificationKind.DISK_FULL, Severity.CRITICAL, "Disk full: trading stopped",
                f"{where}: {exc}. Nothing more can be journaled, so the daemon stops (exit {EXIT_DISK_FULL}); "
                "systemd restarts it, and it resumes from the journal once space is freed. Open positions keep "
                "their broker-side stops and targets.", subject="disk"))
        self.stop_event.set()

    # -- notifications -------------------------------------------------------------------------------------

    def _note(self, kind: NotificationKind, sev: Severity, title: str, desc: str = "",
              fields: tuple[tuple[str, str], ...] = (), subject: str = "") -> Notification:
        return Notification(kind, sev, title, time.time_ns(), desc, fields, subject=subject)

    def notifier_notify(self, kind: NotificationKind, sev: Severity, title: str, desc: str = "",
                        fields: tuple[tuple[str, str], ...] = (), subject: str = "") -> None:
        if self.notifier is not None:
            note = self._note(kind, sev, title, desc, fields, subject)
            self.notifier.notify(note)
            if self.publisher is not None:
                self.publisher.on_alert(note)

    def _core_note(self, note: Notification) -> None:
        """An execution notification (already in the outbox): wake the notifier, show it on the dashboard."""
        self._wake()
        if self.publisher is not None:
            self.publisher.on_alert(note)

    # -- live stream (the dashboard) -------------------------------------------------------------------

    def _wire_stream(self, core: TradingCore) -> None:
        specs = {s: spec_for(s) for s in self.symbols}
        meta = {"version": __version__, "mode": self.settings.trading_mode, "symbols": self.symbols,
                "feed": self.feed_kind, "bar_seconds": self.settings.footprint.bar_seconds,
                "tick_size": {s: str(sp.tick_size) for s, sp in specs.items()}, "pid": os.getpid(),
                "started_ns": self.started_ns}
        self.hub = StreamHub(self.data_dir / STREAM_SOCKET_NAME, self._stream_snapshot,
                             queue_size=self.cfg.stream_queue)
        self.publisher = LivePublisher(self.hub, core, meta, self._health, bars_kept=self.settings.web.bars)
        core.observer = self.publisher.on_step
        core.manager.on_record = self.publisher.on_record

    def _stream_snapshot(self) -> dict[str, Any]:
        assert self.publisher is not None
        return self.publisher.snapshot()

    async def _stream_loop(self) -> None:
        assert self.publisher is not None
        while True:
            await asyncio.sleep(0.25)
            self.publisher.tick()

    def _health(self) -> dict[str, Any]:
        now = time.time_ns()
        return {"ts_ns": now, "feed_state": str(self.feed_state), "events": self.stats["events"],
                "market_data_age_s": round((now - self.last_any_wall) / NS, 3) if self.last_any_wall else None,
                "last_event_ns": max(self.last_event_ts.values(), default=None), "loop_lag_s": round(self.loop_lag, 4),
                "validation_rejects": self.validator.total_rejects, "errors": self.errors,
                "reconnects": self.reconnects, "stream": self.hub.snapshot_stats() if self.hub else {},
                "publisher_errors": self.publisher.errors if self.publisher else 0}

    def _wake(self) -> None:
        if self.notifier is not None:
            self.notifier.wake()

    def _boot_notifications(self, open_brackets: list[str]) -> None:
        marker = self.data_dir / "boot_time"
        boot = int(psutil.boot_time())
        try:
            previous = int(marker.read_text().strip())
        except (OSError, ValueError):
            previous = None
        if previous is not None and previous != boot:
            self.notifier_notify(NotificationKind.SYSTEM_REBOOT, Severity.WARNING, "Server restarted",
                                 f"boot at {fmt_ts(boot * NS, '%Y-%m-%d %H:%M')}")
        with contextlib.suppress(OSError):
            marker.write_text(str(boot))
        assert self.core is not None
        snap = self.core.manager.snapshot()
        s = self.settings
        self.notifier_notify(NotificationKind.SYSTEM_START, Severity.INFO, "tradebot started",
                             f"version {__version__}", (
            ("Mode", s.trading_mode), ("Symbols", ",".join(self.symbols)), ("Feed", self.feed_kind),
            ("Profit target", f"${s.daily_profit_target}"), ("Loss limit", f"${s.daily_loss_limit}"),
            ("Tier", str(snap.get("tier") or "-")), ("State", str(snap["trading_state"])),
            ("Open brackets", str(len(open_brackets)))))

    def _digest(self, day: dt.date, at_ns: int) -> None:
        assert self.store is not None
        task = asyncio.get_running_loop().create_task(self._send_digest(self.store, day))
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _send_digest(self, store: StateStore, day: dt.date) -> None:
        try:
            pf = self.core.manager.propfirm if self.core is not None else None
            # SQLite stays on the loop's thread; the chart renders off it
            data = digest_data(store, day, propfirm=pf.summary() if pf is not None else None)
            note = await asyncio.to_thread(digest_notification, data, day, time.time_ns())
        except Exception as exc:
            self.log.error("daily digest failed", error=repr(exc))
            return
        if self.notifier is not None:
            self.notifier.notify(note)

    # -- operator ------------------------------------------------------------------------------------------

    async def _control(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        assert self.core is not None
        if not self.core_started and cmd in ("halt", "resume", "flatten", "adopt"):
            return {"ok": False, "error": "trading has not started yet (waiting for the first market event)"}
        m = self.core.manager
        now = self.market_now()
        reason = sanitize_reason(str(args.get("reason") or "")) or f"operator {cmd}"
        if cmd == "halt":
            m.halt(reason, now)
            self.notifier_notify(NotificationKind.HALTED, Severity.WARNING, "Trading halted by the operator", reason)
        elif cmd == "resume":
            m.resume(now, reason)
            self.notifier_notify(NotificationKind.RESUMED, Severity.INFO, "Trading resumed by the operator", reason)
        elif cmd == "adopt":
            return self._adopt(args, reason, now)
        elif cmd == "flatten":
            n = m.flatten(reason, now)
            return {"ok": True, "flattened": n, "state": m.trading_state.value}
        snap = m.snapshot()
        return {"ok": True, "state": snap["trading_state"], "positions": snap["positions"],
                "day_pnl_cents": snap["day_pnl_cents"], "feed": str(self.feed_state)}

    def _adopt(self, args: dict[str, Any], reason: str, now: int) -> dict[str, Any]:
        """``tradebot adopt --symbol ES --stop 5890.25``: live only (a paper account has no foreign positions)."""
        from tradebot.execution.reconcile import AdoptError, adopt

        assert self.core is not None
        if self.broker_session is None:
            return {"ok": False, "error": "adopt is for live mode: a paper account has no positions of its own"}
        symbol, stop = str(args.get("symbol") or ""), str(args.get("stop") or "")
        try:
            spec = spec_for(symbol)
            ticks = spec.to_ticks(stop)
            sid = adopt(self.core.manager, spec.root, ticks, now, reason)
        except (AdoptError, ValueError, ArithmeticError) as exc:
            return {"ok": False, "error": str(exc)}
        self.log.warning("position adopted", signal_id=sid, symbol=spec.root, stop=stop)
        snap = self.core.manager.snapshot()
        return {"ok": True, "adopted": sid, "state": snap["trading_state"], "positions": snap["positions"]}

    # -- heartbeat -------------------------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        period = self.cfg.heartbeat_seconds
        next_log = 0.0
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(period)
            self.loop_lag = max(0.0, time.monotonic() - t0 - period)
            hb = self._heartbeat()
            if self.core is not None:
                try:
                    self.core.manager.flush_marks()  # so `tradebot status` can price open positions
                except Exception as exc:
                    self.log.warning("could not record marks", error=repr(exc))
                    if is_disk_full(exc):
                        self._disk_full("recording marks", exc)
            try:
                await asyncio.to_thread(write_heartbeat, self.data_dir / HEARTBEAT_FILE, hb)
            except OSError as exc:
                self.log.error("heartbeat write failed", error=str(exc))
                if is_disk_full(exc):
                    self._disk_full("heartbeat", exc)
                continue
            healthy = self.loop_lag < self.cfg.loop_lag_seconds and self.feed_state not in (
                FeedState.FAILED, FeedState.RECONNECTING)
            if healthy:
                self.systemd.watchdog()
            self.systemd.status(self._status_line())
            if time.monotonic() >= next_log:
                next_log = time.monotonic() + self.cfg.status_log_seconds
                self.log.info("status", line=self._status_line())

    def _heartbeat(self) -> dict[str, Any]:
        now = time.time_ns()
        snap: dict[str, Any] = self.core.manager.snapshot() if self.core is not None else {}
        ages = {s: round((now - w) / NS, 3) for s, w in self.last_event_wall.items()}
        return {
            "pid": os.getpid(), "version": __version__, "started_ns": self.started_ns, "ts_ns": now,
            "last_loop_ns": now, "mode": self.settings.trading_mode, "symbols": self.symbols,
            "feed": self.feed_kind, "feed_state": str(self.feed_state), "reconnects": self.reconnects,
            "market": {s: {"last_event_ns": self.last_event_ts.get(s), "age_s": ages.get(s)} for s in self.symbols},
            "market_data_age_s": round((now - self.last_any_wall) / NS, 3) if self.last_any_wall else None,
            "events": self.stats["events"], "validation": self.validator.snapshot(),
            "validation_rejects": self.validator.total_rejects, "errors": self.errors,
            "halts_on_error": self.halts_on_error, "disk_full": self.disk_full,
            "trading_state": snap.get("trading_state"), "tier": snap.get("tier"),
            "positions": snap.get("positions", {}), "day_pnl_cents": snap.get("day_pnl_cents"),
            "open_brackets": len(snap.get("open_brackets") or ()),  # the dead-man's switch: anything to close?
            "recording": self.recorder.snapshot() if self.recorder is not None else None,
            "broker": getattr(self.settings, "trading_broker", None) if self.settings.trading_mode == "live" else None,
            "broker_stats": self._broker_stats(),
            "balance_cents": snap.get("balance_cents"), "loop_lag_s": round(self.loop_lag, 4),
            "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
            "stream": self.hub.snapshot_stats() if self.hub is not None else {},
            "notifier": {"mode": self.notifier.mode if self.notifier else None, "delivered": 0, "collapsed": 0,
                         "collapse_summaries": 0, "possible_duplicates": 0,
                         **(dict(self.notifier.stats) if self.notifier else {})},
        }

    def _broker_stats(self) -> dict[str, int]:
        """The live adapter's own counters (duplicates dropped, lost acks, retries...), where it keeps them."""
        snapshot = getattr(self.broker_session.broker, "stats_snapshot", None) if self.broker_session else None
        return dict(snapshot()) if callable(snapshot) else {}

    def _status_line(self) -> str:
        snap: dict[str, Any] = self.core.manager.snapshot() if self.core is not None else {}
        pnl = (snap.get("day_pnl_cents") or 0) / 100
        pos = ",".join(f"{k}:{v:+d}" for k, v in (snap.get("positions") or {}).items()) or "flat"
        last = max(self.last_event_ts.values(), default=0)
        at = fmt_ts(last, "%Y-%m-%d %H:%M") if last else "-"
        return (f"{self.settings.trading_mode} {'/'.join(self.symbols)} {snap.get('trading_state', '?')} "
                f"{pos} P&L {pnl:+.2f} feed {self.feed_state} market {at} events {self.stats['events']}")


def run_overrides(args: argparse.Namespace, settings: Settings, mode: str) -> Settings:
    """``tradebot run``'s options applied to the settings, each checked by the rules of the variable it overrides
    (:class:`ConfigError`, exit 2, one line naming the option): ``--loss-limit 100`` or ``--timeframe 0`` must not
    start a daemon, nor be silently ignored."""
    updates: dict[str, Any] = {"trading_mode": mode}
    if getattr(args, "profit_target", None) is not None:
        updates["daily_profit_target"] = checked_override(Settings, "daily_profit_target", args.profit_target,
                                                          "--profit-target")
    if getattr(args, "loss_limit", None) is not None:
        updates["daily_loss_limit"] = checked_override(Settings, "daily_loss_limit", args.loss_limit, "--loss-limit")
    if getattr(args, "timeframe", None) is not None:
        bar = checked_override(FootprintSettings, "bar_seconds", args.timeframe, "--timeframe")
        updates["footprint"] = settings.footprint.model_copy(update={"bar_seconds": bar})
    if getattr(args, "position_size", None) is not None:
        size = checked_override(ExecutionSettings, "max_position_size", args.position_size, "--position-size")
        updates["execution"] = settings.execution.model_copy(update={"max_position_size": size})
    if getattr(args, "sessions", None) is not None:
        n = checked_override(SimSettings, "sessions", args.sessions, "--sessions")
        updates["sim"] = settings.sim.model_copy(update={"sessions": n})
    check_number("--speed", getattr(args, "speed", None), minimum=0)
    check_number("--duration", getattr(args, "duration", None), minimum=0)
    return settings.model_copy(update=updates)


def run_daemon(args: argparse.Namespace, settings: Settings) -> int:
    mode = args.mode or settings.trading_mode
    broker = getattr(args, "broker", None)
    if broker is not None and mode != "live":
        print(f"refusing to start: --broker {broker} trades a real account and needs --mode live "
              "(paper mode never uses a broker)", file=sys.stderr)
        return 2
    if mode == "live" and not (broker or settings.trading_broker):
        print("refusing to start: --mode live needs a broker: --broker projectx|rithmic (or TRADING_BROKER); "
              "tradebot never falls back to paper silently", file=sys.stderr)
        return 2
    settings = run_overrides(args, settings, mode)
    if broker is not None:
        settings = settings.model_copy(update={"trading_broker": broker})
    if args.symbols:
        symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    else:
        symbols = [args.symbol] if args.symbol else settings.symbol_list
    feed = args.feed or settings.feed
    if feed == "replay" and args.input and all(str(p).endswith((".dbn", ".dbn.zst")) for p in args.input):
        from tradebot.feeds.dbn_files import register_recorded_instruments

        try:
            register_recorded_instruments(args.input)  # a recorded stock/crypto session names its symbols
        except Exception as exc:
            print(f"refusing to start: {exc}", file=sys.stderr)
            return 2
    if feed not in ("polygon", "coinbase") and (args.symbols is not None or args.symbol is not None):
        symbols = check_symbols("--symbols" if args.symbols is not None else "--symbol", symbols)
    if feed == "replay" and not args.input:
        print("--feed replay needs --input FILE [FILE ...]", file=sys.stderr)
        return 2
    if feed in ("polygon", "coinbase"):
        from tradebot.feeds.factory import resolve_live_symbols

        try:
            symbols = resolve_live_symbols(feed, symbols if (args.symbols or args.symbol) else [], settings)
        except ValueError as exc:
            print(f"refusing to start: {exc}", file=sys.stderr)
            return 2
    progress = bool(getattr(args, "progress", False))
    log_file = None
    if progress:  # the console shows progress; every log line goes to data/run.log
        private_dir(settings.data_dir)
        fd = os.open(settings.data_dir / RUN_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        log_file = os.fdopen(fd, "a", buffering=1, encoding="utf-8")
        configure_logging(settings.log_level, "json", stream=log_file)
    daemon = Daemon(settings, symbols, feed, args.input, args.speed, args.duration,
                    exit_on_feed_end=not getattr(args, "stay", False), progress=progress)
    try:
        code = asyncio.run(daemon.run())
    finally:
        if log_file is not None:
            configure_logging(settings.log_level, settings.log_format, stream=sys.stderr)
            log_file.close()
    if daemon.console is not None and daemon.plan is not None:
        daemon.console.progress(daemon.progress_text())
        daemon.console.end_line()
        db = settings.execution.db_path or default_db_path(settings.data_dir, settings.trading_mode)
        days = [s.trading_date for s in daemon.plan.sessions] or None
        daemon.console.say(f"\nsummary ({db}, exit code {code}):\n"
                           + summary_table(db, days, settings.trading_mode)
                           + "\n\nnext: tradebot status | tradebot trades | tradebot stats | tradebot signals")
    return code

