"""The malformed-input corpus: every way a market data file (or a configuration, or a command line) can be
wrong, generated on the fly from the real ES files in ``../shared/data`` (nothing large is stored).

Each :class:`Case` writes its input into a directory and says what a correct reader must make of it: the exit
code of ``analyze``, ``data inspect``, ``replay`` and the daemon (0 clean, 1 damaged but read, 2 unusable), a
word that must name the rejection or the damage, and how many events the validator must accept. That count
is not written by hand: each damaging case also writes its *reference*, the same input with the damaged
records simply left out, and the reference's count is the expectation ("one bad record costs one record").

Extension point: :data:`CASES` is a plain list. Config and CLI cases (``family="config"`` / ``"cli"``) add
``env`` and ``args`` and usually no input file; append them with :func:`register` from their own module
(``tests/support/malformed_config.py``) or below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import databento as db
import numpy as np
import zstandard

from tradebot.feeds.dbn_write import metadata_bytes, read_all, write_dbn

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
REAL_TBBO = DATA / "real" / "ES_2022-01-24_sierra.tbbo.dbn.zst"
SIERRA = DATA / "sierra" / "ES_2022-01-24_tick_dom40.txt"

COMMANDS = ("analyze", "inspect", "replay", "run")
"""The real entry points every case goes through (``run`` is the daemon, ``--feed replay``)."""

Make = Callable[[Path], tuple[list[Path], list[Path] | None]]
"""Writes a case's input under a directory: (the inputs, the reference inputs or ``None`` when the case is clean
or unusable)."""


@dataclass(frozen=True)
class Case:
    name: str
    family: str
    """``dbn``, ``csv``, ``config`` or ``cli``."""
    make: Make | None
    exit_code: int
    """What every command in ``commands`` must exit with."""
    reason: str | None = None
    """A word that must appear in the command's report (stdout or stderr) naming the rejection or damage."""
    accepted: int | None = None
    """Events the validator must accept when there is no reference file (an empty or unusable input)."""
    lost: int = 0
    """Events of records kept in the reference that the rules must still reject (the trade of a record whose
    trade is broken and whose book is fine): the expectation is the reference's count minus this."""
    min_accepted: int | None = None
    """A lower bound instead, where the loss cannot be known exactly (a zstd block lost whole)."""
    env: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    """Extra command-line arguments (before the input files)."""
    commands: tuple[str, ...] = COMMANDS
    symbol: str = "ES"


CASES: list[Case] = []


def register(*cases: Case) -> None:
    names = {c.name for c in CASES}
    for c in cases:
        assert c.name not in names, f"duplicate corpus case {c.name}"
        names.add(c.name)
        CASES.append(c)


# -- DBN -------------------------------------------------------------------------------------------------------

N_DBN = 120
"""Records of the real TBBO file in the base case (each a book event and a trade event)."""
TICK = 250_000_000
FUTURE_2090 = 3_786_912_000 * 10**9


def _tbbo() -> tuple[Any, Any]:
    store = db.DBNStore.from_file(REAL_TBBO)
    return store, store.to_ndarray().copy()


def _meta(store: Any, rec: Any) -> bytes:
    m = store.metadata
    return metadata_bytes(dataset=str(m.dataset), schema="tbbo", start_ns=int(m.start), end_ns=int(m.end),
                          symbol=str(m.symbols[0]), instrument_id=int(rec["instrument_id"][0]))


def _write(path: Path, store: Any, rec: Any) -> Path:
    write_dbn(path, _meta(store, rec), [rec], compress=path.name.endswith(".zst"))
    return path


def dbn_records(mutate: Callable[[Any], Any] | None = None, drop: tuple[int, ...] = (), *, zst: bool = False,
                n: int = N_DBN) -> Make:
    """A TBBO file of the first ``n`` real records changed by ``mutate`` (which may return a new array); the
    reference is the unchanged records without ``drop``."""

    def make(d: Path) -> tuple[list[Path], list[Path] | None]:
        store, rec = _tbbo()
        base = rec[:n].copy()
        bad = base.copy()
        out = mutate(bad) if mutate is not None else None
        bad = bad if out is None else out
        path = _write(d / ("in.dbn.zst" if zst else "in.dbn"), store, bad)
        if mutate is None:
            return [path], [path]  # clean: its own reference
        ref = _write(d / "ref.dbn", store, np.delete(base, list(drop)))
        return [path], [ref]

    return make


