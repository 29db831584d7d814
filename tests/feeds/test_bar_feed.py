"""The bar feed on the real Sierra ES 5-minute files: counts, session history, holidays, rolls, damaged rows."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tradebot.core.calendar import CT, from_ns, local_ns
from tradebot.feeds.bars import BarMapping, continuous, read_bars

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "sierra"
FIVE = DATA / "5m"

pytestmark = pytest.mark.skipif(not (FIVE / "ESH15_5m_bars.txt").exists(), reason="shared Sierra bar data absent")


def _local(ts: int) -> dt.datetime:
    return from_ns(int(ts), CT)


@pytest.fixture(scope="module")
def esh15():
    return read_bars(FIVE / "ESH15_5m_bars.txt")


@pytest.fixture(scope="module")
def esm15():
    return read_bars(FIVE / "ESM15_5m_bars.txt")


def test_row_counts_and_rejects_of_a_real_file(esh15):
    b = esh15
    assert b.rows == 16_583  # data lines of the file
    assert len(b) == 16_577
    assert {k: v for k, v in b.rejects.items() if v} == {
        "after_historical_close": 3, "historical_halt": 2, "market_closed": 1}
    assert b.examples["historical_halt"] == ["2015/1/15 15:15:00", "2015/2/18 15:15:00"]
    assert b.symbol == "ES" and set(b.contract) == {"ESH15"}
    assert (np.diff(b.start_ns) > 0).all()
    assert (b.bid_volume + b.ask_volume <= b.volume).all()
    assert (b.low <= np.minimum(b.open, b.close)).all() and (b.high >= np.maximum(b.open, b.close)).all()
    first = _local(b.start_ns[0])
    assert first.replace(tzinfo=None) == dt.datetime(2014, 12, 23, 18, 0)
    assert dt.date.fromordinal(int(b.trading_date[0])) == dt.date(2014, 12, 24)


def test_2015_session_history_halt_and_1615_close(esh15):
    b = esh15
    local = [_local(t) for t in b.start_ns]
    times = {x.time() for x in local}
    # the 15:15-15:30 halt: no accepted bar starts inside it, the 15:10 bar ends at the halt
    assert not any(dt.time(15, 15) <= t < dt.time(15, 30) for t in times)
    i = next(k for k, x in enumerate(local) if x.time() == dt.time(15, 10) and x.date() == dt.date(2015, 1, 6))
    assert _local(b.end_ns[i]).time() == dt.time(15, 15)
    # the 16:15 close before 2015-09-21: the 16:10 bar exists and the plain calendar disagrees with it
    assert dt.time(16, 10) in times
    assert b.notes["calendar_disagrees"] == 171
    # after 2021-06-28 the halt is gone and the close is 16:00
    u21 = read_bars(FIVE / "ESU21_5m_bars.txt")
    lt = [_local(t) for t in u21.start_ns]
    after = {x.time() for x in lt if x.date() >= dt.date(2021, 6, 28)}
    before = {x.time() for x in lt if x.date() < dt.date(2021, 6, 26)}
    assert dt.time(15, 20) in after and dt.time(15, 20) not in before
    assert max(t for t in after if t < dt.time(17, 0)) == dt.time(15, 55)


def test_holidays_and_early_closes(esm15):
    b = esm15
    days = set(b.days())
    memorial = [_local(t) for t, d in zip(b.start_ns, b.trading_date, strict=True)
                if d == dt.date(2015, 5, 25).toordinal()]  # Memorial Day: a short holiday session to 12:00 CT
    assert memorial and max(memorial).replace(tzinfo=None) < dt.datetime(2015, 5, 25, 12, 0)
    # Good Friday 2015: a short session to 08:15 CT (payrolls day); Sierra's 08:15 bar is reported, not kept
    friday = [_local(t) for t, d in zip(b.start_ns, b.trading_date, strict=True)
              if d == dt.date(2015, 4, 3).toordinal()]
    assert friday and max(friday).replace(tzinfo=None) == dt.datetime(2015, 4, 3, 8, 10)
    assert dt.date(2015, 4, 4) not in days
    assert b.rejects["market_closed"] >= 1
    assert any(e.startswith("2015/4/3") for e in b.examples["market_closed"])
    z15 = read_bars(FIVE / "ESZ15_5m_bars.txt")
    thanksgiving = [_local(t) for t, d in zip(z15.start_ns, z15.trading_date, strict=True)
                    if d == dt.date(2015, 11, 26).toordinal()]
    assert thanksgiving and max(thanksgiving).replace(tzinfo=None) < dt.datetime(2015, 11, 26, 12, 0)
    assert dt.date(2015, 12, 25) not in set(z15.days())


def test_expiry_roll_front_contract_and_no_double_counting(esh15, esm15, tmp_path):
    s = continuous([esm15, esh15])  # any order in, expiry order out
    assert len(s) == len(esh15) + len(esm15)
    assert [(r.day, r.old, r.new) for r in s.rolls] == [(dt.date(2015, 3, 23), "ESH15", "ESM15")]
    last_h = _local(esh15.start_ns[-1])
    assert last_h.replace(tzinfo=None) == dt.datetime(2015, 3, 20, 8, 25)  # the expiry's last bar
    assert s.volume.sum() == esh15.volume.sum() + esm15.volume.sum()
    # overlapping files: a later contract's copy of days the earlier one covers is counted, not added
    src = (FIVE / "ESM15_5m_bars.txt").read_text().splitlines()
    h_lines = (FIVE / "ESH15_5m_bars.txt").read_text().splitlines()
    tail = [ln for ln in h_lines[1:] if ln.startswith("2015/3/1")]  # ESH15's days 2015-03-1x
    over = tmp_path / "ESM15_5m_bars.txt"
    over.write_text("\n".join([src[0], *tail, *src[1:]]) + "\n")
    m2 = read_bars(over)
    s2 = continuous([esh15, m2])
    assert s2.rejects["not_front"] == len(tail)
    assert s2.volume.sum() == s.volume.sum()
    assert (np.diff(s2.start_ns) > 0).all()
    adj = continuous([esh15, esm15], adjust="difference")
    gap = adj.rolls[0].gap_ticks
    assert gap is not None and (adj.close[: len(esh15)] == esh15.close + gap).all()
    assert (adj.close[len(esh15):] == esm15.close).all()


def test_damaged_rows_are_counted_by_reason(tmp_path):
    good = "2015/01/06, 10:{:02d}:00, 2000.00, 2001.00, 1999.75, 2000.50, 100, 40, 45, 50"
    rows = [good.format(m) for m in range(0, 30, 5)]
    rows += [
        "2015/01/06, 10:30:00, 2000.00, 1999.00, 1999.75, 2000.50, 100, 40, 45, 50",  # high < low
        "2015/01/06, 10:35:00, 2000.10, 2001.00, 1999.75, 2000.50, 100, 40, 45, 50",  # off grid
        "2015/01/06, 10:40:00, 2000.00, 2001.00, 1999.75, 2000.50, 100, 40, 60, 50",  # bid + ask > volume
        "2015/01/06, 10:45:00, 2000.00, 2001.00, 1999.75, 2000.50, -1, 40, 0, 0",  # negative
        "2015/01/06, 10:50:00, 2000.00, abc, 1999.75, 2000.50, 100, 40, 45, 50",  # malformed
        "2015/01/06, 10:25:00, 2000.00, 2001.00, 1999.75, 2000.50, 100, 40, 45, 50",  # same time again
        "2015/01/06, 10:10:00, 2000.00, 2001.00, 1999.75, 2000.50, 100, 40, 45, 50",  # out of order
        "2015/01/06, 15:20:00, 2000.00, 2001.00, 1999.75, 2000.50, 100, 40, 45, 50",  # 2015 halt
        "2015/01/06, 16:20:00, 2000.00, 2001.00, 1999.75, 2000.50, 100, 40, 45, 50",  # after the 16:15 close
        "2015/01/10, 10:00:00, 2000.00, 2001.00, 1999.75, 2000.50, 100, 40, 45, 50",  # Saturday
        "2015/01/06, 0:00:00, 0, 0, 0, 0, 100, 40, 45, 50",  # zero price
    ]
    f = tmp_path / "ESH15_test_bars.txt"
    f.write_text("Date, Time, Open, High, Low, Last, Volume, NumberOfTrades, BidVolume, AskVolume\n"
                 + "\n".join(rows) + "\n")
    b = read_bars(f)
    assert len(b) == 6
    assert {k: v for k, v in b.rejects.items() if v} == {
        "ohlc_inconsistent": 1, "off_tick_grid": 1, "bid_ask_exceeds_volume": 1, "negative_volume": 1,
        "malformed": 1, "duplicate": 1, "out_of_order": 1, "market_closed": 1, "historical_halt": 1,
        "after_historical_close": 1, "non_positive_price": 1}
    # the same file through the command: the report on stdout, exit 1 for the malformed row
    r = subprocess.run([sys.executable, "-m", "tradebot", "data", "inspect", str(f), "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    rep = json.loads(r.stdout)["files"][0]
    assert rep["format"] == "bars" and rep["bars"]["count"] == 6
    assert rep["validation"]["rejected"] == 11
    clean = tmp_path / "ESH15_clean.txt"
    clean.write_text("Date, Time, Open, High, Low, Last, Volume, NumberOfTrades, BidVolume, AskVolume\n"
                     + "\n".join(rows[:6]) + "\n")
    r = subprocess.run([sys.executable, "-m", "tradebot", "data", "inspect", str(clean)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "6 over 1 trading days" in r.stdout and "text bars with bid/ask volume" in r.stdout


def test_column_mapping_for_other_exports(tmp_path):
    f = tmp_path / "es_bars.csv"
    f.write_text("ts;o;h;l;c;v;bv;av\n"
                 "2022-01-24 19:30:00;4380.25;4381.00;4379.50;4380.75;1200;600;580\n"
                 "2022-01-24 19:35:00;4380.75;4382.00;4380.00;4381.50;900;400;480\n")
    m = BarMapping.from_text("datetime=ts,open=o,high=h,low=l,close=c,volume=v,bid_volume=bv,ask_volume=av,"
                             "trades=,timezone=UTC,separator=;")
    b = read_bars(f, "ES", m)
    assert len(b) == 2 and b.rows == 2
    assert int(b.start_ns[0]) == local_ns(dt.date(2022, 1, 24), dt.time(19, 30), dt.UTC)
    assert list(b.delta) == [-20, 80] and list(b.close) == [17523, 17526]
    with pytest.raises(ValueError, match="unknown key"):
        BarMapping.from_text("colour=red")


def test_ambiguous_autumn_hour_keeps_both_bars(tmp_path):
    # 2022-11-06 01:00-01:59 CT happens twice; a 24 h export lists both passes in order
    head = "Date, Time, Open, High, Low, Last, Volume, NumberOfTrades, BidVolume, AskVolume\n"
    rows = [f"2022/11/06, {h}, 3800.00, 3800.25, 3799.75, 3800.00, 10, 5, 4, 5" for h in
            ("00:55:00", "01:00:00", "01:30:00", "01:00:00", "01:30:00", "02:00:00")]
    f = tmp_path / "ESZ22_dst.txt"
    f.write_text(head + "\n".join(rows) + "\n")
    b = read_bars(f)
    # Sunday 00:55-02:00 CT is outside the Globex week: all refused as market_closed, none as out of order
    assert b.rejects["market_closed"] == 6 and b.rejects["out_of_order"] == 0 and b.rejects["duplicate"] == 0


def test_inspect_several_files_reports_the_series_and_its_rolls():
    r = subprocess.run([sys.executable, "-m", "tradebot", "data", "inspect", str(FIVE / "ESM15_5m_bars.txt"),
                        str(FIVE / "ESH15_5m_bars.txt"), "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [f["contract"] for f in doc["files"]] == ["ESM15", "ESH15"]
    assert doc["series"]["rolls"] == [{"day": "2015-03-23", "old": "ESH15", "new": "ESM15", "gap_ticks": 5}]
    assert doc["series"]["bars"] == sum(f["bars"]["count"] for f in doc["files"]) and doc["series"]["not_front"] == 0


def test_inspect_report_of_a_real_file():
    from tradebot.core.config import Settings
    from tradebot.feeds.inspect import inspect_file, render

    rep = inspect_file(FIVE / "ESH15_5m_bars.txt", None, Settings())
    assert rep["records"]["rows"] == 16_583 and rep["validation"]["accepted"] == 16_577
    assert rep["validation"]["notes"] == {"calendar_disagrees": 171} and not rep["errors"]
    assert rep["bars"]["trading_days"] == 61 and rep["contract"] == "ESH15"
    assert "historical_halt: 2015/1/15 15:15:00, 2015/2/18 15:15:00" in render(rep)
