"""Measure a sentiment classifier on labelled data, side by side with plain VADER.

The input is a CSV or TSV file of texts with a gold label or a gold score:

* with a header row: a ``text`` column and a ``label`` column (``negative``, ``neutral``,
  ``positive``, ``mixed``) or a ``score`` column (``rating`` and ``mean`` are accepted as
  aliases); an optional ``stars`` column (1-5) is passed to the classifier as the star rating;
  an optional ``id`` column is used for the train/test split.
* without a header: the VADER ground-truth layout ``id<TAB>mean rating<TAB>text`` (the files
  in ``tests/fixtures/sentiment``), or two columns ``score,text`` / ``label,text``.

Gold scores are turned into labels with ``gold_negative_at`` / ``gold_positive_at``. The
defaults fit the human mean rating of the VADER ground truth (-4 … +4): a mean of -1.0 or
lower ("slightly negative" or worse, averaged over 20+ raters) is ``negative``, +1.0 or
higher is ``positive``, anything in between is ``neutral``. See ``docs/sentiment.md``.

Usage::

    >>> from earshot.listener.evaluation import (
    ...     evaluate, format_report, load_examples, split_examples)
    >>> examples = load_examples("tests/fixtures/sentiment/tweets_GroundTruth.txt")
    >>> test = split_examples(examples, part="test")
    >>> print(format_report(evaluate(test)))
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeVar

from .models import Intent, Label
from .sentiment import Classifier, ExperienceClassifier, VaderClassifier

#: The label mapping for gold scores on the -4 … +4 human scale.
GOLD_NEGATIVE_AT = -1.0
GOLD_POSITIVE_AT = 1.0

#: The split used for fitting and for the reported figures.
SPLIT_SEED = 7
TEST_FRACTION = 0.3

Part = Literal["train", "test", "all"]

_TEXT_COLUMNS = ("text", "body", "content", "sentence")
_SCORE_COLUMNS = ("score", "rating", "mean", "mean_rating", "sentiment_score")
_LABEL_COLUMNS = ("label", "sentiment", "gold", "class")
_STAR_COLUMNS = ("stars", "star_rating", "star")
INTENT_VALUES = frozenset(intent.value for intent in Intent)


@dataclass(frozen=True)
class Example:
    """One labelled text."""

    id: str
    text: str
    label: Label
    score: float | None = None
    stars: int | None = None
    source: str = ""


@dataclass(frozen=True)
class IntentExample:
    """One text labelled by intent: its class in the source data (``gold``) and what that
    class means as earshot's tags (``tags``)."""

    id: str
    text: str
    gold: str
    tags: frozenset[str]
    stars: int | None = None
    source: str = ""


E = TypeVar("E", Example, IntentExample)

#: What the classes of the labelled intent sets mean as earshot's intent tags. A class
#: maps to the tags it asserts; the empty set asserts none of the file's tags.
GOLD_INTENTS: dict[str, frozenset[str]] = {
    **{intent.value: frozenset({intent.value}) for intent in Intent},
    "performance": frozenset({Intent.BUG.value}),
    "energy": frozenset({Intent.BUG.value}),
    "feature": frozenset({Intent.FEATURE.value}),
    "churn": frozenset({Intent.CHURN.value}),
    "ham": frozenset(),
    "other": frozenset(),
    "security": frozenset(),
    "usability": frozenset(),
    "none": frozenset(),
}


@dataclass(frozen=True)
class TagMetrics:
    """One intent tag on one set: gold positives, precision, recall."""

    tag: str
    positives: int
    precision: float
    recall: float

    @property
    def f1(self) -> float:
        return _f1(self.precision, self.recall)


@dataclass(frozen=True)
class IntentReport:
    """Per-tag precision/recall and the confusion of gold classes against the top tag."""

    title: str
    n: int
    tags: tuple[TagMetrics, ...]
    confusion: dict[str, dict[str, int]]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Metrics:
    """How one classifier did on one set of examples."""

    name: str
    n: int
    accuracy: float
    macro_f1: float
    negative_precision: float
    negative_recall: float
    positive_precision: float
    positive_recall: float
    pearson_r: float | None
    ms_per_text: float
    #: The best negative recall at any threshold where negative precision is >= 80%,
    #: ranking by the classifier's negative probability (VADER: by -compound).
    negative_recall_at_80: float | None = None


@dataclass(frozen=True)
class Report:
    """Metrics for several classifiers on the same examples, plus where they came from."""

    title: str
    n: int
    rows: tuple[Metrics, ...] = field(default_factory=tuple)


