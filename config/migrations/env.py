"""Alembic's environment for earshot: runs migrations on the connection earshot hands in.

``earshot db upgrade`` (and the startup check) pass an open connection in
``config.attributes["connection"]``. Run from the ``alembic`` command line instead, the URL
comes from ``sqlalchemy.url`` in the ini file or from ``DATABASE_URL``.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlmodel.sql.sqltypes import AutoString

from earshot.config.migrations import schema_metadata
from earshot.listener.store import make_engine

config = context.config
target_metadata = schema_metadata()


def _render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write SQLModel's ``AutoString`` as plain ``sa.String``: revisions need no sqlmodel."""
    if kind == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def _configure(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: "batch" mode rebuilds the table instead.
        render_as_batch=True,
        compare_type=True,
        compare_server_default=False,
        render_item=_render_item,
    )


def run_migrations() -> None:
    """Run the migrations on the given connection, or on one to the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("no database: set DATABASE_URL or sqlalchemy.url")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():  # pragma: no cover - earshot never renders SQL scripts
    raise RuntimeError("offline (--sql) migrations are not supported")
run_migrations()
