"""Reach: how many people a mention reaches, from the figures its source gives.

Each source's parser calls its function here (``hackernews(hit)``, ``reddit(item)``...),
which returns the two ``Mention`` fields:

* ``reach`` - one number comparable within a source (HN points, Reddit score, a Mastodon
  author's followers, Bluesky likes + reposts, Stack Exchange views...; see ``MEASURES``),
  ``None`` when the source gives none or gave something unreadable;
* ``reach_detail`` - every figure the source gave, by name (``{"points": 312,
  "comments": 140}``), in display order; unreadable figures are left out.

The figures are a snapshot taken when the item was fetched: earshot reads new items, so a
post's points or likes are its first ones (an HN story is usually fetched at 1 point); a
Mastodon author's followers are known at once. Nothing here raises: a figure that is a
string of digits is read, anything else that is not an integer in ``[-MAX_FIGURE,
MAX_FIGURE]`` (a boolean, a float with a fraction, a negative count, a 40-digit number) is
omitted, so a bad figure never costs the item.

``ReachPolicy`` decides what is *high* reach (per-source thresholds, ``DEFAULT_THRESHOLDS``)
and which mentions are *flagged*: high reach and a complaint (negative or mixed, or a
complaint intent), the ones shown as "High reach" in the alert and escalated on the
shorter SLA. The config layer builds it from ``[reach]`` and passes it in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Float, case, cast
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression
from sqlmodel import col

from .models import COMPLAINT_INTENTS, Label, Mention

#: The largest figure kept: ``reach`` is a 32-bit ``INTEGER`` on PostgreSQL.
MAX_FIGURE = 2**31 - 1

#: The audit action of a complaint whose refreshed reach crossed its source's threshold
#: (``listener/reach_refresh.py``); the SLA job counts the shorter SLA from it.
ACTION_HIGH_REACH = "high_reach"

#: What ``reach`` is, per source type (the docs' table and the settings' messages).
MEASURES: dict[str, str] = {
    "hackernews": "points",
    "reddit": "score",
    "mastodon": "author's followers",
    "bluesky": "likes + reposts",
    "stackexchange": "views",
    "github": "reactions + comments",
    "discourse": "reads",
    "googleplay": "thumbs up (found helpful)",
    "appstore": "helpful votes",
}

#: Default thresholds of high reach, per source type (``reach >= threshold``).
DEFAULT_THRESHOLDS: dict[str, int] = {
    "hackernews": 100,
    "reddit": 100,
    "mastodon": 5000,
    "bluesky": 50,
    "stackexchange": 1000,
    "github": 25,
    "discourse": 100,
    "googleplay": 10,
    "appstore": 10,
}

#: How a figure is named in an alert (``"312 points"``); others by their key.
NAMES: dict[str, str] = {
    "thread_comments": "comments in thread",
    "subreddit_subscribers": "subreddit subscribers",
    "reblogs": "boosts",
    "thumbs_up": "thumbs up",
    "thumbs_down": "thumbs down",
    "helpful_votes": "helpful votes",
}

Fields = dict[str, Any]


def figure(value: Any, *, signed: bool = False) -> int | None:
    """``value`` as a figure, or ``None`` if it is not one.

    Takes an integer, an integral float or a string of digits (App Store's feed writes its
    numbers as strings); negative only when ``signed`` (a Reddit or Stack Exchange score
    can be); at most ``MAX_FIGURE`` in size. Never raises.
    """
    number: int
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] == "-" else text
        if not digits or len(digits) > 12 or not (digits.isascii() and digits.isdigit()):
            return None
        number = int(text)
    else:
        return None
    if abs(number) > MAX_FIGURE or (number < 0 and not signed):
        return None
    return number


def _get(item: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(item, Mapping):
            return None
        item = item.get(key)
    return item


def _fields(reach: int | None, detail: Mapping[str, int | None]) -> Fields:
    kept = {name: value for name, value in detail.items() if value is not None}
    if reach is not None and abs(reach) > MAX_FIGURE:
        reach = None
    return {"reach": reach, "reach_detail": kept}


def _total(*values: int | None) -> int | None:
    """The sum of the figures that are known; ``None`` when none is."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def hackernews(hit: Any) -> Fields:
    """Algolia's ``points`` (``null`` on comments) and ``num_comments`` (stories)."""
    points = figure(_get(hit, "points"))
    comments = figure(_get(hit, "num_comments"))
    return _fields(points, {"points": points, "comments": comments})