_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalized_text(text: str) -> str:
    """The shared data's normalized text: NFKC, lowercase, every run of characters outside
    ``[0-9a-z]`` one space, trimmed."""
    return _NON_ALNUM.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def text_key(text: str) -> str:
    """The sha1 of the normalized text (``normalized_text``), in hex.

    A row without an ``id`` column is split by this key, so the split of a labelled file
    does not depend on the order of its rows (``benchmarks/fit_meaning.py`` uses the same,
    and the hand labels in ``benchmarks/labels`` are keyed by it).
    """
    return hashlib.sha1(normalized_text(text).encode()).hexdigest()


def label_for_score(
    score: float,
    negative_at: float = GOLD_NEGATIVE_AT,
    positive_at: float = GOLD_POSITIVE_AT,
) -> Label:
    """Map a gold score to a label: ``<= negative_at`` negative, ``>= positive_at`` positive."""
    if score <= negative_at:
        return Label.NEGATIVE
    if score >= positive_at:
        return Label.POSITIVE
    return Label.NEUTRAL


def _parse_label(value: str) -> Label:
    value = value.strip().lower()
    aliases = {"neg": "negative", "pos": "positive", "neu": "neutral", "-1": "negative"}
    aliases.update({"0": "neutral", "1": "positive", "+1": "positive"})
    try:
        return Label(aliases.get(value, value))
    except ValueError:
        raise ValueError(f"unknown label {value!r}") from None


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _find(header: Sequence[str], names: Iterable[str]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def parse_examples(
    content: str,
    *,
    source: str = "",
    gold_negative_at: float = GOLD_NEGATIVE_AT,
    gold_positive_at: float = GOLD_POSITIVE_AT,
) -> list[Example]:
    """Parse CSV or TSV ``content`` (see the module docstring for the accepted layouts)."""
    lines = content.splitlines()
    if not lines:
        return []
    delimiter = "\t" if "\t" in lines[0] else ","
    if delimiter == "\t":
        # The VADER files are not quoted and their texts contain quotes: split by hand.
        rows = [line.split("\t") for line in lines if line.strip()]
    else:
        rows = [row for row in csv.reader(io.StringIO(content)) if row]
    header = rows[0]
    text_i = _find(header, _TEXT_COLUMNS)
    examples: list[Example] = []
    score: float | None
    if text_i is not None:
        score_i = _find(header, _SCORE_COLUMNS)
        label_i = _find(header, _LABEL_COLUMNS)
        stars_i = _find(header, _STAR_COLUMNS)
        id_i = _find(header, ("id",))
        if score_i is None and label_i is None:
            raise ValueError("need a 'label' or a 'score' column next to 'text'")
        for n, row in enumerate(rows[1:], start=1):
            last = text_i == len(header) - 1
            text = delimiter.join(row[text_i:]) if last else row[text_i]
            score = float(row[score_i]) if score_i is not None else None
            if label_i is not None and row[label_i].strip():
                label = _parse_label(row[label_i])
            elif score is not None:
                label = label_for_score(score, gold_negative_at, gold_positive_at)
            else:
                raise ValueError(f"row {n}: no label and no score")
            stars_raw = row[stars_i].strip() if stars_i is not None else ""
            stars = int(float(stars_raw)) if stars_raw else None
            ident = row[id_i] if id_i is not None else text_key(text)
            examples.append(Example(ident, text, label, score, stars, source))
        return examples
    for n, row in enumerate(rows, start=1):
        if len(row) >= 3 and _is_number(row[1]):  # id, mean rating, text
            ident, score_s, text = row[0], row[1], delimiter.join(row[2:])
        elif len(row) >= 2:
            ident, score_s, text = str(n), row[0], delimiter.join(row[1:])
        else:
            raise ValueError(f"row {n}: expected a score or label and a text")
        if _is_number(score_s):
            score = float(score_s)
            label = label_for_score(float(score_s), gold_negative_at, gold_positive_at)
        else:
            score, label = None, _parse_label(score_s)
        examples.append(Example(ident.strip(), text, label, score, None, source))
    return examples


def _rows_of(content: str) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(content)) if row]


