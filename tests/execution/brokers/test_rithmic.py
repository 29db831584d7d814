"""The Rithmic adapter against the R|Protocol stand-in (TLS websocket, async-rithmic's own messages), fault by fault.

Every test ends with the account flat or protected and the adapter's view equal to the server's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from support.polling import poll_until
from support.rithmic_server import AUTO, RithmicStandIn
from tradebot.core.config import Settings
from tradebot.core.logging import get_logger
from tradebot.core.types import Side, SideRule, Trade
from tradebot.execution.brokers import BrokerAuthError, BrokerUnavailableError, LiveBroker
from tradebot.execution.brokers.rithmic import RithmicBroker
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
from tradebot.execution.paper import PaperConfig
from tradebot.feeds.rithmic_session import RithmicSession, SessionConfig
from tradebot.ops.broker_session import BrokerSession

DATA = Path(__file__).resolve().parents[3] / "../shared/data/real/ES_2022-01-24_sierra.mbp-10.dbn.zst"


async def until(pred: Callable[[], object], within: float = 8.0) -> None:
    await poll_until(pred, within)


def session(srv: RithmicStandIn, *, password: str = "secret-pw", system: str = "Rithmic Test",
            timeout: float = 1.0) -> RithmicSession:
    return RithmicSession(SessionConfig("trader", password, system, srv.url, ca_file=srv.ca_file,
                                        request_timeout_s=timeout, reconnect_interval_s=0.2,
                                        reconnect_max_delay_s=0.5, max_reconnects=20))


@pytest.fixture
async def srv(tmp_path: Path) -> AsyncIterator[RithmicStandIn]:
    s = RithmicStandIn(tmp_path / "tls", [DATA], heartbeat_interval=2)
    await s.start()
    await s.advance(4)
    yield s
    await s.stop()


@pytest.fixture
async def broker(srv: RithmicStandIn) -> AsyncIterator[RithmicBroker]:
    b = RithmicBroker(session(srv), "ACC-1", ["ES"], fail_after_s=3.0)
    await b.connect()
    for ev in srv.events[: srv.pos]:
        b.on_market_event(ev)
    yield b
    await b.close()


class Events:
    """Everything the adapter reported, collected as the daemon's pump would."""

    def __init__(self, b: RithmicBroker) -> None:
        self.b = b
        self.all: list[BrokerEvent] = []

    def pump(self) -> list[BrokerEvent]:
        self.all += self.b.poll_events()
        return self.all

    def of(self, kind: type, coid: str | None = None) -> list[BrokerEvent]:
        self.pump()
        return [e for e in self.all if isinstance(e, kind) and (coid is None or e.client_order_id == coid)]


async def step(srv: RithmicStandIn, b: RithmicBroker, n: int = 1) -> None:
    """Market events to the server (fills) and to the adapter (the engine's view of the quote)."""
    start = srv.pos
    await srv.advance(n)
    for ev in srv.events[start: srv.pos]:
        b.on_market_event(ev)
    await asyncio.sleep(0.05)


def assert_view_equals_server(b: RithmicBroker, srv: RithmicStandIn) -> None:
    ids = b.broker_ids()
    views = {v.client_order_id: v for v in b.query_orders()}
    assert ids, "the adapter knows no orders"
    for coid, basket in ids.items():
        state, filled, qty = srv.order(basket)
        assert (views[coid].state, views[coid].filled_qty, views[coid].quantity) == (state, filled, qty), coid
    assert b.query_positions() == srv.positions()
    assert {f.fill_id for f in b.query_fills()} == {f["fill_id"] for f in srv.fills}


def market_bracket(srv: RithmicStandIn, sid: str = "sig1", side: Side = Side.BUY) -> BracketRequest:
    q = srv.paper._quotes["ES"]
    ref = q.ask_px[0] if side == Side.BUY else q.bid_px[0]
    sign = 1 if side == Side.BUY else -1
    return BracketRequest(sid, "ES", side, 1, OrderType.MARKET, None, ref - sign * 8, ref + sign * 12, srv.now_ns)


