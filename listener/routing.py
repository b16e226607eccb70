"""Routing rules: where a classified mention goes, and how soon.

A rule matches on the query that found the mention (its text or its tag), the source type,
the sentiment label(s) and the star-rating range, and names an action and a channel:

* ``instant`` - an alert now (an outbox row, committed with the mention);
* ``hourly`` / ``daily`` - the mention waits for that channel's digest (``Mention.digest``
  and ``Mention.digest_channel``, written in the same insert as the mention itself, so a
  digest can neither lose nor double it across restarts);
* ``ignore`` - stored only.

The first matching rule wins; a mention no rule matches is stored only. ``default_rules``
reproduce the behaviour before rules existed: negative, mixed and unscored mentions to the
alerts channel at once, positive ones to the amplify channel, neutral ones nowhere.

    >>> router = Router("#cx-alerts", "#cx-wins", rules=[
    ...     RouteRule(action=Action.DAILY, channel="#cx-wins", sentiments=frozenset({"positive"})),
    ... ])
    >>> router.routes(Mention(source="reddit", external_id="1", sentiment_label="positive"))
    []
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from .models import Label, Mention
from .store import Route

__all__ = ["Action", "Decision", "RouteRule", "Router", "default_rules", "query_rules"]

#: The outbox kind of instant alerts.
KIND_ALERT = "alert"


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
    * **min_rating** / **max_rating** - inclusive star-rating bounds; a mention without a
      rating never matches a rule that has one.
    """

    action: Action
    channel: str | None = None
    queries: frozenset[str] = field(default_factory=frozenset)
    tags: frozenset[str] = field(default_factory=frozenset)
    sources: frozenset[str] = field(default_factory=frozenset)
    sentiments: frozenset[str] = field(default_factory=frozenset)
    min_rating: int | None = None
    max_rating: int | None = None

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
) -> list[RouteRule]:
    """The behaviour before rules: alerts to leads, wins to marketing, neutral nowhere."""
    rules: list[RouteRule] = []
    if alerts_channel:
        rules.append(
            RouteRule(
                Action.INSTANT,
                alerts_channel,
                sentiments=frozenset(str(label) for label in alert_labels),
            )
        )
    if amplify_channel:
        rules.append(
            RouteRule(Action.INSTANT, amplify_channel, sentiments=frozenset({Label.POSITIVE}))
        )
    return rules


def query_rules(
    channels: Mapping[str, str],
    alert_labels: Iterable[str] = (Label.NEGATIVE, Label.MIXED, Label.UNSCORED),
) -> list[RouteRule]:
    """Rules for queries that name their own channel (``{ q = "...", channel = "#team" }``).

    A query's channel takes the place of the alerts channel for that query's negative,
    mixed and unscored mentions; positive ones still go to the amplify channel.
    """
    labels = frozenset(str(label) for label in alert_labels)
    return [
        RouteRule(Action.INSTANT, channel, queries=frozenset({query}), sentiments=labels)
        for query, channel in channels.items()
    ]


class Router:
    """Decides where a mention goes, by rules (first match wins).

    ``Router(alerts_channel, amplify_channel)`` alone keeps the behaviour before rules
    (``default_rules``). ``rules`` are tried first, then ``default_rules`` unless
    ``defaults=False``. ``tags`` maps configured query texts to their tags; ``aliases``
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
    ) -> None:
        self.alerts_channel = alerts_channel
        self.amplify_channel = amplify_channel
        self.alert_labels = {str(label) for label in alert_labels}
        self.tags = dict(tags or {})
        self.aliases: dict[str, str] = {}
        self.rules = list(rules)
        if defaults:
            self.rules += default_rules(alerts_channel, amplify_channel, self.alert_labels)

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
