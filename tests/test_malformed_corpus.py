"""The malformed-input corpus (``tests/support/malformed.py``) through ``analyze``, ``data inspect``, ``replay``
and the daemon: no traceback, no hang (each command bounded in time), the right exit code, a reason for every
rejection, and exactly the good records kept.

Every case runs each command in-process through :func:`tradebot.cli.main` (argv in, exit code, stdout and
stderr out: the real entry point without paying an interpreter start per command); a representative subset
also runs as real subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from support import malformed_config  # noqa: F401  (registers the config and command-line cases)
from support.malformed import CASES, Case
from tradebot.analyze import run_file
from tradebot.cli import main
from tradebot.core.config import load_settings

LIMIT_S = 20.0
"""Per command and case: far above any honest run of these small inputs (well under a second)."""

FILE_CASES = [c for c in CASES if c.family in ("dbn", "csv")]
SETTING_CASES = [c for c in CASES if c.family in ("config", "cli")]


class HangError(Exception):
    pass


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise HangError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def argv(command: str, case: Case, inputs: list[Path], home: Path) -> list[str]:
    files = [str(p) for p in inputs]
    base = ["--env-file", str(home / "absent.env")]
    if command == "analyze":
        return [*base, "analyze", *case.args, "--symbol", case.symbol, "--json", *files]
    if command == "inspect":
        return [*base, "data", "inspect", *case.args, "--json", *files]
    if command == "replay":
        return [*base, "replay", *case.args, "--symbol", case.symbol, "--input", *files]
    if command == "run":
        return [*base, "run", *case.args, "--feed", "replay", "--symbol", case.symbol, "--input", *files]
    raise AssertionError(command)


def environment(case: Case, home: Path) -> dict[str, str]:
    return {"TRADEBOT_DATA_DIR": str(home / "data"), "TRADEBOT_LOG_FORMAT": "json", **case.env}


def document(out: str) -> Any:
    """The command's JSON document. Whether stdout holds nothing else is the --json tests' business; here a log
    line that leaked onto stdout must not hide the counts."""
    try:
        return json.loads(out)
    except ValueError:
        pass
    lines = out.splitlines()
    if "{" in lines:  # an indented document starts with a line of its own
        return json.loads("\n".join(lines[lines.index("{"):]))
    for line in reversed(lines):  # a one-line document is the last line that is one
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "validation" in doc:
            return doc
    raise AssertionError(f"no JSON document on stdout: {out[-500:]}")


def accepted_in(command: str, out: str, err: str) -> int | None:
    """Events the validator accepted, as the command itself reports them."""
    if command == "analyze":
        return int(document(out)["validation"]["accepted"])
    if command == "inspect":
        return sum(int(f["validation"]["accepted"]) for f in document(out)["files"])
    for line in (out + "\n" + err).splitlines():  # the daemon's own JSON log line (stdout, for journald)
        if '"feed finished"' in line:
            return int(json.loads(line)["events"])
    return None


def expected_count(case: Case, reference: list[Path] | None) -> int | None:
    if reference is None:
        return case.accepted
    res = asyncio.run(run_file(reference, load_settings(_env_file=None), case.symbol))
    assert not res.damage, f"the reference of {case.name} must be clean: {res.damage}"
    return res.validator.accepted - case.lost


def check(case: Case, command: str, code: int, out: str, err: str, want: int | None) -> None:
    where = f"{case.name} / {command}"
    assert "Traceback" not in out + err, f"{where}: a traceback\n{err[-3000:]}"
    assert code == case.exit_code, f"{where}: exit {code}, want {case.exit_code}\n{err[-3000:]}"
    if case.reason is not None:
        assert case.reason in out + err, f"{where}: {case.reason!r} is not named\n{(out + err)[-3000:]}"
    if case.exit_code == 2:
        assert err.strip(), f"{where}: refused without a word on stderr"
        return
    got = accepted_in(command, out, err)
    if case.min_accepted is not None:
        assert got is not None and got >= case.min_accepted, f"{where}: accepted {got} < {case.min_accepted}"
    elif want is not None:
        assert got == want, f"{where}: accepted {got}, the good input has {want}"


def run_in_process(command: str, case: Case, inputs: list[Path], home: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    home.mkdir(parents=True, exist_ok=True)
    with monkeypatch.context() as m:
        for k, v in environment(case, home).items():
            m.setenv(k, v)
        m.chdir(home)
        capsys.readouterr()
        try:
            with bounded(LIMIT_S):
                code = main(argv(command, case, inputs, home))
        except HangError as exc:
            pytest.fail(f"{case.name} / {command}: {exc}")
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_the_corpus_is_big_enough() -> None:
    assert len(FILE_CASES) >= 60
    assert {c.family for c in FILE_CASES} == {"dbn", "csv"}
    assert {0, 1, 2} <= {c.exit_code for c in FILE_CASES}
    assert len(SETTING_CASES) >= 40 and {c.family for c in SETTING_CASES} == {"config", "cli"}
    assert {0, 2} == {c.exit_code for c in SETTING_CASES}


@pytest.mark.parametrize("case", SETTING_CASES, ids=[c.name for c in SETTING_CASES])
def test_setting_case_through_its_commands(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Good data, a bad setting or option: every command that reads it refuses before doing anything, with one
    ``config error`` line naming it (argparse's own usage message for a value of the wrong type), exit 2."""
    assert case.make is not None
    (tmp_path / "in").mkdir()
    inputs, reference = case.make(tmp_path / "in")
    want = expected_count(case, reference) if case.exit_code == 0 else None
    for command in case.commands:
        home = tmp_path / command
        code, out, err = run_in_process(command, case, inputs, home, monkeypatch, capsys)
        check(case, command, code, out, err, want)
        if case.exit_code == 2:
            where = f"{case.name} / {command}"
            assert out == "", f"{where}: a refusal prints no data"
            if "invalid" not in err:  # argparse: usage + one error line
                assert len(err.strip().splitlines()) == 1 and err.startswith("config error: "), f"{where}: {err}"
            assert not (home / "data").exists(), f"{where}: refused, yet something was created"


