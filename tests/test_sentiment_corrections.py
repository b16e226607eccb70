"""Corrections from Slack ("Wrong sentiment") are stored and export as labelled data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, create_engine, select

from earshot.listener.corrections import (
    SentimentCorrection,
    export_corrections_csv,
    record_correction,
)
from earshot.listener.evaluation import evaluate, load_examples
from earshot.listener.models import Label, Mention
from earshot.listener.store import Store

from .conftest import cli_config


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'corrections.db'}")
    SQLModel.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _mention(session: Session, external_id: str, title: str, text: str) -> int:
    mention = Mention(
        source="appstore",
        external_id=external_id,
        title=title,
        text=text,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    session.add(mention)
    session.commit()
    session.refresh(mention)
    assert mention.id is not None
    return mention.id


def test_corrections_are_stored(engine: Engine) -> None:
    with Session(engine) as session:
        mid = _mention(session, "1", "", "the app is on hold forever")
        row = record_correction(session, mid, Label.NEUTRAL, "negative", user_id="U1")
        assert row.id is not None
        stored = session.exec(select(SentimentCorrection)).one()
        assert (stored.mention_id, stored.old_label, stored.new_label, stored.user_id) == (
            mid,
            "neutral",
            "negative",
            "U1",
        )
        assert stored.created_at is not None


def test_bad_labels_are_refused(engine: Engine) -> None:
    with Session(engine) as session:
        mid = _mention(session, "1", "", "x")
        with pytest.raises(ValueError):
            record_correction(session, mid, "neutral", "furious")
        with pytest.raises(ValueError):
            record_correction(session, mid, "neutral", Label.UNSCORED)


def test_export_keeps_the_latest_correction_and_reads_back_as_labelled_data(
    engine: Engine, tmp_path: Path
) -> None:
    with Session(engine) as session:
        a = _mention(session, "a", "Refund please", "I was charged twice, with a comma")
        b = _mention(session, "b", "", 'Works "fine"\nsecond line')
        record_correction(session, a, "neutral", "positive", "U1")
        record_correction(session, b, "positive", "neutral", "U2")
        record_correction(session, a, "positive", "negative", "U3")  # a second opinion wins
        content = export_corrections_csv(session)
    out = tmp_path / "corrections.csv"
    out.write_text(content, "utf-8")
    examples = load_examples(out)
    assert [(e.id, e.text, e.label) for e in examples] == [
        (str(b), 'Works "fine"\nsecond line', Label.NEUTRAL),
        (str(a), "Refund please\nI was charged twice, with a comma", Label.NEGATIVE),
    ]
    report = evaluate(examples)  # and `earshot eval` can measure the classifiers on it
    assert report.n == 2


def test_export_of_nothing_is_just_the_header(engine: Engine) -> None:
    with Session(engine) as session:
        assert export_corrections_csv(session) == (
            "id,text,stars,label,old_label,user_id,created_at\n"
        )


def test_cli_exports_corrections_that_eval_reads(
    store: Store, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from earshot.config.cli import app as cli

    with Session(store.engine) as session:
        a = _mention(session, "a", "", "I was on hold for an hour, nobody answered")
        b = _mention(session, "b", "", "Setup was seamless")
        review = session.get(Mention, b)
        assert review is not None
        review.rating = 5
        session.add(review)
        session.commit()
        record_correction(session, a, "neutral", "negative", "U1")
        record_correction(session, b, "neutral", "positive", "U2")
    config = cli_config(database_url, tmp_path, monkeypatch)
    runner = CliRunner()
    shown = runner.invoke(cli, ["export", "--corrections", "-c", str(config)])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[0] == "id,text,stars,label,old_label,user_id,created_at"
    assert f'{a},"I was on hold for an hour, nobody answered",,negative,neutral,U1,' in shown.stdout
    assert f"{b},Setup was seamless,5,positive,neutral,U2," in shown.stdout
    out = tmp_path / "corrections.csv"
    written = runner.invoke(cli, ["export", "--corrections", "-o", str(out), "-c", str(config)])
    assert written.exit_code == 0, written.output
    assert f"2 corrected mentions written to {out}" in written.stderr
    measured = runner.invoke(cli, ["eval", str(out)])
    assert measured.exit_code == 0, measured.output
    assert "corrections.csv (n=2)" in measured.output
    as_json = runner.invoke(cli, ["export", "--corrections", "--format", "json", "-c", str(config)])
    assert as_json.exit_code == 2 and "CSV only" in as_json.output
    neither = runner.invoke(cli, ["export", "-c", str(config)])
    both = runner.invoke(cli, ["export", "--approved", "--corrections", "-c", str(config)])
    assert neither.exit_code == both.exit_code == 2
