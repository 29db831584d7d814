"""The operator's Unix-socket channel: commands acknowledged, permissions tight, failures clear."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
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


# --- bounded, validated, sanitised (issue 12) ------------------------------------------------------


async def _raw(path: Path, data: bytes) -> bytes:
    r, w = await asyncio.open_unix_connection(str(path), limit=1 << 20)
    w.write(data)
    await w.drain()
    line = await asyncio.wait_for(r.readline(), 10)
    w.close()
    return line


async def test_oversized_deep_or_malformed_requests_are_refused_and_the_server_survives(tmp_path: Path) -> None:
    d = FakeDaemon()
    srv = ControlServer(tmp_path / "c.sock", d.handle)
    await srv.start()
    try:
        huge = b'{"cmd": "halt", "args": {"reason": "' + b"x" * (70 * 1024) + b'"}}\n'
        assert b"longer than 65536 bytes" in await _raw(srv.path, huge)
        deep = b'{"cmd": "ping", "args": {"reason": ' + b"[" * 20_000 + b"]" * 20_000 + b"}}\n"
        assert b"nested deeper" in await _raw(srv.path, deep)
        for bad, why in ((b'{"cmd": "halt", "args": []}\n', b"args must be a JSON object"),
                         (b'{"cmd": "halt", "args": {"reason": 5}}\n', b"reason must be a string"),
                         (b'{"cmd": "halt", "args": {"force": true}}\n', b"unknown args"),
                         (b'["halt"]\n', b"must be a JSON object"), (b'\xff\xfe\n', b"not UTF-8")):
            assert why in await _raw(srv.path, bad), bad
        assert d.calls == [] and srv.rejected == 7
        assert (await send_command(srv.path, "ping"))["ok"] is True
    finally:
        await srv.stop()


async def test_the_reason_is_one_short_printable_line(tmp_path: Path) -> None:
    d = FakeDaemon()
    srv = ControlServer(tmp_path / "c.sock", d.handle)
    await srv.start()
    try:
        nasty = "news\x1b[31m RED\x1b[0m\r\nFAKE LOG LINE\x07" + "y" * 60_000
        assert (await send_command(srv.path, "halt", {"reason": nasty}))["ok"] is True
        reason = d.calls[0][1]["reason"]
        assert reason.startswith("news RED FAKE LOG LINE yyy") and len(reason) == 200
        assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in reason)
    finally:
        await srv.stop()


async def test_a_data_dir_longer_than_af_unix_allows_still_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 80) / ("e" * 80)
    deep.mkdir(parents=True)
    path = deep / "control.sock"
    assert len(str(path)) > 108
    srv = ControlServer(path, FakeDaemon().handle)
    await srv.start()
    try:
        assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
        assert (await send_command(path, "ping"))["ok"] is True
        with pytest.raises(RuntimeError, match="another daemon"):
            await ControlServer(path, FakeDaemon().handle).start()
    finally:
        await srv.stop()
    with pytest.raises(ConnectionError, match="no running daemon"):
        await send_command(path, "ping", wait_seconds=1)


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    p = await asyncio.create_subprocess_exec(sys.executable, "-m", "tradebot", *args, env=env,
                                             stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(p.communicate(), 60)
    assert p.returncode is not None
    return p.returncode, out.decode(), err.decode()


async def test_cli_against_a_daemon_that_never_answers_exits_3_without_a_traceback(tmp_path: Path) -> None:
    data = tmp_path / ("long-" * 20) / "data"  # also longer than AF_UNIX allows
    data.mkdir(parents=True)
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)  # accept, read nothing, never answer

    sock = socket.socket(socket.AF_UNIX)
    fd = os.open(data, os.O_PATH | os.O_DIRECTORY)
    sock.bind(f"/proc/self/fd/{fd}/control.sock")
    os.close(fd)
    server = await asyncio.start_unix_server(silent, sock=sock)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env["TRADEBOT_DATA_DIR"] = str(data)
    try:
        for cmd in ("ping", "halt"):
            code, out, err = await _cli(env, cmd, "--timeout", "1")
            assert code == 3, (out, err)
            assert "did not answer within 1 s" in err and "Traceback" not in err and "AF_UNIX" not in err
    finally:
        server.close()
    (data / "control.sock").unlink()
    code, _, err = await _cli(env, "ping", "--timeout", "1")
    assert code == 3 and "no running daemon" in err and "Traceback" not in err
