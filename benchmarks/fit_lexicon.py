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
source file. These compound thresholds are what ``ExperienceClassifier`` uses when it runs
without the flag model (``flags=None``).

Last, the flag model (``earshot.listener.flags``), written to ``flags_fitted.py``: two
L2-penalised logistic regressions (negative vs the rest, positive vs the rest) over the
words of the prepared text that occur in at least ``--flag-min-count`` training texts and
VADER's compound, neg and pos over the fitted lexicon. They are solved exactly (Newton's
method); each head's probability threshold is chosen like the compound thresholds above
(best F1 at a precision no lower than plain VADER's plus ``--margin`` standard errors of it,
on each source file), but on out-of-fold predictions (``--folds`` folds by a hash of each
text's id; in each fold the lexicon, the vocabulary and the heads are all refitted on the
other folds), so the threshold is not tuned on texts any part of the model has seen.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from vaderSentiment.vaderSentiment import BOOSTER_DICT, NEGATE, SentimentIntensityAnalyzer

from earshot.listener.evaluation import (
    Example,
    load_examples,
    split_examples,
)
from earshot.listener.flags import FlagModel
from earshot.listener.lexicon import PRIORS, STOPWORDS
from earshot.listener.models import Label
from earshot.listener.sentiment import ExperienceClassifier, VaderClassifier

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "fixtures" / "sentiment"
FILES = ("amazonReviewSnippets_GroundTruth.txt", "tweets_GroundTruth.txt")
OUT = ROOT / "listener" / "lexicon_fitted.py"
FLAGS_OUT = ROOT / "listener" / "flags_fitted.py"
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
    clf = ExperienceClassifier(lexicon=weights, non_english="score", flags=None, meaning=None)
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
        clf = ExperienceClassifier(lexicon=weights, non_english="score", flags=None, meaning=None)
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
    clf = ExperienceClassifier(lexicon=weights, non_english="score", flags=None, meaning=None)
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


# --- the flag model ---------------------------------------------------------------------

#: The dense features are multiplied by this before the fit, so the one L2 penalty treats
#: them like word indicators; the exported weights are multiplied back.
DENSE_SCALE = 3.0


@dataclass
class FlagData:
    """The flag model's inputs for a list of examples."""

    tokens: list[frozenset[str]]
    polarity: np.ndarray  # n x 3: compound, neg, pos
    plain: np.ndarray  # plain VADER's compound, for the precision floor
    sources: np.ndarray
    labels: list[Label]


def flag_data(examples: Sequence[Example], clf: ExperienceClassifier) -> FlagData:
    """Prepare, tokenize and score ``examples`` once for every fit that uses them."""
    vader = SentimentIntensityAnalyzer()
    tokens, polarity, plain = [], [], []
    for e in examples:
        prepared = clf.prepare(e.text)
        scores = clf.polarity(prepared)
        tokens.append(FlagModel.tokens(prepared))
        polarity.append(scores)
        plain.append(vader.polarity_scores(e.text)["compound"])
    return FlagData(
        tokens,
        np.array(polarity, dtype=float),
        np.array(plain, dtype=float),
        np.array([e.source for e in examples]),
        [e.label for e in examples],
    )


def _vocabulary(data: FlagData, min_count: int) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for tokens in data.tokens:
        for token in tokens:
            counts[token] += 1
    return {t: j for j, t in enumerate(sorted(t for t, n in counts.items() if n >= min_count))}


