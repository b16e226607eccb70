"""Poll fan-out: many queries across sources, a 50 ms loopback API, the real rate limits.

Run from the repository root::

    .venv/bin/python benchmarks/bench_poll.py          # 1,000 queries, 3 cycles
    .venv/bin/python benchmarks/bench_poll.py --quick  # 50 queries, 2 cycles

earshot is built by ``config/wiring.py`` with 1,000 queries (``widget0`` … ``widget999``)
and three sources pointed at a loopback fake API (``tests/fakeapi.py`` in its own process,
threaded, every answer after 50 ms): Hacker News (one search request per query term), Reddit (20
subreddits x the ``new`` and ``comments`` listings, matched locally against the 1,000
queries) and the App Store (30 countries, two feed pages each). Each source keeps its own
``RateLimiter`` as wired: the documented budget and a burst of 5.

The real budgets (HN 10,000/h, Reddit 10/min, App Store 20/min) would make one cycle of
1,000 HN requests last six minutes, so every budget is multiplied by the same factor
(``--scale``, default 5: HN 833/min, Reddit 50/min, App Store 100/min), keeping the request
interval above the 50 ms latency: the limits, not the latency, still bound the cycle.

A cycle polls the three sources at once, one thread each, as ``earshot run``'s scheduler
does, and ends when all three are done. The ideal cycle time is what the limits allow for
the requests each source made: ``max((n - burst) * interval, n * 50 ms) + 50 ms`` for the
slowest source (the bucket starts full: cycles are spaced to let it refill). Target (issue
16): cycle / ideal <= 1.1 at the median of the cycles (at least 3; min, median and worst
are printed: on a shared machine the worst cycle measures the neighbours too). Memory:
resident set size after each cycle (target: flat).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchlib import Payloads, header, rss_mb, table, verdict

from earshot.config.service import poll_source
from earshot.config.settings import Secrets, parse_settings
from earshot.config.wiring import Earshot, build
from earshot.listener.pipeline import PollReport
from earshot.listener.sources import AppStoreSource, HackerNewsSource, RedditSource
from tests.fakeapi import FakeAPI, json_answer

TARGET = 1.1
LATENCY = 0.05
BURST = 5


class World:
    """The fake API's content: new items every cycle, each naming one of the queries."""

    def __init__(self, terms: Sequence[str], seed: int = 10) -> None:
        self.payloads = Payloads(seed)
        self.terms = list(terms)
        self.rng = random.Random(seed)
        self.n = 0
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()

    def _take(self) -> int:
        with self.lock:
            self.n += 1
            return self.n

    def _named(self, item: dict[str, Any], field: str, term: str) -> None:
        item[field] = f"{term} {item[field]}"

    def hn(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        time.sleep(LATENCY)
        term = params.get("query", "")
        with self.lock:
            cycle = self.seen[term] = self.seen.get(term, -1) + 1
        hits = []
        # about one term in four has a new hit each cycle
        if zlib.crc32(f"{term}:{cycle}".encode()) % 4 == 0:
            hit = self.payloads.hn_hit(self._take())
            key = "title" if hit.get("title") else "comment_text"
            self._named(hit, key, term)
            hits.append(hit)
        return json_answer({"hits": hits, "nbHits": len(hits), "nbPages": 1, "page": 0})

    def reddit(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        time.sleep(LATENCY)
        post = path.endswith("/new.json")
        children = []
        for _ in range(10):
            child = self.payloads.reddit_child(self._take(), post=post)
            self._named(child["data"], "title" if post else "body", self.rng.choice(self.terms))
            children.append(child)
        children.sort(key=lambda c: -c["data"]["created_utc"])
        return json_answer({"kind": "Listing", "data": {"children": children, "after": None}})

    def appstore(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        time.sleep(LATENCY)
        if "/page=1/" not in path:
            return json_answer({"feed": {}})
        entries = [self.payloads.review(self._take()) for _ in range(20)]
        return json_answer({"feed": {"entry": entries[::-1]}})


def make_app(
    base: str, database: str, queries: list[str], subs: int, countries: int, scale: float
) -> Earshot:
    settings = parse_settings(
        {
            "product": {"name": "Acme", "queries": queries},
            "sources": [
                {
                    "type": "hackernews",
                    "base_url": base + "/hn",
                    "backfill": "30d",
                    "requests_per_minute": HackerNewsSource.default_requests_per_minute * scale,
                },
                {
                    "type": "reddit",
                    "base_url": base + "/reddit",
                    "subreddits": [f"sub{i}" for i in range(subs)],
                    "backfill": "30d",
                    "requests_per_minute": RedditSource.default_requests_per_minute * scale,
                },
                {
                    "type": "appstore",
                    "base_url": base + "/apple",
                    "app_id": 284815942,
                    "countries": [
                        f"{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(countries)
                    ],
                    "backfill": "30d",
                    "requests_per_minute": AppStoreSource.default_requests_per_minute * scale,
                },
            ],
        }
    )
    return build(settings, Secrets(), database=database)


def serve(nqueries: int) -> None:
    """The fake API, in its own process (so earshot's memory is measured alone)."""
    world = World([f"widget{i}" for i in range(nqueries)])
    with FakeAPI() as api:
        api.route(r"^/hn/search_by_date", world.hn)
        api.route(r"^/reddit/r/", world.reddit)
        api.route(r"^/apple/", world.appstore)
        print(api.base_url, flush=True)
        while True:
            with api._lock:
                api.calls.clear()
            if sys.stdin.readline() == "":  # the benchmark is done
                return


def ideal_seconds(requests: int, interval: float) -> float:
    """What a bucket of ``BURST`` at one request per ``interval`` allows for ``requests``."""
    return max(max(0, requests - BURST) * interval, requests * LATENCY) + LATENCY


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 queries")
    parser.add_argument("--queries", type=int)
    parser.add_argument("--cycles", type=int)
    parser.add_argument("--scale", type=float, default=5.0, help="multiply every budget")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("earshot").setLevel(logging.ERROR)
    nqueries = args.queries or (50 if args.quick else 1000)
    if args.serve:
        serve(nqueries)
        return 0
    cycles = max(3, args.cycles or 3)
    subs, countries = (3, 3) if args.quick else (20, 30)
    queries = [f"widget{i}" for i in range(nqueries)]
    header("Poll fan-out: queries x sources, 50 ms fake API, rate limits", args.quick)
    print(
        f"# {nqueries:,} queries; HN 1 request/term, Reddit {subs} subreddits x 2 listings, "
        f"App Store {countries} countries x 2 pages; budgets x{args.scale:g}, burst {BURST}"
    )
    rows: list[list[object]] = []
    rss: list[float] = []
    ratios: list[float] = []
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--queries", str(nqueries)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdin is not None
    base = server.stdout.readline().strip()
    with tempfile.TemporaryDirectory() as tmp:
        app = make_app(
            base, f"sqlite:///{Path(tmp) / 'poll.db'}", queries, subs, countries, args.scale
        )
        intervals = {s.key: s.http.limiter.interval for s in app.sources}
        refill = BURST * max(intervals.values())
        rss.append(rss_mb())
        try:
            with ThreadPoolExecutor(len(app.sources)) as pool:
                for cycle in range(cycles):
                    time.sleep(refill)  # every bucket full again, as between scheduled polls
                    server.stdin.write("\n")
                    server.stdin.flush()
                    started = time.perf_counter()
                    # as the service's scheduled polls do (free memory back after each)
                    reports: list[PollReport] = list(
                        pool.map(lambda s: poll_source(app, s, force=True), app.sources)
                    )
                    seconds = time.perf_counter() - started
                    errors = [e for r in reports for e in r.errors]
                    if errors:
                        raise RuntimeError(f"poll errors: {errors[:3]}")
                    ideal = max(ideal_seconds(r.requests, intervals[r.source]) for r in reports)
                    rss.append(rss_mb())
                    ratios.append(seconds / ideal)
                    rows.append(
                        [
                            cycle + 1,
                            sum(r.requests for r in reports),
                            " / ".join(str(r.requests) for r in reports),
                            sum(r.stored for r in reports),
                            ideal,
                            seconds,
                            seconds / ideal,
                            rss[-1],
                        ]
                    )
        finally:
            app.close()
            server.stdin.close()
            server.wait(timeout=30)
    print(
        table(
            [
                "cycle",
                "requests",
                "HN / Reddit / AppStore",
                "stored",
                "ideal s",
                "cycle s",
                "cycle/ideal",
                "RSS MB",
            ],
            rows,
        )
    )
    worst = max(ratios)
    middle = statistics.median(ratios)
    growth = rss[-1] - rss[1]
    print(
        f"cycle/ideal min {min(ratios):.3f}, median {middle:.3f}, worst {worst:.3f}: "
        f"target <= {TARGET} at the median: {verdict(middle <= TARGET)}"
    )
    flat = growth <= max(10.0, 0.05 * rss[1])
    print(
        f"RSS before {rss[0]:.0f} MB, after cycle 1 {rss[1]:.0f} MB, after cycle {cycles} "
        f"{rss[-1]:.0f} MB (+{growth:.1f} MB since cycle 1): flat: {verdict(flat)}"
    )
    print(json.dumps({"cycle_over_ideal": round(worst, 3), "rss_growth_mb": round(growth, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