def dbn_bytes(damage: Callable[[bytes, int, int], bytes], drop: tuple[int, ...] | None = (), *,
              zst: bool = False, n: int = N_DBN) -> Make:
    """The base file's decompressed bytes changed by ``damage(data, metadata_length, record_length)``; the
    reference leaves out ``drop`` (``None``: no reference, the file is unusable)."""

    def make(d: Path) -> tuple[list[Path], list[Path] | None]:
        store, rec = _tbbo()
        base = rec[:n].copy()
        clean = _write(d / "clean.dbn", store, base)
        raw = read_all(clean)
        clean.unlink()
        meta_len = 8 + int.from_bytes(raw[4:8], "little")
        data = damage(raw, meta_len, base.dtype.itemsize)
        path = d / ("in.dbn.zst" if zst else "in.dbn")
        path.write_bytes(zstandard.ZstdCompressor().compress(data) if zst else data)
        if drop is None:
            return [path], None
        return [path], [_write(d / "ref.dbn", store, np.delete(base, list(drop)))]

    return make


def zst_damage(damage: Callable[[bytes], bytes]) -> Make:
    """The whole real TBBO file (two zstd blocks), its compressed bytes changed by ``damage``."""

    def make(d: Path) -> tuple[list[Path], list[Path] | None]:
        path = d / "in.dbn.zst"
        path.write_bytes(damage(REAL_TBBO.read_bytes()))
        return [path], None

    return make


def _set(field_: str, i: int, value: int) -> Callable[[Any], None]:
    def f(rec: Any) -> None:
        rec[field_][i] = value
    return f


def _at(i: int, off: int, new: bytes) -> Callable[[bytes, int, int], bytes]:
    def f(raw: bytes, meta: int, size: int) -> bytes:
        b = bytearray(raw)
        p = meta + i * size + off
        b[p:p + len(new)] = new
        return bytes(b)
    return f


def _sweep(rec: Any) -> None:
    """Records 30..32 as one aggressor's sweep: one packet (same ts_event, same sequence), three prices."""
    for k in (31, 32):
        rec["ts_event"][k] = rec["ts_event"][30]
        rec["ts_recv"][k] = rec["ts_recv"][30]
        rec["sequence"][k] = rec["sequence"][30]
        rec["price"][k] = rec["price"][30] + (k - 30) * TICK


def _repeat(rec: Any) -> Any:
    return np.insert(rec, 41, rec[40])


def _several(rec: Any) -> None:
    rec["ts_event"][10] = FUTURE_2090
    rec["size"][20] = 4_294_967_295
    rec["price"][30] += 3


def _same_seq(rec: Any) -> None:
    rec["sequence"][:] = 77