async def flatten_all(b: RithmicBroker, srv: RithmicStandIn, req: BracketRequest, more: tuple[str, ...] = ()) -> None:
    pos = b.query_positions().get("ES", 0)
    b.flatten(FlattenRequest(req.signal_id, "ES", f"{req.signal_id}-X", Side.SELL if pos > 0 else Side.BUY, abs(pos),
                             (req.entry_id, req.stop_id, req.target_id, *more), "test", srv.now_ns))
    if pos:
        await until(lambda: any(o.user_tag == f"{req.signal_id}-X" for o in srv.baskets.values()))
    for _ in range(50):  # market events until one strictly after the exit's time fills it
        if not srv.positions():
            break
        await step(srv, b, 1)
    await until(lambda: not srv.positions() and not srv.working())


async def test_round_trip_one_login_per_plant_auto_orders_tagged(srv: RithmicStandIn, broker: RithmicBroker) -> None:
    assert isinstance(broker, LiveBroker)
    assert srv.stats["logins_ticker"] == srv.stats["logins_order"] == srv.stats["logins_pnl"] == 1
    assert all(c.ok for c in broker.preflight()), broker.preflight()
    ev = Events(broker)
    req = market_bracket(srv)
    broker.submit_bracket(req)
    await until(lambda: ev.of(Ack, req.entry_id))
    (order,) = srv.orders_seen
    assert order.user_tag == req.entry_id and order.manual_or_auto == AUTO
    assert order.stop_ticks == 8 and order.target_ticks == 12
    await step(srv, broker, 2)
    await until(lambda: ev.of(Fill, req.entry_id))
    views = {v.client_order_id: v for v in broker.query_orders()}
    await until(lambda: {v.client_order_id: v for v in broker.query_orders()}.get(req.target_id) is not None)
    views = {v.client_order_id: v for v in broker.query_orders()}
    assert views[req.stop_id].state == LegState.WORKING and views[req.stop_id].price == req.stop_price
    assert views[req.target_id].state == LegState.WORKING and views[req.target_id].price == req.target_price
    assert broker.query_positions() == {"ES": 1}
    assert_view_equals_server(broker, srv)
    # Trail the stop two ticks up: a modify of the child order's trigger, confirmed by Rithmic.
    broker.modify_stop(req.stop_id, req.stop_price + 2)
    await until(lambda: ev.of(Modified, req.stop_id))
    mod = ev.of(Modified, req.stop_id)[0]
    assert isinstance(mod, Modified) and mod.stop_price == req.stop_price + 2
    (stop,) = [o for o in srv.working() if o.price_type == 4]
    assert round(stop.trigger_price / 0.25) == req.stop_price + 2
    assert {v.client_order_id: v.price for v in broker.query_orders()}[req.stop_id] == req.stop_price + 2
    assert srv.stats["heartbeats"] >= 3  # each plant's heartbeat right after login (then every interval - 1 s)
    await flatten_all(broker, srv, req)
    await until(lambda: ev.of(Cancelled, req.target_id) and ev.of(Fill, f"{req.signal_id}-X"))
    assert all(o.manual_or_auto == AUTO for o in srv.orders_seen) and srv.stats["manual_requests"] == 0
    assert_view_equals_server(broker, srv)
    assert broker.query_positions() == {}
    assert [(c, s_, q) for c, s_, q, _, _ in srv.trades()] == [("sig1-E", "BUY", 1), ("sig1-X", "SELL", 1)]
    assert [(f.client_order_id, f.price, f.fill_id) for f in broker.query_fills()] == [
        (c, px, fid) for c, _, _, px, fid in srv.trades()]


