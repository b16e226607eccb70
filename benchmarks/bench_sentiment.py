"""Milliseconds per text on one core: plain VADER against the experience classifier.

Run from the repository root::

    .venv/bin/python benchmarks/bench_sentiment.py          # all 7,908 texts, 5 repeats
    .venv/bin/python benchmarks/bench_sentiment.py --quick  # every 8th text (989), 2 repeats

The texts are the tweets and Amazon snippets of ``tests/fixtures/sentiment``. Each
classifier is built and warmed up first (the language model loads on first use, about
0.7 s, once per process), then timed with ``time.perf_counter`` over the whole list; the
best of the repeats is reported. The process is pinned to one CPU where the OS allows it,
and numpy's thread pools are limited to one thread. The experience classifier runs as
deployed: language detection on, no language given.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402 - the thread limits must be set before numpy loads
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

from earshot.listener.evaluation import load_examples  # noqa: E402
from earshot.listener.sentiment import (  # noqa: E402
    Classifier,
    ExperienceClassifier,
    VaderClassifier,
)

DATA = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sentiment"
FILES = ("tweets_GroundTruth.txt", "amazonReviewSnippets_GroundTruth.txt")


def pin_to_one_core() -> str:
    """Pin this process to one CPU if the OS supports it; say which."""
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity)"


def ms_per_text(classifier: Classifier, texts: Sequence[str], repeats: int) -> float:
    """Best-of-``repeats`` milliseconds per text for classifying all ``texts``."""
    for text in texts[:50]:
        classifier.classify(text)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for text in texts:
            classifier.classify(text)
        best = min(best, time.perf_counter() - start)
    return 1000 * best / len(texts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every 8th text, 2 repeats")
    args = parser.parse_args(argv)
    texts = [e.text for name in FILES for e in load_examples(DATA / name)]
    repeats = 5
    if args.quick:
        texts, repeats = texts[::8], 2
    where = pin_to_one_core()
    vader = ms_per_text(VaderClassifier(), texts, repeats)
    ours = ms_per_text(ExperienceClassifier(), texts, repeats)
    print(f"{len(texts)} texts, best of {repeats}, {where}, Python {sys.version.split()[0]}")
    print(f"plain VADER          {vader:.3f} ms/text")
    print(f"ExperienceClassifier {ours:.3f} ms/text ({ours / vader:.2f}x VADER)")
    return 0 if ours < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
