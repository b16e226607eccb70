"""A synthetic month of mentions in real captured payload shapes (fixed seed), with planted
themes, a competitor's steady volume and a planted sentiment shift.

Used by tests/test_themes.py, tests/test_shifts.py and benchmarks/bench_themes.py.

Every mention is built the way a poll builds it: a real captured payload of Hacker News
(Algolia), Reddit, Mastodon, Bluesky or the App Store (``tests/fixtures/real``) is copied,
its text, id and time replaced, and the copy goes through the source's own parser
(``Source.parse_item`` with the parser the poll uses). The texts are real too where they
are background: tweets and Amazon review snippets from ``tests/fixtures/sentiment`` with
the product's or the competitor's name put in. Planted themes are written here, each with
varied wording (templates with alternatives in every slot), and carry their planted label
in ``Month.planted`` (``external_id`` -> theme).

The four weeks (Monday 2026-11-02 00:00 UTC to Monday 2026-11-30):

* ``acme`` (ours, untagged) about 40 mentions a day on the four social sources, and about 5
  App Store reviews a day (no query: they count as ours too).
* ``rivalapp`` (tag ``competitor``) about 15 a day, background texts only.
* Themes in ours: ``login`` (login fails after an update; negative), ``darkmode`` (dark
  mode praise; positive) every week, and ``pricing`` (a price increase; negative or
  mixed) from the fourth week on; ``login`` grows in the fourth week.
* The sentiment shift: in week ``SHIFT_WEEK`` (the third) the negative share of ``acme``
  jumps from about 20% to about 60% while its volume stays where it was. The labels are
  planted (``sentiment_label``), not classified, so the share is exactly what is planted.

Sentiment labels are planted per mention: a theme's mentions have the theme's labels; the
background's labels are drawn so that the day's negative share is the planted one.
"""

from __future__ import annotations

import copy
import html
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from earshot.listener.evaluation import load_examples
from earshot.listener.models import Mention
from earshot.listener.sources import (
    AppStoreSource,
    HackerNewsSource,
    PollResult,
    RedditSource,
    SourceHttp,
)
from earshot.listener.sources.bluesky import BlueskySource
from earshot.listener.sources.mastodon import MastodonSource

FIXTURES = Path(__file__).parent / "fixtures"
REAL = FIXTURES / "real"

#: Monday 2026-11-02 00:00 UTC: the first hour of the month.
MONTH_START = datetime(2026, 11, 2, tzinfo=UTC)
WEEKS = 4
SEED = 20261102

OURS = "acme"
RIVAL = "rivalapp"
QUERIES = (OURS, RIVAL)
#: ``[product] queries`` tags as config/wiring.py passes them (untagged queries are ours).
TAGS = {RIVAL: "competitor"}

#: Mentions a day per query (Poisson-free: the volume is flat by construction, +-10%).
DAILY = {OURS: 40, RIVAL: 15}
#: App Store reviews a day (no query; ours).
REVIEWS_DAILY = 5
#: The week (0-based) in which ours' negative share jumps, and the shares.
SHIFT_WEEK = 2
NORMAL_NEGATIVE = 0.2
SHIFTED_NEGATIVE = 0.6

#: Planted themed mentions of ours per day, per week.
THEME_DAILY: dict[str, tuple[int, int, int, int]] = {
    "login": (3, 3, 3, 6),
    "darkmode": (3, 3, 3, 3),
    "pricing": (0, 0, 0, 5),
}
THEME_LABELS: dict[str, tuple[tuple[str, float], ...]] = {
    "login": (("negative", 0.85), ("mixed", 0.15)),
    "darkmode": (("positive", 0.9), ("neutral", 0.1)),
    "pricing": (("negative", 0.7), ("mixed", 0.3)),
}
#: Words a theme's label should show (any one of them).
THEME_WORDS = {
    "login": ("login", "log", "sign", "update", "password"),
    "darkmode": ("dark", "mode", "theme"),
    "pricing": ("price", "pricing", "increase", "subscription", "expensive", "plan"),
}