@pytest.mark.parametrize("case", FILE_CASES, ids=[c.name for c in FILE_CASES])
def test_case_through_every_command(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert case.make is not None
    (tmp_path / "in").mkdir()
    inputs, reference = case.make(tmp_path / "in")
    want = expected_count(case, reference)
    for command in case.commands:
        code, out, err = run_in_process(command, case, inputs, tmp_path / command, monkeypatch, capsys)
        check(case, command, code, out, err, want)


# One damaged DBN file (a record stamped 2090 plus, via tests/test_damaged_replay.py, a corrupt record type and a
# multi-day replay) and one CSV number that used to hang every command; the rest of the file cases run in-process.
SUBPROCESS = ["dbn_far_future_mid", "csv_size_1e999999999", "config_profit_target_1e999999",
              "config_router_table_bad_json", "config_webhook_broken_ipv6", "cli_loss_limit_positive",
              "cli_run_speed_nan"]


@pytest.mark.parametrize("name", SUBPROCESS)
def test_subset_as_real_subprocesses(name: str, tmp_path: Path) -> None:
    """The same expectations with a real interpreter per command, all four commands at once (bounded)."""
    case = next(c for c in CASES if c.name == name)
    assert case.make is not None
    (tmp_path / "in").mkdir()
    inputs, reference = case.make(tmp_path / "in")
    want = expected_count(case, reference)
    procs = {}
    for command in case.commands:
        home = tmp_path / command
        home.mkdir()
        env = {**os.environ, **environment(case, home)}
        procs[command] = subprocess.Popen([sys.executable, "-m", "tradebot", *argv(command, case, inputs, home)],
                                          cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for command, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{name} / {command}: hung")
        check(case, command, proc.returncode, out, err, want)
