"""Logging: readable text on a terminal, one JSON object per line otherwise.

The level comes from ``EARSHOT_LOG_LEVEL`` (default ``INFO``); ``EARSHOT_LOG_FORMAT``
(``json`` or ``text``) overrides the terminal detection.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from earshot.listener.redaction import REDACTOR, Redactor

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with any ``extra=`` fields kept as keys."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, default=str, ensure_ascii=False)


class RedactSecrets(logging.Filter):
    """Masks secrets in every record: the message, its traceback, its ``extra`` strings.

    Secrets are never logged on purpose; this is the safety net for the ones that slip into
    a third-party exception message or an echoed error body. It masks every form of the
    known values (as is, URL-encoded, JSON- and HTML-escaped) and credentials in known
    places (``Authorization: Bearer ...``, ``?key=...``), through
    ``earshot.listener.redaction``: the given ``secrets`` plus the process-wide ones the
    sources registered.
    """

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.redactor = Redactor(secrets)
        self.secrets = sorted(self.redactor.values, key=len, reverse=True)

    def _clean(self, text: str) -> str:
        return REDACTOR.redact(self.redactor.redact(text))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: logging reports it itself
            return True
        cleaned = self._clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            cleaned = self._clean(text)
            if cleaned != text:
                record.exc_text = cleaned
                record.exc_info = None
        elif record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        for key, value in list(vars(record).items()):
            if key not in _RESERVED and isinstance(value, str) and not key.startswith("_"):
                setattr(record, key, self._clean(value))
        return True


def secret_values(env: dict[str, str] | None = None) -> list[str]:
    """The secret values in the environment: Slack tokens and secrets, source credentials,
    and the password inside ``DATABASE_URL``."""
    env = dict(os.environ) if env is None else env
    values = []
    for name, value in env.items():
        upper = name.upper()
        if any(mark in upper for mark in ("TOKEN", "SECRET", "PASSWORD", "_KEY")):
            values.append(value)
    url = env.get("DATABASE_URL") or ""
    if "://" in url and "@" in url:
        credentials = url.split("://", 1)[1].rsplit("@", 1)[0]
        if ":" in credentials:
            values.append(credentials.split(":", 1)[1])
    return values


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes each record to ``sys.stderr`` as it is when the record arrives.

    A plain ``StreamHandler(sys.stderr)`` keeps the stream it was given: once that stream
    is swapped out and closed (a test runner's capture, ``CliRunner``), every later record
    ends in ``--- Logging error --- ValueError: I/O operation on closed file``.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


def setup_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Configure the root logger for the CLI: one handler on the current ``sys.stderr``.

    Calling it again replaces the root logger's handlers and level again.
    """
    level = (level or os.environ.get("EARSHOT_LOG_LEVEL") or "INFO").upper()
    fmt = (fmt or os.environ.get("EARSHOT_LOG_FORMAT") or "").lower()
    if fmt not in ("json", "text"):
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = StderrHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    secrets = secret_values()
    REDACTOR.add(*secrets)  # health alerts and stored errors are redacted with them too
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    for noisy in ("httpx", "httpcore", "apscheduler", "slack_sdk", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