def reddit(item: Any, kind: str) -> Fields:
    """``score`` (unless ``score_hidden``), the thread's ``num_comments`` and
    ``subreddit_subscribers`` when the listing carries them.

    On a comment (``t1``) ``num_comments`` is its thread's, so it is named
    ``thread_comments``.
    """
    hidden = _get(item, "score_hidden") is True
    score = None if hidden else figure(_get(item, "score"), signed=True)
    comments = figure(_get(item, "num_comments"))
    subscribers = figure(_get(item, "subreddit_subscribers"))
    name = "comments" if kind == "t3" else "thread_comments"
    return _fields(score, {"score": score, name: comments, "subreddit_subscribers": subscribers})


def mastodon(status: Any) -> Fields:
    """The author's ``followers_count``, then the status's boosts, favourites, replies and
    quotes (``quotes_count``, Mastodon 4.5+)."""
    followers = figure(_get(status, "account", "followers_count"))
    return _fields(
        followers,
        {
            "followers": followers,
            "reblogs": figure(_get(status, "reblogs_count")),
            "favourites": figure(_get(status, "favourites_count")),
            "replies": figure(_get(status, "replies_count")),
            "quotes": figure(_get(status, "quotes_count")),
        },
    )


def bluesky(post: Any) -> Fields:
    """``likeCount`` + ``repostCount``; replies and quotes in the detail.

    ``searchPosts`` gives the author as a basic profile, without followers.
    """
    likes = figure(_get(post, "likeCount"))
    reposts = figure(_get(post, "repostCount"))
    return _fields(
        _total(likes, reposts),
        {
            "likes": likes,
            "reposts": reposts,
            "replies": figure(_get(post, "replyCount")),
            "quotes": figure(_get(post, "quoteCount")),
        },
    )


def stackexchange(item: Any) -> Fields:
    """``view_count``; ``score`` and ``answer_count`` in the detail."""
    views = figure(_get(item, "view_count"))
    return _fields(
        views,
        {
            "views": views,
            "score": figure(_get(item, "score"), signed=True),
            "answers": figure(_get(item, "answer_count")),
        },
    )


def github_issue(item: Any) -> Fields:
    """``reactions.total_count`` + ``comments`` of an issue or pull request."""
    reactions = figure(_get(item, "reactions", "total_count"))
    comments = figure(_get(item, "comments"))
    return _fields(_total(reactions, comments), {"reactions": reactions, "comments": comments})


def github_discussion(node: Any) -> Fields:
    """``reactions.totalCount`` + ``comments.totalCount`` of a discussion (GraphQL), and
    its ``upvoteCount`` in the detail."""
    reactions = figure(_get(node, "reactions", "totalCount"))
    comments = figure(_get(node, "comments", "totalCount"))
    return _fields(
        _total(reactions, comments),
        {
            "reactions": reactions,
            "comments": comments,
            "upvotes": figure(_get(node, "upvoteCount")),
        },
    )


def discourse(post: Any) -> Fields:
    """``reads``; likes (``like_count``, else the like entry of ``actions_summary``) and
    ``reply_count`` in the detail."""
    reads = figure(_get(post, "reads"))
    likes = figure(_get(post, "like_count"))
    if likes is None:
        actions = _get(post, "actions_summary")
        if isinstance(actions, list):
            for action in actions[:20]:
                if isinstance(action, Mapping) and action.get("id") == 2:  # 2: like
                    likes = figure(action.get("count"))
                    break
    return _fields(
        reads, {"reads": reads, "likes": likes, "replies": figure(_get(post, "reply_count"))}
    )


def googleplay(user_comment: Any) -> Fields:
    """The review's ``thumbsUpCount`` (people who found it helpful) and ``thumbsDownCount``."""
    up = figure(_get(user_comment, "thumbsUpCount"))
    return _fields(
        up, {"thumbs_up": up, "thumbs_down": figure(_get(user_comment, "thumbsDownCount"))}
    )


