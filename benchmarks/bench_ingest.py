"""Ingest throughput: earshot's whole poll path against plain VADER on the same texts.

Run from the repository root::

    .venv/bin/python benchmarks/bench_ingest.py          # 50,000 mentions
    .venv/bin/python benchmarks/bench_ingest.py --quick  # 2,000 mentions

The mentions are real-shaped: the captured Hacker News hits, Reddit posts and comments and
App Store reviews of ``tests/fixtures/real`` with their text fields filled with the labelled
texts of ``tests/fixtures/sentiment`` (the product name put in at a random word), distinct
ids and growing timestamps (``benchlib.Payloads``). Each round serves one page per source
through an ``httpx.MockTransport`` (HN 100 hits plus 10 repeated from the round before,
Reddit 10 posts and 70 comments plus 7 repeated, App Store 50 reviews), and earshot polls
the three sources with ``Pipeline.poll``, exactly as ``earshot run`` does: the real source
parsers, ``QuerySet`` matching, ``Store.ingest`` (dedupe, insert, outbox, cursor, poll
lease and health) and the classifier ``config/wiring.py`` builds (the default
``ExperienceClassifier``). Only the rate limiters are off (this measures work, not
waiting; see bench_poll.py for that) and logging is at WARNING.

Plain VADER: ``SentimentIntensityAnalyzer().polarity_scores`` on the same texts, in the same
process, right before each earshot run (``--repeats N`` alternates N pairs and takes the
medians; one pair per database keeps the full run under 5 minutes). Ratio = earshot
mentions/s over VADER texts/s (target >= 0.8 on SQLite).
``--vader-classifier`` adds a run with ``sentiment.classifier = "vader"``, which separates
the classifier's share from the pipeline's.

``--profile FILE`` writes a pyinstrument profile (HTML, or text for ``.txt``) of one
SQLite earshot run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from benchlib import QUERIES, Payloads, header, median, postgres_schema, table, verdict
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from earshot.config.settings import Secrets, parse_settings
from earshot.config.wiring import Earshot, build
from earshot.listener.sources import RateLimiter

TARGET = 0.8
HN = "https://hn.bench/api/v1"
REDDIT = "https://reddit.bench"
APPLE = "https://apple.bench"
APP_ID = 284815942

#: Per round: new items per source page, and how many of the previous page come again.
HN_NEW, HN_AGAIN = 100, 10
POSTS_NEW, COMMENTS_NEW, COMMENTS_AGAIN = 10, 70, 7
REVIEWS_NEW = 50
PER_ROUND = HN_NEW + POSTS_NEW + COMMENTS_NEW + REVIEWS_NEW


@dataclass
class Round:
    """The answers of one round, already serialized (the fake API's work, not earshot's)."""

    hn: bytes
    posts: bytes
    comments: bytes
    reviews: bytes


@dataclass
class Feed:
    """Pre-built rounds of real-shaped payloads, and the texts they carry."""

    rounds: list[Round] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    current: int = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        now = self.rounds[self.current]
        path = request.url.path
        headers = {"content-type": "application/json"}
        if path.endswith("/search_by_date"):
            if request.url.params.get("query") != "acme":
                empty = {"hits": [], "nbHits": 0, "nbPages": 0, "page": 0}
                return httpx.Response(200, headers=headers, content=json.dumps(empty))
            return httpx.Response(200, headers=headers, content=now.hn)
        if path.endswith("/new.json"):
            return httpx.Response(200, headers=headers, content=now.posts)
        if path.endswith("/comments.json"):
            return httpx.Response(200, headers=headers, content=now.comments)
        if "/page=1/" in path:
            return httpx.Response(200, headers=headers, content=now.reviews)
        if "/customerreviews/" in path:
            return httpx.Response(200, headers=headers, content=b'{"feed": {}}')
        return httpx.Response(404, content=b"no route")


def make_feed(total: int, seed: int = 10) -> Feed:
    """``total`` distinct mentions (rounded up to whole rounds), in rounds of pages."""
    payloads = Payloads(seed)
    feed = Feed()
    n = 0
    last_hits: list[dict[str, Any]] = []
    last_comments: list[dict[str, Any]] = []

    def take() -> int:
        nonlocal n
        n += 1
        return n

    while len(feed.texts) < total:
        hits = [payloads.hn_hit(take()) for _ in range(HN_NEW)]
        posts = [payloads.reddit_child(take(), post=True) for _ in range(POSTS_NEW)]
        comments = [payloads.reddit_child(take()) for _ in range(COMMENTS_NEW)]
        reviews = [payloads.review(take()) for _ in range(REVIEWS_NEW)]
        for hit in hits:
            feed.texts.append(hit["title"] or hit["comment_text"])
        feed.texts.extend(c["data"]["title"] + "\n" + c["data"]["selftext"] for c in posts)
        feed.texts.extend(c["data"]["body"] for c in comments)
        feed.texts.extend(e["title"]["label"] + "\n" + e["content"]["label"] for e in reviews)
        served_hits = sorted(
            hits + last_hits[:HN_AGAIN], key=lambda h: h["created_at_i"], reverse=True
        )
        served_comments = list(reversed(comments)) + last_comments[:COMMENTS_AGAIN]
        feed.rounds.append(
            Round(
                hn=json.dumps(
                    {"hits": served_hits, "nbHits": len(served_hits), "nbPages": 1, "page": 0}
                ).encode(),
                posts=json.dumps(
                    {"kind": "Listing", "data": {"children": posts[::-1], "after": None}}
                ).encode(),
                comments=json.dumps(
                    {"kind": "Listing", "data": {"children": served_comments, "after": None}}
                ).encode(),
                reviews=json.dumps({"feed": {"entry": reviews[::-1]}}).encode(),
            )
        )
        last_hits, last_comments = hits, comments
    return feed


def make_app(database: str, feed: Feed, classifier: str = "experience") -> Earshot:
    settings = parse_settings(
        {
            "product": {"name": "Acme", "queries": QUERIES},
            "sentiment": {"classifier": classifier},
            "sources": [
                {"type": "hackernews", "base_url": HN, "backfill": "30d"},
                {
                    "type": "reddit",
                    "base_url": REDDIT,
                    "subreddits": ["acme"],
                    "backfill": "30d",
                },
                {"type": "appstore", "base_url": APPLE, "app_id": APP_ID, "backfill": "30d"},
            ],
        }
    )
    app = build(settings, Secrets(), transport=httpx.MockTransport(feed.handle), database=database)
    for source in app.sources:
        source.http.limiter = RateLimiter(None)
    return app


@dataclass
class Run:
    seconds: float
    stored: int
    duplicates: int
    queued: int


def earshot_run(database: str, feed: Feed, classifier: str = "experience") -> Run:
    """Poll every round through the pipeline; seconds for the polls only."""
    app = make_app(database, feed, classifier)
    stored = duplicates = queued = 0
    try:
        feed.current = 0
        # warm up: the language model loads on first use
        app.pipeline.classifier.classify("warm up the classifier")
        started = time.perf_counter()
        for index in range(len(feed.rounds)):
            feed.current = index
            for source in app.sources:
                report = app.pipeline.poll(source, force=True)
                if report.errors:
                    raise RuntimeError(f"{source.key}: {report.errors}")
                stored += report.stored
                duplicates += report.duplicates
                queued += report.queued
        seconds = time.perf_counter() - started
    finally:
        app.close()
    return Run(seconds, stored, duplicates, queued)


def vader_run(texts: Sequence[str]) -> float:
    analyzer = SentimentIntensityAnalyzer()
    analyzer.polarity_scores("warm up")
    started = time.perf_counter()
    for text in texts:
        analyzer.polarity_scores(text)
    return time.perf_counter() - started


def sqlite_url(tmp: str, name: str) -> str:
    return f"sqlite:///{Path(tmp) / name}"


def side_by_side(
    feed: Feed, repeats: int, database: Callable[[int], str], classifier: str = "experience"
) -> tuple[float, float, Run]:
    """Median seconds of VADER and of earshot, alternating, and the last earshot run."""
    vader_times, earshot_times = [], []
    last: Run | None = None
    for n in range(repeats):
        vader_times.append(vader_run(feed.texts))
        last = earshot_run(database(n), feed, classifier)
        earshot_times.append(last.seconds)
    assert last is not None
    return median(vader_times), median(earshot_times), last


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 mentions")
    parser.add_argument("--mentions", type=int, help="distinct mentions (default 50,000)")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--vader-classifier",
        action="store_true",
        help="also run earshot with sentiment.classifier = vader (the pipeline's own share)",
    )
    parser.add_argument("--profile", help="write a pyinstrument profile of one SQLite run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("earshot").setLevel(logging.WARNING)
    total = args.mentions or (2_000 if args.quick else 50_000)
    repeats = args.repeats or 1
    began = time.perf_counter()
    header("Ingest throughput: poll -> parse -> match -> dedupe -> store -> classify", args.quick)
    feed = make_feed(total)
    total = len(feed.texts)
    print(
        f"# {total:,} distinct mentions in {len(feed.rounds)} rounds of 3 polls; "
        f"median of {repeats} side-by-side run(s)"
    )
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
            earshot_run(sqlite_url(tmp, "profile.db"), feed)
            profiler.stop()
            out = Path(args.profile)
            if out.suffix == ".txt":
                out.write_text(profiler.output_text(unicode=False, show_all=False))
            else:
                out.write_text(profiler.output_html())
            print(f"# profile written to {out}")
        runs: list[tuple[str, str, float, float, Run]] = []
        vader_s, ours_s, run = side_by_side(
            feed, repeats, lambda n: sqlite_url(tmp, f"e{n}.db"), "experience"
        )
        runs.append(("SQLite", "experience (wired default)", vader_s, ours_s, run))
        if args.vader_classifier:
            vader_s, ours_s, run = side_by_side(
                feed, repeats, lambda n: sqlite_url(tmp, f"v{n}.db"), "vader"
            )
            runs.append(("SQLite", "vader", vader_s, ours_s, run))
    if not args.no_postgres:
        pg_repeats = repeats
        vader_times, pg_times = [], []
        for _ in range(pg_repeats):
            with postgres_schema() as url:
                if url is None:
                    break
                vader_times.append(vader_run(feed.texts))
                run = earshot_run(url, feed)
                pg_times.append(run.seconds)
        if pg_times:
            runs.append(
                (
                    "PostgreSQL",
                    "experience (wired default)",
                    median(vader_times),
                    median(pg_times),
                    run,
                )
            )
    ok = True
    for db, classifier, vader_s, ours_s, run in runs:
        ratio = (run.stored / ours_s) / (total / vader_s)
        ok = ok and run.stored == total
        note = verdict(ratio >= TARGET) if classifier.startswith("experience") else "(diagnostic)"
        rows.append(
            [
                db,
                classifier,
                run.stored,
                run.duplicates,
                total / vader_s,
                run.stored / ours_s,
                1e3 * ours_s / run.stored,
                ratio,
                f"target >= {TARGET}: {note}" if db == "SQLite" else note + " (no target)",
            ]
        )
    print(
        table(
            [
                "database",
                "classifier",
                "stored",
                "dupes dropped",
                "VADER texts/s",
                "earshot mentions/s",
                "ms/mention",
                "ratio",
                "",
            ],
            rows,
        )
    )
    print(f"# {time.perf_counter() - began:.0f} s in all")
    if not ok:
        print("# ERROR: not every mention was stored once")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
