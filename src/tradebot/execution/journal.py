"""The execution journal's vocabulary: one kind enum, one frozen event class per kind, one lossless codec.

The journal is the source of truth (the ledger is a pure function of it), so what a record *means* is defined
here once, in types: every kind the code writes is a :class:`JournalKind`, every kind has exactly one frozen
dataclass with typed fields (integer ticks, cents and UTC ns; enums for states), and :func:`encode` /
:func:`decode` turn an event into ``(kind, JSON object)`` and back without loss (a property test checks every
kind). The SQLite store only keeps ``kind`` and the JSON text; it never sees these classes, so the broker
interface depends on this module and the :class:`Journal` protocol, not on the database.

Evolution rules, because databases outlive binaries:

- A record whose kind this build does not know (written by a newer or an older tradebot) is an error
  (:class:`UnknownJournalKindError`), never skipped: skipping a fill or an adoption would silently give a
  wrong position. The daemon checks the journal's kinds (:func:`check_kinds`) before it replays anything and
  refuses to start, naming them.
- A payload key this build does not know is an error too (the record would lose data if decoded).
- A field added after databases existed gets a default; a record written before it lacks the key and decodes
  with that default (e.g. ``armed_ns`` of signals, ``threatens`` of exit signals, the optional ``set_state``
  and ``source``). Every other field is required. New records always carry every field, and journal rows are
  never rewritten (no migration touches the history; ``tests/state/test_migration.py`` replays a database
  written before this module existed).
- The kind strings are the ones the journal has always held, so existing databases replay unchanged.

Adding a kind: add the :class:`JournalKind` member and a ``@journal_event(JournalKind.X)`` frozen dataclass
here and in :data:`JournalEvent` (the import-time check refuses a kind without a class or a class without a
kind), then a handler in the ledger's dispatch table (checked against :data:`EVENT_TYPES` when the ledger
imports), and, if a journal-backed broker must redo it on restore, a case in ``PaperBroker.restore``.

Size: the journal's whole vocabulary on purpose: a kind is added by one enum member and one event class side by
side, and the import-time check that every kind has exactly one class reads them together.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol, TypeVar

from tradebot.core.contracts import TickValue
from tradebot.core.types import Side
from tradebot.execution.model import HaltKind, LegState, OrderType, TradingState


class JournalKind(enum.StrEnum):
    """Every kind of journal record (the ``kind`` column)."""

    SESSION_START = "session_start"
    """A trading day began (may clear a daily halt in the same record)."""
    SIGNAL = "signal"
    """An intent and its verdict; a taken one is the bracket submission (entry + stop + target)."""
    FLATTEN_REQUEST = "flatten_request"
    """Close one bracket: cancel its working legs, then a market exit for the open quantity."""
    CANCEL_REQUEST = "cancel_request"
    MODIFY_REQUEST = "modify_request"
    """Move a working stop."""
    STATUS_REQUEST = "status_request"
    """Ask the broker about an order it did not answer for (never a re-send)."""
    BROKER_ACK = "broker_ack"
    BROKER_REJECT = "broker_reject"
    BROKER_FILL = "broker_fill"
    """A fill, partial or complete (the leg's state follows from its filled quantity)."""
    BROKER_CANCELLED = "broker_cancelled"
    BROKER_MODIFIED = "broker_modified"
    BROKER_STATUS = "broker_status"
    """The broker's answer to a status request."""
    SUBMIT_TIMEOUT = "submit_timeout"
    """No broker answer in time: the bracket becomes UNKNOWN and is queried."""
    TRADING_STATE = "trading_state"
    """Halt, reduce (exits only) or resume."""
    TIER = "tier"
    """The capital tier (contract and size limits) for the trading day."""
    MARGIN_CHECK = "margin_check"
    EXIT_SIGNAL = "exit_signal"
    """An order-flow exit signal and what was decided (alert or close at market)."""
    AUTO_FLATTEN = "auto_flatten"
    """End of day: flatten everything, exits only until the next trading day."""
    ANOMALY = "anomaly"
    """A malformed broker event that was dropped."""
    DAILY_LIMIT = "daily_limit"
    """The daily profit target or loss limit was reached."""
    RECOVERY = "recovery"
    """Start-up reconciliation with the broker: ok, or a mismatch that halts trading."""
    RECONCILE = "reconcile"
    """Live, every N seconds: a mismatch with the broker seen on two checks in a row halts trading."""
    ADOPT = "adopt"
    """Live: the operator took over a position the journal did not know (``tradebot adopt``), with its stop."""
    PROTECT_REQUEST = "protect_request"
    """Live, no naked position: a stand-alone stop re-placed for an open position (old stop cancelled)."""
    PROPFIRM = "propfirm"
    """Prop-firm account state after a change: day roll, headroom alert, breach (halt + flatten), new peak."""


# ---------------------------------------------------------------------------------------------------
# Shared value types


class IntentVerdict(enum.StrEnum):
    """What the risk gate decided about an intent."""

    TAKEN = "taken"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class StateChange:
    """A trading-state change carried inside the decision record that causes it (applied atomically with it)."""

    state: TradingState
    kind: HaltKind = HaltKind.NONE
    reason: str = ""


@dataclass(frozen=True, slots=True)
class MarginRow:
    """One contract's margin check."""

    symbol: str
    margin_cents: int
    limit_cents: int | None
    ok: bool
    source: str = ""


# ---------------------------------------------------------------------------------------------------
# Events, one per kind

_E = TypeVar("_E")
EVENT_TYPES: dict[JournalKind, type] = {}
"""The event class of each kind."""
KIND_OF: dict[type, JournalKind] = {}
"""The kind of each event class."""


def journal_event(kind: JournalKind) -> Callable[[type[_E]], type[_E]]:
    """Register a frozen, slotted dataclass as the one event class of ``kind``."""

    def register(cls: type[_E]) -> type[_E]:
        params = getattr(cls, "__dataclass_params__", None)
        if params is None or not params.frozen or not hasattr(cls, "__slots__"):
            raise TypeError(f"{cls.__name__}: a journal event is a frozen dataclass with slots")
        if kind in EVENT_TYPES:
            raise TypeError(f"journal kind {kind.value!r} already has {EVENT_TYPES[kind].__name__}")
        EVENT_TYPES[kind] = cls
        KIND_OF[cls] = kind
        return cls

    return register


@journal_event(JournalKind.SESSION_START)
@dataclass(frozen=True, slots=True)
class SessionStarted:
    day: str
    """Trading day, ISO date."""
    mode: str
    symbols: tuple[str, ...]
    set_state: StateChange | None = None


@journal_event(JournalKind.SIGNAL)
@dataclass(frozen=True, slots=True)
class SignalDecided:
    """An intent as the strategy emitted it, and what was decided. ``taken``: a bracket was sent for
    ``traded_qty`` of ``traded_symbol`` (the tier may map an ES signal to MES)."""

    signal_id: str
    ts_ns: int
    symbol: str
    side: Side
    quantity: int
    entry_type: OrderType
    entry_price: int | None
    stop_price: int
    target_price: int
    confidence: float
    pattern: str
    regime: str
    reasons: tuple[str, ...]
    verdict: IntentVerdict
    reason: str
    traded_symbol: str
    traded_qty: int
    tick_value_cents: TickValue
    """Of the traded contract, captured at submission (0 when nothing was traded)."""
    armed_ns: int = 0
    """When the entry can first execute (0: ``ts_ns``); absent in records written before it existed."""

    @property
    def taken(self) -> bool:
        return self.verdict == IntentVerdict.TAKEN


@journal_event(JournalKind.FLATTEN_REQUEST)
@dataclass(frozen=True, slots=True)
class FlattenRequested:
    signal_id: str
    symbol: str
    exit_id: str
    side: Side
    """Side of the closing order."""
    quantity: int
    """0: nothing open, only cancel."""
    cancel_ids: tuple[str, ...]
    reason: str


@journal_event(JournalKind.CANCEL_REQUEST)
@dataclass(frozen=True, slots=True)
class CancelRequested:
    client_order_id: str
    reason: str


@journal_event(JournalKind.MODIFY_REQUEST)
@dataclass(frozen=True, slots=True)
class ModifyRequested:
    client_order_id: str
    stop_price: int


@journal_event(JournalKind.STATUS_REQUEST)
@dataclass(frozen=True, slots=True)
class StatusRequested:
    client_order_id: str


@journal_event(JournalKind.BROKER_ACK)
@dataclass(frozen=True, slots=True)
class OrderAcknowledged:
    client_order_id: str
    source: str = ""
    """Empty: the broker's own answer; otherwise what produced it (``reconciled`` at start-up)."""


@journal_event(JournalKind.BROKER_REJECT)
@dataclass(frozen=True, slots=True)
class OrderRejected:
    client_order_id: str
    reason: str
    source: str = ""


@journal_event(JournalKind.BROKER_FILL)
@dataclass(frozen=True, slots=True)
class OrderFilled:
    fill_id: str
    client_order_id: str
    symbol: str
    side: Side
    quantity: int
    price: int
    """Integer ticks."""
    ts_ns: int
    commission_cents: int
    """Commission plus fees for this fill (all contracts)."""
    day: str
    """Trading day the fill belongs to."""
    tick_value_cents: TickValue
    """Of ``symbol``; used only for a fill of an order the journal does not know (0: unknown contract)."""


@journal_event(JournalKind.BROKER_CANCELLED)
@dataclass(frozen=True, slots=True)
class OrderCancelled:
    client_order_id: str
    reason: str
    day: str
    """Trading day of the cancel (a cancel can close a bracket); may be empty."""
    source: str = ""


@journal_event(JournalKind.BROKER_MODIFIED)
@dataclass(frozen=True, slots=True)
class StopModified:
    client_order_id: str
    stop_price: int


@journal_event(JournalKind.BROKER_STATUS)
@dataclass(frozen=True, slots=True)
class OrderStatus:
    client_order_id: str
    state: LegState | None
    """``None``: the broker does not know the order."""
    filled_qty: int
    day: str


@journal_event(JournalKind.SUBMIT_TIMEOUT)
@dataclass(frozen=True, slots=True)
class SubmitTimedOut:
    signal_id: str


@journal_event(JournalKind.TRADING_STATE)
@dataclass(frozen=True, slots=True)
class TradingStateChanged:
    state: TradingState
    kind: HaltKind
    reason: str


@journal_event(JournalKind.TIER)
@dataclass(frozen=True, slots=True)
class TierChanged:
    number: int
    name: str
    symbol: str
    max_contracts: int
    balance_cents: int
    previous: str | None
    """The previous tier's name; ``None`` for the first tier of a database."""


@journal_event(JournalKind.MARGIN_CHECK)
@dataclass(frozen=True, slots=True)
class MarginChecked:
    day: str
    results: tuple[MarginRow, ...]
    set_state: StateChange | None = None


@journal_event(JournalKind.EXIT_SIGNAL)
@dataclass(frozen=True, slots=True)
class ExitSignalDecided:
    symbol: str
    reason: str
    decision: str
    """``no_position``, ``alert`` (human in the loop) or ``auto_exit``."""
    signal_ids: tuple[str, ...]
    """Brackets the signal threatened."""
    flatten: tuple[str, ...]
    """Brackets ordered closed (the affected ones when ``auto_exit``)."""
    flatten_reason: str
    threatens: str = "any"
    """``long``, ``short`` or ``any``; absent in records written before it existed."""


@journal_event(JournalKind.AUTO_FLATTEN)
@dataclass(frozen=True, slots=True)
class AutoFlattenDecided:
    day: str
    decision: str
    reason: str
    symbol: str
    """Comma-separated symbols of the brackets open at the time."""
    flatten: tuple[str, ...]
    flatten_reason: str
    set_state: StateChange | None = None


@journal_event(JournalKind.ANOMALY)
@dataclass(frozen=True, slots=True)
class AnomalyRecorded:
    reason: str
    decision: str
    event: str
    """``repr`` of what was dropped (bounded)."""


@journal_event(JournalKind.DAILY_LIMIT)
@dataclass(frozen=True, slots=True)
class DailyLimitHit:
    day: str
    symbol: str
    reason: str
    """``profit_target`` or ``loss_limit``."""
    decision: str
    pnl_cents: int
    flatten: tuple[str, ...]
    flatten_reason: str
    set_state: StateChange | None = None


@journal_event(JournalKind.RECOVERY)
@dataclass(frozen=True, slots=True)
class RecoveryChecked:
    decision: str
    """``ok`` or ``mismatch``."""
    reason: str
    set_state: StateChange | None = None


@journal_event(JournalKind.RECONCILE)
@dataclass(frozen=True, slots=True)
class ReconcileChecked:
    decision: str
    """``mismatch`` (only mismatches are journaled)."""
    reason: str
    set_state: StateChange | None = None


@journal_event(JournalKind.PROTECT_REQUEST)
@dataclass(frozen=True, slots=True)
class ProtectRequested:
    """A new stop leg (``stop_id`` = ``<signal>-S2``, ``-S3``...) for ``quantity`` open contracts."""

    signal_id: str
    symbol: str
    stop_id: str
    side: Side
    """Side of the stop order (SELL protects a long)."""
    quantity: int
    stop_price: int
    reason: str
    cancel_ids: tuple[str, ...]
    """The stops it replaces (cancel requests journaled before it)."""


@journal_event(JournalKind.PROPFIRM)
@dataclass(frozen=True, slots=True)
class PropFirmUpdated:
    """The prop-firm rules' whole state (:class:`~tradebot.execution.propfirm.PropFirmState`) after a change, so
    a restart neither forgets the trailing high-water mark nor re-sends an alert; a breach carries its halt and
    the brackets it closes in the same record."""

    profile: str
    why: str
    """``start``, ``day``, ``alert``, ``breach``, ``peak`` (intraday high-water mark), ``cleared`` (operator)."""
    high_water_cents: int
    offset_cents: int
    """The account's balance at the firm minus the journal's net P&L (balance = offset + net P&L)."""
    day: str
    day_start_balance_cents: int
    alerts: tuple[str, ...]
    breached: str
    day_breached: str
    best_day_cents: int
    profit_before_today_cents: int
    flatten: tuple[str, ...] = ()
    flatten_reason: str = ""
    set_state: StateChange | None = None


@journal_event(JournalKind.ADOPT)
@dataclass(frozen=True, slots=True)
class PositionAdopted:
    """A bracket for a position found at the broker: entry filled at ``price`` (the market at adoption; its P&L
    counts from there), stop and target legs of the bracket unused (the stop is re-placed as ``-S2``)."""

    signal_id: str
    symbol: str
    side: Side
    """The position's side (BUY: long)."""
    quantity: int
    price: int
    stop_price: int
    tick_value_cents: TickValue
    day: str
    reason: str


JournalEvent = (SessionStarted | SignalDecided | FlattenRequested | CancelRequested | ModifyRequested
                | StatusRequested | OrderAcknowledged | OrderRejected | OrderFilled | OrderCancelled | StopModified
                | OrderStatus | SubmitTimedOut | TradingStateChanged | TierChanged | MarginChecked | ExitSignalDecided
                | AutoFlattenDecided | AnomalyRecorded | DailyLimitHit | RecoveryChecked | ReconcileChecked
                | ProtectRequested | PropFirmUpdated | PositionAdopted)
"""Any journal event (a new kind's class is added here too; the import-time check compares it with the enum)."""


# ---------------------------------------------------------------------------------------------------
# Codec


class JournalDecodeError(ValueError):
    """A journal record this build cannot read as written: never skipped, the caller must stop."""


class UnknownJournalKindError(JournalDecodeError):
    """The record's kind is not one this build knows (a database written by a newer or older tradebot)."""


_Enc = Callable[[Any], Any]
_Dec = Callable[[Any], Any]


class _Bad(Exception):  # noqa: N818 - internal: becomes a JournalDecodeError naming the field path
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.path: list[str] = []
        """Innermost first: field names, and ``[i]`` for list items."""

    def where(self, kind: str) -> str:
        return kind + "".join(p if p.startswith("[") else f".{p}" for p in reversed(self.path))


def _fail(want: str, got: object) -> typing.NoReturn:
    raise _Bad(f"expected {want}, got {got!r}")


def _enc_same(v: Any) -> Any:
    return v


def _dec_int(v: Any) -> int:
    if type(v) is not int:
        _fail("an integer", v)
    return v


def _dec_str(v: Any) -> str:
    if type(v) is not str:
        _fail("a string", v)
    return v


def _dec_bool(v: Any) -> bool:
    if type(v) is not bool:
        _fail("true or false", v)
    return v


def _dec_float(v: Any) -> float:
    if type(v) is float:
        return v
    if type(v) is int:  # a whole float written by another JSON encoder; exact below 2**53
        return float(v)
    _fail("a number", v)


def _enc_float(v: float) -> float:
    return float(v)


def _enc_tick_value(v: TickValue) -> int | str:
    if isinstance(v, Fraction) and v.denominator != 1:
        return f"{v.numerator}/{v.denominator}"
    return int(v)


def _dec_tick_value(v: Any) -> TickValue:
    if type(v) is int:
        return v
    if type(v) is str:
        try:
            f = Fraction(v)
        except (ValueError, ZeroDivisionError):
            _fail("a tick value (integer or 'n/d')", v)
        return f.numerator if f.denominator == 1 else f
    _fail("a tick value (integer or 'n/d')", v)


def _codec_for(tp: Any, where: str) -> tuple[_Enc, _Dec]:
    """Encoder and decoder of one field type (resolved annotation)."""
    if tp is int:
        return _enc_same, _dec_int
    if tp is str:
        return _enc_same, _dec_str
    if tp is bool:
        return _enc_same, _dec_bool
    if tp is float:
        return _enc_float, _dec_float
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        enum_tp: type[enum.Enum] = tp
        members = {m.value: m for m in enum_tp}
        value_type = int if issubclass(tp, int) else str

        def dec_enum(v: Any) -> Any:
            if type(v) is not value_type or v not in members:
                _fail(f"one of {sorted(members)!r}", v)
            return members[v]

        return (lambda v: v.value), dec_enum
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _object_codec(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if set(args) == {int, Fraction}:
            return _enc_tick_value, _dec_tick_value
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            inner_enc, inner_dec = _codec_for(rest[0], where)

            def enc_opt(v: Any) -> Any:
                return None if v is None else inner_enc(v)

            def dec_opt(v: Any) -> Any:
                return None if v is None else inner_dec(v)

            return enc_opt, dec_opt
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item_enc, item_dec = _codec_for(args[0], where)

        def enc_seq(v: Any) -> Any:
            return [item_enc(x) for x in v]

        def dec_seq(v: Any) -> Any:
            if type(v) is not list:
                _fail("a list", v)
            out = []
            for i, x in enumerate(v):
                try:
                    out.append(item_dec(x))
                except _Bad as exc:
                    exc.path.append(f"[{i}]")
                    raise
            return tuple(out)

        return enc_seq, dec_seq
    raise TypeError(f"{where}: field type {tp!r} has no journal codec")


def _object_codec(cls: type) -> tuple[_Enc, _Dec]:
    hints = typing.get_type_hints(cls)
    fields = [(f.name, *_codec_for(hints[f.name], f"{cls.__name__}.{f.name}"),
               f.default is not dataclasses.MISSING) for f in dataclasses.fields(cls)]
    encs = [(name, e) for name, e, _d, _o in fields]
    decs = [(name, d) for name, _e, d, _o in fields]
    names = frozenset(name for name, *_ in fields)
    required = frozenset(name for name, _e, _d, optional in fields if not optional)
    n_fields = len(fields)

    def enc(obj: Any) -> dict[str, Any]:
        return {name: e(getattr(obj, name)) for name, e in encs}

    def dec(data: Any) -> Any:
        if type(data) is not dict:
            _fail("an object", data)
        if len(data) != n_fields or data.keys() != names:  # (the common case, every field present, is one test)
            unknown = data.keys() - names
            if unknown:
                raise _Bad(f"unknown field(s) {sorted(unknown)} (written by a newer tradebot?)")
            missing = required - data.keys()
            if missing:
                raise _Bad(f"missing field(s) {sorted(missing)}")
        kw: dict[str, Any] = {}
        name = ""
        try:
            for name, d in decs:
                if name in data:
                    kw[name] = d(data[name])
        except _Bad as exc:
            exc.path.append(name)
            raise
        return cls(**kw)

    return enc, dec


def _check_registry() -> dict[type, tuple[_Enc, _Dec]]:
    missing = [k.value for k in JournalKind if k not in EVENT_TYPES]
    if missing:
        raise TypeError(f"journal kinds without an event class: {missing}")
    in_union = set(typing.get_args(JournalEvent))
    if in_union != set(EVENT_TYPES.values()):
        raise TypeError(f"JournalEvent and the registered classes differ: "
                        f"{sorted(c.__name__ for c in in_union ^ set(EVENT_TYPES.values()))}")
    return {cls: _object_codec(cls) for cls in EVENT_TYPES.values()}


_CODECS = _check_registry()


def encode(event: JournalEvent) -> tuple[JournalKind, dict[str, Any]]:
    """``(kind, JSON-ready payload)`` of an event; every field is written."""
    cls = type(event)
    codec = _CODECS.get(cls)
    if codec is None:
        raise TypeError(f"{cls.__name__} is not a journal event")
    return KIND_OF[cls], codec[0](event)


def decode(kind: str, payload: Any) -> JournalEvent:
    """The event a journal record holds. Raises :class:`UnknownJournalKindError` for a kind this build does
    not know and :class:`JournalDecodeError` for a payload that does not match its kind."""
    try:
        k = JournalKind(kind)
    except ValueError:
        raise UnknownJournalKindError(
            f"journal kind {kind!r} is not known to this tradebot (known: {', '.join(sorted(JournalKind))}); "
            "the database was written by a different version: run the version that wrote it") from None
    try:
        event: JournalEvent = _CODECS[EVENT_TYPES[k]][1](payload)
    except _Bad as exc:
        raise JournalDecodeError(f"{exc.where(k.value)}: {exc.detail}") from None
    return event


def check_kinds(kinds: Iterable[str]) -> None:
    """Refuse a journal holding kinds this build does not know, naming them, before anything replays it."""
    unknown = sorted(set(kinds) - set(JournalKind))
    if unknown:
        raise UnknownJournalKindError(
            f"the journal holds record kinds this tradebot does not know ({', '.join(unknown)}): it was written by "
            "a different version; run the version that wrote it (the database was left untouched)")


def kind_of(event: JournalEvent) -> JournalKind:
    return KIND_OF[type(event)]


# ---------------------------------------------------------------------------------------------------
# The journal as execution sees it


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One committed journal record, decoded: its position, its (event) time and what happened."""

    seq: int
    ts_ns: int
    event: JournalEvent

    @property
    def kind(self) -> JournalKind:
        return KIND_OF[type(self.event)]


class RawRecord(Protocol):
    """A stored record as the store keeps it (kind and JSON), before decoding."""

    @property
    def seq(self) -> int: ...

    @property
    def ts_ns(self) -> int: ...

    @property
    def kind(self) -> str: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...


class RawJournal(Protocol):
    """What a store offers: its records in order (``StateStore`` implements it)."""

    def journal(self, after_seq: int = 0) -> Iterator[RawRecord]: ...


class RawJournalWriter(Protocol):
    """One open store transaction: appends a record, returns it with its sequence number."""

    def journal(self, kind: str, ts_ns: int, payload: Mapping[str, Any]) -> RawRecord: ...


class Journal(Protocol):
    """The typed journal execution reads: the ledger replays it, a journal-backed broker restores from it."""

    def entries(self, after_seq: int = 0) -> Iterator[JournalEntry]: ...


def decode_record(rec: RawRecord) -> JournalEntry:
    """The typed entry of a stored record; the error names the record (seq) so the operator can find it."""
    try:
        return JournalEntry(rec.seq, rec.ts_ns, decode(rec.kind, rec.payload))
    except UnknownJournalKindError as exc:
        raise UnknownJournalKindError(f"journal record {rec.seq}: {exc}") from None
    except JournalDecodeError as exc:
        raise JournalDecodeError(f"journal record {rec.seq}: {exc}") from None


class StoredJournal:
    """:class:`Journal` over a store that keeps kind + JSON (decodes on read, encodes on append)."""

    def __init__(self, store: RawJournal) -> None:
        self.store = store

    def entries(self, after_seq: int = 0) -> Iterator[JournalEntry]:
        for rec in self.store.journal(after_seq):
            yield decode_record(rec)


def read(store: RawJournal, after_seq: int = 0) -> Iterator[JournalEntry]:
    """Every entry after ``after_seq``, decoded, in order (raises on a record this build cannot read)."""
    return StoredJournal(store).entries(after_seq)


def append(tx: RawJournalWriter, ts_ns: int, event: JournalEvent) -> JournalEntry:
    """Write ``event`` in the open transaction ``tx``; the entry carries its sequence number."""
    kind, payload = encode(event)
    rec = tx.journal(kind.value, ts_ns, payload)
    return JournalEntry(rec.seq, ts_ns, event)

