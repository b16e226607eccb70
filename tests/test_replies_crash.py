"""Replies survive a killed sender: the sending process is SIGKILLed between the platform's
answer and "sent", or the platform answers 502 after storing the reply; the next sender
finds the reply on the platform and posts nothing more. Real processes, a SQLite file and
the strict fakes served over loopback HTTP; a few trials, each about a second.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from earshot.listener import workflow as wf
from earshot.listener.models import Mention, utcnow
from earshot.listener.sources.base import RateLimiter, SourceHttp
from earshot.listener.store import Store
from earshot.responders.replies.base import Writer
from earshot.responders.replies.bluesky import BlueskyWriter
from earshot.responders.replies.mastodon import MastodonWriter
from earshot.responders.replies.worker import ReplySender

from .fakereplies import FakeBluesky, FakeMastodon
from .fakestores import Loopback

#: The sending process: one round of the real sender; with ``kill``, the writer's post is
#: wrapped so the process SIGKILLs itself as soon as the platform has answered.
CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    import httpx
    from earshot.listener.sources.base import RateLimiter, SourceHttp
    from earshot.listener.store import Store
    from earshot.responders.replies.bluesky import BlueskyWriter
    from earshot.responders.replies.mastodon import MastodonWriter
    from earshot.responders.replies.worker import ReplySender

    args = json.loads(sys.argv[1])
    http = SourceHttp(httpx.Client(), RateLimiter(None))
    if args["platform"] == "mastodon":
        writer = MastodonWriter(http, args["base"], args["token"])
    else:
        writer = BlueskyWriter(http, args["base"], args["handle"], args["password"])
    if args["kill"]:
        post = writer.post
        def post_then_die(*a, **k):
            post(*a, **k)
            os.kill(os.getpid(), signal.SIGKILL)
        writer.post = post_then_die
    report = ReplySender(Store.from_url(args["db"]), {args["platform"]: writer},
                         lease_seconds=0.0, backoff_base=0.0).run_once()
    print(json.dumps(report.__dict__))
    """
)


def platform(name: str) -> tuple[Any, Mention, dict[str, Any]]:
    if name == "mastodon":
        fake: Any = FakeMastodon()
        status = fake.add_status("111", "acme lost my notes")
        mention = Mention(
            source="mastodon", external_id=status["uri"], created_at=utcnow(), raw=status
        )
        return fake, mention, {"token": fake.token}
    fake = FakeBluesky()
    post = fake.add_post("did:plc:customer", "3kabcdefghij2", "acme lost my notes")
    mention = Mention(source="bluesky", external_id=post["uri"], created_at=utcnow(), raw=post)
    return fake, mention, {"handle": fake.handle, "password": fake.password}


def writer_for(name: str, base: str, extra: dict[str, Any]) -> Writer:
    http = SourceHttp(httpx.Client(), RateLimiter(None))
    if name == "mastodon":
        return MastodonWriter(http, base, extra["token"])
    return BlueskyWriter(http, base, extra["handle"], extra["password"])


@pytest.mark.parametrize(
    ("name", "fault"),
    [
        ("mastodon", "killed_after_answer"),
        ("bluesky", "killed_after_answer"),
        ("bluesky", "502_after_store"),
    ],
)
def test_a_reply_is_posted_exactly_once_across_a_killed_sender(
    tmp_path: Path, name: str, fault: str
) -> None:
    db = f"sqlite:///{tmp_path / 'earshot.db'}"
    store = Store.from_url(db)
    store.create_schema()
    fake, mention, extra = platform(name)
    store.ingest(None, [mention], None, lambda m: [])
    change = wf.draft_reply(
        store,
        mention.id or 0,
        key="reply:1:V1",
        platform=name,
        text="Sorry! Fixed in 2.0.2.",
        actor=wf.Actor("U111"),
        approval=False,
    )
    assert change.reply is not None
    if fault == "502_after_store":
        fake.store_then_fail.append(502)
    handler = fake.handle if name == "mastodon" else fake.handle_request
    with Loopback(handler) as server:
        args = {
            "platform": name,
            "base": server.base_url,
            "db": db,
            "kill": fault == "killed_after_answer",
            **extra,
        }
        child = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ},
        )
        if fault == "killed_after_answer":
            assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
        else:
            assert child.returncode == 0, child.stderr[-2000:]
            assert json.loads(child.stdout)["retried"] == 1
        assert len(fake.ours()) == 1  # the platform holds it; the database says queued
        assert (wf.get_reply(store, change.reply.id or 0) or change.reply).status == "queued"

        # The next sender (another process, a restart): finds it, posts nothing.
        report = ReplySender(store, {name: writer_for(name, server.base_url, extra)}).run_once()
    assert (report.found, report.sent) == (1, 0)
    assert len(fake.ours()) == 1 and fake.stored == 1
    reply = wf.get_reply(store, change.reply.id or 0)
    assert reply is not None and reply.status == "sent" and reply.attempts == 2
    handled = wf.get_mention(store, mention.id or 0)
    assert handled is not None and handled.status == "handled"
