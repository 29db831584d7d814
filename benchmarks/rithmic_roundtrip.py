"""Rithmic adapter latency against the local R|Protocol stand-in (TLS websocket, async-rithmic's own messages).

Measures, on this machine and loopback: the four-plant login (``connect``: system info, ticker/order/PnL logins,
login info, accounts, trade routes, subscriptions, front month, reference data, order and fill history, PnL
snapshot), and per bracket: ``submit_bracket`` -> ``Ack`` (the order answer), the market event that fills it ->
``Fill`` event, and a cancel -> ``Cancelled``. Prints one JSON document (milliseconds, median / p90 / max).
These are the adapter's and the library's overheads only: a real gateway adds the network and Rithmic's own time.

    .venv/bin/python benchmarks/rithmic_roundtrip.py [--brackets 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.rithmic_server import RithmicStandIn
from tradebot.core.logging import configure_logging
from tradebot.core.types import Side
from tradebot.execution.brokers.rithmic import RithmicBroker
from tradebot.execution.model import Ack, BracketRequest, Cancelled, Fill, OrderType
from tradebot.feeds.rithmic_session import RithmicSession, SessionConfig

DATA = Path(__file__).resolve().parents[1] / "../shared/data/real/ES_2022-01-24_sierra.mbp-10.dbn.zst"


def summary(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median_ms": round(statistics.median(xs), 2), "p90_ms": round(xs[int(0.9 * (len(xs) - 1))], 2),
            "max_ms": round(xs[-1], 2), "n": len(xs)}


async def wait_event(b: RithmicBroker, kind: type, coid: str, seen: list[object]) -> float:
    end = time.perf_counter() + 10
    while time.perf_counter() < end:
        seen += b.poll_events()
        if any(isinstance(e, kind) and getattr(e, "client_order_id", "") == coid for e in seen):
            return time.perf_counter()
        await asyncio.sleep(0.0005)
    raise TimeoutError(f"no {kind.__name__} for {coid}: {seen[-4:]} {b.stats}")


async def main(n: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        srv = RithmicStandIn(Path(tmp), [DATA])
        await srv.start()
        await srv.advance(4)
        sess = RithmicSession(SessionConfig("trader", "secret-pw", "Rithmic Test", srv.url, ca_file=srv.ca_file))
        b = RithmicBroker(sess, "ACC-1", ["ES"])
        t0 = time.perf_counter()
        await b.connect()
        connect_ms = (time.perf_counter() - t0) * 1000
        ack, fill, cancel = [], [], []
        seen: list[object] = []
        for i in range(n):
            q = srv.paper._quotes["ES"]
            for ev in srv.events[: srv.pos]:
                b.on_market_event(ev)
            # a market entry, filled on the next market event
            ask = q.ask_px[0]
            req = BracketRequest(f"m{i}", "ES", Side.BUY, 1, OrderType.MARKET, None, ask - 40, ask + 40, srv.now_ns)
            t = time.perf_counter()
            b.submit_bracket(req)
            ack.append((await wait_event(b, Ack, req.entry_id, seen) - t) * 1000)
            before = len(srv.fills)
            while len(srv.fills) == before:  # the first event strictly after the order's time fills it
                t = time.perf_counter()
                await srv.advance(1)
            fill.append((await wait_event(b, Fill, req.entry_id, seen) - t) * 1000)
            # a resting limit far away, then cancelled
            lim = BracketRequest(f"l{i}", "ES", Side.BUY, 1, OrderType.LIMIT, q.bid_px[0] - 20, q.bid_px[0] - 30,
                                 q.bid_px[0] - 5, srv.now_ns)
            b.submit_bracket(lim)
            await wait_event(b, Ack, lim.entry_id, seen)
            t = time.perf_counter()
            b.cancel(lim.entry_id)
            cancel.append((await wait_event(b, Cancelled, lim.entry_id, seen) - t) * 1000)
        await b.close()
        await srv.stop()
    return {"connect_ms": round(connect_ms, 1), "submit_to_ack": summary(ack), "market_event_to_fill": summary(fill),
            "cancel_to_cancelled": summary(cancel)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brackets", type=int, default=50)
    a = ap.parse_args()
    configure_logging("WARNING", "json", stderr=True)
    print(json.dumps(asyncio.run(main(a.brackets))))
