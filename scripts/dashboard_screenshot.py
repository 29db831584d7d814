#!/usr/bin/env python3
"""Regenerate the README's dashboard screenshots (docs/dashboard.png, docs/dashboard-phone.png).

Runs the daemon on the simulated feed, `tradebot web` and headless chromium (the same stack as the browser tests),
waits until a bracket is open so entry, stop and target are on the chart, and saves a desktop and a phone-width
picture. Usage: ``.venv/bin/python scripts/dashboard_screenshot.py [--out docs]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

TOKEN = "screenshot-token-0123456789abcdef"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs", help="folder for the PNG files")
    ap.add_argument("--speed", type=float, default=400.0, help="simulation speed")
    ap.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tradebot-shot-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env.update({"TRADEBOT_DATA_DIR": str(tmp / "data"), "TRADEBOT_WEB__TOKEN": TOKEN, "TRADEBOT_LOG_FORMAT": "json",
                "TRADEBOT_SIM__TRADES_PER_SESSION": "40000"})
    daemon = subprocess.Popen([sys.executable, "-m", "tradebot", "run", "--speed", str(args.speed), "--timeframe",
                               "60", "--stay"], cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    web = subprocess.Popen([sys.executable, "-m", "tradebot", "web", "--port", "0"], cwd=tmp, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    driver = None
    try:
        assert web.stderr is not None
        url = ""
        for line in web.stderr:
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                url = m.group(1)
                break
        if not url:
            print("tradebot web did not start", file=sys.stderr)
            return 1
        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium") or "chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,1100",
                  "--hide-scrollbars"):
            opts.add_argument(a)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=opts)
        driver.get(url + "/dashboard")
        driver.find_element(By.ID, "login-token").send_keys(TOKEN)
        driver.find_element(By.ID, "login-submit").click()
        end = time.monotonic() + args.timeout
        while time.monotonic() < end:
            state = driver.execute_script(
                "const p = window.tradebot.state.position; return p && p.open.some((b) => b.open_qty > 0) "
                "&& p.trades.length > 0")
            if state:
                break
            time.sleep(0.1)
        else:
            print("no open bracket after a closed trade within the timeout", file=sys.stderr)
            return 1
        daemon.send_signal(signal.SIGSTOP)  # freeze the picture while both shots are taken
        time.sleep(0.6)
        driver.save_screenshot(str(out / "dashboard.png"))
        driver.set_window_size(400, 2400)
        time.sleep(0.6)
        driver.save_screenshot(str(out / "dashboard-phone.png"))
        daemon.send_signal(signal.SIGCONT)
        print(f"wrote {out / 'dashboard.png'} and {out / 'dashboard-phone.png'}")
        return 0
    finally:
        if driver is not None:
            driver.quit()
        for p in (web, daemon):
            p.send_signal(signal.SIGCONT) if p is daemon else None
            p.terminate()
            p.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
