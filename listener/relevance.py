"""Per-query relevance: is this mention about *our* Bolt, Notion or Linear, or another one?

A product with an ordinary word for a name drowns in unrelated mentions, and an app's own
review feed carries the odd review of a dentist. Each query key (the configured query text;
``source:<type>`` for sources without queries, such as App Store reviews) gets a
``RelevanceModel``: the running sums of the embeddings (``embedding.embed``, unit length) of

* its **accepted** mentions: stored, not marked "Not relevant", not spam, and not themselves
  scored below the threshold (so what was held as "probably unrelated" never pulls the
  centroid its way), and
* its **rejected** mentions: the ones a lead marked "Not relevant".

The score of a new text ``x`` is

    sigmoid(k * (cos(x, A) - max(typical(A) / 2, cos(x, R))))

with ``A`` and ``R`` the accepted and rejected centroids and ``typical(A) = |sum A| / n``,
the mean cosine of the accepted mentions to their own centroid (exact from the sums, no
second pass). A text scores 0.5 when it is only half as close to the query's centroid as
its typical mention, or no closer to it than to what leads rejected; ``k = 10`` turns a
0.3 cosine margin into 0.95 (on the captured Google App Store feed the on-topic reviews lie
0.28-0.73 from their centroid, mean 0.57, the dentist and the cemetery reviews 0.01-0.03).
Half the typical closeness scales with each query (a narrow query's mentions are close to
each other, a broad one's less so) without a second moment per query. With fewer than
``min_examples`` accepted mentions the score is ``None``: unknown, no decision.

``Relevance`` keeps one model per key in memory and follows the store: ``refresh`` reads
the mentions stored since the last call (by any replica) and the "Not relevant" clicks
(``MentionEvent`` rows) since the last call, both by increasing id. At start it reads the
latest ``window`` mentions and ``rejected_window`` clicks, so the start-up cost is bounded
whatever the database holds (about 2 s for 5,000 App Store reviews, 1M stored, SQLite,
embedding being 95% of it). A mention clicked "Not relevant" after it was counted as
accepted is moved from one sum to the other (its embedding is recomputed: deterministic).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select

from .models import Intent, Mention, MentionEvent, MentionStatus
from .store import MENTIONS, Store, _table

__all__ = [
    "DEFAULT_MIN_EXAMPLES",
    "DEFAULT_STEEPNESS",
    "Relevance",
    "RelevanceModel",
    "relevance_key",
]

logger = logging.getLogger("earshot.listener.relevance")

#: Accepted mentions a query needs before its mentions are scored.
DEFAULT_MIN_EXAMPLES = 5
#: ``k`` of the score's sigmoid.
DEFAULT_STEEPNESS = 10.0
#: Characters of a mention's body that are embedded: the classifier's cut
#: (``pipeline.CLASSIFY_CHARS`` is this constant), so that the vector the classifier
#: computed for a mention is the one relevance needs (``score(mention, vector)``).
EMBED_CHARS = 5_000
#: Vectors kept between ``score`` and the ``refresh`` that counts their mentions: a few
#: pages' worth (about 1 KB each; it was 50,000).
KEPT_VECTORS = 5_000
#: Ids re-read on each refresh, for PostgreSQL transactions that commit out of id order.
OVERLAP = 200

EVENTS = _table(MentionEvent)
#: The columns of a mention's embedded text (``_body`` of them, cut at ``EMBED_CHARS``).
_TEXTS = (
    func.substr(MENTIONS.c.title, 1, EMBED_CHARS).label("title"),
    func.substr(MENTIONS.c.text, 1, EMBED_CHARS).label("text"),
)
#: Ids per ``IN (...)`` when texts are read by id.
_CHUNK = 500
Embed = Callable[[list[str]], np.ndarray]


def relevance_key(query: str | None, source: str) -> str:
    """The model key of a mention: its query, or ``source:<type>`` when it has none."""
    return query if query is not None else f"source:{source}"


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, value))))


class RelevanceModel:
    """The accepted and rejected embedding sums of one query, and the score they give.

    >>> import numpy as np
    >>> model = RelevanceModel(min_examples=2)
    >>> on = np.array([1.0, 0.0]); off = np.array([0.0, 1.0])
    >>> model.score(on) is None
    True
    >>> model.add(on); model.add(on)
    >>> round(model.score(on), 3), round(model.score(off), 3)
    (0.993, 0.007)
    """

    def __init__(
        self, min_examples: int = DEFAULT_MIN_EXAMPLES, steepness: float = DEFAULT_STEEPNESS
    ) -> None:
        self.min_examples = min_examples
        self.steepness = steepness
        self.accepted: np.ndarray | None = None
        self.rejected: np.ndarray | None = None
        self.n_accepted = 0
        self.n_rejected = 0

    def add(self, vec: np.ndarray, relevant: bool = True, sign: int = 1) -> None:
        """Count ``vec`` as accepted (``relevant``) or rejected; ``sign=-1`` takes it out."""
        vec = np.asarray(vec, dtype=np.float64)
        if relevant:
            self.accepted = vec * sign if self.accepted is None else self.accepted + sign * vec
            self.n_accepted += sign
        else:
            self.rejected = vec * sign if self.rejected is None else self.rejected + sign * vec
            self.n_rejected += sign

    def typical(self) -> float | None:
        """The mean cosine of the accepted mentions to their centroid (``None``: none)."""
        if self.accepted is None or self.n_accepted <= 0:
            return None
        return float(np.linalg.norm(self.accepted)) / self.n_accepted

    def score(self, vec: np.ndarray) -> float | None:
        """0..1, how relevant ``vec`` is (``None``: too few examples, or an empty text)."""
        if self.accepted is None or self.n_accepted < self.min_examples:
            return None
        vec = np.asarray(vec, dtype=np.float64)
        norm_a = float(np.linalg.norm(self.accepted))
        if norm_a == 0.0 or not vec.any():
            return None
        cos_a = float(vec @ self.accepted) / norm_a
        floor = norm_a / self.n_accepted / 2.0
        if self.rejected is not None and self.n_rejected > 0:
            norm_r = float(np.linalg.norm(self.rejected))
            if norm_r > 0.0:
                floor = max(floor, float(vec @ self.rejected) / norm_r)
        return _sigmoid(self.steepness * (cos_a - floor))


@dataclass
class _Row:
    id: int
    source: str
    external_id: str
    query: str | None
    status: str
    intents: Any
    relevance: float | None
    #: ``Mention.body[:EMBED_CHARS]``; ``None`` until read (only rows without a kept vector).
    body: str | None


def _body(title: str | None, text: str | None) -> str:
    title, text = title or "", text or ""
    return f"{title}\n{text}" if title and text else title or text


def _spam(intents: Any) -> bool:
    return isinstance(intents, list) and Intent.SPAM.value in intents


class Relevance:
    """One ``RelevanceModel`` per query key, kept in step with the store. Thread-safe.

    ``score(mention)`` embeds the mention and scores it against its query's model (the
    vector is kept until ``refresh`` counts the stored mention, so it is embedded once);
    ``refresh()`` catches up with the store. ``min_relevance`` is the threshold the
    pipeline holds mentions below; a mention scored below it is not counted as accepted.
    """

    def __init__(
        self,
        store: Store,
        *,
        min_relevance: float = 0.5,
        min_examples: int = DEFAULT_MIN_EXAMPLES,
        steepness: float = DEFAULT_STEEPNESS,
        window: int = 5_000,
        rejected_window: int = 2_000,
        embed: Embed | None = None,
    ) -> None:
        self.store = store
        self.min_relevance = min_relevance
        self.min_examples = min_examples
        self.steepness = steepness
        self.window = window
        self.rejected_window = rejected_window
        self._embed = embed
        self.models: dict[str, RelevanceModel] = {}
        self._lock = threading.RLock()
        self._started = False
        self._first_id: int | None = None  # the oldest mention counted as accepted
        self._last_id = 0
        self._last_event = 0
        self._recent: set[int] = set()
        self._rejected_ids: set[int] = set()
        self._vectors: dict[tuple[str, str], np.ndarray] = {}
        #: Review feeds' cold start (``prime_feed``): per key, the page's model and the
        #: (source, external_id) of the reviews summed into it.
        self._pages: dict[str, tuple[RelevanceModel, frozenset[tuple[str, str]]]] = {}
        #: Seconds the first refresh took (start-up cost), and how many texts it read.
        self.startup_seconds: float | None = None
        self.startup_texts = 0

    # -- scoring ---------------------------------------------------------------------------

    def embed_many(self, texts: list[str]) -> np.ndarray:
        if self._embed is None:
            from .embedding import embed_many

            self._embed = embed_many
        return self._embed(texts)

    def model(self, key: str) -> RelevanceModel:
        found = self.models.get(key)
        if found is None:
            found = self.models[key] = RelevanceModel(self.min_examples, self.steepness)
        return found

    def prime_feed(self, mentions: Sequence[Mention]) -> int:
        """Cold start for a review feed (a source without queries): its own page counts.

        Every review in an app's feed is about the app by construction, so until the feed
        has ``min_examples`` stored reviews of its own, the reviews of the page being stored
        serve as its accepted examples: each is scored against the others (leave-one-out),
        which catches the odd dentist review on a first poll. Not for query-based sources,
        where the page's majority may be the unrelated namesake. Returns how many pages'
        worth of keys were primed (0: nothing to do).
        """
        by_key: dict[str, list[Mention]] = {}
        for mention in mentions:
            by_key.setdefault(relevance_key(mention.matched_query, mention.source), []).append(
                mention
            )
        primed = 0
        for key, group in by_key.items():
            with self._lock:
                self._pages.pop(key, None)  # an earlier page says nothing about this one
                model = self.models.get(key)
                if model is not None and model.n_accepted >= self.min_examples:
                    continue
            if len(group) <= self.min_examples:
                continue
            vectors = self.embed_many([m.body[:EMBED_CHARS] for m in group])
            page = RelevanceModel(self.min_examples, self.steepness)
            for vec in vectors:
                page.add(vec)
            members = frozenset((m.source, m.external_id) for m in group)
            with self._lock:
                self._pages[key] = (page, members)
                for m, vec in zip(group, vectors, strict=True):
                    self._keep((m.source, m.external_id), vec)
            primed += 1
        return primed

    def embeds_with(self, embed: Embed | None) -> bool:
        """Whether ``embed`` is the function this instance embeds texts with (then a vector
        it made for a mention's text can be passed to ``score``)."""
        return embed is not None and self._embed == embed

    def score(self, mention: Mention, vector: np.ndarray | None = None) -> float | None:
        """The relevance of ``mention`` to its query, rounded to 4 places (``None``: unknown).

        ``vector`` is the mention's embedding when the caller has it already (the
        classifier's, ``SentimentResult.embedding``): it must be what this instance's
        ``embed`` gives for ``mention.body[:EMBED_CHARS]`` (see ``embeds_with``). Without
        it the text is embedded here.
        """
        key = relevance_key(mention.matched_query, mention.source)
        with self._lock:
            vec = self._vectors.get((mention.source, mention.external_id))
        if vec is None:
            vec = vector
        if vec is None:
            vec = self.embed_many([mention.body[:EMBED_CHARS]])[0]
        with self._lock:
            self._keep((mention.source, mention.external_id), vec)
            model = self.models.get(key)
            value = model.score(vec) if model is not None else None
            primed = self._pages.get(key)
            if value is None and primed is not None:
                page, members = primed
                if (mention.source, mention.external_id) not in members:
                    value = page.score(vec)
                else:  # leave-one-out: the page without this review
                    page.add(vec, sign=-1)
                    try:
                        value = page.score(vec)
                    finally:
                        page.add(vec)
        return None if value is None else round(value, 4)

    def _keep(self, key: tuple[str, str], vec: np.ndarray) -> None:
        """Keep a mention's vector until ``refresh`` counts it; the oldest go past
        ``KEPT_VECTORS`` (mentions that were never stored: another replica stored them first,
        or a primed page's already stored reviews). Under the lock."""
        self._vectors[key] = vec
        while len(self._vectors) > KEPT_VECTORS:
            del self._vectors[next(iter(self._vectors))]

    def below(self, value: float | None) -> bool:
        """Whether a relevance is scored and under the threshold."""
        return value is not None and value < self.min_relevance

    # -- following the store ---------------------------------------------------------------

    def refresh(self) -> None:
        """Count the mentions and "Not relevant" clicks stored since the last call."""
        with self._lock:
            started = time.perf_counter()
            first = not self._started
            texts = self._refresh(first)
            self._started = True
            if first:
                self.startup_seconds = time.perf_counter() - started
                self.startup_texts = texts
                logger.info(
                    "relevance: %d query models from %d texts in %.2fs",
                    len(self.models),
                    texts,
                    self.startup_seconds,
                )

    def _refresh(self, first: bool) -> int:
        m, e = MENTIONS.c, EVENTS.c
        columns = [
            m.id,
            m.source,
            m.external_id,
            m.matched_query.label("query"),
            m.status,
            m.intents,
            m.relevance,
        ]
        if first:  # most of these rows need their texts; later, few do (see ``_vectors_of``)
            columns += _TEXTS
        clicks = (
            select(e.id.label("event_id"), *columns)
            .join(MENTIONS, m.id == e.mention_id)
            .where(e.action == MentionStatus.NOT_RELEVANT.value)
        )
        stored = select(*columns)
        if first:
            clicks = clicks.order_by(e.id.desc()).limit(self.rejected_window)
            stored = stored.order_by(m.id.desc()).limit(self.window)
        else:
            clicks = clicks.where(e.id > self._last_event - OVERLAP).order_by(e.id)
            stored = stored.where(m.id > self._last_id - OVERLAP).order_by(m.id)
        with self.store.engine.connect() as conn:
            click_rows = conn.execute(clicks).all()
            stored_rows = conn.execute(stored).all()
        events = [(int(r.event_id), self._row(r)) for r in click_rows]
        events = [(eid, r) for eid, r in events if r.id not in self._rejected_ids]
        rows = [self._row(r) for r in stored_rows]
        rows = [r for r in rows if r.id not in self._recent and r.id not in self._rejected_ids]
        if first and rows:
            self._first_id = min(r.id for r in rows)
        vectors = self._vectors_of([r for _, r in events] + rows)
        for event_id, row in events:
            self._last_event = max(self._last_event, event_id)
            self._reject(row, vectors[row.id])
        for row in rows:
            if row.id in self._rejected_ids:
                continue
            if self._first_id is None:
                self._first_id = row.id
            self._recent.add(row.id)
            self._last_id = max(self._last_id, row.id)
            if row.status == MentionStatus.NOT_RELEVANT.value:
                self._reject(row, vectors[row.id], counted=False)
            elif self._counts(row):
                self.model(relevance_key(row.query, row.source)).add(vectors[row.id])
        self._recent = {i for i in self._recent if i > self._last_id - OVERLAP}
        return len(vectors)

    def _row(self, r: Any) -> _Row:
        texts = r._mapping
        return _Row(
            int(r.id),
            r.source,
            r.external_id,
            r.query,
            r.status,
            r.intents,
            r.relevance,
            _body(r.title, r.text)[:EMBED_CHARS] if "text" in texts else None,
        )

    def _counts(self, row: _Row) -> bool:
        """Whether a stored mention counts as accepted (see the module's docstring)."""
        return not _spam(row.intents) and not self.below(row.relevance)

    def _reject(self, row: _Row, vec: np.ndarray, *, counted: bool | None = None) -> None:
        """Count a "Not relevant" mention as rejected; out of the accepted sum if it was in."""
        model = self.model(relevance_key(row.query, row.source))
        if counted is None:
            counted = (
                self._first_id is not None
                and self._first_id <= row.id <= self._last_id
                and self._counts(row)
            )
        if counted:
            model.add(vec, sign=-1)
        model.add(vec, relevant=False)
        self._rejected_ids.add(row.id)

    def _vectors_of(self, rows: Iterable[_Row]) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        missing: list[_Row] = []
        for row in rows:
            vec = self._vectors.pop((row.source, row.external_id), None)
            if vec is not None:
                out[row.id] = vec
            elif row.id not in out:
                missing.append(row)
        if missing:
            unread = [r.id for r in missing if r.body is None]
            bodies: dict[int, str] = {}
            with self.store.engine.connect() as conn:
                for start in range(0, len(unread), _CHUNK):
                    chunk = unread[start : start + _CHUNK]
                    query = select(MENTIONS.c.id, *_TEXTS).where(MENTIONS.c.id.in_(chunk))
                    for r in conn.execute(query):
                        bodies[int(r.id)] = _body(r.title, r.text)[:EMBED_CHARS]
            embedded = self.embed_many([r.body or bodies.get(r.id, "") for r in missing])
            for row, vec in zip(missing, embedded, strict=True):
                out[row.id] = vec
        return out

    def counts(self) -> dict[str, tuple[int, int]]:
        """``{key: (accepted, rejected)}`` of every query seen."""
        with self._lock:
            return {k: (m.n_accepted, m.n_rejected) for k, m in sorted(self.models.items())}
