"""Shared fixtures: paths to real payloads, databases (SQLite and the real PostgreSQL).

Also the rules every test runs under: Hypothesis without wall-clock limits and with the same
examples on every run, and a logging configuration that no test can leave changed.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text

from earshot.listener.store import Store, normalize_database_url

FIXTURES = Path(__file__).parent / "fixtures"
REAL = FIXTURES / "real"

POSTGRES_URL = os.environ.get(
    "EARSHOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


# Property tests: no deadline and no too_slow health check (both are wall-clock limits, and a
# loaded machine is not a bug), and the same examples on every run (derandomize, so no
# example database either). HYPOTHESIS_PROFILE=explore draws new random examples instead.
hypothesis_settings.register_profile(
    "earshot",
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
hypothesis_settings.register_profile(
    "explore", hypothesis_settings.get_profile("earshot"), derandomize=False
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "earshot"))


def clock_limits(item: pytest.Item) -> list[str]:
    """The wall-clock limits a Hypothesis test would run under (none for any other test)."""
    function = getattr(item, "obj", None)
    if not getattr(function, "is_hypothesis_test", False):
        return []
    used = getattr(function, "_hypothesis_internal_use_settings", hypothesis_settings.default)
    problems = []
    if used.deadline is not None:
        problems.append(f"deadline={used.deadline}")
    if HealthCheck.too_slow not in used.suppress_health_check:
        problems.append("the too_slow health check")
    return problems


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a property test with a wall-clock limit: it fails on a loaded machine."""
    refused = []
    for item in items:
        limits = clock_limits(item)
        if limits:
            refused.append(f"{item.nodeid}: {', '.join(limits)}")
    if refused:
        raise pytest.UsageError(
            "property tests must run without wall-clock limits (keep the conftest profile's "
            "deadline=None and too_slow suppression): " + "; ".join(refused)
        )


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """Put back the root logger's handlers and every logger's level on the way out."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    levels = {
        lg.name: lg.level
        for lg in [root, *root.manager.loggerDict.values()]
        if isinstance(lg, logging.Logger)
    }
    try:
        yield
    finally:
        root.handlers[:] = handlers
        for lg in [root, *root.manager.loggerDict.values()]:
            level = levels.get(getattr(lg, "name", ""), logging.NOTSET)
            if isinstance(lg, logging.Logger) and lg.level != level:
                lg.setLevel(level)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test leaves logging as it found it.

    The CLI's ``setup_logging`` replaces the root handlers and sets levels; without this a
    test that runs the CLI in-process changes what every later test logs, and the result of
    a run would depend on the order (or the worker) its tests run in.
    """
    with logging_restored():
        yield


def load_json(relative: str) -> Any:
    """A real captured payload from tests/fixtures/real."""
    return json.loads((REAL / relative).read_text("utf-8"))


def hn_hits(first_id: int, start: int, count: int, title: str) -> list[dict[str, Any]]:
    """Hits ``start`` … ``start + count - 1`` made from one real captured Algolia hit,
    newest first: ``objectID`` ``first_id + i``, ``created_at_i`` ``1_700_000_000 + i``,
    ``title`` formatted with ``i`` and a ``url`` of its own (one shared link would make
    them one story)."""
    template = load_json("hn_algolia/search_by_date_story_query_apple.json")["hits"][0]
    out = []
    for i in range(start, start + count):
        hit = copy.deepcopy(template)
        hit["objectID"] = str(first_id + i)
        hit["created_at_i"] = 1_700_000_000 + i
        hit["title"] = title.format(i=i)
        hit["url"] = f"{template['url']}?item={first_id + i}"
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
