"""Configuration fails fast with one clear line; secrets never reach output; logs are JSON and redacted."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from tradebot.cli import main
from tradebot.core.config import Settings, env_name, load_settings
from tradebot.core.logging import configure_logging, get_logger, redact_text, register_secret

SEED_VARS = ["DATABENTO_API_KEY", "POLYGON_API_KEY", "DISCORD_WEBHOOK_URL", "TRADING_SYMBOL", "TRADING_MODE",
             "DAILY_PROFIT_TARGET", "DAILY_LOSS_LIMIT", "MES_MARGIN_LIMIT", "ES_MARGIN_LIMIT",
             "ORDER_FLOW_LARGE_ORDER_SIZE", "ORDER_FLOW_VOLUME_SPIKE_THRESHOLD", "ORDER_FLOW_RED_BURST_THRESHOLD",
             "ORDER_FLOW_ALERT_WINDOW_SECONDS", "ORDER_FLOW_MONITORING_MODE"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in list(os.environ):
        if k in SEED_VARS or k.startswith("TRADEBOT_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_are_the_seed_defaults() -> None:
    s = load_settings()
    assert s.trading_symbol == "MES" and s.trading_mode == "paper"
    assert s.daily_profit_target == 500 and s.daily_loss_limit == -300
    assert s.mes_margin_limit == 40 and s.es_margin_limit == 400
    assert s.order_flow_alert_window_seconds == 120 and s.order_flow_monitoring_mode == "positions_only"
    assert s.feed == "demo"


def test_seed_names_and_prefixed_nested_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADING_SYMBOL", "esh6")
    monkeypatch.setenv("DAILY_LOSS_LIMIT", "-250.50")
    monkeypatch.setenv("TRADEBOT_VALIDATION__MAX_JUMP_TICKS", "80")
    monkeypatch.setenv("TRADEBOT_SYMBOLS", "gc, si,NQ")
    s = load_settings()
    assert s.trading_symbol == "ES"
    assert str(s.daily_loss_limit) == "-250.50"
    assert s.validation.max_jump_ticks == 80
    assert s.symbol_list == ["GC", "SI", "NQ"]


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "custom.env").write_text("TRADING_MODE=paper\nTRADING_SYMBOL=NQ\n")
    assert load_settings(_env_file=tmp_path / "custom.env").trading_symbol == "NQ"


@pytest.mark.parametrize(("var", "value", "needle"), [
    ("TRADING_MODE", "yolo", "'paper' or 'live'"),
    ("DAILY_LOSS_LIMIT", "300", "less than 0"),
    ("TRADING_SYMBOL", "ZZZ", "unknown contract"),
    ("ORDER_FLOW_MONITORING_MODE", "some", "positions_only"),
    ("TRADEBOT_VALIDATION__MAX_JUMP_TICKS", "-1", "greater than 0"),
])
def test_bad_value_fails_fast_with_one_line_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], var: str, value: str,
        needle: str) -> None:
    monkeypatch.setenv(var, value)
    assert main(["data", "inspect", "nothing"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith(f"config error: {var}=") and needle in err and "Traceback" not in err


def test_bad_value_in_a_subprocess_exits_2_without_traceback_and_hides_secrets(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SEED_VARS and not k.startswith("TRADEBOT_")}
    env.update({"TRADING_MODE": "bogus", "DATABENTO_API_KEY": "db-SECRETSECRETSECRETSECRET"})
    r = subprocess.run([sys.executable, "-m", "tradebot", "run"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "config error: TRADING_MODE='bogus'" in r.stderr
    assert "Traceback" not in r.stderr and "SECRETSECRET" not in r.stderr + r.stdout


def test_secrets_are_secretstr_and_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", "https://discord.com/api/webhooks/123/abcdefTOKEN")
    s = load_settings()
    assert "abcdefTOKEN" not in repr(s) and "abcdefTOKEN" not in str(s.model_dump())
    assert s.discord_webhook_url is not None
    assert s.discord_webhook_url.get_secret_value().endswith("abcdefTOKEN")


def test_env_name_mapping() -> None:
    assert env_name(("trading_mode",)) == "TRADING_MODE"
    assert env_name(("validation", "stale_seconds")) == "TRADEBOT_VALIDATION__STALE_SECONDS"
    assert env_name(("log_level",)) == "TRADEBOT_LOG_LEVEL"


def test_env_example_documents_every_variable() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = {line.split("=", 1)[0].lstrip("# ").strip() for line in text.splitlines() if "=" in line}
    expected = set(SEED_VARS)
    for name, field in Settings.model_fields.items():
        if isinstance(field.validation_alias, str):
            continue
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            expected |= {f"TRADEBOT_{name.upper()}__{k.upper()}" for k in ann.model_fields}
        else:
            expected.add(f"TRADEBOT_{name.upper()}")
    missing = expected - documented
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_json_logs_redact_keys_and_webhooks() -> None:
    buf = io.StringIO()
    configure_logging("INFO", "json", stream=buf)
    register_secret("db-REGISTEREDKEY123456789")
    log = get_logger("t")
    log.info("hello", url="https://discord.com/api/webhooks/42/verysecrettoken", api_key="abc123",
             note="key db-REGISTEREDKEY123456789 in text", nested={"token": "zzz", "ok": 1})
    log.warning("vendor said apikey=XYZSECRET&limit=2")
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    dumped = buf.getvalue()
    for secret in ("verysecrettoken", "abc123", "REGISTEREDKEY", "zzz", "XYZSECRET"):
        assert secret not in dumped
    assert lines[0]["event"] == "hello" and lines[0]["level"] == "info" and lines[0]["nested"]["ok"] == 1
    assert lines[0]["url"].startswith("https://discord.com/api/webhooks/42/")


def test_redact_text_leaves_ordinary_text_alone() -> None:
    assert redact_text("ES 4500.25 bid 10") == "ES 4500.25 bid 10"


def test_a_copied_env_example_loads_to_the_defaults(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text((ROOT / ".env.example").read_text())
    assert load_settings(_env_file=env).model_dump() == load_settings(_env_file=None).model_dump()
