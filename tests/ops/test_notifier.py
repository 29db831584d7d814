"""The Discord notifier against a local stand-in: success, 429, 5xx, timeouts, 404, limits, restarts."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.discord_server import Answer, DiscordStandIn
from tradebot.core.calendar import ET, local_ns
from tradebot.core.logging import configure_logging
from tradebot.ops.digest import digest_data, digest_notification
from tradebot.ops.discord import TOTAL_MAX, build_embed
from tradebot.ops.notifications import MemoryOutbox, Notification, Severity
from tradebot.ops.notifier import Notifier
from tradebot.ops.store_outbox import StoreOutbox
from tradebot.state.store import StateStore


def note(title: str = "Trade opened", kind: str = "trade_opened", sev: Severity = Severity.INFO,
         **kw: object) -> Notification:
    return Notification(kind, sev, title, time.time_ns(), "LONG 1 MES", (("Entry", "5000.25"), ("Stop", "4996.25")),
                        **kw)  # type: ignore[arg-type]


@pytest.fixture
async def server() -> AsyncIterator[DiscordStandIn]:
    s = DiscordStandIn()
    await s.start()
    yield s
    await s.stop()


def fast(url: str | None, outbox: MemoryOutbox | None = None, **kw: object) -> Notifier:
    return Notifier(url, outbox or MemoryOutbox(), backoff_initial=0.01, backoff_max=0.05, timeout_seconds=0.5,
                    **kw)  # type: ignore[arg-type]


async def test_success_delivers_an_embed_in_order(server: DiscordStandIn) -> None:
    n = fast(server.url)
    n.notify(note("one"))
    n.notify(note("two", sev=Severity.CRITICAL))
    assert await n.flush(5)
    titles = [r.payload["embeds"][0]["title"] for r in server.received]
    assert titles == ["one", "two"]
    assert server.received[1].payload["embeds"][0]["color"] == 0xE74C3C
    assert n.stats["delivered"] == 2 and not n.outbox.pending()


async def test_429_waits_retry_after_then_delivers(server: DiscordStandIn) -> None:
    server.script = [Answer(429, {"retry_after": 0.3, "global": False}, {"Retry-After": "1"})]
    n = fast(server.url)
    n.notify(note())
    t0 = asyncio.get_running_loop().time()
    assert await n.flush(5)
    assert server.requests == 2 and len(server.received) == 1
    assert server.received[0].at - t0 >= 0.3  # the body's retry_after wins over the header
    assert n.stats["rate_limited"] == 1


async def test_rate_limit_bucket_headers_space_out_requests(server: DiscordStandIn) -> None:
    server.script = [Answer(204, None, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "0.4"})]
    n = fast(server.url)
    n.notify(note("a"))
    n.notify(note("b"))
    assert await n.flush(5)
    assert server.received[1].at - server.received[0].at >= 0.35
    assert n.stats["bucket_waits"] == 1


async def test_500s_are_retried_with_backoff(server: DiscordStandIn) -> None:
    server.script = [Answer(500), Answer(502)]
    ob = MemoryOutbox()
    n = fast(server.url, ob)
    n.notify(note())
    assert await n.flush(5)
    assert server.requests == 3 and n.stats["server_error"] == 2
    assert ob.attempts(1) == 3


async def test_persistent_500_leaves_the_alert_pending_with_bounded_attempts(server: DiscordStandIn) -> None:
    server.default = Answer(500)
    ob = MemoryOutbox()
    n = fast(server.url, ob, attempts_per_round=3)
    n.notify(note())
    assert not await n.flush(5)
    assert server.requests == 3 and len(ob.pending()) == 1


async def test_timeouts_are_retried_and_a_possible_duplicate_is_counted(server: DiscordStandIn) -> None:
    server.script = [Answer(204, delay=1.0)]  # accepted, but the answer comes after the client gave up
    ob = MemoryOutbox()
    n = fast(server.url, ob)
    n.notify(note())
    assert await n.flush(5)
    assert n.stats["transport_error"] == 1 and n.stats["delivered"] == 1
    # At-least-once: the post that timed out was accepted too, and the notifier says so.
    assert len(server.received) == 2
    assert n.stats["ambiguous_attempts"] == 1 and n.stats["possible_duplicates"] == 1 and ob.ambiguous[1] == 1


async def test_connect_failures_are_not_counted_as_duplicates() -> None:
    n = fast("http://127.0.0.1:9/api/webhooks/1/x", attempts_per_round=2)  # nothing listens on port 9
    n.notify(note())
    assert not await n.flush(3)
    assert n.stats["transport_error"] == 2 and n.stats["ambiguous_attempts"] == 0


def test_default_client_timeout_is_far_above_discord_answer_times() -> None:
    assert Notifier(None, MemoryOutbox()).timeout >= 30


async def test_404_disables_the_webhook_loudly_and_keeps_alerts(server: DiscordStandIn,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    server.default = Answer(404, {"message": "Unknown Webhook", "code": 10015})
    ob = MemoryOutbox()
    n = fast(server.url, ob)
    n.notify(note("x"))
    n.notify(note("y"))
    assert not await n.flush(5)
    assert n.disabled and n.mode == "disabled" and server.requests == 1
    assert len(ob.pending()) == 2
    out = capsys.readouterr().out
    assert "DISCORD WEBHOOK REJECTED" in out and "secrettoken" not in out


async def test_repeats_of_one_condition_collapse_and_the_count_is_sent_when_the_window_closes(
        server: DiscordStandIn) -> None:
    n = fast(server.url, collapse_seconds=0.3)
    task = asyncio.create_task(n.run())
    for _ in range(4):
        n.notify(note("Connection lost", kind="connection_lost", subject="databento"))
    n.notify(note("Connection lost", kind="connection_lost", subject="polygon"))  # another subject: its own
    for _ in range(50):
        if len(server.received) >= 3:
            break
        await asyncio.sleep(0.05)
    n.stop()
    await asyncio.wait_for(task, 6)
    # The first at once, the other feed at once, then one summary when the window closed (no further event).
    assert server.titles() == ["Connection lost", "Connection lost", "Connection lost (x4)"]
    assert n.stats["collapsed"] == 3 and n.stats["collapse_summaries"] == 1
    assert "4 times" in server.received[2].payload["embeds"][0]["description"]


async def test_distinct_events_are_never_collapsed(server: DiscordStandIn) -> None:
    n = fast(server.url, collapse_seconds=60)
    kinds = ["trade_opened", "trade_opened", "trade_opened", "trade_closed", "trade_closed", "loss_limit_hit",
             "trading_state", "trading_state", "tier_change", "recovery_mismatch", "exit_signal", "exit_signal"]
    for i, kind in enumerate(kinds):  # same kind and same title, one event each
        n.notify(Notification(kind, Severity.INFO, "Trade opened: MES long", time.time_ns(), "", (("n", str(i)),)))
    assert await n.flush(5)
    got = [r.payload["embeds"][0]["fields"][0]["value"] for r in server.received]
    assert got == [str(i) for i in range(len(kinds))]  # every one, in order
    assert n.stats["collapsed"] == 0


async def test_shutdown_flush_sends_the_pending_count(server: DiscordStandIn) -> None:
    n = fast(server.url, collapse_seconds=60)
    for _ in range(3):
        n.notify(note("Trading halted: clock tick error", kind="component_error", subject="clock tick"))
    assert await n.flush(5)  # the window is force-closed on flush: the count goes out before exit
    assert server.titles() == ["Trading halted: clock tick error", "Trading halted: clock tick error (x3)"]


async def test_disabled_kinds_are_not_sent(server: DiscordStandIn) -> None:
    n = fast(server.url, disabled_kinds={"trade_opened"})
    n.notify(note())
    n.notify(note("Loss limit hit", kind="loss_limit_hit", sev=Severity.CRITICAL))
    assert await n.flush(5)
    assert [r.payload["embeds"][0]["title"] for r in server.received] == ["Loss limit hit"]


async def test_png_attachment_is_a_multipart_upload(server: DiscordStandIn) -> None:
    png = b"\x89PNG\r\n\x1a\nfakeimage"
    n = fast(server.url)
    n.notify(note("Daily digest", kind="daily_digest", attachment=png, attachment_name="digest.png"))
    assert await n.flush(5)
    got = server.received[0]
    assert got.content_type.startswith("multipart/form-data")
    assert got.files == {"digest.png": png}
    assert got.payload["embeds"][0]["image"]["url"] == "attachment://digest.png"


async def test_restart_delivers_undelivered_critical_alerts(server: DiscordStandIn) -> None:
    server.default = Answer(503)
    ob = MemoryOutbox()  # stands for the SQLite outbox that outlives the process
    first = fast(server.url, ob, attempts_per_round=2)
    first.notify(note("Loss limit hit", kind="loss_limit_hit", sev=Severity.CRITICAL))
    assert not await first.flush(5)
    server.default = Answer(204)
    second = fast(server.url, ob)  # a new process reading the same outbox
    assert await second.flush(5)
    assert [r.payload["embeds"][0]["title"] for r in server.received] == ["Loss limit hit"]


async def test_without_webhook_alerts_go_to_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    n = fast(None)
    n.notify(note("Profit target hit", kind="profit_target_hit", sev=Severity.SUCCESS))
    assert await n.flush(5)
    assert n.mode == "log"
    assert '"title": "Profit target hit"' in capsys.readouterr().out
    # A field named like one of the log call's own keys must not break the log sink.
    n.notify(Notification("halted", Severity.WARNING, "Trading halted", time.time_ns(), "",
                          (("kind", "operator"), ("title", "x"))))
    assert await n.flush(5)
    assert '"kind": "operator"' in capsys.readouterr().out


async def test_run_loop_delivers_without_blocking_the_producer(server: DiscordStandIn) -> None:
    server.script = [Answer(204, delay=0.2)]
    n = fast(server.url)
    task = asyncio.create_task(n.run())
    t0 = time.perf_counter()
    for i in range(5):
        n.notify(note(f"t{i}"))
    assert time.perf_counter() - t0 < 0.05  # notify never waits on the network
    for _ in range(100):
        if len(server.received) == 5:
            break
        await asyncio.sleep(0.05)
    n.stop()
    await asyncio.wait_for(task, 6)
    assert len(server.received) == 5


def test_embed_respects_discord_limits() -> None:
    n = Notification("watchdog", Severity.WARNING, "T" * 400, time.time_ns(), "D" * 5000,
                     tuple((f"name{i}" * 60, "v" * 2000) for i in range(40)))
    e = build_embed(n)
    assert len(e["title"]) <= 256 and len(e["description"]) <= 4096 and len(e["fields"]) <= 25
    assert all(len(f["name"]) <= 256 and len(f["value"]) <= 1024 for f in e["fields"])
    total = len(e["title"]) + len(e["description"]) + len(e["footer"]["text"]) + sum(
        len(f["name"]) + len(f["value"]) for f in e["fields"])
    assert total <= TOTAL_MAX


async def test_possible_duplicates_reach_the_outbox_and_the_digest(server: DiscordStandIn, tmp_path: Path) -> None:
    """A post answered too late is retried: both copies are in the channel, and the digest says so."""
    store = StateStore.open(tmp_path / "t.db")
    try:
        day = dt.date(2025, 3, 10)
        at = local_ns(day, dt.time(10, 0), ET)
        server.script = [Answer(204, delay=1.0)]
        n = fast(server.url, StoreOutbox(store))
        n.notify(Notification("trade_opened", Severity.INFO, "Trade opened: ES long", at))
        n.notify(Notification("trade_closed", Severity.INFO, "Trade closed: ES +$12.50", at + 1))
        assert await n.flush(5)
        assert server.titles() == ["Trade opened: ES long", "Trade opened: ES long", "Trade closed: ES +$12.50"]
        assert store.query("SELECT ambiguous FROM outbox ORDER BY id") == [{"ambiguous": 1}, {"ambiguous": 0}]
        fields = dict(digest_notification(digest_data(store, day), day, at).fields)
        assert fields["Alerts"] == "2 sent of 2, 1 possible duplicate(s), 0 repeat(s) collapsed"
    finally:
        store.close()


async def test_a_flapping_feed_ends_on_its_current_state(server: DiscordStandIn) -> None:
    """Lost and restored collapse apart, but their counts go out together, the latest state last."""
    n = fast(server.url, collapse_seconds=60)
    for kind in ("connection_lost", "connection_restored", "connection_lost", "connection_restored",
                 "connection_lost"):  # the feed is down now
        title = "Connection lost" if kind == "connection_lost" else "Connection restored"
        n.notify(note(title, kind=kind, subject="databento"))
        await asyncio.sleep(0.01)
    assert await n.flush(5)
    assert server.titles() == ["Connection lost", "Connection restored", "Connection restored (x2)",
                               "Connection lost (x3)"]
