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
    """Replaces known secret values (tokens, the database password) in every record.

    Secrets are never logged on purpose; this is the safety net for the ones that slip into
    a third-party exception message.
    """

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        cleaned = self._clean(message)
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if any(s in text for s in self.secrets):
                record.exc_text = self._clean(text)
                record.exc_info = None
        if cleaned != message:
            record.msg, record.args = cleaned, None
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
    handler.addFilter(RedactSecrets(secret_values()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    for noisy in ("httpx", "httpcore", "apscheduler", "slack_sdk", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
