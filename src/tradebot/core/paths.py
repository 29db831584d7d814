"""Where an installation lives, so every command finds its ``.env`` and data whatever the current directory.

The operator runs ``ssh server sudo -u tradebot /opt/tradebot/.venv/bin/tradebot status`` from their home
directory; the daemon runs with ``WorkingDirectory=/opt/tradebot``. Both must read the same ``.env`` and the same
``data/``. The installation root is, in order:

1. ``TRADEBOT_HOME`` when set (an explicit choice always wins);
2. the directory holding the virtual environment the running interpreter belongs to, when that directory has a
   ``.env`` (``scripts/deploy_headless.sh`` always creates ``$PREFIX/.env`` next to ``$PREFIX/.venv``);
3. the current directory (a development checkout: ``make run`` from the repository, tests in a temp dir).

Relative paths in the settings (``TRADEBOT_DATA_DIR``, ``TRADEBOT_EXECUTION__DB_PATH``, the blackout and routing
table files) are taken relative to that root, and the default ``.env`` is ``<root>/.env``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HOME_VAR = "TRADEBOT_HOME"


@dataclass(frozen=True)
class InstallRoot:
    path: Path
    source: str
    """``TRADEBOT_HOME``, ``venv`` or ``cwd``: shown by ``status`` so the operator sees which install answered."""

    @property
    def env_file(self) -> Path:
        return self.path / ".env"


def venv_root(prefix: str | None = None, base_prefix: str | None = None) -> Path | None:
    """The directory that holds the running virtual environment, or None outside a venv."""
    prefix = sys.prefix if prefix is None else prefix
    base_prefix = sys.base_prefix if base_prefix is None else base_prefix
    if os.path.realpath(prefix) == os.path.realpath(base_prefix):
        return None
    return Path(prefix).absolute().parent


def install_root(environ: Mapping[str, str] | None = None, cwd: Path | None = None,
                 venv: Path | None = None) -> InstallRoot:
    env = os.environ if environ is None else environ
    home = env.get(HOME_VAR, "").strip()
    if home:
        return InstallRoot(Path(home).expanduser().absolute(), HOME_VAR)
    here = (cwd or Path.cwd()).absolute()
    root = venv if venv is not None else venv_root()
    if root is not None and (root / ".env").is_file():
        return InstallRoot(root, "venv")
    return InstallRoot(here, "cwd")
