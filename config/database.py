"""Reaching the database: a probe with a short timeout and one-line errors.

Every command that needs the database says the same thing when it cannot reach it: one
line naming the host, port and database (the password redacted) and the cause, e.g.::

    database unreachable: host 127.0.0.1, port 5999, database test
    (postgresql://postgres:***@127.0.0.1:5999/test): Connection refused

and exits with ``exitcodes.DATABASE_UNREACHABLE`` (4).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .migrations import SchemaStatus

#: Seconds ``probe`` waits for a connection (libpq's ``connect_timeout`` takes whole seconds,
#: at least 2).
PROBE_TIMEOUT = 5

_LIBPQ_PREFIX = re.compile(
    r'^connection failed: connection to server at "[^"]*", port \d+ failed: '
)


class DatabaseUnreachable(Exception):
    """The database did not answer. ``str()`` is the one line to print."""

    def __init__(self, url: str, cause: str) -> None:
        self.url = url
        self.cause = cause
        super().__init__(f"database unreachable: {where(url)}: {cause}")


def where(url: str) -> str:
    """The database's host, port and name for a message, with the URL (password hidden)."""
    from sqlalchemy.engine import make_url

    from earshot.listener.store import normalize_database_url, redact_url

    try:
        parsed = make_url(normalize_database_url(url))
    except Exception:
        return "<unparseable database url>"
    if parsed.drivername.startswith("sqlite"):
        return f"SQLite file {parsed.database or ':memory:'}"
    default_ports = {"postgresql": "5432", "mysql": "3306"}
    port = parsed.port or default_ports.get(parsed.get_backend_name(), "default")
    return (
        f"host {parsed.host or 'localhost'}, port {port}, database {parsed.database or '(none)'} "
        f"({redact_url(url)})"
    )


def cause_of(exc: BaseException, url: str = "") -> str:
    """The first line of the driver's message, without libpq's preamble or the password."""
    from sqlalchemy.engine import make_url

    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    text = lines[0].strip() if lines else type(inner).__name__
    text = _LIBPQ_PREFIX.sub("", text).replace("FATAL:  ", "").strip()
    try:
        password = make_url(url).password if url else None
    except Exception:
        password = None
    if password:
        text = text.replace(str(password), "***")
    return text or type(inner).__name__


def probe(url: str, timeout: int = PROBE_TIMEOUT) -> SchemaStatus | None:
    """Connect to ``url`` within ``timeout`` seconds and read its schema revision.

    Returns the ``SchemaStatus``, or ``None`` for a SQLite file that does not exist yet (its
    directory exists: earshot creates it on the first start). Creates nothing. Raises
    ``DatabaseUnreachable`` when the database does not answer.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    from earshot.listener.store import normalize_database_url

    from . import migrations

    normalized = normalize_database_url(url)
    try:
        parsed = make_url(normalized)
    except Exception as exc:
        raise DatabaseUnreachable(url, f"not a database URL ({exc})") from None
    connect_args: dict[str, object] = {}
    if parsed.drivername.startswith("sqlite"):
        name = parsed.database or ""
        if name and name != ":memory:" and not name.startswith("file:"):
            path = Path(name)
            try:
                if not path.exists():
                    if not path.parent.is_dir():
                        raise DatabaseUnreachable(url, f"directory {path.parent} does not exist")
                    return None
            except OSError as exc:  # a name too long, a path through a file...
                raise DatabaseUnreachable(url, exc.strerror or str(exc)) from None
        connect_args["timeout"] = timeout
    elif parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = max(2, int(timeout))
    try:
        engine = create_engine(normalized, connect_args=connect_args, poolclass=NullPool)
    except Exception as exc:  # an unknown driver, a bad option
        raise DatabaseUnreachable(url, cause_of(exc, url)) from None
    try:
        return migrations.status(engine)
    except (SQLAlchemyError, OSError) as exc:
        raise DatabaseUnreachable(url, cause_of(exc, url)) from None
    finally:
        engine.dispose()
