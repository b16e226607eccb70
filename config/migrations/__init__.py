"""Database migrations (Alembic): upgrade, inspect, and the startup schema check.

The revisions live in ``versions/`` next to this file and ship inside the package, so an
installed earshot can migrate its database without the source tree::

    earshot db upgrade      # bring the database to the schema this earshot needs
    earshot db current      # print the database's revision and the head

At startup ``ensure_schema`` decides what to do with the database:

* empty: create the schema at head (the embedded SQLite first run stays one command);
* at head: nothing;
* behind head: refuse with ``SchemaError`` ("run `earshot db upgrade`"), so a new version
  never runs on an old schema, and an operator decides when the migration happens;
* created by ``create_all`` before earshot had migrations (tables, no revision): stamped at
  head if its tables are exactly head's, refused otherwise.

On PostgreSQL every migration and check runs under an advisory lock, so replicas that start
together on an empty database create the schema once.

Adding a revision after changing a model: ``earshot db revision -m "what changed"``
(autogenerates against a scratch SQLite at head; review the file it writes), then set
``HEAD`` below to its id (a test checks that ``HEAD`` is Alembic's head). Every table
must be importable from ``schema_metadata``.

Alembic is imported only when something is to be migrated or inspected (about 11 MB
resident): the usual start, on a database already at ``HEAD``, reads ``alembic_version``
with one query and leaves Alembic out of the long-running process.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, MetaData, inspect, text

from earshot.listener.store import make_engine

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

#: The newest revision in ``versions/`` (``tests/test_migrations.py`` checks it against
#: Alembic's own reading of the revisions).
HEAD = "0007"
HERE = Path(__file__).resolve().parent
VERSION_TABLE = "alembic_version"
#: pg_advisory_lock key held while migrating ("earshot" in ASCII, as a bigint).
LOCK_KEY = 0x65617273686F74


class SchemaError(Exception):
    """The database's schema does not fit this earshot; the message says what to run."""


