"""``tradebot preflight`` names the failing check; the deploy script is idempotent and complete."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support.discord_server import DiscordStandIn
from tradebot.cli import main
from tradebot.core.config import load_settings
from tradebot.ops.preflight import check_webhook

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in ("DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY", "POLYGON_API_KEY", "TRADEBOT_FEED", "TRADING_MODE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADEBOT_DATA_DIR", str(tmp_path / "data"))


def test_preflight_passes_on_the_embedded_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preflight"]) == 0
    out = capsys.readouterr().out
    assert "database: OK" in out and "webhook: WARN" in out and "preflight passed" in out


def test_preflight_names_a_missing_key(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRADEBOT_FEED", "databento")
    assert main(["preflight"]) == 1
    out = capsys.readouterr().out
    assert "keys: FAIL TRADEBOT_FEED=databento needs DATABENTO_API_KEY" in out and "FAILED: keys" in out


def test_preflight_fails_on_an_unwritable_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("TRADEBOT_DATA_DIR", str(blocker / "data"))
    assert main(["preflight"]) == 1
    assert "FAILED: database" in capsys.readouterr().out


async def test_webhook_check_against_the_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    server = DiscordStandIn()
    url = await server.start()
    try:
        monkeypatch.setenv("DISCORD_WEBHOOK_URL", url)
        # GET is not routed by the stand-in (405): a misconfigured URL must fail loudly.
        assert check_webhook(load_settings())[1] == "FAIL"
    finally:
        await server.stop()
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", "http://127.0.0.1:9/api/webhooks/1/x")
    _, status, detail = check_webhook(load_settings(), timeout=2)
    assert status == "FAIL" and "unreachable" in detail and "/x" not in detail


def _deploy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "DRY_RUN": "1", "PREFIX": "/opt/tradebot-test", **(env or {})}
    return subprocess.run(["bash", str(ROOT / "scripts" / "deploy_headless.sh"), *args], capture_output=True,
                          text=True, timeout=60, env=e)


def test_deploy_script_install_plan() -> None:
    r = _deploy()
    assert r.returncode == 0, r.stderr
    plan = r.stdout
    for step in ("mkdir -p /opt/tradebot-test /opt/tradebot-test/data", "python3 -m venv",
                 "render /opt/tradebot-test/deploy/tradebot.service -> /etc/systemd/system/tradebot.service "
                 "(PREFIX=/opt/tradebot-test, SERVICE_USER=tradebot)",
                 "tradebot-watchdog.service", "systemctl daemon-reload",
                 "systemctl enable tradebot.service tradebot-watchdog.service"):
        assert step in plan, step


@pytest.mark.parametrize(("flag", "expect"), [
    ("--start", "systemctl start tradebot.service tradebot-watchdog.service"),
    ("--stop", "systemctl stop tradebot.service tradebot-watchdog.service"),
    ("--restart", "systemctl restart tradebot.service tradebot-watchdog.service"),
    ("--logs", "journalctl -u tradebot -u tradebot-watchdog -f"),
    ("--update", "git -C"),
])
def test_deploy_script_flags(flag: str, expect: str) -> None:
    r = _deploy(flag)
    assert r.returncode == 0 and expect in r.stdout, r.stdout + r.stderr


def test_deploy_script_rejects_unknown_flags_and_parses() -> None:
    assert _deploy("--bogus").returncode == 2
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "deploy_headless.sh")]).returncode == 0
