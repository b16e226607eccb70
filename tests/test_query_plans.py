"""Every query of the hot path is served by an index: none reads ``mentions`` or ``outbox``
whole.

The statements are not listed by hand: a ``before_cursor_execute`` hook records the SQL
that earshot really sends while it polls a source (twice, with an overlap and a storm),
drains the outbox to the loopback fake Slack (stories included: a shared link and a copied
complaint, threaded, with their live-count updates), handles clicks from the real Slack payloads
(Handled, "Wrong sentiment" with its re-route, "Not relevant"), and runs its scheduler
jobs (digests, spikes, sentiment shifts, the reach refresh with its flags and alert
re-renders, SLA escalation, the model and query refreshes, the gauges). Each recorded
statement is then planned with ``EXPLAIN QUERY PLAN`` on SQLite and ``EXPLAIN`` on
PostgreSQL, where ``enable_seqscan = off`` makes the planner take an
index whenever one can serve the query (on tiny tables it would rightly prefer a
sequential scan), so the question asked is "is there an index for this", not "is the table
small".

A full scan is ``SCAN mentions``/``SCAN outbox`` on SQLite (with or without ``USING
INDEX``: reading a whole index is a full scan too) and, on PostgreSQL, a ``Seq Scan`` of
either table or an index scan of it with no index condition. One shape is bounded, not
full: the newest ``n`` rows, unfiltered (``ORDER BY id DESC LIMIT n`` with no ``WHERE``,
relevance's first read), which reads ``n`` rows whatever the table's size. A new query
without an index fails here with its SQL and its plan.

Not on the hot path: ``Store.outbox_counts`` (the outbox gauges, per ``/metrics`` scrape,
and the CLI) counts every row by status, which reads the whole status index by nature.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import respx
from slack_sdk import WebClient
from sqlalchemy import event

from earshot.config.settings import Secrets, parse_settings
from earshot.config.wiring import (
    Earshot,
    build,
    check_shifts_job,
    check_spikes_job,
    refresh_model,
    refresh_queries,
    send_digests,
)
from earshot.listener import workflow as wf
from earshot.listener.models import utcnow
from earshot.listener.reach import ReachPolicy
from earshot.listener.reach_refresh import refresh_reach
from earshot.responders.interactions import VIEW_WRONG_SENTIMENT, InteractionConfig
from earshot.responders.slack_app import ApproverCheck, SlackInteractivity

from .conftest import hn_hits
from .fakeslack import FakeSlack, fault_from_case

HN = "https://hn.test/api/v1"
SLACK = Path(__file__).parent / "fixtures" / "slack"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
#: The tables that grow without bound; a full scan of either is what this test refuses.
BIG = ("mentions", "outbox")


@dataclass
class Recorded:
    """The distinct statements an engine ran, each with the parameters of its first run."""

    statements: dict[str, Any] = field(default_factory=dict)

    def __call__(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if many and isinstance(parameters, list | tuple):
            parameters = parameters[0] if parameters else None
        self.statements.setdefault(statement, parameters)


class Inline(Executor):
    """Bolt's listener executor, inline: when ``dispatch`` returns, the work is done."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def slack_fixture(relative: str) -> Any:
    return json.loads((SLACK / relative).read_text("utf-8"))


def make_app(slack: FakeSlack, database_url: str) -> Earshot:
    settings = parse_settings(
        {
            "product": {"name": "Acme", "queries": ["checkout", "acme"]},
            "slack": {
                "api_url": slack.api_url,
                "alerts_channel": "#cx-alerts",
                "amplify_channel": "#cx-wins",
                "min_interval": 0,
                "storm_threshold": 3,
                "storm_window": "10m",
            },
            "routes": [{"sentiment": ["neutral"], "action": "daily", "channel": "#cx-alerts"}],
            "digests": {"weekly": ["#cx-alerts"]},
            "sources": [{"type": "hackernews", "base_url": HN, "backfill": "10000d"}],
        }
    )
    app = build(settings, Secrets(slack_bot_token="xoxb-test"), database=database_url)
    app.worker.per_channel_interval = 0.0
    return app


#: Different complaints (a storm of them), but for the last, a copy of the eighth (which
#: the first poll stores, the second copies).
COMPLAINTS = [
    "Checkout is broken again, terrible, I want a refund",
    "The checkout page times out every single time I try to pay, awful",
    "Checkout rejected my card twice and charged me anyway, worst experience",
    "Cannot finish checkout on mobile, the button does nothing, so frustrating",
    "Checkout lost my cart after I logged in, terrible",
    "Your checkout asks for my address four times, this is broken",
    "Checkout crashed and now I have two orders, I want my money back",
    "Checkout keeps failing for every customer in our office today and support is silent",
    "Checkout says my coupon is invalid although it is not, very annoying and bad",
    "The checkout flow breaks whenever I switch tabs, hate it",
    "Stuck on the checkout spinner for ten minutes, horrible service",
    "Anyone else? Checkout keeps failing for every customer in our office today and support "
    "is silent",
]
#: Two of the complaints link to one article: one story by its link.
STORY_LINK = "https://status.acme.example/incidents/42?utm_source=hn"


