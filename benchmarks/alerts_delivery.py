"""Alerts sent versus events: the daemon on the simulated market, posting to a local Discord stand-in.

Runs ``tradebot run --speed 0 --sessions N`` as a subprocess with ``DISCORD_WEBHOOK_URL`` pointing at
``tests/support/discord_server.py`` and, at the end, compares the events the daemon recorded (outbox rows, one per
event, plus collapse summaries) with the messages the stand-in accepted, in order. ``--slow-first`` answers the
first post after the client's timeout (``--timeout``), so one alert is retried and counted as a possible duplicate.
Prints one JSON document.

    .venv/bin/python benchmarks/alerts_delivery.py [--sessions 3] [--trades 60000] [--slow-first]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.discord_server import Answer, DiscordStandIn

TITLES = ("SELECT kind, json_extract(payload, '$.title') || CASE WHEN json_extract(payload, '$.repeats') > 0 "
          "THEN ' (x' || json_extract(payload, '$.repeats') || ')' ELSE '' END, ambiguous FROM outbox ORDER BY id")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--trades", type=int, default=60_000, help="trades per simulated session")
    ap.add_argument("--slow-first", action="store_true", help="answer the first post after the client timeout")
    ap.add_argument("--timeout", type=float, default=2.0, help="notifier client timeout with --slow-first")
    a = ap.parse_args()
    server = DiscordStandIn(script=[Answer(204, delay=a.timeout + 1)] if a.slow_first else [])
    await server.start()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
        env.update({"TRADEBOT_DATA_DIR": str(Path(tmp) / "data"), "DISCORD_WEBHOOK_URL": server.url,
                    "TRADEBOT_SIM__TRADES_PER_SESSION": str(a.trades), "TRADEBOT_LOG_FORMAT": "json"})
        args = [sys.executable]
        if a.slow_first:  # the notifier's client timeout, shortened so the slow answer is ambiguous
            args += ["-c", "import sys, tradebot.ops.notifier as n; d = n.Notifier.__init__.__kwdefaults__; "
                           f"d['timeout_seconds'] = {a.timeout}; from tradebot.cli import main; "
                           "sys.exit(main(sys.argv[1:]))"]
        else:
            args += ["-m", "tradebot"]
        proc = await asyncio.create_subprocess_exec(*args, "run", "--speed", "0", "--sessions", str(a.sessions),
                                                    cwd=tmp, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
        rc = await proc.wait()
        conn = sqlite3.connect(Path(tmp) / "data" / "tradebot-paper.db")
        rows = conn.execute(TITLES).fetchall()
        journal = conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
        conn.close()
    await server.stop()
    sent = server.titles()
    recorded = [t for _, t, _ in rows]
    # With --slow-first the first alert was posted twice (the timed-out post was accepted too).
    dedup = sent[1:] if a.slow_first and len(sent) > 1 and sent[0] == sent[1] else sent
    print(json.dumps({
        "exit_code": rc, "sessions": a.sessions, "journal_records": journal,
        "events_recorded": len(rows), "events_by_kind": dict(Counter(k for k, _, _ in rows)),
        "posts_accepted": len(sent), "possible_duplicates_counted": sum(1 for *_, amb in rows if amb),
        "missing": len([t for t in recorded if t not in sent]),
        "in_order": dedup == recorded,
        "trade_opened": {"events": sum(k == "trade_opened" for k, _, _ in rows),
                         "posted": sum(t.startswith("Trade opened") for t in sent)},
    }, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