def _design(data: FlagData, vocab: dict[str, int]) -> np.ndarray:
    x = np.zeros((len(data.tokens), len(vocab) + 4))
    for i, tokens in enumerate(data.tokens):
        for token in tokens:
            j = vocab.get(token)
            if j is not None:
                x[i, j] = 1.0
    x[:, len(vocab) : len(vocab) + 3] = data.polarity * DENSE_SCALE
    x[:, -1] = 1.0  # bias
    return x


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iterations: int = 50) -> np.ndarray:
    """Minimise ``sum(logloss) + l2/2 * |w|^2`` (the last column, the bias, unpenalised) by
    Newton's method; deterministic, and exact to the tolerance.

    ``l2`` must be positive (the penalty is what keeps separable data finite); a fit that has
    not converged after ``iterations`` steps raises instead of returning half a solution.
    """
    if l2 <= 0:
        raise ValueError("l2 must be positive")
    d = x.shape[1]
    w = np.zeros(d)
    penalty = np.full(d, l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = _sigmoid(x @ w)
        grad = x.T @ (p - y) + penalty * w
        hess = (x * (p * (1.0 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.max(np.abs(step))) < 1e-6:
            return w
    raise RuntimeError(f"logistic fit did not converge in {iterations} Newton steps")


def _fold(example: Example, folds: int) -> int:
    digest = hashlib.sha256(f"fold:{example.source}:{example.id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % folds


class _Floor:
    """Precision of flags against the gold ``label``, and the floor it must keep on every
    source file: plain VADER's precision there (flagging at ``base_at``) plus ``margin``
    standard errors of it, so "no lower than VADER" survives a new sample of texts."""

    def __init__(self, data: FlagData, label: Label, base_at: float, margin: float) -> None:
        self.gold = np.array([g == label for g in data.labels])
        plain_flag = data.plain <= base_at if label is Label.NEGATIVE else data.plain >= base_at
        self.masks = [data.sources == s for s in sorted(set(data.sources))]
        self.floors = []
        for m in self.masks:
            base = self.precision(plain_flag, m) or 0.0
            flagged = max(1, int(plain_flag[m].sum()))
            self.floors.append(base + margin * (base * (1.0 - base) / flagged) ** 0.5)
        self.every = np.ones(len(self.gold), dtype=bool)

    def precision(self, flag: np.ndarray, mask: np.ndarray) -> float | None:
        n = int(flag[mask].sum())
        return float((flag & self.gold)[mask].sum()) / n if n else None  # None: none flagged

    def kept(self, flag: np.ndarray) -> bool:
        """Whether ``flag`` keeps the floor on every source file that it flags at all."""
        return not any(
            (p := self.precision(flag, m)) is not None and p < floor
            for m, floor in zip(self.masks, self.floors, strict=True)
        )

    def score(self, flag: np.ndarray) -> tuple[float, float]:
        """F1 and precision of ``flag`` over all files."""
        p = self.precision(flag, self.every) or 0.0
        r = float((flag & self.gold).sum()) / max(1, int(self.gold.sum()))
        return (2 * p * r / (p + r) if p + r else 0.0, p)


def _flag_threshold(
    data: FlagData,
    label: Label,
    probability: np.ndarray,
    base_at: float,
    margin: float = 1.0,
) -> float:
    floor = _Floor(data, label, base_at, margin)
    best: float | None = None
    best_value: tuple[float, float] = (-1.0, -1.0)
    for at in [round(0.2 + i / 100, 2) for i in range(76)]:  # the stored values, exactly
        flag = probability >= at
        if not floor.kept(flag):
            continue
        value = floor.score(flag)  # best F1, then precision
        if best is None or value > best_value:
            best, best_value = at, value
    if best is None:
        raise ValueError(
            f"no {label.value} threshold keeps precision at plain VADER's (plus the margin) "
            "on every source file; lower --margin or look at the data"
        )
    return best


def _backstop(
    data: FlagData,
    label: Label,
    head_flags: np.ndarray,
    compound: np.ndarray,
    base_at: float,
    margin: float,
) -> float | None:
    """The compound score past which this side fires whatever its head says: the one (or
    none) that gives the best F1 together with the head's own flags, at a precision that
    keeps the same floor as the head's threshold on every source file."""
    floor = _Floor(data, label, base_at, margin)
    negative = label is Label.NEGATIVE
    best, best_f1 = None, floor.score(head_flags)[0]
    for step in range(30, 96, 5):
        at = -step / 100 if negative else step / 100
        flag = head_flags | ((compound <= at) if negative else (compound >= at))
        f1 = floor.score(flag)[0]
        if floor.kept(flag) and f1 > best_f1:
            best, best_f1 = at, f1
    return best


HEADS = ((Label.NEGATIVE, "negative", -0.5), (Label.POSITIVE, "positive", 0.5))


def fit_flags(
    train: Sequence[Example],
    weights: dict[str, float],
    *,
    lexicon_options: dict | None = None,
    min_count: int = 3,
    l2: float = 3.0,
    folds: int = 4,
    margin: float = 1.0,
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Fit both heads on ``train``; return the header values and the word table.

    The thresholds come from out-of-fold predictions, and everything fitted goes into each
    fold's fit: the lexicon (refitted with ``lexicon_options``), the vocabulary and the heads.
    """
    data = flag_data(
        train, ExperienceClassifier(lexicon=weights, non_english="score", flags=None, meaning=None)
    )
    fold_of = np.array([_fold(e, folds) for e in train])
    out_of_fold = np.zeros((len(HEADS), len(train)))
    compound_oof = np.zeros(len(train))  # each fold's compound, from its own lexicon
    for k in range(folds):
        inside = [e for e, f in zip(train, fold_of, strict=True) if f != k]
        outside = [e for e, f in zip(train, fold_of, strict=True) if f == k]
        fold_weights = fit(inside, **(lexicon_options or {}))
        clf = ExperienceClassifier(
            lexicon=fold_weights, non_english="score", flags=None, meaning=None
        )
        data_in, data_out = flag_data(inside, clf), flag_data(outside, clf)
        vocab = _vocabulary(data_in, min_count)
        x_in, x_out = _design(data_in, vocab), _design(data_out, vocab)
        compound_oof[fold_of == k] = data_out.polarity[:, 0]
        for h, (label, _, _) in enumerate(HEADS):
            y = np.array([g == label for g in data_in.labels], dtype=float)
            out_of_fold[h, fold_of == k] = _sigmoid(x_out @ fit_logistic(x_in, y, l2))
    vocab = _vocabulary(data, min_count)
    x = _design(data, vocab)
    n = len(vocab)
    header: dict[str, float] = {}
    table: dict[str, list[float]] = {t: [0.0, 0.0] for t in vocab}
    for h, (label, name, base_at) in enumerate(HEADS):
        y = np.array([g == label for g in data.labels], dtype=float)
        w = fit_logistic(x, y, l2)
        for token, j in vocab.items():
            table[token][h] = round(float(w[j]), 3)
        header[f"{name}_compound"] = round(float(w[n]) * DENSE_SCALE, 4)
        header[f"{name}_neg"] = round(float(w[n + 1]) * DENSE_SCALE, 4)
        header[f"{name}_pos"] = round(float(w[n + 2]) * DENSE_SCALE, 4)
        header[f"{name}_bias"] = round(float(w[-1]), 4)
        threshold = _flag_threshold(data, label, out_of_fold[h], base_at, margin)
        header[f"{name}_threshold"] = threshold
        flags = out_of_fold[h] >= threshold
        backstop = _backstop(data, label, flags, compound_oof, base_at, margin)
        if backstop is not None:
            header[f"{name}_backstop"] = backstop
    kept = {t: (v[0], v[1]) for t, v in table.items() if v[0] or v[1]}
    return header, kept


def _generated_head(what: str, n: int) -> list[str]:
    return [
        f'"""The fitted {what}. Generated: do not edit by hand.',
        "",
        "Regenerate with ``.venv/bin/python benchmarks/fit_lexicon.py`` (train split only,",
        f"seed 7, {n} texts); the method is described in that script.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
    ]


def render_flags(header: dict[str, float], table: dict[str, tuple[float, float]], n: int) -> str:
    lines = [
        *_generated_head("flag model (``earshot.listener.flags``)", n),
        "#: Biases, weights of the dense features and probability thresholds of the two heads.",
        "HEADER: dict[str, float] = {",
    ]
    lines.extend(f"    {json.dumps(k)}: {v}," for k, v in header.items())
    lines.append("}")
    lines.append("")
    lines.append("#: word<TAB>weight in the negative head<TAB>weight in the positive head")
    lines.append('TABLE = """\\')
    lines.extend(f"{t}\t{neg}\t{pos}" for t, (neg, pos) in sorted(table.items()))
    lines.append('"""')
    return "\n".join(lines) + "\n"


def render(weights: dict[str, float], negative_at: float, positive_at: float, n: int) -> str:
    lines = [
        *_generated_head("customer-experience lexicon", n),
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


@dataclass
class Fitted:
    """Everything one fit produces."""

    weights: dict[str, float]
    negative_at: float
    positive_at: float
    flag_header: dict[str, float]
    flag_table: dict[str, tuple[float, float]]

    def classifier(self) -> ExperienceClassifier:
        flags = FlagModel.from_weights(self.flag_header, self.flag_table)
        return ExperienceClassifier(lexicon=self.weights, flags=flags, non_english="score")


def fit_all(train: Sequence[Example], lexicon_options: dict, flag_options: dict) -> Fitted:
    """The lexicon, its compound thresholds, then the flag model, all on ``train``."""
    weights = fit(train, **lexicon_options)
    neg, pos = choose_thresholds(train, weights)
    header, table = fit_flags(train, weights, lexicon_options=lexicon_options, **flag_options)
    return Fitted(weights, neg, pos, header, table)


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
    parser.add_argument("--flag-min-count", type=int, default=3)
    parser.add_argument("--flag-l2", type=float, default=3.0)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument(
        "--margin",
        type=float,
        default=1.0,
        help="standard errors of VADER's precision a head's threshold must stay above",
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
    flag_options = {
        "min_count": args.flag_min_count,
        "l2": args.flag_l2,
        "folds": args.folds,
        "margin": args.margin,
    }
    if args.validate:
        from earshot.listener.evaluation import evaluate, format_report

        fit_part = split_examples(train, "train", seed=1007, test_fraction=0.2)
        val_part = split_examples(train, "test", seed=1007, test_fraction=0.2)
        fitted = fit_all(fit_part, options, flag_options)
        print(_summary(fitted))
        for name in (*FILES, ""):
            part = [e for e in val_part if not name or e.source == name]
            report = evaluate(
                part,
                [("vader", VaderClassifier()), ("experience", fitted.classifier())],
                title=f"validation: {name or 'both'}",
            )
            print(format_report(report), end="\n\n")
        return 0
    fitted = fit_all(train, options, flag_options)
    OUT.write_text(
        render(fitted.weights, fitted.negative_at, fitted.positive_at, len(train)),
        encoding="utf-8",
    )
    FLAGS_OUT.write_text(
        render_flags(fitted.flag_header, fitted.flag_table, len(train)), encoding="utf-8"
    )
    print(f"wrote {OUT.relative_to(ROOT)} and {FLAGS_OUT.relative_to(ROOT)}: {_summary(fitted)}")
    return 0


def _summary(fitted: Fitted) -> str:
    return (
        f"{len(fitted.weights)} lexicon weights, compound thresholds "
        f"{fitted.negative_at} / {fitted.positive_at}; flag model: "
        f"{len(fitted.flag_table)} words, thresholds "
        f"{fitted.flag_header['negative_threshold']} / {fitted.flag_header['positive_threshold']}"
        f", compound backstops {fitted.flag_header.get('negative_backstop')} / "
        f"{fitted.flag_header.get('positive_backstop')}"
    )


if __name__ == "__main__":
    sys.exit(main())
