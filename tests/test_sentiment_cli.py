"""``earshot eval``: the evaluation table from the command line."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from earshot.config.cli import app

FIXTURES = Path(__file__).parent / "fixtures" / "sentiment"


def test_eval_prints_both_classifiers_side_by_side(tmp_path: Path) -> None:
    data = tmp_path / "labelled.csv"
    data.write_text(
        "text,label\nthe app keeps crashing,negative\nseamless and intuitive,positive\n"
        "it is tuesday,neutral\n",
        "utf-8",
    )
    result = CliRunner().invoke(app, ["eval", str(data)])
    assert result.exit_code == 0, result.output
    assert "labelled.csv (n=3)" in result.output
    assert "| vader |" in result.output and "| experience |" in result.output


def test_eval_on_the_test_split_of_two_files() -> None:
    files = [
        str(FIXTURES / "tweets_GroundTruth.txt"),
        str(FIXTURES / "amazonReviewSnippets_GroundTruth.txt"),
    ]
    result = CliRunner().invoke(app, ["eval", *files, "--split", "test"])
    assert result.exit_code == 0, result.output
    assert "tweets_GroundTruth.txt, test split (seed 7) (n=1257)" in result.output
    assert "all files, test split (seed 7) (n=2364)" in result.output


def test_eval_rejects_a_bad_split_and_a_bad_file(tmp_path: Path) -> None:
    data = tmp_path / "bad.csv"
    data.write_text("text,author\nhello,bob\n", "utf-8")
    assert CliRunner().invoke(app, ["eval", str(data), "--split", "dev"]).exit_code == 2
    assert CliRunner().invoke(app, ["eval", str(data)]).exit_code == 2
    assert CliRunner().invoke(app, ["eval", str(tmp_path / "missing.csv")]).exit_code == 2
