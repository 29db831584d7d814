"""A local market-data catalog: one DBN file per (dataset, schema, symbol, trading day).

Layout: ``<root>/<DATASET>/<schema>/<SYMBOL>/<YYYY-MM-DD>.dbn.zst`` (root default ``data/catalog``, i.e.
``TRADEBOT_DATA_DIR/catalog``), e.g. ``data/catalog/GLBX.MDP3/tbbo/ES/2025-03-10.dbn.zst``. ``SYMBOL`` is the
contract root for futures (whatever was requested: ``ES.c.0``, ``ES.FUT``, ``ESM5``) and the ticker otherwise;
the day is the exchange *trading date* (a Globex session that opens Sunday evening is Monday's file).

Why it is built like this:

* **A file under its final name is complete.** Every write goes to a hidden ``.part`` file in the same
  directory, is fsynced, then renamed (atomic on POSIX). An interrupted download leaves at most a ``.part``,
  which the next write of that day deletes; resuming a paid download never trusts a half file.
* **Fingerprints for run records.** A backtest records which bytes it read: the sha256 of each file, cached
  in a sidecar ``<file>.json`` next to it (with size and mtime so a replaced file is re-hashed, never
  trusted), plus what produced the file (vendor request, generator seed).
* **Light.** Only the standard library: listing days or fingerprinting files imports no numpy/databento.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradebot.core.contracts import root_of

DEFAULT_ROOT = Path("data/catalog")
SUFFIX = ".dbn.zst"
SIDECAR = ".json"
PART = ".part"
SCHEMAS = ("mbo", "mbp-1", "mbp-10", "tbbo", "trades", "bbo-1s", "bbo-1m", "ohlcv-1s", "ohlcv-1m", "ohlcv-1h",
           "ohlcv-1d", "definition", "statistics", "status", "imbalance")
"""Databento's schema names: a directory level, so anything else would be a typo stored forever."""
MARKET_SCHEMAS = ("tbbo", "trades", "mbp-1", "mbp-10")
"""What ``tradebot data fetch``/``synth`` store: the schemas a replay turns into trades and books."""
SIM_DATASET = "SIM.GLBX"
"""Synthetic Globex look-alike data (``tradebot data synth``): never filed under a real vendor dataset."""
POLYGON_DATASET = "POLYGON"
"""Polygon/Massive REST downloads (``tradebot data fetch --source polygon``)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})" + re.escape(SUFFIX) + "$")
_HASH_BLOCK = 1 << 20


class CatalogError(ValueError):
    """A bad key (unsafe or unknown name) or an unusable catalog directory."""


def catalog_symbol(symbol: str) -> str:
    """The directory a symbol's files live in: the futures root (``ES.c.0``/``ESM5`` -> ``ES``), else the
    upper-cased ticker (``aapl`` -> ``AAPL``)."""
    s = symbol.strip()
    root = root_of(s)
    name = root if root is not None else s.upper()
    if not _NAME.match(name):
        raise CatalogError(f"symbol {symbol!r} cannot name a catalog directory")
    return name


def _check(dataset: str, schema: str) -> None:
    if not _NAME.match(dataset) or dataset.startswith("."):
        raise CatalogError(f"dataset {dataset!r} cannot name a catalog directory")
    if schema not in SCHEMAS:
        raise CatalogError(f"unknown schema {schema!r}; one of {', '.join(SCHEMAS)}")


@dataclass(frozen=True, slots=True)
class CatalogKey:
    """One day's file. ``symbol`` is normalised (see :func:`catalog_symbol`)."""

    dataset: str
    schema: str
    symbol: str
    day: dt.date

    @classmethod
    def of(cls, dataset: str, schema: str, symbol: str, day: dt.date) -> CatalogKey:
        _check(dataset, schema)
        return cls(dataset, schema, catalog_symbol(symbol), day)

    @property
    def relpath(self) -> Path:
        return Path(self.dataset, self.schema, self.symbol, f"{self.day.isoformat()}{SUFFIX}")


@dataclass(frozen=True, slots=True)
class FileFingerprint:
    """What a run record keeps about one input file."""

    path: str
    """Relative to the catalog root when the file is inside it, else absolute."""
    sha256: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def combined_fingerprint(prints: Iterable[FileFingerprint]) -> str:
    """One sha256 over a set of files (order-independent): "these exact inputs" in one string."""
    h = hashlib.sha256()
    for fp in sorted(prints, key=lambda f: f.path):
        h.update(f"{fp.path}\0{fp.sha256}\0{fp.size}\n".encode())
    return h.hexdigest()


