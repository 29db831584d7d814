"""ProjectX adapter and market feed against the local Gateway stand-in: order round trips and hub throughput.

* **Round trip**: N market brackets through :class:`ProjectXBroker` (``/api/Order/place`` over HTTP, the fill pushed
  back over the user hub); prints submit -> Ack and (after a market event) event -> Fill latencies, and the time
  until the stop and target are working at the stand-in (our own OCO: placed when the entry fills).
* **Market hub**: the real ES minute (2,025 trades + their books) served as fast as the stand-in can, read by
  ``--feed projectx`` (SignalR framing, JSON, the DOM book, the common validation layer); prints records per
  second and the validator's rejects.

Both ends run on one loop on this machine, so the figures are the adapter's own overhead plus localhost, not a
broker's. Prints one JSON document.

    .venv/bin/python benchmarks/projectx.py [--orders 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.projectx_server import ProjectXStandIn, load_events
from tradebot.core.config import Settings
from tradebot.core.types import BookUpdate, RawBook, RawTrade, Side, SideRule, Trade
from tradebot.execution.brokers.projectx import ProjectXBroker
from tradebot.execution.model import Ack, BracketRequest, Fill, OrderType
from tradebot.feeds.projectx_market import ProjectXMarketFeed
from tradebot.feeds.projectx_rest import ProjectXClient
from tradebot.feeds.validation import Validator

DAY = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / "ES_2022-01-24_sierra.mbp-10.dbn.zst"
T0 = 1_764_772_200_000_000_000
PX = 27_000


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 2)


async def wait(cond: Any, within: float = 10.0) -> None:
    end = time.monotonic() + within
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError
        await asyncio.sleep(0.0005)


async def round_trips(n: int) -> dict[str, Any]:
    server = ProjectXStandIn()
    await server.start()
    client = ProjectXClient(server.url, server.username, server.api_key)
    broker = ProjectXBroker(client, user_hub_url=server.user_hub_url, symbols=["ES"])
    events: list[Any] = []
    broker.set_wakeup(lambda: events.extend(broker.poll_events()))
    await broker.connect()
    ack_ms, fill_ms, oco_ms = [], [], []
    ts = T0
    try:
        for i in range(n):
            ts += 1_000_000_000
            await server.market(BookUpdate("ES", ts, ts, (PX,), (10,), (PX + 1,), (10,)))
            sid = f"b{i}"
            t = time.perf_counter()
            broker.submit_bracket(BracketRequest(sid, "ES", Side.BUY, 1, OrderType.MARKET, None, PX - 8, PX + 8, ts))
            await wait(lambda sid=sid: any(isinstance(e, Ack) and e.client_order_id == f"{sid}-E" for e in events))
            ack_ms.append((time.perf_counter() - t) * 1e3)
            ts += 1_000_000
            t = time.perf_counter()
            await server.market(BookUpdate("ES", ts, ts, (PX,), (10,), (PX + 1,), (10,)))
            await wait(lambda sid=sid: any(isinstance(e, Fill) and e.client_order_id == f"{sid}-E" for e in events))
            fill_ms.append((time.perf_counter() - t) * 1e3)
            await wait(lambda sid=sid: {o["customTag"] for o in server.open_orders()} >= {f"{sid}-S", f"{sid}-T"})
            oco_ms.append((time.perf_counter() - t) * 1e3)
            ts += 1_000_000
            await server.market(Trade("ES", ts, ts, PX + 9, 1, Side.BUY, SideRule.EXCHANGE))  # target
            await wait(lambda: not server.open_orders())
    finally:
        await broker.close()
        await server.stop()
    return {"orders": n, "submit_to_ack_ms": {"median": pct(ack_ms, 0.5), "p99": pct(ack_ms, 0.99)},
            "market_event_to_fill_ms": {"median": pct(fill_ms, 0.5), "p99": pct(fill_ms, 0.99)},
            "fill_to_stop_and_target_working_ms": {"median": pct(oco_ms, 0.5), "p99": pct(oco_ms, 0.99)},
            "rest_requests": int(client.stats["requests"])}


async def hub_throughput() -> dict[str, Any]:
    events = await load_events(DAY, "ES")
    server = ProjectXStandIn()
    await server.start()
    settings = Settings(_env_file=None, projectx_api_url=server.url, projectx_market_hub_url=server.market_hub_url,
                        projectx_username=server.username, projectx_api_key=server.api_key)
    feed = ProjectXMarketFeed(settings, ["ES"])
    validator = Validator(settings.validation, ["ES"], wall_clock_future=False)
    server.replay(events, speed=0)
    got = 0
    t0: float | None = None
    try:
        async for ev in feed:
            if isinstance(ev, RawTrade | RawBook):
                if t0 is None:
                    t0 = time.perf_counter()
                if validator.validate(ev) is not None:
                    got += 1
                if got >= len(events):
                    break
    finally:
        await feed.close()
        await server.stop()
    secs = time.perf_counter() - (t0 or time.perf_counter())
    return {"records": len(events), "accepted": got, "rejects": validator.total_rejects, "seconds": round(secs, 3),
            "records_per_second": round(got / secs) if secs else None}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=50)
    args = ap.parse_args()
    out = {"round_trip": await round_trips(args.orders), "market_hub": await hub_throughput()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
