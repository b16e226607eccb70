"""Per-query relevance: the model, its following of the store, and the pipeline's holding of
probably unrelated mentions for the digest instead of alerting them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import respx
from sqlmodel import Session, select

from earshot.config.settings import ConfigError, Secrets, parse_settings
from earshot.config.wiring import Earshot, build
from earshot.listener.digest import build_digest, due_period
from earshot.listener.embedding import EmbeddingModel, embed
from earshot.listener.models import Label, Mention, utcnow
from earshot.listener.relevance import Relevance, RelevanceModel, relevance_key
from earshot.listener.sentiment import ExperienceClassifier, SentimentResult
from earshot.listener.store import Store
from earshot.listener.workflow import Actor, transition
from earshot.responders.digest import digest_text, render_digest

from .conftest import hn_hits
from .fakeslack import FakeSlack

DEMO_REVIEWS = Path(__file__).parents[1] / "config" / "demo" / "appstore_reviews.json"
HN = "https://hn.test/api/v1"

#: Mentions of Bolt the AI app builder...
PRODUCT = [
    "Bolt deploy failed again, the build log shows a webpack error",
    "Trying Bolt to scaffold a React app from a prompt, the generated code does not compile",
    "Bolt's AI code editor keeps timing out when I ask it to add an API route",
    "Bolt ran out of tokens halfway through generating my Next.js project",
    "Is there a way to export a Bolt project to GitHub and run it locally with npm?",
    "Bolt preview broke after I added Tailwind, the dev server crashes",
]
#: ...and of the other Bolt, which an ambiguous query also matches.
ATHLETE = [
    "Usain Bolt ran the 100m in 9.58 seconds at the Berlin world championships",
    "Usain Bolt says Jamaican sprinters will dominate the Olympic relay again",
]
ATHLETE_PROBE = "Usain Bolt won gold in the 200 metres sprint final at the Olympics"
PRODUCT_PROBE = "Bolt generated a full-stack app but the database migration in the code is wrong"


def model_of(texts: list[str], **kwargs: Any) -> RelevanceModel:
    model = RelevanceModel(**kwargs)
    for text in texts:
        model.add(embed(text))
    return model


def score(model: RelevanceModel, text: str) -> float:
    value = model.score(embed(text))
    assert value is not None
    return value


def test_too_few_accepted_mentions_give_no_score() -> None:
    model = model_of(PRODUCT[:4], min_examples=5)
    assert model.score(embed(PRODUCT_PROBE)) is None
    model.add(embed(PRODUCT[4]))
    assert model.score(embed(PRODUCT_PROBE)) is not None
    assert model.score(embed("")) is None  # an empty text: nothing to judge


def test_an_off_topic_text_among_on_topic_ones_scores_low() -> None:
    model = model_of(PRODUCT)
    assert score(model, PRODUCT_PROBE) > 0.8
    dentist = "Dr Stears and his assistant did a wonderful job on my new crown, great hygienist"
    assert score(model, dentist) < 0.2


def test_a_not_relevant_click_lowers_the_score_of_similar_mentions() -> None:
    # An ambiguous name: the athlete's mentions were stored as accepted too.
    model = model_of(PRODUCT + ATHLETE)
    before, product_before = score(model, ATHLETE_PROBE), score(model, PRODUCT_PROBE)
    assert before > 0.5
    for text in ATHLETE:  # a lead clicks "Not relevant" on both
        model.add(embed(text), sign=-1)
        model.add(embed(text), relevant=False)
    assert (model.n_accepted, model.n_rejected) == (len(PRODUCT), len(ATHLETE))
    assert score(model, ATHLETE_PROBE) < 0.2 < before
    assert score(model, PRODUCT_PROBE) >= product_before - 0.05 > 0.5


def reviews() -> list[Mention]:
    """The real App Store reviews of the demo feed (Google's app), in feed order."""
    entries = json.loads(DEMO_REVIEWS.read_text("utf-8"))["feed"]["entry"]
    return [
        Mention(
            source="appstore",
            external_id=entry["id"]["label"],
            title=entry["title"]["label"],
            text=entry["content"]["label"],
            rating=int(entry["im:rating"]["label"]),
            created_at=utcnow(),
        )
        for entry in entries
    ]


def test_an_off_topic_app_store_review_scores_low_once_enough_reviews_are_accepted(
    store: Store,
) -> None:
    feed = reviews()
    first, later = feed[:25], feed[25:]
    relevance = Relevance(store)
    relevance.refresh()
    assert relevance.score(first[0]) is None  # a new feed: no decision
    store.ingest("appstore-1", first, {}, lambda m: [])
    relevance.refresh()
    assert relevance.counts() == {"source:appstore": (25, 0)}
    scores = {m.title: relevance.score(m) for m in later}
    assert scores["Dentists of Tucson"] is not None and scores["Dentists of Tucson"] < 0.2
    restland = next(title for title in scores if "Restland" in title)
    assert (scores[restland] or 1.0) < 0.2
    on_topic = [s for t, s in scores.items() if t != restland and t != "Dentists of Tucson"]
    relevant = [s for s in on_topic if s is not None and s >= 0.5]
    assert len(relevant) >= len(on_topic) - 2  # the vaguest one may fall below
    # A fresh process reads the same models from the store.
    again = Relevance(store)
    again.refresh()
    assert again.counts() == relevance.counts()
    assert again.score(later[4]) == scores["Dentists of Tucson"]


def test_a_review_feed_first_page_scores_its_own_outliers(store: Store) -> None:
    """Cold start of a feed: the page's other reviews serve as the accepted examples."""
    feed = reviews()
    relevance = Relevance(store)
    relevance.refresh()
    assert relevance.score(feed[0]) is None  # nothing stored, nothing primed: no decision
    assert relevance.prime_feed(feed) == 1
    scores = {m.title: relevance.score(m) for m in feed}
    off_topic = [t for t in scores if t == "Dentists of Tucson" or "Restland" in t]
    assert len(off_topic) == 2 and all((scores[t] or 1.0) < 0.2 for t in off_topic)
    on_topic = [s for t, s in scores.items() if t not in off_topic]
    assert sum(s is not None and s >= 0.5 for s in on_topic) >= len(on_topic) - 3
    # a feed with enough stored reviews of its own is scored against them, not its page
    store.ingest("appstore-1", feed[:25], {}, lambda m: [])
    relevance.refresh()
    assert relevance.prime_feed(feed[25:]) == 0
    # a page too small to say what is typical primes nothing
    assert Relevance(store, min_examples=5).prime_feed(feed[:5]) == 0


def test_a_review_off_the_primed_page_is_scored_against_the_whole_page(store: Store) -> None:
    feed = reviews()
    page, other = feed[:30], feed[30]
    relevance = Relevance(store)
    relevance.refresh()
    assert relevance.prime_feed(page) == 1
    whole = model_of([m.body[:2000] for m in page])
    expected = whole.score(embed(other.body[:2000]))
    assert expected is not None
    assert relevance.score(other) == round(expected, 4)  # nothing subtracted: not a member
    # the next page is too small to prime: the old page no longer speaks for the feed
    assert relevance.prime_feed(feed[31:33]) == 0
    assert relevance.score(feed[31]) is None


def test_the_model_follows_stored_mentions_and_not_relevant_clicks(store: Store) -> None:
    mentions = [
        Mention(
            source="hackernews",
            external_id=str(i),
            title=text,
            matched_query="bolt",
            created_at=utcnow(),
        )
        for i, text in enumerate(PRODUCT + ATHLETE)
    ]
    spam = Mention(
        source="hackernews",
        external_id="spam",
        title="cheap pills",
        matched_query="bolt",
        intents=["spam"],
        created_at=utcnow(),
    )
    low = Mention(
        source="hackernews",
        external_id="low",
        title="Bolt the dog",
        matched_query="bolt",
        relevance=0.1,
        created_at=utcnow(),
    )
    relevance = Relevance(store)
    store.ingest(None, [*mentions, spam, low], None, lambda m: [])
    relevance.refresh()
    # Spam and what was held as probably unrelated are not accepted examples.
    assert relevance.counts() == {"bolt": (8, 0)}
    assert relevance_key(None, "appstore") == "source:appstore"
    probe = Mention(
        source="hackernews",
        external_id="p",
        title=ATHLETE_PROBE,
        matched_query="bolt",
        created_at=utcnow(),
    )
    before = relevance.score(probe)
    athletes = [m for m in mentions if m.title in ATHLETE]
    for m in athletes:
        assert m.id is not None
        transition(store, m.id, "not_relevant", Actor("ULEAD"))
    relevance.refresh()
    relevance.refresh()  # idempotent
    assert relevance.counts() == {"bolt": (6, 2)}
    after = relevance.score(probe)
    assert before is not None and after is not None and after < 0.2 < 0.5 < before
    # A process started after the clicks reads the same sums.
    fresh = Relevance(store)
    fresh.refresh()
    assert fresh.counts() == {"bolt": (6, 2)}
    assert fresh.score(probe) == after


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def make_app(slack: FakeSlack, database_url: str) -> Earshot:
    settings = parse_settings(
        {
            "product": {"name": "Bolt", "queries": ["bolt"]},
            "slack": {
                "api_url": slack.api_url,
                "alerts_channel": "#cx-alerts",
                "amplify_channel": "#cx-wins",
                "min_interval": 0,
            },
            # Neutral mentions to the alerts channel's daily digest: the channel has one.
            "routes": [{"sentiment": ["neutral"], "action": "daily", "channel": "#cx-alerts"}],
            "sources": [{"type": "hackernews", "base_url": HN, "backfill": "10000d"}],
        }
    )
    app = build(settings, Secrets(slack_bot_token="xoxb-test"), database=database_url)
    app.worker.per_channel_interval = 0.0
    negative = SentimentResult(Label.NEGATIVE, -0.6, ("broke",))
    app.pipeline.classifier = type("Stub", (), {"classify": lambda *a, **k: negative})()
    return app


def poll(app: Earshot, titles: list[str], first_id: int) -> None:
    items = [hn_hits(first_id + i, 0, 1, title)[0] for i, title in enumerate(titles)]
    for i, item in enumerate(items):
        item["created_at_i"] = 1_700_000_000 + first_id + i
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        router.get(f"{HN}/search_by_date").respond(
            json={"hits": items, "nbHits": len(items), "nbPages": 1, "page": 0}
        )
        report = app.pipeline.poll_all(app.sources, force=True)[0]
        assert report.ok and report.stored == len(items)
        app.worker.drain(timeout=30)


def stored(app: Earshot, title: str) -> Mention:
    with Session(app.store.engine) as session:
        found = session.exec(select(Mention).where(Mention.title == title)).one()
        session.expunge(found)
        return found


def test_a_mention_like_the_ones_marked_not_relevant_goes_to_the_digest_not_an_alert(
    slack: FakeSlack, database_url: str
) -> None:
    app = make_app(slack, database_url)
    try:
        poll(app, PRODUCT + ATHLETE, 100)  # a new query: nothing scored, all alerted
        assert len(slack.messages) == len(PRODUCT + ATHLETE)
        assert all(stored(app, t).relevance is None for t in PRODUCT + ATHLETE)
        for title in ATHLETE:  # a lead: "Not relevant"
            mention_id = stored(app, title).id
            assert mention_id is not None
            assert transition(app.store, mention_id, "not_relevant", Actor("ULEAD")).changed

        poll(app, [ATHLETE_PROBE, PRODUCT_PROBE], 200)
        athlete, product = stored(app, ATHLETE_PROBE), stored(app, PRODUCT_PROBE)
        assert athlete.relevance is not None and athlete.relevance < 0.5
        assert (athlete.digest, athlete.digest_channel) == ("daily", "#cx-alerts")
        assert product.relevance is not None and product.relevance >= 0.5
        assert product.digest is None
        alerted = [m for m in slack.messages if m["channel"] == "#cx-alerts"]
        assert len(alerted) == len(PRODUCT + ATHLETE) + 1  # the product mention only
        assert not any(ATHLETE_PROBE in json.dumps(m) for m in slack.messages)

        kind, schedule = next(s for s in app.extras["digests"] if s[0] == "daily")
        assert schedule.min_relevance == 0.5
        period = due_period(kind, schedule, utcnow() + timedelta(days=1))
        digest = build_digest(app.store, period, min_relevance=schedule.min_relevance)
        assert [i.title for i in digest.unrelated] == [ATHLETE_PROBE]
        assert digest.unrelated_total == 1 and digest.held_total == 0
        assert all(i.title != ATHLETE_PROBE for i in digest.top_negative)
        assert "probably unrelated (1)" in digest_text(digest)
        blocks = json.dumps(render_digest(digest).blocks)
        assert "Probably unrelated (1)" in blocks
    finally:
        app.close()


def test_without_a_digest_a_probably_unrelated_mention_is_stored_only(
    slack: FakeSlack, database_url: str
) -> None:
    app = make_app(slack, database_url)
    app.pipeline.unrelated_digests = {}  # the alerts channel has no digest
    try:
        poll(app, PRODUCT + ATHLETE, 100)
        for title in ATHLETE:
            mention_id = stored(app, title).id
            assert mention_id is not None
            transition(app.store, mention_id, "not_relevant", Actor("ULEAD"))
        sent = len(slack.messages)
        poll(app, [ATHLETE_PROBE], 300)
        athlete = stored(app, ATHLETE_PROBE)
        assert athlete.relevance is not None and athlete.relevance < 0.5
        assert athlete.digest is None and len(slack.messages) == sent
    finally:
        app.close()


def test_relevance_can_be_switched_off(slack: FakeSlack, database_url: str) -> None:
    settings = parse_settings(
        {
            "product": {"name": "Bolt", "queries": ["bolt"]},
            "relevance": {"enabled": False},
            "sources": [{"type": "hackernews", "base_url": HN}],
        }
    )
    app = build(settings, Secrets(), database=database_url)
    try:
        assert app.pipeline.relevance is None
    finally:
        app.close()
    with pytest.raises(ConfigError, match=r"relevance\.min_relevance"):
        parse_settings(
            {
                "product": {"name": "Bolt", "queries": ["bolt"]},
                "relevance": {"min_relevance": 1.5},
                "sources": [{"type": "hackernews", "base_url": HN}],
            }
        )


def test_the_classifier_and_relevance_share_one_embedding_per_mention(
    slack: FakeSlack, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each new mention is embedded once (by the classifier), and relevance scores it with
    exactly the vector it would have computed itself."""
    pooled: list[int] = []
    original = EmbeddingModel._pool

    def counting(self: EmbeddingModel, ids: list[int]) -> np.ndarray:
        pooled.append(len(ids))
        return original(self, ids)

    monkeypatch.setattr(EmbeddingModel, "_pool", counting)
    settings = parse_settings(
        {
            "product": {"name": "Bolt", "queries": ["bolt"]},
            "sources": [{"type": "hackernews", "base_url": HN, "backfill": "10000d"}],
        }
    )
    app = build(settings, Secrets(), database=database_url)
    try:
        classifier = app.pipeline.classifier
        assert isinstance(classifier, ExperienceClassifier)
        assert app.pipeline.relevance is not None
        assert app.pipeline.relevance.embeds_with(classifier.embed_texts)
        poll(app, PRODUCT + ATHLETE, 100)
        assert len(pooled) == len(PRODUCT + ATHLETE)  # was twice that
        # a second process, as the pipeline's relevance is now, embedding texts itself
        fresh = Relevance(app.store, embed=classifier.embed_texts)
        fresh.refresh()
        pooled.clear()
        # the next poll's refresh counts the stored mentions with the vectors it kept
        poll(app, [ATHLETE_PROBE, PRODUCT_PROBE], 200)
        assert len(pooled) == 2
        # the stored scores are what relevance gives when it embeds the texts itself
        for title in (ATHLETE_PROBE, PRODUCT_PROBE):
            mention = stored(app, title)
            assert mention.relevance is not None
            assert fresh.score(mention) == mention.relevance
    finally:
        app.close()


def test_the_classifier_returns_the_embedding_relevance_reads() -> None:
    classifier = ExperienceClassifier()
    text = "@bolt Bolt's #AICodeEditor keeps timing out https://bolt.new/x **again**"
    result = classifier.classify(text)
    assert result.embedding is not None
    assert np.array_equal(result.embedding, classifier.embed_texts([text])[0])
    assert result == classifier.classify(text)  # not part of the result's value
    # a text the classifier does not read (not English) carries no embedding
    assert classifier.classify("Die App stürzt ständig ab, bitte beheben").embedding is None


def test_vectors_kept_for_the_next_refresh_are_bounded(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Vectors of mentions that are never stored (another replica stored them first) do not
    pile up: past the bound the oldest go; the newest, about to be counted, stay."""
    monkeypatch.setattr("earshot.listener.relevance.KEPT_VECTORS", 3)
    relevance = Relevance(store, embed=lambda texts: np.ones((len(texts), 4), np.float32))
    mentions = [
        Mention(source="hackernews", external_id=str(i), title="bolt", created_at=utcnow())
        for i in range(5)
    ]
    for mention in mentions:
        relevance.score(mention)
    assert list(relevance._vectors) == [
        ("hackernews", "2"),
        ("hackernews", "3"),
        ("hackernews", "4"),
    ]
