"""``--feed rithmic`` against the R|Protocol stand-in: the recorded ES day comes back through the ticker plant
and the validation layer with the exchange's aggressor sides and the 10-level book intact."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.polling import poll_until
from support.rithmic_server import RithmicStandIn
from tradebot.core.config import Settings
from tradebot.core.types import BookUpdate, FeedEvent, FeedState, FeedStatus, GapEvent, RawBook, RawTrade, Trade
from tradebot.feeds.rithmic_feed import RithmicLiveFeed
from tradebot.feeds.rithmic_session import RithmicSession, SessionConfig
from tradebot.feeds.validation import Validator

TESTS = Path(__file__).resolve().parents[1]
DATA = TESTS.parent / "../shared/data/real/ES_2022-01-24_sierra.mbp-10.dbn.zst"


@pytest.fixture
async def srv(tmp_path: Path) -> AsyncIterator[RithmicStandIn]:
    s = RithmicStandIn(tmp_path / "tls", [DATA])
    await s.start()
    yield s
    await s.stop()


def feed_for(srv: RithmicStandIn, password: str = "secret-pw") -> RithmicLiveFeed:
    cfg = SessionConfig("trader", password, "Rithmic Test", srv.url, ca_file=srv.ca_file, request_timeout_s=2,
                        reconnect_interval_s=0.2, reconnect_max_delay_s=0.5)
    return RithmicLiveFeed(Settings(), ["ES"], session=RithmicSession(cfg))


async def collect(feed: RithmicLiveFeed, out: list[FeedEvent]) -> None:
    async for ev in feed:
        out.append(ev)


async def test_trades_sides_and_depth_through_validation(srv: RithmicStandIn) -> None:
    feed = feed_for(srv)
    got: list[FeedEvent] = []
    task = asyncio.create_task(collect(feed, got))
    try:
        await poll_until(lambda: srv.subscribed.is_set(), 10)
        n = 400
        await srv.advance(n)
        want = srv.events[:n]
        await poll_until(lambda: sum(isinstance(e, RawTrade | RawBook) for e in got) >= n, 10)
    finally:
        await feed.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [e.state for e in got if isinstance(e, FeedStatus)][:2] == [FeedState.CONNECTING, FeedState.STREAMING]
    assert feed.contracts == {"ES": "ESH2"}
    v = Validator(Settings().validation, ["ES"])
    seen = [x for x in (v.validate(e) for e in got if isinstance(e, RawTrade | RawBook)) if x is not None]
    assert v.total_rejects == 0, v.snapshot()
    trades = [(t.price, t.size, t.side, t.ts_event) for t in seen if isinstance(t, Trade)]
    assert trades == [(t.price, t.size, t.side, t.ts_event) for t in want if isinstance(t, Trade)]
    assert all(t.side_rule.name == "EXCHANGE" for t in seen if isinstance(t, Trade))
    books = [(b.bid_px, b.bid_sz, b.ask_px, b.ask_sz) for b in seen if isinstance(b, BookUpdate)]
    assert books == [(b.bid_px, b.bid_sz, b.ask_px, b.ask_sz) for b in want if isinstance(b, BookUpdate)]
    assert len(books[0][0]) == 10


async def test_login_refused_fails_once(srv: RithmicStandIn) -> None:
    feed = feed_for(srv, password="wrong-password")
    got: list[FeedEvent] = []
    await asyncio.wait_for(collect(feed, got), 10)
    assert isinstance(got[-1], FeedStatus) and got[-1].state == FeedState.FAILED
    assert "login refused" in got[-1].detail and feed.stats["auth_failed"] == 1


async def test_reconnect_reports_a_gap_and_resubscribes(srv: RithmicStandIn) -> None:
    feed = feed_for(srv)
    got: list[FeedEvent] = []
    task = asyncio.create_task(collect(feed, got))
    try:
        await poll_until(lambda: srv.subscribed.is_set(), 10)
        await srv.advance(20)
        await poll_until(lambda: sum(isinstance(e, RawTrade) for e in got) >= 10, 10)
        assert await srv.drop("ticker") == 1
        await poll_until(lambda: any(isinstance(e, GapEvent) for e in got), 10)
        await srv.advance(20)
        await poll_until(lambda: sum(isinstance(e, RawTrade) for e in got) >= 20, 10)
    finally:
        await feed.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    states = [e.state for e in got if isinstance(e, FeedStatus)]
    assert FeedState.RECONNECTING in states and states[-1] == FeedState.STREAMING
    assert srv.stats["logins_ticker"] == 2 and feed.stats["gaps"] == 1


async def test_stand_in_process_streams_fresh_data(tmp_path: Path) -> None:
    """``python -m support.rithmic_server`` as its own process (as daemon tests run it): events stamped when sent,
    so a live validator (wall-clock future/stale rules) accepts the whole recorded minute."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "support.rithmic_server", "--data", str(DATA), "--dir", str(tmp_path / "tls"),
        "--speed", "20", "--wait-for-ticker", cwd=TESTS, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        cfg = SessionConfig("trader", "secret-pw", "Rithmic Test", info["url"], ca_file=Path(info["ca_file"]))
        feed = RithmicLiveFeed(Settings(), ["ES"], session=RithmicSession(cfg))
        got: list[FeedEvent] = []
        task = asyncio.create_task(collect(feed, got))
        try:
            await poll_until(lambda: sum(isinstance(e, RawTrade | RawBook) for e in got) >= 4052, 30)
        finally:
            await feed.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        proc.terminate()
        await proc.wait()
    v = Validator(Settings().validation, ["ES"])
    accepted = [x for x in (v.validate(e) for e in got if isinstance(e, RawTrade | RawBook)) if x is not None]
    assert v.total_rejects == 0, v.snapshot()
    assert len(accepted) == 4052


async def test_best_bid_offer_only_and_a_refused_relogin_fails(srv: RithmicStandIn) -> None:
    """``TRADEBOT_RITHMIC__DEPTH_LEVELS=1`` subscribes BBO instead of the book; a login refused after a reconnect
    ends the feed FAILED instead of logging in again and again."""
    cfg = SessionConfig("trader", "secret-pw", "Rithmic Test", srv.url, ca_file=srv.ca_file, request_timeout_s=2,
                        reconnect_interval_s=0.2, reconnect_max_delay_s=0.5)
    settings = Settings(_env_file=None, rithmic={"depth_levels": 1})
    feed = RithmicLiveFeed(settings, ["ES"], session=RithmicSession(cfg))
    got: list[FeedEvent] = []
    task = asyncio.create_task(collect(feed, got))
    try:
        await poll_until(lambda: srv.subscribed.is_set(), 10)
        await srv.advance(40)
        await poll_until(lambda: sum(isinstance(e, RawTrade | RawBook) for e in got) >= 40, 10)
        books = [e for e in got if isinstance(e, RawBook)]
        want = [e for e in srv.events[:40] if isinstance(e, BookUpdate)]
        assert [(b.bid_sz, b.ask_sz) for b in books] == [(w.bid_sz[:1], w.ask_sz[:1]) for w in want]
        srv.faults.refuse_login = True
        await srv.drop("ticker")
        await asyncio.wait_for(task, 10)
    finally:
        await feed.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    last = got[-1]
    assert isinstance(last, FeedStatus) and last.state == FeedState.FAILED and "refused" in last.detail
    await asyncio.sleep(1.0)
    assert srv.stats["logins_refused"] == 1
