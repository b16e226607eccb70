"""Scale: the cost of a new mention through the whole poll path, with 10k and 1M stored.

Run from the repository root::

    .venv/bin/python benchmarks/bench_scale.py --db sqlite    # 10k and 1M stored, < 5 min
    .venv/bin/python benchmarks/bench_scale.py --db postgres  # the same on PostgreSQL
    .venv/bin/python benchmarks/bench_scale.py --quick        # 2k and 20k, SQLite (CI)

For each database and size, a database of the benchmark's own (a SQLite file in a temporary
folder; on PostgreSQL a new schema in ``earshot_bench``, never the test suite's ``test``)
is migrated to head (``ensure_schema``, so the indexes are earshot's) and filled in SQL
(``generate_series`` on PostgreSQL, a recursive CTE on SQLite; a million rows in well under
a minute): mentions shaped like earshot's own (three sources, the labelled texts, a small
``raw``, one every 30 seconds over the past year), half of them alerted with a sent outbox
row in the alerts channel created when the mention was; PostgreSQL is then ``ANALYZE``d,
as autovacuum would.

Each measure runs in a fresh process (so its memory is the poll's alone) that builds the
app ``config/wiring.py`` builds (three sources: Hacker News, Reddit and the App Store, over
an ``httpx.MockTransport`` serving ``bench_ingest``'s real-shaped pages; the wired
classifier, relevance, and alert storms on, as by default) and polls every source with
``Pipeline.poll``: one round to warm up, then ``--rounds`` timed rounds of 230 new mentions
(plus repeats from the round before). It reports ms per new mention by wall time, by its
own CPU time and, on PostgreSQL, by the CPU time of the server backends serving the
benchmark's database (read from ``/proc`` when the server runs on this host), and its peak
RSS; then it takes back what it added, so every measure sees the same size. The sizes are
measured in ``--pairs`` interleaved pairs (at least 3): small, large, small, large...; the
ratio large/small is taken per pair, and min and median are printed.

Targets (issue 16): the median ratio <= 1.2 from 10k to 1M on each database, judged on CPU
time since the machine is shared (SQLite: the measuring process's, which does the
database's work too; PostgreSQL: the process's plus the backends', or the wall time when
the server is not on this host); and the RSS of the polling process at the largest size,
after its polls, <= 150 MB (its peak is printed beside). A miss is reported; the exit
status is non-zero only when the benchmark did not run or a mention was not stored
exactly once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchlib import (
    Stopwatch,
    header,
    load_texts,
    median,
    min_median,
    peak_rss_mb,
    postgres_schema,
    rss_mb,
    table,
    verdict,
)
from sqlalchemy import text

from earshot.config.migrations import ensure_schema
from earshot.listener.store import Store

RATIO_TARGET = 1.2
RSS_TARGET = 150.0
SOURCES = ("hackernews", "reddit", "appstore")
ALERTS = "#cx-alerts"


# --- filling ------------------------------------------------------------------------------


def fill(store: Store, size: int) -> None:
    """``size`` stored mentions (and a sent alert for every other one), in SQL."""
    texts = load_texts()
    postgres = store.dialect == "postgresql"
    base = (datetime.now(UTC) - timedelta(seconds=30 * size + 86_400)).timestamp()
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TEMP TABLE bench_texts "
                "(i INTEGER PRIMARY KEY, body TEXT, label TEXT, score FLOAT)"
            )
        )
        conn.execute(
            text("INSERT INTO bench_texts VALUES (:i, :body, :label, :score)"),
            [
                {
                    "i": i,
                    "body": f"Acme {t.text}",
                    "label": "negative"
                    if t.score < -0.5
                    else "positive"
                    if t.score > 0.5
                    else "neutral",
                    "score": t.score / 4,
                }
                for i, t in enumerate(texts)
            ],
        )
        if postgres:
            series = "generate_series(0, :size - 1) AS s(n)"
            stamp = "to_timestamp(:base + n * 30)"
            now, json_raw, empty = "now()", "json_build_object('id', n)", "'[]'::json"
        else:
            series = (
                "(WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq "
                "WHERE n < :size - 1) SELECT n FROM seq) AS s"
            )
            stamp = "datetime(:base + n * 30, 'unixepoch') || '.000000'"
            now = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
            json_raw, empty = "json_object('id', n)", "'[]'"
        conn.execute(
            text(
                "INSERT INTO mentions (source, external_id, url, author, site, title, text, "
                "created_at, fetched_at, rating, language, matched_query, raw, "
                "sentiment_label, sentiment_score, sentiment_reasons, intents, status) "
                "SELECT CASE n % 3 WHEN 0 THEN 'hackernews' WHEN 1 THEN 'reddit' "
                "ELSE 'appstore' END, 'fill-' || n, 'https://example.com/' || n, "
                "'user' || (n % 5000), 'example.com', '', t.body, "
                f"{stamp}, {now}, CASE WHEN n % 3 = 2 THEN 1 + n % 5 END, 'en', 'acme', "
                f"{json_raw}, t.label, t.score, {empty}, {empty}, "
                "CASE WHEN n % 2 = 0 THEN 'alerted' ELSE 'new' END "
                f"FROM {series} JOIN bench_texts t ON t.i = n % :count"
            ),
            {"size": size, "base": base, "count": len(texts)},
        )
        conn.execute(
            text(
                "INSERT INTO outbox (idempotency_key, mention_id, channel, kind, payload, "
                "status, attempts, next_attempt_at, created_at, sent_at, message_channel, "
                "message_ts, verify) "
                "SELECT 'alert:' || source || ':' || external_id || ':' || :channel, id, "
                f"'{ALERTS}', 'alert', {empty}, 'sent', 1, created_at, created_at, "
                "created_at, 'C0ALERTS01', '1700000000.000100', "
                f"{'false' if postgres else '0'} FROM mentions WHERE status = 'alerted'"
            ),
            {"channel": ALERTS},
        )
        conn.execute(text("DROP TABLE bench_texts"))
    if postgres:
        with store.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


# --- one measure, in its own process --------------------------------------------------------


def _proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process on this host (``None``: not readable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(store: Store) -> dict[int, float] | None:
    """CPU seconds so far of each PostgreSQL backend serving this database, when the server
    runs on this host (``None``: SQLite, or the backends' /proc is not readable)."""
    if store.dialect != "postgresql":
        return None
    with store.engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        found = {int(pid): _proc_cpu(int(pid)) for pid in pids}
    readable = {pid: cpu for pid, cpu in found.items() if cpu is not None}
    return readable or None


def server_seconds(before: dict[int, float] | None, after: dict[int, float] | None) -> float:
    """The backends' CPU seconds between two readings (backends started since count whole)."""
    if before is None or after is None:
        return float("nan")
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def measure(url: str, rounds: int, seed: int) -> dict[str, float]:
    """Poll ``rounds`` timed rounds (after one warm-up round); ms per new mention and RSS."""
    from bench_ingest import PER_ROUND, earshot_feed_app

    logging.disable(logging.WARNING)
    store = Store.from_url(url)
    with store.engine.connect() as conn:
        first_mention = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM mentions")).scalar()
        first_outbox = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM outbox")).scalar()
    feed, app = earshot_feed_app(url, (rounds + 1) * PER_ROUND, seed)
    stored = 0
    try:
        app.pipeline.classifier.classify("warm up the classifier")
        feed.current = 0
        for source in app.sources:  # warm-up: relevance's first read, caches
            app.pipeline.poll(source, force=True)
        before = server_cpu(store)
        with Stopwatch() as watch:
            for index in range(1, len(feed.rounds)):
                feed.current = index
                for source in app.sources:
                    report = app.pipeline.poll(source, force=True)
                    if report.errors:
                        raise RuntimeError(f"{source.key}: {report.errors}")
                    stored += report.stored
        server = server_seconds(before, server_cpu(store))
        rss, rss_now = peak_rss_mb(), rss_mb()
        expected = (len(feed.rounds) - 1) * PER_ROUND
    finally:
        app.close()
    # Take back what this process added, so every measure sees the same size.
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM outbox WHERE id > :id"), {"id": first_outbox})
        conn.execute(text("DELETE FROM mentions WHERE id > :id"), {"id": first_mention})
        conn.execute(text("DELETE FROM cursors"))
        conn.execute(text("DELETE FROM source_state"))
    store.engine.dispose()
    return {
        "stored": float(stored),
        "expected": float(expected),
        "wall_ms": 1e3 * watch.timed.wall / max(1, stored),
        "cpu_ms": 1e3 * watch.timed.cpu / max(1, stored),
        "server_ms": 1e3 * server / max(1, stored),
        "total_cpu_ms": 1e3 * (watch.timed.cpu + server) / max(1, stored),
        "rss_mb": rss,
        "rss_now_mb": rss_now,
    }


def run_measure(url: str, rounds: int, seed: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--measure", url, "--rounds", str(rounds)]
    command += ["--seed", str(seed)]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"bench_scale: measuring {url} failed (exit {out.returncode})")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# --- one database ----------------------------------------------------------------------------


@contextmanager
def databases(kind: str, sizes: Sequence[int], tmp: str) -> Iterator[list[str] | None]:
    """One empty database per size (``None``: PostgreSQL is not reachable)."""
    if kind == "sqlite":
        yield [f"sqlite:///{Path(tmp) / f'scale{size}.db'}" for size in sizes]
        return
    with postgres_schema() as first:
        if first is None:
            yield None
            return
        if len(sizes) == 1:
            yield [first]
            return
        with postgres_schema() as second:
            assert second is not None
            yield [first, second]


def bench_database(kind: str, sizes: Sequence[int], pairs: int, rounds: int) -> bool | None:
    """Fill, measure in interleaved pairs, print; whether every mention was stored once
    (``None``: skipped)."""
    name = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[kind]
    with tempfile.TemporaryDirectory() as tmp, databases(kind, sizes, tmp) as urls:
        if urls is None:
            return None
        fills = []
        for url, size in zip(urls, sizes, strict=True):
            store = Store.from_url(url)
            ensure_schema(store.engine)
            started = time.perf_counter()
            fill(store, size)
            fills.append(time.perf_counter() - started)
            store.engine.dispose()
        samples: list[list[dict[str, float]]] = [[] for _ in sizes]
        for pair in range(pairs):
            for index, url in enumerate(urls):
                seed = 10 + pair  # each pair its own texts; both sizes of a pair the same
                samples[index].append(run_measure(url, rounds, seed))
    ok = all(s["stored"] == s["expected"] for runs in samples for s in runs)
    postgres = kind == "postgres"
    server_known = postgres and all(s["server_ms"] == s["server_ms"] for r in samples for s in r)
    clocks = [("wall_ms", "wall"), ("cpu_ms", "CPU, this process")]
    if server_known:
        clocks += [("server_ms", "CPU, PostgreSQL backends"), ("total_cpu_ms", "CPU, both")]
    rows: list[list[object]] = []
    for size, fill_s, runs in zip(sizes, fills, samples, strict=True):
        rows.append(
            [f"{size:,}", fill_s]
            + [min_median([s[clock] for s in runs]) for clock, _ in clocks]
            + [max(s.get("rss_now_mb", float("nan")) for s in runs)]
            + [max(s["rss_mb"] for s in runs)]
        )
    print(f"## {name} (ms per new mention: min / median)")
    heads = ["stored", "fill s", *(label for _, label in clocks), "RSS MB at end", "peak"]
    print(table(heads, rows))
    small, large = samples[0], samples[-1]
    # CPU time is the truer figure on a shared machine: SQLite works in this process; the
    # PostgreSQL backends' CPU is read from /proc when the server runs on this host (else
    # only the wall time holds the server's share).
    judged = "total_cpu_ms" if server_known else "wall_ms" if postgres else "cpu_ms"
    for clock, label in clocks:
        ratios = [b[clock] / a[clock] for a, b in zip(small, large, strict=True)]
        line = (
            f"{name}: cost per new mention at {sizes[-1]:,} vs {sizes[0]:,} stored, {label}: "
            f"min {min(ratios):.2f}x, median {median(ratios):.2f}x over {len(ratios)} pairs"
        )
        if clock == judged:
            line += f", target <= {RATIO_TARGET}: {verdict(median(ratios) <= RATIO_TARGET)}"
        print(line)
    rss = max(s["rss_now_mb"] for s in large)
    peak = max(s["rss_mb"] for s in large)
    print(
        f"{name}: RSS of the polling process (three sources) at {sizes[-1]:,} stored: "
        f"{rss:.0f} MB after its polls (peak {peak:.0f} MB), target <= {RSS_TARGET:.0f} MB: "
        f"{verdict(rss <= RSS_TARGET)}"
    )
    if not ok:
        print(f"# ERROR ({name}): a measure did not store every new mention exactly once")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k and 20k stored mentions")
    parser.add_argument("--sizes", help="comma-separated sizes (default 10000,1000000)")
    parser.add_argument(
        "--db",
        choices=("sqlite", "postgres", "both"),
        help="the database(s) to measure (default both; with --quick, sqlite)",
    )
    parser.add_argument("--pairs", type=int, default=3, help="interleaved pairs (>= 3)")
    parser.add_argument("--rounds", type=int, help="timed rounds of 230 new mentions")
    parser.add_argument("--seed", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 4)
    if args.measure:
        print(json.dumps(measure(args.measure, rounds, args.seed)))
        return 0
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [2_000, 20_000] if args.quick else [10_000, 1_000_000]
    pairs = max(3, args.pairs)
    began = time.perf_counter()
    header("Scale: a new mention through the poll path with N stored", args.quick)
    print(
        f"# sizes {', '.join(f'{s:,}' for s in sizes)}; {pairs} interleaved pairs, each "
        f"measure a fresh process polling 3 sources, {rounds} timed rounds of 230 new "
        f"mentions; storms on; min / median"
    )
    db = args.db or ("sqlite" if args.quick else "both")
    kinds = ("sqlite", "postgres") if db == "both" else (db,)
    ok = True
    for kind in kinds:
        result = bench_database(kind, sizes, pairs, rounds)
        ok = ok and result is not False
    print(f"# {time.perf_counter() - began:.0f} s in all")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
