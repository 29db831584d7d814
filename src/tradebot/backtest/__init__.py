"""backtest stage."""
