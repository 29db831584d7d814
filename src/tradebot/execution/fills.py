"""The per-order fill rules of the simulated broker, as small pure functions of integers.

One statement of each rule, used twice: the paper broker (:mod:`tradebot.execution.paper`) calls them as Python
functions per event, and the fast path's compiled bracket loop (:mod:`tradebot.backtest.fast.kernels`) compiles
these very functions with numba and calls them in its loop, so a rule changed here changes both engines at once
(the parity tests then compare them end to end). They therefore stay numba-compatible: integer arguments and
results only, no objects, no exceptions, no imports.

Prices are integer ticks; ``side`` is the order's side, ``+1`` buy or ``-1`` sell (``Side`` values); a print's
aggressor side is ``+1``, ``-1`` or ``0`` (unknown). ``NO_QUOTE`` stands for "no prevailing quote on that side".
"""

from __future__ import annotations

NO_QUOTE = -(1 << 31)
"""No best bid/ask known (the fast path's ``NO_PX``: a valid price in ticks is positive)."""


def slipped(side: int, price: int, slip: int) -> int:
    """``price`` moved ``slip`` ticks against an order of ``side`` (a buy pays more, a sell gets less)."""
    return price + slip if side > 0 else price - slip


def market_on_book(side: int, bid: int, ask: int) -> int:
    """What a market order of ``side`` pays on a book update before slippage: the opposite best (``NO_QUOTE`` when
    that side is empty: no fill on this event)."""
    return ask if side > 0 else bid


def market_on_trade(side: int, price: int, aggressor: int, bid: int, ask: int) -> int:
    """What a market order of ``side`` pays on a print before slippage: the prevailing opposite best (``bid`` and
    ``ask`` of the latest book seen, or ``NO_QUOTE``); without one, the print's price when its aggressor was on
    our side (a buy print lifted the ask we would pay), else one tick worse (an unknown aggressor counts as the
    opposite side)."""
    if side > 0:
        if ask != NO_QUOTE:
            return ask
        return price if aggressor == 1 else price + 1
    if bid != NO_QUOTE:
        return bid
    return price if aggressor == -1 else price - 1


def stop_elected(side: int, stop: int, price: int) -> bool:
    """A print at or beyond the stop elects it (a buy stop above the market, a sell stop below)."""
    return price >= stop if side > 0 else price <= stop


def stop_fill(side: int, stop: int, price: int, slip: int) -> int:
    """An elected stop fills at the stop, or at the print if it gapped past, plus ``slip`` ticks against us."""
    return max(stop, price) + slip if side > 0 else min(stop, price) - slip


def limit_through(side: int, limit: int, price: int) -> bool:
    """A print strictly beyond the limit (below a buy, above a sell): the whole remainder fills at the limit."""
    return price < limit if side > 0 else price > limit


__all__ = ["NO_QUOTE", "limit_through", "market_on_book", "market_on_trade", "slipped", "stop_elected", "stop_fill"]
