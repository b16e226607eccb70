"""Where to put the near-duplicate threshold: shingle Jaccard of copies vs of different texts.

Real texts only (the shared CX data sets: app-store reviews, tweets, product reviews). Two
populations:

* **copies** - a real complaint cross-posted the way people do it: verbatim, with a lead-in
  ("Anyone else seeing this?"), with a link and an @handle, with a hashtag and a sentence
  of its own, cut to Bluesky's 300 characters, or with its first sentence dropped;
* **different** - every pair of *distinct* real texts from the same app (or the same data
  set) that share at least one shingle: different complaints that share a template phrase
  ("force closes every time", "please fix it", "waste of money").

For each population it prints the Jaccard distribution, and for the chosen threshold the
share of copies found end to end (LSH candidate *and* Jaccard confirmation, as
``Store.ingest`` does) and the different pairs merged by mistake. Run from the repository
root::

    .venv/bin/python benchmarks/measure_near_duplicates.py
"""

from __future__ import annotations

import argparse
import csv
import random
import re
from collections import defaultdict
from itertools import combinations
from pathlib import Path

from earshot.listener.stories import (
    MIN_WORDS,
    NEAR_DUPLICATE_JACCARD,
    jaccard,
    near_keys,
    shingles,
    words,
)

DATA = Path("/work/shared/data/cx")
SETS = {
    "app reviews": ("app_reviews_sentiment_clap.csv", "source"),
    "tweets": ("tweets_sentiment_semeval.csv", None),
    "product reviews": ("product_reviews_sentiment_uci.csv", "source"),
}
LEAD_INS = ["Anyone else seeing this? ", "Same here: ", "This. ", "Copying from the app store: "]


def copies(text: str, rng: random.Random) -> list[tuple[str, str]]:
    """Cross-post variants of one real text, by kind."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    out = [
        ("verbatim", text),
        ("lead-in", rng.choice(LEAD_INS) + text),
        ("link+handle", f"{text} https://example.com/status/{rng.randrange(10**6)} @acmehelp"),
        ("hashtag+own sentence", f"{text} #acme #fail Seriously, fix it."),
        ("cut to 300 chars", text[:297] + "..." if len(text) > 300 else text),
    ]
    if len(sentences) > 2:
        out.append(("first sentence dropped", " ".join(sentences[1:])))
    return out


def load(name: str, group: str | None) -> dict[str, list[str]]:
    by: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    with (DATA / name).open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            text = row["text"]
            key = " ".join(words(text))
            if len(words(text)) < MIN_WORDS or key in seen:
                continue  # too short to key, or a repeat of a text already in
            seen.add(key)
            by[row[group] if group else "all"].append(text)
    return by


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def found(a: str, b: str, threshold: float) -> bool:
    """Whether ``Store.ingest`` would put ``b`` in ``a``'s story (band hit, then Jaccard)."""
    return (
        bool(set(near_keys(a)) & set(near_keys(b)))
        and jaccard(shingles(a), shingles(b)) >= threshold
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threshold", type=float, default=NEAR_DUPLICATE_JACCARD)
    parser.add_argument("--copies", type=int, default=400, help="real texts copied per set")
    args = parser.parse_args()
    rng = random.Random(18)
    for label, (name, group) in SETS.items():
        groups = load(name, group)
        texts = [t for g in groups.values() for t in g]
        # Different texts sharing a phrase: pairs within a group with a common shingle.
        diff: list[float] = []
        diff_merged = 0
        worst: list[tuple[float, str, str]] = []
        for members in groups.values():
            index: dict[str, list[int]] = defaultdict(list)
            grams = [shingles(t) for t in members]
            for i, g in enumerate(grams):
                for s in g:
                    index[s].append(i)
            pairs: set[tuple[int, int]] = set()
            for ids in index.values():
                if len(ids) <= 50:  # a phrase in more texts than that is boilerplate noise
                    pairs.update(combinations(ids, 2))
            for i, j in pairs:
                value = jaccard(grams[i], grams[j])
                diff.append(value)
                if value >= args.threshold:
                    worst.append((value, members[i], members[j]))
                    if found(members[i], members[j], args.threshold):
                        diff_merged += 1
        # Copies of real texts.
        kinds: dict[str, list[float]] = defaultdict(list)
        hits: dict[str, int] = defaultdict(int)
        for text in rng.sample(texts, min(args.copies, len(texts))):
            for kind, copy in copies(text, rng):
                kinds[kind].append(jaccard(shingles(text), shingles(copy)))
                hits[kind] += found(text, copy, args.threshold)
        print(f"== {label}: {len(texts)} distinct texts of >= {MIN_WORDS} words")
        print(
            f"   different texts sharing a phrase: {len(diff)} pairs; Jaccard p50 "
            f"{percentile(diff, 0.5):.3f}, p99 {percentile(diff, 0.99):.3f}, p99.9 "
            f"{percentile(diff, 0.999):.3f}, max {max(diff, default=0):.3f}; "
            f">= {args.threshold}: {sum(v >= args.threshold for v in diff)}, merged "
            f"end to end: {diff_merged}"
        )
        for value, a, b in sorted(worst, reverse=True)[:3]:
            print(f"     {value:.2f}: {a[:90]!r}\n           {b[:90]!r}")
        for kind, values in kinds.items():
            print(
                f"   copies, {kind:<24} min {min(values):.3f}  p5 {percentile(values, 0.05):.3f}"
                f"  found end to end {hits[kind]}/{len(values)}"
            )


if __name__ == "__main__":
    main()
