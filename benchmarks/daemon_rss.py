"""Memory of the real daemon over long simulated sessions at full speed: is resident memory flat?

Runs ``tradebot run --feed demo --speed 0`` (the embedded simulated market, paper execution, the real state
database, notifier in its offline mode) in a scratch directory over ``--sessions`` simulated 24-hour Globex
sessions, and samples the daemon's own heartbeat (``data/heartbeat.json``: ``rss_mb`` and the market time of the
last event) while it runs. RSS is then read against *simulated* time: a leak grows with market hours, whatever
the replay speed.

Prints one JSON line per sample and per session (``--samples``) and a summary line: RSS at the start / end / max,
the least-squares slope in MB per simulated hour over everything, inside each trading session (after its first
``--warmup-hours``: a leak in the per-event path shows there), and the growth from one session's end to the next
(the simulator builds each day's columns up front, a few hundred MB for a 750k-trade MBP-10 day, so the process's
peak is at each session roll). ``flat``: the RSS at the end of each session, from the second on, stays within
``--flat-mb``. ``--env`` passes extra environment to the daemon, e.g. glibc's ``MALLOC_MMAP_THRESHOLD_``: by default
glibc raises its mmap threshold after large frees, so the simulator's next day of columns comes from the heap and
stays resident after it is freed (RSS steps up at session rolls although the Python heap does not grow).

    .venv/bin/python benchmarks/daemon_rss.py [--sessions 5] [--trades 750000] [--env MALLOC_MMAP_THRESHOLD_=131072]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

NS_PER_HOUR = 3600 * 10**9
CT = ZoneInfo("America/Chicago")
SEED_VARS = ("TRADING_MODE", "TRADING_SYMBOL", "DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY", "POLYGON_API_KEY")


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x (None with fewer than 3 points or no spread in x)."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return None  # not written yet, or replaced mid-read


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=5, help="simulated 24-hour sessions")
    ap.add_argument("--trades", type=int, default=750_000, help="trades per simulated session")
    ap.add_argument("--symbol", default="ES")
    ap.add_argument("--heartbeat", type=float, default=0.5, help="daemon heartbeat period, seconds")
    ap.add_argument("--warmup-hours", type=float, default=2.0, help="simulated hours left out of the steady state")
    ap.add_argument("--flat-mb", type=float, default=32.0,
                    help="largest spread of the session-end RSS (second session on) still counted as flat")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the daemon, e.g. glibc's MALLOC_MMAP_THRESHOLD_=131072 (repeatable)")
    ap.add_argument("--samples", action="store_true", help="print every sample")
    ap.add_argument("--timeout", type=float, default=3600.0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="tradebot-rss-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
        env.update({
            "TRADEBOT_SIM__TRADES_PER_SESSION": str(args.trades),
            "TRADEBOT_DAEMON__HEARTBEAT_SECONDS": str(args.heartbeat),
            "TRADEBOT_LOG_LEVEL": "WARNING",
        })
        extra = dict(kv.split("=", 1) for kv in args.env)
        env.update(extra)
        cmd = [sys.executable, "-m", "tradebot", "run", "--feed", "demo", "--speed", "0", "--symbol", args.symbol,
               "--sessions", str(args.sessions)]
        hb_path = Path(tmp) / "data" / "heartbeat.json"
        samples: list[dict[str, Any]] = []
        t0 = time.monotonic()
        with open(Path(tmp) / "daemon.log", "w") as log:
            proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                last_ts = None
                while proc.poll() is None:
                    if time.monotonic() - t0 > args.timeout:
                        proc.terminate()
                        break
                    hb = _read(hb_path)
                    if hb is not None and hb.get("ts_ns") != last_ts:
                        last_ts = hb.get("ts_ns")
                        market = (hb.get("market") or {}).get(args.symbol) or {}
                        if market.get("last_event_ns") and hb.get("rss_mb") is not None:
                            samples.append({"wall_s": round(time.monotonic() - t0, 2),
                                            "market_ns": int(market["last_event_ns"]),
                                            "rss_mb": float(hb["rss_mb"]), "events": hb.get("events")})
                            if args.samples:
                                print(json.dumps({"figure": "daemon_rss_sample", **samples[-1]}), flush=True)
                    time.sleep(args.heartbeat / 2)
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(30)
        wall = time.monotonic() - t0
        final = _read(hb_path) or {}
        text = (Path(tmp) / "daemon.log").read_text()
        tail = text[-1500:]
        errors = [ln for ln in text.splitlines() if ln.rstrip().endswith("Error") or "Error:" in ln][-3:]

    if len(samples) < 3:
        print(json.dumps({"figure": "daemon_rss", "error": "too few heartbeat samples", "samples": len(samples),
                          "exit_code": proc.returncode, "log_tail": tail}))
        return 1
    # Per trading session (17:00 CT to 16:00 CT): memory inside a session is what a leak in the per-event path
    # would show; a step at a roll is the simulator building the next day's columns (and the allocator keeping it).
    sessions: dict[str, list[tuple[float, float]]] = {}
    for smp in samples:
        ct = dt.datetime.fromtimestamp(smp["market_ns"] / 1e9, CT)
        day = (ct + dt.timedelta(hours=7)).date().isoformat()
        sessions.setdefault(day, []).append((smp["market_ns"] / NS_PER_HOUR, smp["rss_mb"]))
    per_session: list[dict[str, Any]] = []
    in_session: list[float] = []
    ends: list[float] = []
    for day, pts in sessions.items():
        h0 = pts[0][0]
        steady = [(h - h0, r) for h, r in pts if h - h0 >= args.warmup_hours]
        slope = _slope(steady)
        if slope is not None:
            in_session.append(round(slope, 4))
        ends.append(pts[-1][1])
        per_session.append({"trading_date": day, "samples": len(pts), "hours": round(pts[-1][0] - h0, 2),
                            "rss_first_mb": pts[0][1], "rss_last_mb": pts[-1][1], "rss_max_mb": max(r for _, r in pts),
                            "steady_slope_mb_per_h": round(slope, 4) if slope is not None else None})
        if args.samples:
            print(json.dumps({"figure": "daemon_rss_session", **per_session[-1]}), flush=True)
    start_h = samples[0]["market_ns"] / NS_PER_HOUR
    pts_all = [(smp["market_ns"] / NS_PER_HOUR - start_h, smp["rss_mb"]) for smp in samples]
    slope_all = _slope(pts_all)
    growth = [round(b - a, 1) for a, b in pairwise(ends)]
    later = ends[1:] or ends
    spread = max(later) - min(later)
    print(json.dumps({
        "figure": "daemon_rss", "sessions": args.sessions, "trades_per_session": args.trades,
        "simulated_hours": round(pts_all[-1][0], 2), "wall_s": round(wall, 1), "samples": len(samples),
        "events": final.get("events"), "exit_code": proc.returncode, "daemon_errors": errors,
        "rss_start_mb": pts_all[0][1], "rss_end_mb": pts_all[-1][1], "rss_max_mb": max(r for _, r in pts_all),
        "slope_mb_per_sim_hour_all": round(slope_all, 4) if slope_all is not None else None,
        "slope_mb_per_sim_hour_in_session": in_session, "session_end_growth_mb": growth,
        "env": extra,
        "session_end_spread_mb": round(spread, 1), "flat": spread < args.flat_mb,
        "flat_rule": f"session-end RSS from the second session on stays within {args.flat_mb} MB",
    }), flush=True)
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