def schema_metadata() -> MetaData:
    """Every earshot table. Importing the model modules registers their tables."""
    from sqlmodel import SQLModel

    from earshot.listener import corrections, model_versions, models  # noqa: F401

    return SQLModel.metadata


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` for the bundled revisions, optionally bound to ``connection``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(HERE / "versions"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision this earshot knows."""
    return HEAD


def alembic_head() -> str:
    """The newest revision as Alembic reads ``versions/`` (``HEAD`` must equal it)."""
    current = script().get_current_head()
    assert current is not None, "no migration revisions are installed"
    return current


def revisions() -> list[str]:
    """All revisions, oldest first."""
    return [rev.revision for rev in reversed(list(script().walk_revisions()))]


def current_revision(connection: Connection, tables: Collection[str]) -> str | None:
    """The revision the database is at (``None``: never migrated); ``tables`` are the
    database's table names, which the callers have read already.

    Reads ``alembic_version`` itself, as Alembic's ``MigrationContext`` does (one row; more
    than one is a branched history, which earshot never has, and is refused).
    """
    if VERSION_TABLE not in tables:
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    if len(rows) > 1:
        raise SchemaError(f"{VERSION_TABLE} holds {len(rows)} revisions; earshot expects one")
    return str(rows[0][0]) if rows else None


@contextlib.contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection holding the migration lock (PostgreSQL; SQLite locks by itself).

    On SQLite, foreign keys are off while migrating: "batch" migrations rebuild a table
    (copy, drop, rename), which the foreign keys of rows pointing at it would refuse.
    """
    with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        sqlite = conn.dialect.name == "sqlite"
        if postgres:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            conn.commit()
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            if postgres:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                conn.commit()
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def _engine(target: str | Engine) -> tuple[Engine, bool]:
    if isinstance(target, Engine):
        return target, False
    return make_engine(target), True


@contextlib.contextmanager
def _connection(target: str | Engine) -> Iterator[Connection]:
    engine, owned = _engine(target)
    try:
        with _locked(engine) as conn:
            yield conn
    finally:
        if owned:
            engine.dispose()


def upgrade(target: str | Engine, revision: str = "head") -> None:
    """Migrate the database (a URL or an engine) up to ``revision``."""
    from alembic import command

    with _connection(target) as conn:
        command.upgrade(alembic_config(conn), revision)
        conn.commit()


def downgrade(target: str | Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base``: no tables)."""
    from alembic import command

    with _connection(target) as conn:
        command.downgrade(alembic_config(conn), revision)
        conn.commit()


def stamp(target: str | Engine, revision: str) -> None:
    """Record ``revision`` as the database's schema without running anything."""
    from alembic import command

    with _connection(target) as conn:
        command.stamp(alembic_config(conn), revision)
        conn.commit()


def schema_diff(connection: Connection) -> list[Any]:
    """How the database's tables differ from the models (Alembic autogenerate's diff)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": False}
    )
    return [
        change
        for change in compare_metadata(context, schema_metadata())
        if not _is_version_table(change)
    ]


def _is_version_table(change: Any) -> bool:
    return (
        isinstance(change, tuple)
        and change[0] == "remove_table"
        and getattr(change[1], "name", None) == VERSION_TABLE
    )


@dataclass(frozen=True)
class SchemaStatus:
    """Where the database stands: its revision, the head, and whether it has tables."""

    current: str | None
    head: str
    tables: frozenset[str]

    @property
    def empty(self) -> bool:
        return self.current is None and not (self.tables & set(schema_metadata().tables))

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def status(target: str | Engine) -> SchemaStatus:
    """The database's revision and the head (does not change anything)."""
    engine, owned = _engine(target)
    try:
        with engine.connect() as conn:
            tables = frozenset(inspect(conn).get_table_names())
            current = current_revision(conn, tables)
    finally:
        if owned:
            engine.dispose()
    return SchemaStatus(current, head(), tables)


def ensure_schema(target: str | Engine) -> str:
    """The startup check: create the schema on an empty database, refuse an old one.

    Returns what it did (``created``, ``current``, ``adopted``). Raises ``SchemaError``
    with the command to run when the database is behind, or at a revision this earshot
    does not know (a newer earshot migrated it).
    """
    with _connection(target) as conn:
        tables = set(inspect(conn).get_table_names())
        want = head()
        current = current_revision(conn, tables)
        ours = tables & set(schema_metadata().tables)
        if ours and current == want:
            return "current"
        from alembic import command

        if not ours:
            # Empty (a revision row without any table counts as empty: the tables were
            # dropped by hand): create everything at head.
            config = alembic_config(conn)
            if current is not None:
                command.stamp(config, "base", purge=True)
            command.upgrade(config, "head")
            conn.commit()
            return "created"
        if current is None:
            diff = schema_diff(conn)
            conn.rollback()
            if not diff:
                command.stamp(alembic_config(conn), "head")
                conn.commit()
                return "adopted"
            raise SchemaError(
                "the database has earshot tables but no schema revision, and they differ "
                f"from the schema earshot {want} needs (first difference: {_describe(diff[0])}). "
                "It was created before earshot used migrations: back it up, then see "
                "docs/deployment.md, 'Upgrades'."
            )
        if current not in revisions():
            raise SchemaError(
                f"database schema is at revision {current}, which this earshot does not know "
                f"(it needs {want}): a newer earshot migrated it; run that version, or restore "
                "a backup"
            )
        raise SchemaError(
            f"database schema is at revision {current}, earshot needs {want}: "
            "run `earshot db upgrade`"
        )


def _describe(change: Any) -> str:
    if isinstance(change, list):  # column modifications come grouped
        change = change[0]
    kind = change[0]
    obj = change[1] if len(change) > 1 else None
    name = getattr(obj, "name", None)
    if kind in ("add_column", "remove_column") and len(change) > 3:
        return f"{kind} {change[2]}.{change[3].name}"
    if kind.startswith("modify_") and len(change) > 3:
        return f"{kind} {change[2]}.{change[3]}"
    return f"{kind} {name or obj}"


def autogenerate(message: str, directory: Path | None = None) -> str:
    """Write a new revision from the difference between head and the models.

    The database compared against is a scratch SQLite migrated to head, so no server is
    needed. Returns the path of the new file (review it before committing).
    """
    from alembic import command

    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite:///{Path(scratch) / 'head.db'}")
        try:
            upgrade(engine)
            with engine.connect() as conn:
                config = alembic_config(conn)
                if directory is not None:
                    locations = f"{HERE / 'versions'}{os.pathsep}{directory}"
                    config.set_main_option("version_locations", locations)
                number = len(revisions()) + 1
                result = command.revision(
                    config,
                    message=message,
                    autogenerate=True,
                    rev_id=f"{number:04d}",
                    version_path=str(directory or HERE / "versions"),
                )
        finally:
            engine.dispose()
    scripts = result if isinstance(result, list) else [result]
    return str(scripts[0].path) if scripts and scripts[0] is not None else ""
