"""Through the real command as a subprocess: bad overrides and settings are one line and exit 2 (never a
traceback), ``--json`` is exactly one JSON document on stdout with the logs on stderr, and ``tradebot replay``
keeps to its own database."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tradebot.core.config import check_webhook_url

ROOT = Path(__file__).resolve().parents[1]
TBBO = ROOT.parent / "shared" / "data" / "real" / "ES_2022-01-24_sierra.tbbo.dbn.zst"
SEED_VARS = ("TRADING_MODE", "TRADING_SYMBOL", "DISCORD_WEBHOOK_URL", "DATABENTO_API_KEY", "POLYGON_API_KEY",
             "DAILY_PROFIT_TARGET", "DAILY_LOSS_LIMIT")


def tradebot(tmp: Path, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k not in SEED_VARS}
    base.update({"TRADEBOT_DATA_DIR": str(tmp / "data"), "TRADEBOT_HOME": str(tmp), **env})
    return subprocess.run([sys.executable, "-m", "tradebot", *args], cwd=tmp, env=base, capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_exit_2(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for n in needles:
        assert n in lines[0], lines[0]


# --- overrides and settings ----------------------------------------------------------------------------------

RUN_CASES = [
    (("--timeframe", "-5"), "--timeframe -5: Input should be greater than 0"),
    (("--timeframe", "0"), "--timeframe 0: Input should be greater than 0"),
    (("--position-size", "-3"), "--position-size -3: Input should be greater than or equal to 1"),
    (("--speed", "nan"), "--speed nan: Input should be a finite number"),
    (("--speed", "inf"), "--speed inf: Input should be a finite number"),
    (("--profit-target", "nan"), "--profit-target 'nan': Input should be a finite number"),
    (("--loss-limit", "100"), "--loss-limit '100': Input should be less than 0"),
    (("--symbols", "ES,BOGUS"), "--symbols 'BOGUS': unknown contract"),
]


@pytest.mark.parametrize(("args", "message"), RUN_CASES, ids=[" ".join(a) for a, _ in RUN_CASES])
def test_run_overrides_are_validated_like_the_environment(tmp_path: Path, args: tuple[str, ...],
                                                          message: str) -> None:
    r = tradebot(tmp_path, "run", *args, "--duration", "1")
    assert_one_line_exit_2(r, "config error: " + message)
    assert not (tmp_path / "data").exists()  # refused before anything was created


ENV_CASES = [
    ({"DAILY_PROFIT_TARGET": "1e999999"}, "DAILY_PROFIT_TARGET='1E+999999': Input should be at most 1e+15"),
    ({"TRADEBOT_EXECUTION__STARTING_BALANCE": "1e999999999"}, "TRADEBOT_EXECUTION__STARTING_BALANCE="),
    ({"TRADEBOT_VALIDATION__STALE_SECONDS": "inf"}, "STALE_SECONDS=inf: Input should be a finite number"),
    ({"TRADEBOT_ROUTER__TABLE": '{"VOLATILE": {"size_multiplier": 0.25'}, "TRADEBOT_ROUTER__TABLE="),
    ({"DISCORD_WEBHOOK_URL": "not-a-url"}, "DISCORD_WEBHOOK_URL=<secret>: Value error, not an http(s) URL"),
    ({"DISCORD_WEBHOOK_URL": "https://hooks.slack.com/services/T00/B00/XXXXsecret"}, "not a Discord webhook"),
    ({"DISCORD_WEBHOOK_URL": "http://[::1/x"}, "DISCORD_WEBHOOK_URL=<secret>: Value error, not a URL"),
]


@pytest.mark.parametrize(("env", "message"), ENV_CASES, ids=[next(iter(e)) + "=" + next(iter(e.values()))[:20]
                                                              for e, _ in ENV_CASES])
def test_bad_settings_are_one_line_and_exit_2(tmp_path: Path, env: dict[str, str], message: str) -> None:
    r = tradebot(tmp_path, "run", "--duration", "1", **env)
    assert_one_line_exit_2(r, "config error: ", message)
    assert "secret" not in r.stderr.replace("<secret>", "")  # a webhook's token never reaches the terminal
    assert not (tmp_path / "data").exists()


def test_webhook_rules() -> None:
    for ok in ("https://discord.com/api/webhooks/123/abc-DEF_0", "https://discordapp.com/api/v10/webhooks/1/x",
               "http://127.0.0.1:8080/api/webhooks/123/secrettoken", "http://localhost:1/api/webhooks/1/t",
               "http://[::1]:9/api/webhooks/1/t"):
        check_webhook_url(ok)
    for bad in ("not-a-url", "http://[::1/x", "https://hooks.slack.com/services/T0/B0/x", "ftp://discord.com/x",
                "http://discord.com/api/webhooks/1/x", "https://discord.com.evil.example/api/webhooks/1/x",
                "https://discord.com/channels/1/2", "http://10.0.0.5/api/webhooks/1/x",
                "https://discord.com/api/webhooks/1/x?wait=true", "http://127.0.0.1:x/api/webhooks/1/x"):
        with pytest.raises(ValueError):
            check_webhook_url(bad)


def test_other_commands_check_their_numbers(tmp_path: Path) -> None:
    assert_one_line_exit_2(tradebot(tmp_path, "analyze", "--bar-seconds", "0", str(TBBO)), "--bar-seconds 0")
    assert_one_line_exit_2(tradebot(tmp_path, "replay", "--speed", "nan", "--input", str(TBBO), "--symbol", "ES"),
                           "--speed nan: Input should be a finite number")
    for bad in ("nan", "0", "-1"):
        assert_one_line_exit_2(tradebot(tmp_path, "ping", "--timeout", bad), f"--timeout {bad}")
    # options with no setting behind them: finite and within their bounds, checked once for every command
    assert_one_line_exit_2(tradebot(tmp_path, "backtest", "stress", "--monte-carlo", "-5"), "--monte-carlo -5")
    assert_one_line_exit_2(tradebot(tmp_path, "data", "fetch", "--symbol", "ES", "--start", "2024-01-02",
                                    "--max-cost", "nan"), "--max-cost nan: Input should be a finite number")
    assert_one_line_exit_2(tradebot(tmp_path, "signals", "--limit", "-1"), "--limit -1")
    assert not (tmp_path / "data").exists()


# --- one JSON document ---------------------------------------------------------------------------------------


def test_json_output_is_one_document_with_logs_on_stderr(tmp_path: Path) -> None:
    env = {"TRADEBOT_LOG_LEVEL": "INFO"}
    for args in (("analyze", "--json", "--symbol", "ES", str(TBBO)),
                 ("replay", "--json", "--input", str(TBBO), "--symbol", "ES", "--name", "j")):
        r = tradebot(tmp_path, *args, **env)
        assert r.returncode == 0, r.stderr
        doc, end = json.JSONDecoder().raw_decode(r.stdout)
        assert r.stdout[end:].strip() == "", args  # nothing after the one document
        assert isinstance(doc, dict)
        if args[0] == "replay":
            assert '"event": "daemon ready"' in r.stderr  # the daemon's own log lines went to stderr
            assert doc["database"] == str(tmp_path / "data" / "replays" / "j" / "replay.db")
            assert doc["trades"] == 0 and len(doc["trade_hash"]) == 64


def test_json_errors_are_a_document_too(tmp_path: Path) -> None:
    for cmd in ("trades", "stats"):
        r = tradebot(tmp_path, cmd, "--json")
        assert r.returncode == 2 and "no state database" in r.stderr
        assert "no state database" in json.loads(r.stdout)["error"]
    r = tradebot(tmp_path, "ping", "--json", "--timeout", "2")
    assert r.returncode == 3 and "no running daemon" in r.stderr
    assert json.loads(r.stdout) == {"ok": False, "error": r.stderr.strip().removeprefix("ping: ")}


# --- replay keeps to its own state ---------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_replay_never_touches_the_daemon_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    daemon_db = data / "tradebot-paper.db"
    with sqlite3.connect(daemon_db) as c:  # stands for the daemon's journal: any content, compared byte for byte
        c.execute("create table marker (x)")
        c.execute("insert into marker values ('the daemon''s own state')")
    before = _digest(daemon_db)
    r = tradebot(tmp_path, "replay", "--input", str(TBBO), "--symbol", "ES")
    assert r.returncode == 0, r.stderr
    assert _digest(daemon_db) == before
    assert sorted(p.name for p in data.iterdir()) == ["replays", "tradebot-paper.db"]  # no socket, no heartbeat
    (run_dir,) = (data / "replays").iterdir()
    assert run_dir.name.startswith("ES-ES_2022-01-24_sierra-")
    db = run_dir / "replay.db"
    assert db.is_file() and (run_dir / "heartbeat.json").is_file()
    assert f"replay: state database {db}" in r.stderr  # said where, on stderr as it starts...
    assert r.stdout.splitlines()[-1] == f"replay: state database {db}"  # ...and in its output
    assert r.stdout.startswith("replay: 0 trades, net $0.00, trade hash ")



def test_replay_name_and_db_options(tmp_path: Path) -> None:
    data = tmp_path / "data"
    own = tmp_path / "elsewhere" / "mine.db"
    r = tradebot(tmp_path, "replay", "--input", str(TBBO), "--symbol", "ES", "--name", "jan24", "--db", str(own))
    assert r.returncode == 0, r.stderr
    assert own.is_file() and (data / "replays" / "jan24" / "heartbeat.json").is_file()
    assert not (data / "tradebot-paper.db").exists()
    # a used name is refused; an explicit --db is continued on purpose, and says so
    assert_one_line_exit_2(tradebot(tmp_path, "replay", "--input", str(TBBO), "--symbol", "ES", "--name", "jan24"),
                           "already exists")
    r = tradebot(tmp_path, "replay", "--input", str(TBBO), "--symbol", "ES", "--name", "again", "--db", str(own))
    assert r.returncode == 0 and "(continued)" in r.stderr
    for bad in ([str(data / "tradebot-paper.db")], [str(data / "tradebot-live.db")]):
        assert_one_line_exit_2(tradebot(tmp_path, "replay", "--input", str(TBBO), "--symbol", "ES", "--db", *bad),
                               "the daemon's own state database")
    assert_one_line_exit_2(tradebot(tmp_path, "replay", "--input", str(TBBO), "--name", "../up"), "--name '../up'")
    assert not (data / "tradebot-paper.db").exists()
