"""Wall-clock latency of the operator's commands, each a fresh ``tradebot`` process as over SSH.

The goal (issue 12) is under 0.5 s for ``status``, ``halt``, ``resume``, ``flatten``, ``ping``, ``--help`` and
``--version``. The commands run from an unrelated working directory against a scratch installation (a state
database made by the real store, ``TRADEBOT_DATA_DIR`` pointing at it) and, for the control commands, a real
:class:`tradebot.ops.control.ControlServer` on the installation's socket that acknowledges every command, so
the figure includes the socket round trip. Prints one JSON line per command: median of ``--runs`` runs, with
min and max, whether the median meets the goal, and the median CPU time (user + system: what the command costs on
an idle machine, which load does not inflate). First come the floor figures on this machine at this moment (a bare
interpreter, and one that only loads the settings model) so a figure taken under load can be read against them.

    .venv/bin/python benchmarks/cli_latency.py [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tradebot.core.logging import configure_logging
from tradebot.ops.control import SOCKET_NAME, ControlServer
from tradebot.state.store import StateStore, default_db_path

GOAL_SECONDS = 0.5
COMMANDS: list[list[str]] = [["--version"], ["--help"], ["status"], ["ping"], ["halt", "--reason", "bench"],
                             ["resume"], ["flatten"]]


def _children_cpu() -> float:
    """CPU seconds (user + system) of finished child processes: the command's own cost, which load does not
    inflate the way it inflates wall time on a shared 2-core machine."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _heartbeat(data: Path) -> None:
    (data / "heartbeat.json").write_text(json.dumps({"ts_ns": time.time_ns(), "pid": os.getpid(),
                                                     "feed_state": "live"}))


def _serve(sock: Path, ready: threading.Event, stop: threading.Event) -> None:
    async def handler(cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "cmd": cmd}

    async def main() -> None:
        server = ControlServer(sock, handler)
        await server.start()
        ready.set()
        await asyncio.to_thread(stop.wait)
        await server.stop()

    asyncio.run(main())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    opts = ap.parse_args()
    configure_logging("WARNING", "console")
    exe = Path(sys.executable).parent / "tradebot"
    with tempfile.TemporaryDirectory(prefix="tb-cli-bench-") as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        StateStore.open(default_db_path(data, "paper")).close()
        ready, stop = threading.Event(), threading.Event()
        server = threading.Thread(target=_serve, args=(data / SOCKET_NAME, ready, stop), daemon=True)
        server.start()
        ready.wait(10)
        cwd = root / "elsewhere"
        cwd.mkdir()
        env = {**os.environ, "TRADEBOT_DATA_DIR": str(data), "TRADEBOT_LOG_FORMAT": "console"}
        failed = 0
        # The floor on this machine right now: a bare interpreter, and one that only loads the settings model
        # (pydantic), which every command but --help/--version needs. Under load both rise with everything else.
        settings_only = "from tradebot.core.config import load_settings; load_settings()"
        for label, code in (("python -c pass", "pass"), ("python: load settings", settings_only)):
            times, cpu = [], []
            for _ in range(opts.runs):
                c0 = _children_cpu()
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True)
                times.append(time.perf_counter() - t0)
                cpu.append(_children_cpu() - c0)
            print(json.dumps({"figure": "cli_latency_floor", "command": label,
                              "median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
                              "max_s": round(max(times), 3), "cpu_s": round(statistics.median(cpu), 3),
                              "runs": len(times)}), flush=True)
        for cmd in COMMANDS:
            times, cpu = [], []
            for _ in range(opts.runs):
                _heartbeat(data)  # a healthy daemon, so status exits 0
                c0 = _children_cpu()
                t0 = time.perf_counter()
                r = subprocess.run([str(exe), *cmd], cwd=cwd, env=env, capture_output=True, text=True)
                times.append(time.perf_counter() - t0)
                cpu.append(_children_cpu() - c0)
                if r.returncode != 0:
                    failed += 1
                    print(json.dumps({"command": " ".join(cmd), "exit_code": r.returncode,
                                      "stderr": r.stderr[-300:]}), file=sys.stderr)
                    break
            med = statistics.median(times)
            print(json.dumps({"figure": "cli_latency", "command": "tradebot " + " ".join(cmd),
                              "median_s": round(med, 3), "min_s": round(min(times), 3),
                              "max_s": round(max(times), 3), "cpu_s": round(statistics.median(cpu), 3),
                              "runs": len(times),
                              "goal_s": GOAL_SECONDS, "meets_goal": med < GOAL_SECONDS}), flush=True)
        stop.set()
        server.join(5)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
