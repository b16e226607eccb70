"""High reach in Slack: the flag in the rendered alert, the shorter SLA escalation (clock
injected, no sleeps), and ``[reach]`` in the config."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from earshot.config.settings import ConfigError, Secrets, parse_settings
from earshot.config.wiring import build, reach_policy
from earshot.listener import workflow as wf
from earshot.listener.models import Mention, as_utc, utcnow
from earshot.listener.reach import ReachPolicy
from earshot.listener.store import Store
from earshot.responders.blocks import render_alert, render_text

from .fakeslack import FakeSlack
from .test_blocks import assert_valid
from .test_blocks import make as make_mention
from .test_slack_interactions import World, slack  # noqa: F401 - the fake Slack fixture

POLICY = ReachPolicy(sla_seconds=900.0)


def high(**fields: Any) -> Mention:
    values: dict[str, Any] = {
        "source": "hackernews",
        "reach": 312,
        "reach_detail": {"points": 312, "comments": 140},
    }
    values.update(fields)
    return make_mention(**values)


def section_texts(blocks: list[dict[str, Any]]) -> dict[str, str]:
    return {b["block_id"]: b["text"]["text"] for b in blocks if b["type"] == "section"}


# -- the flag in the alert ---------------------------------------------------------------


def test_a_high_reach_complaint_is_flagged_under_the_header() -> None:
    message = render_alert(high(), interactive=True, reach=POLICY)
    assert_valid(message)
    assert [b["type"] for b in message.blocks][:3] == ["header", "section", "section"]
    flag = section_texts(message.blocks)["earshot_r_42"]
    assert flag.startswith("📣 *High reach:* 312 points, 140 comments (threshold 100 points)")
    assert "escalated after 15 min if not handled" in flag
    assert "(high reach)" in message.text
    assert "High reach: 312 points, 140 comments" in render_text(high(), POLICY)


@pytest.mark.parametrize(
    "mention",
    [
        high(reach=99, reach_detail={"points": 99}),  # below the threshold
        high(sentiment_label="positive", intents=["praise"]),  # not a complaint
        high(source="rss"),  # no threshold for the source
        high(reach=None),
    ],
    ids=["below", "positive", "no-threshold", "unknown"],
)
def test_not_flagged(mention: Mention) -> None:
    message = render_alert(mention, interactive=True, reach=POLICY)
    assert_valid(message)
    assert not any(b["block_id"].startswith("earshot_r_") for b in message.blocks)
    assert "high reach" not in message.text.lower()


def test_the_figures_are_in_the_context_flagged_or_not() -> None:
    for reach in (None, POLICY):
        message = render_alert(high(sentiment_label="positive"), reach=reach)
        (context,) = [b for b in message.blocks if b["type"] == "context"]
        texts = [e["text"] for e in context["elements"]]
        assert "reach: 312 points, 140 comments" in texts
        assert len(texts) <= 10
    plain = render_text(high(sentiment_label="positive"))
    assert "reach: 312 points, 140 comments" in plain and "High reach" not in plain


def test_a_complaint_intent_flags_a_neutral_mention() -> None:
    mention = high(sentiment_label="neutral", intents=["churn_risk"], source="mastodon")
    mention.reach, mention.reach_detail = 48_210, {"followers": 48_210, "reblogs": 31}
    flag = section_texts(render_alert(mention, reach=POLICY).blocks)["earshot_r_42"]
    assert "48,210 followers, 31 boosts (threshold 5,000 author's followers)" in flag


def test_a_stored_detail_cannot_inject_markup() -> None:
    mention = high(
        reach_detail={"<!channel>": 1, "points": 312, "x": "<@U1>", "comments": 10**20},
    )
    message = render_alert(mention, reach=POLICY)
    assert_valid(message)
    shown = str(message.blocks)
    assert "<!channel>" not in shown and "<@U1>" not in shown
    assert "312 points" in section_texts(message.blocks)["earshot_r_42"]


def test_without_a_policy_nothing_is_flagged() -> None:
    message = render_alert(high(), reach=None)
    assert not any(b["block_id"].startswith("earshot_r_") for b in message.blocks)


# -- the shorter SLA ---------------------------------------------------------------------


def alert(world: World, n: int, **fields: Any) -> Mention:
    values: dict[str, Any] = {
        "source": "hackernews",
        "external_id": f"reach-{n}",
        "url": f"https://news.ycombinator.com/item?id={n}",
        "author": "pg",
        "text": "acme checkout is broken and I was charged twice",
        "created_at": utcnow(),
        "matched_query": "acme",
        "sentiment_label": "negative",
        "sentiment_score": -0.8,
    }
    values.update(fields)
    mention = Mention(**values)
    world.store.ingest(None, [mention], None, lambda m: [("#cx-alerts", "alert")])
    world.worker.drain(timeout=10)
    assert mention.id is not None
    return mention


@pytest.fixture
def world(store: Store, slack: FakeSlack) -> World:  # noqa: F811
    w = World(store, slack, reach=POLICY)
    w.worker.reach = POLICY
    w.ui.oncall_group = "S0NCALL"
    return w


def test_high_reach_complaints_escalate_on_the_shorter_sla(world: World) -> None:
    big = alert(world, 1, reach=312, reach_detail={"points": 312, "comments": 140})
    small = alert(world, 2, reach=5, reach_detail={"points": 5})
    unknown = alert(world, 3)
    churn = alert(
        world,
        4,
        source="mastodon",
        sentiment_label="neutral",
        intents=["churn_risk"],
        reach=9_000,
        reach_detail={"followers": 9_000},
    )
    calm = alert(world, 5, sentiment_label="neutral", reach=500, reach_detail={"points": 500})
    under = alert(world, 6, source="mastodon", reach=4_999, reach_detail={"followers": 4_999})
    sent = max(as_utc(d.sent_at) for d in world.outbox() if d.sent_at)  # type: ignore[type-var]
    assert sent is not None
    # The flagged alert says so when posted.
    posted = {m["text"]: m for m in world.slack.messages}
    assert any("(high reach)" in text for text in posted)

    assert world.ui.escalate(now=sent + timedelta(minutes=14)) == []
    assert sorted(world.ui.escalate(now=sent + timedelta(minutes=16))) == sorted([big.id, churn.id])
    assert world.ui.escalate(now=sent + timedelta(minutes=30)) == []  # once
    later = world.ui.escalate(now=sent + timedelta(minutes=61))
    assert sorted(later) == sorted([small.id, unknown.id, calm.id, under.id])
    assert world.ui.escalate(now=sent + timedelta(minutes=120)) == []
    world.worker.drain(timeout=10)

    replies = [m for m in world.slack.messages if m.get("thread_ts")]
    assert len(replies) == 6
    reach_replies = [r["text"] for r in replies if "high reach" in r["text"]]
    assert len(reach_replies) == 2
    assert any("312 points, 140 comments" in r and "15 min" in r for r in reach_replies)
    assert all("<!subteam^S0NCALL>" in r["text"] for r in replies)
    events = wf.events(world.store, big.id or 0)
    assert [(e.action, e.detail.get("high_reach")) for e in events] == [("escalated", True)]
    assert events[0].detail["sla_seconds"] == 900.0


def test_a_handled_high_reach_alert_is_not_escalated(world: World) -> None:
    big = alert(world, 1, reach=312, reach_detail={"points": 312})
    world.post(world.click(big, "earshot_handled"))
    sent = max(as_utc(d.sent_at) for d in world.outbox() if d.sent_at)  # type: ignore[type-var]
    assert sent is not None
    assert world.ui.escalate(now=sent + timedelta(minutes=16)) == []
    assert world.ui.escalate(now=sent + timedelta(minutes=61)) == []


def test_without_a_shorter_sla_high_reach_waits_for_the_usual_one(
    store: Store,
    slack: FakeSlack,  # noqa: F811
) -> None:
    w = World(store, slack, reach=ReachPolicy(sla_seconds=None))
    big = alert(w, 1, reach=312, reach_detail={"points": 312})
    sent = max(as_utc(d.sent_at) for d in w.outbox() if d.sent_at)  # type: ignore[type-var]
    assert sent is not None
    assert w.ui.escalate(now=sent + timedelta(minutes=16)) == []
    assert w.ui.escalate(now=sent + timedelta(minutes=61)) == [big.id]


# -- [reach] in the config ---------------------------------------------------------------

BASE: dict[str, Any] = {
    "product": {"name": "Acme", "queries": ["acme"]},
    "sources": [{"type": "hackernews"}],
}


def config(**reach: Any) -> dict[str, Any]:
    return {**BASE, "reach": reach}


def test_defaults_and_overrides() -> None:
    settings = parse_settings(BASE)
    policy = reach_policy(settings)
    assert policy is not None and policy.sla_seconds == 900.0
    assert policy.threshold("hackernews") == 100 and policy.threshold("mastodon") == 5000
    assert policy.threshold("rss") is None
    settings = parse_settings(config(hackernews=250, mastodon=0, sla="5m"))
    policy = reach_policy(settings)
    assert policy is not None and policy.sla_seconds == 300.0
    assert policy.threshold("hackernews") == 250 and policy.threshold("mastodon") is None
    assert policy.threshold("reddit") == 100  # the others keep their defaults
    assert reach_policy(parse_settings(config(enabled=False))) is None
    # A [slack] sla shorter than the default reach SLA: the reach SLA follows it.
    settings = parse_settings({**BASE, "slack": {"sla": "10m"}})
    assert settings.reach_sla() == 600.0


@pytest.mark.parametrize(
    ("reach", "message"),
    [
        ({"hackernwes": 5}, "reach.hackernwes: unknown key (did you mean 'hackernews'?)"),
        ({"rss": 5}, "'rss': this source type gives no reach figure"),
        ({"reddit": -1}, "reach.reddit: must be at least 0"),
        ({"reddit": "lots"}, "reach.reddit: expected a whole number"),
        ({"reddit": 2**40}, "reach.reddit: must be at most"),
        ({"sla": "2h"}, "reach.sla (2 hours) must be shorter than slack.sla"),
        ({"sla": "1h"}, "must be shorter than slack.sla"),
        ({"sla": "soon"}, "reach.sla: expected a duration"),
    ],
)
def test_bad_reach_settings_are_named(reach: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(config(**reach))
    assert message in caught.value.render()


def test_the_wiring_hands_the_policy_to_the_worker(database_url: str) -> None:
    settings = parse_settings(config(hackernews=7, sla="2m"))
    app = build(settings, Secrets(), database=database_url)
    try:
        assert app.worker.reach == ReachPolicy(
            thresholds=settings.reach.thresholds(), sla_seconds=120.0
        )
    finally:
        app.close()
