"""``make test`` installs the Debian packages the tests use when they are missing, so it works on a fresh machine."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fake_bin(tmp: Path, log: Path) -> Path:
    """apt-get (and sudo, for a non-root run) stand-ins that record what they were asked to do."""
    bindir = tmp / "bin"
    bindir.mkdir()
    (bindir / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >> {log}\n')
    (bindir / "sudo").write_text(f'#!/bin/sh\necho "sudo" >> {log}\nexec "$@"\n')
    for f in bindir.iterdir():
        f.chmod(0o755)
    return bindir


def test_missing_commands_are_installed_once_and_present_ones_are_not(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    bindir = fake_bin(tmp_path, log)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    r = subprocess.run(["make", "-s", "-C", str(ROOT), "test-deps", "TEST_DEBS=sh:dash tb-no-such-cmd:tb-pkg"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    assert "apt-get update -qq" in calls
    assert "apt-get install -y -qq tb-pkg" in calls  # only the missing one; sh is there
    assert "installing tb-pkg" in r.stderr
    log.unlink()
    r = subprocess.run(["make", "-s", "-C", str(ROOT), "test-deps", "TEST_DEBS=sh:dash"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not log.exists() and r.stdout == ""


def test_make_test_runs_the_deps_step_and_ci_calls_make_test() -> None:
    plan = subprocess.run(["make", "-n", "-C", str(ROOT), "test"], capture_output=True, text=True, timeout=60).stdout
    assert "apt-get install" in plan and plan.index("apt-get install") < plan.index("pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "apt-get" not in ci
