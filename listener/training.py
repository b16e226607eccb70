"""Fitting the meaning model's heads, refitting them on the team's corrections, comparing models.

Everything here works on numbers: feature vectors (``ExperienceClassifier.features``) and
per-head targets. ``benchmarks/fit_meaning.py`` turns the labelled sets into a
``TrainingSet`` and calls ``fit_model``; ``earshot train`` turns the workspace's corrections
into examples and calls ``refit``, then ``compare`` to decide whether to adopt the result.

A target is 1 (the head should fire), 0 (it should not) or -1 (the row says nothing about
that head and is left out of it): a GitHub issue labelled "bug" teaches the bug head but
says nothing about sentiment.

**Refitting without the training text.** The shipped package holds no training text, only
the fitted weights and, per head, the *prior*: the weights ``w*`` and the Hessian ``H`` of
the penalized log-loss at ``w*`` on the full training set (``data/meaning_prior.npz``).
To second order, the training set's loss is ``1/2 (w - w*)^T H (w - w*)``, so refitting on
"the shipped data plus the corrections" is one Newton solve of the corrections' log-loss
plus that quadratic (a Laplace approximation; exact for the quadratic part). Each
correction counts ``weight`` times, so a handful of clicks can move a head.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .meaning import (
    INTENT_HEADS,
    SENTIMENT_HEADS,
    MeaningModel,
    fit_logistic,
    labels_for,
    platt,
)

__all__ = [
    "HEADS",
    "Comparison",
    "Prior",
    "TrainingSet",
    "compare",
    "fit_model",
    "macro_f1",
    "refit",
]

HEADS = (*SENTIMENT_HEADS, *INTENT_HEADS)
FOLDS = 4
L2 = 30.0
#: Heads whose false alarms cost most: praise decides what marketing is offered, spam what
#: is never alerted. Their thresholds maximize F0.5 (precision counts double), not F1.
PRECISE = ("praise", "spam", "churn_risk")


@dataclass
class TrainingSet:
    """Feature rows with their per-head targets (-1: not used), group (file) and key."""

    x: np.ndarray
    targets: dict[str, np.ndarray]
    sentiment: np.ndarray  # "negative" / "neutral" / "positive" / "" (none)
    groups: np.ndarray
    keys: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.x)
        for name, arr in self.targets.items():
            if len(arr) != n:
                raise ValueError(f"targets of {name!r} have {len(arr)} rows, x has {n}")
        if not len(self.sentiment) == len(self.groups) == len(self.keys) == n:
            raise ValueError("sentiment, groups and keys must have one entry per row")

    def subset(self, mask: np.ndarray) -> TrainingSet:
        return TrainingSet(
            self.x[mask],
            {k: v[mask] for k, v in self.targets.items()},
            self.sentiment[mask],
            self.groups[mask],
            self.keys[mask],
        )

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        arrays: dict[str, np.ndarray] = {
            "x": self.x.astype(np.float16),
            "sentiment": self.sentiment.astype(str),
            "groups": self.groups.astype(str),
            "keys": self.keys.astype(str),
        }
        arrays.update({f"t_{k}": v.astype(np.int8) for k, v in self.targets.items()})
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainingSet:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            targets = {k[2:]: npz[k].astype(np.int8) for k in npz.files if k.startswith("t_")}
            return cls(
                npz["x"].astype(np.float32),
                targets,
                npz["sentiment"],
                npz["groups"],
                npz["keys"],
            )


@dataclass
class Standardizer:
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        mean = x.mean(axis=0).astype(np.float64)
        scale = x.std(axis=0).astype(np.float64)
        scale[scale < 1e-6] = 1.0
        return cls(mean, scale)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.scale


def balanced_weights(y: np.ndarray, cap: float = 10.0) -> np.ndarray:
    """Up-weight a rare positive class (at most ``cap`` times) so a head learns it at all."""
    pos = max(1.0, float(y.sum()))
    ratio = min(cap, max(1.0, (len(y) - pos) / pos / 2))
    return np.where(y == 1, ratio, 1.0)


def folds_of(groups: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """A fixed fold (0..FOLDS-1) per row, from a hash of its group and key."""
    return np.array(
        [
            hashlib.sha256(f"fold:{g}:{k}".encode()).digest()[0] % FOLDS
            for g, k in zip(groups, keys, strict=True)
        ]
    )


def _f_beta(y: np.ndarray, hit: np.ndarray, beta: float) -> float:
    tp = float((hit & (y == 1)).sum())
    if tp == 0:
        return 0.0
    p, r = tp / hit.sum(), tp / (y == 1).sum()
    return (1 + beta**2) * p * r / (beta**2 * p + r)


def best_threshold(y: np.ndarray, prob: np.ndarray, beta: float = 1.0) -> float:
    """The probability threshold with the best F-beta (a 0.01 grid, lowest on ties)."""
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    scores = [_f_beta(y, prob >= t, beta) for t in grid]
    return float(grid[int(np.argmax(scores))])


def macro_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Mean F1 over the labels that occur in ``gold`` (a prediction outside them is a miss)."""
    labels = sorted(set(gold))
    f1s = []
    for lab in labels:
        tp = sum(g == lab and p == lab for g, p in zip(gold, pred, strict=True))
        pp, gg = sum(p == lab for p in pred), sum(g == lab for g in gold)
        prec, rec = (tp / pp if pp else 0.0), (tp / gg if gg else 0.0)
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return sum(f1s) / len(f1s) if f1s else 0.0


