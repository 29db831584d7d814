"""The daemon's live stream never waits on a reader: full queues drop (counted) and resynchronise; the web side
folds the messages into one picture and resynchronises a slow browser the same way."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from tradebot.ops.stream import MAX_LINE, StreamHub, subscribe
from tradebot.web.live import LiveState


async def _read(reader: asyncio.StreamReader) -> dict[str, Any]:
    msg: dict[str, Any] = json.loads(await asyncio.wait_for(reader.readline(), 5))
    return msg


async def test_publish_never_waits_and_a_slow_reader_is_resynchronised(tmp_path: Path) -> None:
    state = {"n": -1}
    hub = StreamHub(tmp_path / "stream.sock", lambda: {"n": state["n"]}, queue_size=20, max_buffer=64 * 1024)
    await hub.start()
    try:
        assert (tmp_path / "stream.sock").stat().st_mode & 0o777 == 0o600
        hub.publish("early", {})  # nobody listens: nothing is built or counted
        assert hub.stats["published"] == 0
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "stream.sock"), limit=MAX_LINE)
        hello = await _read(reader)
        assert hello["type"] == "hello" and hello["n"] == -1
        pad = "p" * 1000
        t0 = time.perf_counter()
        for i in range(5000):  # synchronous: the reader cannot drain anything meanwhile (~5 MB offered)
            state["n"] = i
            hub.publish("tick", {"i": i, "pad": pad})
        assert time.perf_counter() - t0 < 2.0
        assert hub.stats["published"] == 5000 and hub.stats["dropped"] > 0
        ticks = []
        while (msg := await _read(reader))["type"] == "tick":
            ticks.append(msg["i"])
        assert ticks == list(range(len(ticks))) and 0 < len(ticks) < 5000  # in order, no silent gap
        assert msg["type"] == "dropped" and msg["count"] == 5000 - len(ticks)  # every loss counted
        fresh = await _read(reader)
        assert fresh["type"] == "hello" and fresh["n"] == 4999  # then the picture as it is now
        assert hub.stats["dropped"] == 5000 - len(ticks) and hub.stats["resyncs"] == 1
        hub.publish("tick", {"i": 5000})
        nxt = await _read(reader)
        assert nxt == {"type": "tick", "seq": fresh["seq"] + 1, "i": 5000}
        writer.close()
    finally:
        await hub.stop()
    assert not (tmp_path / "stream.sock").exists()


async def test_a_reader_that_stops_reading_is_disconnected_and_counted(tmp_path: Path) -> None:
    hub = StreamHub(tmp_path / "stream.sock", lambda: {}, queue_size=10_000, write_timeout=0.3, max_buffer=65536)
    await hub.start()
    try:
        _reader, writer = await asyncio.open_unix_connection(str(tmp_path / "stream.sock"))
        for _ in range(200):
            await asyncio.sleep(0.02)
            if hub.subscribers:
                break
        blob = "x" * 65536
        for _ in range(400):  # ~26 MB against a reader that never reads: the socket buffer fills
            hub.publish("big", {"blob": blob})
            await asyncio.sleep(0)
            if hub.stats["disconnected_slow"]:
                break
        for _ in range(100):
            if hub.stats["disconnected_slow"]:
                break
            await asyncio.sleep(0.05)
        assert hub.stats["disconnected_slow"] == 1 and hub.subscribers == 0
        writer.close()
    finally:
        await hub.stop()


async def test_subscribe_reports_a_missing_daemon(tmp_path: Path) -> None:
    try:
        async for _ in subscribe(tmp_path / "nothing.sock"):
            pass
    except ConnectionError as exc:
        assert "no daemon stream" in str(exc)
    else:
        raise AssertionError("expected ConnectionError")


def _bar(sym: str, start: int) -> dict[str, Any]:
    return {"type": "bar", "seq": 0, "symbol": sym, "start_ns": start, "end_ns": start + 60, "levels": []}


async def test_web_side_folds_messages_into_one_picture_and_resyncs_slow_browsers(tmp_path: Path) -> None:
    live = LiveState(tmp_path / "none.sock", bars=3, client_queue=10)
    browser = live.add_client()
    live.apply({"type": "bar", "symbol": "ES", "start_ns": 1})  # before any hello: ignored, nothing to fold into
    assert live.state == {}
    live.apply({"type": "hello", "seq": 1, "meta": {"symbols": ["ES"]}, "bars": {"ES": []}, "developing": {},
                "decisions": [], "alerts": [], "executions": []})
    assert (await live.next_for(browser))["type"] == "hello"
    live.apply({"type": "developing", "seq": 2, "symbol": "ES", "start_ns": 100})
    for i in range(5):
        live.apply(_bar("ES", 100 * i))
    live.apply({"type": "position", "seq": 9, "trading_state": "halted"})
    for i in range(150):
        live.apply({"type": "decision", "seq": 10 + i, "signal_id": str(i)})
    pic = live.hello()
    assert [b["start_ns"] for b in pic["bars"]["ES"]] == [200, 300, 400]  # the last N only
    assert pic["developing"] == {}  # its bar closed
    assert pic["position"]["trading_state"] == "halted"
    assert len(pic["decisions"]) == 100 and pic["decisions"][-1]["signal_id"] == "149"
    # the browser never read: it overflowed, so it gets the current picture instead of a stale backlog
    assert browser.dropped > 0 and live.stats["dropped"] > 0
    again = await live.next_for(browser)
    assert again["type"] == "hello" and again["position"]["trading_state"] == "halted"
    assert browser.queue.empty() and live.stats["resyncs"] == 1


async def test_a_data_dir_longer_than_af_unix_allows_still_streams(tmp_path: Path) -> None:
    deep = tmp_path / ("s" * 80) / ("t" * 80)
    deep.mkdir(parents=True)
    hub = StreamHub(deep / "stream.sock", lambda: {"n": 7})
    await hub.start()
    try:
        assert len(str(deep / "stream.sock")) > 108 and (deep / "stream.sock").stat().st_mode & 0o777 == 0o600
        async for msg in subscribe(deep / "stream.sock"):
            assert msg["type"] == "hello" and msg["n"] == 7
            break
    finally:
        await hub.stop()


async def test_the_web_side_resubscribes_when_the_daemon_restarts(tmp_path: Path) -> None:
    path = tmp_path / "stream.sock"
    live = LiveState(path)
    browser = live.add_client()
    live.start()

    async def until(cond: Any, what: str) -> None:
        for _ in range(200):
            if cond():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(what)

    try:
        for run in (1, 2):  # the daemon, then the daemon restarted (a new process: a new hub on the same path)
            hub = StreamHub(path, lambda run=run: {"meta": {"run": run}})
            await hub.start()
            await until(lambda run=run: live.connected and live.state.get("meta", {}).get("run") == run,
                        f"subscribed to run {run}")
            hub.publish("health", {"ts_ns": run})
            await until(lambda run=run: live.state.get("health", {}).get("ts_ns") == run, "a live message")
            await hub.stop()
            await until(lambda: not live.connected, "the loss noticed")
        seen = []
        while not browser.queue.empty():
            seen.append(browser.queue.get_nowait()["type"])
        assert seen == ["hello", "health", "link", "hello", "health", "link"]  # the page is told, then repainted
        assert live.stats["connects"] == 2 and live.stats["disconnects"] == 2
    finally:
        await live.stop()
