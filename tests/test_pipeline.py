"""End to end: sources (respx, real payloads) -> pipeline -> outbox -> a loopback fake Slack."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from sqlmodel import Session, col, select

from earshot.config.service import run_once
from earshot.config.settings import Secrets, parse_settings
from earshot.config.wiring import Earshot, build
from earshot.listener.models import Intent, Label, Mention
from earshot.listener.sentiment import SentimentResult
from earshot.responders.blocks import validate_blocks, validate_message

from .conftest import load_json
from .fakeslack import FakeSlack, fault_from_case

HN = "https://hn.test/api/v1"
REDDIT = "https://reddit.test"
APPLE = "https://apple.test"
REVIEWS = APPLE + "/us/rss/customerreviews/page={page}/id=284815942/sortby=mostrecent/json"


def settings(api_url: str, **product: Any) -> Any:
    return parse_settings(
        {
            "product": {"name": "Acme", "queries": ["apple", "google", "kakapo*"], **product},
            "slack": {
                "api_url": api_url,
                "alerts_channel": "#cx-alerts",
                "amplify_channel": "#cx-wins",
            },
            "sources": [
                {"type": "hackernews", "base_url": HN, "backfill": "10000d"},
                {
                    "type": "reddit",
                    "base_url": REDDIT,
                    "subreddits": ["kakapo"],
                    "listings": ["comments"],
                    "backfill": "10000d",
                },
                {"type": "appstore", "base_url": APPLE, "app_id": 284815942, "backfill": "10000d"},
            ],
        }
    )


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def make_app(slack: FakeSlack, database_url: str, **product: Any) -> Earshot:
    app = build(
        settings(slack.api_url, **product),
        Secrets(slack_bot_token="xoxb-test-token"),
        database=database_url,
    )
    app.worker.per_channel_interval = 0.0
    return app


def hn_answer(hits: list[dict[str, Any]]) -> dict[str, Any]:
    return {"hits": hits, "nbHits": len(hits), "nbPages": 1, "page": 0}


def mock_sources(router: respx.MockRouter, *, hn_hits: list[dict[str, Any]] | None = None) -> None:
    story = load_json("hn_algolia/search_by_date_story_query_apple.json")["hits"]
    comment = load_json("hn_algolia/search_by_date_comment_query_apple.json")["hits"]
    router.get(f"{HN}/search_by_date").respond(
        json=hn_answer(hn_hits if hn_hits is not None else story + comment)
    )
    router.get(f"{REDDIT}/r/kakapo/comments.json").respond(
        json=load_json("reddit/r_kakapo_comments_page1.json")
    )
    router.get(REVIEWS.format(page=1)).respond(
        json=load_json("appstore/customerreviews_us_id284815942_json.json")
    )
    router.get(url__regex=r"https://apple\.test/us/rss/customerreviews/page=([2-9]|10)/").respond(
        json={"feed": {}}
    )


def every_string(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from every_string(item)
    elif isinstance(value, list):
        for item in value:
            yield from every_string(item)


def test_twice_on_the_same_responses_posts_each_alert_once(
    slack: FakeSlack, database_url: str
) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        mock_sources(router)
        app = make_app(slack, database_url)
        assert run_once(app) == 0
        first = len(slack.messages)
        assert first > 5
        keys = [m["metadata"]["event_payload"]["key"] for m in slack.messages]
        assert len(set(keys)) == first
        assert run_once(app) == 0
        app.close()
        assert len(slack.messages) == first
        # Across a restart too: a new process on the same database posts nothing new.
        again = make_app(slack, database_url)
        assert run_once(again) == 0
        again.close()
    assert len(slack.messages) == first
    channels = {m["channel"] for m in slack.messages}
    assert channels <= {"#cx-alerts", "#cx-wins"}
    for message in slack.messages:
        assert message["unfurl_links"] is False and message["unfurl_media"] is False
        assert message["text"]
        assert validate_blocks(message["blocks"]) == []
        assert validate_message(message) == []


def test_apple_does_not_match_applauded(slack: FakeSlack, database_url: str) -> None:
    comment = load_json("hn_algolia/search_by_date_comment_query_apple.json")["hits"]
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        mock_sources(router, hn_hits=comment)
        app = make_app(slack, database_url)
        reports = app.pipeline.poll_all(app.sources[:1], force=True)
        app.close()
    assert reports[0].fetched == 1 and reports[0].matched == 0 and reports[0].stored == 0


def test_hostile_mention_text_is_escaped_in_posted_blocks(
    slack: FakeSlack, database_url: str
) -> None:
    hit = copy.deepcopy(load_json("hn_algolia/search_by_date_comment_query_apple.json")["hits"][0])
    hit["objectID"] = "999"
    # Algolia's comment_text is HTML, so the raw characters arrive entity-encoded.
    hit["comment_text"] = (
        "&lt;!channel&gt; apple is terrible, awful, the worst. &lt;@U123&gt; &lt;!here|here&gt;"
        " &lt;https://evil.example|https://bank.example&gt;"
    )
    hit["author"] = "<!everyone>"
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        mock_sources(router, hn_hits=[hit])
        app = make_app(slack, database_url)
        app.pipeline.poll_all(app.sources[:1], force=True)
        app.worker.drain(timeout=10)
        app.close()
    assert len(slack.messages) == 1
    message = slack.messages[0]
    assert message["channel"] == "#cx-alerts"
    strings = list(every_string({"blocks": message["blocks"], "text": message["text"]}))
    joined = "\n".join(strings)
    assert "<!channel>" not in joined and "<@U123>" not in joined and "<!everyone>" not in joined
    assert "<!here" not in joined and "<https://evil" not in joined
    assert "&lt;!channel&gt;" in joined and "&lt;@U123&gt;" in joined


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(200, content=b'{"hits": [{"objectID": "1", "created_'),
        httpx.Response(502, text="<html><body><h1>502 Bad Gateway</h1></body></html>"),
        httpx.Response(
            200,
            text="<!DOCTYPE html><html>maintenance</html>",
            headers={"content-type": "text/html"},
        ),
        httpx.Response(403, json={"message": "Forbidden"}),
        httpx.Response(429, headers={"Retry-After": "120"}),
        httpx.ReadTimeout("timed out"),
    ],
    ids=["truncated-json", "502-html", "html-200", "403", "429", "timeout"],
)
def test_a_malformed_source_does_not_stop_the_others(
    slack: FakeSlack, database_url: str, failure: httpx.Response | Exception
) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        mock_sources(router)
        hn_route = router.get(f"{HN}/search_by_date")
        if isinstance(failure, Exception):
            hn_route.mock(side_effect=failure)
        else:
            hn_route.mock(return_value=failure)
        app = make_app(slack, database_url)
        code = run_once(app)
        hn = app.sources[0]
        health = app.pipeline.health_of(hn)
        cursor = app.store.get_cursor(hn.key)
        stored_other = app.store.get_cursor(app.sources[2].key)
        app.close()
    assert code == 0
    assert health.status == "failing" and health.consecutive_failures == 1
    assert health.last_error
    # The HN cursor never moved past what was not stored: no term has a position yet.
    assert not (cursor or {}).get("terms")
    assert stored_other is not None
    assert slack.messages  # the App Store and Reddit alerts went out
    assert all("hackernews" not in m["metadata"]["event_payload"]["key"] for m in slack.messages)
    assert app.pipeline.totals["errors"] >= 1


def test_slack_429_and_500_are_retried_and_delivered_once(slack: FakeSlack, tmp_path: Path) -> None:
    slack.faults = [fault_from_case("ratelimited"), fault_from_case("server_error_html")]
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        mock_sources(router)
        app = make_app(slack, f"sqlite:///{tmp_path / 'e.db'}")
        assert run_once(app, drain_timeout=60) == 0
        counts = app.store.outbox_counts()
        app.close()
    keys = [m["metadata"]["event_payload"]["key"] for m in slack.messages]
    assert len(keys) == len(set(keys))
    assert counts.get("pending", 0) == 0 and counts.get("failed", 0) == 0
    assert counts["sent"] == len(keys)
    posts = [r for r in slack.requests if r[0] == "chat.postMessage"]
    assert len(posts) == len(keys) + 2  # the two faulted attempts were retried


def test_invalid_auth_is_undeliverable_not_a_crash_loop(slack: FakeSlack, tmp_path: Path) -> None:
    slack.faults = [fault_from_case("invalid_auth") for _ in range(100)]
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        mock_sources(router)
        app = make_app(slack, f"sqlite:///{tmp_path / 'e.db'}")
        code = run_once(app, drain_timeout=30)
        counts = app.store.outbox_counts()
        app.close()
    assert code == 1
    assert counts.get("failed", 0) > 0 and counts.get("pending", 0) == 0
    assert not slack.messages
    posts = [r for r in slack.requests if r[0] == "chat.postMessage"]
    assert len(posts) == counts["failed"]  # one attempt each, no retry loop


def test_neutral_mentions_are_stored_without_alert(slack: FakeSlack, tmp_path: Path) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        mock_sources(router)
        app = make_app(slack, f"sqlite:///{tmp_path / 'e.db'}")
        reports = app.pipeline.poll_all(app.sources, force=True)
        app.worker.drain(timeout=10)
        with Session(app.store.engine) as session:
            stored = list(session.exec(select(Mention)))
        app.close()
    labels: dict[str, int] = {}
    for report in reports:
        for label, count in report.labels.items():
            labels[label] = labels.get(label, 0) + count
    assert labels.get("neutral", 0) > 0
    # The safe routing, spelled out: spam nowhere; complaints (by label or intent) and
    # unscored text to the alerts channel; praise to the amplify channel; the rest stored.
    expected: dict[str, list[str]] = {"#cx-alerts": [], "#cx-wins": []}
    for mention in stored:
        tags = set(mention.intents)
        label = mention.sentiment_label
        if "spam" in tags:
            continue
        if mention.relevance is not None and mention.relevance < 0.5:
            continue  # probably unrelated: held for a digest (none here), not alerted
        if label in ("negative", "mixed", "unscored") or tags & {"bug", "billing", "churn_risk"}:
            expected["#cx-alerts"].append(str(mention.id))
        elif label == "positive" and "praise" in tags:
            expected["#cx-wins"].append(str(mention.id))
    assert expected["#cx-alerts"]
    posted: dict[str, list[str]] = {"#cx-alerts": [], "#cx-wins": []}
    for message in slack.messages:
        posted[message["channel"]].append(str(message["metadata"]["event_payload"]["mention_id"]))
    assert {k: sorted(v) for k, v in posted.items()} == {k: sorted(v) for k, v in expected.items()}
    assert len(slack.messages) < len(stored)
    for message in slack.messages:
        assert json.dumps(message["blocks"])


@dataclass(frozen=True)
class OldShape:
    """A classifier result from before the meaning fields: no confidence, intents, model."""

    label: Label
    score: float
    reasons: tuple[str, ...] = ()
    language: str | None = None
    skip: bool = False


class Stub:
    def __init__(self, result: Any) -> None:
        self.result = result

    def classify(self, text: str, rating: int | None = None, language: str | None = None) -> Any:
        return self.result


def poll_with(slack: FakeSlack, database_url: str, result: Any) -> list[Mention]:
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        mock_sources(router)
        app = make_app(slack, database_url)
        app.pipeline.classifier = Stub(result)
        app.pipeline.relevance = None  # these tests are about the classifier's fields
        reports = app.pipeline.poll_all(app.sources, force=True)
        app.worker.drain(timeout=10)
        with Session(app.store.engine) as session:
            stored = list(session.exec(select(Mention).order_by(col(Mention.id))))
        app.close()
    assert sum(report.stored for report in reports) == len(stored) > 5
    return stored


def test_the_classifiers_meaning_is_stored_and_a_positive_complaint_goes_to_the_leads(
    slack: FakeSlack, database_url: str
) -> None:
    result = SentimentResult(
        Label.POSITIVE,
        0.61,
        ("love",),
        confidence=0.912345,
        intents=(Intent.BUG, Intent.CHURN),
        model="meaning-test-1",
    )
    stored = poll_with(slack, database_url, result)
    for mention in stored:
        assert mention.intents == ["bug", "churn_risk"]
        assert mention.sentiment_confidence == 0.9123
        assert mention.model_version == "meaning-test-1"
        assert mention.relevance is None
    # Positive, but tagged bug and churn risk: every alert went to the leads, none to wins.
    assert {m["channel"] for m in slack.messages} == {"#cx-alerts"}
    assert len(slack.messages) == len(stored)


def test_a_classifier_returning_the_old_shape_still_works(
    slack: FakeSlack, database_url: str
) -> None:
    stored = poll_with(slack, database_url, OldShape(Label.POSITIVE, 0.7, ("great",)))
    for mention in stored:
        assert mention.sentiment_label == "positive" and mention.sentiment_reasons == ["great"]
        assert mention.intents == []
        assert mention.sentiment_confidence is None and mention.model_version is None
    # A positive without the praise tag is stored, not amplified.
    assert slack.messages == []


def test_every_failed_term_is_one_error(slack: FakeSlack, tmp_path: Path) -> None:
    """Five query terms that all fail are five errors in the poll's report (and its log
    line), not six: the error the poll fails with is one of them."""
    with respx.mock(assert_all_called=False) as router:
        router.get(f"{HN}/search_by_date").respond(403, json={"message": "forbidden"})
        app = make_app(slack, f"sqlite:///{tmp_path / 'e.db'}", queries=list("abcde"))
        try:
            report = app.pipeline.poll(app.sources[0], force=True)
        finally:
            app.close()
    assert report.source == "hackernews"
    assert len(report.errors) == 5, report.errors
    assert report.error_kinds == [report.error_kinds[0]] * 5