#: Each template's ``{a|b|c}`` picks one alternative; ``{p}`` is the product's name.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "login": (
        "{Can't|Cannot|Unable to|Still can't} {log in|sign in|login} to {p} {since|after} "
        "the {latest|new|last|recent} update{.|!|, anyone else?| on my phone.}",
        "{p} login {fails|keeps failing|is broken|errors out|just spins} after {updating|"
        "the update|installing the update|the {latest|new} version}{.|, really annoying.|"
        " :(| again.}",
        "After the {update|upgrade|new release} {p} {won't|will not|refuses to} let me "
        "{log in|sign in}: {it just spins|my password is rejected|it says invalid "
        "credentials|I get an error}{.| every time.}",
        "{Locked out|Logged out} of {p} {after|since} {the update|updating|this morning's "
        "update} and {the login|sign in|logging back in} {fails|doesn't work|keeps failing}"
        "{.|, help|, please fix}",
        "{Anyone else|Is anyone else} {unable to|not able to} {log in to|sign in to} {p} "
        "{after|since} the {update|new version}? {Password reset didn't help.|Reinstalled, "
        "same login error.|Keeps saying wrong password.}",
    ),
    "darkmode": (
        "{Love|Loving|Really like|Absolutely love} the {new |}dark mode in {p}{!|, so easy "
        "on the eyes.|, finally!|, looks gorgeous.}",
        "{p} dark mode {is beautiful|looks great|is perfect|is so good} {at night|on my "
        "phone|on OLED screens|for late night reading}{.|!}",
        "{Thank you|Thanks|Kudos} {p} for {dark mode|the dark theme}{, my eyes thank you|, "
        "night reading is so much better|, it looks amazing}{.|!}",
        "The {dark theme|dark mode} in {p} {is the best update in ages|made my day|is "
        "exactly what I wanted}{.|!| <3}",
        "{Switched|Turned} on {p}'s dark mode {last night|today|this week} and {I love it|"
        "it looks so clean|never going back}{.|!}",
    ),
    "pricing": (
        "{p} {raised|increased|doubled|hiked} {the price|prices|the subscription price|its "
        "pricing} {again|by 40%|this month|without warning}{.|!|, not happy.}",
        "The new {p} pricing is {too expensive|a rip-off|ridiculous|hard to justify}{, "
        "paying more for the same app| for a small team|, $15 a month now}{.|!}",
        "{Got the|Just got a} price increase {email|notice} from {p}: my {plan|subscription} "
        "goes from $8 to ${12|14|15} a month{.|, cancelling.|, looking at alternatives.}",
        "{Why|How} is {p} {so much more expensive|charging more|raising the subscription "
        "price} {now|this year|after the update}? {Not worth it.|Cancelling my plan.|"
        "Considering alternatives.}",
        "{p}'s {price increase|new subscription price|pricing change} {is|feels} "
        "{greedy|steep|unfair}{.| for what we get.|, time to switch.}",
    ),
}


def fill(template: str, rng: random.Random, product: str) -> str:
    """``template`` with one alternative of every ``{a|b}`` and ``{p}`` as ``product``."""
    out: list[str] = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch != "{":
            out.append(ch)
            i += 1
            continue
        depth, j = 1, i + 1
        while depth:
            depth += {"{": 1, "}": -1}.get(template[j], 0)
            j += 1
        body = template[i + 1 : j - 1]
        if body == "p":
            out.append(product)
        else:
            parts, level, start = [], 0, 0
            for k, c in enumerate(body):
                level += {"{": 1, "}": -1}.get(c, 0)
                if c == "|" and level == 0:
                    parts.append(body[start:k])
                    start = k + 1
            parts.append(body[start:])
            out.append(fill(rng.choice(parts), rng, product))
        i = j
    return "".join(out)


def _real(relative: str) -> Any:
    return json.loads((REAL / relative).read_text("utf-8"))


def _background_texts() -> list[str]:
    texts: list[str] = []
    for name in ("tweets_GroundTruth.txt", "amazonReviewSnippets_GroundTruth.txt"):
        texts += [
            e.text.strip() for e in load_examples(FIXTURES / "sentiment" / name) if e.text.strip()
        ]
    return texts


def _with_name(rng: random.Random, text: str, name: str) -> str:
    words = text.split(" ")
    words.insert(rng.randrange(len(words) + 1), name)
    return " ".join(words)


