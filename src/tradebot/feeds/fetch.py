"""``tradebot data fetch``: download market data into the local catalog, one file per trading day.

Databento (``--source databento``, the default) costs money per request, so the command is built around
not paying twice and not paying by surprise:

* **Cost first.** ``metadata.get_cost`` (plus record count and billable size) for exactly the days still
  missing, shown before anything is downloaded. A terminal asks ``[y/N]``; ``--yes`` accepts; a
  non-interactive run without ``--yes`` refuses (a cron job must not spend money nobody saw);
  ``--max-cost`` caps what even ``--yes`` accepts.
* **Resumable.** Days complete in the catalog are skipped (and not in the estimate). Each day streams into
  a hidden ``.part`` file, is checked to be a whole DBN stream (:func:`~tradebot.feeds.dbn_write.scan_dbn`),
  and only then renamed into place (:class:`~tradebot.feeds.catalog.Catalog`). A failure mid-range keeps
  the days already done and leaves no partial file; the same command resumes.
* **Days are exchange sessions.** ``--start``/``--end`` are trading dates of the contract's calendar
  (weekends and holidays have no file); a day is requested from its Globex open to its close (17:00 CT the
  evening before to 16:00 CT), so a day's file is what the engine calls that trading day. A session that
  has not closed, or that the dataset does not cover yet, is skipped with a note: a partial day must never
  be filed as complete.
* **Symbols.** ``ES`` is requested as ``ES.c.0`` (continuous front month: one contract per day, no spreads);
  ``ES.v.0``/``ES.n.0`` as given; ``ES.FUT`` as the parent (every ES contract *and spread*: the spreads'
  prices are not outright prices); ``ESM5`` as a raw symbol. Files land under the root (``.../ES/``).

Polygon (``--source polygon --ticker T --date D``) runs the project's own
:class:`~tradebot.feeds.polygon_rest.PolygonHistoryFeed` (its retry policy, pagination and side inference)
and stores the day as DBN **MBP-1** under dataset ``POLYGON``: every quote as a book record (action ``M``)
and every trade as an action-``T`` record carrying the quote in force before it, so the one DBN replay path
reads vendor, Polygon and synthetic data alike. Polygon equity trades carry no aggressor flag, so the file
says ``N`` (no side) as the source did: every read infers the side in the validation layer (quote rule against
the stored quote, tick rule otherwise; :mod:`tradebot.feeds.sides`) and labels each trade with the rule used,
where a stored guess would replay as if the exchange had said it. Minute-aggregate approximations are never
stored.

Every failure (auth, 4xx/5xx, network, a broken download) is one line on stderr and a non-zero exit:
0 done (or nothing to do), 1 download failed / declined / refused, 2 bad arguments or configuration.

Size: `tradebot data fetch` end to end for both vendors: cost estimate, confirmation, resumable days and the
catalog, with the vendors' error handling that decides what is retried.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

from tradebot.core.calendar import Session, calendar_for
from tradebot.core.config import ConfigError, Settings
from tradebot.core.contracts import UnknownContractError, root_of, spec_for
from tradebot.core.logging import get_logger
from tradebot.feeds.catalog import (
    MARKET_SCHEMAS,
    POLYGON_DATASET,
    SIM_DATASET,
    Catalog,
    CatalogError,
    catalog_root,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

log = get_logger("tradebot.feeds.fetch")

NY = ZoneInfo("America/New_York")
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class FetchError(Exception):
    """A download that cannot go on; the message is the one line the operator sees."""


class NeedsConfirmationError(FetchError):
    """Money would be spent without anyone having said yes."""


# --- symbols and days -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestSymbol:
    symbol: str
    """As sent to Databento (``ES.c.0``)."""
    stype_in: str
    root: str
    """The catalog directory (``ES``)."""


def request_symbol(symbol: str) -> RequestSymbol:
    """How a ``--symbol`` is requested: root -> continuous front month; otherwise by its own form."""
    s = symbol.strip()
    root = root_of(s)
    if root is None:
        raise ConfigError(f"--symbol {symbol!r}: not a known futures contract (e.g. ES, ES.c.0, ES.FUT, ESM5)")
    up = s.upper()
    if up.endswith(".FUT"):
        return RequestSymbol(f"{root}.FUT", "parent", root)
    parts = s.split(".")
    if len(parts) == 3 and parts[1].lower() in ("c", "v", "n") and parts[2].isdigit():
        return RequestSymbol(f"{root}.{parts[1].lower()}.{int(parts[2])}", "continuous", root)
    if up == root:
        return RequestSymbol(f"{root}.c.0", "continuous", root)
    return RequestSymbol(up, "raw_symbol", root)


def parse_date(text: str | None, flag: str) -> dt.date:
    if text is None or not text.strip():
        raise ConfigError(f"{flag} is required (YYYY-MM-DD)")
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: not a date (YYYY-MM-DD)") from None


def trading_sessions(root: str, start: dt.date, end: dt.date) -> list[Session]:
    """The contract's sessions with trading dates in ``start..end`` (inclusive); weekends/holidays have none."""
    if end < start:
        raise ConfigError(f"--end {end} is before --start {start}")
    cal = calendar_for(spec_for(root).session)
    if start < cal.first_date or end > cal.last_date:
        raise ConfigError(f"{start}..{end}: outside the exchange calendar ({cal.first_date} to {cal.last_date})")
    return cal.sessions_between(start, end)