async def test_login_refused_is_fatal_and_unreachable_is_retryable(srv: RithmicStandIn,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BrokerAuthError, match="login refused"):
        await RithmicBroker(session(srv, password="wrong-password"), "ACC-1", ["ES"]).connect()
    logged = capsys.readouterr()
    assert "permission denied" in logged.out  # the library's error, routed through our JSON logs...
    assert "wrong-password" not in logged.out + logged.err  # ...with the request's password redacted
    with pytest.raises(BrokerAuthError, match="system name"):
        await RithmicBroker(session(srv, system="Nope"), "ACC-1", ["ES"]).connect()
    cfg = SessionConfig("trader", "secret-pw", "Rithmic Test", "wss://127.0.0.1:9", ca_file=srv.ca_file)
    with pytest.raises(BrokerUnavailableError):
        await RithmicBroker(RithmicSession(cfg), "ACC-1", ["ES"]).connect()


async def test_unknown_account_fails_preflight(srv: RithmicStandIn) -> None:
    b = RithmicBroker(session(srv), "OTHER", ["ES"])
    await b.connect()
    try:
        failed = [c for c in b.preflight() if not c.ok]
        assert [c.name for c in failed] == ["account"] and "ACC-1" in failed[0].detail
    finally:
        await b.close()


async def test_lost_ack_is_resolved_by_query_never_resent(srv: RithmicStandIn, broker: RithmicBroker) -> None:
    ev = Events(broker)
    srv.faults.lost_ack = 1
    q = srv.paper._quotes["ES"]
    req = BracketRequest("lost", "ES", Side.BUY, 1, OrderType.LIMIT, q.bid_px[0] - 20, q.bid_px[0] - 30,
                         q.bid_px[0] - 5, srv.now_ns)
    broker.submit_bracket(req)
    await asyncio.sleep(1.5)  # the request timed out (1 s): no answer, no event
    assert not ev.pump() and broker.stats["request_unanswered"] == 1
    broker.submit_bracket(req)  # the manager re-driving the same request: answered by a query, not sent again
    broker.request_status(req.entry_id)
    await until(lambda: ev.of(StatusReport, req.entry_id))
    report = ev.of(StatusReport, req.entry_id)[0]
    assert isinstance(report, StatusReport) and report.state == LegState.WORKING
    assert len(srv.orders_seen) == 1
    broker.cancel(req.entry_id)
    await until(lambda: ev.of(Cancelled, req.entry_id))
    assert not srv.working()
    assert_view_equals_server(broker, srv)


async def test_cancel_of_an_unanswered_order_finds_it_by_tag(srv: RithmicStandIn, broker: RithmicBroker) -> None:
    """The answer and the notifications of an order are lost; a cancel right after is neither dropped nor stuck
    behind the submission: it finds the order by its tag and cancels it."""
    ev = Events(broker)
    srv.faults.lost_ack = 1
    q = srv.paper._quotes["ES"]
    req = BracketRequest("gone", "ES", Side.SELL, 1, OrderType.LIMIT, q.ask_px[0] + 20, q.ask_px[0] + 30,
                         q.ask_px[0] + 5, srv.now_ns)
    broker.submit_bracket(req)
    await until(lambda: srv.baskets)
    broker.flatten(FlattenRequest(req.signal_id, "ES", "gone-X", Side.BUY, 0, (req.entry_id, req.stop_id,
                                                                               req.target_id), "test", srv.now_ns))
    await until(lambda: ev.of(Cancelled, req.entry_id))
    assert not srv.working() and broker.stats["lookups_by_tag"] >= 1 and len(srv.orders_seen) == 1
    assert_view_equals_server(broker, srv)


