"""The dashboard (``tradebot web``): its own process beside the daemon, never inside the trading loop."""
