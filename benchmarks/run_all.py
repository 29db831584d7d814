"""``make bench``: every benchmark script in turn; each prints one JSON line per figure (median of >= 5 runs with
min and max) and the fast path's parity verdict. Scripts that are missing are skipped with a note; a failing
script is reported and the others still run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["cli_latency.py", "feeds.py", "engine.py", "live.py", "replay_fast.py", "days108.py", "daemon_rss.py",
           "bars32.py", "web.py", "rithmic_roundtrip.py", "journal.py"]


def main() -> int:
    failed = 0
    for name in SCRIPTS:
        path = HERE / name
        if not path.exists():
            print(json.dumps({"script": name, "skipped": "not present"}), flush=True)
            continue
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, str(path)], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            if line.startswith("{"):
                print(line, flush=True)
        status = {"script": name, "exit_code": r.returncode, "seconds": round(time.monotonic() - t0, 1)}
        if r.returncode:
            failed += 1
            status["stderr_tail"] = r.stderr[-500:]
        print(json.dumps(status), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
