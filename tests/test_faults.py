"""Fault injection against loopback fakes of a source API and of Slack.

Every case ends with each alert delivered exactly once, or reported undeliverable (a failed
outbox row with its reason), never lost and never doubled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from earshot.config.settings import Secrets, parse_settings
from earshot.config.wiring import Earshot, build
from earshot.listener.models import Delivery
from earshot.responders.slack import SlackChannel

from .conftest import load_json
from .fakeapi import Answer, FakeAPI, json_answer
from .fakeslack import FakeSlack, Fault, fault_from_case

REVIEWS = load_json("appstore/customerreviews_us_id284815942_json.json")


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    with FakeAPI() as fake:
        fake.route(r"/page=1/", lambda path, params: json_answer(REVIEWS))
        fake.route(r"/page=\d+/", lambda path, params: json_answer({"feed": {}}))
        yield fake


def make_app(api: FakeAPI, slack: FakeSlack, database_url: str) -> Earshot:
    settings = parse_settings(
        {
            "product": {"name": "Acme"},
            "slack": {"api_url": slack.api_url, "min_interval": 0},
            "sources": [
                {
                    "type": "appstore",
                    "app_id": 284815942,
                    "base_url": api.base_url,
                    "backfill": "10000d",
                },
            ],
        }
    )
    channel = SlackChannel.from_token("xoxb-test", slack.api_url, timeout=1)
    app = build(
        settings, Secrets(slack_bot_token="xoxb-test"), channel=channel, database=database_url
    )
    app.worker.backoff_base = 0.05
    return app


def outcome(app: Earshot, slack: FakeSlack) -> tuple[list[Delivery], list[str]]:
    with Session(app.store.engine) as session:
        rows = list(session.exec(select(Delivery)))
    posted = [
        m["metadata"]["event_payload"]["key"]
        for m in slack.messages
        if (m.get("metadata") or {}).get("event_type") == "earshot_alert"
    ]
    return rows, posted


def assert_exactly_once_or_undeliverable(rows: list[Delivery], posted: list[str]) -> None:
    doubled = [k for k, n in Counter(posted).items() if n > 1]
    assert not doubled, f"posted twice: {doubled}"
    alerts = [r for r in rows if r.kind == "alert"]
    assert alerts
    assert all(r.status in ("sent", "failed") for r in alerts), Counter(r.status for r in alerts)
    sent = {r.idempotency_key for r in alerts if r.status == "sent"}
    assert sent == set(posted)
    for row in alerts:
        if row.status == "failed":
            assert row.last_error  # reported, with its reason


SLACK_FAULTS: dict[str, Callable[[], list[Fault]]] = {
    "429-retry-after": lambda: [fault_from_case("ratelimited") for _ in range(3)],
    "500-html": lambda: [fault_from_case("server_error_html") for _ in range(2)],
    "timeout-after-posting": lambda: [Fault(apply=True, delay=2.0) for _ in range(2)],
    "timeout-before-posting": lambda: [Fault(delay=2.0)],
    "reset-after-posting": lambda: [Fault(apply=True, reset=True) for _ in range(2)],
    "reset-before-posting": lambda: [Fault(reset=True) for _ in range(2)],
    "fatal-error-but-posted": lambda: [
        Fault(body={"ok": False, "error": "fatal_error"}, apply=True) for _ in range(2)
    ],
    "invalid-auth": lambda: [fault_from_case("invalid_auth") for _ in range(200)],
}


@pytest.mark.parametrize("case", sorted(SLACK_FAULTS))
def test_slack_faults(case: str, api: FakeAPI, tmp_path: Path) -> None:
    with FakeSlack() as slack:
        slack.faults = SLACK_FAULTS[case]()
        app = make_app(api, slack, f"sqlite:///{tmp_path / 'e.db'}")
        app.pipeline.poll_all(app.sources, force=True)
        report = app.worker.drain(timeout=60)
        rows, posted = outcome(app, slack)
        app.close()
    assert_exactly_once_or_undeliverable(rows, posted)
    alerts = [r for r in rows if r.kind == "alert"]
    if case == "invalid-auth":
        assert not posted and all(r.status == "failed" for r in alerts)
        assert report.failed == len(alerts)
    else:
        assert all(r.status == "sent" for r in alerts), case
    if case.endswith("after-posting") or case == "fatal-error-but-posted":
        # The uncertain attempts were checked in the channel history before posting again.
        assert any(method == "conversations.history" for method, _ in slack.requests)


def truncated(path: str, params: dict[str, str]) -> Answer:
    return 200, {"content-type": "application/json"}, b'{"feed": {"entry": [{"id": '


SOURCE_FAULTS: dict[str, Callable[[str, dict[str, str]], Answer]] = {
    "403": lambda path, params: json_answer({"message": "Forbidden"}, 403),
    "429": lambda path, params: json_answer({}, 429, {"Retry-After": "1"}),
    "503": lambda path, params: (503, {"content-type": "text/html"}, b"<html>down</html>"),
    "truncated": truncated,
}


@pytest.mark.parametrize("case", sorted(SOURCE_FAULTS))
def test_source_faults_lose_nothing(case: str, tmp_path: Path) -> None:
    failing = {"on": True}

    def page1(path: str, params: dict[str, str]) -> Answer:
        return SOURCE_FAULTS[case](path, params) if failing["on"] else json_answer(REVIEWS)

    with FakeAPI() as api, FakeSlack() as slack:
        api.route(r"/page=1/", page1)
        api.route(r"/page=\d+/", lambda path, params: json_answer({"feed": {}}))
        app = make_app(api, slack, f"sqlite:///{tmp_path / 'e.db'}")
        (report,) = app.pipeline.poll_all(app.sources, force=True)
        assert report.errors and report.stored == 0
        assert app.store.get_cursor(app.sources[0].key) in (None, {"countries": {}})
        health = app.pipeline.health_of(app.sources[0])
        assert health.status == "failing"
        failing["on"] = False  # the API recovers
        (report,) = app.pipeline.poll_all(app.sources, force=True)
        app.worker.drain(timeout=30)
        rows, posted = outcome(app, slack)
        app.close()
    assert report.stored == 50 and not report.errors
    assert health.status == "ok"
    assert_exactly_once_or_undeliverable(rows, posted)
    assert all(r.status == "sent" for r in rows if r.kind == "alert")
