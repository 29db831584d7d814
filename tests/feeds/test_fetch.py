"""``tradebot data fetch``: cost prompt, resumable per-day downloads into the catalog, clear failures.

Databento: a fake client object with the ``Historical`` methods serving real DBN bytes (the recorded
``test_data.tbbo`` day, and synthetic days written as GLBX.MDP3 TBBO), and the *real* ``databento.Historical``
over a fake HTTP transport where the client's own error parsing and file writing matter (auth errors, a
stream that breaks mid-download). Polygon: the local stand-in serving the recorded REST bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import databento as db
import databento.common.http as bento_http
import pytest
import requests
from databento.common.error import BentoClientError, BentoError, BentoServerError
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import ProtocolError

from support.polygon_server import PolygonStandIn, load_body
from tradebot.core.calendar import calendar_for
from tradebot.core.config import ConfigError, Settings, load_settings
from tradebot.core.prices import float_to_fp
from tradebot.core.types import FeedStatus, RawBook, RawTrade, Side, SideRule, Trade
from tradebot.feeds.catalog import Catalog
from tradebot.feeds.dbn_files import DbnFileFeed
from tradebot.feeds.fetch import (
    DatabentoFetch,
    FetchError,
    add_data_commands,
    fetch_polygon,
    request_symbol,
)
from tradebot.feeds.polygon_rest import PolygonHistoryFeed
from tradebot.feeds.synth import synthesize
from tradebot.feeds.validation import Validator

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
REAL_TBBO = DATA / "databento" / "GLBX.MDP3" / "test_data.tbbo.dbn.zst"
POLYGON = DATA / "polygon"
CAL = calendar_for("equity")
START, END = dt.date(2020, 12, 28), dt.date(2021, 1, 4)
DAYS = [dt.date(2020, 12, 28), dt.date(2020, 12, 29), dt.date(2020, 12, 30), dt.date(2020, 12, 31), dt.date(2021, 1, 4)]
"""Trading days of the range: New Year's Day and the weekend have no session."""
COST_PER_DAY = 0.75
KEY = "db-TESTKEY0000000000000000000"


# --- real DBN bodies per trading day --------------------------------------------------------------------


@pytest.fixture(scope="module")
def bodies(tmp_path_factory: pytest.TempPathFactory) -> dict[dt.date, bytes]:
    """The recorded Databento TBBO day for 2020-12-28, synthetic GLBX.MDP3 TBBO days for the rest."""
    out = tmp_path_factory.mktemp("bodies")
    days = synthesize(out, symbol="ES", days=4, start=DAYS[1], trades_per_day=300, seed=2, schema="tbbo",
                      dataset="GLBX.MDP3", start_price="3702.75")  # where the recorded day trades
    got = {d.day: d.path.read_bytes() for d in days}
    got[DAYS[0]] = REAL_TBBO.read_bytes()
    assert sorted(got) == DAYS
    return got


def _day_of(start_ns: int) -> dt.date:
    s = CAL.session_at(int(start_ns))
    assert s is not None
    return s.trading_date


def _days_in(start_ns: int, end_ns: int) -> list[dt.date]:
    return [s.trading_date for s in CAL.sessions if s.open_ns >= start_ns and s.close_ns <= end_ns]


# --- a fake client object -------------------------------------------------------------------------------


@dataclass
class FakeHistorical:
    """``metadata`` and ``timeseries`` with the signatures of ``databento.Historical``; writes like it does."""

    bodies: dict[dt.date, bytes]
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failures: dict[dt.date, list[Callable[[Path], None]]] = field(default_factory=dict)
    """Per day, actions run instead of a successful download (one per attempt)."""
    auth_error: bool = False
    available_end: str = "2030-01-01T00:00:00.000000000Z"

    def __post_init__(self) -> None:
        self.metadata = _Metadata(self)
        self.timeseries = _Timeseries(self)

    def names(self, method: str) -> list[dict[str, Any]]:
        return [kw for name, kw in self.calls if name == method]

    def downloaded(self) -> list[dt.date]:
        return [_day_of(kw["start"]) for kw in self.names("get_range")]


