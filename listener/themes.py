"""Themes: a period's mentions clustered by meaning, each labelled by its own words.

``find_themes(current, previous)`` returns the period's themes (``insight.Theme``), biggest
first:

1. **Vectors.** Every mention's body (``EMBED_CHARS`` characters, @handles and links taken
   out: they say who and where, not what about) is embedded with the classifier's embedding
   (``embedding.embed_many``: WordLlama static token embeddings, mean-pooled, unit
   length). Static embeddings share a large common direction whatever a text is about;
   its component along the model's own common direction (the mean of its whole token
   table) is taken off and the rest scaled to unit length again. (Taking off the period's
   mean vector instead was tried first: it also takes off a topic that fills the period,
   which then split into six sub-themes and buried the others: ARI 0.13 where this gives
   0.97.)
2. **Clusters.** Spherical k-means (cosine; centroids of unit length) with k-means++ seeding
   from a fixed seed, so the same mentions always give the same themes. ``k`` is chosen by
   a cosine radius: k-means with ``max_k`` clusters, then the two most similar centroids
   are merged while their similarity is at least ``merge_similarity``. (The mean
   silhouette was tried first: on the synthetic month it was flat, 0.08-0.15 for every k
   from 2 to 20, and picked k = 2 in a week with two planted themes among 400 mentions,
   burying both.) A mention less similar to its centroid than ``min_similarity`` belongs
   to no theme ("other"), and so does every mention of a cluster smaller than
   ``min_size`` mentions or ``min_share`` of the period, or of a cluster with no term
   that at least ``min_term_share`` of its mentions use (a mix of everything, not a
   theme). A cluster whose top term is among the label terms of a bigger one joins it.
   What is "other" after this pass is clustered once more the same way (a topic that
   fills the period takes many of the first pass's clusters, and a small theme can end in
   a mixed one).
3. **Labels.** Extractive: class-based TF-IDF (c-TF-IDF) of unigrams and bigrams, the share
   of the theme's mentions that use a term against how common the term is in the whole
   period, with stopwords, the query terms (the product's own name is in every mention)
   and numbers left out. The label is the top term, and the next ones that add a word
   (``login fails · update``).
4. **Change.** Last period's mentions are put through the same transform and the same rule
   (nearest centroid of each pass, the same similarity floor): a theme's ``previous`` is
   how many of them it would have held.
5. **Quotes.** The two mentions nearest the centroid (distinct texts), with their links.

Spam and off-topic mentions (intent ``spam``) and empty ones are left out. Fewer than
``min_mentions`` mentions make no themes (too few to say anything about). The embedding
vectors are not stored, so a period is embedded again (the same model as the classifier;
the classifier's own vector is of its prepared text, with handles and links in). The
defaults were chosen on the synthetic month over four seeds (a grid of ``max_k``,
``merge_similarity``, ``min_similarity`` and ``min_term_share``; tests/test_themes.py).

Cost (``benchmarks/bench_themes.py``, one core): 2.8 s of CPU for a week of 10,122
mentions and the week before, 1.6 s of it embedding.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from .insight import Quote, Theme
from .lexicon import STOPWORDS
from .models import Intent, Mention

__all__ = [
    "ThemeConfig",
    "assign",
    "cluster",
    "find_themes",
    "kmeans",
    "label_terms",
    "query_words",
]

#: Characters of a mention's body that are embedded (as relevance does).
EMBED_CHARS = 2000
#: Characters of a quote.
QUOTE_CHARS = 280

Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class ThemeConfig:
    """How themes are found (the defaults were measured on ``tests/synthmonth.py``).

    * **limit** - how many themes a digest shows (biggest first).
    * **max_k** - the most clusters tried.
    * **min_size** / **min_share** - a smaller cluster is "other".
    * **min_similarity** - a mention less similar (cosine, after centring) to its centroid
      is "other".
    * **merge_similarity** - clusters whose centroids are at least this similar are one.
    * **min_term_share** - a theme's label term must be in at least this share of its
      mentions; a cluster with no such term is "other" (a mix, not a theme).
    * **seed** - seeds k-means++.
    * **min_mentions** - fewer mentions in the period make no themes.
    """

    limit: int = 6
    max_k: int = 24
    min_size: int = 5
    min_share: float = 0.02
    min_similarity: float = 0.5
    merge_similarity: float = 0.7
    min_term_share: float = 0.3
    seed: int = 18
    min_mentions: int = 20


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def kmeans(
    x: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means of the unit rows of ``x``: ``(centroids, labels)``.

    k-means++ seeding on cosine distance (``1 - x·c``), then Lloyd iterations on the dot
    product until no label changes (at most ``iterations``). An emptied cluster takes the
    point farthest from its centroid.
    """
    n = len(x)
    first = int(rng.integers(n))
    centroids = [x[first]]
    closest = 1.0 - x @ x[first]
    for _ in range(1, k):
        weights = np.clip(closest, 0.0, None) ** 2
        total = float(weights.sum())
        pick = int(rng.choice(n, p=weights / total)) if total > 0 else int(rng.integers(n))
        centroids.append(x[pick])
        closest = np.minimum(closest, 1.0 - x @ x[pick])
    c = np.array(centroids, dtype=np.float32)
    labels = np.full(n, -1)
    for _ in range(iterations):
        sims = x @ c.T
        new = sims.argmax(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = x[labels == j]
            if len(members):
                c[j] = members.sum(axis=0)
            else:
                far = int((sims.max(axis=1)).argmin())
                c[j] = x[far]
                labels[far] = j
        c = _unit(c)
    return c, labels


def cluster(x: np.ndarray, config: ThemeConfig = ThemeConfig()) -> tuple[np.ndarray, np.ndarray]:
    """The clusters of unit rows ``x``: ``(centroids, labels)``.

    k-means with ``k = max_k`` (at most one cluster per ``min_size`` rows), seeded from
    ``seed``, then the two clusters whose centroids are most similar are merged while that
    similarity is at least ``merge_similarity``: the number of themes is what that radius
    leaves, not a guess.
    """
    n = len(x)
    k = max(1, min(config.max_k, n // max(config.min_size, 1)))
    centroids, labels = kmeans(x, k, np.random.default_rng(config.seed))
    ids = list(range(k))
    while len(ids) > 1:
        c = centroids[ids]
        sims = c @ c.T
        np.fill_diagonal(sims, -np.inf)
        a, b = np.unravel_index(int(sims.argmax()), sims.shape)
        if sims[a, b] < config.merge_similarity:
            break
        keep, gone = ids[min(a, b)], ids[max(a, b)]
        labels[labels == gone] = keep
        centroids[keep] = _unit(x[labels == keep].sum(axis=0, keepdims=True))[0]
        ids.remove(gone)
    remap = {old: new for new, old in enumerate(ids)}
    return centroids[ids], np.array([remap[int(v)] for v in labels], dtype=np.int64)


def assign(x: np.ndarray, centroids: np.ndarray, min_similarity: float) -> np.ndarray:
    """The nearest centroid of each unit row, ``-1`` where it is less similar than
    ``min_similarity``."""
    if not len(x):
        return np.zeros(0, dtype=np.int64)
    sims = x @ centroids.T
    labels = sims.argmax(axis=1)
    return np.where(sims.max(axis=1) >= min_similarity, labels, -1)


_WORD = re.compile(r"[^\W\d_](?:[\w'’]*\w)?")
_QUERY_WORD = re.compile(r"[\w'’]+")
_OPERATORS = frozenset({"and", "or", "not", "near"})
_EXTRA_STOP = frozenset(
    """amp rt via url_removed http https www com quot gt lt like just get got going gonna
    want one would could day today yesterday thing things lot im ive dont cant wont doesnt
    didnt isnt thats it’s i’m don’t can’t""".split()  # noqa: SIM905
)


def query_words(queries: Iterable[str | None]) -> frozenset[str]:
    """The words of ``queries`` (without operators, exclusions or quotes), lowercased."""
    words: set[str] = set()
    for query in queries:
        if not query:
            continue
        for token in _QUERY_WORD.findall(query.lower()):
            if token not in _OPERATORS:
                words.add(token)
                words.add(token.rstrip("s").rstrip("'’"))
    return frozenset(words)


def _terms(text: str, skip: frozenset[str]) -> set[str]:
    """The unigrams and bigrams of ``text``: words of two or more letters that are not
    stopwords or skipped; bigrams of two such words next to each other."""
    words = [w.replace("’", "'") for w in _WORD.findall(text.lower())]
    keep = [w if len(w) > 1 and w not in skip and w.rstrip("'s") not in skip else "" for w in words]
    terms = {w for w in keep if w}
    terms.update(f"{a} {b}" for a, b in pairwise(keep) if a and b and a != b)
    return terms


def label_terms(
    docs: Sequence[set[str]], labels: np.ndarray, theme: int, top: int = 3, share: float = 0.0
) -> list[str]:
    """The c-TF-IDF top terms of cluster ``theme`` (rows of ``labels`` equal to it).

    ``tf``: the share of the theme's documents with the term; ``idf``: ``log(1 + A / f)``,
    ``f`` the documents of the whole period with it and ``A`` the mean cluster size.
    Terms in fewer than two of the theme's documents, or in less than ``share`` of them,
    are left out.
    The top ``top`` terms are returned, a unigram skipped when an earlier bigram holds it
    and a bigram skipped when it adds no word.
    """
    members = [docs[int(i)] for i in np.flatnonzero(labels == theme)]
    if not members:
        return []
    inside: Counter[str] = Counter()
    for terms in members:
        inside.update(terms)
    overall: Counter[str] = Counter()
    for terms in docs:
        overall.update(terms)
    clusters = max(1, len(set(int(v) for v in labels)))
    mean_size = len(docs) / clusters
    floor = max(2, math.ceil(share * len(members)))
    scored = []
    for term, count in inside.items():
        if count < floor:
            continue
        bigram = 1.15 if " " in term else 1.0  # a phrase reads better than its words
        score = bigram * (count / len(members)) * math.log(1.0 + mean_size / overall[term])
        scored.append((-score, term))
    scored.sort()
    chosen: list[str] = []
    used: set[str] = set()
    for _, term in scored:
        words = set(term.split())
        if words <= used:
            continue
        chosen.append(term)
        used |= words
        if len(chosen) == top:
            break
    return chosen


_NOISE = re.compile(r"@[\w.@-]+|https?://\S+|www\.\S+")


def _plain(body: str) -> str:
    """What a mention says: its first ``EMBED_CHARS`` characters without @handles and links
    (a reply's handles and a link's path say who and where, not what about)."""
    return " ".join(_NOISE.sub(" ", body[:EMBED_CHARS]).split())


def _spam(mention: Mention) -> bool:
    return isinstance(mention.intents, list) and Intent.SPAM.value in mention.intents


def _quote(mention: Mention) -> Quote:
    text = " ".join((mention.body or "").split())
    if len(text) > QUOTE_CHARS:
        text = text[: QUOTE_CHARS - 1].rstrip() + "…"
    return Quote(text=text, url=mention.url or "", source=mention.source)


_common: np.ndarray | None = None


def _common_direction() -> np.ndarray:
    """The unit mean of the embedding model's whole token table: the direction every text's
    vector shares, whatever it is about (computed once, about 30 ms)."""
    global _common
    if _common is None:
        from .embedding import model

        table = model().table
        total = np.zeros(table.shape[1], dtype=np.float64)
        for start in range(0, table.shape[0], 4096):
            total += table[start : start + 4096].astype(np.float64).sum(axis=0)
        _common = (total / np.linalg.norm(total)).astype(np.float32)
    return _common


def _vectors(texts: list[str], embed: Embed | None) -> np.ndarray:
    if embed is None:
        from .embedding import embed_many

        embed = embed_many
    return np.asarray(embed(texts), dtype=np.float32)


@dataclass(frozen=True)
class Clustering:
    """What ``find_themes`` computed, for tests and the benchmark: every current mention's
    cluster (``-1``: other) and the clusters shown, biggest first."""

    labels: np.ndarray
    shown: list[int]
    themes: list[Theme]


def _pass(
    x: np.ndarray,
    x_before: np.ndarray,
    docs: Sequence[set[str]],
    config: ThemeConfig,
    least: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, list[str]], list[int]]:
    """One clustering pass: ``(centroids, labels, last period's labels, label terms, the
    clusters kept)``; labels are ``-1`` outside the kept clusters."""
    centroids, labels = cluster(x, config)
    labels = assign(x, centroids, config.min_similarity)
    earlier = assign(x_before, centroids, config.min_similarity)
    sizes = Counter(int(v) for v in labels if v >= 0)
    kept = sorted((j for j, n in sizes.items() if n >= least), key=lambda j: (-sizes[j], j))
    labels = np.where(np.isin(labels, kept), labels, -1)
    named = {j: label_terms(docs, labels, j, share=config.min_term_share) for j in kept}
    kept = [j for j in kept if named[j]]
    # A cluster whose top term is among the label terms of a bigger one joins it: a topic
    # that fills a period splits on what is left (numbers, typos) into the same label.
    targets: list[int] = []
    for j in kept:  # biggest first
        target = next((t for t in targets if named[j][0] in named[t]), j)
        if target == j:
            targets.append(j)
            continue
        labels[labels == j] = target
        earlier[earlier == j] = target
        centroids[target] = _unit(x[labels == target].sum(axis=0, keepdims=True))[0]
    for j in targets:
        if np.count_nonzero(labels == j) > sizes[j]:
            named[j] = label_terms(docs, labels, j, share=config.min_term_share) or named[j]
    labels = np.where(np.isin(labels, targets), labels, -1)
    earlier = np.where(np.isin(earlier, targets), earlier, -1)
    return centroids, labels, earlier, {j: named[j] for j in targets}, targets


def find_themes(
    current: Sequence[Mention],
    previous: Sequence[Mention] = (),
    *,
    config: ThemeConfig = ThemeConfig(),
    embed: Embed | None = None,
    queries: Iterable[str | None] | None = None,
) -> list[Theme]:
    """The themes of ``current`` (biggest first, at most ``config.limit``), with their
    change against ``previous``. ``queries``: the query texts whose words are left out of
    labels (default: every ``matched_query`` of the mentions)."""
    return themes_of(current, previous, config=config, embed=embed, queries=queries).themes


def themes_of(
    current: Sequence[Mention],
    previous: Sequence[Mention] = (),
    *,
    config: ThemeConfig = ThemeConfig(),
    embed: Embed | None = None,
    queries: Iterable[str | None] | None = None,
) -> Clustering:
    """``find_themes`` with the clustering it made (see ``Clustering``)."""
    now = [m for m in current if not _spam(m) and _plain(m.body or "")]
    before = [m for m in previous if not _spam(m) and _plain(m.body or "")]
    if len(now) < config.min_mentions:
        return Clustering(np.full(len(now), -1), [], [])
    raw = _vectors([_plain(m.body) for m in now + before], embed)
    common = _common_direction()
    x_all = _unit(raw - np.outer(raw @ common, common))
    x, x_before = x_all[: len(now)], x_all[len(now) :]
    words = query_words(queries if queries is not None else {m.matched_query for m in now})
    skip = STOPWORDS | _EXTRA_STOP | words
    docs = [_terms(_plain(m.body), skip) for m in now]
    least = max(config.min_size, math.ceil(config.min_share * len(now)))
    centroids, labels, earlier_labels, named, kept = _pass(x, x_before, docs, config, least)
    # One more pass over what is left: a dominant topic takes many of the first pass's
    # clusters, and a small theme can end up in a mixed one that is "other".
    rest, rest_before = np.flatnonzero(labels < 0), np.flatnonzero(earlier_labels < 0)
    if config.min_mentions <= len(rest) < len(now):
        docs_rest = [docs[i] for i in rest]
        more = _pass(x[rest], x_before[rest_before], docs_rest, config, least)
        offset = len(centroids)
        labels[rest] = np.where(more[1] >= 0, more[1] + offset, -1)
        earlier_labels[rest_before] = np.where(more[2] >= 0, more[2] + offset, -1)
        centroids = np.concatenate([centroids, more[0]])
        named.update({j + offset: terms for j, terms in more[3].items()})
        kept += [j + offset for j in more[4]]
    kept.sort(key=lambda j: (-int(np.count_nonzero(labels == j)), j))
    earlier = Counter(int(v) for v in earlier_labels)
    themes: list[Theme] = []
    shown = kept[: config.limit]
    for j in shown:
        members = np.flatnonzero(labels == j)
        terms = named[j]
        sentiment = Counter(now[i].sentiment_label or "unscored" for i in members)
        order = members[np.argsort(-(x[members] @ centroids[j]), kind="stable")]
        quotes: list[Quote] = []
        seen: set[str] = set()
        for i in order:
            quote = _quote(now[i])
            if quote.text.lower() in seen:
                continue
            seen.add(quote.text.lower())
            quotes.append(quote)
            if len(quotes) == 2:
                break
        themes.append(
            Theme(
                label=" · ".join(terms),
                size=len(members),
                previous=earlier.get(j, 0),
                sentiment=dict(sorted(sentiment.items())),
                quotes=quotes,
            )
        )
    return Clustering(labels, shown, themes)
