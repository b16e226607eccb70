"""Shared fixtures: paths to real payloads, databases (SQLite and the real PostgreSQL)."""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from earshot.listener.store import Store, normalize_database_url

FIXTURES = Path(__file__).parent / "fixtures"
REAL = FIXTURES / "real"

POSTGRES_URL = os.environ.get(
    "EARSHOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def load_json(relative: str) -> Any:
    """A real captured payload from tests/fixtures/real."""
    return json.loads((REAL / relative).read_text("utf-8"))


def hn_hits(first_id: int, start: int, count: int, title: str) -> list[dict[str, Any]]:
    """Hits ``start`` … ``start + count - 1`` made from one real captured Algolia hit,
    newest first: ``objectID`` ``first_id + i``, ``created_at_i`` ``1_700_000_000 + i`` and
    ``title`` formatted with ``i``."""
    template = load_json("hn_algolia/search_by_date_story_query_apple.json")["hits"][0]
    out = []
    for i in range(start, start + count):
        hit = copy.deepcopy(template)
        hit["objectID"] = str(first_id + i)
        hit["created_at_i"] = 1_700_000_000 + i
        hit["title"] = title.format(i=i)
        out.append(hit)
    return sorted(out, key=lambda h: -h["created_at_i"])


def _postgres_available() -> str | None:
    try:
        engine = create_engine(normalize_database_url(POSTGRES_URL))
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"{type(exc).__name__}: {str(exc)[:200]}"


def _private_schema() -> Iterator[str]:
    """A new schema in the real PostgreSQL, as a URL whose search_path points at it.

    Skipped when no server answers, except under CI (``CI=true``), where it fails: the
    storage tests must run against PostgreSQL there.
    """
    problem = _postgres_available()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    schema = f"earshot_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalize_database_url(POSTGRES_URL))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    """A private schema in the real PostgreSQL for this test session."""
    yield from _private_schema()


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A new, empty schema in the real PostgreSQL for one test (dropped afterwards)."""
    yield from _private_schema()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it, not even ``alembic_version``: a new SQLite file, then
    a new PostgreSQL schema (for the migration tests)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'earshot.db'}"
    else:
        yield request.getfixturevalue("fresh_postgres_url")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, then the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'earshot.db'}"
        return
    url: str = request.getfixturevalue("postgres_schema_url")
    store = Store.from_url(url)
    from sqlmodel import SQLModel

    SQLModel.metadata.drop_all(store.engine)
    store.engine.dispose()
    yield url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store.from_url(database_url)
    s.create_schema()
    yield s
    s.engine.dispose()


def cli_config(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A minimal config (one App Store source) for running the CLI in-process on
    ``database_url``, which the CLI finds through ``DATABASE_URL``."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    config = tmp_path / "earshot.toml"
    config.write_text('[product]\nname = "Acme"\n[[sources]]\ntype = "appstore"\napp_id = 1\n')
    return config