class _Metadata:
    def __init__(self, fake: FakeHistorical) -> None:
        self.fake = fake

    def _auth(self) -> None:
        if self.fake.auth_error:
            raise BentoClientError(401, json_body={"detail": "Authentication failed."},
                                   message="Authentication failed.")

    def get_dataset_range(self, dataset: str) -> dict[str, str]:
        self.fake.calls.append(("get_dataset_range", {"dataset": dataset}))
        self._auth()
        return {"start": "2010-06-06T00:00:00.000000000Z", "end": self.fake.available_end}

    def get_cost(self, dataset: str, start: int, end: int | None = None, mode: Any = None,
                 symbols: Any = None, schema: str = "trades", stype_in: str = "raw_symbol",
                 limit: int | None = None) -> float:
        self.fake.calls.append(("get_cost", {"dataset": dataset, "start": start, "end": end, "symbols": symbols,
                                             "schema": schema, "stype_in": stype_in}))
        self._auth()
        assert end is not None
        return COST_PER_DAY * len(_days_in(start, end))

    def get_record_count(self, dataset: str, start: int, end: int | None = None, symbols: Any = None,
                         schema: str = "trades", stype_in: str = "raw_symbol", limit: int | None = None) -> int:
        assert end is not None
        return 1000 * len(_days_in(start, end))

    def get_billable_size(self, dataset: str, start: int, end: int | None = None, symbols: Any = None,
                          schema: str = "trades", stype_in: str = "raw_symbol", limit: int | None = None) -> int:
        assert end is not None
        return 80_000 * len(_days_in(start, end))


class _Timeseries:
    def __init__(self, fake: FakeHistorical) -> None:
        self.fake = fake

    def get_range(self, dataset: str, start: int, end: int | None = None, symbols: Any = None,
                  schema: str = "trades", stype_in: str = "raw_symbol", stype_out: str = "instrument_id",
                  limit: int | None = None, path: Any = None) -> db.DBNStore:
        self.fake.calls.append(("get_range", {"dataset": dataset, "start": start, "end": end, "symbols": symbols,
                                              "schema": schema, "stype_in": stype_in, "path": path}))
        day = _day_of(start)
        assert path is not None
        target = Path(path)
        pending = self.fake.failures.get(day)
        if pending:
            pending.pop(0)(target)
        with target.open("x+b") as fh:  # the real client opens the path with "x": it must not exist
            fh.write(self.fake.bodies[day])
        return db.DBNStore.from_file(target)


def broken_stream(target: Path) -> None:
    """What the real client does when the connection drops: the bytes so far stay in the file, then it raises."""
    target.write_bytes(REAL_TBBO.read_bytes()[:120])
    raise BentoError("Error streaming response: ('Connection broken: IncompleteRead(120 bytes read)')")


def server_error(target: Path) -> None:
    raise BentoServerError(503, message="Service temporarily unavailable")


# --- running the command --------------------------------------------------------------------------------


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    add_data_commands(sub.add_parser("data").add_subparsers(dest="data_cmd", required=True))
    return p.parse_args(["data", *argv])


def settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings(_env_file=None, data_dir=tmp_path / "data", **env)


def fetch(tmp_path: Path, client: Any, *argv: str, stdin: io.StringIO | None = None,
          env: dict[str, str] | None = None) -> int:
    from tradebot.feeds.fetch import fetch_command

    args = parse("fetch", "--symbol", "ES", *argv)
    return fetch_command(args, settings(tmp_path, **(env or {})), client=client,
                         stdin=stdin if stdin is not None else io.StringIO(""))


def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "data" / "catalog")


def stored(tmp_path: Path) -> list[dt.date]:
    return catalog(tmp_path).days("GLBX.MDP3", "tbbo", "ES")


def no_partials(tmp_path: Path) -> bool:
    return not [p for p in (tmp_path / "data").rglob("*") if p.name.endswith(".part")]


RANGE = ("--start", START.isoformat(), "--end", END.isoformat())


# --- cost and confirmation -------------------------------------------------------------------------------