class _Shapes:
    """Real payloads as templates, and the parsers that read them."""

    def __init__(self) -> None:
        hn = _real("hn_algolia/search_by_date_story_query_apple.json")["hits"]
        hn += _real("hn_algolia/search_by_date_comment_query_apple.json")["hits"]
        self.hn_story = next(h for h in hn if "story" in h["_tags"])
        self.hn_comment = next(h for h in hn if "comment" in h["_tags"])
        self.reddit = [
            c
            for c in _real("reddit/r_kakapo_comments_page1.json")["data"]["children"]
            if c.get("kind") == "t1"
        ]
        self.statuses = _real("mastodon/timelines_tag_page1.json")
        self.posts = _real("bluesky/searchPosts_q_redistricting.json")["posts"]
        self.reviews = [
            e
            for e in _real("appstore/customerreviews_us_id284815942_json.json")["feed"]["entry"]
            if "im:rating" in e
        ]
        http = SourceHttp(None)  # type: ignore[arg-type]  # parsers only: no request is made
        self.hn = HackerNewsSource(http)
        self.reddit_source = RedditSource(http, subreddits=["kakapo"])
        self.mastodon = MastodonSource(http, base_url="https://mastodon.social", hashtags=["acme"])
        self.bluesky = BlueskySource(http)
        self.appstore = AppStoreSource(http, app_id="284815942")
        self.result = PollResult([], None)

    def parse(self, source: str, n: int, text: str, at: datetime, rng: random.Random) -> Mention:
        """A mention of ``source`` with ``text``, id ``n`` and time ``at``, through its parser."""
        stamp = at.timestamp()
        iso = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        parse: Callable[[Any], Mention | None]
        if source == "hackernews":
            if n % 4 == 0:
                hit = copy.deepcopy(self.hn_story)
                hit["title"], hit["story_text"] = text[:200], html.escape(text[200:])
                hit["url"] = None  # the template's link is not this text's (stories key on it)
            else:
                hit = copy.deepcopy(self.hn_comment)
                hit["comment_text"] = html.escape(text)
            hit["objectID"], hit["created_at_i"], hit["created_at"] = (
                str(60_000_000 + n),
                stamp,
                iso,
            )
            item, parse = hit, self.hn._mention
        elif source == "reddit":
            child = copy.deepcopy(self.reddit[n % len(self.reddit)])
            data = child["data"]
            data["id"], data["name"] = f"s{n}", f"t1_s{n}"
            data["created_utc"] = data["created"] = stamp
            data["body"] = text
            data["permalink"] = f"/r/{data.get('subreddit', 'x')}/comments/s{n}/"
            item, parse = child, self.reddit_source._mention
        elif source == "mastodon":
            status = copy.deepcopy(self.statuses[n % len(self.statuses)])
            status["id"] = str(110_000_000 + n)
            status["uri"] = f"https://mastodon.social/users/synth/statuses/{110_000_000 + n}"
            status["url"] = f"https://mastodon.social/@synth/{110_000_000 + n}"
            status["created_at"], status["content"] = iso, f"<p>{html.escape(text)}</p>"
            status["spoiler_text"] = ""
            status["card"] = None  # the template's link preview is not this text's
            item, parse = status, self.mastodon._mention
        elif source == "bluesky":
            post = copy.deepcopy(self.posts[n % len(self.posts)])
            post["uri"] = f"at://did:plc:synth{n % 50}/app.bsky.feed.post/3synth{n}"
            post["record"]["text"], post["record"]["createdAt"] = text, iso
            post["record"].pop("facets", None)
            post.pop("embed", None)  # nor is its embedded link
            post["record"].pop("embed", None)
            post["indexedAt"] = iso
            item, parse = post, lambda p: self.bluesky._mention(p)[0]
        else:
            entry = copy.deepcopy(self.reviews[n % len(self.reviews)])
            entry["id"]["label"] = str(8_000_000_000 + n)
            entry["updated"]["label"] = at.isoformat()
            entry["title"]["label"] = " ".join(text.split()[:6])
            entry["content"]["label"] = text
            entry["im:rating"]["label"] = str(rng.randint(1, 5))
            item, parse = entry, lambda e: self.appstore._mention(e, "us")
        mention = self.hn.parse_item(self.result, parse, item)
        if mention is None:  # pragma: no cover - the real shapes parse
            raise AssertionError(f"{source} payload {n} did not parse: {self.result.skipped}")
        return mention


