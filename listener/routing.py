"""Routing rules: where a classified mention goes, and how soon.

A rule matches on the query that found the mention (its text or its tag), the source type,
the sentiment label(s), the intent tags and the star-rating range, and names an action and a
channel:

* ``instant`` - an alert now (an outbox row, committed with the mention);
* ``hourly`` / ``daily`` - the mention waits for that channel's digest (``Mention.digest``
  and ``Mention.digest_channel``, written in the same insert as the mention itself, so a
  digest can neither lose nor double it across restarts);
* ``ignore`` - stored only.

The first matching rule wins; a mention no rule matches is stored only. The configured
rules come first and are taken as written; then the safe defaults (``default_rules``):

1. spam and off-topic text (intent ``spam``) is stored, never alerted, and counted by the
   digests as filtered;
2. a complaint - label negative or mixed, or any of ``COMPLAINT_INTENTS`` (bug, billing,
   churn risk) whatever the label - goes to the alerts channel, and so never to the amplify
   channel: a "love it, but it charged me twice" post is a lead, not a testimonial;
3. unscored text goes to the alerts channel;
4. only a positive mention tagged ``praise`` (no complaint intent, not spam, relevance not
   below ``min_relevance`` where scored) goes to the amplify channel; other positive and
   neutral mentions are stored only.

A configured rule can do anything: send spam to a review channel (``intents = ["spam"]``),
hold complaints for a digest, or amplify every positive mention. Because it is tried
before the defaults, a rule that names no intents also sees spam and complaints; add
``intents`` (or a ``spam`` ``ignore`` rule above it) to keep them out.

    >>> router = Router("#cx-alerts", "#cx-wins", rules=[
    ...     RouteRule(action=Action.DAILY, channel="#cx-wins", sentiments=frozenset({"positive"})),
    ... ])
    >>> router.routes(Mention(source="reddit", external_id="1", sentiment_label="positive"))
    []
    >>> praise = Mention(source="reddit", external_id="2", sentiment_label="positive",
    ...                  intents=["praise"])
    >>> Router("#cx-alerts", "#cx-wins").routes(praise)
    [('#cx-wins', 'alert')]
    >>> praise.intents.append("billing")
    >>> Router("#cx-alerts", "#cx-wins").routes(praise)
    [('#cx-alerts', 'alert')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from .models import COMPLAINT_INTENTS, Intent, Label, Mention
from .store import Route

__all__ = [
    "DEFAULT_MIN_RELEVANCE",
    "Action",
    "Decision",
    "RouteRule",
    "Router",
    "default_rules",
    "query_rules",
]

#: The outbox kind of instant alerts.
KIND_ALERT = "alert"

#: A positive mention whose relevance (0..1) is below this is not amplified.
DEFAULT_MIN_RELEVANCE = 0.5
_SPAM = frozenset({Intent.SPAM.value})


class Action(StrEnum):
    """What a rule does with the mentions it matches."""

    INSTANT = "instant"
    HOURLY = "hourly"
    DAILY = "daily"
    IGNORE = "ignore"


DIGEST_ACTIONS = frozenset({Action.HOURLY, Action.DAILY})


@dataclass(frozen=True)
class RouteRule:
    """One rule. Every condition left ``None`` (or empty) matches anything.

    * **queries** - configured query texts (a mention matches through ``Mention.matched_query``).
    * **tags** - query tags (``[product] queries = [{ q = "...", tag = "checkout" }]``).
    * **sources** - source types (``hackernews``, ``appstore``...).
    * **sentiments** - labels (``negative``, ``mixed``, ``unscored``, ``neutral``, ``positive``).
    * **intents** - ``Intent`` values; the mention matches if it has any of them.
    * **without_intents** - ``Intent`` values the mention must have none of.
    * **min_rating** / **max_rating** - inclusive star-rating bounds; a mention without a
      rating never matches a rule that has one.
    * **min_relevance** - a mention whose relevance is below it does not match (one not
      scored for relevance does).
    """

    action: Action
    channel: str | None = None
    queries: frozenset[str] = field(default_factory=frozenset)
    tags: frozenset[str] = field(default_factory=frozenset)
    sources: frozenset[str] = field(default_factory=frozenset)
    sentiments: frozenset[str] = field(default_factory=frozenset)
    intents: frozenset[str] = field(default_factory=frozenset)
    without_intents: frozenset[str] = field(default_factory=frozenset)
    min_rating: int | None = None
    max_rating: int | None = None
    min_relevance: float | None = None

    def __post_init__(self) -> None:
        if self.action is not Action.IGNORE and not self.channel:
            raise ValueError(f"a rule with action {self.action.value!r} needs a channel")

    def matches(self, mention: Mention, query: str | None, tag: str | None) -> bool:
        """Whether ``mention`` (found by configured ``query``, tagged ``tag``) matches."""
        if self.queries and query not in self.queries:
            return False
        if self.tags and tag not in self.tags:
            return False
        if self.sources and mention.source not in self.sources:
            return False
        if self.sentiments and (mention.sentiment_label or "") not in self.sentiments:
            return False
        if self.intents or self.without_intents:
            tags = set(mention.intents or ())
            if self.intents and not tags & self.intents:
                return False
            if tags & self.without_intents:
                return False
        if (
            self.min_relevance is not None
            and mention.relevance is not None
            and mention.relevance < self.min_relevance
        ):
            return False
        if self.min_rating is not None or self.max_rating is not None:
            if mention.rating is None:
                return False
            if self.min_rating is not None and mention.rating < self.min_rating:
                return False
            if self.max_rating is not None and mention.rating > self.max_rating:
                return False
        return True


@dataclass(frozen=True)
class Decision:
    """Where one mention goes: the action and channel of the rule that matched."""

    action: Action
    channel: str | None
    rule: int | None = None


def default_rules(
    alerts_channel: str | None,
    amplify_channel: str | None,
    alert_labels: Iterable[str] = (Label.NEGATIVE, Label.MIXED, Label.UNSCORED),
    *,
    min_relevance: float | None = DEFAULT_MIN_RELEVANCE,
) -> list[RouteRule]:
    """The safe defaults: spam filtered, complaints to the leads, praise to marketing.

    In order: spam is ignored (stored only); ``alert_labels`` and complaint intents go to
    ``alerts_channel``; a positive mention tagged ``praise`` goes to ``amplify_channel``
    unless it also carries a complaint intent or spam, or its relevance is below
    ``min_relevance``. The amplify rule excludes complaints by itself, so it holds even
    when there is no alerts channel. Everything else is stored only.
    """
    rules = [RouteRule(Action.IGNORE, intents=_SPAM)]
    if alerts_channel:
        labels = frozenset(str(label) for label in alert_labels)
        rules.append(RouteRule(Action.INSTANT, alerts_channel, sentiments=labels))
        rules.append(RouteRule(Action.INSTANT, alerts_channel, intents=COMPLAINT_INTENTS))
    if amplify_channel:
        rules.append(
            RouteRule(
                Action.INSTANT,
                amplify_channel,
                sentiments=frozenset({Label.POSITIVE.value}),
                intents=frozenset({Intent.PRAISE.value}),
                without_intents=COMPLAINT_INTENTS | _SPAM,
                min_relevance=min_relevance,
            )
        )
    return rules


def query_rules(
    channels: Mapping[str, str],
    alert_labels: Iterable[str] = (Label.NEGATIVE, Label.MIXED, Label.UNSCORED),
) -> list[RouteRule]:
    """Rules for queries that name their own channel (``{ q = "...", channel = "#team" }``).

    A query's channel takes the place of the alerts channel for that query's complaints
    (``alert_labels``, or a complaint intent whatever the label); spam is left to the
    defaults (filtered), and praise still goes to the amplify channel.
    """
    labels = frozenset(str(label) for label in alert_labels)
    rules: list[RouteRule] = []
    for query, channel in channels.items():
        queries = frozenset({query})
        rules += [
            RouteRule(
                Action.INSTANT, channel, queries=queries, sentiments=labels, without_intents=_SPAM
            ),
            RouteRule(
                Action.INSTANT,
                channel,
                queries=queries,
                intents=COMPLAINT_INTENTS,
                without_intents=_SPAM,
            ),
        ]
    return rules


class Router:
    """Decides where a mention goes, by rules (first match wins).

    ``Router(alerts_channel, amplify_channel)`` alone applies the safe defaults
    (``default_rules``: spam filtered, complaints to the alerts channel, praise to the
    amplify channel). ``rules`` are tried first, as written, then ``default_rules`` unless
    ``defaults=False``; ``min_relevance`` is the defaults' relevance floor for amplifying
    (``None``: none). ``tags`` maps configured query texts to their tags; ``aliases``
    maps an effective query text (with exclusions added from Slack) back to the configured
    one.

    ``routes(mention)`` returns the instant routes as ``(channel, "alert")``; a mention a
    rule sends to a digest gets ``digest`` and ``digest_channel`` set (stored with it) and
    no route.
    """

    def __init__(
        self,
        alerts_channel: str | None,
        amplify_channel: str | None,
        *,
        alert_labels: Iterable[str] = (Label.NEGATIVE, Label.MIXED, Label.UNSCORED),
        rules: Sequence[RouteRule] = (),
        tags: Mapping[str, str] | None = None,
        defaults: bool = True,
        min_relevance: float | None = DEFAULT_MIN_RELEVANCE,
    ) -> None:
        self.alerts_channel = alerts_channel
        self.amplify_channel = amplify_channel
        self.alert_labels = {str(label) for label in alert_labels}
        self.tags = dict(tags or {})
        self.aliases: dict[str, str] = {}
        self.rules = list(rules)
        if defaults:
            self.rules += default_rules(
                alerts_channel, amplify_channel, self.alert_labels, min_relevance=min_relevance
            )

    def decide(self, mention: Mention) -> Decision | None:
        """The decision of the first rule that matches ``mention`` (``None``: no rule)."""
        query = mention.matched_query
        if query is not None:
            query = self.aliases.get(query, query)
        tag = self.tags.get(query) if query is not None else None
        for index, rule in enumerate(self.rules):
            if rule.matches(mention, query, tag):
                return Decision(rule.action, rule.channel, index)
        return None

    def routes(self, mention: Mention) -> list[Route]:
        """The instant routes of ``mention``; marks it for a digest when a rule says so."""
        decision = self.decide(mention)
        if decision is None or decision.action is Action.IGNORE or not decision.channel:
            return []
        if decision.action in DIGEST_ACTIONS:
            mention.digest = decision.action.value
            mention.digest_channel = decision.channel
            return []
        return [(decision.channel, KIND_ALERT)]
