"""The acceptance budget: under 1 ms per text on one core (benchmarks/bench_sentiment.py)."""

from __future__ import annotations

import time
from pathlib import Path

from earshot.listener.evaluation import load_examples
from earshot.listener.sentiment import ExperienceClassifier

FIXTURES = Path(__file__).parent / "fixtures" / "sentiment"


def test_under_one_millisecond_per_text() -> None:
    texts = [e.text for e in load_examples(FIXTURES / "tweets_GroundTruth.txt")][::4]
    texts += [e.text for e in load_examples(FIXTURES / "amazonReviewSnippets_GroundTruth.txt")][::4]
    clf = ExperienceClassifier()
    for text in texts[:20]:  # load the language model outside the timing
        clf.classify(text)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for text in texts:
            clf.classify(text)
        best = min(best, time.perf_counter() - start)
    assert 1000 * best / len(texts) < 1.0