async def test_duplicate_and_out_of_order_notifications(srv: RithmicStandIn, broker: RithmicBroker) -> None:
    ev = Events(broker)
    srv.faults.duplicate = 10
    srv.faults.out_of_order = 10
    req = market_bracket(srv)
    broker.submit_bracket(req)
    await until(lambda: srv.baskets)
    await step(srv, broker, 2)
    await until(lambda: ev.of(Fill, req.entry_id) and req.target_id in broker.broker_ids())
    await asyncio.sleep(0.2)
    assert len(ev.of(Fill, req.entry_id)) == 1 and len(ev.of(Ack, req.entry_id)) == 1
    assert broker.stats["duplicate_fills"] >= 1
    assert srv.stats["reversed_bursts"] >= 1 and srv.stats["duplicated_bursts"] >= 1
    assert_view_equals_server(broker, srv)
    await flatten_all(broker, srv, req)
    await until(lambda: ev.of(Fill, f"{req.signal_id}-X"))
    await asyncio.sleep(0.2)
    assert len(ev.of(Cancelled, req.stop_id)) == 1
    assert_view_equals_server(broker, srv)


async def test_disconnect_mid_bracket_fill_while_down(srv: RithmicStandIn, broker: RithmicBroker) -> None:
    ev = Events(broker)
    srv.faults.disconnect_after_order = 1
    req = market_bracket(srv)
    broker.submit_bracket(req)
    await until(lambda: not broker.connected)
    await step(srv, broker, 3)  # the entry fills and the bracket is released while we are away
    assert srv.positions() == {"ES": 1} and not ev.of(Fill)
    await until(lambda: broker.connected and ev.of(Fill, req.entry_id), within=10)
    assert ev.of(Ack, req.entry_id)
    assert broker.stats["fills_recovered"] == 1
    titles = [a.title for a in broker.poll_alerts()]
    assert titles == ["Rithmic fills while disconnected"] and broker.stats["disconnects"] == 1
    assert {req.stop_id, req.target_id} <= set(broker.broker_ids())  # protected: the children are known
    assert_view_equals_server(broker, srv)
    await flatten_all(broker, srv, req)
    assert_view_equals_server(broker, srv)


async def test_forced_logout_reconnects_then_fails_closed(srv: RithmicStandIn, broker: RithmicBroker) -> None:
    ev = Events(broker)
    assert await srv.force_logout("order") == 1
    await until(lambda: broker.stats["forced_logouts"] == 1)
    await until(lambda: broker.connected and srv.stats["logins_order"] == 2)
    notes: list[tuple[str, str, str]] = []
    session_ = BrokerSession(Settings(), "rithmic", broker, lambda k, sev, t, d: notes.append((k, sev, t)),
                             get_logger("test"))
    session_._forward_alerts()  # the daemon's broker session turns the adapter's alerts into notifications
    assert ("broker_alert", "critical", "Rithmic forced logout") in notes
    req = market_bracket(srv)
    broker.submit_bracket(req)
    await until(lambda: srv.baskets)
    await step(srv, broker, 2)
    await until(lambda: ev.of(Fill, req.entry_id) and req.stop_id in broker.broker_ids())
    # Logged out again, and this time the gateway refuses the login: fail closed.
    srv.faults.refuse_login = True
    await srv.force_logout("order")
    await until(lambda: broker.state == "failed")
    assert any("fail closed" in a.title for a in broker.poll_alerts())
    broker.submit_bracket(market_bracket(srv, "sig2"))
    await until(lambda: ev.of(Reject, "sig2-E"))
    assert len(srv.orders_seen) == 1  # nothing new reached the broker
    assert srv.positions() == {"ES": 1} and {o.price_type for o in srv.working()} == {1, 4}  # protected
    # Refused credentials are not retried (repeated refused logins can lock the user out at Rithmic).
    await asyncio.sleep(1.5)
    assert srv.stats["logins_refused"] == 1 and broker.stats["gave_up"] == 1
    assert srv.positions() == {"ES": 1} and {o.price_type for o in srv.working()} == {1, 4}  # still protected


