"""Saying in one line that the database cannot be reached, and where it was looked for.

A command that cannot reach its database prints one line (host, port and database, the
password redacted, and the driver's reason) and exits ``exitcodes.DATABASE_UNREACHABLE``,
instead of SQLAlchemy's 150-line traceback. SQLAlchemy is imported only when it is needed,
so importing this module costs nothing.
"""

from __future__ import annotations

import re

#: psycopg's prefix before the reason: ``connection failed: connection to server at "h"
#: (1.2.3.4), port 5432 failed: ``; the host and port are said once, by us.
_PREFIX = re.compile(
    r'^(?:connection failed: )?(?:connection to server at "[^"]*"(?: \([^)]*\))?, '
    r"port \d+ failed: )?"
)


def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says the database could not be reached or opened.

    SQLAlchemy raises ``OperationalError`` (connection refused, name not resolved, password
    refused, database missing, SQLite file that cannot be opened) or ``InterfaceError``
    (connection closed) for these.
    """
    from sqlalchemy.exc import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)


def reason(exc: BaseException) -> str:
    """The driver's reason in one line, without SQLAlchemy's wrapping."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = _PREFIX.sub("", line)
    return re.sub(r"\s+", " ", line) or type(exc).__name__


def where(url: str) -> str:
    """``host H, port P, database D (URL with the password hidden)`` or the SQLite file."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "an unparseable database URL"
    if parsed.drivername.startswith("sqlite"):
        return f"SQLite file {parsed.database or ':memory:'}"
    default_ports = {"postgresql": "5432", "mysql": "3306"}
    port = str(parsed.port or default_ports.get(parsed.get_backend_name(), "default"))
    shown = parsed.render_as_string(hide_password=True)
    return (
        f"host {parsed.host or 'localhost'}, port {port}, "
        f"database {parsed.database or '(default)'} ({shown})"
    )


def unreachable_message(url: str, exc: BaseException) -> str:
    """The one line a command prints when its database cannot be reached."""
    return f"earshot: database unreachable: {where(url)}: {reason(exc)}"
