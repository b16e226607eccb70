"""Alert storms: past a threshold, one summary message and the rest in its thread."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import respx

from earshot.config.settings import Secrets, parse_settings
from earshot.config.wiring import Earshot, build

from .conftest import hn_hits
from .fakeslack import FakeSlack

HN = "https://hn.test/api/v1"


def hits(start: int, count: int) -> list[dict[str, Any]]:
    title = "Checkout is broken again ({i}), terrible, I want a refund"
    return hn_hits(50_000, start, count, title)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def make_app(slack: FakeSlack, database_url: str, threshold: int) -> Earshot:
    settings = parse_settings(
        {
            "product": {"name": "Acme", "queries": ["checkout", "acme"]},
            "slack": {
                "api_url": slack.api_url,
                "min_interval": 0,
                "storm_threshold": threshold,
                "storm_window": "10m",
            },
            # The storm's alerts are copies of one text: as a story they would be threaded
            # already (story replies never count toward a storm). Here, storms alone.
            "stories": {"near_duplicate": False},
            "sources": [{"type": "hackernews", "base_url": HN, "backfill": "10000d"}],
        }
    )
    return build(settings, Secrets(slack_bot_token="xoxb-test"), database=database_url)


def poll_and_deliver(app: Earshot, items: list[dict[str, Any]]) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        router.get(f"{HN}/search_by_date").respond(
            json={"hits": items, "nbHits": len(items), "nbPages": 1, "page": 0}
        )
        app.pipeline.poll_all(app.sources, force=True)
        app.worker.drain(timeout=30)


def test_a_storm_collapses_into_one_summary_with_the_rest_in_its_thread(
    slack: FakeSlack, database_url: str
) -> None:
    app = make_app(slack, database_url, threshold=5)
    poll_and_deliver(app, hits(0, 12))
    kinds = Counter(m["metadata"]["event_type"] for m in slack.messages)
    assert kinds == {"earshot_alert": 12, "earshot_storm": 1}
    summary = next(m for m in slack.messages if m["metadata"]["event_type"] == "earshot_storm")
    alerts = [m for m in slack.messages if m["metadata"]["event_type"] == "earshot_alert"]
    threaded = [m for m in alerts if m.get("thread_ts")]
    assert len(threaded) == 7 and all(m["thread_ts"] == summary["ts"] for m in threaded)
    assert slack.messages.index(summary) < slack.messages.index(threaded[0])
    assert "checkout" in summary["text"]
    # The storm goes on: new items join the same thread, no second summary.
    poll_and_deliver(app, hits(12, 3))
    app.close()
    kinds = Counter(m["metadata"]["event_type"] for m in slack.messages)
    assert kinds == {"earshot_alert": 15, "earshot_storm": 1}
    keys = [m["metadata"]["event_payload"]["key"] for m in slack.messages]
    assert len(keys) == len(set(keys))
    assert all(m.get("thread_ts") == summary["ts"] for m in slack.messages[-3:])


def test_below_the_threshold_nothing_collapses(slack: FakeSlack, database_url: str) -> None:
    app = make_app(slack, database_url, threshold=20)
    poll_and_deliver(app, hits(0, 12))
    app.close()
    assert len(slack.messages) == 12
    assert not any(m.get("thread_ts") for m in slack.messages)
