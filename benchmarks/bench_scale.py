"""Scale: ingest cost and dedupe lookups with 10k, 100k and 1M mentions already stored.

Run from the repository root::

    .venv/bin/python benchmarks/bench_scale.py          # 10k, 100k, 1M stored mentions
    .venv/bin/python benchmarks/bench_scale.py --quick  # 2k, 20k

The SQLite store (the default database, WAL, as ``make_engine`` sets it up) is filled with
core SQLAlchemy bulk inserts: mentions shaped like earshot's own (three sources, the
labelled texts, sentiment set, half of them with a sent outbox row), with a small ``raw``
document to keep the fill fast; the indexes are earshot's. At each size a fresh process
(``--measure``, so its memory is the ingest's alone) opens the store and measures:

* ``Store.ingest`` of batches of 500 new real-shaped mentions (HN hits through the real
  parser, labels precomputed so only the store's work is timed, one outbox row each),
  median ms per mention over the batches;
* ``Store.known_ids`` for 500 ids (half stored, half not yet), median µs per id over 20
  lookups after 10 untimed ones (a running earshot's page cache is warm): ``recent`` ids
  (the stored half from the newest 1%, as a poll's overlap with the last one) and
  ``random`` ids (from anywhere: the worst case);
* the peak resident memory (VmHWM) of that process after it also built the wired
  classifier and ingested one more batch through it, as ``earshot run`` would.

Ratios are against the smallest size (target <= 1.2 from 10k to 1M); RSS at the largest
size (target <= 200 MB).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import Payloads, header, load_texts, median, peak_rss_mb, table, verdict

from earshot.listener.models import Delivery, Mention
from earshot.listener.sources import HackerNewsSource, PollResult, SourceHttp
from earshot.listener.store import Store

BATCH = 500
LOOKUP_WARMUP, LOOKUPS = 10, 20
SOURCES = ("hackernews", "reddit", "appstore")
RATIO_TARGET = 1.2
RSS_TARGET = 200.0


def fill(store: Store, start: int, stop: int) -> None:
    """Add stored mentions number ``start`` … ``stop - 1`` (and their outbox rows)."""
    texts = load_texts()
    base = datetime.now(UTC) - timedelta(days=400)
    chunk = 10_000
    with store.engine.begin() as conn:
        next_id = conn.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM mentions").scalar()
        next_id = int(next_id or 0) + 1
    for low in range(start, stop, chunk):
        mentions: list[dict[str, Any]] = []
        outbox: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        for n in range(low, min(stop, low + chunk)):
            source = SOURCES[n % 3]
            text = texts[n % len(texts)]
            label = (
                "negative" if text.score < -0.5 else "positive" if text.score > 0.5 else "neutral"
            )
            mention_id = next_id + n - start
            mentions.append(
                {
                    "id": mention_id,
                    "source": source,
                    "external_id": f"fill-{n}",
                    "url": f"https://example.com/{source}/{n}",
                    "author": f"user{n % 5000}",
                    "site": "news.ycombinator.com",
                    "title": "",
                    "text": f"Acme {text.text}",
                    "created_at": base + timedelta(seconds=n * 30),
                    "fetched_at": now,
                    "rating": 1 + n % 5 if source == "appstore" else None,
                    "language": "en",
                    "matched_query": "acme",
                    "raw": {"id": n, "source": source},
                    "sentiment_label": label,
                    "sentiment_score": text.score / 4,
                    "sentiment_reasons": [],
                    "intents": [],
                    "status": "alerted" if n % 2 == 0 else "new",
                }
            )
            if n % 2 == 0:
                outbox.append(
                    {
                        "idempotency_key": f"alert:{source}:fill-{n}:#cx-alerts",
                        "mention_id": mention_id,
                        "channel": "#cx-alerts",
                        "kind": "alert",
                        "payload": {},
                        "status": "sent",
                        "attempts": 1,
                        "next_attempt_at": now,
                        "created_at": now,
                        "sent_at": now,
                        "verify": False,
                    }
                )
        with store.engine.begin() as conn:
            conn.execute(Mention.__table__.insert(), mentions)  # type: ignore[attr-defined]
            if outbox:
                conn.execute(Delivery.__table__.insert(), outbox)  # type: ignore[attr-defined]


def lookup_ids(rng: random.Random, filled: int, *, recent: bool) -> list[str]:
    """``BATCH`` hackernews ids for ``known_ids``: half stored, half new (not stored yet).

    The fill's hackernews rows are the numbers divisible by 3. ``recent``: the stored half
    comes from the newest 1% (at least 1,500), as a poll's overlap with the last one does;
    else from anywhere (the worst case for the index's cache). The new half is always
    numbered past the fill, like items the API has only just published.
    """
    low = max(0, filled - max(1_500, filled // 100)) if recent else 0
    known = {3 * rng.randrange(low // 3, filled // 3) for _ in range(BATCH // 2)}
    known = {n for n in known if n < filled}
    new = {3 * (filled // 3 + 1 + rng.randrange(0, 10 * BATCH)) for _ in range(BATCH // 2)}
    return [f"fill-{n}" for n in sorted(known | new, key=lambda _: rng.random())]


def measure(url: str, batches: int, offset: int, filled: int) -> dict[str, float]:
    """Runs in a fresh process: ingest and lookup timings, then the peak RSS."""
    import logging

    logging.disable(logging.WARNING)
    store = Store.from_url(url)
    payloads = Payloads(seed=offset)
    parser = HackerNewsSource(SourceHttp(None))  # type: ignore[arg-type]
    result = PollResult(mentions=[], cursor={})

    def batch(k: int) -> list[Mention]:
        out = []
        for n in range(k * BATCH, (k + 1) * BATCH):
            mention = parser._mention(payloads.hn_hit(offset + n), result)
            assert mention is not None
            mention.matched_query = "acme"
            out.append(mention)
        return out

    def labelled(mention: Mention) -> list[tuple[str, str]]:
        mention.sentiment_label = "negative"
        mention.sentiment_score = -0.6
        mention.sentiment_reasons = ["crashes"]
        return [("#cx-alerts", "alert")]

    per_mention = []
    store.known_ids("hackernews", ["warm-up"])
    store.ingest("hackernews", batch(batches + 1), None, labelled)  # warm-up, not timed
    for k in range(batches):
        mentions = batch(k)
        started = time.perf_counter()
        done = store.ingest("hackernews", mentions, {"terms": {"acme": k}}, labelled)
        per_mention.append((time.perf_counter() - started) / BATCH)
        assert len(done.stored) == BATCH, done
    total = store.count_mentions()
    rng = random.Random(offset)
    lookups: dict[str, list[float]] = {"recent": [], "random": []}
    for n in range(LOOKUP_WARMUP + LOOKUPS):
        for kind in lookups:
            ids = lookup_ids(rng, filled, recent=kind == "recent")
            started = time.perf_counter()
            found = store.known_ids("hackernews", ids)
            if n >= LOOKUP_WARMUP:  # a running earshot has its page cache warm
                lookups[kind].append((time.perf_counter() - started) / len(ids))
            assert len(found) == sum(1 for i in ids if int(i[5:]) < filled), (kind, len(found))
    # As a real process: the wired classifier loaded, one more batch through it.
    from earshot.listener.sentiment import ExperienceClassifier

    classifier = ExperienceClassifier()

    def classified(mention: Mention) -> list[tuple[str, str]]:
        res = classifier.classify(mention.body, mention.rating, mention.language)
        mention.sentiment_label = str(res.label)
        mention.sentiment_score = res.score
        mention.sentiment_reasons = list(res.reasons)
        return [("#cx-alerts", "alert")]

    store.ingest("hackernews", batch(batches), None, classified)
    rss = peak_rss_mb()
    # Take back what this process added, so every repeat sees the same size.
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "DELETE FROM outbox WHERE mention_id IN (SELECT id FROM mentions "
            "WHERE source = 'hackernews' AND external_id NOT LIKE 'fill-%')"
        )
        conn.exec_driver_sql(
            "DELETE FROM mentions WHERE source = 'hackernews' AND external_id NOT LIKE 'fill-%'"
        )
    store.engine.dispose()
    return {
        "stored": float(total),
        "ingest_ms": 1e3 * median(per_mention),
        "recent_us": 1e6 * median(lookups["recent"]),
        "random_us": 1e6 * median(lookups["random"]),
        "rss_mb": rss,
    }


def run_measure(url: str, offset: int, filled: int, batches: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--measure", url, str(offset), str(filled)]
    command.extend(["--batches", str(batches)])
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"measuring {url} failed")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k and 20k stored mentions")
    parser.add_argument("--sizes", help="comma-separated sizes, e.g. 10000,100000,1000000")
    parser.add_argument("--batches", type=int, default=4, help="timed ingest batches")
    parser.add_argument("--repeats", type=int, help="rounds over the sizes (default 3)")
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        url, offset, filled = args.measure
        print(json.dumps(measure(url, args.batches, int(offset), int(filled))))
        return 0
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [2_000, 20_000] if args.quick else [10_000, 100_000, 1_000_000]
    repeats = args.repeats or (1 if args.quick else 3)
    header("Scale: ingest and dedupe with N mentions stored (SQLite)", args.quick)
    print(
        f"# one database per size; {repeats} round(s) over the sizes, each measure in a fresh "
        f"process; medians"
    )
    with tempfile.TemporaryDirectory() as tmp:
        urls, fills, db_mb = [], [], []
        for size in sizes:
            url = f"sqlite:///{Path(tmp) / f'scale{size}.db'}"
            store = Store.from_url(url)
            store.create_schema()
            started = time.perf_counter()
            fill(store, 0, size)
            fills.append(time.perf_counter() - started)
            store.engine.dispose()
            urls.append(url)
            files = Path(tmp).glob(f"scale{size}.db*")  # with the WAL
            db_mb.append(sum(f.stat().st_size for f in files) / 2**20)
        samples: list[list[dict[str, float]]] = [[] for _ in sizes]
        for repeat in range(repeats):
            for index, (url, size) in enumerate(zip(urls, sizes, strict=True)):
                offset = 10_000_000 * (1 + repeat * len(sizes) + index)
                samples[index].append(run_measure(url, offset, size, args.batches))
    results = [{key: median([s[key] for s in runs]) for key in runs[0]} for runs in samples]
    first = results[0]
    rows: list[list[object]] = []
    for size, fill_s, mb, result in zip(sizes, fills, db_mb, results, strict=True):
        rows.append(
            [
                f"{size:,}",
                fill_s,
                mb,
                result["ingest_ms"],
                result["ingest_ms"] / first["ingest_ms"],
                result["recent_us"],
                result["recent_us"] / first["recent_us"],
                result["random_us"],
                result["random_us"] / first["random_us"],
                result["rss_mb"],
            ]
        )
    print(
        table(
            [
                "stored",
                "fill s",
                "db MB",
                "ingest ms/mention",
                "vs first",
                "known_ids us/id: recent",
                "vs first",
                "random",
                "vs first",
                "peak RSS MB",
            ],
            rows,
        )
    )
    last = results[-1]
    ingest_ratio = last["ingest_ms"] / first["ingest_ms"]
    print(
        f"ingest {sizes[-1]:,} vs {sizes[0]:,}: {ingest_ratio:.2f}x, target <= {RATIO_TARGET}: "
        f"{verdict(ingest_ratio <= RATIO_TARGET)}"
    )
    for kind in ("recent", "random"):
        ratio = last[f"{kind}_us"] / first[f"{kind}_us"]
        print(
            f"dedupe lookup ({kind} ids) {sizes[-1]:,} vs {sizes[0]:,}: {ratio:.2f}x, "
            f"target <= {RATIO_TARGET}: {verdict(ratio <= RATIO_TARGET)}"
        )
    print(
        f"peak RSS at {sizes[-1]:,}: {last['rss_mb']:.0f} MB, target <= {RSS_TARGET:.0f} MB: "
        f"{verdict(last['rss_mb'] <= RSS_TARGET)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
