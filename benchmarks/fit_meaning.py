"""Fit the meaning model's heads (sentiment, intent tags); write them to ``listener/data/``.

    python benchmarks/fit_meaning.py             # fit, report held-out figures, write
    python benchmarks/fit_meaning.py --no-write  # fit and report only

Deterministic: the same data gives byte-identical files. Reads the labelled sets in
``../shared/data`` (``--data``) and the hand labels in ``benchmarks/labels/``; never copies
their text anywhere. It writes numbers only (``listener/training.py``):

* ``meaning.npz``: the heads (about 13 KB), what earshot classifies with;
* ``meaning_prior.npz``: per head, the weights and the loss's Hessian, so ``earshot train``
  can refit on "the shipped data plus the corrections" without the data;
* ``meaning_eval.npz``: feature vectors and gold labels of up to 600 held-out rows per file,
  on which ``earshot train`` compares a refit with the active model.

* **Held-out split**: every row is in the test part when ``sha256("7:<file>:<key>")`` falls in
  the lowest 30% (``evaluation.in_test_split``; the key is the id for the VADER ground-truth
  files, whose split the flag model was fitted with, and the normalized text's sha1 for the
  CX files). Test rows are never fitted on; ``earshot eval --split test`` reports on them.
* **Heads**: L2 logistic regressions (``meaning.fit_logistic``, Newton's method) over the
  standardized features, one per sentiment side and one per intent. Which rows teach which
  head is in ``HEAD_ROWS`` below (a row that says nothing about a head is left out of it).
* **Calibration and thresholds** on out-of-fold predictions (4 folds of the training part):
  a Platt scaling per head, then the sentiment thresholds that maximize the mean macro-F1
  over the sentiment sets, and per intent head the threshold with the best F1 (F0.5 for
  ``praise`` and ``spam``, where a false alarm costs most, so precision counts double).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import label_billing_churn
import numpy as np

from earshot.listener.evaluation import Example, in_test_split, load_examples, text_key
from earshot.listener.meaning import INTENT_HEADS, MeaningModel, labels_for
from earshot.listener.models import Label
from earshot.listener.sentiment import ExperienceClassifier
from earshot.listener.training import TrainingSet, fit_model, macro_f1

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "listener" / "data" / "meaning.npz"
LABELS = ROOT / "benchmarks" / "labels" / "billing_churn.csv"
VERSION = "meaning-1"
#: Test rows per file kept in ``meaning_eval.npz`` for ``earshot train``'s comparison.
EVAL_PER_FILE = 600


@dataclass
class Row:
    """One labelled text and what it says about each head (1, 0, or absent: not used)."""

    file: str
    key: str
    text: str
    sentiment: str | None
    rating: int | None = None
    heads: dict[str, int] = field(default_factory=dict)
    test: bool = False


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _vader_rows(path: Path) -> list[Row]:
    """A VADER ground-truth file as ``earshot eval`` reads it, split by id (as the flag model
    was); the key (for the hand labels) is the text's."""
    rows = []
    for ex in load_examples(path):
        row = Row(f"sentiment/{path.name}", text_key(ex.text), ex.text, str(ex.label))
        row.test = in_test_split(ex)
        rows.append(row)
    return rows


# Which rows teach which intent head: {file: function(csv row) -> {head: 0/1}}.
def _clap_intent(r: dict[str, str]) -> dict[str, int]:
    label, stars = r["label"], int(r["rating"] or 3)
    out = {
        "bug": int(label in ("bug", "performance", "energy")),
        "feature_request": int(label == "feature"),
        "question": 0,
        "spam": 0,
    }
    if label == "usability":
        del out["feature_request"]  # partly requests, partly complaints: says nothing
    if label == "other" and stars >= 4:
        out["praise"] = 1
    elif label != "other" or stars <= 2:
        out["praise"] = 0
    return out


def _nlbse(r: dict[str, str]) -> dict[str, int]:
    label = r["label"]
    return {
        "bug": int(label == "bug"),
        "feature_request": int(label == "feature"),
        "question": int(label == "question"),
        "praise": 0,
        "spam": 0,
    }


