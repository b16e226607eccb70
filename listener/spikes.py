"""Spike detection: a query's mentions in the last hour against its EWMA baseline.

For each query (mentions without a query, such as App Store reviews, are grouped by source)
the hours before the current one are folded into an exponentially weighted moving average
and variance (weight ``alpha`` per hour, oldest first). The last hour is a spike when

    count >= min_count  and  count > mean + k * sigma

where ``sigma`` is at least the Poisson noise of the mean (``sqrt(mean)``) and at least 1, so
a quiet query does not fire on a handful of posts. Because the baseline follows the hours
before, the usual daily rise and fall moves it and widens ``sigma``: ordinary daily peaks do
not fire, a burst well above them does. A query needs a day of history (since its first
mention) before it can spike. After a spike of a query no other fires for it
during ``cooldown``; the cooldown is read back from the spike rows already in the outbox,
so it holds across restarts and replicas.

Spam and off-topic mentions (intent ``spam``) are not counted: a spam run is filtered, not
alerted.

Sentiment shifts (``find_shifts``, ``check_shifts``, outbox kind ``shift``) use the same
EWMA on a query's or tag's *negative share* per bucket (a UTC day by default): a share well
above its normal range, by at least a minimum jump, while the count is not a volume spike.

Everything is computed from the store and the ``now`` it is given (no hidden clock).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Text, cast, func, not_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from .digest import SPAM_JSON, Item, tag_of
from .models import Delivery, Intent, Label, Mention, as_utc, utcnow
from .store import Store

__all__ = [
    "KIND_SHIFT",
    "KIND_SPIKE",
    "Shift",
    "ShiftConfig",
    "Spike",
    "SpikeConfig",
    "check_shifts",
    "check_spikes",
    "ewma",
    "find_shifts",
    "find_spikes",
]

KIND_SPIKE = "spike"
#: Hours of history (since a query's first mention) before it can spike.
MIN_HISTORY = 24


@dataclass(frozen=True)
class SpikeConfig:
    """``[spikes]`` as plain values.

    * **k** - how many standard deviations above the baseline count as a spike.
    * **min_count** - fewer mentions in the hour never count as a spike.
    * **cooldown** - after a spike of a query, no other spike alert for it this long.
    * **alpha** - EWMA weight of each new hour (0 < alpha <= 1).
    * **history** - how many hours before the current one make the baseline.
    * **top** - how many items a spike alert shows.
    """

    k: float = 3.0
    min_count: int = 10
    cooldown: timedelta = timedelta(hours=6)
    alpha: float = 0.1
    history: timedelta = timedelta(days=7)
    top: int = 3


@dataclass(frozen=True)
class Spike:
    """One detected spike."""

    group: str
    query: str | None
    source: str | None
    at: datetime
    count: int
    mean: float
    sigma: float
    label: str
    labels: dict[str, int]
    top: list[Item] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """How many times the baseline the count is (a baseline under 0.5/hour counts as 0.5)."""
        return self.count / max(self.mean, 0.5)

    @property
    def key(self) -> str:
        """The outbox key: one spike alert per group and hour, at most."""
        return f"spike:{self.group}:{self.at:%Y-%m-%dT%H}"

    @property
    def subject(self) -> str:
        return self.query if self.query is not None else f"{self.source} items"

    @property
    def headline(self) -> str:
        """E.g. ``negative spike: 42 mentions of 'checkout' in the last hour, 6x normal``."""
        return (
            f"{self.label} spike: {self.count} mentions of '{self.subject}' in the last hour, "
            f"{self.ratio:.0f}x normal"
        )

    def to_payload(self) -> dict[str, Any]:
        lines = [
            f"Baseline {self.mean:.1f}/hour (sigma {self.sigma:.1f}); "
            + ", ".join(f"{label} {n}" for label, n in sorted(self.labels.items())),
        ]
        lines += [f"{item.title} {item.url}".strip() for item in self.top]
        return {
            "title": self.headline,
            "lines": lines,
            "group": self.group,
            "query": self.query,
            "source": self.source,
            "at": self.at.isoformat(),
            "count": self.count,
            "mean": round(self.mean, 3),
            "sigma": round(self.sigma, 3),
            "ratio": round(self.ratio, 2),
            "label": self.label,
            "labels": self.labels,
            "top": [item.__dict__ for item in self.top],
        }


def ewma(values: Iterable[float], alpha: float) -> tuple[float, float]:
    """The exponentially weighted mean and standard deviation of ``values`` (oldest first).

    West's incremental form: ``diff = x - mean; mean += alpha * diff;
    var = (1 - alpha) * (var + alpha * diff**2)``. No values: ``(0.0, 0.0)``.
    """
    mean: float | None = None
    var = 0.0
    for value in values:
        if mean is None:
            mean = float(value)
            continue
        diff = value - mean
        incr = alpha * diff
        mean += incr
        var = (1.0 - alpha) * (var + diff * incr)
    return (mean or 0.0), math.sqrt(max(var, 0.0))


def baseline(history: Sequence[int], alpha: float) -> tuple[float, float] | None:
    """The expected count of the next hour and its standard deviation, from ``history``.

    ``history`` holds hourly counts, oldest first, the last one being the hour just before
    the one tested. Hours before the first mention are left out (a new query has no past).
    Two EWMAs are taken: over the hours (the recent level) and, once there are two days,
    over the same hour on the days before (the daily cycle). The baseline is the higher of
    the two means; ``sigma`` the widest of their deviations, ``sqrt(mean)`` and 1.

    ``None`` when the first mention is less than ``MIN_HISTORY`` hours back: a query needs
    a day of history before its hours can be called unusual.
    """
    first = next((i for i, n in enumerate(history) if n), len(history))
    hours = history[first:]
    if len(hours) < MIN_HISTORY:
        return None
    mean, sigma = ewma(hours, alpha)
    same_hour = [hours[i] for i in range(len(hours) - 24, -1, -24)][::-1]
    if len(same_hour) >= 2:
        daily_mean, daily_sigma = ewma(same_hour, alpha)
        mean, sigma = max(mean, daily_mean), max(sigma, daily_sigma)
    return mean, max(sigma, math.sqrt(max(mean, 0.0)), 1.0)


def _group(query: str | None, source: str) -> str:
    return query if query is not None else f"source:{source}"


def _dominant(labels: Counter[str]) -> str:
    if not labels:
        return Label.NEUTRAL.value
    order = {label: i for i, label in enumerate(("negative", "mixed", "positive", "neutral"))}
    return min(labels, key=lambda label: (-labels[label], order.get(label, 9), label))


def _pick_top(mentions: Sequence[Mention], label: str, limit: int) -> list[Item]:
    def score(m: Mention) -> float:
        return float(m.sentiment_score) if m.sentiment_score is not None else 0.0

    same = [m for m in mentions if (m.sentiment_label or "unscored") == label] or list(mentions)
    if label == Label.NEGATIVE:
        same.sort(key=lambda m: (score(m), -(m.id or 0)))
    elif label == Label.POSITIVE:
        same.sort(key=lambda m: (-score(m), -(m.id or 0)))
    else:
        same.sort(key=lambda m: (-(as_utc(m.created_at) or datetime.min).timestamp(), m.id or 0))
    return [Item.of(m) for m in same[:limit]]


def find_spikes(
    store: Store,
    now: datetime,
    config: SpikeConfig = SpikeConfig(),
    *,
    aliases: Mapping[str, str] | None = None,
) -> list[Spike]:
    """Every query whose last hour (``[now - 1h, now)``) is a spike, cooldown not applied.

    Hours are counted back from ``now`` by ``Mention.created_at``; ``aliases`` maps stored
    query texts (with exclusions) to the configured ones, so they count as one query.
    """
    now = as_utc(now) or utcnow()
    aliases = aliases or {}
    hours = max(1, int(config.history.total_seconds() // 3600))
    start = now - timedelta(hours=hours + 1)
    with Session(store.engine) as session:
        rows = session.exec(
            select(
                Mention.created_at, Mention.matched_query, Mention.source, Mention.intents
            ).where(col(Mention.created_at) >= start, col(Mention.created_at) < now)
        ).all()
    buckets: dict[str, list[int]] = {}
    meta: dict[str, tuple[str | None, str]] = {}
    for created_at, query, source, intents in rows:
        created = as_utc(created_at)
        if created is None or _spam(intents):
            continue
        query = aliases.get(query, query) if query is not None else None
        group = _group(query, source)
        meta.setdefault(group, (query, source))
        counts = buckets.setdefault(group, [0] * (hours + 1))
        back = int((now - created).total_seconds() // 3600)  # 0 = the last hour
        if 0 <= back <= hours:
            counts[hours - back] += 1
    spikes: list[Spike] = []
    for group, counts in sorted(buckets.items()):
        current = counts[-1]
        if current < config.min_count:
            continue
        expected = baseline(counts[:-1], config.alpha)
        if expected is None:
            continue
        mean, sigma = expected
        if current <= mean + config.k * sigma:
            continue
        query, source = meta[group]
        recent = _recent(store, now, query, source, aliases)
        labels = Counter(m.sentiment_label or "unscored" for m in recent)
        label = _dominant(labels)
        spikes.append(
            Spike(
                group=group,
                query=query,
                source=None if query is not None else source,
                at=now,
                count=current,
                mean=mean,
                sigma=sigma,
                label=label,
                labels=dict(sorted(labels.items())),
                top=_pick_top(recent, label, config.top),
            )
        )
    return spikes


def _recent(
    store: Store, now: datetime, query: str | None, source: str, aliases: Mapping[str, str]
) -> list[Mention]:
    with Session(store.engine) as session:
        stmt = select(Mention).where(
            col(Mention.created_at) >= now - timedelta(hours=1), col(Mention.created_at) < now
        )
        if query is None:
            stmt = stmt.where(col(Mention.matched_query).is_(None), Mention.source == source)
        else:
            texts = {query} | {k for k, v in aliases.items() if v == query}
            stmt = stmt.where(col(Mention.matched_query).in_(sorted(texts)))
        rows = [row for row in session.exec(stmt) if not _spam(row.intents)]
        for row in rows:
            session.expunge(row)
    return rows


def _spam(intents: Any) -> bool:
    return isinstance(intents, list) and Intent.SPAM.value in intents


def last_spikes(store: Store, limit: int = 1000) -> dict[str, datetime]:
    """When each group last had a spike alert queued (from the outbox)."""
    return _last_alerts(store, KIND_SPIKE, limit)


def _last_alerts(store: Store, kind: str, limit: int) -> dict[str, datetime]:
    """When each group last had an alert of ``kind`` queued: its payload's ``at``, read
    from the newest ``limit`` outbox rows of that kind (unreadable payloads are skipped)."""
    with Session(store.engine) as session:
        rows = session.exec(
            select(Delivery.payload)
            .where(Delivery.kind == kind)
            .order_by(col(Delivery.id).desc())
            .limit(limit)
        ).all()
    last: dict[str, datetime] = {}
    for payload in rows:
        try:
            group = str(payload["group"])
            at = as_utc(datetime.fromisoformat(str(payload["at"])))
        except (KeyError, TypeError, ValueError):
            continue
        if at is not None and (group not in last or at > last[group]):
            last[group] = at
    return last


def check_spikes(
    store: Store,
    channel: str,
    now: datetime | None = None,
    config: SpikeConfig = SpikeConfig(),
    *,
    aliases: Mapping[str, str] | None = None,
) -> list[Spike]:
    """Find spikes at ``now``, skip groups in their cooldown, queue an alert for the rest.

    Returns the spikes queued now. The outbox key (group and hour) keeps two replicas, or
    two runs in one hour, from queueing the same spike twice.
    """
    now = as_utc(now) or utcnow()
    last = last_spikes(store)
    queued: list[Spike] = []
    for spike in find_spikes(store, now, config, aliases=aliases):
        previous = last.get(spike.group)
        if previous is not None and now - previous < config.cooldown:
            continue
        if store.enqueue(spike.key, channel, KIND_SPIKE, spike.to_payload()):
            queued.append(spike)
    return queued


# --- sentiment shifts -----------------------------------------------------------------------

KIND_SHIFT = "shift"
_EPOCH = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday: weekly buckets start on Mondays


@dataclass(frozen=True)
class ShiftConfig:
    """``[shifts]`` as plain values.

    * **k** - how many standard deviations above its baseline the negative share must be
      (and how many above the volume baseline the count must not be).
    * **min_count** - a bucket with fewer (non-spam) mentions has no share: it neither
      alerts nor counts in the baseline.
    * **min_jump** - the least rise of the share over the baseline (0.15 = 15 points).
    * **bucket** - the length of a bucket (aligned to UTC midnight for a day).
    * **alpha** - EWMA weight of each new bucket.
    * **history** - how far back the baseline reads.
    * **min_history** - buckets with a share (``min_count`` mentions) the baseline needs.
    * **cooldown** - after a shift of a group, no other shift alert for it this long.
    * **top** - how many negative items an alert shows.
    """

    k: float = 3.0
    min_count: int = 20
    min_jump: float = 0.15
    bucket: timedelta = timedelta(days=1)
    alpha: float = 0.2
    history: timedelta = timedelta(days=28)
    min_history: int = 5
    cooldown: timedelta = timedelta(days=7)
    top: int = 3


@dataclass(frozen=True)
class Shift:
    """One detected sentiment shift: a group's negative share in one bucket."""

    group: str
    query: str | None
    tag: str | None
    source: str | None
    start: datetime
    end: datetime
    count: int
    negative: int
    mean: float
    sigma: float
    volume: float
    labels: dict[str, int]
    top: list[Item] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.negative / self.count if self.count else 0.0

    @property
    def key(self) -> str:
        """The outbox key: one shift alert per group and bucket, at most."""
        return f"shift:{self.group}:{self.start:%Y-%m-%dT%H:%M}"

    @property
    def subject(self) -> str:
        if self.tag is not None:
            return f"tag {self.tag}"
        return f"'{self.query}'" if self.query is not None else f"{self.source} items"

    @property
    def headline(self) -> str:
        """E.g. ``sentiment shift: 55% of 41 mentions of 'acme' negative, normally 20%``."""
        return (
            f"sentiment shift: {self.share:.0%} of {self.count} mentions of {self.subject} "
            f"negative, normally {self.mean:.0%} (volume normal)"
        )

    def to_payload(self) -> dict[str, Any]:
        detail = (
            f"Negative share {self.share:.0%} ({self.negative} of {self.count}) from "
            f"{self.start:%a %d %b %H:%M} to {self.end:%a %d %b %H:%M} UTC; baseline "
            f"{self.mean:.0%} (sigma {self.sigma:.0%}); volume baseline {self.volume:.1f} "
            "a bucket; " + ", ".join(f"{label} {n}" for label, n in sorted(self.labels.items()))
        )
        return {
            "title": self.headline,
            "lines": [detail] + [f"{item.title} {item.url}".strip() for item in self.top],
            "detail": detail,
            "group": self.group,
            "query": self.query,
            "tag": self.tag,
            "source": self.source,
            "start": self.start.isoformat(),
            "at": self.end.isoformat(),
            "count": self.count,
            "negative": self.negative,
            "share": round(self.share, 4),
            "mean": round(self.mean, 4),
            "sigma": round(self.sigma, 4),
            "volume": round(self.volume, 3),
            "label": Label.NEGATIVE.value,
            "labels": self.labels,
            "top": [item.__dict__ for item in self.top],
        }