def sentiment_thresholds(
    gold: np.ndarray, groups: np.ndarray, p_neg: np.ndarray, p_pos: np.ndarray
) -> tuple[float, float]:
    """The thresholds with the best mean macro-F1 over the groups (files)."""
    masks = [groups == g for g in sorted(set(groups))]
    grid = np.round(np.arange(0.20, 0.81, 0.02), 2)
    best, best_score = (0.5, 0.5), -1.0
    for tn in grid:
        for tp in grid:
            pred = labels_for(p_neg, p_pos, float(tn), float(tp))
            score = float(np.mean([macro_f1(list(gold[m]), list(pred[m])) for m in masks]))
            if score > best_score:
                best, best_score = (float(tn), float(tp)), score
    return best


def _head_rows(ts: TrainingSet, head: str) -> tuple[np.ndarray, np.ndarray]:
    if head in SENTIMENT_HEADS:
        idx = np.flatnonzero(ts.sentiment != "")
        return idx, (ts.sentiment[idx] == head).astype(np.float64)
    t = ts.targets.get(head)
    if t is None:
        return np.array([], dtype=np.int64), np.array([])
    idx = np.flatnonzero(t >= 0)
    return idx, t[idx].astype(np.float64)


@dataclass
class Prior:
    """Per head: the fitted weights (with the bias last) and the Hessian of the training
    loss there, on the standardized features. What ``refit`` needs instead of the data."""

    weights: dict[str, np.ndarray] = field(default_factory=dict)
    hessians: dict[str, np.ndarray] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        arrays: dict[str, np.ndarray] = {}
        for head, w in self.weights.items():
            arrays[f"w_{head}"] = w.astype(np.float64)
            h = self.hessians[head]
            arrays[f"h_{head}"] = h[np.triu_indices(len(h))].astype(np.float32)
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Prior:
        prior = cls()
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            for name in npz.files:
                if name.startswith("w_"):
                    head = name[2:]
                    w = npz[name]
                    n = len(w)
                    h = np.zeros((n, n))
                    h[np.triu_indices(n)] = npz[f"h_{head}"]
                    h = h + h.T - np.diag(np.diag(h))
                    prior.weights[head], prior.hessians[head] = w, h
        return prior


def _hessian(z: np.ndarray, w: np.ndarray, b: float, sw: np.ndarray, l2: float) -> np.ndarray:
    zb = np.hstack([z, np.ones((len(z), 1))])
    p = 1 / (1 + np.exp(-np.clip(zb @ np.append(w, b), -35, 35)))
    h = (zb * (sw * p * (1 - p))[:, None]).T @ zb
    reg = np.full(zb.shape[1], l2)
    reg[-1] = 1e-6
    return h + np.diag(reg)


def fit_model(
    ts: TrainingSet, version: str, *, l2: float = L2, partial: bool = False
) -> tuple[MeaningModel, Prior, dict[str, dict[str, float]]]:
    """Fit every head on ``ts``: weights, Platt calibration and thresholds out-of-fold.

    Returns the model, its prior (for ``refit``) and per head the rows, positives and
    threshold. ``partial`` leaves a head without positive rows untrained (never raised)
    instead of failing.
    """
    std = Standardizer.fit(ts.x)
    z = std(ts.x)
    folds = folds_of(ts.groups, ts.keys)
    weights, biases, platts, thresholds = [], [], [], []
    prior = Prior()
    report: dict[str, dict[str, float]] = {}
    oof_sent: dict[str, np.ndarray] = {}
    for head in HEADS:
        idx, y = _head_rows(ts, head)
        if (len(y) == 0 or y.sum() == 0) and partial:
            weights.append(np.zeros(z.shape[1]))
            biases.append(-10.0)
            platts.append((1.0, 0.0))
            thresholds.append(0.99)
            report[head] = {"rows": len(y), "positives": 0, "threshold": 0.99}
            continue
        sw = balanced_weights(y)
        oof = np.empty(len(y))
        for k in range(FOLDS):
            train, held = folds[idx] != k, folds[idx] == k
            w, b = fit_logistic(z[idx][train], y[train], l2, sw[train])
            oof[held] = z[idx][held] @ w + b
        w, b = fit_logistic(z[idx], y, l2, sw)
        prior.weights[head] = np.append(w, b)
        prior.hessians[head] = _hessian(z[idx], w, b, sw, l2)
        a, c = platt(oof, y)
        prob = 1 / (1 + np.exp(-(a * oof + c)))
        weights.append(w)
        biases.append(b)
        platts.append((a, c))
        if head in SENTIMENT_HEADS:
            oof_sent[head] = prob
            thresholds.append(0.5)  # chosen jointly below
        else:
            thresholds.append(best_threshold(y, prob, 0.5 if head in PRECISE else 1.0))
        report[head] = {"rows": len(y), "positives": int(y.sum()), "threshold": thresholds[-1]}
    sent_idx, _ = _head_rows(ts, "negative")
    tn, tp = sentiment_thresholds(
        ts.sentiment[sent_idx], ts.groups[sent_idx], oof_sent["negative"], oof_sent["positive"]
    )
    thresholds[0], thresholds[1] = tn, tp
    report["negative"]["threshold"], report["positive"]["threshold"] = tn, tp
    model = MeaningModel(
        version=version,
        heads=list(HEADS),
        mean=std.mean,
        scale=std.scale,
        weights=np.array(weights),
        bias=np.array(biases),
        platt=np.array(platts),
        thresholds=np.array(thresholds),
    )
    return model, prior, report


