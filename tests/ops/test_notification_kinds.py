"""One notification vocabulary: the kinds ``NOTIFY_DISABLED`` accepts are the kinds tradebot sends, checked at
load through the real command (a misspelt kind is exit 2 naming the valid ones, never an alert that keeps coming),
and a notification survives the outbox round trip with its fields in order."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tradebot.core.config import Settings
from tradebot.core.notifications import Notification, NotificationKind, Severity, parse_kinds

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "tradebot"


def tradebot(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_") and k != "DISCORD_WEBHOOK_URL"}
    base.update({"TRADEBOT_DATA_DIR": str(tmp / "data"), "TRADEBOT_HOME": str(tmp), **env})
    return subprocess.run([sys.executable, "-m", "tradebot", *args], cwd=tmp, env=base, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("command", ["run", "preflight"])
def test_a_misspelt_kind_is_a_config_error_naming_the_valid_kinds(tmp_path: Path, command: str) -> None:
    args = (command, "--duration", "1") if command == "run" else (command,)
    r = tradebot(tmp_path, *args, TRADEBOT_DAEMON__NOTIFY_DISABLED="trade_opened, tarde_closed")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("config error: TRADEBOT_DAEMON__NOTIFY_DISABLED=")
    assert "unknown notification kind(s) 'tarde_closed'" in line and "'trade_opened'" not in line.split(";")[0][-40:]
    valid = line.split("valid kinds: ", 1)[1].split(", ")
    assert valid == [k.value for k in NotificationKind]
    assert not (tmp_path / "data").exists()  # refused before anything was created


def test_known_kinds_pass_the_real_preflight(tmp_path: Path) -> None:
    r = tradebot(tmp_path, "preflight", TRADEBOT_DAEMON__NOTIFY_DISABLED=" trade_opened,watchdog ,")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "config: OK" in r.stdout


def test_the_setting_is_parsed_once_into_kinds_and_dumps_back_to_text() -> None:
    s = Settings(_env_file=None, daemon={"notify_disabled": "watchdog, trade_opened"})  # type: ignore[call-arg]
    assert s.daemon.notify_disabled == {NotificationKind.TRADE_OPENED, NotificationKind.WATCHDOG}
    dumped = s.model_dump()["daemon"]["notify_disabled"]
    assert dumped == "trade_opened,watchdog"
    again = Settings(_env_file=None, daemon={"notify_disabled": dumped})  # type: ignore[call-arg]
    assert again.daemon.notify_disabled == s.daemon.notify_disabled
    assert Settings(_env_file=None).daemon.notify_disabled == frozenset()  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="unknown notification kind"):
        parse_kinds("high_margin_day")  # the seed table's name; the kind sent is margin_high


def test_every_kind_is_sent_somewhere_and_nothing_is_sent_under_a_bare_string() -> None:
    """A kind nobody sends could be 'disabled' to no effect; a bare string kind would bypass the check."""
    text = "\n".join(p.read_text() for p in SRC.rglob("*.py") if p.name != "notifications.py")
    for k in NotificationKind:
        assert re.search(rf"\b(NotificationKind|K)\.{k.name}\b", text), f"{k.value} is never sent"
    assert not re.search(r"Notification\(\s*\"", text), "a notification built with a bare string kind"


def test_the_outbox_round_trip_keeps_fields_in_order_with_their_values() -> None:
    n = Notification(NotificationKind.DAILY_DIGEST, Severity.SUCCESS, "Daily digest", 123, "two trades",
                     (("10:01 ES long", "+$10.00"), ("10:01 ES long", "-$5.00"), ("flatten", True),
                      ("symbols", {"ES": "$1.00"})), subject="digest", repeats=2)
    back = Notification.from_outbox(n.kind, n.severity, 123, n.to_outbox())
    assert back == n
    old = Notification.from_outbox("trade_opened", "bogus", 5, {"title": "t", "fields": {"a": 1}})
    assert (back.kind, old.kind, old.severity, old.fields) == (
        NotificationKind.DAILY_DIGEST, NotificationKind.TRADE_OPENED, Severity.WARNING, (("a", 1),))


def test_severity_ranks_by_urgency_not_by_spelling() -> None:
    assert Severity.INFO.rank == Severity.SUCCESS.rank < Severity.WARNING.rank < Severity.CRITICAL.rank
    assert "critical" < "warning"  # why comparing the text would be wrong


def test_the_readme_tells_the_operator_every_kind() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [k.value for k in NotificationKind if f"`{k.value}`" not in readme]
    assert not missing, f"README alert tables lack {missing}"
