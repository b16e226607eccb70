"""Sentiment: one interface, text (and an optional star rating and language) in, label out.

Two classifiers share the ``Classifier`` protocol:

* ``VaderClassifier`` is the baseline: VADER's compound score, a label from the configured
  thresholds, and the few words that pushed the score, so an alert can explain itself.
* ``ExperienceClassifier`` reads social text and reviews the way a support team does. It
  cleans the text first (``prepare_text``: @handles, URLs, markdown and HTML out, hashtags
  split into words, emoji kept), scores it with VADER over VADER's lexicon plus a
  customer-experience lexicon whose weights were fitted on labelled data (``crashes``,
  ``refund``, ``on hold``, ``charged twice`` … ``seamless``, ``lifesaver``), lets the
  fitted flag model (``flags.py``) decide the label from that score and the words, fuses
  the result with a star rating when there is one, and does not pretend to score text that
  is not English. VADER's own negation, booster, caps and "but" rules still apply to every word,
  the new ones included: the lexicon is layered on VADER, not a rewrite of it.

Example::

    >>> clf = ExperienceClassifier()
    >>> clf.classify("@acme the app keeps crashing, I want a refund").label
    <Label.NEGATIVE: 'negative'>
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from vaderSentiment.vaderSentiment import BOOSTER_DICT, SentimentIntensityAnalyzer, negated

from . import embedding, lexicon_fitted
from .embedding import DIM
from .flags import FlagModel
from .language import detect_language, normalize_language
from .lexicon import STOPWORDS
from .meaning import MeaningModel
from .models import COMPLAINT_INTENTS, Intent, Label

_WORD = re.compile(r"[\w']+|[^\w\s]+", re.UNICODE)

NonEnglish = Literal["unscored", "skip", "score"]
#: Tags that keep a 4-5 star review from being praise by its stars.
_NOT_PRAISE = COMPLAINT_INTENTS | {Intent.SPAM.value, Intent.FEATURE.value, Intent.QUESTION.value}

#: Length of ``ExperienceClassifier.features``: the embedding, VADER's three, two flag
#: logits, two hinges of the compound score, and the churn and billing cues.
FEATURES = DIM + 9

#: Phrases that say a customer is leaving (one input of the churn-risk head, and its reason).
CHURN_CUES = re.compile(
    r"\b(?:uninstall(?:ed|ing)?|cancel(?:l?ed|l?ing)? (?:my|the|our) "
    r"(?:subscription|account|membership|plan|order)|switch(?:ed|ing)? (?:over )?to|"
    r"delet(?:e|ed|ing) (?:my|the) account|clos(?:e|ed|ing) my account|"
    r"never (?:buy|buying|use|using|order|ordering|going back|again)|"
    r"(?:won't|will not|wont) (?:be )?(?:buy|buying|use|using|return|returning|coming back|"
    r"recommend)|return(?:ed|ing)? (?:it|this|them|the)|sent (?:it|them) back|moving to|"
    r"look(?:ing)? for (?:an )?alternative|going back to|get rid of (?:this|it)|"
    r"done with (?:this|it|you))\b",
    re.IGNORECASE,
)
#: Words about money between the customer and the product (an input of the billing head).
BILLING_CUES = re.compile(
    r"\b(?:charg(?:e|ed|es|ing)|refund(?:ed|s)?|overcharg\w*|billing|billed|subscription|"
    r"subscrib\w*|price[sd]?|pricing|paywall|premium|in-app purchases?|expensive|overpriced|"
    r"money back|paid|pay(?:ing)? for|fees?|cost(?:s|ly)?|trial)\b|\$\d",
    re.IGNORECASE,
)
Fitted = Literal["fitted"]


@dataclass(frozen=True)
class SentimentResult:
    """What a classifier decided and why.

    ``reasons`` are the words and rules that decided, strongest first (``"crashes"``,
    ``"not reliable"``, ``"rating: 1 star"``, ``"language: de"``). ``language`` is the
    language given or detected (``None`` when unknown). ``skip`` is ``True`` only when the
    classifier was configured to drop non-English text: the pipeline should then store the
    mention without alerting on it.

    ``confidence`` is the calibrated probability of ``label`` where the classifier has one
    (``None`` for plain VADER); ``intents`` are ``Intent`` values (``"bug"``, ``"churn_risk"``
    ...), strongest first; ``model`` names the model version that decided (shown in alerts,
    ``earshot check`` and ``/metrics``).
    """

    label: Label
    score: float
    reasons: tuple[str, ...] = field(default_factory=tuple)
    language: str | None = None
    skip: bool = False
    confidence: float | None = None
    intents: tuple[str, ...] = field(default_factory=tuple)
    model: str | None = None
    #: How likely the *text* is negative, by the model that decided (``None`` for VADER).
    #: ``earshot eval`` ranks by it for "negative recall at a precision".
    negative_probability: float | None = None
    #: The text's embedding when the classifier computed one (``ExperienceClassifier``
    #: with its meaning model: ``embed_texts`` of the same text), so that relevance reads
    #: the same vector instead of embedding the text again. Not part of the result's value.
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)


class Classifier(Protocol):
    """Anything that turns a text (and maybe a star rating) into a ``SentimentResult``."""

    def classify(
        self, text: str, rating: int | None = None, language: str | None = None
    ) -> SentimentResult: ...


class _Thresholds:
    """The compound-score thresholds both classifiers label with."""

    negative_at: float
    positive_at: float

    def _set_thresholds(self, negative_at: float, positive_at: float) -> None:
        if negative_at >= positive_at:
            raise ValueError("negative_at must be lower than positive_at")
        self.negative_at = negative_at
        self.positive_at = positive_at

    def label_for(self, score: float) -> Label:
        """The label for a compound score under this classifier's thresholds."""
        if score <= self.negative_at:
            return Label.NEGATIVE
        if score >= self.positive_at:
            return Label.POSITIVE
        return Label.NEUTRAL


