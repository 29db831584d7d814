#!/usr/bin/env python3
"""The dashboard's two performance promises, measured.

1. The live stream never slows trading: one simulated session (20,000 trades, speed 0) through the daemon with no
   stream reader, with a reader that keeps up, and with a reader that connects and never reads; the feed's wall
   time ("daemon ready" to "feed finished" in the daemon's own log) per case, median of ``--runs``, and the
   stalled reader's dropped-message count.
2. A fill reaches the page within a second: a session at 2,000x with `tradebot web` and headless chromium; for
   every fill journaled while the page is open, the time from the daemon's journal commit to the page rendering it.

Prints one JSON line per figure. ``.venv/bin/python benchmarks/web.py [--runs 5]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

TOKEN = "bench-token-0123456789abcdef"


def _env(data: Path, trades: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env.update({"TRADEBOT_DATA_DIR": str(data), "TRADEBOT_LOG_FORMAT": "json", "TRADEBOT_WEB__TOKEN": TOKEN,
                "TRADEBOT_SIM__TRADES_PER_SESSION": str(trades)})
    return env


def _ts(line: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


def feed_seconds(reader: str) -> tuple[float, dict[str, Any]]:
    """One session at speed 0; ``reader``: none, fast or stalled."""
    tmp = Path(tempfile.mkdtemp(prefix="tradebot-bench-web-"))
    data = tmp / "data"
    proc = subprocess.Popen([sys.executable, "-m", "tradebot", "run", "--speed", "0", "--timeframe", "60"], cwd=tmp,
                            env=_env(data, 20000), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    got = {"bytes": 0}
    sock_path = data / "stream.sock"
    holder: list[socket.socket] = []

    def read() -> None:
        end = time.monotonic() + 60
        while not sock_path.exists() and time.monotonic() < end:
            time.sleep(0.001)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(sock_path))
        except OSError:
            return
        holder.append(s)
        if reader == "stalled":
            return
        while chunk := s.recv(1 << 20):
            got["bytes"] += len(chunk)

    t = threading.Thread(target=read, daemon=True) if reader != "none" else None
    if t is not None:
        t.start()
    ready = finished = 0.0
    stream: dict[str, Any] = {}
    assert proc.stdout is not None
    for raw in proc.stdout:
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line.get("event") == "daemon ready":
            ready = _ts(line)
        elif line.get("event") == "feed finished":
            finished = _ts(line)
    proc.wait()
    hb = json.loads((data / "heartbeat.json").read_text())
    stream = hb.get("stream", {})
    for s in holder:
        s.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return finished - ready, {**stream, "bytes_read": got["bytes"]}


def fill_to_page() -> list[float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    tmp = Path(tempfile.mkdtemp(prefix="tradebot-bench-web-"))
    env = _env(tmp / "data", 8000)
    daemon = subprocess.Popen([sys.executable, "-m", "tradebot", "run", "--speed", "2000", "--timeframe", "60"],
                              cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    web = subprocess.Popen([sys.executable, "-m", "tradebot", "web", "--port", "0"], cwd=tmp, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    driver = None
    try:
        assert web.stderr is not None
        url = next(m.group(1) for ln in web.stderr if (m := re.search(r"listening on (http://\S+)", ln)))
        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium") or "chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
            opts.add_argument(a)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=opts)
        driver.get(url + "/dashboard")
        driver.find_element(By.ID, "login-token").send_keys(TOKEN)
        driver.find_element(By.ID, "login-submit").click()
        opened = time.time() * 1000
        daemon.wait(600)
        time.sleep(1.0)
        items = driver.execute_script("""return [...document.querySelectorAll('#exec-feed li[data-fill-id]')].map(
            (li) => [Number(li.dataset.shownMs), Number(li.dataset.wallNs) / 1e6])""")
        return [shown - wall for shown, wall in items if wall > opened]
    finally:
        if driver is not None:
            driver.quit()
        web.terminate()
        web.wait(30)
        if daemon.poll() is None:
            daemon.terminate()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    for reader in ("none", "fast", "stalled"):
        runs = [feed_seconds(reader) for _ in range(args.runs)]
        secs = sorted(r[0] for r in runs)
        print(json.dumps({"figure": "session_feed_seconds", "stream_reader": reader, "median": round(
            statistics.median(secs), 3), "min": round(secs[0], 3), "max": round(secs[-1], 3), "runs": len(secs),
            "stream": runs[-1][1], "load_avg_1m": round(os.getloadavg()[0], 2)}), flush=True)
    delays = sorted(fill_to_page())
    print(json.dumps({"figure": "fill_to_page_ms", "fills": len(delays),
                      "median": round(statistics.median(delays), 1) if delays else None,
                      "max": round(delays[-1], 1) if delays else None, "goal_ms": 1000,
                      "load_avg_1m": round(os.getloadavg()[0], 2)}), flush=True)
    return 0 if delays and delays[-1] < 1000 else 1


if __name__ == "__main__":
    raise SystemExit(main())
