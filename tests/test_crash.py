"""Crash safety: SIGKILL at random points, restart, and every alert is in Slack exactly once.

The pipeline runs as a real subprocess (`earshot run --once`) against a loopback fake source
API and a loopback fake Slack that pauses after recording each post, so many kills land
between "Slack has the message" and "the outbox row is marked sent": the case where a naive
worker would post twice. The restarted worker finds such messages by the idempotency key in
their metadata (conversations.history) before posting again. New reviews appear before every
trial, so every run has polling, storing and delivering to be killed in.
"""

from __future__ import annotations

import copy
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from earshot.listener.models import Delivery, Mention
from earshot.listener.store import Store

from .conftest import load_json
from .fakeapi import FakeAPI, json_answer
from .fakeslack import FakeSlack

TRIALS = int(os.environ.get("EARSHOT_CRASH_TRIALS", "50"))
NEW_PER_TRIAL = 4


def review(template: dict[str, Any], number: int) -> dict[str, Any]:
    entry = copy.deepcopy(template)
    entry["id"]["label"] = str(9_000_000_000 + number)
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=number)
    entry["updated"]["label"] = when.isoformat()
    return entry


def test_sigkill_at_random_points_loses_and_doubles_nothing(tmp_path: Path) -> None:
    feed = load_json("appstore/customerreviews_us_id284815942_json.json")
    templates = feed["feed"]["entry"]
    visible = {"count": 20}

    def page1(path: str, params: dict[str, str]) -> Any:
        entries = [review(templates[n % len(templates)], n) for n in range(visible["count"])]
        entries.reverse()  # newest first, as the feed sorts
        return json_answer({"feed": {**feed["feed"], "entry": entries}})

    rng = random.Random(20261123)
    exe = Path(sys.executable).parent / "earshot"
    with FakeAPI() as api, FakeSlack(post_delay=0.05) as slack:
        api.route(r"/page=1/", page1)
        api.route(r"/page=\d+/", lambda path, params: json_answer({"feed": {}}))
        db = tmp_path / "earshot.db"
        config = tmp_path / "earshot.toml"
        config.write_text(
            f"""
[product]
name = "Acme"

[slack]
api_url = "{slack.api_url}"
min_interval = 0
delivery_lease = "2s"
storm_threshold = 0

[storage]
path = "{db}"

[http]
enabled = false

[[sources]]
type = "appstore"
app_id = 284815942
base_url = "{api.base_url}"
backfill = "10000d"
"""
        )
        env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test", "EARSHOT_LOG_LEVEL": "WARNING"}
        command = [str(exe), "run", "--once", "--config", str(config)]
        # Calibrate: how long one complete run takes on this machine now.
        started = time.monotonic()
        subprocess.run(command, env=env, capture_output=True, timeout=300, check=True)
        duration = time.monotonic() - started
        killed = 0
        for _ in range(TRIALS):
            visible["count"] += NEW_PER_TRIAL
            proc = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            time.sleep(rng.uniform(0.3, 0.9) * duration)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            proc.communicate(timeout=60)
        # The last run goes to the end.
        final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr[-3000:]
        posted = [m["metadata"]["event_payload"]["key"] for m in slack.messages]
        total = visible["count"]

    assert killed >= TRIALS // 3, f"only {killed} of {TRIALS} runs were killed mid-way"
    doubled = {key: n for key, n in Counter(posted).items() if n > 1}
    assert not doubled, f"posted more than once: {doubled}"
    store = Store.from_url(f"sqlite:///{db}")
    with Session(store.engine) as session:
        rows = list(session.exec(select(Delivery)))
        mentions = list(session.exec(select(Mention)))
    assert len(mentions) == total  # every review stored once, none missed
    assert rows and all(r.status == "sent" for r in rows), Counter(r.status for r in rows)
    assert {r.idempotency_key for r in rows} == set(posted)
    # What the safe routing alerts: complaints (by label or intent), unscored, praise; no spam,
    # and nothing probably unrelated to the feed (relevance below 0.5, once scored: the
    # config has no digest, so those are stored only).
    alerted = [
        m
        for m in mentions
        if "spam" not in m.intents
        and not (m.relevance is not None and m.relevance < 0.5)
        and (
            m.sentiment_label in ("negative", "mixed", "unscored")
            or {"bug", "billing", "churn_risk"} & set(m.intents)
            or (m.sentiment_label == "positive" and "praise" in m.intents)
        )
    ]
    assert len(rows) == len(alerted) > 0
    print(
        f"crash test: {TRIALS} trials, {killed} killed mid-run (a full run took {duration:.1f}s), "
        f"{total} reviews, {len(posted)} alerts, 0 lost, 0 doubled"
    )
