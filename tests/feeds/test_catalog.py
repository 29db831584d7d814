"""The local market-data catalog: layout, listing, atomic writes, fingerprints (real DBN files)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tradebot.core.types import RawBook, RawTrade
from tradebot.feeds.catalog import (
    Catalog,
    CatalogError,
    catalog_root,
    catalog_symbol,
    combined_fingerprint,
    open_catalog_feed,
)
from tradebot.feeds.dbn_files import DbnFileFeed
from tradebot.feeds.validation import Validator

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
REAL_TBBO = DATA / "databento" / "GLBX.MDP3" / "test_data.tbbo.dbn.zst"
REAL_TRADES = DATA / "databento" / "GLBX.MDP3" / "test_data.trades.dbn.zst"
DAY = dt.date(2020, 12, 28)


def _put(cat: Catalog, src: Path, day: dt.date, schema: str = "tbbo", symbol: str = "ES") -> Path:
    with cat.stage("GLBX.MDP3", schema, symbol, day) as staged:
        shutil.copyfile(src, staged.path)
        return staged.commit({"source": "test copy", "from": src.name})


def test_layout_and_symbol_normalisation(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    assert cat.path("GLBX.MDP3", "tbbo", "ES", DAY) == tmp_path / "GLBX.MDP3/tbbo/ES/2020-12-28.dbn.zst"
    # continuous, parent and contract symbols of one root share the root's directory; tickers are upper-cased
    for sym in ("ES", "es", "ES.c.0", "ES.FUT", "ESH1", "ESH21"):
        assert cat.path("GLBX.MDP3", "tbbo", sym, DAY).parent.name == "ES", sym
    assert catalog_symbol("MES.v.0") == "MES"
    assert catalog_symbol("aapl") == "AAPL"
    assert catalog_root(Path("data")) == Path("data/catalog")


@pytest.mark.parametrize(("dataset", "schema", "symbol"), [
    ("../etc", "tbbo", "ES"), ("GLBX.MDP3", "tbbo/..", "ES"), ("GLBX.MDP3", "tick", "ES"),
    ("GLBX.MDP3", "tbbo", "../ES"), ("GLBX.MDP3", "tbbo", ""), (".hidden", "tbbo", "ES"),
])
def test_unsafe_or_unknown_names_are_refused(tmp_path: Path, dataset: str, schema: str, symbol: str) -> None:
    with pytest.raises(CatalogError):
        Catalog(tmp_path).path(dataset, schema, symbol, DAY)


def test_days_lists_only_complete_files_in_range(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    assert cat.days("GLBX.MDP3", "tbbo", "ES") == []  # a root that does not exist yet: nothing there
    days = [dt.date(2020, 12, 28), dt.date(2020, 12, 29), dt.date(2020, 12, 31), dt.date(2021, 1, 4)]
    for d in days:
        _put(cat, REAL_TBBO, d)
    folder = cat.dir("GLBX.MDP3", "tbbo", "ES")
    (folder / ".2020-12-30.dbn.zst.abc.part").write_bytes(b"DBN half")  # an interrupted write
    (folder / "2020-13-45.dbn.zst").write_bytes(b"x")  # not a date
    (folder / "notes.txt").write_text("stray")
    assert cat.days("GLBX.MDP3", "tbbo", "ES") == days
    assert cat.days("GLBX.MDP3", "tbbo", "ES", dt.date(2020, 12, 29), dt.date(2020, 12, 31)) == days[1:3]
    assert cat.files("GLBX.MDP3", "tbbo", "ES.c.0", end=dt.date(2020, 12, 29)) == [
        folder / "2020-12-28.dbn.zst", folder / "2020-12-29.dbn.zst"]
    assert cat.find("GLBX.MDP3", "tbbo", "ES", dt.date(2020, 12, 30)) is None
    assert cat.find("GLBX.MDP3", "tbbo", "ES", days[0]) == folder / "2020-12-28.dbn.zst"
    assert cat.missing("GLBX.MDP3", "tbbo", "ES", [days[0], dt.date(2020, 12, 30)]) == [dt.date(2020, 12, 30)]
    assert list(cat.entries()) == [("GLBX.MDP3", "tbbo", "ES")]


def test_a_failed_write_leaves_no_file_and_no_part(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    with pytest.raises(RuntimeError), cat.stage("GLBX.MDP3", "tbbo", "ES", DAY) as staged:
        staged.path.write_bytes(REAL_TBBO.read_bytes()[:100])
        assert not staged.final.exists()  # nothing under the final name while writing
        raise RuntimeError("connection reset mid-download")
    folder = cat.dir("GLBX.MDP3", "tbbo", "ES")
    assert sorted(p.name for p in folder.iterdir()) == []
    # leaving the block without commit (a declined or refused download) discards too
    with cat.stage("GLBX.MDP3", "tbbo", "ES", DAY) as staged:
        staged.path.write_bytes(b"partial")
    assert list(folder.iterdir()) == []


def test_leftover_part_of_a_killed_run_is_removed_by_the_next_write(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    folder = cat.dir("GLBX.MDP3", "tbbo", "ES")
    folder.mkdir(parents=True)
    leftover = folder / ".2020-12-28.dbn.zst.deadbeef.part"
    leftover.write_bytes(REAL_TBBO.read_bytes()[:50])
    assert cat.partials("GLBX.MDP3", "tbbo", "ES", DAY) == [leftover]
    assert cat.days("GLBX.MDP3", "tbbo", "ES") == []
    path = _put(cat, REAL_TBBO, DAY)
    assert not leftover.exists()
    assert path.read_bytes() == REAL_TBBO.read_bytes()


def test_a_live_writers_part_is_left_alone(tmp_path: Path) -> None:
    """Two fetches of one day: the second must not delete the first's download in progress."""
    cat = Catalog(tmp_path)
    folder = cat.dir("GLBX.MDP3", "tbbo", "ES")
    folder.mkdir(parents=True)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead = folder / f".2020-12-28.dbn.zst.{int(done.stdout)}-0a0b0c0d.part"
    live = folder / f".2020-12-28.dbn.zst.{os.getppid()}-01020304.part"  # our parent process is running
    for p in (dead, live):
        p.write_bytes(b"DBN partial")
    assert cat.partials("GLBX.MDP3", "tbbo", "ES", DAY) == [dead]
    _put(cat, REAL_TBBO, DAY)
    assert live.exists() and not dead.exists()
    assert cat.days("GLBX.MDP3", "tbbo", "ES") == [DAY]


