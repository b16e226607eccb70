"""Fit the customer-experience lexicon on the training split and write ``lexicon_fitted.py``.

Run from the repository root::

    .venv/bin/python benchmarks/fit_lexicon.py            # fit, write the module
    .venv/bin/python benchmarks/fit_lexicon.py --validate  # fit on 80% of train, report 20%

The fit only ever reads the *train* part of ``tests/fixtures/sentiment`` (split seed 7, see
``earshot.listener.evaluation``); the test part is left for ``earshot eval``. It is
deterministic: same data, same weights.

How the weights are fitted (a few rounds of backfitting, in VADER's units):

1. Score every training text with VADER plus the current lexicon (the priors of
   ``earshot.listener.lexicon`` to start with) and take the residual
   ``human mean rating - scale * compound``, with ``scale`` the least-squares slope of rating
   on compound for plain VADER.
2. For each word or phrase of the prior lexicon, and each other word that occurs in at least
   ``--min-count`` training texts (VADER's own words included, unless ``--keep-vader``;
   function words, negations and boosters never), the valence the training texts imply is
   its current weight plus the mean residual of the texts it occurs in. The new weight is
   that mean shrunk towards the prior (the hand-set prior, VADER's valence, or 0 for a new
   word) with ``--shrink`` pseudo-texts, moved halfway (damping), clipped to ±3.5.
3. New words whose weight ends below ``--min-weight`` in absolute value are dropped.

The options' defaults were chosen by 4-fold cross-validation inside the training split
(``--validate`` shows one fold); the test split played no part in the fit.

Then the label thresholds are chosen on the training split: for each flag the threshold with
the best F1 among those whose precision is no lower than plain VADER's at ±0.5 on each
source file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from vaderSentiment.vaderSentiment import BOOSTER_DICT, NEGATE, SentimentIntensityAnalyzer

from earshot.listener.evaluation import (
    Example,
    load_examples,
    split_examples,
)
from earshot.listener.lexicon import PRIORS, STOPWORDS
from earshot.listener.models import Label
from earshot.listener.sentiment import ExperienceClassifier, VaderClassifier

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "fixtures" / "sentiment"
FILES = ("amazonReviewSnippets_GroundTruth.txt", "tweets_GroundTruth.txt")
OUT = ROOT / "listener" / "lexicon_fitted.py"
_TOKEN = re.compile(r"^[a-z][a-z'_-]*[a-z]$")


def load_train() -> list[Example]:
    examples: list[Example] = []
    for name in FILES:
        examples.extend(split_examples(load_examples(DATA / name), "train"))
    return examples


def _tokens(clf: ExperienceClassifier, text: str) -> set[str]:
    out = set()
    for raw in clf.prepare(text).split():
        token = raw.strip("!?.,;:\"()[]*'").lower()
        if _TOKEN.match(token):
            out.add(token)
    return out


def fit(
    train: Sequence[Example],
    *,
    rounds: int = 6,
    shrink: float = 6.0,
    min_count: int = 5,
    min_weight: float = 0.4,
    refit_vader: bool = True,
) -> dict[str, float]:
    """Fit word and phrase weights on ``train`` (see the module docstring)."""
    vader = SentimentIntensityAnalyzer()
    vader_words = set(vader.lexicon)
    plain = [vader.polarity_scores(e.text)["compound"] for e in train]
    ratings = [e.score if e.score is not None else 0.0 for e in train]
    scale = sum(r * c for r, c in zip(ratings, plain, strict=True)) / sum(c * c for c in plain)

    blocked = STOPWORDS | set(BOOSTER_DICT) | set(NEGATE)
    weights = dict(PRIORS)
    clf = ExperienceClassifier(lexicon=weights, non_english="score")
    docs = [_tokens(clf, e.text) for e in train]
    counts: dict[str, int] = defaultdict(int)
    for tokens in docs:
        for token in tokens:
            counts[token] += 1
    phrase_tokens = {"_".join(p.split()): p for p in PRIORS}
    candidates = {
        t
        for t, n in counts.items()
        if t in phrase_tokens
        or (
            n >= min_count
            and (refit_vader or t not in vader_words)
            and t not in blocked
            and "_" not in t
        )
    }
    for _ in range(rounds):
        clf = ExperienceClassifier(lexicon=weights, non_english="score")
        residual = [r - scale * clf.text_score(e.text) for r, e in zip(ratings, train, strict=True)]
        sums: dict[str, float] = defaultdict(float)
        for tokens, res in zip(docs, residual, strict=True):
            for token in tokens & candidates:
                sums[token] += res
        updated = dict(weights)
        for token in sorted(candidates):
            entry = phrase_tokens.get(token, token)
            prior = PRIORS.get(entry, vader.lexicon.get(entry, 0.0))
            current = weights.get(entry, prior)
            n = counts[token]
            implied = current + sums[token] / n
            target = (shrink * prior + n * implied) / (shrink + n)
            updated[entry] = max(-3.5, min(3.5, current + 0.5 * (target - current)))
        weights = updated
    return {
        k: round(v, 2)
        for k, v in sorted(weights.items())
        if k in PRIORS
        or (k in vader_words and v != vader.lexicon[k])
        or (k not in vader_words and abs(v) >= min_weight)
    }


def _precision_recall(
    gold: Sequence[Label], scores: Sequence[float], label: Label, at: float
) -> tuple[float, float]:
    flag = [(s <= at) if label is Label.NEGATIVE else (s >= at) for s in scores]
    tp = sum(f and g == label for f, g in zip(flag, gold, strict=True))
    flagged, relevant = sum(flag), sum(g == label for g in gold)
    return (tp / flagged if flagged else 0.0), (tp / relevant if relevant else 0.0)


def choose_thresholds(train: Sequence[Example], weights: dict[str, float]) -> tuple[float, float]:
    """For each flag, the threshold with the best F1 on ``train`` among those whose precision
    is no lower than plain VADER's (at -0.5 / +0.5) on every source file of ``train``."""
    vader = SentimentIntensityAnalyzer()
    clf = ExperienceClassifier(lexicon=weights, non_english="score")
    gold = [e.label for e in train]
    plain = [vader.polarity_scores(e.text)["compound"] for e in train]
    ours = [clf.text_score(e.text) for e in train]
    sources = sorted({e.source for e in train})
    by_source = [[i for i, e in enumerate(train) if e.source == s] for s in sources]
    chosen: list[float] = []
    for label, base_at, grid in (
        (Label.NEGATIVE, -0.5, [-i / 100 for i in range(5, 91)]),
        (Label.POSITIVE, 0.5, [i / 100 for i in range(5, 91)]),
    ):
        floors = [
            _precision_recall([gold[i] for i in idx], [plain[i] for i in idx], label, base_at)[0]
            for idx in by_source
        ]
        best, best_f1 = base_at, -1.0
        for at in grid:
            precisions = [
                _precision_recall([gold[i] for i in idx], [ours[i] for i in idx], label, at)[0]
                for idx in by_source
            ]
            if any(p < floor for p, floor in zip(precisions, floors, strict=True)):
                continue
            p, r = _precision_recall(gold, ours, label, at)
            f1 = 2 * p * r / (p + r) if p + r else 0.0
            if f1 > best_f1:
                best, best_f1 = at, f1
        chosen.append(best)
    return chosen[0], chosen[1]


