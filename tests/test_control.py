"""The operator's Unix-socket channel: commands acknowledged, permissions tight, failures clear."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest

from tradebot.cli import main
from tradebot.ops.control import ControlServer, send_command


class FakeDaemon:
    def __init__(self) -> None:
        self.state = "ACTIVE"
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def handle(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((cmd, args))
        if cmd == "halt":
            self.state = "HALTED"
        elif cmd == "resume":
            self.state = "ACTIVE"
        elif cmd == "flatten":
            raise RuntimeError("broker unavailable")
        return {"ok": True, "state": self.state}


async def test_commands_are_acknowledged_with_state(tmp_path: Path) -> None:
    d = FakeDaemon()
    srv = ControlServer(tmp_path / "control.sock", d.handle)
    await srv.start()
    try:
        assert stat.S_IMODE((tmp_path / "control.sock").stat().st_mode) == 0o600
        assert await send_command(srv.path, "halt", {"reason": "news"}) == {"ok": True, "state": "HALTED"}
        assert await send_command(srv.path, "resume") == {"ok": True, "state": "ACTIVE"}
        bad = await send_command(srv.path, "flatten")
        assert bad["ok"] is False and "broker unavailable" in bad["error"]
        assert (await send_command(srv.path, "explode"))["ok"] is False
        assert d.calls[0] == ("halt", {"reason": "news"})
    finally:
        await srv.stop()
    assert not srv.path.exists()


async def test_malformed_line_gets_an_error_and_the_server_survives(tmp_path: Path) -> None:
    d = FakeDaemon()
    srv = ControlServer(tmp_path / "c.sock", d.handle)
    await srv.start()
    try:
        r, w = await asyncio.open_unix_connection(str(srv.path))
        w.write(b"not json\n")
        await w.drain()
        assert b'"ok": false' in await r.readline()
        w.close()
        assert (await send_command(srv.path, "ping"))["ok"] is True
    finally:
        await srv.stop()


async def test_stale_socket_is_replaced_but_a_live_one_is_not_stolen(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    path.write_text("stale")  # a leftover from a kill -9
    first = ControlServer(path, FakeDaemon().handle)
    await first.start()
    try:
        with pytest.raises(RuntimeError, match="another daemon"):
            await ControlServer(path, FakeDaemon().handle).start()
        assert (await send_command(path, "ping"))["ok"] is True
    finally:
        await first.stop()


async def test_no_daemon_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConnectionError, match="no running daemon"):
        await send_command(tmp_path / "missing.sock", "ping", wait_seconds=1)


def test_cli_without_daemon_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRADEBOT_DATA_DIR", str(tmp_path))
    assert main(["halt", "--reason", "test"]) == 3
    assert "no running daemon" in capsys.readouterr().err