class VaderClassifier(_Thresholds):
    """Plain VADER with configurable thresholds.

    ``compound <= negative_at`` is negative, ``compound >= positive_at`` positive, anything
    between neutral. ``reasons`` are the words with the strongest lexicon valence in the
    direction of the label (at most ``max_reasons``).
    """

    def __init__(
        self, negative_at: float = -0.5, positive_at: float = 0.5, max_reasons: int = 3
    ) -> None:
        self._set_thresholds(negative_at, positive_at)
        self.max_reasons = max_reasons
        self._analyzer = SentimentIntensityAnalyzer()

    def classify(
        self, text: str, rating: int | None = None, language: str | None = None
    ) -> SentimentResult:
        """Score ``text`` with plain VADER; ``rating`` is ignored."""
        score = float(self._analyzer.polarity_scores(text)["compound"])
        label = self.label_for(score)
        return SentimentResult(label, score, self._reasons(text, label), language)

    def _reasons(self, text: str, label: Label) -> tuple[str, ...]:
        if label not in (Label.NEGATIVE, Label.POSITIVE):
            return ()
        sign = -1.0 if label is Label.NEGATIVE else 1.0
        lexicon = self._analyzer.lexicon
        scored: dict[str, float] = {}
        for token in _WORD.findall(text):
            valence = lexicon.get(token.lower())
            if valence is not None and valence * sign > 0:
                scored.setdefault(token.lower(), valence * sign)
        ranked = sorted(scored.items(), key=lambda kv: kv[1], reverse=True)
        return tuple(word for word, _ in ranked[: self.max_reasons])


# --- preparing social text -------------------------------------------------------------

_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]{0,200}>")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)\s]*(?:\s[^)]*)?\)")
_URL = re.compile(r"(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)\S+", re.IGNORECASE)
_HANDLE = re.compile(r"(?<![\w@.])@\w+(?:[.-]\w+)*")
_MD_BOLD = re.compile(r"(\*\*|__|~~)(?=\S)(.+?)(?<=\S)\1")
_MD_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_MD_CODE = re.compile(r"`{1,3}([^`]*)`{1,3}")
_MD_LINE = re.compile(r"^[ \t]{0,3}(?:#{1,6}|>+|[-*+]|\d+[.)])[ \t]+", re.MULTILINE)
_HASHTAG = re.compile(r"(?<![\w&#])#(\w+)")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