async def test_rp_code_reject_is_a_reject_event(srv: RithmicStandIn, broker: RithmicBroker) -> None:
    ev = Events(broker)
    srv.faults.reject_orders = [("1039", "insufficient margin")]
    req = market_bracket(srv)
    broker.submit_bracket(req)
    await until(lambda: ev.of(Reject, req.entry_id))
    rej = ev.of(Reject, req.entry_id)[0]
    assert isinstance(rej, Reject) and rej.reason == "rp_code 1039: insufficient margin"
    assert not srv.baskets and not srv.positions()


async def test_stop_rejected_by_the_exchange_then_flatten(srv: RithmicStandIn, broker: RithmicBroker) -> None:
    ev = Events(broker)
    srv.faults.reject_stop = 1
    req = market_bracket(srv)
    broker.submit_bracket(req)
    await until(lambda: srv.baskets)
    await step(srv, broker, 2)
    await until(lambda: ev.of(Reject, req.stop_id))
    rej = ev.of(Reject, req.stop_id)[0]
    assert isinstance(rej, Reject) and "wrong side" in rej.reason
    assert broker.query_positions() == {"ES": 1}
    # The no-naked-position rule re-places the stop as an order of its own (same protective price).
    broker.place_stop(StopRequest(req.signal_id, "ES", "sig1-S2", Side.SELL, 1, req.stop_price, srv.now_ns))
    await until(lambda: ev.of(Ack, "sig1-S2"))
    (placed,) = [o for o in srv.working() if o.user_tag == "sig1-S2"]
    assert placed.price_type == 4 and placed.manual_or_auto == AUTO
    assert {v.client_order_id: v.price for v in broker.query_orders()}["sig1-S2"] == req.stop_price
    assert_view_equals_server(broker, srv)
    await flatten_all(broker, srv, req, ("sig1-S2",))
    assert broker.query_positions() == {} and not srv.working()
    assert_view_equals_server(broker, srv)



