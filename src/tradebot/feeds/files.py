"""Picks the reader for market data files, so ``--feed replay`` and ``tradebot data inspect`` agree.

Every way a file can be unusable (missing, not DBN, a CSV layout we have no mapping for, a bar file given
as ticks) becomes a :class:`~tradebot.core.config.ConfigError` with one line naming the file and what to
do, which the CLI prints before exiting 2 instead of showing a traceback.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tradebot.core.config import ConfigError
from tradebot.core.contracts import root_of
from tradebot.feeds.base import Feed
from tradebot.feeds.csv_ticks import (
    SIERRA_TICKS,
    CsvMapping,
    CsvMappingError,
    CsvTickFeed,
    looks_like_sierra_ticks,
    read_header,
)
from tradebot.feeds.dbn_files import DbnFileError, DbnFileFeed

DBN_SUFFIXES = (".dbn", ".dbn.zst")
TEXT_SUFFIXES = (".txt", ".csv")
_DBN_MAGIC = b"DBN"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def file_kind(path: Path) -> str:
    """``dbn`` or ``csv`` by extension, falling back to the first bytes for unusual names."""
    name = path.name.lower()
    if name.endswith(DBN_SUFFIXES):
        return "dbn"
    if name.endswith(TEXT_SUFFIXES):
        return "csv"
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if head.startswith(_DBN_MAGIC) or head == _ZSTD_MAGIC:
        return "dbn"
    raise ConfigError(f"{path}: unsupported file type; give a .dbn/.dbn.zst (Databento) or .txt/.csv tick file")


def csv_mapping_for(path: Path) -> CsvMapping:
    """The mapping a text file needs, recognised from its header (only Sierra Chart ticks so far)."""
    header = read_header(path, ";")
    if looks_like_sierra_ticks(header):
        return SIERRA_TICKS
    if looks_like_sierra_ticks([*header, "TradeType"]):  # the export without its trade-type column: sides inferred
        return dataclasses.replace(SIERRA_TICKS, side=None, name="sierra-chart-ticks-no-side")
    if len(header) == 1 and "," in header[0]:
        header = read_header(path, ",")
    cols = ", ".join(header[:12])
    if {"Open", "High", "Low"} <= set(header):
        raise ConfigError(f"{path}: holds bars ({cols}), not ticks; replay needs tick-by-tick trades")
    raise ConfigError(
        f"{path}: unknown tick layout (columns: {cols}); build a CsvMapping naming the time, price, size and "
        f"side columns and use CsvTickFeed(path, mapping, symbol) directly")


def symbol_for_csv(path: Path, symbol: str | None) -> str:
    """The symbol a CSV's trades carry: as given, else the contract root at the start of the file name.

    A given symbol of another contract than the file name says is refused: the daemon's default symbol
    (MES) silently relabelling an ES file would price every tick at a tenth of its value.
    """
    guess = path.name.split("_", 1)[0].split(".", 1)[0]
    named = root_of(guess)
    if symbol:
        if named and root_of(symbol) != named:
            raise ConfigError(f"{path}: the file name says {named} but the symbol is {symbol}; "
                              f"pass --symbol {named} (or rename the file)")
        return symbol
    if named:
        return guess
    raise ConfigError(f"{path}: which contract is this? give --symbol (e.g. ES)")


def open_file_feed(paths: list[Path], speed: float = 0.0, symbol: str | None = None) -> Feed:
    """One feed over the files: DBN files (merged in time order) or one tick text file.

    ``symbol`` names the contract of a text file (DBN files carry their own symbology and ignore it).
    """
    if not paths:
        raise ConfigError("no input files given")
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise ConfigError(f"{p}: no such file")
    kinds = {file_kind(p) for p in paths}
    if kinds == {"dbn"}:
        try:
            return DbnFileFeed(paths, speed=speed)
        except DbnFileError as exc:
            raise ConfigError(str(exc)) from exc
    if len(paths) > 1:
        raise ConfigError("tick text files replay one at a time (DBN files can be merged)")
    path = paths[0]
    mapping = csv_mapping_for(path)
    try:
        return CsvTickFeed(path, mapping, symbol_for_csv(path, symbol), speed=speed)
    except (CsvMappingError, FileNotFoundError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
