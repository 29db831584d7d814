"""``python -m tradebot`` with fault switches, for tests of the real daemon process.

* ``TRADEBOT_TEST_FAULT_FILE``: while that file exists, the trading core raises on every market event (an
  unexpected exception in the trading path).
* ``TRADEBOT_TEST_HALT_FAILS``: recording a halt raises (the store refuses the write).
* ``TRADEBOT_TEST_ENOSPC_FILE``: while that file exists, every database transaction and heartbeat write fails
  as on a full disk (used where a small tmpfs cannot be mounted).
Everything else is the real program: ``tradebot.cli.main`` with the real settings, store, notifier and feed.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _install() -> None:
    from tradebot import trading
    from tradebot.ops import heartbeat
    from tradebot.state import store

    fault = os.environ.get("TRADEBOT_TEST_FAULT_FILE")
    if fault:
        flag = Path(fault)
        on_event = trading.TradingCore.on_event

        def faulty_on_event(self: trading.TradingCore, ev: Any) -> None:
            if flag.exists():
                raise RuntimeError("injected trading-core fault")
            on_event(self, ev)

        trading.TradingCore.on_event = faulty_on_event  # type: ignore[method-assign]

    if os.environ.get("TRADEBOT_TEST_HALT_FAILS"):
        from tradebot.execution.manager import ExecutionManager

        def failing_halt(self: ExecutionManager, *args: Any, **kw: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        ExecutionManager.halt = failing_halt  # type: ignore[method-assign]

    enospc = os.environ.get("TRADEBOT_TEST_ENOSPC_FILE")
    if enospc:
        full = Path(enospc)
        transaction = store.StateStore.transaction
        write_heartbeat = heartbeat.write_heartbeat

        @contextmanager
        def full_transaction(self: store.StateStore) -> Iterator[Any]:
            if full.exists():
                raise sqlite3.OperationalError("database or disk is full")
            with transaction(self) as tx:
                yield tx

        def full_heartbeat(path: Path, data: dict[str, Any]) -> None:
            if full.exists():
                raise OSError(errno.ENOSPC, "No space left on device")
            write_heartbeat(path, data)

        store.StateStore.transaction = full_transaction  # type: ignore[method-assign,assignment]
        import tradebot.daemon as daemon

        daemon.write_heartbeat = full_heartbeat  # type: ignore[assignment]


if __name__ == "__main__":
    _install()
    from tradebot.cli import main

    sys.exit(main(sys.argv[1:]))