def _runs(sessions: list[Session], all_sessions: list[Session]) -> list[list[Session]]:
    """Consecutive calendar sessions grouped: one cost request per run instead of one per day."""
    index = {s.trading_date: i for i, s in enumerate(all_sessions)}
    runs: list[list[Session]] = []
    for s in sessions:
        if runs and index[s.trading_date] == index[runs[-1][-1].trading_date] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


# --- errors ---------------------------------------------------------------------------------------------


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def describe_databento_error(exc: BaseException) -> str:
    """One line for any way a Databento call fails (the key is never in it: the server never echoes it)."""
    from databento.common.error import BentoClientError, BentoError, BentoHttpError, BentoServerError

    if isinstance(exc, BentoHttpError):
        status = exc.http_status
        detail = _one_line((exc.message or "").replace("\n", ": "))  # "case\nmessage\ndocs" from the API
        if isinstance(exc, BentoClientError) and status in (401, 403):
            return f"databento: authentication failed (HTTP {status}): check DATABENTO_API_KEY; {detail}"
        kind = "server error" if isinstance(exc, BentoServerError) else "request refused"
        return f"databento: {kind} (HTTP {status}): {detail or 'no detail'}"
    if isinstance(exc, BentoError):
        return f"databento: transfer failed: {_one_line(str(exc))}"
    return f"databento: network error: {type(exc).__name__}: {_one_line(str(exc))}"


def _retryable(exc: BaseException) -> bool:
    from databento.common.error import BentoError, BentoHttpError

    if isinstance(exc, BentoHttpError):
        return exc.http_status in RETRY_STATUSES
    return isinstance(exc, BentoError | OSError) or _is_requests_error(exc)


def _is_requests_error(exc: BaseException) -> bool:
    try:
        import requests
    except ImportError:  # pragma: no cover - databento depends on requests
        return False
    return isinstance(exc, requests.RequestException)


def _is_vendor_error(exc: BaseException) -> bool:
    from databento.common.error import BentoError

    return isinstance(exc, BentoError | OSError) or _is_requests_error(exc)


# --- confirmation ---------------------------------------------------------------------------------------


def confirm(question: str, *, assume_yes: bool, out: TextIO, stdin: TextIO | None = None) -> bool:
    """``--yes`` accepts; a terminal is asked; anything else refuses (:class:`NeedsConfirmationError`)."""
    if assume_yes:
        return True
    stream = stdin if stdin is not None else sys.stdin
    isatty = getattr(stream, "isatty", None)
    if stream is None or isatty is None or not isatty():
        raise NeedsConfirmationError("refusing to download without confirmation: stdin is not a terminal; "
                                     "review the estimate and pass --yes")
    out.write(f"{question} [y/N] ")
    out.flush()
    answer = stream.readline()
    return answer.strip().lower() in ("y", "yes")


# --- Databento ------------------------------------------------------------------------------------------


@dataclass
class Estimate:
    cost_usd: float = 0.0
    records: int | None = 0
    billable_bytes: int | None = 0

    def describe(self) -> str:
        extra = []
        if self.records is not None:
            extra.append(f"{self.records:,} records")
        if self.billable_bytes is not None:
            extra.append(f"{self.billable_bytes / 1e6:,.1f} MB billable")
        return f"${self.cost_usd:,.2f}" + (f" ({', '.join(extra)})" if extra else "")


