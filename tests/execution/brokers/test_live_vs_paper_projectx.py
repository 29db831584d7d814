"""Done means: on a replayed day, the daemon in live mode against the ProjectX stand-in makes the same trades as
in paper mode on the same data.

Both runs are the real daemon process on ``--feed projectx``: the stand-in serves the same recorded day (a
synthetic ES session, every timestamp cut to the Gateway's 100 ns) on its market hub, and the daemon's wall clock
is shifted to that day (support/shifted_clock.py) so the data is live to it. The paper run fills with the paper
broker inside the daemon; the live run sends real orders over REST and the stand-in fills them with the same
paper rules from the same events.

The race between the market stream and order arrival is removed by pacing, not by luck: the paper run is made
first and tells where the daemon decides (each taken signal's decision event, each flatten); in the live run the
stand-in stops serving after such an event until the order it must produce has arrived, and after a fill until
the adapter's follow-up (the bracket's stop and target after an entry fill, the sibling's cancel after an exit
fill) has arrived. Orders are therefore armed at the same event as in paper mode, whatever the machine's load.

"Same" means: the same taken signals (id, side, quantity, stop, target) and the same fills, compared as (signal
id, role, side, quantity, price in ticks, time), plus the same closed brackets with their exit reasons and P&L
before commission. Commissions are not compared (the stand-in charges the Gateway's fees, the paper broker the
configured table).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from support.live_harness import StandInThread, wait_for
from support.live_vs_paper import DaemonRun, assert_same_trades, day_events, decision_points, synth_day
from tradebot.core.types import BookUpdate, Trade
from tradebot.feeds.projectx_rest import PxOrderStatus


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> list[BookUpdate | Trade]:
    return day_events(synth_day(tmp_path_factory.mktemp("synth")), 100)  # the Gateway's 100 ns


def run(tmp: Path, mode: str, px: StandInThread) -> DaemonRun:
    return DaemonRun(tmp, mode, "projectx", px.credentials_env())


def subscribed(px: StandInThread) -> bool:
    return px.do(lambda: any(c.hub == "market" and c.subs for c in px.server.clients))


def serve_day(px: StandInThread, run: DaemonRun, events: list[BookUpdate | Trade],
              waits: dict[int, list[str]] | None = None) -> None:
    """Serve every event; with ``waits``, pause after an event until the orders it must produce have arrived."""
    wait_for(lambda: subscribed(px) or run.alive(), timeout=60, what="the daemon subscribing to the market hub")
    server = px.server

    def tags() -> set[str]:
        return {str(o.get("customTag") or "") for o in server.orders.values()}

    def status_of(tag: str) -> int | None:
        return next((int(o["status"]) for o in server.orders.values() if o.get("customTag") == tag), None)

    def done(expected: str) -> bool:
        if expected.startswith("!"):  # that order is no longer working (or was never placed)
            st = status_of(expected[1:])
            return st is None or st not in (int(PxOrderStatus.OPEN), int(PxOrderStatus.PENDING))
        return expected in tags()

    async def serve_all() -> None:
        import asyncio

        for ev in events:
            trades_before = len(server.trades)
            await server.market(ev)
            expect = list((waits or {}).get(ev.ts_event, ()))
            if waits is not None:
                for t in server.trades[trades_before:]:
                    tag = str(next((o.get("customTag") for o in server.orders.values() if o["id"] == t["orderId"]),
                                   "") or "")
                    sid, _, role = tag.rpartition("-")
                    if role == "E":
                        expect += [f"{sid}-S", f"{sid}-T"]
                    elif role in ("S", "T"):
                        expect.append(f"!{sid}-{'T' if role == 'S' else 'S'}")  # the sibling cancelled
            end = time.monotonic() + 30
            while expect:
                expect = [e for e in expect if not done(e)]
                if not expect:
                    break
                if time.monotonic() > end:
                    raise AssertionError(f"after the event at {ev.ts_event} the stand-in never got {expect}")
                await asyncio.sleep(0.01)
            await asyncio.sleep(0)

    px.call(serve_all(), timeout=600)
    last = events[-1].ts_event
    wait_for(lambda: run.last_event() >= last or run.alive(), timeout=120, what="the daemon reading the last event")



def test_live_against_the_standin_makes_the_same_trades_as_paper(tmp_path: Path,
                                                                 events: list[BookUpdate | Trade]) -> None:
    px_paper = StandInThread()
    try:
        paper = run(tmp_path / "paper", "paper", px_paper)
        serve_day(px_paper, paper, events)
        paper.stop()
    finally:
        px_paper.stop()
    waits = decision_points(paper)

    px_live = StandInThread()
    try:
        px_live.do(lambda: setattr(px_live.server, "now_ns", events[0].ts_event))
        live = run(tmp_path / "live", "live", px_live)
        serve_day(px_live, live, events, waits)
        live.stop()
        broker_fills = px_live.do(lambda: len(px_live.server.trades))
    finally:
        px_live.stop()
    assert_same_trades(live, paper, broker_fills)
