"""Themes: the cost of a weekly digest's clustering (``listener/themes.py``) at 10,000 mentions.

Run from the repository root::

    .venv/bin/python benchmarks/bench_themes.py          # 10,000 mentions, 5 repeats
    .venv/bin/python benchmarks/bench_themes.py --quick  # 2,000 mentions, 3 repeats

The week is ``tests/synthmonth.py`` scaled up (real payload shapes through the sources'
parsers, planted themes among real tweets and review snippets), with the week before it for
the change: ``find_themes(week, week_before)`` is what a weekly digest runs. One core
(``sched_setaffinity``, BLAS limited to one thread): min and median of the repeats, process
CPU beside wall time, split into embedding (``embed_many`` of both weeks) and the rest
(k-means, merge, labels, quotes, assigning last week). The target is under a minute for
10,000 mentions. The adjusted Rand index of the planted themes is printed as a check that
the clustering timed is the one that works. The exit status says only whether it ran.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import statistics
import sys
import time
from collections import Counter
from math import comb
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from earshot.listener import embedding  # noqa: E402
from earshot.listener.themes import themes_of  # noqa: E402
from tests.synthmonth import build_month  # noqa: E402

TARGET_SECONDS = 60.0


def pin_to_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity)"


def ari(truth: list[str], found: list[int]) -> float:
    pairs = Counter(zip(truth, found, strict=True))
    index = sum(comb(n, 2) for n in pairs.values())
    a = sum(comb(n, 2) for n in Counter(truth).values())
    b = sum(comb(n, 2) for n in Counter(found).values())
    expected = a * b / comb(len(truth), 2)
    top = (a + b) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 mentions, 3 repeats")
    parser.add_argument("--mentions", type=int, default=None, help="mentions in the week")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    wanted = args.mentions or (2_000 if args.quick else 10_000)
    repeats = args.repeats or (3 if args.quick else 5)
    where = pin_to_one_core()
    scale = wanted / 415  # the month's weeks hold about 415 mentions at scale 1
    month = build_month(weeks=2, scale=scale)
    week, before = month.week(1), month.week(0)
    embedding.model()  # loaded once, as in the running service
    print(f"# themes of {len(week)} mentions (and {len(before)} the week before), {where}")
    print(f"# {repeats} repeats; target: under {TARGET_SECONDS:.0f} s on one core")
    texts = [m.body for m in week + before]
    walls: list[float] = []
    cpus: list[float] = []
    embed_walls: list[float] = []
    embed_cpus: list[float] = []
    result = None
    for _ in range(repeats):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        embedding.embed_many(texts)
        embed_cpus.append(time.process_time() - cpu0)
        embed_walls.append(time.perf_counter() - wall0)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = themes_of(week, before)
        cpus.append(time.process_time() - cpu0)
        walls.append(time.perf_counter() - wall0)
    assert result is not None
    kept = [m for m in week if (m.body or "").strip()]
    planted = [
        (i, month.planted[m.external_id])
        for i, m in enumerate(kept)
        if m.external_id in month.planted
    ]
    score = ari([t for _, t in planted], [int(result.labels[i]) for i, _ in planted])
    cluster = [c - e for c, e in zip(cpus, embed_cpus, strict=True)]
    print(f"{'step':<34}{'wall min':>10}{'wall med':>10}{'CPU min':>10}{'CPU med':>10}")
    rows = (
        ("find_themes (all of it)", walls, cpus),
        ("  of which embedding both weeks", embed_walls, embed_cpus),
        (
            "  the rest (clusters, labels...)",
            [w - e for w, e in zip(walls, embed_walls, strict=True)],
            cluster,
        ),
    )
    for name, wall, cpu in rows:
        print(
            f"{name:<34}{min(wall):>9.2f}s{statistics.median(wall):>9.2f}s"
            f"{min(cpu):>9.2f}s{statistics.median(cpu):>9.2f}s"
        )
    print(f"themes shown: {len(result.themes)}; planted themes ARI {score:.3f}")
    for theme in result.themes:
        print(f"  {theme.size:5d} ({theme.change:+d})  {theme.label}")
    worst = max(walls)
    verdict = "met" if statistics.median(walls) < TARGET_SECONDS else "MISSED"
    print(
        f"target < {TARGET_SECONDS:.0f} s for {len(week)} mentions: {verdict} "
        f"(median {statistics.median(walls):.1f} s, worst {worst:.1f} s)"
    )
    _ = np  # numpy is imported first, under the thread limits above
    return 0


if __name__ == "__main__":
    sys.exit(main())
