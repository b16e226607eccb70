"""The meaning model: what a mention says (sentiment) and what it is about (intent tags).

Every mention is read once into one feature vector:

* its embedding (``embedding.py``: WordLlama's pretrained static token embeddings, 256
  dimensions, mean-pooled), which carries meaning beyond the words VADER knows ("cancelling
  my subscription, switching to X", "charged twice", "losing pages");
* VADER's compound, negative and positive proportions over the customer-experience lexicon
  (``sentiment.py``), the intensity signal, including negation and "but" rules;
* the log-odds of the two word-level flag heads (``flags.py``), which know the domain words.

On that vector sit independent logistic **heads**, each ``p = sigmoid(a * (w·z + b) + c)``
where ``z`` is the standardized vector and ``(a, c)`` a Platt calibration fitted on
out-of-fold predictions, so ``p`` is a calibrated probability:

* ``negative`` and ``positive`` decide the sentiment label: one raised gives that label,
  neither gives neutral, both raised and both likely (``p >= 0.5``) give ``mixed``;
* one head per ``Intent`` (bug, feature request, question, praise, billing, churn risk,
  spam), each raised at its own threshold; a mention may carry several tags.

Thresholds are chosen on out-of-fold predictions by ``benchmarks/fit_meaning.py``, which
writes the weights to ``data/meaning.npz`` inside the package (a numpy archive, not code).
``earshot train`` refits the heads with the same ``fit_heads`` on the shipped training
features plus the workspace's corrections (``training.py``).

    >>> model = MeaningModel.default()
    >>> sorted(model.heads)[:3]
    ['billing', 'bug', 'churn_risk']
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .models import Intent, Label

__all__ = [
    "INTENT_HEADS",
    "SENTIMENT_HEADS",
    "MeaningModel",
    "Reading",
    "fit_logistic",
    "labels_for",
]

SENTIMENT_HEADS = ("negative", "positive")
INTENT_HEADS = tuple(intent.value for intent in Intent)
#: Both sentiment heads at least this likely: the text is ``mixed``.
MIXED_AT = 0.5

_DATA = "meaning.npz"


@dataclass(frozen=True)
class Reading:
    """What the model read in one text."""

    label: Label
    confidence: float
    intents: tuple[str, ...]
    probabilities: Mapping[str, float] = field(default_factory=dict)


def labels_for(p_neg: np.ndarray, p_pos: np.ndarray, t_neg: float, t_pos: float) -> np.ndarray:
    """``MeaningModel.label_for``'s rule over arrays of the two heads' probabilities (the
    fit chooses thresholds with it); the label names as strings."""
    neg, pos = p_neg >= t_neg, p_pos >= t_pos
    both = neg & pos
    mixed = both & (p_neg >= MIXED_AT) & (p_pos >= MIXED_AT)
    pick_neg = neg & (~both | (p_neg / t_neg >= p_pos / t_pos))
    pick_pos = pos & ~pick_neg
    return np.where(
        mixed,
        "mixed",
        np.where(pick_neg, "negative", np.where(pick_pos, "positive", "neutral")),
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    l2: float,
    sample_weight: np.ndarray | None = None,
    *,
    prior: tuple[np.ndarray, float] | None = None,
    max_iter: int = 50,
    tol: float = 1e-8,
) -> tuple[np.ndarray, float]:
    """L2-penalized logistic regression, solved exactly by Newton's method (deterministic).

    Minimizes ``sum(sw * logloss) + l2/2 * |w - w0|^2`` where ``w0`` is ``prior``'s weights
    (zero without one); the bias is not penalized. ``x`` should be standardized.
    Raises ``ValueError`` when ``y`` has one class only, ``l2 <= 0`` or it does not converge.
    """
    if l2 <= 0:
        raise ValueError("l2 must be positive")
    y = np.asarray(y, dtype=np.float64)
    if y.min() == y.max():
        raise ValueError("a head needs both classes in its training rows")
    n, d = x.shape
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    xb = np.hstack([x.astype(np.float64), np.ones((n, 1))])
    w0 = np.zeros(d + 1)
    if prior is not None:
        w0[:d], w0[d] = prior[0], prior[1]
    w = w0.copy()
    reg = np.full(d + 1, l2)
    reg[d] = 1e-6
    for _ in range(max_iter):
        p = _sigmoid(xb @ w)
        grad = xb.T @ (sw * (p - y)) + reg * (w - w0)
        hess = (xb * (sw * p * (1 - p))[:, None]).T @ xb + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.max(np.abs(step))) < tol:
            return w[:d], float(w[d])
    raise ValueError("logistic fit did not converge")


def platt(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling ``(a, c)`` for ``sigmoid(a * logit + c)``, fitted on held-out logits."""
    a, c = fit_logistic(logits.reshape(-1, 1), y, l2=1e-3)
    return float(a[0]), c


