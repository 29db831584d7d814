"""Market data in: one async-iterator contract for every source, and the validation layer after it."""
