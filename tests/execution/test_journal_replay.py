"""Replaying the journal gives the ledger the live run built: the real trading core over real data, then a
rebuild from nothing but the journal's typed entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.journal_session import run_session, session_settings
from tradebot.execution import journal as jn
from tradebot.execution.ledger import Ledger, rebuild_from_journal
from tradebot.execution.risk import usd_to_cents
from tradebot.state.store import StateStore


def rows_by_table(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[tuple[str, Any], ...]]]:
    return {t: sorted((tuple(sorted(r.items())) for r in rs), key=repr) for t, rs in rows.items()}


def test_replaying_the_journal_rebuilds_the_live_ledger_and_every_projection(tmp_path: Path) -> None:
    settings = session_settings()
    store = StateStore.open(tmp_path / "tradebot-paper.db", synchronous="OFF")
    try:
        core = run_session(store, settings)
        live: Ledger = core.manager.ledger
        written = store.dump_projections()  # what the live run committed, record by record

        entries = list(jn.read(store))
        kinds = {e.kind for e in entries}
        assert {jn.JournalKind.SIGNAL, jn.JournalKind.BROKER_FILL, jn.JournalKind.BROKER_CANCELLED,
                jn.JournalKind.TRADING_STATE, jn.JournalKind.EXIT_SIGNAL, jn.JournalKind.AUTO_FLATTEN,
                jn.JournalKind.FLATTEN_REQUEST, jn.JournalKind.MARGIN_CHECK, jn.JournalKind.TIER} <= kinds
        assert sum(b.state.value == "closed" for b in live.brackets.values()) >= 2  # real trades, closed
        assert live.anomalies["illegal_leg_transition"] == 0 and live.anomalies["illegal_transition"] == 0
        assert core.manager.broker.anomalies == {}  # type: ignore[attr-defined]  # the paper broker's table
        for rec in store.journal():  # every stored payload is exactly the canonical encoding of its event
            assert jn.encode(jn.decode(rec.kind, rec.payload)) == (rec.kind, rec.payload)

        rebuilt = rebuild_from_journal(store, usd_to_cents(settings.execution.starting_balance), write=False)
        assert rows_by_table(rebuilt.all_rows()) == rows_by_table(live.all_rows())
        assert (rebuilt.anomalies, rebuilt.to_flatten, rebuilt.limit_day, rebuilt.total_net_cents,
                rebuilt.last_seq, set(rebuilt.live)) == (live.anomalies, live.to_flatten, live.limit_day,
                                                         live.total_net_cents, live.last_seq, set(live.live))
        assert {c: (leg.state, leg.filled_qty, leg.fill_value, leg.fills) for c, leg in rebuilt.legs.items()} == {
            c: (leg.state, leg.filled_qty, leg.fill_value, leg.fills) for c, leg in live.legs.items()}

        store.replace_projections(rebuilt.all_rows())
        assert store.dump_projections() == written
    finally:
        store.close()
