"""``--set key=value`` and ``--grid key=v1,v2`` for backtests: validated settings overrides.

Keys are dotted field paths (``router.risk_reward``, ``min_confidence``, ``footprint.bar_seconds``) or the
environment names (``TRADEBOT_ROUTER__RISK_REWARD``, ``MIN_CONFIDENCE``). Values are validated by the same models
as the environment, so a typo fails before any work starts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from tradebot.core.config import ENV_PREFIX, ConfigError, Settings, number_problems


def _path(key: str) -> list[str]:
    k = key.strip()
    aliases = {f.validation_alias: name for name, f in Settings.model_fields.items()
               if isinstance(f.validation_alias, str)}
    if k in aliases:
        return [aliases[k]]
    if k.upper().startswith(ENV_PREFIX):
        return [p.lower() for p in k[len(ENV_PREFIX):].split("__")]
    return k.split(".")


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"override {p!r}: expected key=value")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def apply_overrides(settings: Settings, overrides: dict[str, str]) -> Settings:
    """A copy of ``settings`` with the overrides applied and validated."""
    if not overrides:
        return settings
    updates: dict[str, Any] = {}
    for key, value in overrides.items():
        path = _path(key)
        field = Settings.model_fields.get(path[0])
        if field is None:
            raise ConfigError(f"override {key}: no such setting")
        ann = field.annotation
        try:
            if len(path) == 1:
                probe = settings.model_copy()
                Settings.__pydantic_validator__.validate_assignment(probe, path[0], value)
                updates[path[0]] = getattr(probe, path[0])
            elif len(path) == 2 and isinstance(ann, type) and issubclass(ann, BaseModel):
                current = updates.get(path[0], getattr(settings, path[0]))
                if path[1] not in ann.model_fields:
                    raise ConfigError(f"override {key}: {path[0]} has no setting {path[1]}")
                data = current.model_dump()
                data[path[1]] = value
                updates[path[0]] = ann.model_validate(data)
            else:
                raise ConfigError(f"override {key}: no such setting")
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            raise ConfigError(f"override {key}={value!r}: {msg}") from None
    out = settings.model_copy(update=updates)
    bad = number_problems(out)  # pydantic lets inf and 1e999999 through; the environment path refuses them
    if bad:
        loc, value, why = bad[0]
        raise ConfigError(f"override {'.'.join(map(str, loc))}={value!s:.40}: {why}")
    return out


def grid_combinations(grid: Sequence[str]) -> list[dict[str, str]]:
    """Every combination of ``key=v1,v2,...`` lists (one empty combination without a grid)."""
    axes: list[tuple[str, list[str]]] = []
    for g in grid:
        if "=" not in g:
            raise ConfigError(f"grid {g!r}: expected key=v1,v2,...")
        k, vs = g.split("=", 1)
        values = [v.strip() for v in vs.split(",") if v.strip()]
        if not values:
            raise ConfigError(f"grid {g!r}: no values")
        axes.append((k.strip(), values))
    if not axes:
        return [{}]
    return [dict(zip([k for k, _ in axes], combo, strict=True))
            for combo in itertools.product(*[vs for _, vs in axes])]