register(
    Case("dbn_clean", "dbn", dbn_records(), 0),
    Case("dbn_clean_zst", "dbn", dbn_records(zst=True), 0),
    Case("dbn_far_future_mid", "dbn", dbn_records(_set("ts_event", 50, FUTURE_2090), (50,)), 1, "future"),
    Case("dbn_far_future_first", "dbn", dbn_records(_set("ts_event", 0, FUTURE_2090), (0,)), 1, "future"),
    Case("dbn_far_future_last", "dbn", dbn_records(_set("ts_event", N_DBN - 1, FUTURE_2090), (N_DBN - 1,)), 1,
         "future"),
    Case("dbn_ts_max_u64", "dbn", dbn_records(_set("ts_event", 60, 2**64 - 2), (60,)), 1, "future"),
    Case("dbn_ts_year_later", "dbn", dbn_records(_set("ts_event", 70, 1_675_000_000 * 10**9), (70,)), 1,
         "outside_file_range"),
    Case("dbn_ts_before_span", "dbn", dbn_records(_set("ts_event", 5, 1_600_000_000 * 10**9), (5,)), 1,
         "outside_file_range"),
    Case("dbn_ts_zero", "dbn", dbn_records(_set("ts_event", 8, 0), (8,)), 1, "malformed"),
    Case("dbn_size_u32_max", "dbn", dbn_records(_set("size", 12, 4_294_967_295)), 1, "implausible_size",
         lost=1),
    Case("dbn_book_size_u32_max", "dbn", dbn_records(_set("bid_sz_00", 14, 4_294_967_295)), 1, "implausible_size",
         lost=1),
    Case("dbn_size_2_31", "dbn", dbn_records(_set("size", 16, 2**31 - 1)), 1, "implausible_size",
         lost=1),
    Case("dbn_size_zero", "dbn", dbn_records(_set("size", 18, 0)), 1, "non_positive_size",
         lost=1),
    Case("dbn_price_undef", "dbn", dbn_records(_set("price", 22, 2**63 - 1)), 1, "non_finite_price",
         lost=1),
    Case("dbn_price_negative", "dbn", dbn_records(_set("price", 24, -TICK)), 1, "non_positive_price",
         lost=1),
    Case("dbn_price_off_grid", "dbn", dbn_records(_set("price", 26, 4_500 * 10**9 + 1)), 1, "off_tick_grid",
         lost=1),
    # All three trades of the sweep are kept; the book shown before the third repeats the second's exactly (same
    # packet, same levels): that one book event is a duplicate, which costs nothing.
    Case("dbn_sweep_one_packet", "dbn", dbn_records(_sweep, ()), 0, lost=1),
    Case("dbn_true_repeat", "dbn", dbn_records(_repeat, ()), 0, "duplicate_sequence"),
    Case("dbn_all_one_sequence", "dbn", dbn_records(_same_seq, ()), 0),
    Case("dbn_crossed_book", "dbn", dbn_records(_set("bid_px_00", 28, 4_800 * 10**9)), 0, "crossed_book",
         lost=1),
    Case("dbn_unknown_instrument", "dbn", dbn_records(_set("instrument_id", 33, 4242), (33,)), 0,
         "unknown_instrument"),
    Case("dbn_ts_recv_undef", "dbn", dbn_records(_set("ts_recv", 35, 2**64 - 1)), 0),
    Case("dbn_several_bad", "dbn", dbn_records(_several, (10,)), 1, "future", lost=2),
    Case("dbn_bad_rtype_at_50", "dbn", dbn_bytes(_at(50, 1, b"\x77"), (50,)), 1, "bad_record"),
    Case("dbn_bad_rtype_zst", "dbn", dbn_bytes(_at(50, 1, b"\x77"), (50,), zst=True), 1, "bad_record"),
    Case("dbn_length_zero_mid", "dbn", dbn_bytes(_at(60, 0, b"\x00"), (60,)), 1, "resync"),
    Case("dbn_corrupt_mid", "dbn", dbn_bytes(_at(40, 7, b"\xff" * 400), tuple(range(40, 46))), 1, "resync"),
    Case("dbn_corrupt_zeros_mid", "dbn", dbn_bytes(_at(70, 0, b"\x00" * 800), tuple(range(70, 80))), 1, "resync"),
    Case("dbn_junk_appended", "dbn", dbn_bytes(lambda raw, m, s: raw + b"junk after the end " * 60), 1,
         "trailing_bytes"),
    Case("dbn_binary_junk_appended", "dbn", dbn_bytes(lambda raw, m, s: raw + bytes(range(256)) * 4),
         1, "trailing_bytes"),
    Case("dbn_truncated_mid_record", "dbn", dbn_bytes(lambda raw, m, s: raw[:-37], (N_DBN - 1,)), 1,
         "truncated_record"),
    Case("dbn_zst_missing_last_byte", "dbn", zst_damage(lambda b: b[:-1]), 1, "stream", min_accepted=2 * 1000),
    Case("dbn_empty_file", "dbn", dbn_bytes(lambda raw, m, s: b"", None), 2, "DBN"),
    Case("dbn_not_dbn", "dbn", dbn_bytes(lambda raw, m, s: b"Date,Time,Price\n" * 40, None), 2, "DBN"),
    Case("dbn_header_cut", "dbn", dbn_bytes(lambda raw, m, s: raw[:6], None), 2, "DBN"),
    Case("dbn_metadata_cut", "dbn", dbn_bytes(lambda raw, m, s: raw[:m - 10], None), 2, "DBN"),
    Case("dbn_no_records", "dbn", dbn_bytes(lambda raw, m, s: raw[:m], None), 0, accepted=0),
)