def bucket_end(now: datetime, bucket: timedelta) -> datetime:
    """The end of the last complete bucket at ``now`` (buckets aligned to a UTC Monday
    midnight, so day buckets are UTC days)."""
    now = as_utc(now) or utcnow()
    done = (now - _EPOCH) // bucket
    return _EPOCH + done * bucket


def share_baseline(
    counts: Sequence[int], negatives: Sequence[int], config: ShiftConfig
) -> tuple[float, float] | None:
    """The expected negative share of the next bucket and its standard deviation.

    Only buckets with at least ``min_count`` mentions have a share; ``None`` when fewer
    than ``min_history`` of them. (``find_shifts`` widens the deviation to at least the
    binomial noise of the tested bucket's share, so a steady history does not make every
    wobble of a small bucket a shift.)
    """
    shares = [n / c for c, n in zip(counts, negatives, strict=True) if c >= config.min_count]
    if len(shares) < config.min_history:
        return None
    mean, sigma = ewma(shares, config.alpha)
    return mean, sigma


def _volume_spike(counts: Sequence[int], k: float, alpha: float) -> tuple[bool, float]:
    first = next((i for i, n in enumerate(counts[:-1]) if n), len(counts) - 1)
    mean, sigma = ewma(counts[first:-1], alpha)
    sigma = max(sigma, math.sqrt(max(mean, 0.0)), 1.0)
    return counts[-1] > mean + k * sigma, mean


