"""``python -m tradebot`` whose live broker is the scripted one (tests of the daemon's live wiring only).

``TRADEBOT_TEST_BROKER`` holds JSON: ``connect_errors`` (a list of ``"auth"`` / ``"unavailable"``, raised by
successive connect attempts) and ``checks`` (``[name, ok, detail]`` preflight lines). The broker fills from the
market data the daemon feeds it, by the paper broker's rules. Everything else is the real program.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from typing import Any


def _install() -> None:
    from tradebot.execution import brokers
    from tradebot.execution.brokers import BrokerAuthError, BrokerUnavailableError, PreflightCheck

    script: dict[str, Any] = json.loads(os.environ.get("TRADEBOT_TEST_BROKER", "{}"))

    def open_scripted(settings: Any, name: str) -> Any:
        from support.fake_broker import ScriptedLiveBroker
        from tradebot.execution.paper import PaperBroker, PaperConfig

        argv = sys.argv
        syms = argv[argv.index("--symbol") + 1].split(",") if "--symbol" in argv else settings.symbol_list
        b = ScriptedLiveBroker(PaperBroker(PaperConfig.from_settings(settings), data_symbols=syms))
        b.connect_errors = [BrokerAuthError("invalid API key") if e == "auth"
                            else BrokerUnavailableError("HTTP 503 from the gateway")
                            for e in script.get("connect_errors", [])]
        if "checks" in script:
            b.checks = [PreflightCheck(str(n), bool(ok), str(d)) for n, ok, d in script["checks"]]
        return b

    brokers.open_live_broker = open_scripted  # type: ignore[assignment]


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    _install()
    sys.argv = ["tradebot", *sys.argv[1:]]
    runpy.run_module("tradebot", run_name="__main__", alter_sys=True)