async def test_built_from_settings_through_the_registry(srv: RithmicStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    from tradebot.execution.brokers import open_live_broker

    for k, v in {"RITHMIC_USER": "trader", "RITHMIC_PASSWORD": "secret-pw", "RITHMIC_ACCOUNT_ID": "ACC-1",
                 "RITHMIC_URL": srv.url, "RITHMIC_CA_FILE": str(srv.ca_file), "TRADING_SYMBOL": "MES"}.items():
        monkeypatch.setenv(k, v)
    b = open_live_broker(Settings(), "rithmic")
    assert isinstance(b, RithmicBroker)
    await b.connect()
    try:
        checks = {c.name: c for c in b.preflight()}
        assert all(c.ok for c in checks.values()) and checks["contract MES"].detail == "MESH2 on CME"
    finally:
        await b.close()
    monkeypatch.delenv("RITHMIC_PASSWORD")
    with pytest.raises(BrokerAuthError, match="RITHMIC_PASSWORD"):
        open_live_broker(Settings(_env_file=None), "rithmic")


async def test_deadman_switch_flattens_through_its_own_session(srv: RithmicStandIn, broker: RithmicBroker,
                                                               tmp_path: Path) -> None:
    """The daemon's session dies with a protected position open; the watchdog's dead-man's switch logs in with a
    session of its own (which knows the orders only from Rithmic's order history), cancels them and closes the
    position at market."""
    from tradebot.ops import deadman

    ev = Events(broker)
    req = market_bracket(srv)
    broker.submit_bracket(req)
    await until(lambda: srv.baskets)
    await step(srv, broker, 2)
    await until(lambda: ev.of(Fill, req.entry_id) and req.target_id in broker.broker_ids())
    await broker.close()  # the daemon is gone; its stop and target keep working at Rithmic

    async def market() -> None:
        while True:
            await srv.advance(1)
            await asyncio.sleep(0.02)

    ticker = asyncio.create_task(market())
    try:
        st = deadman.DeadmanState()
        cfg = Settings(_env_file=None, data_dir=tmp_path / "data")
        notes = await deadman.fire(cfg, "heartbeat stale", None, st, srv.now_ns, broker_override="rithmic",
                                   opener=lambda _s, _n: RithmicBroker(session(srv), "ACC-1", ["ES"]))
    finally:
        ticker.cancel()
    assert st.done, notes
    assert notes[0].title == "Dead-man's switch: daemon down, account flattened"
    assert not srv.positions() and not srv.working()
    assert srv.stats["logins_order"] == 2


async def test_no_connection_for_too_long_fails_closed(srv: RithmicStandIn, broker: RithmicBroker) -> None:
    ev = Events(broker)
    assert srv._server is not None
    srv._server.close()  # the gateway is gone: connections closed, nothing accepted
    await until(lambda: not broker.connected)
    assert broker.state == "reconnecting"
    broker.submit_bracket(market_bracket(srv, "early"))  # refused at once: never queued to go out late
    await until(lambda: ev.of(Reject, "early-E"))
    assert "no new entries" in ev.of(Reject, "early-E")[0].reason  # type: ignore[union-attr]
    await until(lambda: broker.state == "failed", within=10)  # fail_after_s=3 in the fixture
    alerts = broker.poll_alerts()
    assert any(a.severity == "critical" and "no connection to Rithmic" in a.detail for a in alerts)
    broker.submit_bracket(market_bracket(srv, "late"))
    await until(lambda: ev.of(Reject, "late-E"))
    assert not srv.orders_seen


def test_a_child_listed_before_its_parent_is_named_by_the_bracket() -> None:
    """Order history in any order: a stop listed before its entry is still the bracket's ``-S``, not the entry."""
    from support.rithmic_server import make

    b = RithmicBroker(RithmicSession(SessionConfig("u", "p" * 8, "Rithmic Test", "wss://127.0.0.1:9")), "A", ["ES"])
    common = {"is_snapshot": True, "account_id": "A", "symbol": "ESH2", "exchange": "CME", "quantity": 1,
              "user_tag": "s-E"}
    b._apply_exchange_note(make("ExchangeOrderNotification", basket_id="2", original_basket_id="1", price_type=4,
                                trigger_price=4340.0, transaction_type=2, status="open", **common))
    b._apply_exchange_note(make("ExchangeOrderNotification", basket_id="1", price_type=2, transaction_type=1,
                                status="complete", report_type="fill", total_fill_size=1, **common))
    assert b.broker_ids() == {"s-S": "2", "s-E": "1"}
    views = {v.client_order_id: v for v in b.query_orders()}
    assert views["s-S"].price == 17360 and views["s-S"].state == LegState.WORKING and views["s-S"].side == Side.SELL


async def test_partial_fills_grow_the_bracket(tmp_path: Path) -> None:
    """A 3-lot limit entry filled one contract at a time (the queue rule: prints at the limit): the stop and
    target grow with the position, and the adapter's view (quantities included) equals the server's."""
    srv = RithmicStandIn(tmp_path / "tls", [DATA], paper=PaperConfig(limit_fill_rule="queue"))
    await srv.start()
    await srv.advance(4)
    b = RithmicBroker(session(srv), "ACC-1", ["ES"])
    await b.connect()
    try:
        ev = Events(b)
        px = srv.paper._quotes["ES"].bid_px[0] - 2
        req = BracketRequest("pf", "ES", Side.BUY, 3, OrderType.LIMIT, px, px - 8, px + 8, srv.now_ns)
        b.submit_bracket(req)
        await until(lambda: ev.of(Ack, req.entry_id))
        for n in (1, 2):
            t = srv.now_ns + 1_000
            await srv.serve(Trade("ES", t, t, px, 1, Side.SELL, SideRule.EXCHANGE))
            await until(lambda n=n: len(ev.of(Fill, req.entry_id)) == n  # type: ignore[misc]
                        and {v.client_order_id: v.quantity for v in b.query_orders()}.get(req.stop_id) == n)
            assert b.query_positions() == {"ES": n}
            assert_view_equals_server(b, srv)
        views = {v.client_order_id: v for v in b.query_orders()}
        assert views[req.entry_id].state == LegState.PARTIALLY_FILLED
        assert views[req.target_id].quantity == 2 and views[req.target_id].state == LegState.WORKING
        await flatten_all(b, srv, req)
        assert_view_equals_server(b, srv)
        assert b.query_positions() == {}
    finally:
        await b.close()
        await srv.stop()


async def test_a_restarted_adapter_rebuilds_the_view_from_rithmic_without_events(srv: RithmicStandIn,
                                                                                broker: RithmicBroker) -> None:
    """After a restart (kill -9 included) the view comes from Rithmic's order history, fill history and PnL
    positions; nothing is replayed as events (the daemon reconciles its journal against the view)."""
    ev = Events(broker)
    req = market_bracket(srv)
    broker.submit_bracket(req)
    await until(lambda: srv.baskets)
    await step(srv, broker, 2)
    await until(lambda: ev.of(Fill, req.entry_id) and req.target_id in broker.broker_ids())
    again = RithmicBroker(session(srv), "ACC-1", ["ES"])
    await again.connect()
    try:
        assert again.poll_events() == [] and again.stats["events_at_connect"] > 0
        assert again.query_fills() == broker.query_fills()
        assert again.query_positions() == {"ES": 1} and again.broker_ids() == broker.broker_ids()
        assert_view_equals_server(again, srv)
        assert {c.name: c.ok for c in again.preflight()}["open orders"]
    finally:
        await again.close()


async def test_a_symbol_without_a_contract_fails_preflight_and_rejects(srv: RithmicStandIn) -> None:
    b = RithmicBroker(session(srv), "ACC-1", ["ES", "NQ"])  # the gateway lists no NQ front month
    await b.connect()
    try:
        failed = {c.name: c.detail for c in b.preflight() if not c.ok}
        assert failed == {"contract NQ": "NQ: no front-month contract from Rithmic"}
        ev = Events(b)
        b.submit_bracket(BracketRequest("nq", "NQ", Side.BUY, 1, OrderType.LIMIT, 60000, 59990, 60020, srv.now_ns))
        await until(lambda: ev.of(Reject, "nq-E"))
        assert not srv.orders_seen
    finally:
        await b.close()


async def test_a_stop_moved_before_the_entry_fills_is_released_there(srv: RithmicStandIn,
                                                                     broker: RithmicBroker) -> None:
    ev = Events(broker)
    q = srv.paper._quotes["ES"]
    px = q.ask_px[0] + 4  # a buy stop entry above the market
    req = BracketRequest("held", "ES", Side.BUY, 1, OrderType.STOP, px, px - 8, px + 12, srv.now_ns)
    broker.submit_bracket(req)
    await until(lambda: ev.of(Ack, req.entry_id))
    broker.modify_stop(req.stop_id, req.stop_price + 3)  # the stop is held: Rithmic has not created it yet
    await until(lambda: ev.of(Modified, req.stop_id))
    held = {v.client_order_id: v for v in broker.query_orders()}[req.stop_id]
    assert (held.state, held.price) == (LegState.HELD, req.stop_price + 3)
    t = srv.now_ns + 1_000
    await srv.serve(Trade("ES", t, t, px, 1, Side.BUY, SideRule.EXCHANGE))  # elects the stop entry
    await until(lambda: {v.client_order_id: v.price for v in broker.query_orders()
                         if v.state == LegState.WORKING}.get(req.stop_id) == req.stop_price + 3)
    (stop,) = [o for o in srv.working() if o.price_type == 4]
    assert round(stop.trigger_price / 0.25) == req.stop_price + 3
    assert_view_equals_server(broker, srv)
    await flatten_all(broker, srv, req)
