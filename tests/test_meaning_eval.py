"""The meaning model: its pieces, and issue 14's acceptance on the held-out split of every set.

The labelled sets live in ``../shared/data`` (several may not be redistributed, so they are
not copied here); the acceptance tests read them there and are skipped where they are absent.
The held-out split is the one ``benchmarks/fit_meaning.py`` never fits on
(``evaluation.in_test_split``, seed 7, 30%).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

from earshot.listener.evaluation import (
    Metrics,
    evaluate,
    evaluate_intents,
    format_intent_report,
    is_intent_file,
    load_examples,
    parse_intent_examples,
    recall_at_precision,
    split_examples,
)
from earshot.listener.meaning import INTENT_HEADS, MeaningModel, fit_logistic, labels_for
from earshot.listener.models import Label
from earshot.listener.sentiment import FEATURES, ExperienceClassifier
from earshot.listener.training import TrainingSet, fit_model

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EARSHOT_SHARED_DATA", ROOT.parent / "shared" / "data"))
SENTIMENT_SETS = [
    "cx/tweets_sentiment_semeval.csv",
    "cx/app_reviews_sentiment_clap.csv",
    "cx/product_reviews_sentiment_uci.csv",
    "cx/github_pr_sentiment_opus.csv",
    "sentiment/amazonReviewSnippets_GroundTruth.txt",
    "sentiment/tweets_GroundTruth.txt",
]
INTENT_SETS = {
    "cx/app_reviews_intent_clap.csv": ("bug", "feature_request"),
    "cx/github_issues_intent_nlbse24.csv": ("bug", "feature_request", "question"),
    "cx/spam_sms_uci.csv": ("spam",),
    "cx/spam_youtube_comments_uci.csv": ("spam",),
}
needs_shared = pytest.mark.skipif(
    not (SHARED / "cx").is_dir(), reason=f"the labelled sets are not at {SHARED}"
)


# --- pieces ---------------------------------------------------------------------------


def test_the_shipped_model_loads_with_every_head_and_sane_thresholds() -> None:
    model = MeaningModel.default()
    assert set(model.heads) == {"negative", "positive", *INTENT_HEADS}
    assert model.dim == FEATURES
    assert all(0 < t < 1 for t in model.thresholds)
    assert MeaningModel.from_bytes(model.to_bytes()).version == model.version


def test_a_file_that_is_not_a_model_is_refused() -> None:
    with pytest.raises(ValueError, match="not a meaning model"):
        MeaningModel.from_bytes(b"PK\x03\x04 not really")


def test_classify_reports_confidence_intents_and_model() -> None:
    clf = ExperienceClassifier()
    result = clf.classify("the app crashes every time I open it since the update", language="en")
    assert result.label is Label.NEGATIVE
    assert result.confidence is not None and 0.5 <= result.confidence <= 1
    assert "bug" in result.intents
    assert result.model == MeaningModel.default().version


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("I was charged twice for my subscription this month, I want a refund", "billing"),
        ("uninstalled. crashes every time I open it, done with this app", "churn_risk"),
        ("WINNER!! claim your free prize now, text WIN to 80082", "spam"),
        ("It would be great if you added a dark mode option", "feature_request"),
    ],
)
def test_intent_tags_on_plain_cases(text: str, tag: str) -> None:
    assert tag in ExperienceClassifier().classify(text, language="en").intents


def test_complaints_are_never_praise() -> None:
    clf = ExperienceClassifier()
    for text in (
        "Slowly deteriorating. Every update makes it slower and buggier.",
        "Losing pages. The app keeps losing the pages I saved, twice this week.",
        "Cancelling my subscription, switching to a competitor that actually syncs",
    ):
        result = clf.classify(text, language="en")
        assert "praise" not in result.intents, (text, result)


def test_the_array_label_rule_agrees_with_the_models() -> None:
    model = MeaningModel.default()
    t_neg = float(model.thresholds[model.heads["negative"]])
    t_pos = float(model.thresholds[model.heads["positive"]])
    grid = np.round(np.arange(0.0, 1.0001, 0.01), 2)
    p_neg, p_pos = (a.ravel() for a in np.meshgrid(grid, grid))
    labels = list(labels_for(p_neg, p_pos, t_neg, t_pos))
    assert set(labels) == {"negative", "neutral", "positive", "mixed"}
    assert labels == [
        model.label_for(float(n), float(p))[0].value for n, p in zip(p_neg, p_pos, strict=True)
    ]


def test_fit_logistic_reaches_the_penalised_optimum() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 5))
    true_w = np.array([2.0, -1.0, 0.0, 0.5, 0.0])
    y = (rng.random(400) < 1 / (1 + np.exp(-(x @ true_w - 0.3)))).astype(float)
    w, b = fit_logistic(x, y, l2=2.0)
    p = 1 / (1 + np.exp(-(x @ w + b)))
    assert np.max(np.abs(x.T @ (p - y) + 2.0 * w)) < 1e-6
    assert abs(float((p - y).sum()) + 1e-6 * b) < 1e-6
    with pytest.raises(ValueError, match="both classes"):
        fit_logistic(x, np.zeros(400), l2=1.0)


def _toy_set(n: int = 400, seed: int = 1) -> TrainingSet:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    sentiment = np.where(x[:, 0] > 0.5, "negative", np.where(x[:, 0] < -0.5, "positive", "neutral"))
    targets = {head: (x[:, 1 + i % 5] > 0.8).astype(np.int8) for i, head in enumerate(INTENT_HEADS)}
    groups = np.array(["a", "b"] * (n // 2))
    keys = np.array([str(i) for i in range(n)])
    return TrainingSet(x, targets, sentiment, groups, keys)


def test_fit_model_is_deterministic_and_learns_the_signal() -> None:
    ts = _toy_set()
    one, _, report = fit_model(ts, "toy")
    two, _, _ = fit_model(ts, "toy")
    assert one.to_bytes() == two.to_bytes()
    p = one.probabilities(ts.x)
    pred = labels_for(p[:, 0], p[:, 1], float(one.thresholds[0]), float(one.thresholds[1]))
    assert (pred == ts.sentiment).mean() > 0.8
    assert report["bug"]["positives"] == int(ts.targets["bug"].sum())


def test_training_set_round_trips_as_numbers_only() -> None:
    ts = _toy_set(40)
    back = TrainingSet.from_bytes(ts.to_bytes())
    assert back.x.shape == ts.x.shape and list(back.sentiment) == list(ts.sentiment)
    assert all((back.targets[h] == ts.targets[h]).all() for h in ts.targets)


def test_recall_at_precision() -> None:
    assert recall_at_precision([True, False, True, True], [0.9, 0.8, 0.7, 0.1]) == 1 / 3
    assert recall_at_precision([True, True, False], [0.9, 0.8, 0.1]) == 1.0
    assert recall_at_precision([False, True], [0.9, 0.1], precision=0.8) == 0.0
    assert recall_at_precision([False], [0.5]) is None
    # tied scores are cut together: no threshold separates them
    assert recall_at_precision([True, False], [0.5, 0.5]) == 0.0


def test_intent_files_are_recognised_and_scored() -> None:
    content = "text,label\nit crashes on start,bug\nplease add dark mode,feature\nnice,other\n"
    assert is_intent_file(content)
    assert not is_intent_file("text,label\nbad,negative\n")
    examples = parse_intent_examples(content, source="x.csv")
    assert [e.tags for e in examples] == [{"bug"}, {"feature_request"}, set()]
    report = evaluate_intents(examples)
    assert [t.tag for t in report.tags] == ["bug", "feature_request"]
    table = format_intent_report(report)
    assert "| bug |" in table and "| other |" in table
    tagged = parse_intent_examples("text,billing,churn_risk\ncharged twice,1,0\n")
    assert tagged[0].tags == {"billing"} and tagged[0].gold == "billing"


# --- acceptance: the held-out split of every shared set --------------------------------


@functools.cache
def _rows(name: str) -> dict[str, Metrics]:
    examples = split_examples(load_examples(SHARED / name), "test")
    return {m.name: m for m in evaluate(examples).rows}


@needs_shared
@pytest.mark.parametrize("name", SENTIMENT_SETS)
def test_acceptance_beats_vader_on_every_set(name: str) -> None:
    rows = _rows(name)
    vader, ours = rows["vader"], rows["experience"]
    assert ours.macro_f1 > vader.macro_f1
    assert ours.negative_recall_at_80 is not None and vader.negative_recall_at_80 is not None
    assert ours.negative_recall_at_80 > vader.negative_recall_at_80


@needs_shared
@pytest.mark.parametrize("name", SENTIMENT_SETS)
def test_acceptance_against_the_flag_model(name: str) -> None:
    rows = _rows(name)
    flags, ours = rows["flags"], rows["experience"]
    if name == "sentiment/tweets_GroundTruth.txt":
        # the one set where the flag model (fitted on this set's own training part) keeps a
        # lead: 1.2 points (docs/sentiment.md)
        assert ours.macro_f1 > flags.macro_f1 - 0.015
    else:
        assert ours.macro_f1 > flags.macro_f1


@needs_shared
@pytest.mark.parametrize(("name", "tags"), list(INTENT_SETS.items()))
def test_acceptance_intent_tags_have_useful_precision_and_recall(
    name: str, tags: tuple[str, ...]
) -> None:
    content = (SHARED / name).read_text(encoding="utf-8")
    examples = split_examples(parse_intent_examples(content, source=Path(name).name), "test")
    report = evaluate_intents(examples, tags=tags)
    for tag in report.tags:
        assert tag.precision >= 0.45 and tag.recall >= 0.4, (name, tag)


def test_the_embedding_table_is_mapped_from_the_installed_file_not_copied() -> None:
    from safetensors.numpy import load_file

    from earshot.listener.embedding import model, model_files

    table = model().table
    assert isinstance(table, np.memmap) and not table.flags.writeable
    reference = load_file(str(model_files()[0]))["embedding.weight"]
    assert table.shape == reference.shape and np.array_equal(table[::997], reference[::997])


@pytest.mark.parametrize(
    "text", ["", "\x00\x00", "😀😀😀", "a" * 100_000, "lone \ud800 surrogate", "\udfff", "\n\n"]
)
def test_hostile_text_is_classified_not_a_crash(text: str) -> None:
    result = ExperienceClassifier().classify(text)
    assert result.label in set(Label) and result.model
