"""The HTML/PNG backtest report: self-contained, tables present, images embedded and valid."""

from __future__ import annotations

import base64
import datetime as dt
import re
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg
import matplotlib.pyplot as plt

from tradebot.backtest.report import write_report
from tradebot.backtest.stats import compute_stats, fmt_usd
from tradebot.backtest.stress import run_stress
from tradebot.core.calendar import CT, local_ns
from tradebot.core.contracts import spec_for
from tradebot.execution.trades import TradeRecord

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input"}


def real_trades(max_days: int = 40) -> list[TradeRecord]:
    """RTH-open trades at real ES 5-minute bar prices (ESU24): in at the 08:30 CT open, out at the 09:25 close,
    in the direction of the overnight move; MES sizing so the $2,500 account survives."""
    spec = spec_for("ES")
    rows: dict[dt.date, dict[dt.time, tuple[int, int]]] = {}
    for line in (DATA / "sierra" / "ESU24_5m_bars.txt").read_text().splitlines()[1:]:
        f = [x.strip() for x in line.split(",")]
        d, t = dt.date(*map(int, f[0].split("/"))), dt.time.fromisoformat(f[1])
        rows.setdefault(d, {})[t] = (spec.to_ticks(Decimal(f[2])), spec.to_ticks(Decimal(f[5])))
    out: list[TradeRecord] = []
    patterns = ["SELLING_EXHAUSTION", "BUYING_ABSORPTION", "SELLING_ABSORPTION", "BUYING_EXHAUSTION"]
    for d in sorted(rows):
        bars = rows[d]
        if dt.time(8, 30) not in bars or dt.time(9, 25) not in bars or dt.time(0, 0) not in bars:
            continue
        o = bars[dt.time(8, 30)][0]
        side = 1 if o >= bars[dt.time(0, 0)][0] else -1
        out.append(TradeRecord.make(
            trade_id=f"rth-{d}", symbol="MES", side=side, quantity=2, entry_ns=local_ns(d, dt.time(8, 30), CT),
            exit_ns=local_ns(d, dt.time(9, 30), CT) - 1, entry_price=o, exit_price=bars[dt.time(9, 25)][1],
            tick_value_cents=125, commission_cents=2 * 124, pattern=patterns[len(out) % 4], regime="RANGING",
            exit_reason="time"))
        if len(out) >= max_days:
            break
    return out


class _Check(HTMLParser):
    """Collects table ids and image sources, and checks that tags nest."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tables: list[str] = []
        self.imgs: list[str] = []
        self.errors: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.tables.append(a.get("id") or "")
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        for k in ("src", "href"):
            v = a.get(k)
            if v and not v.startswith("data:"):
                self.external.append(v)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def test_report_is_self_contained_with_tables_and_images(tmp_path: Path) -> None:
    trades = real_trades()
    assert len(trades) == 40
    stats = compute_stats(trades, 250_000)
    stress = run_stress(trades, 250_000, base=stats, runs=300, seed=2)
    fp = tmp_path / "fp.png"
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    fig.savefig(fp)
    plt.close(fig)
    out = write_report("ESU24 <demo> & co", trades, stats, stress, tmp_path / "rep",
                       footprint_pngs=[fp, tmp_path / "missing.png"])
    assert out == tmp_path / "rep" / "ESU24-demo-co.html"
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text
    assert "ESU24 &lt;demo&gt; &amp; co" in text  # the run name is escaped
    p = _Check()
    p.feed(text)
    p.close()
    assert p.errors == [] and p.stack == []
    assert p.external == []
    for table in ("overall", "tiers", "monthly", "patterns", "hours", "weekdays", "slippage", "montecarlo",
                  "verdicts", "trades"):
        assert table in p.tables
    assert len(p.imgs) == 4  # equity, daily, Monte Carlo, one readable footprint
    for src in p.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "missing.png could not be read" in text
    # The figures in the tables are the computed ones.
    assert fmt_usd(stats.net_pnl_cents) in text and fmt_usd(stats.max_drawdown_cents) in text
    for g in stats.by_pattern:
        assert f"<td>{g.key}</td>" in text
    assert len(re.findall(r"<td>rth-2024-", text)) == 40
    assert ("PASSED" in text) or ("FAILED" in text)
    pngs = sorted(x.name for x in (tmp_path / "rep").glob("*.png"))
    assert pngs == ["ESU24-demo-co_daily.png", "ESU24-demo-co_equity.png", "ESU24-demo-co_montecarlo.png"]
    for name in pngs:
        raw = (tmp_path / "rep" / name).read_bytes()
        assert raw.startswith(PNG_MAGIC)
        img = mpimg.imread(tmp_path / "rep" / name)
        assert img.shape[0] >= 300 and img.shape[1] >= 600


def test_report_without_trades_or_stress(tmp_path: Path) -> None:
    stats = compute_stats([], 250_000)
    out = write_report("empty", [], stats, None, tmp_path)
    text = out.read_text()
    p = _Check()
    p.feed(text)
    assert p.errors == [] and len(p.imgs) == 2
    assert "verdicts" not in p.tables and "overall" in p.tables
    assert (tmp_path / "empty_equity.png").read_bytes().startswith(PNG_MAGIC)
