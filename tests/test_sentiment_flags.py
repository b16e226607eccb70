"""The flag model: parsing the generated table, the decision rule, and its reasons."""

from __future__ import annotations

import math

import pytest

from earshot.listener import flags_fitted
from earshot.listener.flags import FlagHead, FlagModel
from earshot.listener.models import Label
from earshot.listener.sentiment import ExperienceClassifier

HEADER = {
    "negative_compound": -2.0,
    "negative_neg": 0.0,
    "negative_pos": 0.0,
    "negative_bias": -1.0,
    "negative_threshold": 0.5,
    "positive_compound": 2.0,
    "positive_neg": 0.0,
    "positive_pos": 0.0,
    "positive_bias": -1.0,
    "positive_threshold": 0.5,
}
TABLE = "zorbled\t2.5\t-1.0\nlove\t-1.0\t2.0\nfine\t0.0\t0.4\n!\t0.3\t0.3\n"


def toy() -> FlagModel:
    return FlagModel.parse(TABLE, HEADER)


def test_parse_splits_the_columns_into_the_two_heads() -> None:
    model = toy()
    assert model.negative.words == {"zorbled": 2.5, "love": -1.0, "!": 0.3}
    assert model.positive.words == {"zorbled": -1.0, "love": 2.0, "fine": 0.4, "!": 0.3}
    assert model.negative.dense == (-2.0, 0.0, 0.0) and model.negative.bias == -1.0


def test_a_malformed_table_line_names_its_number() -> None:
    with pytest.raises(ValueError, match="line 2"):
        FlagModel.parse("ok\t1\t1\nbroken\t1\n", HEADER)


def test_threshold_must_be_a_probability() -> None:
    with pytest.raises(ValueError):
        FlagHead({}, (0.0, 0.0, 0.0), 0.0, 1.0)


def test_probability_is_the_logistic_of_bias_dense_and_words() -> None:
    head = toy().negative
    tokens = FlagModel.tokens("I zorbled it!")
    assert tokens == {"zorbled", "it", "!"}
    z = -1.0 + (-2.0) * (-0.2) + 2.5 + 0.3
    assert head.probability(tokens, (-0.2, 0.1, 0.0)) == pytest.approx(1 / (1 + math.exp(-z)))
    assert head.probability({"zorbled"}, (-1e9, 0.0, 0.0)) == 1.0  # clamped, no overflow


def test_a_word_can_flag_a_text_whose_compound_is_neutral() -> None:
    model = toy()
    decision = model.decide("so I zorbled it", (0.0, 0.0, 0.0))
    assert decision.label is Label.NEGATIVE and decision.drivers == ("zorbled",)
    assert model.decide("so I kept it", (0.0, 0.0, 0.0)).label is Label.NEUTRAL


def test_when_both_heads_fire_the_one_further_over_its_threshold_wins() -> None:
    model = toy()
    # positive head: -1 + 2*0.9 + 2.0 = 2.8; negative head: -1 - 1.8 - 1.0 + 2.5 = -1.3
    assert model.decide("love it, zorbled the spare", (0.9, 0.0, 0.5)).label is Label.POSITIVE
    # negative: -1 + 2.5 + 0.0 = 1.5; positive: -1 - 1 + 0.4 = -1.6
    assert model.decide("zorbled, fine", (0.0, 0.0, 0.0)).label is Label.NEGATIVE


def test_the_fitted_model_loads_and_covers_the_vocabulary() -> None:
    model = FlagModel.default()
    assert model is FlagModel.default()  # parsed once
    assert len(flags_fitted.TABLE.splitlines()) > 1000
    assert 0 < model.negative.threshold < 1 and 0 < model.positive.threshold < 1
    assert model.negative.dense[0] < 0 < model.positive.dense[0]  # compound pulls each way


def test_the_classifier_explains_a_flag_with_the_models_words() -> None:
    clf = ExperienceClassifier(flags=toy(), non_english="score")
    result = clf.classify("so I zorbled it")
    assert result.label is Label.NEGATIVE and result.reasons == ("zorbled",)


def test_without_a_flag_model_the_compound_thresholds_decide() -> None:
    clf = ExperienceClassifier(-0.05, 0.05, flags=None, meaning=None, non_english="score")
    assert clf.classify("so I zorbled it").label is Label.NEUTRAL
    assert clf.classify("this is terrible").label is Label.NEGATIVE


def test_stars_meet_the_flag_models_label_not_only_the_score() -> None:
    clf = ExperienceClassifier(flags=toy(), non_english="score")
    # the compound is 0 but the flag model says negative: 5 stars cannot make it positive
    result = clf.classify("so I zorbled it", rating=5)
    assert result.label is Label.MIXED
    assert result.reasons == ("rating: 5 stars", "text is negative", "zorbled")
    # a neutral text with 1 star is negative, explained by the stars, not by other words
    result = clf.classify("it is tuesday", rating=1)
    assert result.label is Label.NEGATIVE and result.reasons == ("rating: 1 star",)


def test_thresholds_with_a_flag_model_or_a_misspelt_model_are_refused() -> None:
    with pytest.raises(ValueError, match="flags=None"):
        ExperienceClassifier(-0.3, 0.3)  # they would be ignored
    with pytest.raises(ValueError, match="FlagModel"):
        ExperienceClassifier(flags="Fitted")  # type: ignore[arg-type]
    assert ExperienceClassifier(-0.3, 0.3, flags=None, meaning=None).negative_at == -0.3


def test_a_backstop_fires_on_a_clear_score_whatever_the_words() -> None:
    plain = toy()
    backed = FlagModel.parse(TABLE, {**HEADER, "negative_backstop": -0.65})
    assert backed.negative_backstop == -0.65 and backed.positive_backstop is None
    # negative head: -1 + (-2)(-0.7) + 0.0 + love's -1.0 = -0.6 (under its threshold)
    polarity = (-0.7, 0.5, 0.0)
    assert plain.decide("love the way it ended", polarity).label is Label.NEUTRAL
    assert backed.decide("love the way it ended", polarity).label is Label.NEGATIVE
    # not past the backstop: the heads decide as before
    assert backed.decide("love the way it ended", (-0.6, 0.5, 0.0)).label is Label.NEUTRAL


def test_the_fitted_backstops_are_clear_scores() -> None:
    model = FlagModel.default()
    assert model.negative_backstop is None or model.negative_backstop <= -0.5
    assert model.positive_backstop is None or model.positive_backstop >= 0.5
