"""The ProjectX adapter against the local Gateway stand-in: every scripted fault ends flat or protected, with the
adapter's view equal to the server's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from support.projectx_server import ProjectXStandIn
from tradebot.core.types import BookUpdate, Side, SideRule, Trade
from tradebot.execution.brokers import BrokerAuthError, LiveBroker, open_live_broker
from tradebot.execution.brokers.projectx import ProjectXBroker
from tradebot.execution.journal import IntentVerdict, JournalEntry, ModifyRequested, SignalDecided
from tradebot.execution.model import (
    Ack,
    BracketRequest,
    BrokerEvent,
    Cancelled,
    Fill,
    FlattenRequest,
    LegState,
    Modified,
    OrderType,
    Reject,
    StatusReport,
    StopRequest,
)
from tradebot.feeds.projectx_rest import ProjectXClient

T0 = 1_764_772_200_000_000_000  # 2025-12-03 14:30 UTC
S = 1_000_000_000
ES_PX = 27_000  # 6750.00 in ES ticks
REAL_DAY = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "real" / "ES_2022-01-24_sierra.tbbo.dbn.zst"


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> int:
        return self.t


def book(ts: int, bid: int = ES_PX, ask: int = ES_PX + 1, sym: str = "ES") -> BookUpdate:
    return BookUpdate(sym, ts, ts, (bid, bid - 1), (20, 30), (ask, ask + 1), (25, 35))


def trade(ts: int, px: int, size: int = 1, side: Side = Side.BUY, sym: str = "ES") -> Trade:
    return Trade(sym, ts, ts, px, size, side, SideRule.EXCHANGE)


async def until(cond: Callable[[], Any], within: float = 5.0) -> Any:
    end = asyncio.get_running_loop().time() + within
    while True:
        v = cond()
        if v:
            return v
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class Harness:
    def __init__(self, server: ProjectXStandIn, broker: ProjectXBroker) -> None:
        self.server = server
        self.broker = broker
        self.events: list[BrokerEvent] = []
        self.t = T0

    def poll(self) -> list[BrokerEvent]:
        evs = self.broker.poll_events()
        self.events.extend(evs)
        return evs

    async def market(self, *evs: BookUpdate | Trade) -> None:
        for ev in evs:
            await self.server.market(ev)

    async def settle(self) -> None:
        """Let the hub deliver and the adapter's worker finish what it queued."""
        for _ in range(3):
            await asyncio.sleep(0.05)
            await self.broker.drain()
        self.poll()

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def assert_view_equals_server(self, root: str = "ES") -> None:
        assert self.broker.query_positions().get(root, 0) == self.server.net_position(root)
        working = {v.client_order_id for v in self.broker.query_orders()
                   if v.state in (LegState.WORKING, LegState.PARTIALLY_FILLED)}
        at_server = {o["customTag"] or f"px:{o['id']}" for o in self.server.open_orders()}
        assert working == at_server
        server_trades = {str(t["id"]) for t in self.server.trades}
        assert {f.fill_id for f in self.broker.query_fills()} == server_trades


def make_broker(server: ProjectXStandIn, *, api_key: str | None = None, symbols: tuple[str, ...] = ("ES",),
                **kw: Any) -> ProjectXBroker:
    client = ProjectXClient(server.url, server.username, api_key or server.api_key, timeout_seconds=2.0,
                            retries=3, backoff_initial_seconds=0.02, backoff_max_seconds=0.2)
    return ProjectXBroker(client, user_hub_url=server.user_hub_url, symbols=list(symbols),
                          backoff_initial_seconds=0.02, backoff_max_seconds=0.2, **kw)


@pytest.fixture
async def server() -> AsyncIterator[ProjectXStandIn]:
    s = ProjectXStandIn(ping_seconds=0.5)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def h(server: ProjectXStandIn) -> AsyncIterator[Harness]:
    broker = make_broker(server)
    await broker.connect()
    harness = Harness(server, broker)
    await harness.market(book(T0))
    yield harness
    await broker.close()


def bracket(sid: str = "sig1", side: Side = Side.BUY, qty: int = 1, entry: OrderType = OrderType.MARKET,
            entry_price: int | None = None, stop: int = ES_PX - 8, target: int = ES_PX + 8) -> BracketRequest:
    return BracketRequest(sid, "ES", side, qty, entry, entry_price, stop, target, T0)


# ---------------------------------------------------------------------------------------------------


