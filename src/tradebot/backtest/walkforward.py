"""Walk-forward optimisation over quarters and the deflated Sharpe ratio.

**Windows.** Quarters in time order ``q_0 .. q_{n-1}``; window ``k`` trains on ``train`` consecutive quarters
``q_k .. q_{k+train-1}`` and tests on the next one, ``q_{k+train}``; then it rolls by one quarter. Every
parameter set of the grid is a *trial* in every window; the one with the best training objective (net P&L by
default; ties: the earlier grid entry) is the window's choice, and only its result on the test quarter counts in
the headline. :func:`select` sees the training quarters' results only (it is handed nothing else), and
:func:`windows` guarantees every training quarter ends before its test quarter starts; a test checks both.

**Deflated Sharpe ratio** (Bailey and Lopez de Prado, "The Deflated Sharpe Ratio: Correcting for Selection
Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5), 2014):

    DSR = Phi( (SR - SR0) * sqrt(T - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR^2) )
    SR0 = sqrt(V[SR_n]) * ( (1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e)) )

with SR the (non-annualised) Sharpe ratio of the selected strategy's T returns, g3 their skewness, g4 their
kurtosis (3 for a normal), N the number of independent trials, V[SR_n] the variance of the trials' Sharpe
ratios and gamma the Euler-Mascheroni constant. With N = 1, SR0 = 0 and the DSR is the probabilistic Sharpe
ratio against zero. Here the returns are the out-of-sample daily returns, N the number of trials run (grid
size x windows: every configuration the selection looked at) and V the variance of the trials' daily Sharpe
ratios over their training windows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

EULER_GAMMA = 0.5772156649015329
_N = NormalDist()


def expected_max_sharpe(n_trials: int, var_sharpe: float) -> float:
    """SR0: the expected maximum Sharpe ratio of ``n_trials`` unskilled trials with that variance."""
    if n_trials <= 1 or var_sharpe <= 0:
        return 0.0
    g = EULER_GAMMA
    z = (1 - g) * _N.inv_cdf(1 - 1 / n_trials) + g * _N.inv_cdf(1 - 1 / (n_trials * math.e))
    return math.sqrt(var_sharpe) * z


def deflated_sharpe(sharpe: float, n_obs: int, skew: float, kurtosis: float, n_trials: int,
                    var_sharpe: float) -> float | None:
    """Probability that the true Sharpe ratio exceeds SR0 (all ratios per period, not annualised)."""
    if n_obs < 2:
        return None
    sr0 = expected_max_sharpe(n_trials, var_sharpe)
    den = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe * sharpe
    if den <= 0:
        return None
    return _N.cdf((sharpe - sr0) * math.sqrt(n_obs - 1) / math.sqrt(den))


def moments(returns: Sequence[float]) -> tuple[float | None, float, float]:
    """(Sharpe per period with the sample deviation, skewness, kurtosis) of a return series (population
    moments for skewness and kurtosis, as in the paper)."""
    n = len(returns)
    if n < 2:
        return None, 0.0, 3.0
    mean = math.fsum(returns) / n
    var_s = math.fsum((r - mean) ** 2 for r in returns) / (n - 1)
    m2 = math.fsum((r - mean) ** 2 for r in returns) / n
    if var_s <= 0 or m2 <= 0:
        return None, 0.0, 3.0
    m3 = math.fsum((r - mean) ** 3 for r in returns) / n
    m4 = math.fsum((r - mean) ** 4 for r in returns) / n
    return mean / math.sqrt(var_s), m3 / m2 ** 1.5, m4 / m2 ** 2


@dataclass(frozen=True)
class Window:
    index: int
    train: tuple[str, ...]
    test: str


def windows(quarters: Sequence[str], train: int, order: Mapping[str, int] | None = None) -> list[Window]:
    """Rolling windows of ``train`` quarters followed by one test quarter. ``order`` gives each quarter's
    position in time (default: the given order); a window whose training quarters do not all precede the
    test quarter is an error."""
    if train < 1:
        raise ValueError("train window must be at least one quarter")
    pos = order or {q: i for i, q in enumerate(quarters)}
    qs = sorted(quarters, key=lambda q: pos[q])
    out = []
    for k in range(len(qs) - train):
        w = Window(k, tuple(qs[k:k + train]), qs[k + train])
        if any(pos[q] >= pos[w.test] for q in w.train):
            raise ValueError(f"window {k}: training quarter not before the test quarter")
        out.append(w)
    return out


Objective = Callable[[Sequence[object]], float]


def select(train_results: Mapping[str, Sequence[Sequence[object]]], n_combos: int,
           objective: Callable[[list[object]], float]) -> tuple[int, list[float]]:
    """The grid index with the best objective over the training quarters' results (``train_results[q][i]``
    = combo ``i``'s trades in quarter ``q``), and every trial's score."""
    scores = []
    for i in range(n_combos):
        pooled: list[object] = []
        for q in sorted(train_results):
            pooled.extend(train_results[q][i])
        scores.append(objective(pooled))
    best = max(range(n_combos), key=lambda i: (scores[i], -i))
    return best, scores


__all__ = ["EULER_GAMMA", "Window", "deflated_sharpe", "expected_max_sharpe", "moments", "select", "windows"]