@dataclass
class DatabentoPlan:
    dataset: str
    schema: str
    request: RequestSymbol
    sessions: list[Session]
    """Every trading session in the range."""
    have: list[dt.date] = field(default_factory=list)
    todo: list[Session] = field(default_factory=list)
    unavailable: list[dt.date] = field(default_factory=list)
    """Sessions not closed yet, or past the dataset's available end."""


def _parse_ts_ns(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not value:
        return None
    import pandas as pd

    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.value)


class DatabentoFetch:
    """One ``fetch`` over a range: plan (what is missing), estimate (what it costs), download (resumably).

    ``client`` is a ``databento.Historical`` or anything with the same ``metadata``/``timeseries`` methods.
    """

    def __init__(self, client: Any, catalog: Catalog, *, dataset: str, schema: str, symbol: str,
                 start: dt.date, end: dt.date, force: bool = False, retries: int = 2, retry_wait: float = 2.0,
                 now_ns: int | None = None) -> None:
        if schema not in MARKET_SCHEMAS:
            raise ConfigError(f"--schema {schema}: one of {', '.join(MARKET_SCHEMAS)}")
        if retries < 0:
            raise ConfigError("--retries must be >= 0")
        self.client = client
        self.catalog = catalog
        self.dataset = dataset
        self.schema = schema
        self.request = request_symbol(symbol)
        self.start, self.end = start, end
        self.force = force
        self.retries = retries
        self.retry_wait = retry_wait
        self.now_ns = now_ns if now_ns is not None else time.time_ns()
        self.sessions = trading_sessions(self.request.root, start, end)

    @staticmethod
    def _call(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            if _is_vendor_error(exc):
                raise FetchError(describe_databento_error(exc)) from None
            raise

    def plan(self) -> DatabentoPlan:
        plan = DatabentoPlan(self.dataset, self.schema, self.request, self.sessions)
        rng = self._call(lambda: self.client.metadata.get_dataset_range(dataset=self.dataset))
        available_end = _parse_ts_ns(rng.get("end")) if isinstance(rng, dict) else None
        have = set(self.catalog.days(self.dataset, self.schema, self.request.root, self.start, self.end))
        for s in self.sessions:
            if s.close_ns > self.now_ns or (available_end is not None and s.close_ns > available_end):
                plan.unavailable.append(s.trading_date)
            elif s.trading_date in have and not self.force:
                plan.have.append(s.trading_date)
            else:
                plan.todo.append(s)
        return plan

    def _query(self, s: list[Session]) -> dict[str, Any]:
        return {"dataset": self.dataset, "start": s[0].open_ns, "end": s[-1].close_ns,
                "symbols": [self.request.symbol], "schema": self.schema, "stype_in": self.request.stype_in}

    def estimate(self, plan: DatabentoPlan) -> Estimate:
        """Cost of the missing days (one request per run of consecutive sessions); counts where available."""
        est = Estimate()
        cal = calendar_for(spec_for(self.request.root).session)
        for run in _runs(plan.todo, cal.sessions):
            q = self._query(run)
            est.cost_usd += float(self._call(functools.partial(self.client.metadata.get_cost, **q)))
            for attr, method in (("records", "get_record_count"), ("billable_bytes", "get_billable_size")):
                if getattr(est, attr) is None:
                    continue
                try:
                    value = int(getattr(self.client.metadata, method)(**q))
                except Exception as exc:  # the cost is what matters; the counts are a courtesy
                    if not _is_vendor_error(exc) and not isinstance(exc, AttributeError | TypeError | ValueError):
                        raise
                    setattr(est, attr, None)
                else:
                    setattr(est, attr, getattr(est, attr) + value)
        return est

    def download_day(self, s: Session) -> Path:
        """One session into the catalog; retried on 5xx/408/429/network, never leaving a partial file."""
        from tradebot.feeds.dbn_write import DbnScanError, scan_dbn

        day = s.trading_date
        q = self._query([s])
        with self.catalog.stage(self.dataset, self.schema, self.request.root, day) as staged:
            attempt = 0
            while True:
                staged.discard()  # the client refuses an existing path; a failed attempt may have left bytes
                try:
                    self.client.timeseries.get_range(**q, path=staged.path)
                    break
                except Exception as exc:
                    if not _is_vendor_error(exc):
                        raise
                    if attempt >= self.retries or not _retryable(exc):
                        raise FetchError(f"{day}: {describe_databento_error(exc)}") from None
                    attempt += 1
                    wait = self.retry_wait * 2 ** (attempt - 1)
                    log.warning("databento download failed, retrying", day=str(day), attempt=attempt,
                                wait_s=wait, error=describe_databento_error(exc))
                    time.sleep(wait)
            try:
                scan = scan_dbn(staged.path)
            except DbnScanError as exc:
                raise FetchError(f"{day}: the download is not a complete DBN file: {exc}") from None
            if scan.dataset != self.dataset or (scan.schema is not None and scan.schema != self.schema):
                raise FetchError(f"{day}: the download holds {scan.dataset} {scan.schema}, "
                                 f"not the requested {self.dataset} {self.schema}")
            return staged.commit({
                "source": "databento", "dataset": self.dataset, "schema": self.schema,
                "symbol": self.request.symbol, "stype_in": self.request.stype_in, "trading_date": day.isoformat(),
                "start_ns": s.open_ns, "end_ns": s.close_ns, "records": scan.records,
                "fetched_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            })


def run_databento(fetch: DatabentoFetch, *, assume_yes: bool, out: TextIO, max_cost: float | None = None,
                  stdin: TextIO | None = None) -> int:
    r = fetch.request
    plan = fetch.plan()
    span = f"{fetch.start}..{fetch.end}" if fetch.start != fetch.end else str(fetch.start)
    out.write(f"databento {fetch.dataset} {fetch.schema} {r.symbol} ({r.stype_in}) {span}: "
              f"{len(plan.sessions)} trading day(s); {len(plan.have)} already in the catalog, "
              f"{len(plan.todo)} to download\n")
    if plan.unavailable:
        shown = ", ".join(str(d) for d in plan.unavailable[:5]) + (" ..." if len(plan.unavailable) > 5 else "")
        out.write(f"not available yet (session not closed or past the dataset's end): {shown}\n")
    if not plan.todo:
        out.write("nothing to download\n")
        return 0
    est = fetch.estimate(plan)
    out.write(f"estimated cost: {est.describe()} for {len(plan.todo)} day(s)\n")
    out.flush()
    if max_cost is not None and est.cost_usd > max_cost:
        raise FetchError(f"the estimate ${est.cost_usd:,.2f} is above --max-cost ${max_cost:,.2f}; nothing downloaded")
    if not confirm(f"Download {len(plan.todo)} day(s) for about ${est.cost_usd:,.2f}?", assume_yes=assume_yes,
                   out=out, stdin=stdin):
        out.write("declined; nothing downloaded\n")
        return 1
    done = 0
    for s in plan.todo:
        t0 = time.perf_counter()
        try:
            path = fetch.download_day(s)
        except FetchError as exc:
            raise FetchError(f"{exc} (stopped after {done} of {len(plan.todo)} day(s); completed days are kept, "
                             f"run the same command to resume)") from None
        done += 1
        info = fetch.catalog.info(path)
        out.write(f"{s.trading_date}  {info.get('records', 0):>12,} records  {path.stat().st_size / 1e6:8.1f} MB  "
                  f"{time.perf_counter() - t0:5.1f} s  {path}\n")
        out.flush()
    out.write(f"fetched {done} day(s) into {fetch.catalog.dir(fetch.dataset, fetch.schema, r.root)}\n")
    return 0


def databento_client(settings: Settings) -> Any:
    key = settings.databento_api_key.get_secret_value() if settings.databento_api_key is not None else ""
    if not key.strip():
        raise ConfigError("DATABENTO_API_KEY is not set: the Databento download needs an API key")
    import databento

    try:
        return databento.Historical(key)
    except ValueError as exc:
        raise ConfigError(f"DATABENTO_API_KEY is not usable: {_one_line(str(exc))}") from None


# --- Polygon ---------------------------------------------------------------------------------------------


def polygon_instrument_id(ticker: str) -> int:
    """A stable instrument id for a ticker (Polygon has none; the DBN mapping needs one)."""
    return zlib.crc32(ticker.encode()) & 0x7FFF_FFFF or 1


@dataclass
class PolygonDay:
    path: Path
    trades: int
    quotes: int


_CHUNK = 1 << 16


def encode_polygon_rows(rows: list[tuple[int, ...]], instrument_id: int) -> NDArray[Any]:
    """Rows ``(ts, seq, is_trade, price, size, side, bid, ask, bid_sz, ask_sz)`` -> MBP-1 records."""
    import numpy as np

    from tradebot.feeds.dbn_write import ACTION_MODIFY, ACTION_TRADE, F_LAST, SIDE_NONE, empty_records

    a = np.array(rows, dtype=np.int64).reshape(len(rows), 10)
    rec = empty_records("mbp-1", len(rows))
    rec["instrument_id"] = instrument_id
    rec["ts_event"] = a[:, 0]
    rec["ts_recv"] = a[:, 0]
    rec["sequence"] = a[:, 1] & 0xFFFF_FFFF
    trade = a[:, 2] == 1
    rec["action"] = np.where(trade, ACTION_TRADE, ACTION_MODIFY)
    rec["side"] = np.where(trade, np.array([b"N", b"B", b"A"])[a[:, 5]], SIDE_NONE)
    rec["price"] = a[:, 3]
    rec["size"] = a[:, 4]
    rec["flags"] = F_LAST
    lv = rec["levels"]
    lv["bid_px"][:, 0] = a[:, 6]
    lv["ask_px"][:, 0] = a[:, 7]
    lv["bid_sz"][:, 0] = a[:, 8]
    lv["ask_sz"][:, 0] = a[:, 9]
    return rec


async def _stream_polygon(feed: Any, writer: Any, instrument_id: int) -> tuple[int, int, str | None]:
    from tradebot.core.prices import UNDEF_PRICE
    from tradebot.core.types import FeedState, FeedStatus, RawBook, RawTrade, Side

    side_code = {Side.BUY: 1, Side.SELL: 2}  # the feed leaves equity trades unsided: N (0) in practice
    rows: list[tuple[int, ...]] = []
    quote = (UNDEF_PRICE, UNDEF_PRICE, 0, 0)
    trades = quotes = 0
    failed: str | None = None
    try:
        async for ev in feed:
            t = type(ev)
            if t is RawTrade:
                px = ev.price_fp if ev.price_fp is not None else UNDEF_PRICE
                rows.append((ev.ts_event, ev.sequence, 1, px, ev.size, side_code.get(ev.side, 0), *quote))
                trades += 1
            elif t is RawBook:
                bpx, apx = ev.bid_px_fp[0], ev.ask_px_fp[0]
                quote = (UNDEF_PRICE if bpx is None else bpx, UNDEF_PRICE if apx is None else apx,
                         ev.bid_sz[0] if bpx is not None else 0, ev.ask_sz[0] if apx is not None else 0)
                rows.append((ev.ts_event, ev.sequence, 0, UNDEF_PRICE, 0, 0, *quote))
                quotes += 1
            elif t is FeedStatus and ev.state is FeedState.FAILED:
                failed = ev.detail
                break
            if len(rows) >= _CHUNK:
                writer.write(encode_polygon_rows(rows, instrument_id))
                rows.clear()
        if rows and failed is None:
            writer.write(encode_polygon_rows(rows, instrument_id))
    finally:
        await feed.close()
    return trades, quotes, failed


def fetch_polygon(api_key: str | None, ticker: str, day: dt.date, catalog: Catalog, *,
                  dataset: str = POLYGON_DATASET, base_url: str | None = None, force: bool = False,
                  feed_options: dict[str, Any] | None = None) -> PolygonDay | None:
    """One ticker-day into the catalog as DBN MBP-1; ``None`` when the catalog already has it (no ``force``)."""
    import asyncio

    from tradebot.feeds.dbn_write import DbnWriter, metadata_bytes, scan_dbn
    from tradebot.feeds.polygon_rest import PolygonConfigError, PolygonHistoryFeed

    ticker = ticker.strip().upper()
    if not ticker:
        raise ConfigError("--ticker is required for --source polygon")
    if catalog.find(dataset, "mbp-1", ticker, day) is not None and not force:
        return None
    try:
        feed = PolygonHistoryFeed(api_key, ticker, day, base_url=base_url, speed=0.0, **(feed_options or {}))
    except PolygonConfigError as exc:
        raise ConfigError(str(exc)) from None
    start = int(dt.datetime.combine(day, dt.time(0), tzinfo=NY).timestamp()) * 1_000_000_000
    end = int(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=NY).timestamp()) * 1_000_000_000
    inst = polygon_instrument_id(ticker)
    meta = metadata_bytes(dataset=dataset, schema="mbp-1", start_ns=start, end_ns=end, symbol=ticker,
                          instrument_id=inst)
    with catalog.stage(dataset, "mbp-1", ticker, day) as staged:
        with DbnWriter(staged.path, meta, compress=True) as writer:
            trades, quotes, failed = asyncio.run(_stream_polygon(feed, writer, inst))
        if failed is not None:
            raise FetchError(f"polygon {ticker} {day}: {_one_line(failed)}")
        if feed.stats.get("approximate"):
            raise FetchError(f"polygon {ticker} {day}: trades are not in the plan (HTTP 403); the minute-aggregate "
                             f"approximation is not stored in the catalog")
        if trades == 0:
            raise FetchError(f"polygon {ticker} {day}: no trades (a weekend or holiday, or an unknown ticker?)")
        scan = scan_dbn(staged.path)
        path = staged.commit({
            "source": "polygon", "dataset": dataset, "schema": "mbp-1", "ticker": ticker,
            "trading_date": day.isoformat(), "records": scan.records, "trades": trades, "quotes": quotes,
            "sides": "N (none at the source); inferred on every read: quote rule against the stored quote, "
                     "tick rule otherwise",
            "feed_stats": {k: int(v) for k, v in feed.stats.items()},
            "fetched_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        })
    return PolygonDay(path, trades, quotes)


# --- commands --------------------------------------------------------------------------------------------


def _catalog_for(args: argparse.Namespace, settings: Settings) -> Catalog:
    root = getattr(args, "catalog", None)
    return Catalog(root if root is not None else catalog_root(settings.data_dir))


def fetch_command(args: argparse.Namespace, settings: Settings, *, client: Any = None,
                  stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    """``tradebot data fetch``. ``client`` replaces ``databento.Historical`` (tests); ``stdin`` the terminal."""
    stream = out if out is not None else sys.stdout
    try:
        catalog = _catalog_for(args, settings)
        if args.source == "polygon":
            return _fetch_polygon_command(args, settings, catalog, stream)
        start = parse_date(args.start, "--start")
        end = parse_date(args.end, "--end") if args.end else start
        symbol = args.symbol or settings.trading_symbol
        dataset = args.dataset or settings.databento.dataset
        if client is None:
            client = databento_client(settings)
        fetch = DatabentoFetch(client, catalog, dataset=dataset, schema=args.schema, symbol=symbol, start=start,
                               end=end, force=args.force, retries=args.retries)
        return run_databento(fetch, assume_yes=args.yes, out=stream, max_cost=args.max_cost, stdin=stdin)
    except (ConfigError, CatalogError, UnknownContractError) as exc:
        print(_one_line(str(exc), 500), file=sys.stderr)
        return 2
    except FetchError as exc:
        print(_one_line(str(exc), 500), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"fetch: {exc.filename or ''} {exc.strerror or exc}".strip(), file=sys.stderr)
        return 1
    except Exception as exc:  # a vendor-client surprise: still one line (LOG_LEVEL=DEBUG shows the traceback)
        log.debug("fetch failed unexpectedly", exc_info=True)
        print(f"fetch failed unexpectedly: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        return 1


def _fetch_polygon_command(args: argparse.Namespace, settings: Settings, catalog: Catalog, out: TextIO) -> int:
    day = parse_date(args.date, "--date")
    if not args.ticker:
        raise ConfigError("--ticker is required for --source polygon")
    key = settings.polygon_api_key.get_secret_value() if settings.polygon_api_key is not None else None
    dataset = args.dataset or POLYGON_DATASET
    t0 = time.perf_counter()
    got = fetch_polygon(key, args.ticker, day, catalog, dataset=dataset, base_url=args.base_url, force=args.force)
    if got is None:
        path = catalog.path(dataset, "mbp-1", args.ticker, day)
        out.write(f"{path}: already in the catalog (--force downloads it again)\n")
        return 0
    out.write(f"polygon {args.ticker.upper()} {day}: {got.trades:,} trades, {got.quotes:,} quotes "
              f"(no aggressor side at the source: inferred when read) in {time.perf_counter() - t0:.1f} s "
              f"-> {got.path}\n")
    return 0


def _lazy(target: str) -> Callable[[argparse.Namespace, Settings], int]:
    module, func = target.split(":")

    def run(args: argparse.Namespace, settings: Settings) -> int:
        handler: Callable[[argparse.Namespace, Settings], int] = getattr(importlib.import_module(module), func)
        return handler(args, settings)

    return run


def add_data_commands(data_subparsers: Any) -> None:
    """Add ``fetch`` and ``synth`` to the ``tradebot data`` group (cheap: handlers import their deps lazily)."""
    f = data_subparsers.add_parser(
        "fetch", help="download market data into the local catalog (Databento with a cost prompt, Polygon)",
        description=(__doc__ or "").split("\n\n", 1)[0])
    f.add_argument("--source", choices=["databento", "polygon"], default="databento")
    f.add_argument("--symbol", help="databento: ES (= ES.c.0), ES.v.0, ES.FUT or ESM5 (default TRADING_SYMBOL)")
    f.add_argument("--start", help="databento: first trading date, YYYY-MM-DD")
    f.add_argument("--end", help="databento: last trading date, inclusive (default --start)")
    f.add_argument("--schema", choices=MARKET_SCHEMAS, default="tbbo", help="DBN schema (default tbbo)")
    f.add_argument("--dataset", help="databento: default TRADEBOT_DATABENTO__DATASET; polygon: POLYGON")
    f.add_argument("--ticker", help="polygon: the ticker (e.g. AAPL)")
    f.add_argument("--date", help="polygon: the day, YYYY-MM-DD")
    f.add_argument("--catalog", type=Path, help="catalog root (default TRADEBOT_DATA_DIR/catalog)")
    f.add_argument("--yes", "-y", action="store_true", help="accept the estimated cost without asking")
    f.add_argument("--max-cost", type=float, help="refuse when the estimate is above this many USD, even with --yes")
    f.add_argument("--force", action="store_true", help="download days the catalog already has again")
    f.add_argument("--retries", type=int, default=2, help="retries per day on 5xx/429/network errors (default 2)")
    f.add_argument("--base-url", help="polygon: API host override (proxy, api.massive.com)")
    f.set_defaults(handler=_lazy("tradebot.feeds.fetch:fetch_command"))

    s = data_subparsers.add_parser(
        "synth", help="write synthetic multi-day DBN data (the simulated market) in the catalog layout")
    s.add_argument("--days", type=int, required=True, help="trading days to generate (weekends/holidays skipped)")
    s.add_argument("--out", type=Path, required=True, help="catalog root to write into (<out>/<dataset>/...)")
    s.add_argument("--symbol", help="contract root (default TRADING_SYMBOL)")
    s.add_argument("--trades-per-day", type=int, help="trade prints per day (default TRADEBOT_SIM__TRADES_PER_SESSION)")
    s.add_argument("--seed", type=int, help="random seed (default TRADEBOT_SIM__SEED); same seed, same bytes")
    s.add_argument("--start", help="first trading date, YYYY-MM-DD (default TRADEBOT_SIM__START_DATE)")
    s.add_argument("--schema", choices=MARKET_SCHEMAS, default="tbbo", help="DBN schema to write (default tbbo)")
    s.add_argument("--start-price", help="opening price of the first day (default: a 2025-like level per contract)")
    s.add_argument("--dataset", default=SIM_DATASET, help=f"dataset code in paths and metadata ({SIM_DATASET})")
    s.set_defaults(handler=_lazy("tradebot.feeds.synth:synth_command"))


__all__ = [
    "DatabentoFetch", "DatabentoPlan", "Estimate", "FetchError", "NeedsConfirmationError",
    "PolygonDay", "RequestSymbol", "add_data_commands", "confirm", "databento_client", "describe_databento_error",
    "fetch_command", "fetch_polygon", "polygon_instrument_id", "request_symbol", "run_databento", "trading_sessions",
]