def poll_and_drain(app: Earshot, start: int, count: int) -> None:
    items = hn_hits(70_000, start, count, "{i}")
    for hit in items:
        index = int(hit["title"])
        hit["title"] = COMPLAINTS[index % len(COMPLAINTS)]
        if index in (2, 5):
            hit["url"] = STORY_LINK
    items += hn_hits(80_000, start, 2, "Acme checkout is fine, nothing special ({i})")
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        router.get(f"{HN}/search_by_date").respond(
            json={"hits": items, "nbHits": len(items), "nbPages": 1, "page": 0}
        )
        (report,) = app.pipeline.poll_all(app.sources, force=True)
        assert report.ok, report.errors
    app.worker.drain(timeout=30)


class Clicks:
    """Real Slack payloads, signed, through the Bolt app over HTTP."""

    def __init__(self, app: Earshot, slack: FakeSlack) -> None:
        self.app = app
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        self.ui = SlackInteractivity(
            app.store,
            InteractionConfig(
                product="Acme",
                is_approver=ApproverCheck(["U111"]),
                wins_channel="#wins",
                queries=["checkout", "acme"],
                alerts_channel="#cx-alerts",
                router=app.pipeline.router,
                # the SLA job's high-reach pass runs its own query
                reach=ReachPolicy(sla_seconds=900.0),
            ),
            client=client,
            mode="http",
            signing_secret=SECRET,
            listener_executor=Inline(),
        )

    def post(self, payload: dict[str, Any]) -> None:
        body = ("payload=" + quote(json.dumps(payload))).encode()
        stamp = str(int(time.time()))
        base = f"v0:{stamp}:".encode() + body
        digest = hmac.new(SECRET.encode(), base, hashlib.sha256).hexdigest()
        headers = {
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": f"v0={digest}",
            "content-type": "application/x-www-form-urlencoded",
        }
        status, _, answer = self.ui.handle_http(body, headers)
        assert status == 200, answer

    def button(self, mention_id: int, action_id: str) -> None:
        payload = copy.deepcopy(
            slack_fixture("interactivity/block_actions_button_in_channel_message.bolt.json")
        )
        where = wf.alert_message(self.app.store, mention_id)
        assert where is not None, mention_id
        channel, ts = where
        payload["actions"][0].update(
            {"action_id": action_id, "value": str(mention_id), "action_ts": f"{time.time():.6f}"}
        )
        payload["container"].update({"channel_id": channel, "message_ts": ts})
        payload["channel"]["id"] = channel
        self.post(payload)

    def correct(self, mention_id: int, slack: FakeSlack, label: str) -> None:
        self.button(mention_id, "earshot_wrong_sentiment")
        view = slack.views[-1]["view"]
        assert view["callback_id"] == VIEW_WRONG_SENTIMENT
        payload = copy.deepcopy(slack_fixture("interactivity/view_submission.bolt.json"))
        payload["view"]["callback_id"] = view["callback_id"]
        payload["view"]["private_metadata"] = view["private_metadata"]
        payload["view"]["state"]["values"] = {
            "label": {"label": {"type": "static_select", "selected_option": {"value": label}}}
        }
        self.post(payload)


def alerted_ids(app: Earshot) -> list[int]:
    with app.store.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT mention_id FROM outbox WHERE kind = 'alert' AND status = 'sent' "
            "ORDER BY mention_id"
        )
        return [int(r[0]) for r in rows]


def hot_path(app: Earshot, slack: FakeSlack) -> None:
    """What a running earshot does, once each: polls, delivery, clicks, scheduler jobs."""
    app.worker.backoff_base = 0.0  # the retried send below goes again at once
    # The first post gets a 500: its outcome is unknown, so the retry looks it up first.
    slack.faults = [fault_from_case("server_error_html")]
    poll_and_drain(app, 0, 8)  # a storm: past 3 alerts, a summary and thread replies
    assert any(method == "conversations.history" for method, _ in slack.requests)
    clicks = Clicks(app, slack)
    first, second, third = alerted_ids(app)[:3]
    clicks.button(first, "earshot_handled")
    clicks.button(second, "earshot_not_relevant")
    clicks.correct(third, slack, "positive")  # re-routed to the amplify channel
    app.worker.drain(timeout=30)
    poll_and_drain(app, 4, 8)  # overlaps the first page: known ids, the storm goes on
    now = utcnow()
    refresh_reach_grown(app, now)  # the refresh: figures updated, crossings flagged
    later = now + timedelta(days=8)  # every digest is due, every alert overdue
    send_digests(app, later)
    check_spikes_job(app, now)
    check_shifts_job(app, now)
    clicks.ui.escalate(now=later)
    wf.unhandled(app.store, "#cx-alerts", reach=ReachPolicy())  # /earshot unhandled
    refresh_model(app)
    refresh_queries(app)
    app.worker.drain(timeout=30)
    app.store.next_due()


