"""The flag model: two small logistic heads that decide "negative" and "positive".

VADER's compound score (over VADER's lexicon plus the customer-experience lexicon) is a good
*intensity* but a poor *decision* across kinds of text: a complaint in a product review
("the tray stopped opening after a month, sent it back") scores far milder than an angry
tweet, so no single compound threshold catches the first without false alarms on the second.
The flag model reads the same prepared text and adds what the training data says about it:

* the compound, negative and positive proportions VADER computed (three dense features), and
* which words occur (one binary feature per word of the fitted vocabulary),

and each head is a logistic regression over those (``p = sigmoid(bias + w·x)``), fitted on
the training split by ``benchmarks/fit_lexicon.py`` with an L2 penalty, its threshold chosen
on out-of-fold predictions (see ``docs/sentiment.md``). A head's words are also its
explanation: the words that pushed a flagged text over its threshold are its reasons.

Example::

    >>> model = FlagModel.default()
    >>> decision = model.decide("the update is useless, refund please", (-0.62, 0.55, 0.18))
    >>> decision.label, round(decision.negative, 2)
    (<Label.NEGATIVE: 'negative'>, 0.87)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from .lexicon import STOPWORDS
from .models import Label

_TOKEN = re.compile(r"[a-z0-9][a-z0-9'_-]*[a-z0-9]|[!?]")

#: A word must move the log-odds by at least this much to be named as a reason (x1.65 odds).
MIN_DRIVER_WEIGHT = 0.5

#: Dense features, in order: VADER's compound, neg and pos proportions of the prepared text.
Polarity = tuple[float, float, float]


@dataclass(frozen=True)
class FlagHead:
    """One logistic head: ``p = sigmoid(bias + dense·polarity + sum(words[t] for t in tokens))``.

    ``threshold`` is the probability at or above which the flag is raised.
    """

    words: Mapping[str, float]
    dense: Polarity
    bias: float
    threshold: float

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("threshold must be between 0 and 1")

    def logit(self, tokens: Iterable[str], polarity: Polarity) -> float:
        """The head's log-odds for a text's tokens and polarity."""
        z = self.bias + sum(w * x for w, x in zip(self.dense, polarity, strict=True))
        words = self.words
        return z + sum(words.get(token, 0.0) for token in tokens)

    def probability(self, tokens: Iterable[str], polarity: Polarity) -> float:
        """``sigmoid(logit)``, clamped so extreme log-odds never overflow."""
        return _sigmoid(self.logit(tokens, polarity))

    def margin(self, tokens: Iterable[str], polarity: Polarity) -> float:
        """How far the log-odds are above (positive) or below the threshold's log-odds."""
        return self._margin_of(self.logit(tokens, polarity))

    def _margin_of(self, logit: float) -> float:
        t = self.threshold
        return logit - math.log(t / (1.0 - t))

    def drivers(self, tokens: Iterable[str], limit: int) -> tuple[str, ...]:
        """The words of ``tokens`` that pushed this head up most, strongest first.

        Only words worth naming to a reader count: not function words (``it``, ``after``),
        not ``!``/``?``, and only with a weight of at least ``MIN_DRIVER_WEIGHT``.
        """
        pushing = sorted(
            (
                (weight, token)
                for token in set(tokens)
                if (weight := self.words.get(token, 0.0)) >= MIN_DRIVER_WEIGHT
                and token[0].isalpha()
                and token not in STOPWORDS
            ),
            reverse=True,
        )
        return tuple(token for _, token in pushing[:limit])


@dataclass(frozen=True)
class FlagDecision:
    """The flag model's label for one text, and the words behind it."""

    label: Label
    negative: float
    positive: float
    drivers: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class FlagModel:
    """The negative and positive heads, used together.

    A head *fires* when it is at or over its threshold, or when the compound score is at or
    past that side's backstop (a score so clear that the words cannot overrule it). A text is
    ``NEGATIVE`` when the negative side fires and the positive side does not, or is not
    further over its threshold; ``POSITIVE`` the other way round; else ``NEUTRAL``.
    """

    negative: FlagHead
    positive: FlagHead
    #: A compound score at or below this is negative whatever the words say (``None``: off).
    negative_backstop: float | None = None
    #: A compound score at or above this is positive whatever the words say (``None``: off).
    positive_backstop: float | None = None

    @staticmethod
    def tokens(prepared: str) -> frozenset[str]:
        """The features' words of a prepared text: lowercased words and numbers of two or more
        characters (``_`` joins phrases, ``-`` stays: ``5_stars``, ``rip-off``), ``!``, ``?``."""
        return frozenset(_TOKEN.findall(prepared.lower()))

    def decide(self, prepared: str, polarity: Polarity, max_drivers: int = 3) -> FlagDecision:
        """Label a prepared text from its tokens and VADER polarity."""
        tokens = self.tokens(prepared)
        z_neg = self.negative.logit(tokens, polarity)  # each head's sum once, on the hot path
        z_pos = self.positive.logit(tokens, polarity)
        neg, pos = self.negative._margin_of(z_neg), self.positive._margin_of(z_pos)
        p_neg, p_pos = _sigmoid(z_neg), _sigmoid(z_pos)
        compound = polarity[0]
        neg_fires = neg >= 0.0 or (
            self.negative_backstop is not None and compound <= self.negative_backstop
        )
        pos_fires = pos >= 0.0 or (
            self.positive_backstop is not None and compound >= self.positive_backstop
        )
        if neg_fires and (not pos_fires or neg >= pos):
            return FlagDecision(
                Label.NEGATIVE, p_neg, p_pos, self.negative.drivers(tokens, max_drivers)
            )
        if pos_fires:
            return FlagDecision(
                Label.POSITIVE, p_neg, p_pos, self.positive.drivers(tokens, max_drivers)
            )
        return FlagDecision(Label.NEUTRAL, p_neg, p_pos)

    @classmethod
    def parse(cls, table: str, header: Mapping[str, float]) -> FlagModel:
        """Build a model from the generated table (``word<TAB>negative<TAB>positive`` lines)
        and the header values (biases, dense weights, thresholds)."""
        words: dict[str, tuple[float, float]] = {}
        for number, line in enumerate(table.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise ValueError(f"flag table line {number}: expected 3 tab-separated fields")
            words[parts[0]] = (float(parts[1]), float(parts[2]))
        return cls.from_weights(header, words)

    @classmethod
    def from_weights(
        cls, header: Mapping[str, float], words: Mapping[str, tuple[float, float]]
    ) -> FlagModel:
        """Build a model from the header values and ``{word: (negative, positive)}``."""

        def head(prefix: str, column: int) -> FlagHead:
            return FlagHead(
                {w: v[column] for w, v in words.items() if v[column]},
                (
                    header[f"{prefix}_compound"],
                    header[f"{prefix}_neg"],
                    header[f"{prefix}_pos"],
                ),
                header[f"{prefix}_bias"],
                header[f"{prefix}_threshold"],
            )

        return cls(
            head("negative", 0),
            head("positive", 1),
            header.get("negative_backstop"),
            header.get("positive_backstop"),
        )

    @classmethod
    def default(cls) -> FlagModel:
        """The model fitted on the training split (``flags_fitted.py``), loaded once."""
        return _default_model()


def _sigmoid(z: float) -> float:
    z = max(-60.0, min(60.0, z))
    return 1.0 / (1.0 + math.exp(-z))


@lru_cache(maxsize=1)
def _default_model() -> FlagModel:
    from . import flags_fitted

    return FlagModel.parse(flags_fitted.TABLE, flags_fitted.HEADER)