def find_shifts(
    store: Store,
    now: datetime,
    config: ShiftConfig = ShiftConfig(),
    *,
    aliases: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[Shift]:
    """Every group whose negative share in the last complete bucket jumped beyond its normal
    range without a volume spike (cooldown not applied).

    Groups: each query (``aliases`` as in ``find_spikes``), each source's mentions without
    a query, and each tag of ``tags`` (query text -> tag; untagged queries and mentions
    without a query are ``ours``) that spans two groups or more. A bucket is a shift when
    it has ``min_count`` mentions, its share is above ``mean + k * sigma`` of the EWMA of
    the shares before, by at least ``min_jump``, and its count is not above the volume
    baseline's ``mean + k * sigma``. A tag's shift is left out when one of its groups
    shifted in the same bucket (that alert says it more precisely).
    """
    aliases = aliases or {}
    tags = tags or {}
    end = bucket_end(now, config.bucket)
    buckets = max(1, int(config.history / config.bucket))
    counts: dict[str, list[int]] = {}
    negatives: dict[str, list[int]] = {}
    labels: dict[str, Counter[str]] = {}
    meta: dict[str, tuple[str | None, str | None, str | None]] = {}
    members: dict[str, set[str]] = {}
    for index, query, source, label, n in _bucket_counts(store, end, buckets, config.bucket):
        query = aliases.get(query, query) if query is not None else None
        group = _group(query, source)
        tag = tag_of(query, tags) if tags else None
        names = [group] + ([f"tag:{tag}"] if tag is not None else [])
        meta.setdefault(group, (query, None, None if query is not None else source))
        if tag is not None:
            meta.setdefault(f"tag:{tag}", (None, tag, None))
            members.setdefault(f"tag:{tag}", set()).add(group)
        for name in names:
            counts.setdefault(name, [0] * (buckets + 1))[index] += n
            if label == Label.NEGATIVE.value:
                negatives.setdefault(name, [0] * (buckets + 1))[index] += n
            if index == buckets:
                labels.setdefault(name, Counter())[label or "unscored"] += n
    found: dict[str, Shift] = {}
    for name in sorted(counts, key=lambda n: (n.startswith("tag:"), n)):
        if name.startswith("tag:") and len(members.get(name, ())) < 2:
            continue
        count = counts[name]
        negative = negatives.get(name, [0] * (buckets + 1))
        current = count[-1]
        if current < config.min_count:
            continue
        expected = share_baseline(count[:-1], negative[:-1], config)
        if expected is None:
            continue
        mean, sigma = expected
        # At least the binomial noise of a share measured on this bucket's count.
        sigma = max(sigma, math.sqrt(max(mean * (1 - mean), 0.0) / current))
        share = negative[-1] / current
        if share - mean < config.min_jump or share <= mean + config.k * sigma:
            continue
        spike, volume = _volume_spike(count, config.k, config.alpha)
        if spike:
            continue
        if name.startswith("tag:") and members[name] & set(found):
            continue
        its_query, its_tag, its_source = meta[name]
        found[name] = Shift(
            group=name,
            query=its_query,
            tag=its_tag,
            source=its_source,
            start=end - config.bucket,
            end=end,
            count=current,
            negative=negative[-1],
            mean=mean,
            sigma=sigma,
            volume=volume,
            labels=dict(sorted(labels.get(name, Counter()).items())),
        )
    shifts = list(found.values())
    for i, shift in enumerate(shifts):
        recent = _bucket_mentions(store, shift, aliases, tags)
        shifts[i] = replace(shift, top=_pick_top(recent, Label.NEGATIVE.value, config.top))
    return shifts


def _bucket_counts(
    store: Store, end: datetime, buckets: int, length: timedelta
) -> Iterator[tuple[int, str | None, str, str | None, int]]:
    """``(bucket index, query, source, label, count)`` of the non-spam mentions of the
    ``buckets + 1`` buckets before ``end`` (index ``buckets`` the last), counted by the
    database: one grouped query per bucket on the ``created_at`` index, so a month of a
    busy product is a few hundred rows, not every mention."""
    spam = cast(col(Mention.intents), Text).like(SPAM_JSON)
    with Session(store.engine) as session:
        for index in range(buckets + 1):
            start = end - (buckets + 1 - index) * length
            rows = session.execute(
                sa_select(
                    col(Mention.matched_query),
                    col(Mention.source),
                    col(Mention.sentiment_label),
                    func.count(),
                )
                .where(
                    col(Mention.created_at) >= start,
                    col(Mention.created_at) < start + length,
                    not_(spam),
                )
                .group_by(
                    col(Mention.matched_query), col(Mention.source), col(Mention.sentiment_label)
                )
            ).all()
            for query, source, label, n in rows:
                yield index, query, source, label, int(n)


def _bucket_mentions(
    store: Store, shift: Shift, aliases: Mapping[str, str], tags: Mapping[str, str]
) -> list[Mention]:
    with Session(store.engine) as session:
        stmt = select(Mention).where(
            col(Mention.created_at) >= shift.start,
            col(Mention.created_at) < shift.end,
            Mention.sentiment_label == Label.NEGATIVE.value,
        )
        if shift.tag is None and shift.query is None:
            stmt = stmt.where(col(Mention.matched_query).is_(None), Mention.source == shift.source)
        elif shift.tag is None:
            texts = {shift.query} | {k for k, v in aliases.items() if v == shift.query}
            stmt = stmt.where(col(Mention.matched_query).in_(sorted(t for t in texts if t)))
        rows = [row for row in session.exec(stmt) if not _spam(row.intents)]
        if shift.tag is not None:
            rows = [
                row
                for row in rows
                if tag_of(aliases.get(row.matched_query or "", row.matched_query), tags)
                == shift.tag
            ]
        for row in rows:
            session.expunge(row)
    return rows


def last_shifts(store: Store, limit: int = 1000) -> dict[str, datetime]:
    """When each group last had a shift alert queued (its bucket's end, from the outbox)."""
    return _last_alerts(store, KIND_SHIFT, limit)


def check_shifts(
    store: Store,
    channel: str,
    now: datetime | None = None,
    config: ShiftConfig = ShiftConfig(),
    *,
    aliases: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[Shift]:
    """Find shifts in the last complete bucket, skip groups in their cooldown (a tag also
    while one of its queries is), queue an alert for the rest; returns those queued.

    The outbox key (group and bucket) keeps two replicas, or every run within one bucket,
    from queueing the same shift twice; the cooldown is read back from the outbox.
    """
    now = as_utc(now) or utcnow()
    last = last_shifts(store)
    queued: list[Shift] = []

    def cooling(group: str, at: datetime) -> bool:
        previous = last.get(group)
        return previous is not None and at - previous < config.cooldown

    for shift in find_shifts(store, now, config, aliases=aliases, tags=tags):
        if cooling(shift.group, shift.end):
            continue
        if shift.tag is not None and any(
            cooling(group, shift.end)
            for group in last
            if not group.startswith("tag:") and _in_tag(group, shift.tag, tags or {})
        ):
            continue
        if store.enqueue(shift.key, channel, KIND_SHIFT, shift.to_payload()):
            queued.append(shift)
            last[shift.group] = shift.end
    return queued


def _in_tag(group: str, tag: str, tags: Mapping[str, str]) -> bool:
    query = None if group.startswith("source:") else group
    return tag_of(query, tags) == tag