async def test_preflight_and_registry(server: ProjectXStandIn) -> None:
    broker = make_broker(server)
    assert isinstance(broker, LiveBroker)
    await broker.connect()
    try:
        checks = {c.name: c for c in broker.preflight()}
        assert all(c.ok for c in checks.values()), checks
        assert checks["contract ES"].detail.startswith("CON.F.US.EP.Z26")
        assert broker.connected
    finally:
        await broker.close()


async def test_wrong_key_is_fatal(server: ProjectXStandIn) -> None:
    broker = make_broker(server, api_key="wrong-key-000000")
    with pytest.raises(BrokerAuthError):
        await broker.connect()
    await broker.close()


async def test_open_live_broker_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from tradebot.core.config import Settings

    for k in ("PROJECTX_USERNAME", "PROJECTX_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(BrokerAuthError, match="PROJECTX_API_KEY"):
        open_live_broker(Settings(_env_file=None), "projectx")


async def test_preflight_fails_on_foreign_order_and_locked_account(server: ProjectXStandIn) -> None:
    server.accounts[0]["canTrade"] = False
    server.accounts.append({"id": 466, "name": "other", "balance": 1.0, "canTrade": True, "isVisible": True,
                            "simulated": True})
    tok = server._login({"userName": server.username, "apiKey": server.api_key})["token"]
    assert tok
    await server._place({"accountId": 466, "contractId": server.contracts["ES"]["id"], "type": 1, "side": 0,
                         "size": 1, "limitPrice": 6700.0, "customTag": "by-hand"}, None)
    broker = make_broker(server, account_id=466)
    await broker.connect()
    try:
        checks = {c.name: c for c in broker.preflight()}
        # Reported for the daemon to judge against its journal (reconciliation halts on what it cannot explain).
        assert checks["open orders"].ok and "foreign" in checks["open orders"].detail
        assert "#9000" in checks["open orders"].detail
        assert [v.client_order_id for v in broker.query_orders()] == ["px:9000"]
        assert checks["account"].ok
    finally:
        await broker.close()
    locked = make_broker(server, account_id=465)
    await locked.connect()
    try:
        checks = {c.name: c for c in locked.preflight()}
        assert not checks["account"].ok and "canTrade" in checks["account"].detail
    finally:
        await locked.close()


async def test_bracket_round_trip_target_cancels_stop(h: Harness) -> None:
    h.broker.submit_bracket(bracket())
    await h.settle()
    assert [type(e) for e in h.events] == [Ack]
    await h.market(book(T0 + 1 * S))  # the market entry fills at the ask
    await h.settle()
    fills = h.of(Fill)
    assert len(fills) == 1 and fills[0].price == ES_PX + 1 and fills[0].client_order_id == "sig1-E"
    assert fills[0].commission_cents >= 0
    # Our own OCO: stop and target working at the broker, at the model's exact prices.
    tags = {o["customTag"]: o for o in h.server.open_orders()}
    assert set(tags) == {"sig1-S", "sig1-T"}
    assert tags["sig1-S"]["stopPrice"] == pytest.approx(6748.0) and tags["sig1-T"]["limitPrice"] == 6752.0
    h.assert_view_equals_server()
    await h.market(trade(T0 + 2 * S, ES_PX + 9))  # through the target
    await h.settle()
    assert [f.client_order_id for f in h.of(Fill)] == ["sig1-E", "sig1-T"]
    assert [c.client_order_id for c in h.of(Cancelled)] == ["sig1-S"]
    assert h.server.net_position("ES") == 0 and not h.server.open_orders()
    h.assert_view_equals_server()


async def test_reject_carries_the_broker_error(h: Harness) -> None:
    h.server.faults.reject_next["/api/Order/place"] = 7
    h.broker.submit_bracket(bracket())
    await h.settle()
    rej = h.of(Reject)
    assert len(rej) == 1 and rej[0].client_order_id == "sig1-E" and "broker error 7" in rej[0].reason
    assert not h.server.orders


@pytest.mark.parametrize("hub_silent", [False, True], ids=["hub-tells", "search-finds"])
async def test_lost_ack_is_found_by_tag_never_resent(h: Harness, hub_silent: bool) -> None:
    h.server.faults.lose_place_answers = 1
    h.server.faults.hold_user_events = hub_silent
    before = len(h.server.requests)
    h.broker.submit_bracket(bracket())
    await until(lambda: h.broker.stats["lost_ack"] == 1)
    await until(lambda: h.poll() or h.of(Ack), within=5)
    h.server.faults.hold_user_events = False
    places = [b for p, b in h.server.requests if p == "/api/Order/place"]
    assert len(places) == 1, "a placement in doubt must never be sent again"
    assert len(h.server.orders) == 1
    assert any(p == "/api/Order/searchOpen" for p, _ in h.server.requests[before:]) == hub_silent
    await h.market(book(T0 + 1 * S))
    await h.settle()
    assert len(h.of(Fill)) == 1
    assert {o["customTag"] for o in h.server.open_orders()} == {"sig1-S", "sig1-T"}
    h.assert_view_equals_server()


async def test_status_query_for_an_order_the_broker_never_saw(h: Harness) -> None:
    h.broker.request_status("nosuch-E")
    await h.settle()
    assert h.of(StatusReport) == [StatusReport("nosuch-E", h.of(StatusReport)[0].ts_ns, None, 0)]


async def test_duplicate_and_out_of_order_events(h: Harness) -> None:
    h.server.faults.duplicate_events = True
    h.server.faults.out_of_order = True
    h.broker.submit_bracket(bracket(qty=2))
    await h.settle()
    await h.market(book(T0 + 1 * S))
    await h.settle()
    assert len(h.of(Fill)) == 1 and h.of(Fill)[0].quantity == 2
    assert len(h.of(Ack)) == 1
    snap = h.broker.stats_snapshot()  # what the heartbeat shows
    assert snap["duplicate_trade"] >= 1 and snap["stale_order_event"] >= 1 and snap["hub_events"] > 0
    await h.market(trade(T0 + 2 * S, ES_PX - 9, side=Side.SELL))  # through the stop
    await h.settle()
    stop_fills = [f for f in h.of(Fill) if f.client_order_id == "sig1-S"]
    assert sum(f.quantity for f in stop_fills) == 2
    assert [c.client_order_id for c in h.of(Cancelled)] == ["sig1-T"]
    assert h.server.net_position("ES") == 0 and not h.server.open_orders()
    h.assert_view_equals_server()


async def test_disconnect_mid_bracket_resyncs_and_protects(h: Harness) -> None:
    h.server.faults.disconnect_after_fills = 1
    h.broker.submit_bracket(bracket())
    await h.settle()
    await h.market(book(T0 + 1 * S))  # entry fills, then the user hub drops
    await until(lambda: h.broker.stats["reconnects"] >= 1, within=5)
    await h.settle()
    assert [f.client_order_id for f in h.of(Fill)] == ["sig1-E"]
    assert {o["customTag"] for o in h.server.open_orders()} == {"sig1-S", "sig1-T"}
    h.assert_view_equals_server()


async def test_fill_while_hub_is_silent_is_resynced(h: Harness) -> None:
    h.broker.submit_bracket(bracket())
    await h.settle()
    h.server.faults.hold_user_events = True
    await h.market(book(T0 + 1 * S))  # fills while nothing is pushed
    await h.settle()
    assert not h.of(Fill)
    h.server.faults.hold_user_events = False
    await h.server.disconnect_all("user")  # the reconnect's REST resync finds the fill
    await until(lambda: h.poll() or h.of(Fill), within=5)
    await h.settle()
    assert [f.client_order_id for f in h.of(Fill)] == ["sig1-E"]
    assert {o["customTag"] for o in h.server.open_orders()} == {"sig1-S", "sig1-T"}
    h.assert_view_equals_server()


async def test_stop_the_broker_rejects_is_reported(h: Harness) -> None:
    h.server.faults.reject_stops = 1
    h.broker.submit_bracket(bracket())
    await h.settle()
    await h.market(book(T0 + 1 * S))
    await h.settle()
    rej = h.of(Reject)
    assert [r.client_order_id for r in rej] == ["sig1-S"] and "wrong side" in rej[0].reason
    # The no-naked-position rule re-places the stop under a new id; it is acknowledged and joins the OCO.
    h.broker.place_stop(StopRequest("sig1", "ES", "sig1-S2", Side.SELL, 1, ES_PX - 8, T0 + 2 * S))
    await h.settle()
    assert [a.client_order_id for a in h.of(Ack)] == ["sig1-E", "sig1-S2"]
    assert {o["customTag"] for o in h.server.open_orders()} == {"sig1-T", "sig1-S2"}
    await h.market(trade(T0 + 3 * S, ES_PX + 9))  # the target fills: the re-placed stop is cancelled
    await h.settle()
    assert h.server.net_position("ES") == 0 and not h.server.open_orders()
    assert [c.client_order_id for c in h.of(Cancelled)] == ["sig1-S2"]
    h.assert_view_equals_server()


async def test_place_stop_for_an_adopted_position_and_refused_when_flat(h: Harness) -> None:
    h.broker.place_stop(StopRequest("ghost", "ES", "ghost-S2", Side.SELL, 0, ES_PX - 8, T0))
    h.broker.place_stop(StopRequest("adopt1", "ES", "adopt1-S", Side.SELL, 1, ES_PX - 8, T0))
    await h.settle()
    assert [(r.client_order_id, r.reason) for r in h.of(Reject)] == [("ghost-S2", "no open position to protect")]
    assert [a.client_order_id for a in h.of(Ack)] == ["adopt1-S"]
    assert [o["customTag"] for o in h.server.open_orders()] == ["adopt1-S"]


async def test_stop_rejected_then_flatten(h: Harness) -> None:
    h.server.faults.reject_stops = 1
    h.broker.submit_bracket(bracket())
    await h.settle()
    await h.market(book(T0 + 1 * S))
    await h.settle()
    h.broker.flatten(FlattenRequest("sig1", "ES", "sig1-X", Side.SELL, 1, ("sig1-T",), "naked", T0 + 2 * S))
    await h.settle()
    await h.market(book(T0 + 3 * S))
    await h.settle()
    assert h.server.net_position("ES") == 0 and not h.server.open_orders()
    assert [f.client_order_id for f in h.of(Fill)] == ["sig1-E", "sig1-X"]
    h.assert_view_equals_server()


async def test_http_faults_401_429_5xx(h: Harness) -> None:
    h.server.expire_tokens()  # a 401 later in the session: log in again once
    h.server.faults.http_status["/api/Order/searchOpen"] = [429, 503]
    h.broker.request_status("sig9-E")
    await h.settle()
    await until(lambda: h.poll() or h.of(StatusReport))
    assert h.broker.client.stats["relogin"] == 1
    assert h.broker.client.stats["http_429"] == 1 and h.broker.client.stats["http_5xx"] == 1


async def test_modify_and_cancel(h: Harness) -> None:
    h.broker.submit_bracket(bracket(entry=OrderType.LIMIT, entry_price=ES_PX - 2, stop=ES_PX - 10))
    await h.settle()
    h.broker.modify_stop("sig1-S", ES_PX - 6)  # still held: changed locally
    await h.settle()
    assert h.of(Modified)[-1].stop_price == ES_PX - 6
    await h.market(trade(T0 + 1 * S, ES_PX - 3, side=Side.SELL))  # through the limit
    await h.settle()
    stop = next(o for o in h.server.open_orders() if o["customTag"] == "sig1-S")
    assert stop["stopPrice"] == pytest.approx(6748.5)
    h.broker.modify_stop("sig1-S", ES_PX - 4)
    await h.settle()
    stop = next(o for o in h.server.open_orders() if o["customTag"] == "sig1-S")
    assert stop["stopPrice"] == pytest.approx(6749.0)
    h.broker.flatten(FlattenRequest("sig1", "ES", "sig1-X", Side.SELL, 1, ("sig1-S", "sig1-T"), "operator",
                                    T0 + 2 * S))
    await h.settle()
    await h.market(book(T0 + 3 * S))
    await h.settle()
    assert h.server.net_position("ES") == 0 and not h.server.open_orders()
    assert {c.client_order_id for c in h.of(Cancelled)} == {"sig1-S", "sig1-T"}
    h.assert_view_equals_server()


async def test_restart_adopts_orders_and_journals_fills_from_the_broker(server: ProjectXStandIn) -> None:
    first = make_broker(server)
    await first.connect()
    h = Harness(server, first)
    await h.market(book(T0))
    first.submit_bracket(bracket())
    await h.settle()
    await first.close()  # the daemon dies with a working entry
    await h.market(book(T0 + 1 * S))  # ... which fills while it is down
    second = make_broker(server)
    await second.connect()
    try:
        fills = second.query_fills()
        assert [f.client_order_id for f in fills] == ["sig1-E"]
        assert second.query_positions() == {"ES": 1}
        assert [c.name for c in second.preflight() if not c.ok] == []
        # The manager's recovery hands over the journal: the open bracket is re-attached, its OCO goes out.
        req = bracket()
        second.restore([
            JournalEntry(1, T0, SignalDecided(
                req.signal_id, T0, "ES", req.side, 1, OrderType.MARKET, None, req.stop_price, req.target_price, 0.5,
                "p", "", (), IntentVerdict.TAKEN, "", "ES", 1, 1250)),
            JournalEntry(2, T0 + 1, ModifyRequested("sig1-S", ES_PX - 6)),
            JournalEntry(3, T0 + 2, SignalDecided(
                "old", T0 + 2, "ES", Side.BUY, 1, OrderType.MARKET, None, 1, 99_999, 0.5, "p", "", (),
                IntentVerdict.TAKEN, "", "ES", 1, 1250))])
        h2 = Harness(server, second)
        await h2.settle()
        assert {o["customTag"] for o in server.open_orders()} == {"sig1-S", "sig1-T"}
        stop = next(o for o in server.open_orders() if o["customTag"] == "sig1-S")
        assert stop["stopPrice"] == pytest.approx(6748.5)
        assert "old-E" not in {v.client_order_id for v in second.query_orders()}
        h2.assert_view_equals_server()
    finally:
        await second.close()


async def test_native_brackets_for_a_limit_entry(server: ProjectXStandIn) -> None:
    broker = make_broker(server, native_brackets=True)
    await broker.connect()
    h = Harness(server, broker)
    try:
        await h.market(book(T0))
        h.broker.submit_bracket(bracket(entry=OrderType.LIMIT, entry_price=ES_PX - 2, stop=ES_PX - 10,
                                        target=ES_PX + 6))
        await h.settle()
        place = next(b for p, b in server.requests if p == "/api/Order/place")
        assert place["stopLossBracket"] == {"ticks": 8, "type": 4}
        assert place["takeProfitBracket"] == {"ticks": 8, "type": 1}
        await h.market(trade(T0 + 1 * S, ES_PX - 3, side=Side.SELL))  # through the limit
        await h.settle()
        # The Gateway placed the children (no tags); the adapter recognised them as the bracket's stop and target.
        assert len(server.open_orders()) == 2 and all(o["customTag"] is None for o in server.open_orders())
        assert broker.stats["native_children"] == 2
        assert len([p for p, _ in server.requests if p == "/api/Order/place"]) == 1
        views = {v.client_order_id: v for v in broker.query_orders()}
        assert views["sig1-S"].state == LegState.WORKING and views["sig1-T"].state == LegState.WORKING
        assert not [v for v in views if v.startswith("px:")]
        await h.market(trade(T0 + 2 * S, ES_PX + 7))  # through the target: the Gateway's OCO cancels the stop
        await h.settle()
        assert [f.client_order_id for f in h.of(Fill)] == ["sig1-E", "sig1-T"]
        assert [c.client_order_id for c in h.of(Cancelled)] == ["sig1-S"]
        assert server.net_position("ES") == 0 and not server.open_orders()
    finally:
        await broker.close()


async def test_dead_mans_switch_flattens_through_a_fresh_session(server: ProjectXStandIn) -> None:
    """The watchdog's own session (a second adapter) cancels every working order, foreign ones too, and closes
    the position; the account ends flat at the Gateway."""
    from tradebot.ops.deadman import flatten_account

    first = make_broker(server)
    await first.connect()
    h = Harness(server, first)
    await h.market(book(T0))
    first.submit_bracket(bracket())
    await h.settle()
    await h.market(book(T0 + 1 * S))
    await h.settle()
    await first.close()  # the daemon dies holding 1 ES with its stop and target working
    await server._place({"accountId": 465, "contractId": server.contracts["ES"]["id"], "type": 1, "side": 0,
                         "size": 1, "limitPrice": 6700.0, "customTag": "by-hand"}, None)
    watchdog = make_broker(server)
    await watchdog.connect()
    try:
        async def feed_market() -> None:
            await asyncio.sleep(0.3)
            await server.market(book(T0 + 2 * S))

        task = asyncio.create_task(feed_market())
        result = await flatten_account(watchdog, {"ES": ("sig1", "sig1-X1")}, T0 + 2 * S, timeout_s=5, poll_s=0.05)
        await task
        assert result.ok, result.detail
        assert server.net_position("ES") == 0 and not server.open_orders()
        assert {o["customTag"] for o in server.orders.values() if o["status"] == 3} == {"sig1-S", "sig1-T", "by-hand"}
    finally:
        await watchdog.close()


async def test_same_fills_as_the_paper_broker_on_a_real_day(server: ProjectXStandIn) -> None:
    """A replayed real ES minute: the same brackets through the adapter + stand-in and through the paper broker
    fill identically (price, quantity, side, time, commission): the stand-in fills by the paper broker's rules
    and our own OCO places and cancels children as the paper bracket does."""
    from support.projectx_server import load_events
    from tradebot.execution.paper import PaperBroker

    events = await load_events(REAL_DAY, "ES")
    broker = make_broker(server)
    await broker.connect()
    paper = PaperBroker(server.paper.config)
    h = Harness(server, broker)
    paper_fills: list[Fill] = []
    n = 0
    try:
        for i, ev in enumerate(events):
            if i % 250 == 21 and isinstance(ev, Trade):
                n += 1
                side = Side.BUY if n % 2 else Side.SELL
                sign = 1 if side == Side.BUY else -1
                limit = n % 3 == 0
                px = ev.price - sign if limit else ev.price
                req = BracketRequest(f"s{n}", "ES", side, 1 + n % 2, OrderType.LIMIT if limit else OrderType.MARKET,
                                     px if limit else None, px - sign * 6, px + sign * 6, server.now_ns)
                paper.submit_bracket(req)
                broker.submit_bracket(req)
                await h.settle()
            before = server.fills_seen
            paper.on_market_event(ev)
            await server.market(ev)
            paper_fills += [e for e in paper.poll_events() if isinstance(e, Fill)]
            if server.fills_seen != before:
                await h.settle()  # the adapter places or cancels children before the next event, as paper does
        await h.settle()
    finally:
        await broker.close()
    def key(f: Fill) -> tuple[object, ...]:
        return (f.client_order_id, f.side, f.quantity, f.price, f.ts_ns, f.commission_cents)

    assert n >= 10 and len(paper_fills) >= n and any(f.client_order_id.endswith(("-S", "-T")) for f in paper_fills)
    assert [key(f) for f in h.of(Fill)] == [key(f) for f in paper_fills]


async def test_login_http_401_is_fatal(server: ProjectXStandIn) -> None:
    server.faults.http_status["/api/Auth/loginKey"] = [401]
    broker = make_broker(server)
    with pytest.raises(BrokerAuthError, match="HTTP 401"):
        await broker.connect()
    await broker.close()


async def test_placement_refused_with_429_is_never_resent(h: Harness) -> None:
    """429 on /api/Order/place: nothing was executed; the adapter does not retry it (a placement in doubt is
    searched for, never re-sent) and the manager's status query learns the broker does not know it."""
    h.server.faults.http_status["/api/Order/place"] = [429]
    h.broker.submit_bracket(bracket())
    await until(lambda: h.broker.stats["lost_ack"] == 1)
    h.broker.request_status("sig1-E")
    await until(lambda: h.poll() or h.of(StatusReport))
    assert h.of(StatusReport)[0].state is None
    assert not h.server.orders and not h.of(Ack)
    assert len([p for p, _ in h.server.requests if p == "/api/Order/place"]) == 1


async def test_session_token_is_renewed_before_expiry(server: ProjectXStandIn) -> None:
    client = ProjectXClient(server.url, server.username, server.api_key, token_refresh_seconds=0.05)
    try:
        first = await client.token()
        await asyncio.sleep(0.1)
        second = await client.token()
        assert second != first and client.stats["refreshes"] == 1 and client.stats["logins"] == 1
        assert any(p == "/api/Auth/validate" for p, _ in server.requests)
        assert await client.accounts()
    finally:
        await client.aclose()


async def test_user_hub_refused_after_a_drop_gets_a_fresh_token(h: Harness) -> None:
    """The session expired while the socket was down: the hub refuses the old token (401), the adapter logs in
    again and re-subscribes, and the REST resync brings what happened meanwhile."""
    h.broker.submit_bracket(bracket())
    await h.settle()
    h.server.expire_tokens()
    h.server.faults.refuse_hub = 1
    await h.server.disconnect_all("user")
    await h.market(book(T0 + 1 * S))  # fills while the adapter is reconnecting
    await until(lambda: h.broker.stats["reconnects"] >= 1 and h.broker.connected, within=10)
    await h.settle()
    assert h.broker.hub.stats["unauthorized"] >= 1 and h.broker.client.stats["logins"] >= 2
    assert [f.client_order_id for f in h.of(Fill)] == ["sig1-E"]
    assert {o["customTag"] for o in h.server.open_orders()} == {"sig1-S", "sig1-T"}
    h.assert_view_equals_server()


async def test_restart_recognises_orders_on_a_contract_it_was_not_told_about(server: ProjectXStandIn) -> None:
    """An MES bracket (the tier traded MES on an ES signal) survives a restart of an adapter set up for ES only:
    its contract is resolved from the order itself, so the orders are ours, not foreign."""
    await server.market(book(T0))
    await server._place({"accountId": 465, "contractId": server.contracts["MES"]["id"], "type": 4, "side": 1,
                         "size": 1, "stopPrice": 6748.0, "customTag": "sig7-S"}, None)
    broker = make_broker(server, symbols=("ES",))
    await broker.connect()
    try:
        views = {v.client_order_id: v for v in broker.query_orders()}
        assert set(views) == {"sig7-S"} and views["sig7-S"].symbol == "MES"
        assert views["sig7-S"].price == ES_PX - 8 and views["sig7-S"].state == LegState.WORKING
    finally:
        await broker.close()


async def test_alerts_account_locked_and_fills_recovered(h: Harness) -> None:
    assert h.broker.poll_alerts() == []
    await h.server.set_can_trade(False)
    await h.settle()
    (locked,) = h.broker.poll_alerts()
    assert locked.severity == "critical" and "cannot trade" in locked.title
    h.broker.submit_bracket(bracket())
    await h.settle()
    assert "Account cannot trade" in h.of(Reject)[0].reason
    await h.server.set_can_trade(True)
    await h.settle()
    assert [a.severity for a in h.broker.poll_alerts()] == ["success"]
    h.broker.submit_bracket(bracket("sig2"))
    await h.settle()
    h.server.faults.hold_user_events = True
    await h.market(book(T0 + 1 * S))
    h.server.faults.hold_user_events = False
    await h.server.disconnect_all("user")
    await until(lambda: h.broker.stats["reconnects"] >= 1)
    await h.settle()
    recovered = h.broker.poll_alerts()
    assert [a.title for a in recovered] == ["ProjectX: 1 fill(s) recovered after a reconnect"]


async def test_wrapped_and_malformed_hub_payloads(h: Harness) -> None:
    """Some deployments wrap user-hub events as {"action": n, "data": {...}}; junk is counted, never raised."""
    acct = dict(h.server.accounts[0], canTrade=False)
    h.broker._on_hub_event("GatewayUserAccount", [{"action": 1, "data": acct}])
    assert h.broker.stats["account_locked"] == 1
    h.broker._on_hub_event("GatewayUserOrder", ["junk"])
    h.broker._on_hub_event("GatewayUserTrade", [{"id": "x"}])
    h.broker._on_hub_event("GatewayUserSomethingNew", [{}])
    assert h.broker.stats["bad_hub_event"] == 1 and h.broker.stats["bad_trade_event"] == 1
    assert h.broker.stats["unknown_hub_event"] == 1


async def test_restart_after_a_replaced_stop_does_not_send_the_original(server: ProjectXStandIn) -> None:
    """The bracket's stop was refused and re-placed as -S2 before the restart: recovery must not send the
    original -S as well (two stops for one position could both fill)."""
    server.faults.reject_stops = 1
    first = make_broker(server)
    await first.connect()
    h = Harness(server, first)
    await h.market(book(T0))
    first.submit_bracket(bracket())
    await h.settle()
    await h.market(book(T0 + 1 * S))
    await h.settle()
    first.place_stop(StopRequest("sig1", "ES", "sig1-S2", Side.SELL, 1, ES_PX - 8, T0 + 2 * S))
    await h.settle()
    await first.close()
    second = make_broker(server)
    await second.connect()
    try:
        second.restore_bracket(bracket())
        await Harness(server, second).settle()
        assert sorted(o["customTag"] for o in server.open_orders()) == ["sig1-S2", "sig1-T"]
        sent = [b for p, b in server.requests if p == "/api/Order/place" and b.get("customTag") == "sig1-S"]
        assert len(sent) == 1  # the refused one, before the restart
    finally:
        await second.close()
