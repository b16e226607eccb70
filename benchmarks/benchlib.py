"""What the benchmarks share: real-shaped payloads, memory readings, PostgreSQL schemas, tables.

Not a test helper: the benchmarks are scripts that print figures (see README "Benchmarks").
Run them from the repository root with the project's venv, e.g.
``.venv/bin/python benchmarks/bench_ingest.py --quick``.
"""

from __future__ import annotations

import copy
import html
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # for tests.fakeslack / tests.fakeapi
    sys.path.insert(0, str(ROOT))

REAL = ROOT / "tests" / "fixtures" / "real"
SENTIMENT = ROOT / "tests" / "fixtures" / "sentiment"
DATA = Path(__file__).resolve().parent / "data"
TEXT_FILES = ("tweets_GroundTruth.txt", "amazonReviewSnippets_GroundTruth.txt")

#: The PostgreSQL server's maintenance database, used only to create the benchmarks' own.
POSTGRES_ADMIN_URL = os.environ.get(
    "EARSHOT_BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
#: The benchmarks' own database (created when missing): never the test suite's ``test``.
POSTGRES_BENCH_DB = os.environ.get("EARSHOT_BENCH_POSTGRES_DB", "earshot_bench")

#: The product the generated mentions talk about, and the queries that find it.
PRODUCT = "Acme"
QUERIES = ['acme -"acme corp"', '"acme cloud"']


# --- machine and memory -------------------------------------------------------------------


def rss_mb() -> float:
    """Resident memory of this process now, in MB (VmRSS; ru_maxrss where /proc is missing)."""
    return _status_kb("VmRSS") / 1024


def peak_rss_mb() -> float:
    """The highest resident memory of this process so far, in MB (VmHWM)."""
    return _status_kb("VmHWM") / 1024


def _status_kb(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def machine() -> str:
    """One line: CPU model, cores, memory, OS, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = float(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, "
        f"Python {sys.version.split()[0]}"
    )


def header(title: str, quick: bool) -> None:
    print(f"# {title}{' (--quick)' if quick else ''}")
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M UTC}, {machine()}")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@dataclass(frozen=True)
class Timed:
    """Wall time (``perf_counter``) and this process's CPU time (``process_time``), in s."""

    wall: float
    cpu: float


class Stopwatch:
    """``with Stopwatch() as watch: ...`` then ``watch.timed``: wall and process CPU time."""

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timed = Timed(time.perf_counter() - self._wall, time.process_time() - self._cpu)


def min_median(values: Sequence[float]) -> str:
    """``min / median`` of the values, for a table cell."""
    return f"{_fmt(float(min(values)))} / {_fmt(float(median(values)))}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, columns right-aligned except the first."""
    cells = [[str(h) for h in headers], *[[_fmt(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}" if value < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# --- PostgreSQL ---------------------------------------------------------------------------


def postgres_bench_url() -> str | None:
    """The URL of the benchmarks' own database (``earshot_bench``, created when missing);
    None, with a line saying why, when no PostgreSQL server answers."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from earshot.listener.store import normalize_database_url

    admin_url = normalize_database_url(POSTGRES_ADMIN_URL)
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": POSTGRES_BENCH_DB},
            ).first()
            if found is None:
                conn.execute(text(f'CREATE DATABASE "{POSTGRES_BENCH_DB}"'))
        admin.dispose()
    except Exception as exc:
        print(f"# PostgreSQL not reachable ({type(exc).__name__}: {str(exc)[:120]}): skipped")
        return None
    url: str = make_url(admin_url).set(database=POSTGRES_BENCH_DB).render_as_string(False)
    return url


@contextmanager
def postgres_schema() -> Iterator[str | None]:
    """A private, empty schema in the benchmarks' own PostgreSQL database (dropped after);
    None without a server."""
    from sqlalchemy import create_engine, text

    base = postgres_bench_url()
    if base is None:
        yield None
        return
    admin = create_engine(base)
    schema = f"earshot_bench_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# --- real-shaped mentions -----------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A labelled text (tweet or Amazon snippet) with its gold score (-4 … +4)."""

    text: str
    score: float


def load_texts() -> list[Text]:
    """The labelled texts: benchmarks/data if present, else tests/fixtures/sentiment."""
    from earshot.listener.evaluation import load_examples

    folder = DATA if DATA.is_dir() and any(DATA.glob("*.txt")) else SENTIMENT
    files = sorted(folder.glob("*.txt")) if folder is DATA else [SENTIMENT / f for f in TEXT_FILES]
    texts = []
    for path in files:
        for example in load_examples(path):
            if example.text.strip():
                texts.append(Text(example.text, float(example.score or 0.0)))
    return texts


def _real(relative: str) -> Any:
    return json.loads((REAL / relative).read_text("utf-8"))


class Payloads:
    """Real captured payloads as templates, filled with labelled texts and distinct ids.

    Every text gets the product name at a random word position, so the configured queries
    match it the way they match a real mention (word boundaries, the whole pipeline).
    Timestamps grow with the item number, so each page is newer than the last one.
    """

    def __init__(self, seed: int = 10, start: float | None = None) -> None:
        self.rng = random.Random(seed)
        self.texts = load_texts()
        self.start = start if start is not None else datetime.now(UTC).timestamp() - 2 * 86400
        hn = _real("hn_algolia/search_by_date_story_query_apple.json")["hits"]
        hn += _real("hn_algolia/search_by_date_comment_query_apple.json")["hits"]
        self.hn_story = next(h for h in hn if "story" in h["_tags"])
        self.hn_comment = next(h for h in hn if "comment" in h["_tags"])
        self.reddit_comments = [
            c for c in _real("reddit/r_kakapo_comments_page1.json")["data"]["children"]
        ]
        self.reddit_posts = [
            c
            for c in _real("reddit/search_r_all_sort_relevance.json")["data"]["children"]
            if c.get("kind") == "t3"
        ]
        self.reviews = [
            e
            for e in _real("appstore/customerreviews_us_id284815942_json.json")["feed"]["entry"]
            if "im:rating" in e
        ]

    def text(self, n: int) -> Text:
        """The ``n``-th labelled text (cycling), with the product name in it."""
        base = self.texts[n % len(self.texts)]
        words = base.text.split(" ")
        at = self.rng.randrange(len(words) + 1)
        words.insert(at, PRODUCT if self.rng.random() < 0.7 else PRODUCT.lower())
        return Text(" ".join(words), base.score)

    def when(self, n: int) -> float:
        return self.start + n

    def hn_hit(self, n: int) -> dict[str, Any]:
        text = self.text(n).text
        if n % 5 == 0:
            hit = copy.deepcopy(self.hn_story)
            hit["title"] = text[:200]
            hit["story_text"] = html.escape(text) if len(text) > 200 else ""
            hit["_highlightResult"]["title"]["value"] = html.escape(text[:200])
            # Each story links to an article of its own (one shared link would be one story).
            hit["url"] = f"{self.hn_story['url']}?n={n}"
        else:
            hit = copy.deepcopy(self.hn_comment)
            hit["comment_text"] = html.escape(text).replace("\n", "<p>")
            hit["_highlightResult"]["comment_text"]["value"] = hit["comment_text"]
        stamp = int(self.when(n))
        hit["objectID"] = str(40_000_000 + n)
        hit["created_at_i"] = stamp
        hit["created_at"] = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        hit["_tags"] = [hit["_tags"][0], f"author_{hit['author']}", f"story_{40_000_000 + n}"]
        return hit

    def reddit_child(self, n: int, post: bool = False) -> dict[str, Any]:
        text = self.text(n).text
        templates = self.reddit_posts if post else self.reddit_comments
        child = copy.deepcopy(templates[n % len(templates)])
        item = child["data"]
        rid = _base36(50_000_000 + n)
        item["id"] = rid
        item["name"] = f"{child['kind']}_{rid}"
        item["created_utc"] = item["created"] = self.when(n)
        if post:
            item["title"] = text[:300]
            item["selftext"] = text if len(text) > 300 else ""
        else:
            item["body"] = text
            item["body_html"] = f'&lt;div class="md"&gt;&lt;p&gt;{html.escape(text)}&lt;/p&gt;'
        return child

    def review(self, n: int) -> dict[str, Any]:
        labelled = self.text(n)
        entry = copy.deepcopy(self.reviews[n % len(self.reviews)])
        rating = max(1, min(5, round(3 + labelled.score)))
        entry["id"]["label"] = str(9_000_000_000 + n)
        entry["im:rating"]["label"] = str(rating)
        entry["updated"]["label"] = datetime.fromtimestamp(self.when(n), UTC).isoformat()
        words = labelled.text.split()
        entry["title"]["label"] = " ".join(words[:6])
        entry["content"]["label"] = labelled.text
        return entry


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out or "0"
