"""The experience classifier: complaint words, social-text preparation, ratings, language."""

from __future__ import annotations

from pathlib import Path

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from earshot.listener.evaluation import load_examples
from earshot.listener.language import detect_language, normalize_language
from earshot.listener.models import Label
from earshot.listener.sentiment import (
    Classifier,
    ExperienceClassifier,
    SentimentResult,
    VaderClassifier,
    prepare_text,
)

FIXTURES = Path(__file__).parent / "fixtures" / "sentiment"


@pytest.fixture(scope="module")
def clf() -> ExperienceClassifier:
    return ExperienceClassifier()


@pytest.fixture(scope="module")
def vader() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def test_both_classifiers_satisfy_the_protocol() -> None:
    classifiers: list[Classifier] = [VaderClassifier(), ExperienceClassifier()]
    for c in classifiers:
        assert isinstance(c.classify("fine"), SentimentResult)


# --- the complaint vocabulary --------------------------------------------------------

COMPLAINTS = ["crashes", "refund", "buggy", "laggy", "outage", "unusable", "on hold", "overcharged"]


@pytest.mark.parametrize("term", COMPLAINTS)
def test_complaint_terms_that_vader_ignores_now_weigh_negative(
    term: str, clf: ExperienceClassifier, vader: SentimentIntensityAnalyzer
) -> None:
    text = f"the app {term} again"
    assert vader.polarity_scores(text)["compound"] == 0.0  # the gap the issue describes
    assert clf.text_score(text) < -0.2


@pytest.mark.parametrize(
    "text",
    [
        "@acme the app keeps crashing and I want a refund",
        "I was charged twice and then on hold for an hour",
        "Outage again. Third time this week, the dashboard is unusable",
        "going to cancel my subscription, it's so laggy and buggy",
    ],
)
def test_customer_complaints_are_negative(text: str, clf: ExperienceClassifier) -> None:
    result = clf.classify(text, language="en")
    assert result.label is Label.NEGATIVE
    assert result.reasons, "a negative alert explains itself"


@pytest.mark.parametrize(
    "text",
    ["Setup was seamless and the UI is intuitive", "This tool is a lifesaver, so reliable"],
)
def test_praise_is_positive(text: str, clf: ExperienceClassifier) -> None:
    assert clf.classify(text, language="en").label is Label.POSITIVE


def test_reasons_name_the_phrases_that_decided(clf: ExperienceClassifier) -> None:
    reasons = clf.classify("I was charged twice", language="en").reasons
    assert "charged twice" in reasons


def test_vader_negation_still_applies_to_new_words(clf: ExperienceClassifier) -> None:
    assert clf.text_score("the app is reliable") > 0
    assert clf.text_score("the app is not reliable") < 0
    assert clf.text_score("it never crashes") > clf.text_score("it crashes")
    assert (
        "not reliable"
        in clf.classify("not reliable at all, and the app crashes daily", language="en").reasons
    )


def test_vader_but_rule_still_weights_the_second_clause(clf: ExperienceClassifier) -> None:
    # VADER weighs the clause after "but" more: the order decides the sign
    assert clf.text_score("it is reliable but it crashes every day") < 0
    assert clf.text_score("it crashes every day but it is reliable") > 0


def test_emoji_are_scored(clf: ExperienceClassifier) -> None:
    assert clf.text_score("new update 😠") < 0
    assert clf.text_score("new update 😍") > 0


# --- preparing social text -----------------------------------------------------------


def _tweets_without_markup() -> list[str]:
    examples = load_examples(FIXTURES / "tweets_GroundTruth.txt")
    return [
        e.text for e in examples if "@" not in e.text and "http" not in e.text and "#" not in e.text
    ][:300]


def test_handles_and_urls_do_not_shift_the_score(clf: ExperienceClassifier) -> None:
    moved = []
    for text in _tweets_without_markup():
        plain = clf.text_score(text)
        decorated = f"@AcmeSupport {text} https://acme.example/status?id=1 @bob"
        if clf.text_score(decorated) != plain:
            moved.append(text)
    assert moved == []


def test_handles_and_urls_shift_plain_vader(vader: SentimentIntensityAnalyzer) -> None:
    # the other half of the claim: without preparation the score moves
    texts = _tweets_without_markup()
    moved = [
        t
        for t in texts
        if vader.polarity_scores(f"@AcmeSupport {t} https://acme.example/x @bob")["compound"]
        != vader.polarity_scores(t)["compound"]
    ]
    assert moved


@pytest.mark.parametrize(
    ("raw", "prepared"),
    [
        ("@acme hello there", "hello there"),
        ("see https://x.example/a?b=1 and www.y.example now", "see and now"),
        ("<p>so <b>bad</b></p>", "so bad"),
        (
            "it is **really** bad, see [the docs](https://d.example)",
            "it is really bad, see the docs",
        ),
        ("`code` and *emphasis*", "code and emphasis"),
        ("> quoted complaint", "quoted complaint"),
        ("#NeverAgain", "Never Again"),
        ("#epic_fail", "epic fail"),
        ("#worst", "worst"),
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("don\u2019t", "don't"),
        ("love it 😍", "love it 😍"),
        ("mail me at a@b.example", "mail me at a@b.example"),
    ],
)
def test_prepare_text(raw: str, prepared: str) -> None:
    assert prepare_text(raw) == prepared


