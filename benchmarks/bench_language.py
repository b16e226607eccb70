"""Language detection: speed, memory and accuracy of ``listener/language.py``'s detector.

Run from the repository root::

    .venv/bin/python benchmarks/bench_language.py          # 5 repeats
    .venv/bin/python benchmarks/bench_language.py --quick  # 3 repeats

The detector is asked about texts it must answer with its model (the English-marker
shortcut would answer most English texts without it):

* **Foreign**: ``tests/fixtures/language/mentions.tsv``, 55 review-style sentences in 14
  languages: how many get their language.
* **English**: the labelled English sets in ``../shared/data`` (VADER's tweets and Amazon
  snippets, SemEval tweets, app reviews, GitHub PR comments, UCI product sentences), when
  present: how many a lead would lose as "not English" (unscored). Some texts in those sets
  are in fact not English, so the figure is an upper bound.

Speed is the model call alone, on texts without English markers, one core: min and median
of the repeats, wall time beside process CPU time. Memory is the resident set size the
loaded model adds. If ``py3langid`` (earshot's previous detector) is installed, the same
figures are printed for it behind the same gates, for comparison. The exit status says only
whether the benchmark ran.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import rss_mb

from earshot.listener import language
from earshot.listener.evaluation import load_examples

ROOT = Path(__file__).resolve().parents[1]
MENTIONS = ROOT / "tests" / "fixtures" / "language" / "mentions.tsv"
SHARED = ROOT.parent / "shared" / "data"
ENGLISH_SETS = [
    "sentiment/tweets_GroundTruth.txt",
    "sentiment/amazonReviewSnippets_GroundTruth.txt",
    "cx/tweets_sentiment_semeval.csv",
    "cx/app_reviews_sentiment_clap.csv",
    "cx/github_pr_sentiment_opus.csv",
    "cx/product_reviews_sentiment_uci.csv",
]


class _Py3LangId:
    """py3langid behind fastText's ``predict`` interface, for the comparison."""

    def __init__(self) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def predict(self, text: str, k: int = 1) -> tuple[list[str], list[float]]:
        code, probability = self._identifier.classify(text)
        return [f"__label__{code}"], [float(probability)]


def _foreign() -> list[tuple[str, str]]:
    rows = MENTIONS.read_text(encoding="utf-8").splitlines()
    return [(r.split("\t")[0], r.split("\t")[1]) for r in rows if r and not r.startswith("#")]


def _english() -> list[str]:
    texts: list[str] = []
    for name in ENGLISH_SETS:
        path = SHARED / name
        if path.exists():
            texts += [example.text for example in load_examples(path)]
    return texts


def _timed(call: Callable[[], Any], repeats: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def measure(name: str, load: Callable[[], Any], repeats: int) -> None:
    """Print one detector's figures; ``load`` builds its model."""
    before = rss_mb()
    language._model_instance = load()
    loaded = rss_mb() - before
    foreign = _foreign()
    english = _english()
    right = sum(
        1 for code, text in foreign if (r := language.detect_language(text)) and r[0] == code
    )
    lost = sum(1 for text in english if (r := language.detect_language(text)) and r[0] != "en")
    model = language._model_instance
    lines = [" ".join(text.lower().split()) for _, text in foreign] * 20
    walls, cpus = _timed(lambda: [model.predict(line, k=1) for line in lines], repeats)
    per = 1000 / len(lines)
    print(
        f"{name:10}  foreign right {right}/{len(foreign)}  "
        f"English marked foreign {lost}/{len(english)} ({100 * lost / max(1, len(english)):.2f}%)  "
        f"model call ms/text wall min {min(walls) * per:.4f} median "
        f"{statistics.median(walls) * per:.4f}, CPU median {statistics.median(cpus) * per:.4f}  "
        f"RSS +{loaded:.1f} MB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 5")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 5
    if hasattr(os, "sched_setaffinity"):  # one core, as the classifier runs
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(
        f"# language detection: {repeats} repeats; English sets found: "
        f"{sum((SHARED / n).exists() for n in ENGLISH_SETS)}/{len(ENGLISH_SETS)}"
    )
    measure("fasttext", lambda: language._model(), repeats)
    try:
        import py3langid  # noqa: F401
    except ImportError:
        print("py3langid   not installed: no comparison (pip install 'py3langid>=0.4,<0.5')")
    else:
        saved = language._model_instance
        measure("py3langid", _Py3LangId, repeats)
        language._model_instance = saved
    return 0


if __name__ == "__main__":
    sys.exit(main())
