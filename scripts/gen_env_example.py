#!/usr/bin/env python3
"""Regenerate ``.env.example`` from the Settings model so every variable stays documented.

Run after adding a setting: ``.venv/bin/python scripts/gen_env_example.py > .env.example``.
A test fails when a variable is missing from the file.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from tradebot.core.config import ENV_PREFIX, Settings

HEADER = """# tradebot configuration. Copy to .env and edit; real environment variables win over this file.
# Secrets (API keys, webhook URL) are read as secrets and never logged. Never commit your .env.
# The seeds' names are kept where they exist; everything else is TRADEBOT_* (groups use '__').
"""


def _value(field: FieldInfo) -> str:
    """The default as the environment must spell it (complex values are JSON for pydantic-settings)."""
    default: Any = field.get_default(call_default_factory=True)
    if default is None or isinstance(default, SecretStr):
        return ""
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, frozenset | set):  # a set of words (notification kinds): comma-separated
        return ",".join(sorted(map(str, default)))
    if isinstance(default, tuple | list | dict):
        return json.dumps(default, default=str)
    if isinstance(default, BaseModel):
        return default.model_dump_json()
    return str(default)


def _doc(field: FieldInfo, name: str) -> str:
    return field.description or name.replace("_", " ")


def main() -> None:
    lines = [HEADER]
    groups: list[tuple[str, type[BaseModel]]] = []
    lines.append("# --- core (the seeds' names) ---")
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            lines.append(f"# {_doc(field, name)}")
            lines.append(f"{alias}={_value(field)}")
    lines.append("")
    lines.append("# --- tradebot ---")
    for name, field in Settings.model_fields.items():
        if isinstance(field.validation_alias, str):
            continue
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            groups.append((name, ann))
            continue
        lines.append(f"# {_doc(field, name)}")
        lines.append(f"{ENV_PREFIX}{name.upper()}={_value(field)}")
    for gname, model in groups:
        lines.append("")
        doc = (model.__doc__ or gname).strip().splitlines()[0]
        lines.append(f"# --- {gname}: {doc} ---")
        for name, field in model.model_fields.items():
            lines.append(f"# {_doc(field, name)}")
            lines.append(f"{ENV_PREFIX}{gname.upper()}__{name.upper()}={_value(field)}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
