"""Which text should relevance embed: the raw body, or the classifier's prepared text?

Run from the repository root::

    .venv/bin/python benchmarks/relevance_text.py [--data ../shared/data]

Relevance reads the classifier's embedding of a mention (one embedding per mention), which
is the embedding of its *prepared* text (``ExperienceClassifier.prepare``: no URLs, @handles,
markup; hashtags split). This checks what that costs relevance, on a proxy: the labelled
sets of ``data/cx`` grouped by where they come from (each app's reviews, Amazon, Yelp, each
YouTube video's comments, GitHub PRs, tweets), groups of at least 60 texts. Per group, 30
texts make the accepted centroid (``RelevanceModel``); the next 100 (on-topic) are scored
against as many texts drawn from the other groups (off-topic). Printed per group and on
average: the AUC, the share of on-topic texts scored below 0.5 (held) and of off-topic ones
at 0.5 or more (passed), for each text. ``--strip-user`` removes the tweets' ``@user``
placeholder first (the raw text matches on it; real handles differ from tweet to tweet).
Seeded: the same figures each run.
"""

from __future__ import annotations

import argparse
import collections
import csv
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from earshot.listener.embedding import embed_many
from earshot.listener.relevance import RelevanceModel
from earshot.listener.sentiment import ExperienceClassifier

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
#: (file, column naming the group; ``None``: the whole file is one group)
SETS = [
    ("app_reviews_sentiment_clap.csv", "source"),
    ("product_reviews_sentiment_uci.csv", "source"),
    ("spam_youtube_comments_uci.csv", "source"),
    ("github_pr_sentiment_opus.csv", None),
    ("tweets_sentiment_semeval.csv", None),
]


def groups(data: Path, strip_user: bool) -> dict[str, list[str]]:
    found: dict[str, list[str]] = collections.defaultdict(list)
    for name, column in SETS:
        with (data / "cx" / name).open(encoding="utf-8", errors="replace") as f:
            for row in csv.DictReader(f):
                text = row["text"].replace("@user", "") if strip_user else row["text"]
                found[row[column] if column else name].append(text)
    return {g: texts for g, texts in found.items() if len(texts) >= 60}


def evaluate(
    embed: Callable[[Sequence[str]], np.ndarray], train: list[str], on: list[str], off: list[str]
) -> tuple[float, float, float]:
    model = RelevanceModel()
    for vec in embed(train):
        model.add(vec)

    def scores(texts: list[str]) -> np.ndarray:
        values = [model.score(v) for v in embed(texts)]
        return np.array([0.5 if v is None else v for v in values])

    s_on, s_off = scores(on), scores(off)
    a, b = s_on[:, None], s_off[None, :]
    auc = float((a > b).mean() + 0.5 * (a == b).mean())
    return auc, float((s_on < 0.5).mean()), float((s_off >= 0.5).mean())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--strip-user", action="store_true")
    args = parser.parse_args(argv)
    if not (args.data / "cx").is_dir():
        print(f"relevance_text: no labelled data at {args.data}/cx (--data)", file=sys.stderr)
        return 2
    sets = groups(args.data, args.strip_user)
    classifier = ExperienceClassifier()
    embeds: dict[str, Callable[[Sequence[str]], np.ndarray]] = {
        "raw": lambda texts: embed_many(list(texts)),
        "prepared": classifier.embed_texts,
    }
    rng = random.Random(1)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in embeds}
    print(f"{'group':42s} " + " | ".join(f"{n:>8s} AUC held passed" for n in embeds))
    for group, texts in sets.items():
        texts = texts[:]
        rng.shuffle(texts)
        train, on = texts[:30], texts[30:130]
        others = [t for g, ts in sets.items() if g != group for t in ts]
        off = rng.sample(others, len(on))
        row = []
        for name, embed in embeds.items():
            figures = evaluate(embed, train, on, off)
            results[name].append(figures)
            row.append("{:>12.3f} {:4.2f} {:6.2f}".format(*figures))
        print(f"{group[:42]:42s} " + " | ".join(row))
    for name, rows in results.items():
        auc, held, passed = (float(np.mean([r[i] for r in rows])) for i in range(3))
        print(
            f"{name}: mean AUC {auc:.3f}, on-topic held {held:.3f}, off-topic passed {passed:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