def _not_intent(**extra: int) -> Callable[[dict[str, str]], dict[str, int]]:
    def heads(r: dict[str, str]) -> dict[str, int]:
        out = {"bug": 0, "feature_request": 0, "spam": 0, "praise": 0}
        out.update(extra)
        return out

    return heads


def _uci(r: dict[str, str]) -> dict[str, int]:
    return {"feature_request": 0, "spam": 0, "question": 0, "praise": int(r["label"] == "positive")}


def _spam(r: dict[str, str]) -> dict[str, int]:
    return {"spam": int(r["label"] == "spam")}


def load_rows(data: Path) -> list[Row]:
    """Every labelled row of the shared sets, with its split and head labels."""
    cx = data / "cx"
    rows: list[Row] = []
    sentiment_files = {
        "tweets_sentiment_semeval.csv": _not_intent(question=0),
        "app_reviews_sentiment_clap.csv": None,  # intents come from the intent file
        "product_reviews_sentiment_uci.csv": _uci,
        "github_pr_sentiment_opus.csv": _not_intent(),
    }
    clap_intents = {text_key(r["text"]): r for r in _read_csv(cx / "app_reviews_intent_clap.csv")}
    for name, heads in sentiment_files.items():
        for r in _read_csv(cx / name):
            key = text_key(r["text"])
            rating = int(r["rating"]) if r.get("rating") else None
            row = Row(f"cx/{name}", key, r["text"], r["label"], rating)
            if heads is not None:
                row.heads = heads(r)
            elif key in clap_intents:
                row.heads = _clap_intent(clap_intents[key])
            rows.append(row)
    for name, heads in (
        ("github_issues_intent_nlbse24.csv", _nlbse),
        ("spam_sms_uci.csv", _spam),
        ("spam_youtube_comments_uci.csv", _spam),
    ):
        for r in _read_csv(cx / name):
            rows.append(Row(f"cx/{name}", text_key(r["text"]), r["text"], None, None, heads(r)))
    for row in rows:
        # the split of ``earshot eval`` (by file name and text key); the CLAP sentiment and
        # intent files hold the same texts: one split for both
        split_file = Path(row.file.replace("intent", "sentiment")).name
        row.test = in_test_split(Example(row.key, "", Label.NEUTRAL, source=split_file))
    for name in ("amazonReviewSnippets_GroundTruth.txt", "tweets_GroundTruth.txt"):
        rows.extend(_vader_rows(data / "sentiment" / name))
    _apply_billing_churn(rows)
    rows.extend(_fixture_rows())
    return rows


def _fixture_rows() -> list[Row]:
    """Texts of the captured API payloads that the billing/churn labelling read.

    They teach only the billing and churn-risk heads (they have no other labels).
    """
    labels = {(r["file"], r["key"]): r for r in _read_csv(LABELS)} if LABELS.exists() else {}
    rows, seen = [], set()
    for file, text in label_billing_churn.fixture_rows():
        key = text_key(text)
        label = labels.get((file, key))
        if label is None or (file, key) in seen:
            continue
        seen.add((file, key))
        heads = {"billing": int(label["billing"]), "churn_risk": int(label["churn_risk"])}
        row = Row(file, key, text, None, heads=heads)
        row.test = in_test_split(Example(key, "", Label.NEUTRAL, source=file))
        rows.append(row)
    return rows


def _apply_billing_churn(rows: list[Row]) -> None:
    """Billing and churn-risk labels from the hand-labelled file (``benchmarks/labels``).

    Every row the labelling read is labelled there. Of the rows it did not read (no billing
    or churn word at all, so almost surely negative), a fixed fifth teach both heads as
    negatives, so the rare positives are not drowned.
    """
    labels: dict[tuple[str, str], tuple[int, int]] = {}
    if LABELS.exists():
        for r in _read_csv(LABELS):
            labels[(r["file"], r["key"])] = (int(r["billing"]), int(r["churn_risk"]))
    for row in rows:
        found = labels.get((row.file.replace("intent", "sentiment"), row.key))
        if found is None:
            if hashlib.sha256(f"neg:{row.file}:{row.key}".encode()).digest()[0] >= 51:
                continue
            found = (0, 0)
        row.heads["billing"], row.heads["churn_risk"] = found