# -- CSV (Sierra Chart tick export) ------------------------------------------------------------------------------

N_CSV = 40
"""Rows of the real Sierra file in the base case (each a DOM book event and a trade event)."""


def _sierra() -> tuple[str, list[list[str]]]:
    with SIERRA.open(encoding="utf-8") as fh:
        header = fh.readline()
        rows = [next(fh).rstrip("\n").split(";") for _ in range(N_CSV)]
    return header, rows


def _col(header: str, name: str) -> int:
    return [c.strip() for c in header.split(";")].index(name)


def csv_rows(mutate: Callable[[str, list[list[str]]], list[str] | None] | None = None, drop: tuple[int, ...] = (),
             *, newline: str = "\n", reference: bool = True) -> Make:
    """The base rows, changed by ``mutate(header, rows)`` (in place, or returning whole lines to write); the
    reference is the clean rows without ``drop``."""

    def make(d: Path) -> tuple[list[Path], list[Path] | None]:
        header, rows = _sierra()
        clean = [";".join(r) for r in rows]
        bad = [list(r) for r in rows]
        lines = mutate(header, bad) if mutate is not None else None
        text_lines = lines if lines is not None else [";".join(r) for r in bad]
        path = d / "ES_ticks.txt"
        with path.open("w", encoding="utf-8", errors="surrogateescape", newline="") as fh:
            fh.write(header.rstrip("\n") + newline + newline.join(text_lines) + newline)
        if mutate is None:
            return [path], [path]  # clean: its own reference
        if not reference:
            return [path], None
        ref = d / "ref" / "ES_ticks.txt"
        ref.parent.mkdir()
        keep = [line for i, line in enumerate(clean) if i not in drop]
        ref.write_text(header + "\n".join(keep) + ("\n" if keep else ""), encoding="utf-8")
        return [path], [ref]

    return make


def _field(row: int, name: str, value: str) -> Callable[[str, list[list[str]]], None]:
    def f(header: str, rows: list[list[str]]) -> None:
        rows[row][_col(header, name)] = value
    return f


def _line(row: int, text: str) -> Callable[[str, list[list[str]]], list[str]]:
    def f(header: str, rows: list[list[str]]) -> list[str]:
        lines = [";".join(r) for r in rows]
        lines[row] = text
        return lines
    return f


def _append(text: str) -> Callable[[str, list[list[str]]], list[str]]:
    def f(header: str, rows: list[list[str]]) -> list[str]:
        return [";".join(r) for r in rows] + [text]
    return f


def _date(row: int, date: str) -> Callable[[str, list[list[str]]], None]:
    return _field(row, "Date", date)


def _all_bad(header: str, rows: list[list[str]]) -> None:
    for r in rows:
        r[_col(header, "Price")] = "x"


