"""Footprint chart PNG: bid x ask per level per bar, imbalances highlighted, POC boxed, value area shaded.

Matplotlib with the Agg backend (no display on a server). Cells are shaded by volume so the eye finds where
business was done; buy imbalances are green and sell imbalances red, as in the paid platforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tradebot.core.display import display_tz_name, local, zone_label
from tradebot.orderflow.engine import BarClose, OrderFlowEngine
from tradebot.orderflow.events import Pattern

BUY = "#1b9e4b"
SELL = "#d62728"


def plot_footprint(engine: OrderFlowEngine, bars: Sequence[BarClose], out: Path, max_bars: int = 12,
                   title: str | None = None, marks: Sequence[tuple[int, str, str]] = ()) -> Path:
    """``marks``: (price ticks, label, colour) drawn as dashed lines across the chart (a trade's entry/exit)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    spec = engine.spec
    shown = list(bars)[-max_bars:] if max_bars > 0 else list(bars)
    if not shown:
        raise ValueError("no bars to plot")
    lo = min(bc.bar.low for bc in shown)
    hi = max(bc.bar.high for bc in shown)
    n_levels = hi - lo + 1
    width = max(6.0, 1.7 * len(shown) + 1.5)
    height = max(4.0, min(40.0, 0.24 * n_levels + 2.0))
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    font = 8 if n_levels < 60 else 6
    vmax = max(lv.volume for bc in shown for lv in bc.bar.levels) or 1

    profile = engine.profiles.snapshot()
    shade_va = profile is not None and profile.val <= hi and profile.vah >= lo
    if profile is not None and shade_va:
        ax.axhspan(max(profile.val, lo) - 0.5, min(profile.vah, hi) + 0.5, color="#f2e6ff", zorder=0,
                   label=f"value area {spec.fmt(profile.val)}-{spec.fmt(profile.vah)}")
    for price, label, colour in marks:
        ax.axhline(price, color=colour, linestyle="--", linewidth=1.2, zorder=5)
        ax.text(len(shown) * 1.2 - 0.35, price + 0.15, f"{label} {spec.fmt(price)}", color=colour, fontsize=font + 1,
                ha="right", va="bottom", weight="bold", zorder=6)
    for i, bc in enumerate(shown):
        b = bc.bar
        x0 = i * 1.2
        buys = {p for e in bc.patterns if e.pattern == Pattern.BUY_IMBALANCE for p in e.prices}
        sells = {p for e in bc.patterns if e.pattern == Pattern.SELL_IMBALANCE for p in e.prices}
        for lv in b.levels:
            shade = 0.12 + 0.55 * lv.volume / vmax
            ax.add_patch(Rectangle((x0, lv.price - 0.5), 1.0, 1.0, facecolor=(0.27, 0.45, 0.7, shade),
                                   edgecolor="white", linewidth=0.5, zorder=1))
            bid_c = SELL if lv.price in sells else "black"
            ask_c = BUY if lv.price in buys else "black"
            weight_b = "bold" if lv.price in sells else "normal"
            weight_a = "bold" if lv.price in buys else "normal"
            ax.text(x0 + 0.47, lv.price, f"{lv.bid}", ha="right", va="center", fontsize=font, color=bid_c,
                    weight=weight_b, zorder=3)
            ax.text(x0 + 0.5, lv.price, "x", ha="center", va="center", fontsize=font - 1, color="#555", zorder=3)
            ax.text(x0 + 0.53, lv.price, f"{lv.ask}", ha="left", va="center", fontsize=font, color=ask_c,
                    weight=weight_a, zorder=3)
        ax.add_patch(Rectangle((x0, b.poc - 0.5), 1.0, 1.0, fill=False, edgecolor="black", linewidth=1.6, zorder=4))
        colour = BUY if b.close >= b.open else SELL
        ax.plot([x0 - 0.08, x0 - 0.08], [b.low - 0.4, b.high + 0.4], color=colour, linewidth=1, zorder=2)
        ax.add_patch(Rectangle((x0 - 0.13, min(b.open, b.close) - 0.4), 0.1, abs(b.close - b.open) + 0.8,
                               facecolor=colour, zorder=2))
        ax.text(x0 + 0.5, lo - 1.4, f"{b.delta:+d}", ha="center", va="center", fontsize=font + 1,
                color=BUY if b.delta >= 0 else SELL, weight="bold")
        ax.text(x0 + 0.5, lo - 2.3, f"vol {b.volume}", ha="center", va="center", fontsize=font)
        tags = sorted({str(e.pattern).replace("_", " ").lower() for e in bc.patterns
                       if e.pattern not in (Pattern.BUY_IMBALANCE, Pattern.SELL_IMBALANCE)})
        if tags:
            ax.text(x0 + 0.5, hi + 1.2, "\n".join(tags), ha="center", va="bottom", fontsize=font - 1, color="#333")
    ax.set_xlim(-0.4, len(shown) * 1.2)
    ax.set_ylim(lo - 3, hi + 4)
    ax.set_xticks([i * 1.2 + 0.5 for i in range(len(shown))])
    ax.set_xticklabels([f"{local(bc.bar.start_ns):%H:%M:%S}" for bc in shown], fontsize=font)
    step = max(1, n_levels // 30)
    ticks = list(range(lo, hi + 1, step))
    ax.set_yticks(ticks)
    ax.set_yticklabels([spec.fmt(t) for t in ticks], fontsize=font)
    ax.set_ylabel(f"{spec.root} price")
    zone = zone_label(shown[0].bar.start_ns) if shown else zone_label()
    ax.set_xlabel(f"bar start ({zone}, {display_tz_name()}); under each bar: delta and volume; boxed: POC")
    ax.set_title(title or f"{spec.root} footprint, bid x ask per level "
                 f"({engine.settings.footprint.bar_seconds}s bars; green/red bold = buy/sell imbalance)")
    if shade_va:
        ax.legend(loc="upper left", fontsize=font)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
