"""tradebot: a headless order-flow trading daemon for CME futures."""

__version__ = "0.1.0"
