"""Crash safety: SIGKILL at random points, restart, and every alert is in Slack exactly once.

The pipeline runs as real subprocesses (`earshot run --once`) against loopback fakes of the
source APIs and of Slack; the fake Slack pauses after recording each post, so many kills land
between "Slack has the message" and "the outbox row is marked sent": the case where a naive
worker would post twice. A restarted worker finds such messages by the idempotency key in
their metadata before posting again: in the channel history for a top-level alert, in the
thread (conversations.replies) for a storm reply, as real Slack keeps them.

Storms are on: every trial brings new Hacker News hits for the query, past the storm
threshold, so most alerts are replies in a storm thread; App Store reviews (no query, no
storm) keep top-level alerts in the mix. Stories too: every fourth hit links to one of a
few incident pages (four hits each, with their own tracking parameters), so each story is
one parent and its replies, and the parent's count is edited in place (chat.update). Two
worlds, each with its own fakes, run their trials side by side: one process on SQLite, and
two replicas on the real PostgreSQL killed independently (a replica's leased rows are
taken over by the other, or by the next trial).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from earshot.listener.models import Delivery, Mention
from earshot.listener.store import Store

from .conftest import hn_hits, load_json
from .fakeapi import FakeAPI, json_answer
from .fakeslack import FakeSlack

TRIALS = int(os.environ.get("EARSHOT_CRASH_TRIALS", "50"))
NEW_PER_TRIAL = 4  # App Store reviews and Hacker News hits, each
STORM_THRESHOLD = 2
EXE = Path(sys.executable).parent / "earshot"


def review(template: dict[str, Any], number: int) -> dict[str, Any]:
    entry = copy.deepcopy(template)
    entry["id"]["label"] = str(9_000_000_000 + number)
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=number)
    entry["updated"]["label"] = when.isoformat()
    return entry


#: Words that make each Hacker News complaint a different text (no two are near-duplicates).
WORDS = [
    *["login", "checkout", "search", "export", "upload", "billing", "sync", "invoice"],
    *["profile", "settings", "dashboard", "calendar", "payment", "backup", "import"],
    *["sharing", "widget", "report", "mobile", "desktop", "tablet", "android", "iphone"],
    *["browser", "cart", "account", "password", "email", "filter", "chart", "editor"],
    *["preview", "printing", "camera", "folder", "tagging", "history", "archive", "inbox"],
]


def complaint(index: int) -> str:
    """Hit ``index``'s title: a complaint of its own (different words in eight places)."""
    n = len(WORDS)
    picks = [WORDS[index % n], WORDS[(index // n) % n]]
    picks += [
        WORDS[int(hashlib.sha1(f"{index}:{k}".encode()).hexdigest(), 16) % n] for k in range(6)
    ]
    a, b, c, d, e, f, g, h = picks
    return f"Acme {a} {b} {c} crashes {d} {e} {f} {g} {h}, terrible, I want a refund"


def story_of(index: int) -> int | None:
    """Which story hit ``index`` belongs to: every fourth hit from the eighth on links to
    one of the stories (four hits each), past the storm's threshold so that the stories'
    parents are storm replies and their replies join the storm's thread."""
    if index < 8 or index % 4:
        return None
    return index // 16


@dataclass
class World:
    """One database with its own fake source API and fake Slack, and its replicas."""

    name: str
    database: str
    replicas: list[str]
    api: FakeAPI
    slack: FakeSlack
    config: Path
    env: dict[str, str]
    visible: dict[str, int] = field(default_factory=lambda: {"count": NEW_PER_TRIAL})
    duration: float = 0.0
    kills: int = 0
    kills_after_post: int = 0
    trials: int = 0

    def command(self) -> list[str]:
        return [str(EXE), "run", "--once", "--config", str(self.config)]

    def start(self, replica: str) -> subprocess.Popen[bytes]:
        env = {**self.env, "EARSHOT_REPLICA_ID": replica}
        return subprocess.Popen(
            self.command(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def run_to_end(self) -> float:
        """All replicas at once, to the end (each takes its own leases back at once); how
        long until the first one was done (the others may still wait out a lease)."""
        started = time.monotonic()
        logs = [self.config.parent / f"{replica}.log" for replica in self.replicas]
        procs = []
        for replica, log in zip(self.replicas, logs, strict=True):
            with log.open("wb") as stderr:
                env = {**self.env, "EARSHOT_REPLICA_ID": replica}
                procs.append(
                    subprocess.Popen(
                        self.command(), env=env, stdout=subprocess.DEVNULL, stderr=stderr
                    )
                )
        first = None
        while any(proc.poll() is None for proc in procs):
            if first is None and any(proc.poll() is not None for proc in procs):
                first = time.monotonic() - started
            time.sleep(0.02)
        for proc, log in zip(procs, logs, strict=True):
            assert proc.returncode == 0, (self.name, log.read_text()[-3000:])
        return first if first is not None else time.monotonic() - started


def world(name: str, database: str, replicas: list[str], tmp: Path) -> World:
    """Start the fakes of ``name``'s world and write its config (storms on)."""
    feed = load_json("appstore/customerreviews_us_id284815942_json.json")
    templates = feed["feed"]["entry"]
    api, slack = FakeAPI(), FakeSlack(post_delay=0.05)
    visible = {"count": NEW_PER_TRIAL}

    def page1(path: str, params: dict[str, str]) -> Any:
        entries = [review(templates[n % len(templates)], n) for n in range(visible["count"])]
        entries.reverse()  # newest first, as the feed sorts
        return json_answer({"feed": {**feed["feed"], "entry": entries}})

    def search(path: str, params: dict[str, str]) -> Any:
        items = hn_hits(70_000_000, 0, visible["count"], "{i}")
        for hit in items:
            index = int(hit["title"])
            hit["title"] = complaint(index)
            story = story_of(index)
            if story is not None:
                hit["url"] = f"https://status.acme.example/incident/{story}?utm_source=hn{index}"
        per, page = int(params.get("hitsPerPage", 100)), int(params.get("page", 0))
        pages = (len(items) + per - 1) // per
        chunk = items[page * per : (page + 1) * per]
        return json_answer({"hits": chunk, "page": page, "nbPages": pages, "nbHits": len(items)})

    api.route(r"/page=1/", page1)
    api.route(r"/page=\d+/", lambda path, params: json_answer({"feed": {}}))
    api.route(r"/search_by_date", search)
    api.__enter__()
    slack.__enter__()
    tmp.mkdir()
    storage = f'[storage]\npath = "{tmp / "earshot.db"}"\n' if database.startswith("sqlite") else ""
    config = tmp / "earshot.toml"
    config.write_text(
        f"""
[product]
name = "Acme"
queries = ["acme"]

[slack]
api_url = "{slack.api_url}"
min_interval = 0
delivery_lease = "2s"
storm_threshold = {STORM_THRESHOLD}
storm_window = "1h"

{storage}
[http]
enabled = false

[[sources]]
type = "appstore"
app_id = 284815942
base_url = "{api.base_url}"
backfill = "10000d"

[[sources]]
type = "hackernews"
base_url = "{api.base_url}"
backfill = "10000d"
"""
    )
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "EARSHOT_LOG_LEVEL": "WARNING",
        # Compiled bytecode kept between the children (outside the source tree).
        "PYTHONPYCACHEPREFIX": str(tmp.parent / "pycache"),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not database.startswith("sqlite"):
        env["DATABASE_URL"] = database
    return World(name, database, replicas, api, slack, config, env, visible)


def trial(w: World, rng: random.Random) -> None:
    """New items appear; the replicas start together and each is killed at a random moment,
    or (2 times in 5) right after the fake Slack records one of the trial's first posts,
    while it still holds the answer: the moment a naive worker would post twice. A replica
    that ends first is not waited for; how long such runs take keeps ``duration`` current.
    """
    w.visible["count"] += NEW_PER_TRIAL
    w.trials += 1
    procs = [w.start(replica) for replica in w.replicas]
    started = time.monotonic()
    deadlines: list[float] = []
    posts: list[threading.Event | None] = []
    for _ in procs:
        if rng.random() < 0.4:
            posts.append(w.slack.when_posted(len(w.slack.messages) + rng.randint(1, 2)))
            deadlines.append(3 * w.duration)  # only a bound: the post decides
        else:
            posts.append(None)
            deadlines.append(rng.uniform(0.3, 0.9) * w.duration)
    ended: list[float] = []
    running = set(range(len(procs)))
    while running:
        elapsed = time.monotonic() - started
        for index in sorted(running):
            proc, post = procs[index], posts[index]
            if proc.poll() is not None:
                ended.append(elapsed)
            elif elapsed >= deadlines[index] or (post is not None and post.is_set()):
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)
                w.kills += 1
                w.kills_after_post += int(post is not None and post.is_set())
            else:
                continue
            running.discard(index)
        time.sleep(0.01)
    if ended:
        w.duration = (w.duration + max(ended)) / 2


def trials(w: World, rng: random.Random, count: int) -> None:
    for _ in range(count):
        trial(w, rng)


def check(w: World) -> dict[str, int]:
    """Every item stored once, every alert in Slack once, storms threaded; the figures."""
    posted = [m["metadata"]["event_payload"]["key"] for m in w.slack.messages]
    doubled = {key: n for key, n in Counter(posted).items() if n > 1}
    assert not doubled, f"{w.name}: posted more than once: {doubled}"
    store = Store.from_url(w.database)
    with Session(store.engine) as session:
        rows = list(session.exec(select(Delivery)))
        mentions = list(session.exec(select(Mention)))
    store.engine.dispose()
    assert len(mentions) == 2 * w.visible["count"], w.name  # every item stored once
    assert rows and all(r.status == "sent" for r in rows), Counter(r.status for r in rows)
    # A story's live count is an edit of its parent (chat.update), not a post.
    updates = [r for r in rows if r.kind == "story_update"]
    rows = [r for r in rows if r.kind != "story_update"]
    assert {r.idempotency_key for r in rows} == set(posted)
    # What the safe routing alerts: complaints (by label or intent), unscored, praise; no
    # spam, and nothing probably unrelated (the config has no digest: stored only).
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
    alerts = [r for r in rows if r.kind == "alert"]
    assert len(alerts) == len(alerted) > 0, w.name
    summaries = [m for m in w.slack.messages if m["metadata"]["event_type"] == "earshot_storm"]
    replies = [m for m in w.slack.messages if m.get("thread_ts")]
    assert len(summaries) == 1, w.name  # one storm, ongoing for the whole test
    # A reply is in the storm's thread, or (a story's later member) in its story parent's
    # thread: a parent posted before the storm began keeps its story's replies.
    by_key = {m["metadata"]["event_payload"]["key"]: m for m in w.slack.messages}
    story_of_row = {r.idempotency_key: r.payload["story"] for r in rows if "story" in r.payload}
    for reply in replies:
        key = reply["metadata"]["event_payload"]["key"]
        threads = {summaries[0]["ts"]}
        if key in story_of_row and story_of_row[key] in by_key:
            threads.add(by_key[story_of_row[key]]["ts"])
        assert reply["thread_ts"] in threads, (w.name, key)
    # Every Hacker News alert past the threshold is a reply in the storm's thread, and every
    # story's later member a reply (App Store reviews repeat their templates' texts as the
    # trials go on: copies of one review group into a story too).
    by_id = {m.id: m for m in mentions}
    storming = [r for r in alerts if by_id[r.mention_id].source == "hackernews"]
    plain = [r for r in storming if "story" not in r.payload]
    later = [r for r in alerts if "story" in r.payload]
    assert len(replies) == len(plain) - STORM_THRESHOLD + len(later), w.name
    # Each story: one parent and every other alerted member a reply naming it; the parent in
    # Slack shows the story's final count.
    members: dict[int, list[Delivery]] = {}
    for row in alerts:
        mention = by_id[row.mention_id]
        if mention.story_id is not None:
            members.setdefault(mention.story_id, []).append(row)
    stories = {sid: rs for sid, rs in members.items() if len(rs) > 1}
    planted = Counter(
        story_of(int(m.external_id) - 70_000_000) for m in mentions if m.source == "hackernews"
    )
    planted.pop(None, None)
    linked = {
        sid: rs
        for sid, rs in stories.items()
        if all(by_id[r.mention_id].source == "hackernews" for r in rs)
    }
    assert len(linked) == len(planted) > 0, (w.name, len(linked), planted)
    messages = {m["metadata"]["event_payload"]["key"]: m for m in w.slack.messages}
    for story_rows in stories.values():
        parents = [r for r in story_rows if "story" not in r.payload]
        assert len(parents) == 1, w.name
        parent = parents[0]
        assert all(
            r.payload["story"] == parent.idempotency_key for r in story_rows if r is not parent
        )
        # The count is of every member stored, alerted or not (one may be stored only).
        stored = sum(1 for m in mentions if m.story_id == by_id[parent.mention_id].story_id)
        shown = str(messages[parent.idempotency_key]["blocks"])
        assert f"{stored} mentions" in shown, (w.name, stored, shown)
    assert updates, w.name
    lookups = Counter(method for method, _ in w.slack.requests)
    return {
        "alerts": len(alerts),
        "replies": len(replies),
        "stories": len(stories),
        "story members": sum(len(rs) for rs in stories.values()),
        "story updates": len(updates),
        "history lookups": lookups["conversations.history"],
        "thread lookups": lookups["conversations.replies"],
    }


def test_sigkill_at_random_points_loses_and_doubles_nothing(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    rng = random.Random(20261123)
    worlds = [
        world(
            "sqlite",
            f"sqlite:///{tmp_path / 'sqlite' / 'earshot.db'}",
            ["one"],
            tmp_path / "sqlite",
        ),
        world("postgres", fresh_postgres_url, ["replica-a", "replica-b"], tmp_path / "postgres"),
    ]
    try:
        # The children share compiled bytecode (outside the source tree): compile it once
        # first, so the first calibration is not the only run that pays for it.
        packages = [
            path
            for name in ("listener", "responders", "config")
            for path in importlib.import_module(f"earshot.{name}").__path__
        ]
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", *packages], env=worlds[0].env, check=True
        )
        # The two worlds are independent (their own fakes and database): they run side by
        # side, each world's kills on its own seeded timeline.
        rngs = [random.Random(rng.random()) for _ in worlds]
        with ThreadPoolExecutor(len(worlds)) as side_by_side:

            def each(step: Callable[..., Any], *args: list[Any]) -> list[Any]:
                runs = [
                    side_by_side.submit(step, w, *a) for w, *a in zip(worlds, *args, strict=True)
                ]
                return [run.result() for run in runs]

            # The schema, the first items and the storm's summary; how long a run takes here
            # now (a first guess: trials that end on their own keep it current).
            for w, duration in zip(worlds, each(World.run_to_end), strict=True):
                w.duration = duration
            each(trials, rngs, [TRIALS // 2, TRIALS - TRIALS // 2])
            each(World.run_to_end)  # the last runs go to the end
        figures = {w.name: check(w) for w in worlds}
    finally:
        for w in worlds:
            w.slack.__exit__()
            w.api.__exit__()

    for w in worlds:
        assert w.kills >= w.trials // 3, f"{w.name}: only {w.kills} kills in {w.trials} trials"
        # Killed sends were looked up before posting again: top-level alerts in the channel
        # history, storm replies in their thread.
        assert figures[w.name]["history lookups"] > 0, w.name
        assert figures[w.name]["thread lookups"] > 0, w.name
    print(
        "crash test:",
        "; ".join(
            f"{w.name}: {w.trials} trials, {w.kills} kills of {len(w.replicas)} replica(s) "
            f"({w.kills_after_post} right after a post; a run took {w.duration:.1f}s), "
            f"{figures[w.name]}"
            for w in worlds
        ),
        "; 0 lost, 0 doubled",
    )
