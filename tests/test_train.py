"""``earshot train``: refit the sentiment model on the team's corrections, adopt it only when
it is not worse; the service, ``earshot check`` and ``/metrics`` use the active version.

Storage runs on SQLite and the real PostgreSQL. The seeded corrections: mentions the shipped
model reads as neutral although they are plainly complaints (a team moving to a competitor,
a downgrade, rebuilding things again), which the team corrects to negative; and, for the
refusal, clear praise and clear complaints corrected to the opposite label.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from sqlmodel import Session, select
from typer.testing import CliRunner

from earshot.config.cli import app
from earshot.config.migrations import ensure_schema
from earshot.config.settings import Secrets, parse_settings
from earshot.config.wiring import build, refresh_model, train_job, training_schedule
from earshot.listener import metrics
from earshot.listener.corrections import record_correction
from earshot.listener.learning import held_out, text_label, train
from earshot.listener.meaning import MeaningModel
from earshot.listener.model_versions import (
    ModelVersion,
    activate,
    active_version,
    save_candidate,
)
from earshot.listener.models import Mention
from earshot.listener.sentiment import ExperienceClassifier
from earshot.listener.store import Store
from earshot.responders.console import ConsoleChannel

runner = CliRunner()
SHIPPED = MeaningModel.default().version

CHURN = [
    "Moved our team of {n} to {tool} this week.",
    "We moved {n} seats over to {tool}.",
    "Downgraded to the free plan after {n} months, trying {tool} now.",
    "Had to rebuild the {thing} for the {n}th time this month.",
    "Re-imported all {n} {thing}s from the backup again.",
    "Switched the whole {thing} workflow to {tool} after {n} weeks.",
]
TOOLS = ["Trello", "Asana", "a spreadsheet", "Notion", "Linear", "Jira", "ClickUp"]
THINGS = ["project", "board", "index", "report", "calendar"]
PRAISE = [
    "Love the new {thing} view, works perfectly.",
    "The {thing} export is fast and reliable, thank you!",
    "Support fixed my {thing} issue in {n} minutes, amazing team.",
]
COMPLAINTS = [
    "The {thing} keeps crashing and support ignores me, awful.",
    "Charged twice for the {thing} add-on, want a refund.",
    "Worst update ever, the {thing} is unusable after {n} days.",
]


def churn(count: int, seed: int = 1) -> list[tuple[str, str]]:
    """Complaints the shipped model reads as neutral, corrected to negative."""
    rnd = random.Random(seed)
    texts: list[str] = []
    while len(texts) < count:
        text = rnd.choice(CHURN).format(
            n=rnd.randint(2, 90), tool=rnd.choice(TOOLS), thing=rnd.choice(THINGS)
        )
        if text not in texts:
            texts.append(text)
    return [(text, "negative") for text in texts]


def inverted(count: int, seed: int = 2) -> list[tuple[str, str]]:
    """Clear praise corrected to negative and clear complaints to positive."""
    rnd = random.Random(seed)
    found: dict[str, str] = {}
    while len(found) < count:
        praise = rnd.random() < 0.5
        text = rnd.choice(PRAISE if praise else COMPLAINTS).format(
            n=rnd.randint(2, 90), thing=rnd.choice(THINGS)
        )
        found.setdefault(text, "negative" if praise else "positive")
    return list(found.items())


def seed_corrections(url: str, pairs: list[tuple[str, str]], start: int = 0) -> None:
    store = Store.from_url(url)
    try:
        ensure_schema(store.engine)
        with Session(store.engine) as session:
            for i, (text, label) in enumerate(pairs, start):
                mention = Mention(
                    source="hn",
                    external_id=f"m{i}",
                    text=text,
                    created_at=datetime(2026, 11, 1, tzinfo=UTC),
                    sentiment_label="neutral",
                )
                session.add(mention)
                session.commit()
                session.refresh(mention)
                assert mention.id is not None
                record_correction(session, mention.id, "neutral", label, user_id="U1")
    finally:
        store.engine.dispose()


def rows(url: str) -> list[ModelVersion]:
    store = Store.from_url(url)
    try:
        with Session(store.engine) as session:
            return list(session.exec(select(ModelVersion).order_by(ModelVersion.id)).all())
    finally:
        store.engine.dispose()


@pytest.fixture
def config(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A config whose database is ``database_url`` (through ``DATABASE_URL``)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    path = tmp_path / "earshot.toml"
    path.write_text(
        '[product]\nname = "Acme"\nqueries = ["acme"]\n\n[[sources]]\ntype = "hackernews"\n'
    )
    yield path


def test_train_adopts_a_refit_that_improves_on_the_corrections(
    database_url: str, config: Path
) -> None:
    seed_corrections(database_url, churn(40))
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "test split" in result.output and "corrections" in result.output
    assert f"adopted {SHIPPED}+1" in result.output
    [row] = rows(database_url)
    assert (row.version, row.active, row.corrections_used) == (f"{SHIPPED}+1", True, 40)
    sets = row.metrics["sets"]
    held = sets["corrections"]
    assert held["active"]["n"] == row.metrics["held_out"] > 0
    assert held["candidate"]["macro_f1"] > held["active"]["macro_f1"]
    assert held["candidate"]["accuracy"] > held["active"]["accuracy"]
    test = sets["test split"]
    assert test["candidate"]["macro_f1"] >= test["active"]["macro_f1"] - 0.005
    assert row.metrics["adopt"] is True and row.metrics["against"] == SHIPPED
    # the adopted model reads more complaints of the same kind that it never saw as negative
    model = MeaningModel.from_bytes(row.weights)
    seen = {text for text, _ in churn(40)}
    unseen = [text for text, _ in churn(60, seed=99) if text not in seen][:20]
    before = ExperienceClassifier(detect_language=False)
    after = ExperienceClassifier(detect_language=False, meaning=model)
    negatives = [
        sum(clf.classify(text).label.value == "negative" for text in unseen)
        for clf in (before, after)
    ]
    assert negatives[1] > negatives[0] + len(unseen) // 4, negatives
    assert after.classify(unseen[0]).model == f"{SHIPPED}+1"


def test_train_refuses_a_refit_that_makes_things_worse(database_url: str, config: Path) -> None:
    seed_corrections(database_url, inverted(40))
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert f"refused {SHIPPED}+1" in result.output and f"{SHIPPED} stays active" in result.output
    [row] = rows(database_url)
    assert (row.version, row.active) == (f"{SHIPPED}+1", False)  # kept, for the record
    assert row.metrics["adopt"] is False
    test = row.metrics["sets"]["test split"]
    assert test["candidate"]["macro_f1"] < test["active"]["macro_f1"] - 0.005
    store = Store.from_url(database_url)
    try:
        with Session(store.engine) as session:
            assert active_version(session) is None
    finally:
        store.engine.dispose()


def test_a_refused_refit_leaves_an_adopted_one_active(database_url: str, config: Path) -> None:
    seed_corrections(database_url, churn(40))
    assert runner.invoke(app, ["train", "--config", str(config)]).exit_code == 0
    seed_corrections(database_url, inverted(80), start=100)
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert f"refused {SHIPPED}+2: worse than {SHIPPED}+1" in result.output
    assert [(r.version, r.active) for r in rows(database_url)] == [
        (f"{SHIPPED}+1", True),
        (f"{SHIPPED}+2", False),
    ]


def test_dry_run_and_too_few_corrections_store_nothing(database_url: str, config: Path) -> None:
    seed_corrections(database_url, churn(9))
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "nothing to train: 9 corrected mentions, at least 10 needed" in result.output
    seed_corrections(database_url, churn(40, seed=5)[:31], start=100)
    result = runner.invoke(app, ["train", "--dry-run", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"would adopt {SHIPPED}+1" in result.output and "nothing stored" in result.output
    assert rows(database_url) == []


def test_an_unreachable_database_is_one_line_and_exit_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://earshot:secret@127.0.0.1:9/none")
    path = tmp_path / "earshot.toml"
    path.write_text('[product]\nname = "A"\nqueries = ["a"]\n\n[[sources]]\ntype = "hackernews"\n')
    result = runner.invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 4  # exitcodes.DATABASE_UNREACHABLE, as every command
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("earshot: database unreachable: host 127")
    assert "secret" not in result.output


def test_the_split_is_fixed_by_mention_and_seed() -> None:
    first = [held_out(i, 0, 0.3) for i in range(1000)]
    assert first == [held_out(i, 0, 0.3) for i in range(1000)]
    assert 0.25 < sum(first) / 1000 < 0.35
    assert first != [held_out(i, 1, 0.3) for i in range(1000)]


def test_a_mixed_review_teaches_what_its_text_said() -> None:
    assert text_label("mixed", 5) == "negative"  # five stars, the text complained
    assert text_label("mixed", 1) == "positive"
    assert text_label("mixed", None) == "mixed"
    assert text_label("mixed", 3) == "mixed"
    assert text_label("neutral", 5) == "neutral"


def test_the_service_swaps_in_a_newly_activated_model_and_reports_it(
    database_url: str, config: Path
) -> None:
    settings = parse_settings(
        {"product": {"name": "Acme", "queries": ["acme"]}, "sources": [{"type": "hackernews"}]}
    )
    earshot = build(settings, Secrets(), database=database_url, channel=ConsoleChannel())
    try:
        classifier = earshot.pipeline.classifier
        assert isinstance(classifier, ExperienceClassifier) and classifier.meaning is not None
        assert classifier.meaning.version == SHIPPED
        assert "model" in [job_id for job_id, _, _ in earshot.extras["jobs"]]
        assert f'earshot_model_info{{version="{SHIPPED}"}} 1.0' in scrape()
        assert refresh_model(earshot) is None  # nothing changed
        check = runner.invoke(app, ["check", "--config", str(config)])
        assert f"model: {SHIPPED} (shipped, loaded)" in check.output, check.output

        seed_corrections(database_url, churn(40))
        assert train(earshot.store).outcome == "adopted"
        text = "Moved all 12 of our projects to Basecamp last week."
        assert classifier.classify(text).model == SHIPPED  # not yet: the job swaps it
        assert refresh_model(earshot) == f"{SHIPPED}+1"
        assert classifier.meaning.version == f"{SHIPPED}+1"
        result = classifier.classify(text)
        assert result.model == f"{SHIPPED}+1"
        assert (
            result.confidence
            == ExperienceClassifier(meaning=classifier.meaning).classify(text).confidence
        )
        page = scrape()
        assert f'earshot_model_info{{version="{SHIPPED}+1"}} 1.0' in page
        assert f'version="{SHIPPED}"' not in page
        check = runner.invoke(app, ["check", "--config", str(config)])
        assert check.exit_code == 0, check.output
        assert f"model: {SHIPPED}+1 (trained by `earshot train`" in check.output

        with Session(earshot.store.engine) as session:
            activate(session, None)  # back to the shipped model
        assert refresh_model(earshot) == SHIPPED
    finally:
        earshot.close()


def scrape() -> str:
    return generate_latest(metrics.REGISTRY).decode()


def test_a_new_process_starts_with_the_active_model(database_url: str) -> None:
    store = Store.from_url(database_url)
    ensure_schema(store.engine)
    trained = MeaningModel.default().replace(f"{SHIPPED}+7")
    with Session(store.engine) as session:
        save_candidate(session, trained, metrics={}, corrections_used=1)
        activate(session, trained.version)
    store.engine.dispose()
    settings = parse_settings(
        {"product": {"name": "Acme", "queries": ["acme"]}, "sources": [{"type": "hackernews"}]}
    )
    earshot = build(settings, Secrets(), database=database_url, channel=ConsoleChannel())
    try:
        classifier = earshot.pipeline.classifier
        assert isinstance(classifier, ExperienceClassifier) and classifier.meaning is not None
        assert classifier.meaning.version == f"{SHIPPED}+7"
        assert f'earshot_model_info{{version="{SHIPPED}+7"}} 1.0' in scrape()
    finally:
        earshot.close()


def test_the_weekly_schedule_is_opt_in_and_runs_the_same_training(database_url: str) -> None:
    base = {"product": {"name": "Acme", "queries": ["acme"]}, "sources": [{"type": "hackernews"}]}
    assert training_schedule(parse_settings(base)) is None
    settings = parse_settings(
        base
        | {"training": {"enabled": True, "weekly_at": "Sunday 03:30", "timezone": "Europe/Berlin"}}
    )
    assert training_schedule(settings) == {
        "day_of_week": "sun",
        "hour": 3,
        "minute": 30,
        "timezone": "Europe/Berlin",
    }
    earshot = build(settings, Secrets(), database=database_url, channel=ConsoleChannel())
    try:
        [(job_id, fields, job)] = earshot.extras["cron_jobs"]
        assert (job_id, fields) == ("train", training_schedule(settings))
        assert job() == "nothing"  # no corrections yet
        seed_corrections(database_url, churn(40))
        assert job() == "adopted"
        classifier = earshot.pipeline.classifier
        assert isinstance(classifier, ExperienceClassifier) and classifier.meaning is not None
        assert classifier.meaning.version == f"{SHIPPED}+1"  # swapped in at once
        assert train_job(earshot) == "adopted"  # the same data again: not worse, +2
    finally:
        earshot.close()
