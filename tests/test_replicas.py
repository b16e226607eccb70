"""Two replicas: on the real PostgreSQL, one fake Slack, 500 mentions, each posted once; and
two workers in one process, one of them stalled past its lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from sqlmodel import Session, select

from earshot.listener.models import Delivery, Mention, utcnow
from earshot.listener.store import Store
from earshot.responders.delivery import DeliveryReport, DeliveryWorker
from earshot.responders.slack import SlackChannel

from .conftest import hn_hits
from .fakeapi import FakeAPI, json_answer
from .fakeslack import FakeSlack

COUNT = 500


def hits() -> list[dict[str, Any]]:
    title = "Acme app {i} crashes all the time, terrible and awful, I want a refund"
    return hn_hits(90_000_000, 0, COUNT, title)


def test_two_replicas_post_each_alert_once(tmp_path: Path, fresh_postgres_url: str) -> None:
    items = hits()

    def search(path: str, params: dict[str, str]) -> Any:
        per, page = int(params.get("hitsPerPage", 100)), int(params.get("page", 0))
        chunk = items[page * per : (page + 1) * per]
        pages = (len(items) + per - 1) // per
        return json_answer({"hits": chunk, "page": page, "nbPages": pages, "nbHits": len(items)})

    exe = Path(sys.executable).parent / "earshot"
    with FakeAPI() as api, FakeSlack(post_delay=0.005) as slack:
        api.route(r"/search_by_date", search)
        config = tmp_path / "earshot.toml"
        config.write_text(
            f"""
[product]
name = "Acme"
queries = ["acme"]

[slack]
api_url = "{slack.api_url}"
min_interval = 0

[http]
enabled = false

# The alerts are copies of one text (one story, threaded, no storm); here each stands alone.
[stories]
near_duplicate = false

[[sources]]
type = "hackernews"
base_url = "{api.base_url}"
backfill = "10000d"
every = "2s"
"""
        )
        procs = []
        for replica in ("replica-a", "replica-b"):
            env = {
                **os.environ,
                "SLACK_BOT_TOKEN": "xoxb-test",
                "DATABASE_URL": fresh_postgres_url,
                "EARSHOT_REPLICA_ID": replica,
                "EARSHOT_LOG_LEVEL": "WARNING",
            }
            procs.append(
                subprocess.Popen(
                    [str(exe), "run", "--config", str(config)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        try:
            deadline = time.monotonic() + 120
            while len(slack.messages) < COUNT + 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(3)  # a few more delivery rounds: anything doubled would show now
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            errors = [proc.communicate(timeout=30)[1] for proc in procs]
        assert all(proc.returncode == 0 for proc in procs), errors
        kinds = Counter(m.get("metadata", {}).get("event_type") for m in slack.messages)
        # 500 alerts for one query at once is an alert storm: one summary, the rest threaded.
        assert kinds == {"earshot_alert": COUNT, "earshot_storm": 1}, (
            kinds,
            [m.get("blocks") for m in slack.messages if "earshot_health" in str(m.get("metadata"))],
            [e[-3000:] for e in errors],
        )
        posted = [
            m["metadata"]["event_payload"]["key"]
            for m in slack.messages
            if m["metadata"]["event_type"] == "earshot_alert"
        ]

    doubled = {k: n for k, n in Counter(posted).items() if n > 1}
    assert not doubled, f"doubled: {list(doubled)[:5]}"
    assert len(posted) == COUNT
    store = Store.from_url(fresh_postgres_url)
    with Session(store.engine) as session:
        assert len(list(session.exec(select(Mention)))) == COUNT
        rows = list(session.exec(select(Delivery)))
    store.engine.dispose()
    assert len(rows) == COUNT + 1 and all(r.status == "sent" for r in rows)


def test_a_worker_past_its_lease_does_not_send_what_another_worker_took(store: Store) -> None:
    """Worker A claims rows, then stalls past its lease; B takes them over and sends them.
    When A wakes up it must not post them again (it checks its lease before each send)."""
    mentions = [
        Mention(
            source="hackernews",
            external_id=f"lease-{n}",
            url=f"https://news.ycombinator.com/item?id={n}",
            text="acme is broken",
            created_at=utcnow(),
            sentiment_label="negative",
        )
        for n in range(3)
    ]
    store.ingest(None, mentions, None, lambda m: [("#cx-alerts", "alert")])
    with FakeSlack() as slack:
        channel = SlackChannel(WebClient(token="xoxb-test", base_url=slack.api_url))
        a, b = (DeliveryWorker(store, channel, per_channel_interval=0) for _ in range(2))
        hand = store.claim(limit=50, lease_seconds=2.0)  # A's claim
        later = utcnow() + timedelta(seconds=10)  # A has stalled; its lease ran out
        taken = store.claim(limit=50, lease_seconds=120.0, now=later)
        assert [c.delivery.id for c in taken] == [c.delivery.id for c in hand]
        assert all(c.verify for c in taken)
        report = DeliveryReport()
        for claimed in taken:
            b._deliver(claimed, report)
        for claimed in hand:  # A wakes up
            a._deliver(claimed, report)
        posted = Counter(m["metadata"]["event_payload"]["key"] for m in slack.messages)
    assert report.sent == 3
    assert sorted(posted.values()) == [1, 1, 1]
    with Session(store.engine) as session:
        assert all(d.status == "sent" for d in session.exec(select(Delivery)))
