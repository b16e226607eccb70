"""Migrations: every revision on SQLite and the real PostgreSQL, the startup schema check,
``earshot db`` commands, and that the revisions create every table the code defines."""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import inspect, text
from sqlmodel import Session, SQLModel, select
from typer.testing import CliRunner

from earshot.config import migrations
from earshot.config.cli import app
from earshot.listener.models import Mention, utcnow
from earshot.listener.store import Store, make_engine

runner = CliRunner()


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return migrations.schema_diff(conn)
    finally:
        engine.dispose()


UNMIGRATED = (
    "the models differ from the newest revision: add one with "
    "`earshot db revision -m 'what changed'` (see docs/deployment.md)"
)


def test_upgrade_from_empty_gives_exactly_the_models(empty_url: str) -> None:
    migrations.upgrade(empty_url)
    assert diff(empty_url) == [], UNMIGRATED
    state = migrations.status(empty_url)
    assert state.current == migrations.head() and state.up_to_date
    assert set(migrations.schema_metadata().tables) <= tables(empty_url)


def test_each_revision_upgrades_from_the_previous_one_and_back(empty_url: str) -> None:
    """Walk the chain: up to each revision, down to the one before, up again. Later
    revisions are covered as they are added."""
    chain = migrations.revisions()
    assert chain and chain[-1] == migrations.head()
    for index, revision in enumerate(chain):
        previous = chain[index - 1] if index else "base"
        migrations.upgrade(empty_url, revision)
        assert migrations.status(empty_url).current == revision
        migrations.downgrade(empty_url, previous)
        assert migrations.status(empty_url).current == (None if previous == "base" else previous)
        migrations.upgrade(empty_url, revision)
        assert migrations.status(empty_url).current == revision
    assert diff(empty_url) == [], UNMIGRATED
    # The migrated schema is usable: a mention goes in and its outbox row is queued.
    store = Store.from_url(empty_url)
    try:
        mention = Mention(source="hn", external_id="1", title="acme", created_at=utcnow())
        result = store.ingest("hn", [mention], {"at": 1}, lambda m: [("#alerts", "alert")])
        assert len(result.stored) == 1 and result.queued == 1
        assert store.outbox_counts() == {"pending": 1}
    finally:
        store.engine.dispose()
    migrations.downgrade(empty_url, "base")
    assert tables(empty_url) <= {migrations.VERSION_TABLE}