def appstore(entry: Any) -> Fields:
    """The feed's ``im:voteSum`` (helpful votes) and ``im:voteCount`` (all votes)."""
    helpful = figure(_get(entry, "im:voteSum", "label"))
    return _fields(
        helpful,
        {"helpful_votes": helpful, "votes": figure(_get(entry, "im:voteCount", "label"))},
    )


def describe(detail: Any, limit: int = 6) -> str:
    """The figures as a reader sees them: ``"312 points, 140 comments"`` (``""``: none).

    Unreadable entries of a stored detail (not a figure, an odd name) are left out.
    """
    if not isinstance(detail, Mapping):
        return ""
    parts = []
    for name, value in list(detail.items())[:20]:
        number = figure(value, signed=True)
        if number is None or not isinstance(name, str) or not name.isidentifier():
            continue
        shown = NAMES.get(name, name.replace("_", " "))
        parts.append(f"{number:,} {shown[:40]}")
        if len(parts) >= limit:
            break
    return ", ".join(parts)


def stamp(detail: Any) -> str:
    """The line a ``high_reach`` event (its ``detail``) adds to its alert: ``"High reach
    now: 412 points, 90 comments"`` (unescaped)."""
    figures = describe(detail.get("reach_detail")) if isinstance(detail, Mapping) else ""
    if not figures and isinstance(detail, Mapping):
        number = figure(detail.get("reach"), signed=True)
        figures = f"{number:,}" if number is not None else ""
    return f"High reach now: {figures}" if figures else "High reach now"


def is_complaint(mention: Mention) -> bool:
    """Negative or mixed, or tagged with a complaint intent (bug, billing, churn risk):
    the complaint signal of routing (``listener/routing.py``)."""
    if mention.sentiment_label in (Label.NEGATIVE.value, Label.MIXED.value):
        return True
    return bool(set(mention.intents or ()) & COMPLAINT_INTENTS)


@dataclass(frozen=True)
class ReachPolicy:
    """What counts as high reach, and how soon a high-reach complaint is escalated.

    * **thresholds** - source type -> the ``reach`` at or above which a mention is high
      reach; a source not listed, or listed with 0, never is.
    * **sla_seconds** - the SLA of flagged mentions (high reach and a complaint), shorter
      than the usual one; ``None``: the usual SLA only.
    """

    thresholds: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    sla_seconds: float | None = None

    def threshold(self, source: str) -> int | None:
        """The source's threshold, or ``None`` when it has none (or 0: never)."""
        value = self.thresholds.get(source)
        return value if isinstance(value, int) and value > 0 else None

    def high(self, mention: Mention) -> bool:
        """Whether the mention's reach is at or above its source's threshold."""
        threshold = self.threshold(mention.source)
        reach = mention.reach
        return (
            threshold is not None
            and isinstance(reach, int)
            and not isinstance(reach, bool)
            and reach >= threshold
        )

    def flagged(self, mention: Mention) -> bool:
        """High reach and a complaint: flagged in the alert, escalated on ``sla_seconds``."""
        return self.high(mention) and is_complaint(mention)

    def sources(self) -> Iterable[tuple[str, int]]:
        """``(source type, threshold)`` of every source that can be high reach."""
        for source in sorted(self.thresholds):
            threshold = self.threshold(source)
            if threshold is not None:
                yield source, threshold


def relative_reach(policy: ReachPolicy | None = None) -> ColumnElement[float]:
    """A mention's reach against its source's threshold, in SQL: 3.0 for 300 HN points
    (threshold 100), 1.2 for 6,000 Mastodon followers (threshold 5,000); NULL when unknown.

    Reach is comparable within a source only; measured against each source's threshold it
    can rank mentions of several sources in one list. The scale is the policy's threshold,
    or the default one where the policy has none (0, or no policy).
    """
    scales = dict(DEFAULT_THRESHOLDS)
    if policy is not None:
        scales.update(policy.sources())
    reach = cast(col(Mention.reach), Float)
    whens = [(col(Mention.source) == source, reach / scale) for source, scale in scales.items()]
    return case(*whens, else_=None)


def by_reach(policy: ReachPolicy | None = None) -> UnaryExpression[float]:
    """``ORDER BY`` term: the biggest reach first (``relative_reach``), unknown last."""
    return relative_reach(policy).desc().nulls_last()