def is_intent_file(content: str) -> bool:
    """Whether a CSV holds intent labels: a ``label`` column of intent classes (``bug``,
    ``spam``, ``feature`` ...), or 0/1 columns named after intent tags (``billing``)."""
    rows = _rows_of(content)
    if len(rows) < 2 or "\t" in content.splitlines()[0]:
        return False
    header = [h.strip().lower() for h in rows[0]]
    if "text" not in header:
        return False
    if any(h in INTENT_VALUES for h in header):
        return True
    label_i = _find(header, _LABEL_COLUMNS)
    if label_i is None:
        return False
    values = {row[label_i].strip().lower() for row in rows[1:] if len(row) > label_i}
    sentiment = {lab.value for lab in Label}
    return bool(values) and not values & sentiment and values <= set(GOLD_INTENTS)


def parse_intent_examples(content: str, *, source: str = "") -> list[IntentExample]:
    """Parse an intent CSV (see ``is_intent_file``). A row without an ``id`` column is
    identified by its text's key, as in ``parse_examples``."""
    rows = _rows_of(content)
    header = [h.strip().lower() for h in rows[0]]
    text_i = header.index("text")
    tag_columns = [(i, h) for i, h in enumerate(header) if h in INTENT_VALUES]
    label_i = None if tag_columns else _find(header, _LABEL_COLUMNS)
    stars_i = _find(header, _STAR_COLUMNS)
    id_i = _find(header, ("id",))
    examples = []
    for n, row in enumerate(rows[1:], start=1):
        text = row[text_i]
        if label_i is not None:
            gold = row[label_i].strip().lower()
            if gold not in GOLD_INTENTS:
                raise ValueError(f"row {n}: unknown intent class {gold!r}")
            tags = GOLD_INTENTS[gold]
        else:
            tags = frozenset(h for i, h in tag_columns if row[i].strip() in ("1", "true", "yes"))
            gold = "+".join(sorted(tags)) or "none"
        stars_raw = row[stars_i].strip() if stars_i is not None and len(row) > stars_i else ""
        stars = int(float(stars_raw)) if stars_raw else None
        ident = row[id_i] if id_i is not None else text_key(text)
        examples.append(IntentExample(ident, text, gold, tags, stars, source))
    return examples


def file_tags(examples: Sequence[IntentExample]) -> tuple[str, ...]:
    """The tags a file speaks about: those its classes (or its 0/1 columns) can assert."""
    tags = set().union(*(e.tags for e in examples)) if examples else set()
    return tuple(intent.value for intent in Intent if intent.value in tags)


def evaluate_intents(
    examples: Sequence[IntentExample],
    classifier: Classifier | None = None,
    title: str = "",
    tags: Sequence[str] | None = None,
) -> IntentReport:
    """Each tag's precision and recall, and a confusion matrix of the gold classes against
    the strongest predicted tag among ``tags`` (default: the tags the file speaks about)."""
    if classifier is None:
        classifier = ExperienceClassifier(non_english="score")
    tags = tuple(tags) if tags is not None else file_tags(examples)
    found = [
        [t for t in classifier.classify(e.text, rating=e.stars).intents if t in tags]
        for e in examples
    ]
    predicted = [frozenset(f) for f in found]
    strongest = [f[0] if f else "none" for f in found]
    rows = []
    for tag in tags:
        tp = sum(tag in p and tag in e.tags for p, e in zip(predicted, examples, strict=True))
        flagged = sum(tag in p for p in predicted)
        gold = sum(tag in e.tags for e in examples)
        rows.append(TagMetrics(tag, gold, _ratio(tp, flagged), _ratio(tp, gold)))
    confusion: dict[str, dict[str, int]] = {}
    for e, top in zip(examples, strongest, strict=True):
        confusion.setdefault(e.gold, {}).setdefault(top, 0)
        confusion[e.gold][top] += 1
    return IntentReport(title, len(examples), tuple(rows), confusion, (*tags, "none"))


def format_intent_report(report: IntentReport) -> str:
    """Per-tag precision/recall and the confusion matrix, as Markdown tables."""
    lines = [f"{report.title} (n={report.n}), intent tags", ""] if report.title else []
    lines += ["| tag | gold | precision | recall | F1 |", "|---|---:|---:|---:|---:|"]
    for t in report.tags:
        lines.append(
            f"| {t.tag} | {t.positives} | {_pct(t.precision)} | {_pct(t.recall)} | {_pct(t.f1)} |"
        )
    lines += ["", "| gold \\ strongest tag | " + " | ".join(report.columns) + " |"]
    lines.append("|---|" + "---:|" * len(report.columns))
    for gold in sorted(report.confusion):
        counts = report.confusion[gold]
        cells = " | ".join(str(counts.get(c, 0)) for c in report.columns)
        lines.append(f"| {gold} | {cells} |")
    return "\n".join(lines)


