"""Blackout files: CSV and JSON, offsets vs zones across DST, overlaps, and every kind of bad row named."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tradebot.core.blackouts import BlackoutFileError, load_blackouts, parse_blackouts
from tradebot.core.calendar import ET, NS, UTC, to_ns

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data" / "samples"


def utc(*a: int) -> int:
    return to_ns(dt.datetime(*a, tzinfo=UTC))


def test_local_times_follow_dst_and_offsets_win_over_the_zone() -> None:
    text = ("start,end,label,tz\n"
            "2025-03-07 14:00,2025-03-07 14:30,winter,America/New_York\n"
            "2025-03-10 14:00,2025-03-10 14:30,summer,America/New_York\n"
            "2025-03-10 09:00,2025-03-10 09:30,chicago,America/Chicago\n"
            "2025-03-10T20:00:00+00:00,2025-03-10T20:05:00Z,utc,America/Chicago\n")
    s = parse_blackouts(text)
    w = {b.label: b for b in s.windows}
    assert w["winter"].start_ns == utc(2025, 3, 7, 19, 0)
    assert w["summer"].start_ns == utc(2025, 3, 10, 18, 0)
    assert w["chicago"].start_ns == utc(2025, 3, 10, 14, 0)
    assert (w["utc"].start_ns, w["utc"].end_ns) == (utc(2025, 3, 10, 20, 0), utc(2025, 3, 10, 20, 5))


def test_default_zone_applies_to_rows_without_tz_and_dates_mean_midnight() -> None:
    s = parse_blackouts("start,end,label\n2025-07-04,2025-07-05,holiday\n", default_tz="America/Chicago")
    b = s.windows[0]
    assert b.start_ns == utc(2025, 7, 4, 5, 0) and b.end_ns == utc(2025, 7, 5, 5, 0)


def test_active_is_half_open_and_finds_overlapping_windows() -> None:
    s = parse_blackouts("start,end,label,tz\n"
                        "2025-03-12 10:00,2025-03-12 12:00,long,UTC\n"
                        "2025-03-12 10:30,2025-03-12 10:45,short,UTC\n"
                        "2025-03-13 10:00,2025-03-13 10:05,next day,UTC\n")
    assert [b.label for b in s.active(utc(2025, 3, 12, 10, 0))] == ["long"]
    assert [b.label for b in s.active(utc(2025, 3, 12, 10, 40))] == ["long", "short"]
    assert [b.label for b in s.active(utc(2025, 3, 12, 10, 45))] == ["long"]
    assert s.active(utc(2025, 3, 12, 12, 0)) == ()
    assert s.active(utc(2025, 3, 12, 9, 59, 59)) == ()
    assert [b.label for b in s.active(utc(2025, 3, 13, 10, 4))] == ["next day"]


def test_json_form_and_the_shipped_examples_agree() -> None:
    csv_s = load_blackouts(SAMPLES / "blackouts.example.csv")
    json_s = load_blackouts(SAMPLES / "blackouts.example.json")
    assert not csv_s.errors and not json_s.errors
    fomc = to_ns(dt.datetime(2025, 3, 19, 14, 0, tzinfo=ET))
    assert [b.label for b in csv_s.active(fomc)] == ["FOMC"] == [b.label for b in json_s.active(fomc)]
    cpi = to_ns(dt.datetime(2025, 3, 12, 8, 30, tzinfo=ET))
    assert [b.label for b in csv_s.active(cpi)] == ["CPI"]
    assert [b.label for b in json_s.active(cpi)] == ["CPI (UTC)"]
    assert len(csv_s) == 18


def test_bad_rows_are_all_named_and_strict_raises(tmp_path: Path) -> None:
    text = ("start,end,label,tz\n"
            "2025-03-12 10:00,2025-03-12 11:00,good,\n"
            "yesterday,2025-03-12 11:00,bad time,\n"
            "2025-03-12 10:00,2025-03-12 09:00,backwards,\n"
            "2025-03-12 10:00,2025-03-12 11:00,bad zone,Mars/Base\n"
            ",2025-03-12 11:00,no start,\n"
            "2025-03-12 10:00,2025-03-12 11:00,x,UTC,extra\n")
    f = tmp_path / "news.csv"
    f.write_text(text)
    with pytest.raises(BlackoutFileError) as e:
        load_blackouts(f)
    msg = str(e.value)
    for line in (3, 4, 5, 6, 7):
        assert f"news.csv:{line}:" in msg
    assert "not an ISO time" in msg and "not after start" in msg and "unknown time zone" in msg
    lenient = load_blackouts(f, strict=False)
    assert [b.label for b in lenient.windows] == ["good"] and len(lenient.errors) == 5


def test_unreadable_and_malformed_files_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BlackoutFileError, match="cannot read"):
        load_blackouts(tmp_path / "missing.csv")
    j = tmp_path / "b.json"
    j.write_text("{not json")
    with pytest.raises(BlackoutFileError, match="not JSON"):
        load_blackouts(j)
    j.write_text('{"blackouts": 3}')
    with pytest.raises(BlackoutFileError, match="expected a list"):
        load_blackouts(j)
    j.write_text('[{"start": "2025-03-12 10:00", "end": 5}, "x"]')
    with pytest.raises(BlackoutFileError, match="item 2: not an object") as e:
        load_blackouts(j)
    assert "b.json:1: needs start and end" in str(e.value)
    h = tmp_path / "h.csv"
    h.write_text("from,to\n2025-03-12,2025-03-13\n")
    with pytest.raises(BlackoutFileError, match="header must name start and end"):
        load_blackouts(h)
    b = tmp_path / "bin.csv"
    b.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(BlackoutFileError, match="not UTF-8"):
        load_blackouts(b)
    empty = tmp_path / "empty.csv"
    empty.write_text("# nothing yet\n")
    assert len(load_blackouts(empty)) == 0


def test_schedule_lookup_cost_stays_small() -> None:
    rows = "\n".join(f"2025-01-01T00:00:00Z,2025-01-01T00:10:00Z,w{i}," if i == 0 else
                     f"{(dt.datetime(2025, 1, 1, tzinfo=UTC) + dt.timedelta(hours=i)).isoformat()},"
                     f"{(dt.datetime(2025, 1, 1, 0, 10, tzinfo=UTC) + dt.timedelta(hours=i)).isoformat()},w{i},"
                     for i in range(2000))
    s = parse_blackouts("start,end,label,tz\n" + rows)
    t = utc(2025, 1, 1) + 1500 * 3600 * NS + 5 * 60 * NS
    assert [b.label for b in s.active(t)] == ["w1500"]