def render(weights: dict[str, float], negative_at: float, positive_at: float, n: int) -> str:
    lines = [
        '"""The fitted customer-experience lexicon. Generated: do not edit by hand.',
        "",
        "Regenerate with ``.venv/bin/python benchmarks/fit_lexicon.py`` (train split only,",
        f"seed 7, {n} texts); the method is described in that script.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "#: Compound-score thresholds chosen on the training split.",
        f"NEGATIVE_AT = {negative_at}",
        f"POSITIVE_AT = {positive_at}",
        "",
        "#: Word and phrase valences on VADER's scale, layered over VADER's lexicon.",
        "WEIGHTS: dict[str, float] = {",
    ]
    lines.extend(f"    {json.dumps(k)}: {v}," for k, v in weights.items())
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validate", action="store_true", help="fit on 80%% of train, report")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--shrink", type=float, default=6.0)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--min-weight", type=float, default=0.4)
    parser.add_argument(
        "--keep-vader", action="store_true", help="leave VADER's own words as they are"
    )
    args = parser.parse_args(argv)
    train = load_train()
    options = {
        "rounds": args.rounds,
        "shrink": args.shrink,
        "min_count": args.min_count,
        "min_weight": args.min_weight,
        "refit_vader": not args.keep_vader,
    }
    if args.validate:
        from earshot.listener.evaluation import evaluate, format_report

        fit_part = split_examples(train, "train", seed=1007, test_fraction=0.2)
        val_part = split_examples(train, "test", seed=1007, test_fraction=0.2)
        weights = fit(fit_part, **options)
        neg, pos = choose_thresholds(fit_part, weights)
        print(f"{len(weights)} weights, thresholds {neg} / {pos}")
        for name in (*FILES, ""):
            part = [e for e in val_part if not name or e.source == name]
            report = evaluate(
                part,
                [
                    ("vader", VaderClassifier()),
                    (
                        "experience",
                        ExperienceClassifier(neg, pos, lexicon=weights, non_english="score"),
                    ),
                ],
                title=f"validation: {name or 'both'}",
            )
            print(format_report(report), end="\n\n")
        return 0
    weights = fit(train, **options)
    neg, pos = choose_thresholds(train, weights)
    OUT.write_text(render(weights, neg, pos, len(train)), encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(weights)} weights, thresholds {neg} / {pos}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
