"""Routing rules: match on query text or tag, source, sentiment and rating; first match wins;
the default rules keep the old behaviour; digest-routed mentions are stored with the mention."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from earshot.config.settings import ConfigError, parse_settings
from earshot.config.wiring import route_rules
from earshot.listener.models import Delivery, Mention
from earshot.listener.routing import Action, Router, RouteRule
from earshot.listener.store import Store

NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)


def m(
    label: str = "negative",
    *,
    source: str = "reddit",
    query: str | None = "checkout",
    rating: int | None = None,
    n: int = 1,
    intents: tuple[str, ...] | None = None,
    relevance: float | None = None,
) -> Mention:
    if intents is None:  # a positive mention is praise unless a test says otherwise
        intents = ("praise",) if label == "positive" else ()
    return Mention(
        source=source,
        external_id=f"r{n}",
        created_at=NOW,
        sentiment_label=label,
        matched_query=query,
        rating=rating,
        url=f"https://example.test/{n}",
        intents=list(intents),
        relevance=relevance,
    )


def test_default_rules_alert_complaints_and_amplify_praise() -> None:
    router = Router("#alerts", "#wins")
    assert router.routes(m("negative")) == [("#alerts", "alert")]
    assert router.routes(m("mixed")) == [("#alerts", "alert")]
    assert router.routes(m("unscored")) == [("#alerts", "alert")]
    assert router.routes(m("positive")) == [("#wins", "alert")]
    assert router.routes(m("neutral")) == []
    assert Router(None, "#wins").routes(m("negative")) == []
    assert Router("#alerts", None).routes(m("positive")) == []


def test_spam_is_stored_not_alerted_whatever_its_sentiment() -> None:
    router = Router("#alerts", "#wins")
    for label in ("negative", "mixed", "unscored", "neutral", "positive"):
        spam = m(label, intents=("spam",))
        decision = router.decide(spam)
        assert decision is not None and decision.action is Action.IGNORE, label
        assert router.routes(spam) == [] and spam.digest is None
    # Spam that also looks like praise or a complaint is still spam.
    assert router.routes(m("positive", intents=("praise", "spam"))) == []
    assert router.routes(m("negative", intents=("bug", "spam"))) == []


@pytest.mark.parametrize("intent", ["bug", "billing", "churn_risk"])
@pytest.mark.parametrize("label", ["neutral", "positive"])
def test_a_complaint_intent_goes_to_the_leads_whatever_the_sentiment(
    label: str, intent: str
) -> None:
    router = Router("#alerts", "#wins")
    assert router.routes(m(label, intents=(intent,))) == [("#alerts", "alert")]
    # ... even when it is praise too: a complaint never reaches the amplify channel.
    assert router.routes(m(label, intents=("praise", intent))) == [("#alerts", "alert")]
    # Without an alerts channel it is stored only, still not amplified.
    assert Router(None, "#wins").routes(m(label, intents=("praise", intent))) == []


def test_only_praise_is_amplified() -> None:
    router = Router("#alerts", "#wins")
    assert router.routes(m("positive", intents=("praise",))) == [("#wins", "alert")]
    assert router.routes(m("positive", intents=("question", "praise"))) == [("#wins", "alert")]
    assert router.routes(m("positive", intents=())) == []
    assert router.routes(m("positive", intents=("feature_request",))) == []
    assert router.routes(m("neutral", intents=("praise",))) == []


def test_praise_below_the_relevance_floor_is_not_amplified() -> None:
    router = Router("#alerts", "#wins")
    assert router.routes(m("positive", relevance=0.49)) == []
    assert router.routes(m("positive", relevance=0.5)) == [("#wins", "alert")]
    assert router.routes(m("positive", relevance=None)) == [("#wins", "alert")]  # not scored
    assert Router("#alerts", "#wins", min_relevance=None).routes(m("positive", relevance=0.1)) == [
        ("#wins", "alert")
    ]
    # Relevance never holds back a complaint.
    assert router.routes(m("negative", relevance=0.0)) == [("#alerts", "alert")]


def test_rules_match_on_intents_and_come_before_the_defaults() -> None:
    rules = [
        RouteRule(Action.INSTANT, "#spam-review", intents=frozenset({"spam"})),
        RouteRule(Action.INSTANT, "#billing", intents=frozenset({"billing", "churn_risk"})),
        RouteRule(Action.DAILY, "#product", intents=frozenset({"feature_request"})),
    ]
    router = Router("#alerts", "#wins", rules=rules)
    # Any one of the rule's intents matches.
    assert router.routes(m("negative", intents=("churn_risk",))) == [("#billing", "alert")]
    assert router.routes(m("positive", intents=("praise", "billing"))) == [("#billing", "alert")]
    # A user rule may send spam somewhere: it is taken as written.
    assert router.routes(m("positive", intents=("spam",))) == [("#spam-review", "alert")]
    feature = m("neutral", intents=("feature_request",))
    assert router.routes(feature) == [] and (feature.digest, feature.digest_channel) == (
        "daily",
        "#product",
    )
    # Mentions no user rule matches fall to the safe defaults.
    assert router.routes(m("neutral", intents=("bug",))) == [("#alerts", "alert")]
    assert router.routes(m("positive")) == [("#wins", "alert")]
    assert router.routes(m("negative", intents=())) == [("#alerts", "alert")]


def test_first_match_wins_and_conditions_combine() -> None:
    rules = [
        RouteRule(Action.IGNORE, sources=frozenset({"hackernews"}), queries=frozenset({"x"})),
        RouteRule(
            Action.INSTANT, "#vip", tags=frozenset({"pay"}), sentiments=frozenset({"negative"})
        ),
        RouteRule(Action.DAILY, "#reviews", sources=frozenset({"appstore"}), min_rating=4),
        RouteRule(Action.HOURLY, "#reviews", sources=frozenset({"appstore"}), max_rating=2),
    ]
    router = Router("#alerts", "#wins", rules=rules, tags={"checkout": "pay"})
    assert router.routes(m("negative")) == [("#vip", "alert")]  # tag + sentiment
    assert router.routes(m("positive")) == [("#wins", "alert")]  # falls to the defaults
    assert router.routes(m("negative", source="hackernews", query="x")) == []  # ignored
    five = m("positive", source="appstore", query=None, rating=5)
    assert router.routes(five) == [] and (five.digest, five.digest_channel) == ("daily", "#reviews")
    one = m("negative", source="appstore", query=None, rating=1)
    assert router.routes(one) == [] and (one.digest, one.digest_channel) == ("hourly", "#reviews")
    three = m("mixed", source="appstore", query=None, rating=3)
    assert router.routes(three) == [("#alerts", "alert")] and three.digest is None
    # A rating rule never matches a mention without a rating.
    assert (
        Router(None, None, rules=[RouteRule(Action.INSTANT, "#r", min_rating=1)]).routes(m()) == []
    )


def test_aliases_map_effective_queries_back_to_configured_ones() -> None:
    router = Router(
        None, None, rules=[RouteRule(Action.INSTANT, "#c", queries=frozenset({"acme"}))]
    )
    router.aliases = {'acme -"acme corp"': "acme"}
    assert router.routes(m(query='acme -"acme corp"')) == [("#c", "alert")]


def test_a_rule_other_than_ignore_needs_a_channel() -> None:
    with pytest.raises(ValueError, match="needs a channel"):
        RouteRule(Action.DAILY)


def settings(**extra: object) -> object:
    data = {
        "product": {
            "name": "Acme",
            "queries": ["acme", {"q": "checkout", "tag": "pay", "channel": "#payments"}],
        },
        "sources": [{"type": "reddit", "subreddits": ["acme"]}],
        **extra,
    }
    return parse_settings(data)


def test_config_routes_and_query_channels_become_rules() -> None:
    s = settings(
        routes=[
            {"source": "reddit", "sentiment": ["neutral"], "action": "daily", "channel": "#d"},
            {"tag": "pay", "sentiment": "positive", "action": "ignore"},
        ]
    )
    router = Router("#alerts", "#wins", rules=route_rules(s), tags=s.product.tags())  # type: ignore[attr-defined]
    neutral = m("neutral")
    assert router.routes(neutral) == [] and neutral.digest == "daily"
    assert router.routes(m("positive")) == []  # tag pay, positive: ignored
    assert router.routes(m("negative")) == [("#payments", "alert")]  # the query's channel
    assert router.routes(m("negative", query="acme")) == [("#alerts", "alert")]
    assert router.routes(m("positive", query="acme")) == [("#wins", "alert")]


def test_config_routes_match_on_intents() -> None:
    s = settings(
        routes=[
            {"intents": "spam", "action": "ignore"},
            {"intents": ["billing", "churn_risk"], "channel": "#retention"},
            {"sentiment": "positive", "intents": ["feature_request"], "channel": "#product"},
        ]
    )
    rules = route_rules(s)  # type: ignore[arg-type]
    assert rules[1].intents == frozenset({"billing", "churn_risk"})
    router = Router("#alerts", "#wins", rules=rules, tags=s.product.tags())  # type: ignore[attr-defined]
    assert router.routes(m("neutral", query="acme", intents=("churn_risk",))) == [
        ("#retention", "alert")
    ]
    assert router.routes(m("positive", query="acme", intents=("feature_request",))) == [
        ("#product", "alert")
    ]
    # Both conditions of a rule must hold: a negative feature request is a plain complaint.
    assert router.routes(m("negative", query="acme", intents=("feature_request",))) == [
        ("#alerts", "alert")
    ]


def test_a_query_channel_gets_its_complaints_by_intent_too_but_not_spam() -> None:
    s = settings()
    router = Router("#alerts", "#wins", rules=route_rules(s), tags=s.product.tags())  # type: ignore[arg-type, attr-defined]
    assert router.routes(m("neutral", intents=("bug",))) == [("#payments", "alert")]
    assert router.routes(m("positive", intents=("praise", "billing"))) == [("#payments", "alert")]
    assert router.routes(m("negative", intents=("spam",))) == []
    assert router.routes(m("positive")) == [("#wins", "alert")]


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ([{"query": "chekout", "channel": "#c"}], "routes[0].query: 'chekout' is not one of"),
        ([{"tag": "pai", "channel": "#c"}], "routes[0].tag: no query has the tag 'pai'"),
        ([{"sentiment": "angry", "channel": "#c"}], "routes[0].sentiment: unknown sentiment"),
        ([{"source": "redit", "channel": "#c"}], "did you mean 'reddit'"),
        ([{"action": "weekly", "channel": "#c"}], "routes[0].action"),
        ([{"action": "daily"}], "channel: required for action 'daily'"),
        ([{"actoin": "daily"}], "routes[0].actoin: unknown key (did you mean 'action'?)"),
        ([{"min_rating": 5, "max_rating": 1, "channel": "#c"}], "min_rating: must not be above"),
        (
            [{"intents": ["bug", "churn"], "channel": "#c"}],
            "routes[0].intents: unknown intent 'churn' (did you mean 'churn_risk'?);"
            " known: bug, feature_request, question, praise, billing, churn_risk, spam",
        ),
    ],
)
def test_bad_routes_name_the_key(routes: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings(routes=routes)
    assert message in str(error.value)


def test_bad_query_tables_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"queries\[1\]\.tagg: unknown key \(did you mean 'tag'"):
        parse_settings(
            {
                "product": {"name": "A", "queries": ["a", {"q": "b", "tagg": "x"}]},
                "sources": [{"type": "reddit", "subreddits": ["a"]}],
            }
        )


def test_digest_routing_is_stored_with_the_mention_in_the_ingest(database_url: str) -> None:
    store = Store.from_url(database_url)
    store.create_schema()
    router = Router(
        "#alerts",
        "#wins",
        rules=[RouteRule(Action.HOURLY, "#digest", sentiments=frozenset({"mixed"}))],
    )
    batch = [m("mixed", n=1), m("negative", n=2), m("neutral", n=3)]
    result = store.ingest("k", batch, {"c": 1}, router.routes)
    assert result.queued == 1
    # Ingesting the same items again neither routes nor queues anything.
    assert store.ingest("k", [m("mixed", n=1)], {"c": 2}, router.routes).queued == 0
    with Session(store.engine) as session:
        rows = {x.external_id: (x.digest, x.digest_channel) for x in session.exec(select(Mention))}
        outbox = [(d.channel, d.kind) for d in session.exec(select(Delivery))]
    assert rows == {"r1": ("hourly", "#digest"), "r2": (None, None), "r3": (None, None)}
    assert outbox == [("#alerts", "alert")]
    store.engine.dispose()