def test_open_catalog_feed_replays_a_range_or_names_what_is_missing(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    _put(cat, REAL_TBBO, DAY)
    feed = open_catalog_feed(cat, "GLBX.MDP3", "tbbo", "ES.c.0", DAY, DAY)
    assert isinstance(feed, DbnFileFeed) and feed.paths == [cat.path("GLBX.MDP3", "tbbo", "ES", DAY)]
    with pytest.raises(CatalogError, match=r"GLBX.MDP3/mbp-10/ES: no mbp-10 days between 2020-12-28 and"):
        open_catalog_feed(cat, "GLBX.MDP3", "mbp-10", "ES", DAY, dt.date(2020, 12, 31))


def test_committed_file_replays_like_the_original(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    path = _put(cat, REAL_TBBO, DAY)

    async def run() -> tuple[int, int]:
        feed = DbnFileFeed([path])
        v = Validator()
        trades = 0
        async for ev in feed:
            if isinstance(ev, RawTrade | RawBook) and v.validate(ev) is not None and isinstance(ev, RawTrade):
                trades += 1
        return trades, v.total_rejects

    assert asyncio.run(run()) == (4, 0)  # the real file holds 4 TBBO trades, all valid


def test_fingerprint_is_sha256_and_cached_in_the_sidecar(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    path = _put(cat, REAL_TBBO, DAY)
    expected = hashlib.sha256(REAL_TBBO.read_bytes()).hexdigest()
    sidecar = Catalog.sidecar_path(path)
    info = json.loads(sidecar.read_text())
    assert info["sha256"] == expected and info["size"] == REAL_TBBO.stat().st_size
    assert info["source"] == "test copy"
    assert cat.fingerprint(path) == expected
    # The cache is what answers while size and mtime match: a doctored digest is returned as is ...
    info["sha256"] = "0" * 64
    sidecar.write_text(json.dumps(info))
    assert cat.fingerprint(path) == "0" * 64
    # ... and a file replaced in place (new bytes, new mtime) is hashed again, its provenance dropped.
    path.write_bytes(REAL_TRADES.read_bytes())
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert cat.fingerprint(path) == hashlib.sha256(REAL_TRADES.read_bytes()).hexdigest()
    after = cat.info(path)
    assert after["replaced_after_cataloguing"] is True and "source" not in after


def test_fingerprint_without_sidecar_and_on_a_read_only_catalog(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    path = _put(cat, REAL_TBBO, DAY)
    Catalog.sidecar_path(path).unlink()  # a crash between the rename and the sidecar
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    folder = path.parent
    folder.chmod(0o555)
    try:
        assert cat.fingerprint(path) == expected  # still answers, cannot cache
    finally:
        folder.chmod(0o755)
    assert cat.fingerprint(path) == expected
    assert Catalog.sidecar_path(path).is_file()


def test_manifest_and_combined_fingerprint_for_run_records(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    a = _put(cat, REAL_TBBO, dt.date(2020, 12, 28))
    b = _put(cat, REAL_TRADES, dt.date(2020, 12, 28), schema="trades")
    outside = tmp_path / "elsewhere.dbn.zst"
    shutil.copyfile(REAL_TBBO, outside)
    m = cat.manifest([a, b, outside])
    assert [f.path for f in m[:2]] == ["GLBX.MDP3/tbbo/ES/2020-12-28.dbn.zst", "GLBX.MDP3/trades/ES/2020-12-28.dbn.zst"]
    assert m[2].path == str(outside.resolve())
    assert m[0].sha256 == m[2].sha256 != m[1].sha256
    assert m[0].as_dict() == {"path": m[0].path, "sha256": m[0].sha256, "size": REAL_TBBO.stat().st_size}
    assert combined_fingerprint(m) == combined_fingerprint(list(reversed(m)))
    assert combined_fingerprint(m[:2]) != combined_fingerprint(m)