def training_set(rows: list[Row], x: np.ndarray) -> TrainingSet:
    """The rows as numbers: features, per-head targets (-1: not used), file, key."""
    targets = {
        head: np.array([row.heads.get(head, -1) for row in rows], dtype=np.int8)
        for head in INTENT_HEADS
    }
    return TrainingSet(
        x,
        targets,
        np.array([row.sentiment or "" for row in rows]),
        np.array([row.file for row in rows]),
        np.array([row.key for row in rows]),
    )


def eval_sample(ts: TrainingSet, per_group: int = EVAL_PER_FILE) -> TrainingSet:
    """At most ``per_group`` sentiment-labelled rows per file of the test part (the rows
    ``earshot train`` compares models on), chosen by a hash of their key."""
    keep = np.zeros(len(ts.x), dtype=bool)
    for group in sorted(set(ts.groups)):
        idx = [i for i in np.flatnonzero(ts.groups == group) if ts.sentiment[i]]
        idx.sort(key=lambda i: hashlib.sha256(f"eval:{ts.keys[i]}".encode()).hexdigest())
        keep[idx[:per_group]] = True
    return ts.subset(keep)


def heldout_report(ts: TrainingSet, model: MeaningModel) -> str:
    """Per-file held-out figures: sentiment macro-F1 and each intent head's P/R."""
    out = io.StringIO()
    probs = model.probabilities(ts.x)
    t = model.thresholds
    labels = labels_for(
        probs[:, model.heads["negative"]],
        probs[:, model.heads["positive"]],
        float(t[model.heads["negative"]]),
        float(t[model.heads["positive"]]),
    )
    print(f"{'held-out file':50s} {'n':>5s} {'macroF1':>8s}", file=out)
    for group in sorted(set(ts.groups)):
        m = (ts.groups == group) & (ts.sentiment != "")
        if m.any():
            f1 = macro_f1(list(ts.sentiment[m]), list(labels[m]))
            print(f"{group:50s} {int(m.sum()):5d} {f1:8.3f}", file=out)
    print(f"\n{'intent head':18s} {'n':>6s} {'pos':>5s} {'prec':>6s} {'recall':>6s}", file=out)
    for head in INTENT_HEADS:
        used = ts.targets[head] >= 0
        y = ts.targets[head][used] == 1
        hit = probs[used, model.heads[head]] >= t[model.heads[head]]
        tp = int((hit & y).sum())
        prec = tp / hit.sum() if hit.sum() else 0.0
        rec = tp / y.sum() if y.sum() else 0.0
        print(f"{head:18s} {int(used.sum()):6d} {int(y.sum()):5d} {prec:6.3f} {rec:6.3f}", file=out)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--partial", action="store_true", help="leave heads without data untrained")
    args = parser.parse_args(argv)
    if not (args.data / "cx").is_dir():
        print(f"fit_meaning: no labelled data at {args.data} (--data)", file=sys.stderr)
        return 2
    started = time.process_time()
    rows = load_rows(args.data)
    clf = ExperienceClassifier(non_english="score", detect_language=False, meaning=None)
    x = clf.feature_rows([row.text for row in rows])
    print(f"{len(rows)} rows featurized in {time.process_time() - started:.1f} s CPU")
    ts = training_set(rows, x)
    test = np.array([row.test for row in rows])
    model, prior, report = fit_model(ts.subset(~test), VERSION, partial=args.partial)
    for head, info in report.items():
        print(
            f"  {head:16s} rows={info['rows']:6d} positives={info['positives']:6d} "
            f"threshold={info['threshold']:.2f}"
        )
    print(heldout_report(ts.subset(test), model))
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for path, data in (
            (args.out, model.to_bytes()),
            (args.out.with_name("meaning_prior.npz"), prior.to_bytes()),
            (args.out.with_name("meaning_eval.npz"), eval_sample(ts.subset(test)).to_bytes()),
        ):
            path.write_bytes(data)
            print(f"wrote {path} ({len(data):,} bytes)")
    print(f"fit took {time.process_time() - started:.1f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
