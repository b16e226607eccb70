"""A synthetic week of mentions with daily cycles (fixed seed), stored through the real Store.

Used by tests/test_digest.py, tests/test_spikes.py and scripts/digest_chart_example.py.
Hourly volume per query follows a daytime curve (quiet nights, a peak in the afternoon)
with Poisson noise; sentiment labels and scores are drawn with fixed weights.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from earshot.listener.models import Mention
from earshot.listener.store import Route, Store

#: Monday 2026-11-16 00:00 UTC: the first hour of the week.
WEEK_START = datetime(2026, 11, 16, tzinfo=UTC)
SEED = 20261116

QUERIES = {"checkout": 1.0, '"acme app"': 0.6}
SOURCES = ("hackernews", "reddit", "appstore")
LABELS = (("negative", 0.3), ("positive", 0.25), ("neutral", 0.35), ("mixed", 0.1))


def hourly_rate(hour_of_day: int, scale: float = 1.0) -> float:
    """Expected mentions in an hour: about 1 at night, about 13 at the 14:00 peak."""
    day = max(0.0, math.sin(math.pi * (hour_of_day - 6) / 16)) if 6 <= hour_of_day <= 22 else 0.0
    return scale * (1.0 + 12.0 * day)


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth), deterministic for a seeded ``rng``."""
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass
class Counter_:
    n: int = 0

    def next(self) -> int:
        self.n += 1
        return self.n


_IDS = Counter_()


def mention(
    rng: random.Random,
    created: datetime,
    query: str | None,
    *,
    source: str | None = None,
    label: str | None = None,
) -> Mention:
    """One synthetic mention created at ``created``."""
    source = source or rng.choice(SOURCES)
    if label is None:
        r, label = rng.random(), "neutral"
        for name, weight in LABELS:
            if r < weight:
                label = name
                break
            r -= weight
    score = {
        "negative": -rng.uniform(0.5, 1.0),
        "positive": rng.uniform(0.5, 1.0),
        "neutral": rng.uniform(-0.3, 0.3),
        "mixed": rng.uniform(-0.2, 0.2),
    }.get(label, 0.0)
    n = _IDS.next()
    rating = None
    if source == "appstore":
        rating = {"negative": 1, "mixed": 3, "neutral": 3, "positive": 5}[label]
    return Mention(
        source=source,
        external_id=f"syn-{n}",
        url=f"https://example.test/{source}/{n}",
        author=f"user{n % 97}",
        title=f"{label} post {n} about {query or 'the app'}",
        text=f"synthetic {label} text {n}",
        created_at=created,
        fetched_at=created + timedelta(minutes=3),
        matched_query=query,
        sentiment_label=label,
        sentiment_score=round(score, 4),
        rating=rating,
        # The model's defaults, given: a default_factory costs SQLModel an inspect.signature
        # call per field and mention (0.5 ms a mention with them, 0.14 ms without).
        raw={},
        sentiment_reasons=[],
        intents=[],
    )


def week(
    seed: int = SEED, days: int = 7, start: datetime = WEEK_START, scale: float = 1.0
) -> list[Mention]:
    """Every mention of the synthetic week, oldest first."""
    rng = random.Random(seed)
    out: list[Mention] = []
    for hour in range(days * 24):
        at = start + timedelta(hours=hour)
        for query, weight in QUERIES.items():
            for _ in range(poisson(rng, hourly_rate(at.hour, scale * weight))):
                created = at + timedelta(seconds=rng.randrange(3600))
                out.append(mention(rng, created, query))
    out.sort(key=lambda m: m.created_at)
    return out


def burst(
    at: datetime, count: int, query: str = "checkout", label: str = "negative", seed: int = 7
) -> list[Mention]:
    """``count`` mentions of ``query`` within the hour before ``at``, mostly ``label``."""
    rng = random.Random(seed)
    return [
        mention(
            rng,
            at - timedelta(seconds=rng.randrange(1, 3600)),
            query,
            label=label if i % 5 else "neutral",
        )
        for i in range(count)
    ]


def store_all(
    store: Store,
    mentions: Sequence[Mention],
    route: Callable[[Mention], Sequence[Route]] = lambda m: [],
) -> None:
    """Ingest through ``Store.ingest`` (dedupe, routes, outbox in one transaction)."""
    for start in range(0, len(mentions), 400):
        store.ingest(None, list(mentions[start : start + 400]), None, route)
