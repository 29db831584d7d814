"""Reading the prop-firm profiles file (the built-in ``tradebot/data/propfirms.toml`` or the operator's copy).

Kept apart from :mod:`tradebot.execution.propfirm` so the rules stay free of I/O.
"""

from __future__ import annotations

import tomllib
from importlib import resources

from tradebot.core.config import ConfigError, Settings
from tradebot.execution.propfirm import PropFirmProfile, parse_profiles

BUILTIN = "data/propfirms.toml"


def profiles_text(settings: Settings) -> str:
    path = settings.propfirm.profiles_file
    if path is not None:
        return path.read_text(encoding="utf-8")
    return resources.files("tradebot").joinpath(BUILTIN).read_text(encoding="utf-8")


def load_profiles(settings: Settings) -> dict[str, PropFirmProfile]:
    """Every profile of the file; a damaged file raises :class:`ConfigError` naming the setting and the field."""
    where = str(settings.propfirm.profiles_file or f"tradebot/{BUILTIN}")
    try:
        return parse_profiles(tomllib.loads(profiles_text(settings)))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"config error: TRADEBOT_PROPFIRM__PROFILES_FILE ({where}): {exc}") from None


def profile_from_settings(settings: Settings) -> PropFirmProfile | None:
    """The configured account profile, ``None`` when prop-firm rules are off."""
    name = settings.propfirm.profile
    if not name:
        return None
    profiles = load_profiles(settings)
    if name not in profiles:
        raise ConfigError(f"config error: TRADEBOT_PROPFIRM__PROFILE={name!r} is not in the profiles file "
                          f"(it has {', '.join(profiles)})")
    return profiles[name]