def refresh_reach_grown(app: Earshot, now: Any) -> None:
    """The reach-refresh job, with every story asked for grown to 500 points (its
    candidates go back far enough to include the polled items, dated 2023)."""

    def stories(request: httpx.Request) -> httpx.Response:
        tags = request.url.params["tags"]
        ids = [t.removeprefix("story_") for t in tags[len("story,(") : -1].split(",")]
        hits = []
        for object_id in ids:
            (hit,) = hn_hits(int(object_id), 0, 1, "grown")
            hit.update(points=500, num_comments=40)
            hits.append(hit)
        return httpx.Response(200, json={"hits": hits, "nbHits": len(hits), "nbPages": 1})

    with respx.mock(assert_all_called=False) as router:
        grown = router.get(f"{HN}/search_by_date").mock(side_effect=stories)
        report = refresh_reach(
            app.store,
            app.sources,
            ReachPolicy(sla_seconds=900.0),
            window_seconds=10 * 365 * 86400.0,
            now=now,
        )
    assert grown.called and report.flagged and not report.errors, report


def explain_sqlite(conn: Any, statement: str, parameters: Any) -> list[str]:
    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters or ()).all()
    return [str(row[-1]) for row in rows]


def newest_rows(statement: str) -> bool:
    """``SELECT ... FROM t ORDER BY t.id DESC LIMIT n`` with no ``WHERE``: bounded."""
    flat = " ".join(statement.split())
    return " WHERE " not in flat and re.search(r" ORDER BY \w+\.id DESC LIMIT ", flat) is not None


def sqlite_full_scans(plan: list[str], statement: str) -> list[str]:
    pattern = re.compile(r"^SCAN (" + "|".join(BIG) + r")\b")
    return [line for line in plan if pattern.match(line) and not newest_rows(statement)]


def explain_postgres(conn: Any, statement: str, parameters: Any) -> Any:
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
        return cursor.fetchone()[0][0]["Plan"]
    finally:
        cursor.close()


def postgres_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from postgres_nodes(child)


def postgres_full_scans(plan: dict[str, Any], statement: str) -> list[str]:
    found = []
    for node in postgres_nodes(plan):
        if node.get("Relation Name") not in BIG:
            continue
        kind = node["Node Type"]
        whole_index = kind in ("Index Scan", "Index Only Scan") and "Index Cond" not in node
        if kind == "Seq Scan" or (whole_index and not newest_rows(statement)):
            found.append(f"{kind} on {node['Relation Name']} ({node.get('Index Name', '')})")
    return found


def planned(statement: str) -> bool:
    """SELECT, UPDATE and DELETE read the tables; a plain INSERT only probes its unique
    indexes (``ON CONFLICT``), which are indexes by definition."""
    head = statement.lstrip().split(None, 1)[0].upper()
    return head in ("SELECT", "UPDATE", "DELETE", "WITH") or (
        head == "INSERT" and re.search(r"\bSELECT\b", statement, re.I) is not None
    )


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def test_no_query_of_the_hot_path_reads_mentions_or_outbox_whole(
    slack: FakeSlack, database_url: str
) -> None:
    app = make_app(slack, database_url)
    recorded = Recorded()
    event.listen(app.store.engine, "before_cursor_execute", recorded)
    try:
        hot_path(app, slack)
    finally:
        event.remove(app.store.engine, "before_cursor_execute", recorded)
    statements = {s: p for s, p in recorded.statements.items() if planned(s)}
    touching = [s for s in statements if re.search(r"\b(mentions|outbox)\b", s)]
    assert len(touching) >= 20, sorted(touching)  # the flow above really ran
    # Stories ran too: keys looked up, a copy compared with its story's first mention, a
    # parent alert found for a reply.
    assert any("story_keys" in s and s.lstrip().startswith("SELECT") for s in statements)
    assert any("mentions.story_id IN" in s and "min(mentions.id)" in s for s in statements)
    assert any("JOIN mentions" in s and "story_id" in s for s in statements)
    problems: list[str] = []
    with app.store.engine.connect() as conn:
        if app.store.dialect == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in statements.items():
            if app.store.dialect == "postgresql":
                plan = explain_postgres(conn, statement, parameters)
                bad = postgres_full_scans(plan, statement)
                shown: Any = json.dumps(plan, indent=1)
            else:
                lines = explain_sqlite(conn, statement, parameters)
                bad = sqlite_full_scans(lines, statement)
                shown = "\n".join(lines)
            if bad:
                problems.append(f"{'; '.join(bad)}\n{statement}\n{shown}\n")
    app.close()
    assert not problems, f"{len(problems)} statements read a big table whole:\n\n" + "\n".join(
        problems
    )
