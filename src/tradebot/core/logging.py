"""structlog setup: JSON lines for journald, a readable console on a TTY, and secrets redacted.

The redaction is a processor rather than a convention because a secret only has to slip into a log
line once (an exception message quoting a URL, a vendor error echoing a key) to be exposed forever.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_PATTERNS = [
    re.compile(r"(https?://(?:[\w.-]*discord(?:app)?\.com|[\w.:-]+)/api/webhooks/\d+/)[\w-]+", re.I),
    re.compile(r"\bdb-[A-Za-z0-9]{20,}\b"),  # Databento keys
    re.compile(r"((?:api[_-]?key|apikey|token|secret|password|authorization)[\"']?\s*[=:]\s*[\"']?)"
               r"(?:Bearer\s+)?[^\s&\"',}]+", re.I),
]
_SECRET_KEYS = re.compile(r"(api_?key|token|secret|password|webhook|authorization)", re.I)
REDACTED = "***"

_extra_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Redact this exact value wherever it appears (configured keys are registered at start-up)."""
    if value and len(value) >= 6:
        _extra_secrets.add(value)


def redact_text(text: str) -> str:
    for secret in _extra_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _SECRET_PATTERNS[0].sub(lambda m: m.group(1) + REDACTED, text)
    text = _SECRET_PATTERNS[1].sub(REDACTED, text)
    return _SECRET_PATTERNS[2].sub(lambda m: m.group(1) + REDACTED, text)


def _redact_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        if _SECRET_KEYS.search(key) and value:
            return REDACTED
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(key, v) for v in value)
    return value


def redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def _current_stdout(*_: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stdout)


def _current_stderr(*_: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def configure_logging(level: str = "INFO", fmt: str = "auto", stream: Any = None, *, stderr: bool = False) -> None:
    """``stderr``: log to standard error (every command but the daemons, whose stdout carries their data)."""
    out = stream if stream is not None else (sys.stderr if stderr else sys.stdout)
    # With no explicit stream, loggers resolve sys.stdout/sys.stderr at each call (not now), so a replaced or
    # closed stream (tests, daemonisation) never leaves a logger writing into a dead file.
    use_console = fmt == "console" or (fmt == "auto" and hasattr(out, "isatty") and out.isatty())
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=False) if use_console
                     else structlog.processors.JSONRenderer(sort_keys=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        logger_factory=(structlog.PrintLoggerFactory(file=stream) if stream is not None
                        else _current_stderr if stderr else _current_stdout),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
