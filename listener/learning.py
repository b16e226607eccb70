"""Learning from the team: refit the meaning model on the workspace's corrections.

``earshot train`` (and the opt-in weekly job) call ``train``:

1. every corrected mention's latest correction (``corrections.latest_corrections``) is one
   labelled example: the mention's text (title and body, as the classifier read it) and the
   label the person chose, as the text's sentiment (``text_label``: a ``mixed`` correction
   of a rated review means the text said the opposite of the stars);
2. the examples are split by a hash of the mention id and the seed into a part to learn
   from and a held-out part (``holdout``), the same split on every run with that seed;
3. the shipped model is refitted on its training data plus the learning part
   (``training.refit``: the shipped prior's Laplace approximation plus the examples, each
   counting ``weight`` times), as version ``<shipped>+<n>``;
4. the active model and the candidate are compared on the shipped test split and on the
   held-out corrections (``training.compare``); the candidate is adopted only when it is
   not worse on either (within a small tolerance on the test split).

The candidate is stored in ``model_versions`` whatever the verdict (unless ``dry_run``), and
activated in the same transaction when adopted; the running service picks it up within a
minute.

"Not relevant" clicks are not used here: they say a mention does not belong to its query,
not what it says, and the per-query relevance filter (``relevance.py``) learns from them.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any, Literal

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from .corrections import latest_corrections
from .meaning import INTENT_HEADS, MeaningModel
from .model_versions import activate, active_model, save_candidate, trained_count
from .sentiment import ExperienceClassifier
from .store import Store
from .training import Comparison, Prior, compare, refit

__all__ = [
    "Example",
    "TrainOutcome",
    "held_out",
    "text_label",
    "train",
]

#: How much worse the candidate may be on the shipped test split (macro-F1 and accuracy):
#: a refit on a few dozen corrections moves it a little either way.
TOLERANCE = 0.005
#: Each correction counts this many times against the shipped training set.
WEIGHT = 10.0

Outcome = Literal["nothing", "adopted", "refused", "conflict"]


@dataclass(frozen=True)
class Example:
    """One corrected mention as a labelled text."""

    mention_id: int
    text: str
    label: str  # the text's sentiment: negative / neutral / positive / mixed


@dataclass
class TrainOutcome:
    """What ``train`` did. ``outcome``: ``nothing`` (too few corrections to learn from),
    ``adopted``, ``refused`` (the candidate was worse) or ``conflict`` (another run stored
    that version first)."""

    outcome: Outcome
    message: str
    corrections: int = 0
    fit: int = 0
    held_out: int = 0
    comparison: Comparison | None = None
    candidate: str | None = None
    active: str | None = None
    saved: bool = False

    def report(self) -> str:
        """The comparison table (when there is one) and the one-line verdict."""
        lines = []
        if self.comparison is not None:
            lines.append(
                f"active {self.active} against candidate {self.candidate}: "
                f"{self.corrections} corrections, {self.fit} learnt from, "
                f"{self.held_out} held out"
            )
            lines.append(self.comparison.table())
        lines.append(self.message)
        return "\n".join(lines)


def text_label(label: str, rating: int | None) -> str:
    """The text's own sentiment for a corrected label.

    With a star rating, ``mixed`` means the text said the opposite of the stars (see
    ``ExperienceClassifier``): 4-5 stars, the text was negative; 1-2 stars, positive.
    """
    if label == "mixed" and rating is not None and 1 <= rating <= 5 and rating != 3:
        return "negative" if rating >= 4 else "positive"
    return label


def held_out(mention_id: int, seed: int, holdout: float) -> bool:
    """Whether a mention's correction is held out for the comparison (fixed per seed)."""
    digest = hashlib.sha256(f"train:{seed}:{mention_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < holdout


def load_examples(session: Session) -> list[Example]:
    """The latest correction of each corrected mention, as labelled texts."""
    examples = []
    for correction, mention in latest_corrections(session):
        if correction.new_label not in ("negative", "neutral", "positive", "mixed"):
            continue
        label = text_label(correction.new_label, mention.rating)
        examples.append(Example(int(correction.mention_id), mention.body, label))
    return examples


def targets_of(labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Per head, 1/0/-1 for each label: sentiment heads only (intents say nothing)."""
    arr = np.array(labels)
    targets = {
        "negative": np.isin(arr, ["negative", "mixed"]).astype(np.int8),
        "positive": np.isin(arr, ["positive", "mixed"]).astype(np.int8),
    }
    for head in INTENT_HEADS:
        targets[head] = np.full(len(arr), -1, dtype=np.int8)
    return targets


def _data(name: str) -> bytes:
    return resources.files(__package__).joinpath("data", name).read_bytes()


@functools.cache
def shipped_prior() -> Prior:
    """The shipped training data's Laplace prior (``data/meaning_prior.npz``)."""
    return Prior.from_bytes(_data("meaning_prior.npz"))


@functools.cache
def shipped_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The shipped test split's feature rows and gold sentiment (``data/meaning_eval.npz``)."""
    from .training import TrainingSet

    ts = TrainingSet.from_bytes(_data("meaning_eval.npz"))
    return ts.x, ts.sentiment.astype(str)


def metrics_of(comparison: Comparison, **extra: Any) -> dict[str, Any]:
    """The comparison as JSON (what ``model_versions.metrics`` keeps)."""
    return {
        "adopt": comparison.adopt,
        "tolerance": comparison.tolerance,
        "sets": {
            name: {
                "active": asdict(comparison.active[name]),
                "candidate": asdict(comparison.candidate[name]),
            }
            for name in comparison.active
        },
        **extra,
    }


def train(
    store: Store,
    *,
    classifier: ExperienceClassifier | None = None,
    holdout: float = 0.3,
    seed: int = 0,
    min_corrections: int = 10,
    dry_run: bool = False,
    weight: float = WEIGHT,
    tolerance: float = TOLERANCE,
    note: str = "",
) -> TrainOutcome:
    """Refit on the corrections, compare with the active model, adopt when not worse.

    ``classifier`` turns texts into features (it needs its flag model, as the shipped
    model was fitted with one); ``None`` builds the default ``ExperienceClassifier``.
    """
    if not 0 < holdout < 1:
        raise ValueError("holdout must be between 0 and 1")
    with Session(store.engine) as session:
        examples = load_examples(session)
        active = active_model(session)
        count = trained_count(session)
    n = len(examples)
    if n < min_corrections:
        return TrainOutcome(
            "nothing",
            f"nothing to train: {n} corrected mentions, at least {min_corrections} needed",
            corrections=n,
            active=active.version,
        )
    held = np.array([held_out(e.mention_id, seed, holdout) for e in examples])
    if held.all() or not held.any():
        return TrainOutcome(
            "nothing",
            f"nothing to train: the split (--holdout {holdout:g}, --seed {seed}) leaves "
            f"{int((~held).sum())} corrections to learn from and {int(held.sum())} to "
            "check on; both are needed",
            corrections=n,
            active=active.version,
        )
    if classifier is None or classifier.flags is None:
        classifier = ExperienceClassifier(meaning=active, detect_language=False)
    x = classifier.feature_rows([e.text for e in examples])
    labels = np.array([e.label for e in examples])
    base = MeaningModel.default()
    version = f"{base.version}+{count + 1}"
    fit_rows = ~held
    candidate = refit(
        base,
        shipped_prior(),
        x[fit_rows],
        targets_of(list(labels[fit_rows])),
        version,
        weight=weight,
    )
    comparison = compare(
        active,
        candidate,
        {"test split": shipped_test_split(), "corrections": (x[held], labels[held])},
        tolerance=tolerance,
    )
    adopt = comparison.adopt
    result = TrainOutcome(
        "adopted" if adopt else "refused",
        "",
        corrections=n,
        fit=int(fit_rows.sum()),
        held_out=int(held.sum()),
        comparison=comparison,
        candidate=version,
        active=active.version,
    )
    if dry_run:
        would = "would adopt" if adopt else "would refuse"
        result.message = f"{would} {version} against {active.version} (dry run: nothing stored)"
        return result
    metrics = metrics_of(
        comparison,
        against=active.version,
        seed=seed,
        holdout=holdout,
        weight=weight,
        fit=result.fit,
        held_out=result.held_out,
    )
    with Session(store.engine) as session:
        try:
            save_candidate(
                session, candidate, metrics=metrics, corrections_used=n, note=note, commit=False
            )
            if adopt:
                activate(session, version, commit=False)
            session.commit()
        except IntegrityError:
            session.rollback()
            return TrainOutcome(
                "conflict",
                f"not stored: another training run stored {version} at the same time",
                corrections=n,
                active=active.version,
            )
    result.saved = True
    if adopt:
        result.message = f"adopted {version}: not worse than {active.version} on either set"
    else:
        result.message = (
            f"refused {version}: worse than {active.version} (see above); "
            f"{active.version} stays active"
        )
    return result