SOCIAL = ("hackernews", "reddit", "mastodon", "bluesky")
_SCORES = {"negative": (-1.0, -0.5), "positive": (0.5, 1.0), "neutral": (-0.3, 0.3)}


@dataclass
class Month:
    """The synthetic month: mentions (oldest first), planted theme per ``external_id`` of
    the themed ones (``login``, ``darkmode``, ``pricing``) and the first day of the shift."""

    mentions: list[Mention]
    planted: dict[str, str] = field(default_factory=dict)
    shift_start: datetime = MONTH_START + timedelta(days=7 * SHIFT_WEEK)

    def week(self, index: int) -> list[Mention]:
        """The mentions of week ``index`` (0-based)."""
        start = MONTH_START + timedelta(days=7 * index)
        return [m for m in self.mentions if start <= m.created_at < start + timedelta(days=7)]


def _draw(rng: random.Random, weights: tuple[tuple[str, float], ...]) -> str:
    r = rng.random()
    for label, weight in weights:
        if r < weight:
            return label
        r -= weight
    return weights[-1][0]


def _label(mention: Mention, label: str, rng: random.Random) -> Mention:
    low, high = _SCORES.get(label, (-0.2, 0.2))
    mention.sentiment_label = label
    mention.sentiment_score = round(rng.uniform(low, high), 4)
    return mention


def build_month(seed: int = SEED, weeks: int = WEEKS, scale: float = 1.0) -> Month:
    """The month (deterministic for a seed); ``scale`` multiplies every daily volume (the
    benchmark's 10,000 mentions a week)."""
    rng = random.Random(seed)
    shapes = _Shapes()
    background = _background_texts()
    month = Month([])
    n = 0
    for day in range(7 * weeks):
        week = day // 7
        midnight = MONTH_START + timedelta(days=day)
        for query in QUERIES:
            count = round(scale * DAILY[query] * rng.uniform(0.9, 1.1))
            themed = []
            if query == OURS:
                for theme, per_week in THEME_DAILY.items():
                    themed += [theme] * round(scale * per_week[week])
            themed += [""] * max(0, count - len(themed))
            target = NORMAL_NEGATIVE
            if query == OURS and week == SHIFT_WEEK:
                target = SHIFTED_NEGATIVE
            planted = [(t, _draw(rng, THEME_LABELS[t]) if t else "") for t in themed]
            negatives = sum(1 for _, label in planted if label == "negative")
            rest = sum(1 for t, _ in planted if not t)
            p_negative = min(1.0, max(0.0, (target * len(planted) - negatives) / max(rest, 1)))
            for theme, label in planted:
                n += 1
                at = midnight + timedelta(seconds=rng.randrange(86400))
                if theme:
                    text = fill(rng.choice(TEMPLATES[theme]), rng, query)
                else:
                    text = _with_name(rng, rng.choice(background), query)
                    if rng.random() < p_negative:
                        label = "negative"
                    else:
                        label = _draw(rng, (("positive", 0.4), ("neutral", 0.45), ("mixed", 0.15)))
                mention = shapes.parse(rng.choice(SOCIAL), n, text, at, rng)
                mention.matched_query = query
                month.mentions.append(_label(mention, label, rng))
                if theme:
                    month.planted[mention.external_id] = theme
        for _ in range(round(scale * REVIEWS_DAILY)):
            n += 1
            at = midnight + timedelta(seconds=rng.randrange(86400))
            text = _with_name(rng, rng.choice(background), "Acme")
            mention = shapes.parse("appstore", n, text, at, rng)
            label = {1: "negative", 2: "negative", 3: "neutral", 4: "positive", 5: "positive"}
            month.mentions.append(_label(mention, label[mention.rating or 3], rng))
    for mention in month.mentions:
        # The model's defaults, given (see synthweek.mention: a default_factory is slow).
        mention.sentiment_reasons = []
        mention.intents = []
    month.mentions.sort(key=lambda m: (m.created_at, m.external_id))
    return month


def mentions(seed: int = SEED) -> list[Mention]:
    """The month's mentions, oldest first (for planting stories into it; see ``Month``)."""
    return build_month(seed).mentions