def refit(
    model: MeaningModel,
    prior: Prior,
    x: np.ndarray,
    targets: Mapping[str, np.ndarray],
    version: str,
    *,
    weight: float = 20.0,
) -> MeaningModel:
    """The model refitted on the shipped data (its ``prior``) plus new examples.

    ``targets`` holds, per head, 1/0/-1 for each row of ``x``; a head with no used row
    keeps its weights. Standardization, calibration and thresholds are the model's own.
    Each new example counts ``weight`` times.
    """
    z = (x.astype(np.float64) - model.mean) / model.scale
    weights = model.weights.astype(np.float64).copy()
    bias = model.bias.copy()
    d = z.shape[1]
    zb = np.hstack([z, np.ones((len(z), 1))])
    for head, i in model.heads.items():
        t = np.asarray(targets.get(head, np.full(len(x), -1)))
        used = t >= 0
        if not used.any() or head not in prior.weights:
            continue
        w0, h0 = prior.weights[head], prior.hessians[head]
        w = w0.copy()
        zu, y = zb[used], t[used].astype(np.float64)
        for _ in range(50):
            p = 1 / (1 + np.exp(-np.clip(zu @ w, -35, 35)))
            grad = weight * zu.T @ (p - y) + h0 @ (w - w0)
            hess = weight * (zu * (p * (1 - p))[:, None]).T @ zu + h0
            step = np.linalg.solve(hess, grad)
            w -= step
            if float(np.max(np.abs(step))) < 1e-9:
                break
        weights[i], bias[i] = w[:d], w[d]
    return model.replace(version, weights=weights, bias=bias)


@dataclass(frozen=True)
class Score:
    """How one model did on one set: sentiment macro-F1 and accuracy, per-head accuracy."""

    n: int
    macro_f1: float
    accuracy: float


@dataclass(frozen=True)
class Comparison:
    """Active against candidate, on the shipped test split and on held-out corrections."""

    active: dict[str, Score]
    candidate: dict[str, Score]
    tolerance: float

    @property
    def adopt(self) -> bool:
        """True when the candidate is not worse anywhere (beyond ``tolerance`` on the test
        split, where a refit on a few corrections may wobble) and not worse on the
        corrections."""
        for name, before in self.active.items():
            after = self.candidate[name]
            slack = self.tolerance if name == "test split" else 0.0
            if after.macro_f1 < before.macro_f1 - slack or after.accuracy < before.accuracy - slack:
                return False
        return True

    def table(self) -> str:
        lines = [
            f"{'set':18s} {'n':>6s} {'macro-F1 active':>16s} {'candidate':>10s} "
            f"{'accuracy active':>16s} {'candidate':>10s}"
        ]
        for name, before in self.active.items():
            after = self.candidate[name]
            lines.append(
                f"{name:18s} {before.n:6d} {before.macro_f1:16.3f} {after.macro_f1:10.3f} "
                f"{before.accuracy:16.3f} {after.accuracy:10.3f}"
            )
        return "\n".join(lines)


def score(model: MeaningModel, x: np.ndarray, gold: np.ndarray) -> Score:
    """Sentiment macro-F1 and accuracy of ``model`` on rows with a gold label."""
    keep = gold != ""
    if not keep.any():
        return Score(0, 0.0, 0.0)
    p = model.probabilities(x[keep])
    pred = labels_for(
        p[:, model.heads["negative"]],
        p[:, model.heads["positive"]],
        float(model.thresholds[model.heads["negative"]]),
        float(model.thresholds[model.heads["positive"]]),
    )
    g = gold[keep]
    return Score(int(keep.sum()), macro_f1(list(g), list(pred)), float((pred == g).mean()))


def compare(
    active: MeaningModel,
    candidate: MeaningModel,
    sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    tolerance: float = 0.005,
) -> Comparison:
    """Score both models on each named set of ``(x, gold sentiment labels)``."""
    return Comparison(
        {name: score(active, x, g) for name, (x, g) in sets.items()},
        {name: score(candidate, x, g) for name, (x, g) in sets.items()},
        tolerance,
    )