def combined_fingerprint_of(paths: Iterable[Path]) -> str:
    """:func:`combined_fingerprint` of files outside a catalog (a folder of DBN or bar files), by name, hash, size."""
    prints = []
    for p in paths:
        st = p.stat()
        prints.append(FileFingerprint(str(p.name), sha256_file(p), st.st_size))
    return combined_fingerprint(prints)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened for fsync
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _writer_alive(part: Path) -> bool:
    """Whether the process named in a ``.part`` file's name still runs (unknown names count as dead)."""
    try:
        pid = int(part.name[: -len(PART)].rsplit(".", 1)[-1].split("-", 1)[0])
    except ValueError:
        return False
    if pid == os.getpid():
        return False  # our own earlier attempt (a retry within this process)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{PART}")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class StagedFile:
    """A day being written: ``path`` is the hidden temporary file; :meth:`commit` publishes it.

    Leaving the ``with`` block without committing (an exception, a refused download) deletes the temporary
    file, so nothing half-written ever carries the final name.
    """

    catalog: Catalog
    key: CatalogKey
    path: Path
    final: Path
    committed: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def commit(self, info: dict[str, Any] | None = None) -> Path:
        if self.committed:
            raise CatalogError(f"{self.final}: already committed")
        if not self.path.is_file():
            raise CatalogError(f"{self.path}: nothing was written")
        with self.path.open("rb+") as fh:  # the writer may not have synced (a vendor client never does)
            os.fsync(fh.fileno())
        os.replace(self.path, self.final)
        _fsync_dir(self.final.parent)
        self.committed = True
        self.catalog._write_sidecar(self.final, {**(info or {}), **self.info})
        return self.final

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class Catalog:
    """The catalog under ``root``; every method is safe on a root that does not exist yet (nothing there)."""

    def __init__(self, root: Path | str = DEFAULT_ROOT) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Catalog({str(self.root)!r})"

    # -- paths -------------------------------------------------------------------------------------

    def path(self, dataset: str, schema: str, symbol: str, day: dt.date) -> Path:
        """Where the day's file lives (whether or not it exists)."""
        return self.root / CatalogKey.of(dataset, schema, symbol, day).relpath

    def dir(self, dataset: str, schema: str, symbol: str) -> Path:
        _check(dataset, schema)
        return self.root / dataset / schema / catalog_symbol(symbol)

    def find(self, dataset: str, schema: str, symbol: str, day: dt.date) -> Path | None:
        """The day's file if the catalog has it complete, else ``None``."""
        p = self.path(dataset, schema, symbol, day)
        return p if p.is_file() else None

    def days(self, dataset: str, schema: str, symbol: str, start: dt.date | None = None,
             end: dt.date | None = None) -> list[dt.date]:
        """Trading days present (complete) for the key, ascending, ``start``/``end`` inclusive."""
        d = self.dir(dataset, schema, symbol)
        if not d.is_dir():
            return []
        out: list[dt.date] = []
        for entry in d.iterdir():
            m = _DAY_FILE.match(entry.name)
            if m is None or not entry.is_file():
                continue  # sidecars, .part leftovers, strays
            try:
                day = dt.date.fromisoformat(m.group(1))
            except ValueError:
                continue
            if (start is None or day >= start) and (end is None or day <= end):
                out.append(day)
        return sorted(out)

    def files(self, dataset: str, schema: str, symbol: str, start: dt.date | None = None,
              end: dt.date | None = None) -> list[Path]:
        """The files of :meth:`days`, in date order (what a multi-day replay is given)."""
        return [self.path(dataset, schema, symbol, day) for day in self.days(dataset, schema, symbol, start, end)]

    def missing(self, dataset: str, schema: str, symbol: str, days: Iterable[dt.date]) -> list[dt.date]:
        have = set(self.days(dataset, schema, symbol))
        return [d for d in days if d not in have]

    def entries(self) -> Iterator[tuple[str, str, str]]:
        """Every (dataset, schema, symbol) directory holding at least one day."""
        if not self.root.is_dir():
            return
        for ds in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for sc in sorted(p for p in ds.iterdir() if p.is_dir() and p.name in SCHEMAS):
                for sy in sorted(p for p in sc.iterdir() if p.is_dir()):
                    if any(_DAY_FILE.match(f.name) for f in sy.iterdir()):
                        yield ds.name, sc.name, sy.name

    # -- writing -----------------------------------------------------------------------------------

    def partials(self, dataset: str, schema: str, symbol: str, day: dt.date) -> list[Path]:
        """Leftover temporary files of a day: writes that were interrupted (their process is gone)."""
        final = self.path(dataset, schema, symbol, day)
        if not final.parent.is_dir():
            return []
        return sorted(p for p in final.parent.glob(f".{final.name}.*{PART}") if not _writer_alive(p))

    @contextlib.contextmanager
    def stage(self, dataset: str, schema: str, symbol: str, day: dt.date) -> Iterator[StagedFile]:
        """``with catalog.stage(...) as staged: write(staged.path); staged.commit(info)``.

        The temporary path does not exist yet (vendor clients refuse to overwrite); leftovers of earlier,
        dead writers of the same day are deleted first. The temporary name carries the writer's pid, so a
        second process writing the same day does not delete a live download (the last commit wins; both are
        complete files).
        """
        key = CatalogKey.of(dataset, schema, symbol, day)
        final = self.root / key.relpath
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CatalogError(f"{final.parent}: cannot create the catalog directory ({exc.strerror or exc})") from exc
        for stale in self.partials(dataset, schema, symbol, day):
            stale.unlink(missing_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}{PART}")
        staged = StagedFile(self, key, tmp, final)
        try:
            yield staged
        finally:
            if not staged.committed:
                staged.discard()

    # -- fingerprints --------------------------------------------------------------------------------

    @staticmethod
    def sidecar_path(path: Path) -> Path:
        return path.with_name(path.name + SIDECAR)

    def info(self, path: Path) -> dict[str, Any]:
        """The sidecar of a file (empty when it has none or it is unreadable)."""
        try:
            obj = json.loads(self.sidecar_path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return obj if isinstance(obj, dict) else {}

    def _write_sidecar(self, path: Path, info: dict[str, Any]) -> dict[str, Any]:
        st = path.stat()
        record = {**info, "file": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                  "sha256": sha256_file(path)}
        with contextlib.suppress(OSError):  # a read-only catalog still fingerprints, it just cannot cache
            atomic_write_text(self.sidecar_path(path), json.dumps(record, indent=1, sort_keys=True) + "\n")
        return record

    def fingerprint(self, path: Path) -> str:
        """sha256 of the file's bytes; from the sidecar when size and mtime still match, else recomputed."""
        path = Path(path)
        st = path.stat()
        info = self.info(path)
        digest = info.get("sha256")
        if isinstance(digest, str) and info.get("size") == st.st_size and info.get("mtime_ns") == st.st_mtime_ns:
            return digest
        # The bytes changed since they were catalogued: what the sidecar says produced them no longer holds.
        kept = {"replaced_after_cataloguing": True} if digest else {}
        return str(self._write_sidecar(path, kept)["sha256"])

    def manifest(self, paths: Iterable[Path]) -> list[FileFingerprint]:
        """Fingerprints of the files a run reads, paths relative to the catalog root where possible."""
        out: list[FileFingerprint] = []
        root = self.root.resolve()
        for p in paths:
            p = Path(p)
            resolved = p.resolve()
            try:
                name = str(resolved.relative_to(root))
            except ValueError:
                name = str(resolved)
            out.append(FileFingerprint(name, self.fingerprint(p), p.stat().st_size))
        return out


def open_catalog_feed(catalog: Catalog, dataset: str, schema: str, symbol: str, start: dt.date, end: dt.date, *,
                      speed: float = 0.0) -> Any:
    """A :class:`~tradebot.feeds.dbn_files.DbnFileFeed` over the catalog's days in ``start..end`` (replay,
    backtests). Raises :class:`CatalogError` naming the directory when there is no day in the range."""
    files = catalog.files(dataset, schema, symbol, start, end)
    if not files:
        raise CatalogError(f"{catalog.dir(dataset, schema, symbol)}: no {schema} days between {start} and {end}; "
                           f"see 'tradebot data fetch' or 'tradebot data synth'")
    from tradebot.feeds.dbn_files import DbnFileFeed  # lazy: listing the catalog must not import databento

    return DbnFileFeed(files, speed=speed, schema=schema)


def catalog_root(data_dir: Path | str | None) -> Path:
    """The default root for a settings ``data_dir`` (``data`` -> ``data/catalog``)."""
    return DEFAULT_ROOT if data_dir is None else Path(data_dir) / "catalog"


__all__ = [
    "DEFAULT_ROOT", "MARKET_SCHEMAS", "POLYGON_DATASET", "SCHEMAS", "SIM_DATASET", "SUFFIX", "Catalog",
    "CatalogError", "CatalogKey", "FileFingerprint", "StagedFile", "atomic_write_text", "catalog_root",
    "catalog_symbol", "combined_fingerprint", "open_catalog_feed", "sha256_file",
]