def _split_hashtag(tag: str, known: frozenset[str]) -> str:
    parts = [p for p in tag.split("_") if p]
    words: list[str] = []
    for part in parts:
        pieces = _CAMEL.findall(part)
        if len(pieces) == 1 and part.islower() and part not in known and len(part) >= 6:
            # an all-lowercase tag like "epicfail": try one split into two known words
            for cut in range(len(part) - 2, 1, -1):
                if part[:cut] in known and part[cut:] in known:
                    pieces = [part[:cut], part[cut:]]
                    break
        words.extend(pieces or [part])
    return " ".join(words)


def prepare_text(text: str, known_words: frozenset[str] = frozenset()) -> str:
    """Clean social text for scoring.

    HTML tags and entities, markdown markup, URLs and @handles go; link texts stay;
    hashtags become words (``#NeverAgain`` → ``Never Again``, ``#epic_fail`` → ``epic fail``,
    and ``#epicfail`` too when both halves are in ``known_words``); emoji stay, VADER
    scores them. Curly quotes become straight ones so ``don’t`` is a negation.
    """
    text = html.unescape(text).translate(_QUOTES)
    text = _HTML_TAG.sub(" ", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _URL.sub(" ", text)
    text = _HANDLE.sub(" ", text)
    text = _MD_BOLD.sub(r"\2", text)
    text = _MD_ITALIC.sub(r"\1", text)
    text = _MD_CODE.sub(r"\1", text)
    text = _MD_LINE.sub("", text)
    text = _HASHTAG.sub(lambda m: _split_hashtag(m.group(1), known_words), text)
    text = _SPACES.sub(" ", text)
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


# --- the customer-experience classifier -----------------------------------------------


def _phrase_pattern(phrases: list[str]) -> re.Pattern[str] | None:
    if not phrases:
        return None
    ordered = sorted(phrases, key=len, reverse=True)
    body = "|".join(r"\s+".join(re.escape(w) for w in p.split()) for p in ordered)
    return re.compile(rf"(?<![\w'])(?:{body})(?![\w'])", re.IGNORECASE)


class ExperienceClassifier(_Thresholds):
    """VADER plus a fitted customer-experience lexicon, star-rating fusion and a language gate.

    Arguments:

    * ``flags``: the model that turns the text's score and words into a label
      (``FlagModel``, see ``flags.py``). ``"fitted"`` (the default) loads the one fitted on
      the training split; ``None`` labels by the compound score alone, with the thresholds
      below.
    * ``negative_at`` / ``positive_at``: compound-score thresholds for the text label when
      there is no flag model (passing them with one is an error). The defaults were chosen
      on the training split together with the lexicon weights (``lexicon_fitted.py``).
    * ``overrule_stars_at``: with the meaning model, how likely its text label must be to
      count against a star rating (a less certain text label leaves the stars' verdict).
    * ``praise_stars_at``: a 4-5 star review whose text is positive with at least this
      probability, and tagged with no complaint, request, question or spam, is tagged
      ``praise`` (the praise head learned from short sentences and misses long reviews).
    * ``clearly_negative_at`` / ``clearly_positive_at``: how strong the text must be to
      overrule a star rating (see below).
    * ``non_english``: what to do with text that is confidently not English, given or
      detected: ``"unscored"`` (label ``UNSCORED``, score 0.0, reason ``"language: xx"``,
      alert without a sentiment), ``"skip"`` (the same, plus ``skip=True``: the pipeline
      should not alert) or ``"score"`` (score it as English anyway).
    * ``detect_language``: run the offline detector when no ``language`` is passed.
    * ``lexicon``: extra word and phrase weights on VADER's scale (-4 … +4); ``None`` uses
      the fitted lexicon. Phrases are several words separated by spaces.

    Star ratings (1-5): 1-2 stars is negative unless the text is positive (its label is
    positive, or its score is ``>= clearly_positive_at``), 4-5 stars is positive unless the
    text is negative (label negative, or score ``<= clearly_negative_at``); then the label is
    ``MIXED``. 3 stars leaves the text label. With a rating the score is the mean of the text
    score and the stars mapped onto -1 … +1.
    """

    def __init__(
        self,
        negative_at: float | None = None,
        positive_at: float | None = None,
        *,
        flags: FlagModel | Fitted | None = "fitted",
        meaning: MeaningModel | Fitted | None = "fitted",
        clearly_negative_at: float = -0.5,
        clearly_positive_at: float = 0.5,
        overrule_stars_at: float = 0.7,
        praise_stars_at: float = 0.8,
        non_english: NonEnglish = "unscored",
        detect_language: bool = True,
        min_language_confidence: float = 0.8,
        lexicon: Mapping[str, float] | None = None,
        max_reasons: int = 3,
    ) -> None:
        if flags == "fitted":
            self.flags: FlagModel | None = FlagModel.default()
        elif flags is None or isinstance(flags, FlagModel):
            self.flags = flags
        else:
            raise ValueError("flags must be a FlagModel, 'fitted' or None")
        if meaning == "fitted":
            self.meaning: MeaningModel | None = MeaningModel.default()
        elif meaning is None or isinstance(meaning, MeaningModel):
            self.meaning = meaning
        else:
            raise ValueError("meaning must be a MeaningModel, 'fitted' or None")
        if (self.flags is not None or self.meaning is not None) and (
            negative_at is not None or positive_at is not None
        ):
            raise ValueError(
                "negative_at/positive_at label by the compound score, which the flag and "
                "meaning models replace: pass flags=None and meaning=None with them"
            )
        self._set_thresholds(
            lexicon_fitted.NEGATIVE_AT if negative_at is None else negative_at,
            lexicon_fitted.POSITIVE_AT if positive_at is None else positive_at,
        )
        if clearly_negative_at >= clearly_positive_at:
            raise ValueError("clearly_negative_at must be lower than clearly_positive_at")
        if non_english not in ("unscored", "skip", "score"):
            raise ValueError("non_english must be 'unscored', 'skip' or 'score'")
        self.clearly_negative_at = clearly_negative_at
        self.clearly_positive_at = clearly_positive_at
        self.overrule_stars_at = overrule_stars_at
        self.praise_stars_at = praise_stars_at
        self.non_english: NonEnglish = non_english
        self.detect_language = detect_language
        self.min_language_confidence = min_language_confidence
        self.max_reasons = max_reasons
        weights = dict(lexicon_fitted.WEIGHTS if lexicon is None else lexicon)
        self._analyzer = SentimentIntensityAnalyzer()
        merged = dict(self._analyzer.lexicon)
        self._phrases: dict[str, str] = {}  # "charged_twice" -> "charged twice"
        for entry, weight in weights.items():
            key = entry.lower().strip()
            if " " in key:
                token = "_".join(key.split())
                self._phrases[token] = key
                merged[token] = float(weight)
            else:
                merged[key] = float(weight)
        self._analyzer.lexicon = merged
        self.lexicon: Mapping[str, float] = merged
        self._phrase_re = _phrase_pattern(list(self._phrases.values()))
        self._known = frozenset(k for k in merged if k.isalpha()) | STOPWORDS

    # the pieces, public so the fit and the tests can use them

    def prepare(self, text: str) -> str:
        """``prepare_text`` plus the phrase rules: ``charged twice`` → ``charged_twice``."""
        text = prepare_text(text, self._known)
        if self._phrase_re is not None:
            text = self._phrase_re.sub(lambda m: "_".join(m.group(0).split()), text)
        return text

    def polarity(self, prepared: str) -> tuple[float, float, float]:
        """VADER's compound, neg and pos of an already prepared text (the flag model's input)."""
        scores = self._analyzer.polarity_scores(prepared)
        return float(scores["compound"]), float(scores["neg"]), float(scores["pos"])

    def features(
        self,
        prepared: str,
        polarity: tuple[float, float, float],
        tokens: frozenset[str] | None = None,
    ) -> np.ndarray:
        """The meaning model's input for a prepared text (see ``meaning.py``).

        ``tokens`` are the flag model's tokens of ``prepared`` when the caller has them.

        The text's embedding, VADER's compound/neg/pos, how far the compound is past
        +-0.5 on either side (a clear score means more than a linear step), and the two flag
        heads' log-odds (zero without a flag model), and whether a churn or billing cue
        occurs (``CHURN_CUES``, ``BILLING_CUES``): ``FEATURES`` float32 values.
        """
        vector = np.empty(FEATURES, dtype=np.float32)
        vector[:DIM] = embedding.embed(prepared)
        vector[DIM : DIM + 3] = polarity
        vector[DIM + 5] = max(0.0, polarity[0] - 0.5)
        vector[DIM + 6] = max(0.0, -polarity[0] - 0.5)
        vector[DIM + 7] = CHURN_CUES.search(prepared) is not None
        vector[DIM + 8] = BILLING_CUES.search(prepared) is not None
        if self.flags is not None:
            if tokens is None:
                tokens = self.flags.tokens(prepared)
            vector[DIM + 3] = self.flags.negative.logit(tokens, polarity)
            vector[DIM + 4] = self.flags.positive.logit(tokens, polarity)
        else:
            vector[DIM + 3 : DIM + 5] = 0.0
        return vector

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """The embedding of each raw text as ``classify`` computes it (prepared first), one
        ``(len(texts), DIM)`` float32 array: what per-query relevance reads, so the
        classifier's vector of a mention serves both."""
        return embedding.embed_many([self.prepare(text) for text in texts])

    def feature_rows(self, texts: Sequence[str]) -> np.ndarray:
        """``features`` of each raw text (prepared first), one ``(len(texts), FEATURES)``
        float32 array: what the fit and ``earshot train`` learn from."""
        out = np.empty((len(texts), FEATURES), dtype=np.float32)
        for i, text in enumerate(texts):
            prepared = self.prepare(text)
            out[i] = self.features(prepared, self.polarity(prepared))
        return out

    def text_score(self, text: str) -> float:
        """VADER's compound score of the prepared text, over the extended lexicon."""
        return float(self._analyzer.polarity_scores(self.prepare(text))["compound"])

    def classify(
        self, text: str, rating: int | None = None, language: str | None = None
    ) -> SentimentResult:
        """Label ``text``; ``rating`` is a 1-5 star rating, ``language`` an ISO code.

        A rating outside 1-5 is ignored, as if there were none.
        """
        lang = normalize_language(language)
        if lang is None and self.detect_language and self.non_english != "score":
            found = detect_language(text, self.min_language_confidence)
            lang = found[0] if found else None
        if lang is not None and lang != "en" and self.non_english != "score":
            return SentimentResult(
                Label.UNSCORED, 0.0, (f"language: {lang}",), lang, self.non_english == "skip"
            )
        prepared = self.prepare(text)
        polarity = self.polarity(prepared)
        score = polarity[0]
        drivers: tuple[str, ...] = ()
        confidence: float | None = None
        intents: tuple[str, ...] = ()
        model: str | None = None
        p_neg: float | None = None
        vector: np.ndarray | None = None
        meaning = self.meaning  # read once: the service may swap in a newly trained model
        if meaning is not None:
            tokens = self.flags.tokens(prepared) if self.flags is not None else None
            features = self.features(prepared, polarity, tokens)
            vector = features[:DIM].copy()
            reading = meaning.read(features)
            label, confidence, intents = reading.label, reading.confidence, reading.intents
            model = meaning.version
            p_neg = reading.probabilities.get("negative")
            if self.flags is not None and label in (Label.NEGATIVE, Label.POSITIVE):
                head = self.flags.negative if label is Label.NEGATIVE else self.flags.positive
                drivers = head.drivers(tokens or frozenset(), self.max_reasons)
        elif self.flags is None:
            label = self.label_for(score)
        else:
            decision = self.flags.decide(prepared, polarity, self.max_reasons)
            label, drivers, p_neg = decision.label, decision.drivers, decision.negative
        words = self._reasons(prepared, label, drivers)
        if rating is None or not 1 <= rating <= 5:
            return SentimentResult(
                label,
                score,
                words,
                lang,
                confidence=confidence,
                intents=intents,
                model=model,
                negative_probability=p_neg,
                embedding=vector,
            )
        fused_label, fused, rules = self._fuse(label, score, rating, confidence)
        if fused_label not in (label, Label.MIXED):
            # the stars decided against the text's own (neutral) label: its words would
            # explain a label that is not the one shown
            words = self._reasons(prepared, fused_label)
        if fused_label is not label:
            confidence = None  # the stars decided, not the model's probability
        elif (
            fused_label is Label.POSITIVE
            and rating >= 4
            and confidence is not None
            and confidence >= self.praise_stars_at
            and Intent.PRAISE.value not in intents
            and not set(intents) & _NOT_PRAISE
        ):
            # the customer's own 4-5 stars and a text the model is sure is positive, with
            # no complaint, request or question in it: praise, whatever the praise head says
            intents = (Intent.PRAISE.value, *intents)
        return SentimentResult(
            fused_label,
            fused,
            (*rules, *words),
            lang,
            confidence=confidence,
            intents=intents,
            model=model,
            negative_probability=p_neg,
            embedding=vector,
        )

    def _fuse(
        self, text_label: Label, score: float, rating: int, confidence: float | None = None
    ) -> tuple[Label, float, list[str]]:
        stars = f"rating: {rating} star{'s' if rating != 1 else ''}"
        fused = round((score + (rating - 3) / 2) / 2, 4)
        if confidence is not None and confidence < self.overrule_stars_at:
            # the stars are the customer's own verdict: a doubtful text label does not overrule
            text_label = Label.NEUTRAL
        if text_label is Label.MIXED and rating != 3:
            return Label.MIXED, fused, [stars, "text is mixed"]
        if rating <= 2:
            if text_label is Label.POSITIVE or score >= self.clearly_positive_at:
                return Label.MIXED, fused, [stars, "text is positive"]
            return Label.NEGATIVE, fused, [stars]
        if rating >= 4:
            if text_label is Label.NEGATIVE or score <= self.clearly_negative_at:
                return Label.MIXED, fused, [stars, "text is negative"]
            return Label.POSITIVE, fused, [stars]
        return text_label, fused, [stars]

    def _reasons(
        self, prepared: str, label: Label, drivers: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        # the words behind the *text* label (with a rating, the rules come first): the
        # lexicon's words in the label's direction, then the flag model's own words
        if label not in (Label.NEGATIVE, Label.POSITIVE):
            return ()
        sign = -1.0 if label is Label.NEGATIVE else 1.0
        lexicon = self.lexicon
        tokens = [t.strip('!?.,;:"()[]') for t in prepared.split()]
        scored: dict[str, float] = {}
        for i, token in enumerate(tokens):
            low = token.lower()
            if not low or low in BOOSTER_DICT:
                continue
            valence = lexicon.get(low)
            if valence is None:
                continue
            shown = self._phrases.get(low, low)
            if negated(tokens[max(0, i - 3) : i]):
                valence, shown = -0.74 * valence, f"not {shown}"
            if valence * sign > 0:
                scored.setdefault(shown, valence * sign)
        ranked = [word for word, _ in sorted(scored.items(), key=lambda kv: kv[1], reverse=True)]
        for token in drivers:
            shown = self._phrases.get(token, token.replace("_", " "))
            if shown[0].isalpha() and shown not in ranked and f"not {shown}" not in ranked:
                ranked.append(shown)
        return tuple(ranked[: self.max_reasons])