def load_examples(
    path: str | Path,
    *,
    gold_negative_at: float = GOLD_NEGATIVE_AT,
    gold_positive_at: float = GOLD_POSITIVE_AT,
) -> list[Example]:
    """Read a CSV/TSV file of labelled texts. The file name becomes ``Example.source``."""
    path = Path(path)
    content = path.read_text(encoding="utf-8-sig", errors="replace")
    return parse_examples(
        content,
        source=path.name,
        gold_negative_at=gold_negative_at,
        gold_positive_at=gold_positive_at,
    )


#: Files that hold the same texts as another file share its split (CLAP's intent and star
#: labels are two files of the same reviews).
SPLIT_ALIASES = {"app_reviews_intent_clap.csv": "app_reviews_sentiment_clap.csv"}


def in_test_split(
    example: Example | IntentExample, seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION
) -> bool:
    """Whether an example belongs to the test part.

    The split hashes ``seed``, the source file name and the id, so it is the same on every
    machine and Python version, and adding rows never moves existing ones.
    """
    source = SPLIT_ALIASES.get(example.source, example.source)
    key = f"{seed}:{source}:{example.id}".encode()
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    return bucket < test_fraction


def split_examples(
    examples: Iterable[E],
    part: Part = "test",
    seed: int = SPLIT_SEED,
    test_fraction: float = TEST_FRACTION,
) -> list[E]:
    """Keep the ``train`` or ``test`` part of ``examples`` (``all`` keeps everything)."""
    if part == "all":
        return list(examples)
    want_test = part == "test"
    return [e for e in examples if in_test_split(e, seed, test_fraction) == want_test]


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson correlation of two equally long sequences (``nan`` if either is constant)."""
    n = len(xs)
    if n != len(ys) or n < 2:
        raise ValueError("need two sequences of the same length, at least 2 long")
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return math.nan
    return sxy / math.sqrt(sxx * syy)


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def score_predictions(
    name: str,
    gold: Sequence[Label],
    predicted: Sequence[Label],
    gold_scores: Sequence[float | None] | None = None,
    predicted_scores: Sequence[float] | None = None,
    ms_per_text: float = 0.0,
) -> Metrics:
    """Accuracy, macro-F1 over the gold labels, and the negative/positive flag P/R.

    Macro-F1 averages the per-label F1 over the labels that occur in ``gold``. A prediction
    outside them (``mixed`` or ``unscored`` on three-way data) simply counts as wrong.
    """
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    n = len(gold)
    correct = sum(g == p for g, p in zip(gold, predicted, strict=True))

    def pr(label: Label) -> tuple[float, float]:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted, strict=True))
        return _ratio(tp, sum(p == label for p in predicted)), _ratio(
            tp, sum(g == label for g in gold)
        )

    labels = [lab for lab in Label if lab in set(gold)]
    macro = sum(_f1(*pr(lab)) for lab in labels) / len(labels) if labels else 0.0
    neg_p, neg_r = pr(Label.NEGATIVE)
    pos_p, pos_r = pr(Label.POSITIVE)
    r: float | None = None
    if gold_scores is not None and predicted_scores is not None:
        pairs = [
            (g, s) for g, s in zip(gold_scores, predicted_scores, strict=True) if g is not None
        ]
        if len(pairs) >= 2:
            r = pearson([g for g, _ in pairs], [s for _, s in pairs])
    return Metrics(name, n, _ratio(correct, n), macro, neg_p, neg_r, pos_p, pos_r, r, ms_per_text)


def recall_at_precision(
    gold_negative: Sequence[bool], negativity: Sequence[float], precision: float = 0.8
) -> float | None:
    """The best recall of "negative" at any cut of ``negativity`` (higher: more negative)
    whose precision is at least ``precision``; ``None`` without negative examples."""
    positives = sum(gold_negative)
    if not positives:
        return None
    ranked = sorted(zip(negativity, gold_negative, strict=True), key=lambda p: -p[0])
    best, hits = 0.0, 0
    for k, (value, is_neg) in enumerate(ranked, start=1):
        hits += is_neg
        at_cut = k == len(ranked) or ranked[k][0] != value  # ties are cut together
        if at_cut and hits / k >= precision:
            best = max(best, hits / positives)
    return best


def run_classifier(name: str, classifier: Classifier, examples: Sequence[Example]) -> Metrics:
    """Classify every example and score the predictions."""
    start = time.perf_counter()
    results = [classifier.classify(e.text, rating=e.stars) for e in examples]
    elapsed = time.perf_counter() - start
    metrics = score_predictions(
        name,
        [e.label for e in examples],
        [r.label for r in results],
        [e.score for e in examples],
        [r.score for r in results],
        ms_per_text=1000 * elapsed / len(examples) if examples else 0.0,
    )
    negativity = [
        r.negative_probability if r.negative_probability is not None else -r.score for r in results
    ]
    at_80 = recall_at_precision([e.label is Label.NEGATIVE for e in examples], negativity)
    return replace(metrics, negative_recall_at_80=at_80)


def default_classifiers() -> list[tuple[str, Classifier]]:
    """Plain VADER, the flag model alone (the classifier before the meaning model), and the
    default experience classifier (the meaning model over the embeddings)."""
    # The language check is off: evaluation data is English by construction, and a text
    # marked "unscored" would be counted as a miss rather than measured.
    return [
        ("vader", VaderClassifier()),
        ("flags", ExperienceClassifier(non_english="score", meaning=None)),
        ("experience", ExperienceClassifier(non_english="score")),
    ]


def evaluate(
    examples: Sequence[Example],
    classifiers: Sequence[tuple[str, Classifier]] | None = None,
    title: str = "",
) -> Report:
    """Run plain VADER and the experience classifier (or ``classifiers``) on ``examples``."""
    if classifiers is None:
        classifiers = default_classifiers()
    rows = tuple(run_classifier(name, clf, examples) for name, clf in classifiers)
    return Report(title, len(examples), rows)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def format_report(report: Report) -> str:
    """The report as a Markdown table (percentages, Pearson r, milliseconds per text)."""
    lines = []
    if report.title:
        lines.append(f"{report.title} (n={report.n})")
        lines.append("")
    lines.append(
        "| classifier | accuracy | macro-F1 | neg P | neg R | neg R at P>=80 | pos P | pos R "
        "| r | ms/text |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in report.rows:
        r = "n/a" if m.pearson_r is None else f"{m.pearson_r:.3f}"
        at_80 = "n/a" if m.negative_recall_at_80 is None else _pct(m.negative_recall_at_80)
        lines.append(
            f"| {m.name} | {_pct(m.accuracy)} | {_pct(m.macro_f1)} | "
            f"{_pct(m.negative_precision)} | {_pct(m.negative_recall)} | {at_80} | "
            f"{_pct(m.positive_precision)} | {_pct(m.positive_recall)} | {r} | "
            f"{m.ms_per_text:.3f} |"
        )
    return "\n".join(lines)


def evaluate_files(
    paths: Sequence[str | Path],
    part: Part = "all",
    seed: int = SPLIT_SEED,
    test_fraction: float = TEST_FRACTION,
    gold_negative_at: float = GOLD_NEGATIVE_AT,
    gold_positive_at: float = GOLD_POSITIVE_AT,
) -> str:
    """Evaluate each file and, if there are several, all of them together; return the tables.

    This is what ``earshot eval`` prints.
    """
    sections: list[str] = []
    combined: list[Example] = []
    sentiment_files = 0
    for path in paths:
        name = Path(path).name
        content = Path(path).read_text(encoding="utf-8-sig", errors="replace")
        if is_intent_file(content):
            intents = parse_intent_examples(content, source=name)
            intents = split_examples(intents, part, seed, test_fraction)
            if not intents:
                raise ValueError(f"{name}: no examples in the {part} part")
            report = evaluate_intents(intents, title=_title(path, part, seed))
            sections.append(format_intent_report(report))
            continue
        sentiment_files += 1
        examples = parse_examples(  # the text already read, as load_examples would parse it
            content,
            source=name,
            gold_negative_at=gold_negative_at,
            gold_positive_at=gold_positive_at,
        )
        examples = split_examples(examples, part, seed, test_fraction)
        if not examples:
            raise ValueError(f"{name}: no examples in the {part} part")
        combined.extend(examples)
        sections.append(format_report(evaluate(examples, title=_title(path, part, seed))))
    if sentiment_files > 1:
        sections.append(format_report(evaluate(combined, title=_title("all files", part, seed))))
    return "\n\n".join(sections)


def _title(path: str | Path, part: Part, seed: int) -> str:
    name = Path(path).name if str(path) != "all files" else "all files"
    if part == "all":
        return name
    return f"{name}, {part} split (seed {seed})"