def test_glued_hashtags_are_split_on_known_words(clf: ExperienceClassifier) -> None:
    assert clf.prepare("#sofrustrating") == "so frustrating"
    assert clf.text_score("#sofrustrating") < 0


def test_hashtag_phrases_meet_phrase_rules(clf: ExperienceClassifier) -> None:
    assert clf.prepare("#ChargedTwice") == "Charged_Twice"
    assert clf.text_score("#ChargedTwice") < 0


# --- star ratings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "stars", "label"),
    [
        ("It arrived on Tuesday.", 1, Label.NEGATIVE),
        ("It arrived on Tuesday.", 2, Label.NEGATIVE),
        ("It arrived on Tuesday.", 4, Label.POSITIVE),
        ("It arrived on Tuesday.", 5, Label.POSITIVE),
        ("It arrived on Tuesday.", 3, Label.NEUTRAL),
        ("Crashes constantly, unusable, I want a refund", 3, Label.NEGATIVE),
        # the meaning model is sure enough (p >= overrule_stars_at) that this is a complaint:
        # a complaint in a 5-star review is mixed, not praise for marketing
        ("Slightly slow sometimes", 5, Label.MIXED),
        ("It is fine I guess", 5, Label.POSITIVE),  # a doubtful text leaves the stars' verdict
        ("Love it, works perfectly, a lifesaver!", 1, Label.MIXED),
        ("Crashes constantly, unusable, I want a refund", 5, Label.MIXED),
        ("Love it, works perfectly, a lifesaver!", 5, Label.POSITIVE),
        ("Crashes constantly, unusable, I want a refund", 1, Label.NEGATIVE),
    ],
)
def test_rating_fusion(text: str, stars: int, label: Label, clf: ExperienceClassifier) -> None:
    result = clf.classify(text, rating=stars, language="en")
    assert result.label is label
    assert result.reasons[0] == f"rating: {stars} star{'s' if stars != 1 else ''}"


def test_mixed_says_which_side_disagrees(clf: ExperienceClassifier) -> None:
    result = clf.classify("Love it, works perfectly!", rating=1, language="en")
    assert "text is positive" in result.reasons
    assert -1.0 <= result.score <= 1.0


def test_rating_moves_the_score(clf: ExperienceClassifier) -> None:
    text = "It arrived on Tuesday."
    one = clf.classify(text, rating=1, language="en").score
    five = clf.classify(text, rating=5, language="en").score
    assert one < 0 < five


def test_out_of_range_rating_is_ignored(clf: ExperienceClassifier) -> None:
    text = "the app crashes"
    assert clf.classify(text, rating=0, language="en") == clf.classify(text, language="en")


def test_vader_baseline_ignores_ratings() -> None:
    base = VaderClassifier()
    assert base.classify("It arrived.", rating=1) == base.classify("It arrived.")


# --- language ------------------------------------------------------------------------

GERMAN = "Die App stürzt ständig ab und ich will mein Geld zurück"
SPANISH = "La aplicación se bloquea todo el tiempo, quiero que me devuelvan el dinero"


@pytest.mark.parametrize(("text", "code"), [(GERMAN, "de"), (SPANISH, "es")])
def test_non_english_is_marked_unscored(text: str, code: str, clf: ExperienceClassifier) -> None:
    result = clf.classify(text)
    assert result.label is Label.UNSCORED
    assert result.language == code
    assert result.reasons == (f"language: {code}",)
    assert result.skip is False


def test_skip_mode_flags_the_result() -> None:
    result = ExperienceClassifier(non_english="skip").classify(GERMAN)
    assert (result.label, result.skip, result.language) == (Label.UNSCORED, True, "de")


def test_score_mode_scores_anyway() -> None:
    result = ExperienceClassifier(non_english="score").classify(GERMAN)
    assert result.label is not Label.UNSCORED


def test_given_language_wins_over_detection(clf: ExperienceClassifier) -> None:
    assert clf.classify("the app crashes", language="fr").label is Label.UNSCORED
    assert clf.classify(GERMAN, language="en-US").label is not Label.UNSCORED
    assert clf.classify("the app crashes", language="EN_gb").language == "en"


@pytest.mark.parametrize("text", ["lol ok", "meh", "Great!!", "wtf 😡", "ugh, #fail"])
def test_short_text_is_not_marked_foreign(text: str, clf: ExperienceClassifier) -> None:
    assert clf.classify(text).label is not Label.UNSCORED


def test_english_data_is_almost_never_marked_foreign() -> None:
    texts = [e.text for e in load_examples(FIXTURES / "amazonReviewSnippets_GroundTruth.txt")]
    marked = [t for t in texts if (found := detect_language(t)) and found[0] != "en"]
    assert marked == []


def test_normalize_language() -> None:
    assert normalize_language("en-US") == "en"
    assert normalize_language("PT_br") == "pt"
    assert normalize_language("") is None
    assert normalize_language(None) is None


def test_constructor_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        ExperienceClassifier(negative_at=0.5, positive_at=-0.5)
    with pytest.raises(ValueError):
        ExperienceClassifier(non_english="ignore")


def test_custom_lexicon_replaces_the_fitted_one() -> None:
    custom = ExperienceClassifier(lexicon={"zorp": -3.0, "blue screen": -2.5}, non_english="score")
    assert custom.text_score("zorp") < -0.5
    assert custom.text_score("a blue screen") < -0.5
    assert custom.text_score("crashes") == 0.0