register(
    Case("csv_clean", "csv", csv_rows(), 0),
    Case("csv_crlf", "csv", csv_rows(lambda h, r: None, (), newline="\r\n"), 0),
    Case("csv_price_1e999999999", "csv", csv_rows(_field(5, "Price", "1e999999999"), (5,)), 1, "bad_price"),
    Case("csv_size_1e999999999", "csv", csv_rows(_field(6, "Volume", "1e999999999"), (6,)), 1, "bad_size"),
    Case("csv_size_1e999999", "csv", csv_rows(_field(7, "Volume", "1e999999"), (7,)), 1, "bad_size"),
    Case("csv_size_1e9999", "csv", csv_rows(_field(8, "Volume", "1e9999"), (8,)), 1, "bad_size"),
    Case("csv_price_1e9999", "csv", csv_rows(_field(9, "Price", "1e9999"), (9,)), 1, "bad_price"),
    Case("csv_price_minus_1e999999", "csv", csv_rows(_field(10, "Price", "-1e999999"), (10,)), 1, "bad_price"),
    Case("csv_size_digits_5000", "csv", csv_rows(_field(11, "Volume", "9" * 5000), (11,)), 1, "bad_size"),
    Case("csv_price_nan", "csv", csv_rows(_field(12, "Price", "nan"), (12,)), 1, "bad_price"),
    Case("csv_size_inf", "csv", csv_rows(_field(13, "Volume", "inf"), (13,)), 1, "bad_size"),
    Case("csv_price_empty", "csv", csv_rows(_field(14, "Price", ""), (14,)), 1, "bad_price"),
    Case("csv_size_u32_max", "csv", csv_rows(_field(15, "Volume", "4294967295")), 1, "implausible_size", lost=1),
    Case("csv_dom_size_u32_max", "csv", csv_rows(_field(16, "BidDOM_0", "4294967295")), 1, "implausible_size", lost=1),
    Case("csv_dom_size_1e999999", "csv", csv_rows(_field(17, "AskDOM_1", "1e999999"), (17,)), 1, "bad_dom_size"),
    Case("csv_dom_price_garbage", "csv", csv_rows(_field(18, "AskDOMPrice", "4500.2.5"), (18,)), 1,
         "bad_dom_price"),
    Case("csv_size_negative", "csv", csv_rows(_field(19, "Volume", "-5")), 1, "non_positive_size", lost=1),
    Case("csv_price_zero", "csv", csv_rows(_field(20, "Price", "0")), 1, "non_positive_price", lost=1),
    Case("csv_price_off_grid", "csv", csv_rows(_field(21, "Price", "4395.10")), 1, "off_tick_grid", lost=1),
    Case("csv_time_garbage", "csv", csv_rows(_field(22, "Time", "99:99:99"), (22,)), 1, "bad_timestamp"),
    Case("csv_time_fraction_too_long", "csv", csv_rows(_field(23, "Time", "13:30:00.12345678"), (23,)), 1,
         "bad_timestamp"),
    Case("csv_time_huge", "csv", csv_rows(_field(24, "Time", "9" * 400 + ":00:00"), (24,)), 1, "bad_timestamp"),
    Case("csv_date_far_future", "csv", csv_rows(_date(25, "2090-01-24"), (25,)), 1, "future"),
    Case("csv_date_next_year", "csv", csv_rows(_date(26, "2023-01-24"), (26,)), 1, "time_jump"),
    Case("csv_sequence_garbage", "csv", csv_rows(_field(27, "Sequence", "abc"), (27,)), 1, "bad_sequence"),
    Case("csv_field_200kib", "csv", csv_rows(_field(28, "Price", "4" * 200_000), (28,)), 1, "oversized_row"),
    Case("csv_line_70kib", "csv", csv_rows(_field(29, "TradeType", "x" * 70_000), (29,)), 1, "oversized_row"),
    Case("csv_nul_byte", "csv", csv_rows(_field(30, "Price", "4395\x00.25"), (30,)), 1, "nul_byte"),
    Case("csv_short_row", "csv", csv_rows(_line(31, "2022-01-24;13:30:01;1"), (31,)), 1, "short_row"),
    Case("csv_stray_quote", "csv", csv_rows(_field(32, "Price", '"4395.25'), (32,)), 1, "bad_price"),
    Case("csv_bad_utf8", "csv", csv_rows(_field(33, "Volume", "\udcff\udcfe"), (33,)), 1, "bad_size"),
    Case("csv_junk_appended", "csv", csv_rows(_append("\udcff\udcfe garbage; not a row ;;"), ()), 1,
         "short_row"),
    Case("csv_blank_lines", "csv", csv_rows(lambda h, r: [";".join(x) for x in r[:10]] + ["", "  "]
                                            + [";".join(x) for x in r[10:]], ()), 0),
    Case("csv_all_rows_bad", "csv", csv_rows(_all_bad, tuple(range(N_CSV))), 1, "bad_price"),
    Case("csv_header_only", "csv", csv_rows(lambda h, r: [], tuple(range(N_CSV)), reference=False), 0,
         accepted=0),
)