class MeaningModel:
    """Stacked heads over one standardized feature vector. Immutable once built."""

    def __init__(
        self,
        *,
        version: str,
        heads: Sequence[str],
        mean: np.ndarray,
        scale: np.ndarray,
        weights: np.ndarray,
        bias: np.ndarray,
        platt: np.ndarray,
        thresholds: np.ndarray,
    ) -> None:
        h, d = weights.shape
        if len(heads) != h or bias.shape != (h,) or platt.shape != (h, 2):
            raise ValueError("heads, weights, bias and platt disagree in shape")
        if thresholds.shape != (h,) or mean.shape != (d,) or scale.shape != (d,):
            raise ValueError("thresholds, mean and scale disagree in shape")
        missing = [name for name in (*SENTIMENT_HEADS, *INTENT_HEADS) if name not in heads]
        if missing:
            raise ValueError(f"model lacks heads: {', '.join(missing)}")
        if not np.all((thresholds > 0) & (thresholds < 1)):
            raise ValueError("every threshold must be between 0 and 1")
        self.version = version
        self.heads = {name: i for i, name in enumerate(heads)}
        self.mean = mean.astype(np.float32)
        self.scale = scale.astype(np.float32)
        # folded: logit = weights·((x - mean) / scale) + bias = folded·x + offset
        self._w = (weights / scale).astype(np.float32)
        self._b = (bias - (weights / scale) @ mean).astype(np.float64)
        self.weights = weights.astype(np.float32)
        self.bias = bias.astype(np.float64)
        self.platt = platt.astype(np.float64)
        self.thresholds = thresholds.astype(np.float64)
        self.dim = d

    # --- inference ------------------------------------------------------------------

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw head logits of one vector ``(d,)`` or a batch ``(n, d)``."""
        return x @ self._w.T + self._b

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Calibrated head probabilities of one vector or a batch."""
        return _sigmoid(self.platt[:, 0] * self.logits(x) + self.platt[:, 1])

    def read(self, x: np.ndarray) -> Reading:
        """Label, confidence and intent tags of one feature vector."""
        p = self.probabilities(x)
        neg = float(p[self.heads["negative"]])
        pos = float(p[self.heads["positive"]])
        label, confidence = self.label_for(neg, pos)
        raised = [
            (float(p[i]), name)
            for name, i in self.heads.items()
            if name in INTENT_HEADS and p[i] >= self.thresholds[i]
        ]
        intents = tuple(name for _, name in sorted(raised, reverse=True))
        probs = {name: round(float(p[i]), 4) for name, i in self.heads.items()}
        return Reading(label, round(confidence, 4), intents, probs)

    def label_for(self, negative: float, positive: float) -> tuple[Label, float]:
        """The sentiment label and its probability from the two sentiment heads."""
        t_neg = self.thresholds[self.heads["negative"]]
        t_pos = self.thresholds[self.heads["positive"]]
        neg, pos = negative >= t_neg, positive >= t_pos
        if neg and pos:
            if negative >= MIXED_AT and positive >= MIXED_AT:
                return Label.MIXED, min(negative, positive)
            neg, pos = (True, False) if negative / t_neg >= positive / t_pos else (False, True)
        if neg:
            return Label.NEGATIVE, negative
        if pos:
            return Label.POSITIVE, positive
        return Label.NEUTRAL, (1 - negative) * (1 - positive)

    def replace(
        self, version: str, *, weights: np.ndarray | None = None, bias: np.ndarray | None = None
    ) -> MeaningModel:
        """This model under another version, with new head weights and biases if given
        (standardization, calibration and thresholds are kept)."""
        return MeaningModel(
            version=version,
            heads=list(self.heads),
            mean=self.mean,
            scale=self.scale,
            weights=self.weights if weights is None else weights,
            bias=self.bias if bias is None else bias,
            platt=self.platt,
            thresholds=self.thresholds,
        )

    # --- storage --------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The model as a numpy ``.npz`` archive (what ``from_bytes`` and ``load`` read)."""
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            version=np.array(self.version),
            heads=np.array(list(self.heads)),
            mean=self.mean,
            scale=self.scale,
            weights=self.weights,
            bias=self.bias,
            platt=self.platt,
            thresholds=self.thresholds,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> MeaningModel:
        """Read a model written by ``to_bytes`` (``ValueError`` if it is not one)."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                return cls(
                    version=str(npz["version"]),
                    heads=[str(h) for h in npz["heads"]],
                    mean=npz["mean"],
                    scale=npz["scale"],
                    weights=npz["weights"],
                    bias=npz["bias"],
                    platt=npz["platt"],
                    thresholds=npz["thresholds"],
                )
        except (KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"not a meaning model: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> MeaningModel:
        """Read a model file."""
        return cls.from_bytes(Path(path).read_bytes())

    @classmethod
    def default(cls) -> MeaningModel:
        """The model shipped in the package (``earshot/listener/data/meaning.npz``)."""
        global _default
        if _default is None:
            with _lock:
                if _default is None:
                    data = resources.files(__package__).joinpath("data", _DATA).read_bytes()
                    _default = cls.from_bytes(data)
        return _default


_lock = threading.Lock()
_default: MeaningModel | None = None