def test_cost_is_shown_and_a_non_interactive_run_without_yes_refuses(
        tmp_path: Path, bodies: dict[dt.date, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeHistorical(bodies)
    assert fetch(tmp_path, fake, *RANGE) == 1
    out, err = capsys.readouterr()
    assert "5 trading day(s); 0 already in the catalog, 5 to download" in out
    assert "estimated cost: $3.75 (5,000 records, 0.4 MB billable) for 5 day(s)" in out
    assert "not a terminal" in err and "--yes" in err and len(err.strip().splitlines()) == 1
    # one cost request for the whole range (the sessions are consecutive), from the first open to the last close
    (cost,) = fake.names("get_cost")
    first, last = CAL.session_on(START), CAL.session_on(END)
    assert first is not None and last is not None
    assert (cost["start"], cost["end"]) == (first.open_ns, last.close_ns)
    assert cost["symbols"] == ["ES.c.0"] and cost["stype_in"] == "continuous" and cost["schema"] == "tbbo"
    assert fake.names("get_range") == [] and stored(tmp_path) == [] and no_partials(tmp_path)


def test_terminal_yes_downloads_one_file_per_trading_day(
        tmp_path: Path, bodies: dict[dt.date, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeHistorical(bodies)
    assert fetch(tmp_path, fake, *RANGE, stdin=Tty("y\n")) == 0
    out = capsys.readouterr().out
    assert "Download 5 day(s) for about $3.75? [y/N]" in out and "fetched 5 day(s)" in out
    assert stored(tmp_path) == DAYS  # no weekend, no New Year's Day
    assert fake.downloaded() == DAYS
    for kw in fake.names("get_range"):  # each day from its Globex open to its close
        s = CAL.session_at(kw["start"])
        assert s is not None and (kw["start"], kw["end"]) == (s.open_ns, s.close_ns)
    cat = catalog(tmp_path)
    for day in DAYS:
        path = cat.find("GLBX.MDP3", "tbbo", "ES", day)
        assert path is not None and path.read_bytes() == bodies[day]
        info = cat.info(path)
        assert info["sha256"] == hashlib.sha256(bodies[day]).hexdigest() == cat.fingerprint(path)
        assert info["source"] == "databento" and info["symbol"] == "ES.c.0" and info["trading_date"] == str(day)
    assert cat.info(cat.path("GLBX.MDP3", "tbbo", "ES", DAYS[0]))["records"] == 4
    assert no_partials(tmp_path)

    async def replay() -> tuple[int, int]:
        feed = DbnFileFeed(cat.files("GLBX.MDP3", "tbbo", "ES", START, END))
        v = Validator()
        n = 0
        async for ev in feed:
            if isinstance(ev, RawTrade | RawBook) and v.validate(ev) is not None and isinstance(ev, RawTrade):
                n += 1
        return n, v.total_rejects

    assert asyncio.run(replay()) == (4 + 4 * 300, 0)


def test_declined_downloads_nothing(tmp_path: Path, bodies: dict[dt.date, bytes],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeHistorical(bodies)
    assert fetch(tmp_path, fake, *RANGE, stdin=Tty("n\n")) == 1
    assert "declined; nothing downloaded" in capsys.readouterr().out
    assert fake.names("get_range") == [] and stored(tmp_path) == [] and no_partials(tmp_path)
    assert fetch(tmp_path, fake, *RANGE, stdin=Tty("\n")) == 1  # just Enter is "no"
    assert fake.names("get_range") == []


def test_yes_flag_skips_the_prompt(tmp_path: Path, bodies: dict[dt.date, bytes],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeHistorical(bodies)
    assert fetch(tmp_path, fake, "--start", "2020-12-28", "--yes") == 0  # --end defaults to --start
    out = capsys.readouterr().out
    assert "estimated cost: $0.75" in out and "[y/N]" not in out
    assert stored(tmp_path) == [DAYS[0]]


def test_max_cost_refuses_even_with_yes(tmp_path: Path, bodies: dict[dt.date, bytes],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeHistorical(bodies)
    assert fetch(tmp_path, fake, *RANGE, "--yes", "--max-cost", "2") == 1
    assert "above --max-cost $2.00" in capsys.readouterr().err
    assert fake.names("get_range") == [] and stored(tmp_path) == []


# --- resume and failures ---------------------------------------------------------------------------------


def test_resume_skips_complete_days_and_does_not_pay_for_them_again(
        tmp_path: Path, bodies: dict[dt.date, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeHistorical(bodies)
    assert fetch(tmp_path, fake, "--start", "2020-12-29", "--end", "2020-12-30", "--yes") == 0
    capsys.readouterr()
    fake.calls.clear()
    assert fetch(tmp_path, fake, *RANGE, "--yes") == 0
    out = capsys.readouterr().out
    assert "2 already in the catalog, 3 to download" in out and "estimated cost: $2.25" in out
    assert fake.downloaded() == [DAYS[0], DAYS[3], DAYS[4]]
    # two runs of consecutive missing sessions: 12-28, then 12-31 + 01-04; the stored days are not estimated
    assert [(_days_in(c["start"], c["end"])) for c in fake.names("get_cost")] == [[DAYS[0]], [DAYS[3], DAYS[4]]]
    assert stored(tmp_path) == DAYS
    fake.calls.clear()
    assert fetch(tmp_path, fake, *RANGE) == 0  # everything there: no prompt, no cost request, no download
    assert "nothing to download" in capsys.readouterr().out
    assert fake.names("get_cost") == [] and fake.names("get_range") == []


def test_failure_mid_range_keeps_completed_days_and_leaves_no_partial_file(
        tmp_path: Path, bodies: dict[dt.date, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeHistorical(bodies, failures={DAYS[2]: [broken_stream]})
    assert fetch(tmp_path, fake, *RANGE, "--yes", "--retries", "0") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "2020-12-30: databento: transfer failed: Error streaming response" in err
    assert "stopped after 2 of 5 day(s)" in err and "resume" in err
    assert stored(tmp_path) == DAYS[:2] and no_partials(tmp_path)
    fake.calls.clear()
    assert fetch(tmp_path, fake, *RANGE, "--yes") == 0  # the same command resumes where it stopped
    assert fake.downloaded() == DAYS[2:]
    assert stored(tmp_path) == DAYS


def test_server_errors_are_retried_then_succeed(tmp_path: Path, bodies: dict[dt.date, bytes]) -> None:
    fake = FakeHistorical(bodies, failures={DAYS[0]: [server_error, broken_stream]})
    job = DatabentoFetch(fake, catalog(tmp_path), dataset="GLBX.MDP3", schema="tbbo", symbol="ES", start=START,
                         end=START, retries=2, retry_wait=0.0)
    plan = job.plan()
    s = plan.todo[0]
    assert job.download_day(s).read_bytes() == bodies[DAYS[0]]
    assert fake.downloaded() == [DAYS[0]] * 3 and no_partials(tmp_path)


def test_client_errors_are_not_retried(tmp_path: Path, bodies: dict[dt.date, bytes]) -> None:
    def unprocessable(target: Path) -> None:
        raise BentoClientError(422, json_body={"detail": {"case": "data_end_after_available_end",
                                                          "message": "The dataset ends before the requested end.",
                                                          "docs": None}})

    fake = FakeHistorical(bodies, failures={DAYS[0]: [unprocessable]})
    job = DatabentoFetch(fake, catalog(tmp_path), dataset="GLBX.MDP3", schema="tbbo", symbol="ES", start=START,
                         end=START, retries=3, retry_wait=0.0)
    with pytest.raises(FetchError, match=r"refused \(HTTP 422\): data_end_after_available_end: The dataset ends"):
        job.download_day(job.plan().todo[0])
    assert len(fake.names("get_range")) == 1


def test_a_truncated_download_is_not_filed_as_complete(tmp_path: Path, bodies: dict[dt.date, bytes],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeHistorical(bodies)
    real_get_range = fake.timeseries.get_range

    def cut(*a: Any, **kw: Any) -> Any:
        store = real_get_range(*a, **kw)
        path = Path(kw["path"])
        path.write_bytes(path.read_bytes()[:-6])  # the stream ended early without an error
        return store

    fake.timeseries.get_range = cut  # type: ignore[method-assign]
    assert fetch(tmp_path, fake, "--start", "2020-12-28", "--yes") == 1
    err = capsys.readouterr().err
    assert "2020-12-28: the download is not a complete DBN file" in err
    assert stored(tmp_path) == [] and no_partials(tmp_path)


def test_sessions_not_closed_or_not_yet_in_the_dataset_are_skipped(tmp_path: Path,
                                                                    bodies: dict[dt.date, bytes]) -> None:
    inside = CAL.session_on(DAYS[3])
    assert inside is not None
    fake = FakeHistorical(bodies, available_end="2020-12-30T22:00:00.000000000Z")  # after 12-30's close
    job = DatabentoFetch(fake, catalog(tmp_path), dataset="GLBX.MDP3", schema="tbbo", symbol="ES", start=START,
                         end=END, now_ns=inside.open_ns + 3600 * 10**9)  # "now" is during the 12-31 session
    plan = job.plan()
    assert [s.trading_date for s in plan.todo] == DAYS[:3]
    assert plan.unavailable == DAYS[3:]


# --- auth and configuration ------------------------------------------------------------------------------


def test_auth_error_is_one_clear_line(tmp_path: Path, bodies: dict[dt.date, bytes],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeHistorical(bodies, auth_error=True)
    assert fetch(tmp_path, fake, *RANGE, "--yes") == 1
    err = capsys.readouterr().err.strip()
    assert err == ("databento: authentication failed (HTTP 401): check DATABENTO_API_KEY; Authentication failed.")
    assert fake.names("get_range") == [] and stored(tmp_path) == []


def test_missing_key_and_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tradebot.feeds.fetch import fetch_command

    args = parse("fetch", "--symbol", "ES", *RANGE)
    assert fetch_command(args, settings(tmp_path)) == 2  # no client injected, no key configured
    assert "DATABENTO_API_KEY is not set" in capsys.readouterr().err
    fake = FakeHistorical({})
    for argv, needle in ((("--start", "2021-01-04", "--end", "2020-12-28"), "before --start"),
                         (("--start", "28/12/2020"), "not a date"),
                         (("--end", "2020-12-28"), "--start is required"),
                         (("--start", "2010-01-04"), "outside the exchange calendar")):
        assert fetch(tmp_path, fake, *argv) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1
    args = parse("fetch", "--symbol", "AAPL", *RANGE)
    assert fetch_command(args, settings(tmp_path), client=fake) == 2
    assert "not a known futures contract" in capsys.readouterr().err
    assert fake.calls == []


def test_symbol_forms() -> None:
    assert request_symbol("ES") == request_symbol("es") == request_symbol("ES.c.0")
    assert request_symbol("ES").symbol == "ES.c.0" and request_symbol("ES").stype_in == "continuous"
    assert (request_symbol("MES.V.1").symbol, request_symbol("MES.V.1").root) == ("MES.v.1", "MES")
    assert (request_symbol("ES.FUT").symbol, request_symbol("ES.FUT").stype_in) == ("ES.FUT", "parent")
    assert (request_symbol("esm5").symbol, request_symbol("esm5").stype_in) == ("ESM5", "raw_symbol")
    with pytest.raises(ConfigError):
        request_symbol("SPY")


# --- the real Historical client over a fake transport -----------------------------------------------------


class _Raw:
    """A response body that breaks after ``limit`` bytes, as a dropped connection does."""

    def __init__(self, data: bytes, limit: int | None) -> None:
        self._buf = io.BytesIO(data)
        self._limit = limit

    def read(self, n: int = -1, **_: Any) -> bytes:
        if self._limit is not None and self._buf.tell() >= self._limit:
            raise ProtocolError("Connection broken: IncompleteRead")
        return self._buf.read(n if self._limit is None else min(n, self._limit - self._buf.tell()))

    def close(self) -> None:
        self._buf.close()

    def stream(self, n: int, decode_content: bool = True) -> Iterator[bytes]:
        while chunk := self.read(n):
            yield chunk


def _response(status: int, body: bytes, *, url: str, stream: _Raw | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.url = url
    r.headers = CaseInsensitiveDict({"content-type": "application/json"})
    if stream is None:
        r._content = body
        r._content_consumed = True
    else:
        r.raw = stream
    return r


@dataclass
class FakeTransport:
    """Answers the real client's HTTP calls (``requests.get``/``post``) without a network."""

    bodies: dict[dt.date, bytes]
    status: int = 200
    break_on: dt.date | None = None
    seen: list[str] = field(default_factory=list)

    def get(self, url: str, params: Any = None, **kw: Any) -> requests.Response:
        self.seen.append(url.rsplit("/", 1)[-1])
        assert kw["auth"].username == KEY
        if self.status != 200:
            return _response(self.status, json.dumps({"detail": "Authentication failed."}).encode(), url=url)
        return _response(200, json.dumps({"start": "2010-06-06T00:00:00Z", "end": "2030-01-01T00:00:00Z"}).encode(),
                         url=url)

    def post(self, url: str, data: dict[str, Any] | None = None, **kw: Any) -> requests.Response:
        name = url.rsplit("/", 1)[-1]
        self.seen.append(name)
        assert data is not None
        days = _days_in(int(data["start"]), int(data["end"]))
        if name == "metadata.get_cost":
            return _response(200, json.dumps(COST_PER_DAY * len(days)).encode(), url=url)
        if name in ("metadata.get_record_count", "metadata.get_billable_size"):
            return _response(200, json.dumps(10 * len(days)).encode(), url=url)
        assert name == "timeseries.get_range" and kw.get("stream") is True
        (day,) = days
        body = self.bodies[day]
        return _response(200, b"", url=url, stream=_Raw(body, 200 if day == self.break_on else None))


def test_real_client_auth_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              bodies: dict[dt.date, bytes],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    transport = FakeTransport(bodies, status=401)
    monkeypatch.setattr(bento_http.requests, "get", transport.get)
    monkeypatch.setattr(bento_http.requests, "post", transport.post)
    assert fetch(tmp_path, None, *RANGE, "--yes", env={"DATABENTO_API_KEY": KEY}) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("databento: authentication failed (HTTP 401): check DATABENTO_API_KEY")
    assert "\n" not in err and KEY not in err
    assert transport.seen == ["metadata.get_dataset_range"]


def test_real_client_stream_broken_mid_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             bodies: dict[dt.date, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    """The real client leaves the bytes it got in the file it was given: that file must not survive."""
    transport = FakeTransport(bodies, break_on=DAYS[1])
    monkeypatch.setattr(bento_http.requests, "get", transport.get)
    monkeypatch.setattr(bento_http.requests, "post", transport.post)
    assert fetch(tmp_path, None, *RANGE, "--yes", "--retries", "0", env={"DATABENTO_API_KEY": KEY}) == 1
    err = capsys.readouterr().err
    assert "2020-12-29: databento: transfer failed: Error streaming response" in err
    assert stored(tmp_path) == [DAYS[0]] and no_partials(tmp_path)
    assert catalog(tmp_path).path("GLBX.MDP3", "tbbo", "ES", DAYS[0]).read_bytes() == bodies[DAYS[0]]
    transport.break_on = None
    assert fetch(tmp_path, None, *RANGE, "--yes", env={"DATABENTO_API_KEY": KEY}) == 0
    assert stored(tmp_path) == DAYS
    assert all(catalog(tmp_path).path("GLBX.MDP3", "tbbo", "ES", d).read_bytes() == bodies[d] for d in DAYS)


# --- Polygon ---------------------------------------------------------------------------------------------

POLY_DAY = dt.date(2022, 5, 10)
POLY_KEY = "pk_test_0123456789"


@pytest.fixture
def srv() -> Iterator[PolygonStandIn]:
    with PolygonStandIn(POLYGON) as s:
        yield s


def _quotes() -> list[dict[str, Any]]:
    q = load_body("v3_quotes_AAPL.json", POLYGON)["results"] + load_body("v3_quotes_AAPL_page2.json",
                                                                         POLYGON)["results"]
    return sorted(q, key=lambda r: r["sip_timestamp"])


def _trades_between_quotes() -> list[dict[str, Any]]:
    """The recorded trade record, re-timed between the recorded quotes at the ask, the bid and the mid."""
    template = load_body("v3_trades_AAPL_limit=2.json", POLYGON)["results"][0]
    quotes = _quotes()
    out = []
    for n, (q, where) in enumerate(zip(quotes[1:], ("ask", "bid", "mid", "ask", "bid"), strict=False)):
        px = {"ask": q["ask_price"], "bid": q["bid_price"], "mid": round((q["ask_price"] + q["bid_price"]) / 2, 3)}
        out.append({**template, "sip_timestamp": q["sip_timestamp"] + 1, "price": px[where],
                    "sequence_number": template["sequence_number"] + n})
    return out


def _sides_seen_by_the_engine(events: list[Any]) -> list[tuple[Side, SideRule]]:
    """Each trade's side after the validation layer, with the stream re-labelled as SI (tick 0.005, so the
    equity's cents and half-cent mids are on the grid) and sequence numbers dropped (the bodies reuse them)."""
    v = Validator(symbols=["SI"])
    out: list[tuple[Side, SideRule]] = []
    for e in events:
        if isinstance(e, RawTrade | RawBook):
            ev = v.validate(dataclasses.replace(e, symbol="SIN2", sequence=0))
            assert ev is not None, v.rejects
            if isinstance(ev, Trade):
                out.append((ev.side, ev.side_rule))
    return out


def test_polygon_day_stored_unsided_and_sides_inferred_on_replay(tmp_path: Path, srv: PolygonStandIn,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    trades = _trades_between_quotes()
    srv.set_body("/v3/trades/AAPL", {**load_body("v3_trades_AAPL_limit=2.json", POLYGON), "results": trades})

    async def direct() -> list[Any]:
        feed = PolygonHistoryFeed(POLY_KEY, "AAPL", POLY_DAY, base_url=srv.base_url)
        return [ev async for ev in feed if not isinstance(ev, FeedStatus)]

    expected = asyncio.run(direct())
    exp_trades = [e for e in expected if isinstance(e, RawTrade)]
    exp_quotes = [e for e in expected if isinstance(e, RawBook)]
    assert {t.side for t in exp_trades} == {Side.UNKNOWN}  # equities carry no aggressor side
    exp_sides = _sides_seen_by_the_engine(expected)
    assert {(Side.BUY, SideRule.QUOTE), (Side.SELL, SideRule.QUOTE), (Side.BUY, SideRule.TICK)} <= set(exp_sides)

    args = parse("fetch", "--source", "polygon", "--ticker", "aapl", "--date", str(POLY_DAY), "--base-url",
                 srv.base_url)
    from tradebot.feeds.fetch import fetch_command

    assert fetch_command(args, settings(tmp_path, POLYGON_API_KEY=POLY_KEY)) == 0
    out = capsys.readouterr().out
    assert f"polygon AAPL {POLY_DAY}: {len(trades)} trades, {len(exp_quotes)} quotes" in out
    cat = catalog(tmp_path)
    path = cat.find("POLYGON", "mbp-1", "AAPL", POLY_DAY)
    assert path is not None and path == tmp_path / "data/catalog/POLYGON/mbp-1/AAPL/2022-05-10.dbn.zst"
    store = db.DBNStore.from_file(path)
    assert store.dataset == "POLYGON" and str(store.schema) == "mbp-1" and store.symbols == ["AAPL"]
    recs = list(store)
    t_recs = [r for r in recs if r.action == "T"]
    q_recs = [r for r in recs if r.action != "T"]
    assert [(r.ts_event, r.price, r.size, r.side) for r in t_recs] == [
        (t.ts_event, t.price_fp, t.size, "N") for t in exp_trades]  # stored as the source said: no side
    assert [r.price for r in t_recs] == [float_to_fp(t["price"]) for t in trades]
    assert [(r.ts_event, r.levels[0].bid_px, r.levels[0].ask_px, r.levels[0].bid_sz, r.levels[0].ask_sz)
            for r in q_recs] == [(q.ts_event, q.bid_px_fp[0], q.ask_px_fp[0], q.bid_sz[0], q.ask_sz[0])
                                 for q in exp_quotes]
    # each trade record carries the quote in force before it (what the quote rule compared against)
    for r in t_recs:
        before = [q for q in exp_quotes if q.ts_event < r.ts_event][-1]
        assert (r.levels[0].bid_px, r.levels[0].ask_px) == (before.bid_px_fp[0], before.ask_px_fp[0])
    info = cat.info(path)
    assert info["trades"] == len(trades) and info["source"] == "polygon"
    assert info["sides"].startswith("N (none at the source)")

    async def replay() -> list[RawTrade]:
        return [ev async for ev in DbnFileFeed([path]) if isinstance(ev, RawTrade)]

    replayed = asyncio.run(replay())  # one replay path: the DBN file feed gives back the feed's trades
    assert [(t.ts_event, t.price_fp, t.size, t.side, t.symbol) for t in replayed] == [
        (t.ts_event, t.price_fp, t.size, t.side, "AAPL") for t in exp_trades]

    async def replay_all() -> list[Any]:
        return [ev async for ev in DbnFileFeed([path])]

    # ...and the validation layer infers the same sides from the stored quotes, naming the rule on each trade
    assert _sides_seen_by_the_engine(asyncio.run(replay_all())) == exp_sides

    requests_before = srv.count()
    assert fetch_command(args, settings(tmp_path, POLYGON_API_KEY=POLY_KEY)) == 0  # already there: no requests
    assert "already in the catalog" in capsys.readouterr().out and srv.count() == requests_before


def test_polygon_auth_error_is_one_line_and_stores_nothing(tmp_path: Path, srv: PolygonStandIn,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from tradebot.feeds.fetch import fetch_command

    srv.fail(401, times=10, path_prefix="/v3/trades")
    args = parse("fetch", "--source", "polygon", "--ticker", "AAPL", "--date", str(POLY_DAY), "--base-url",
                 srv.base_url)
    assert fetch_command(args, settings(tmp_path, POLYGON_API_KEY=POLY_KEY)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("polygon AAPL 2022-05-10: trades: HTTP 401 (check POLYGON_API_KEY)")
    assert "\n" not in err and POLY_KEY not in err
    assert catalog(tmp_path).days("POLYGON", "mbp-1", "AAPL") == [] and no_partials(tmp_path)
    assert fetch_command(args, settings(tmp_path)) == 2  # no key at all
    assert "POLYGON_API_KEY is not set" in capsys.readouterr().err


def test_polygon_failure_mid_day_and_aggregates_are_not_stored(tmp_path: Path, srv: PolygonStandIn) -> None:
    cat = catalog(tmp_path)
    fast = {"max_retries": 1, "backoff_initial": 0.001, "backoff_max": 0.01}
    srv.fail(500, times=2, path_prefix="/v3/quotes")  # the second stream dies after the trades page arrived
    with pytest.raises(FetchError, match="gave up after 2 attempts"):
        fetch_polygon(POLY_KEY, "AAPL", POLY_DAY, cat, base_url=srv.base_url, feed_options=fast)
    assert cat.days("POLYGON", "mbp-1", "AAPL") == [] and no_partials(tmp_path)
    srv.fail(403, times=1, path_prefix="/v3/trades")  # trades not in the plan: the feed would approximate
    with pytest.raises(FetchError, match="approximation is not stored"):
        fetch_polygon(POLY_KEY, "AAPL", POLY_DAY, cat, base_url=srv.base_url, feed_options=fast)
    assert cat.days("POLYGON", "mbp-1", "AAPL") == [] and no_partials(tmp_path)
    got = fetch_polygon(POLY_KEY, "AAPL", POLY_DAY, cat, base_url=srv.base_url, feed_options=fast)
    assert got is not None and got.trades == 2 and got.quotes == 20
    assert cat.days("POLYGON", "mbp-1", "AAPL") == [POLY_DAY]


# --- wiring ----------------------------------------------------------------------------------------------


def test_data_commands_parse_with_defaults() -> None:
    a = parse("fetch", "--start", "2025-03-10")
    assert (a.source, a.schema, a.yes, a.retries, a.dataset, a.catalog) == ("databento", "tbbo", False, 2, None, None)
    s = parse("synth", "--days", "2", "--out", "x")
    assert (s.schema, s.dataset, s.out) == ("tbbo", "SIM.GLBX", Path("x"))
    with pytest.raises(SystemExit):
        parse("fetch", "--schema", "ohlcv-1m")
