"""The fast path's allowlist covers every setting: a new field must be classified before the fast path may answer."""

from __future__ import annotations

import types
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from tradebot.backtest.fast import fast_supported
from tradebot.backtest.fast.support import FIELDS, HOW_TO_CLASSIFY, EventPath, setting_paths, unclassified
from tradebot.backtest.overrides import apply_overrides
from tradebot.core.config import Settings, load_settings


def _leaves(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every leaf field, walked independently of the module under test (nested groups, also ``Group | None``)."""
    out: list[str] = []
    for name, info in model.model_fields.items():
        ann: Any = info.annotation
        args = typing.get_args(ann) if typing.get_origin(ann) in (typing.Union, types.UnionType) else (ann,)
        groups = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if groups:
            out += _leaves(groups[0], f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def test_every_setting_is_classified_for_the_fast_path() -> None:
    missing = [p for p in _leaves(Settings) if p not in FIELDS]
    assert not missing, (f"settings fields not classified for the fast path: {', '.join(missing)}. "
                         f"{HOW_TO_CLASSIFY}")


def test_the_allowlist_names_only_real_settings() -> None:
    real = set(_leaves(Settings))
    stale = [p for p in FIELDS if p not in real]
    assert not stale, f"FIELDS in backtest/fast/support.py classifies settings that no longer exist: {stale}"
    assert sorted(setting_paths()) == sorted(real)
    assert {"execution.limit_fill_rule", "router.table", "web.token", "order_flow_exit_mode"} <= real


def test_an_unclassified_setting_runs_the_event_path() -> None:
    class Broker(BaseModel):
        account: str = "x"

    class Extended(Settings):
        new_risk_rule: int = 3
        broker: Broker | None = Broker()

    s = Extended.model_construct()
    assert unclassified(Extended) == ("new_risk_rule", "broker.account")
    why = fast_supported(s)
    assert why is not None and "new_risk_rule" in why and "broker.account" in why
    assert fast_supported(load_settings()) is None  # the defaults are all on the fast path


@pytest.mark.parametrize(("override", "value"), [
    ("ORDER_FLOW_EXIT_MODE", "auto"),
    ("router.entry_type", "limit"),
    ("execution.limit_fill_rule", "queue"),
    ("validation.check_staleness", "true"),
    ("validation.out_of_order_ms", "5"),
])
def test_values_outside_the_model_name_their_setting(override: str, value: str) -> None:
    s = apply_overrides(load_settings(), {override: value})
    why = fast_supported(s)
    assert why is not None and override.split(".")[-1].lower() in why.lower()
    path = override.lower() if override.isupper() else override
    assert isinstance(FIELDS[path], EventPath)
