"""Core model: types, contracts, prices, exchange time and configuration. Depends on nothing else here."""