def test_revisions_create_every_table_the_code_defines(tmp_path: Path) -> None:
    """A model added in any module must be in a revision and in ``schema_metadata``."""
    for package in ("listener", "responders", "config"):
        module = importlib.import_module(f"earshot.{package}")
        for info in pkgutil.walk_packages(module.__path__, f"earshot.{package}."):
            if ".migrations.versions." in info.name or info.name.endswith("migrations.env"):
                continue
            importlib.import_module(info.name)
    defined = set(SQLModel.metadata.tables)
    url = f"sqlite:///{tmp_path / 'all.db'}"
    migrations.upgrade(url)
    assert defined <= tables(url), f"tables without a revision: {defined - tables(url)}"
    # ... and a process that imported nothing else knows them all (env.py's metadata).
    probe = (
        "from earshot.config.migrations import schema_metadata;"
        "print(','.join(sorted(schema_metadata().tables)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert set(out.split(",")) == defined


def test_startup_creates_the_schema_on_an_empty_database_then_finds_it_current(
    empty_url: str,
) -> None:
    assert migrations.ensure_schema(empty_url) == "created"
    assert migrations.ensure_schema(empty_url) == "current"
    assert diff(empty_url) == []


def test_startup_adopts_a_create_all_database_that_matches_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    store = Store.from_url(url)
    store.create_schema()  # how earshot made its tables before migrations
    store.engine.dispose()
    assert migrations.ensure_schema(url) == "adopted"
    assert migrations.status(url).current == migrations.head()


def test_startup_refuses_a_create_all_database_that_differs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    store = Store.from_url(url)
    store.create_schema()
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE query_mutes"))
    store.engine.dispose()
    with pytest.raises(migrations.SchemaError, match=r"no schema revision.*query_mutes"):
        migrations.ensure_schema(url)
    assert migrations.status(url).current is None  # nothing was stamped


def test_tables_dropped_by_hand_count_as_empty(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dropped.db'}"
    migrations.upgrade(url)
    engine = make_engine(url)
    SQLModel.metadata.drop_all(engine)  # leaves alembic_version behind
    engine.dispose()
    assert migrations.ensure_schema(url) == "created"
    assert diff(url) == []


def test_startup_refuses_a_database_behind_head_and_db_upgrade_fixes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "earshot.db"
    migrations.upgrade(f"sqlite:///{db}")  # at today's head
    old_head = migrations.head()
    config = tmp_path / "earshot.toml"
    config.write_text(
        f"""
[product]
name = "Acme"
queries = ["acme"]

[storage]
path = "{db}"

[[sources]]
type = "hackernews"
"""
    )
    # A newer earshot: the bundled revisions plus one more.
    copy = tmp_path / "migrations"
    shutil.copytree(migrations.HERE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "versions" / "9999_probe.py").write_text(
        f'''"""probe"""
import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "{old_head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("probe", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("probe")
'''
    )
    monkeypatch.setattr(migrations, "HERE", copy)
    monkeypatch.setattr(migrations, "HEAD", "9999")  # a newer earshot names its new head
    monkeypatch.delenv("DATABASE_URL", raising=False)

    result = runner.invoke(app, ["run", "--once", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert (
        f"database schema is at revision {old_head}, earshot needs 9999: "
        "run `earshot db upgrade`" in result.output
    )
    assert "Traceback" not in result.output

    result = runner.invoke(app, ["db", "current", "--config", str(config)])
    assert result.exit_code == 1 and "behind: run `earshot db upgrade`" in result.output

    result = runner.invoke(app, ["db", "upgrade", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"upgraded from {old_head} to 9999" in result.output
    assert "probe" in tables(f"sqlite:///{db}")

    result = runner.invoke(app, ["db", "current", "--config", str(config)])
    assert result.exit_code == 0 and "up to date" in result.output


def test_startup_refuses_a_database_a_newer_earshot_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'earshot.db'}"
    migrations.upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    engine.dispose()
    with pytest.raises(migrations.SchemaError, match="revision ffff, which this earshot does"):
        migrations.ensure_schema(url)


def test_replicas_starting_together_on_postgres_create_the_schema_once(
    fresh_postgres_url: str,
) -> None:
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            outcomes.append(migrations.ensure_schema(fresh_postgres_url))
        except BaseException as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(outcomes) == ["created", "current", "current", "current"]
    assert diff(fresh_postgres_url) == []


def test_db_upgrade_with_only_database_url_and_no_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'job.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    result = runner.invoke(app, ["db", "upgrade", "--config", str(tmp_path / "absent.toml")])
    assert result.exit_code == 0, result.output
    assert f"upgraded from empty to {migrations.head()}" in result.output
    result = runner.invoke(app, ["db", "upgrade", "--config", str(tmp_path / "absent.toml")])
    assert f"already at revision {migrations.head()}" in result.output


def test_db_revision_autogenerates_what_the_models_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``earshot db revision`` writes the next revision; with it, head equals the models
    (whatever they are today: when they match, the new revision is empty)."""
    copy = tmp_path / "migrations"
    shutil.copytree(migrations.HERE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrations, "HERE", copy)
    before = migrations.revisions()
    result = runner.invoke(app, ["db", "revision", "-m", "next change"])
    assert result.exit_code == 0, result.output
    written = Path(result.output.split("wrote ", 1)[1].strip())
    assert written.parent == copy / "versions"
    assert written.name == f"{len(before) + 1:04d}_next_change.py"
    assert migrations.revisions() == [*before, f"{len(before) + 1:04d}"]
    url = f"sqlite:///{tmp_path / 'next.db'}"
    migrations.upgrade(url)
    assert diff(url) == []


def test_0003_gives_existing_mentions_no_intents_and_reads_them_back(empty_url: str) -> None:
    """A mention stored before the meaning columns existed: after 0003 it has ``[]`` intents
    and no confidence, model or relevance, and the model reads it; new fields round-trip."""
    migrations.upgrade(empty_url, "0002")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            # The columns 0002 has, typed as they are there.
            names = ("source", "external_id", "url", "author", "site", "title", "text")
            typed = [sa.column(name) for name in (*names, "sentiment_label", "status")]
            typed += [
                sa.column(n, sa.DateTime(timezone=True)) for n in ("created_at", "fetched_at")
            ]
            typed += [sa.column(n, sa.JSON()) for n in ("raw", "sentiment_reasons")]
            row = dict.fromkeys(names, "") | {"source": "hn", "external_id": "old"}
            row |= {"sentiment_label": "negative", "status": "new", "raw": {}}
            row |= {"created_at": utcnow(), "fetched_at": utcnow(), "sentiment_reasons": []}
            conn.execute(sa.table("mentions", *typed).insert().values(**row))
    finally:
        engine.dispose()
    migrations.upgrade(empty_url, "0003")
    # then the rest (0007 adds the story and reach columns: {} for the old row's detail)
    migrations.upgrade(empty_url)
    assert diff(empty_url) == [], UNMIGRATED
    store = Store.from_url(empty_url)
    try:
        with Session(store.engine) as session:
            old = session.exec(select(Mention).where(Mention.external_id == "old")).one()
            assert old.intents == []
            assert (old.sentiment_confidence, old.model_version, old.relevance) == (None,) * 3
            assert (old.link, old.story_id, old.reach, old.reach_detail) == (None, None, None, {})
            new = Mention(
                source="hn",
                external_id="new",
                created_at=utcnow(),
                intents=["bug", "churn_risk"],
                sentiment_confidence=0.87,
                model_version="meaning-1",
                relevance=0.5,
            )
            session.add(new)
            session.commit()
            session.refresh(new)
            assert new.intents == ["bug", "churn_risk"]
            assert (new.sentiment_confidence, new.model_version) == (0.87, "meaning-1")
    finally:
        store.engine.dispose()
    migrations.downgrade(empty_url, "0002")
    assert migrations.status(empty_url).current == "0002"


def test_head_is_alembics_head() -> None:
    """``HEAD`` is what the usual start compares with, without Alembic: it must be the head."""
    from earshot.config.migrations import HEAD, alembic_head

    assert alembic_head() == HEAD


def test_a_current_database_starts_without_importing_alembic(tmp_path: Path) -> None:
    """The long-running process should not carry Alembic (about 11 MB) when nothing migrates."""
    url = f"sqlite:///{tmp_path / 'earshot.db'}"
    assert migrations.ensure_schema(url) == "created"
    code = (
        "import sys\n"
        "from earshot.config.migrations import ensure_schema\n"
        f"print(ensure_schema({url!r}))\n"
        "assert 'alembic' not in sys.modules, 'alembic imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "current"
