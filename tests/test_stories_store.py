"""Stories in ``Store.ingest``: keys looked up in the ingest's transaction, later members
queued as replies in the first alert's thread with a live-count update, on SQLite and on
the real PostgreSQL (two replicas racing included)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from earshot.listener.models import Delivery, Mention, Story, StoryKey
from earshot.listener.store import Store
from earshot.listener.stories import BANDS, StoryOptions

OPTIONS = StoryOptions()
LINK = "https://www.example.com/blog/launch?utm_source=hn"
COMPLAINT = (
    "Since the last update the Acme app logs me out every single time I switch to another "
    "app and I lose the whole draft I was typing, this is maddening"
)


def mention(
    external_id: str,
    source: str = "hackernews",
    *,
    link: str | None = None,
    text: str = "",
    title: str = "",
) -> Mention:
    return Mention(
        source=source,
        external_id=external_id,
        url=f"https://{source}.test/{external_id}",
        title=title,
        text=text,
        link=link,
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        matched_query="acme",
        sentiment_label="negative",
    )


def alert(_m: Mention) -> list[tuple[str, str]]:
    return [("#alerts", "alert")]


def rows(store: Store) -> list[Delivery]:
    with Session(store.engine) as session:
        found = list(session.exec(select(Delivery).order_by(Delivery.id)))  # type: ignore[arg-type]
        for row in found:
            session.expunge(row)
        return found


def stories(store: Store) -> list[Story]:
    with Session(store.engine) as session:
        return list(session.exec(select(Story)))


def test_one_link_across_batches_is_one_story_with_threaded_replies(store: Store) -> None:
    first = store.ingest(
        "hn", [mention("1", link=LINK, title="Acme launches")], None, alert, stories=OPTIONS
    )
    assert first.stored[0].story_id is not None
    later = [
        mention("2", "reddit", link="https://example.com/blog/launch/?fbclid=x", title="Acme!"),
        mention("3", "mastodon", link="http://EXAMPLE.com/blog/launch#comments", text="wow"),
    ]
    store.ingest("rd", later, None, alert, stories=OPTIONS)
    (story,) = stories(store)
    assert story.mention_count == 3
    assert story.url == "https://example.com/blog/launch"
    outbox = rows(store)
    alerts = [r for r in outbox if r.kind == "alert"]
    parent = alerts[0]
    assert "story" not in parent.payload
    assert [r.payload.get("story") for r in alerts[1:]] == [parent.idempotency_key] * 2
    updates = [r for r in outbox if r.kind == "story_update"]
    assert [u.idempotency_key for u in updates] == [f"story-update:{story.id}:#alerts:3"]
    assert updates[0].payload == {"story": parent.idempotency_key, "story_id": story.id}


def test_members_of_one_batch_group_with_each_other(store: Store) -> None:
    batch = [
        mention("1", text=COMPLAINT),
        mention("2", "reddit", text="Anyone else? " + COMPLAINT + " #acme"),
        mention(
            "3",
            "reddit",
            text="The new dashboard is lovely and the export finally works on my phone",
        ),
    ]
    result = store.ingest("x", batch, None, alert, stories=OPTIONS)
    ids = [m.story_id for m in result.stored]
    assert ids[0] == ids[1] and ids[2] != ids[0]
    assert sorted(s.mention_count for s in stories(store)) == [1, 2]


def test_a_story_past_its_window_starts_again(store: Store) -> None:
    store.ingest("hn", [mention("1", link=LINK)], None, alert, stories=OPTIONS)
    with Session(store.engine) as session:
        for key in session.exec(select(StoryKey)):
            key.seen_at = datetime.now(UTC) - timedelta(days=4)
            session.add(key)
        session.commit()
    store.ingest("hn", [mention("2", link=LINK)], None, alert, stories=OPTIONS)
    assert sorted(s.mention_count for s in stories(store)) == [1, 1]
    assert not any(r.payload.get("story") for r in rows(store))


def test_grouping_off_leaves_mentions_alone(store: Store) -> None:
    off = StoryOptions(enabled=False)
    store.ingest("hn", [mention("1", link=LINK), mention("2", link=LINK)], None, alert, stories=off)
    assert stories(store) == []
    assert len([r for r in rows(store) if r.kind == "alert"]) == 2


def test_story_replies_do_not_count_toward_a_storm(store: Store) -> None:
    batch = [mention(str(i), link=LINK, title=f"Acme launch take {i}") for i in range(6)]
    store.ingest("hn", batch, None, alert, storm=(3, 600), stories=OPTIONS)
    outbox = rows(store)
    assert not [r for r in outbox if r.kind == "storm"]
    assert len([r for r in outbox if r.kind == "alert" and r.payload.get("story")]) == 5


def test_two_replicas_starting_one_story_at_once_make_one(database_url: str) -> None:
    stores = [Store.from_url(database_url) for _ in range(2)]
    stores[0].create_schema()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        def prepare(m: Mention) -> list[tuple[str, str]]:
            barrier.wait(timeout=60)
            return [("#alerts", "alert")]

        try:
            batch = [
                mention(f"{index}-{i}", ("hackernews", "reddit")[index], link=LINK)
                for i in range(3)
            ]
            stores[index].ingest(f"s{index}", batch[:1], None, prepare, stories=OPTIONS)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    found = stories(stores[0])
    assert len(found) == 1 and found[0].mention_count == 2
    for s in stores:
        s.engine.dispose()


def test_digests_and_the_report_count_stories(store: Store, tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from earshot.config.cli import app
    from earshot.listener.digest import Period, build_digest
    from earshot.responders.digest import digest_text, render_digest

    now = datetime.now(UTC)
    week = [
        mention("1", link=LINK, title="Acme launches"),
        mention("2", "reddit", link=LINK, title="Acme launched"),
        mention("3", "mastodon", link=LINK, text="Acme launch is out"),
        mention("4", "reddit", text=COMPLAINT),
        mention("5", "mastodon", text="Acme " + COMPLAINT),
        mention("6", text="Short one"),
    ]
    for m in week:
        m.created_at = now - timedelta(hours=1)
    week[1].sentiment_label = "positive"
    before = [mention("7", link="https://example.com/other/post"), mention("8", text="Hi")]
    for m in before:
        m.created_at = now - timedelta(days=8)
    store.ingest("x", week + before, None, alert, stories=OPTIONS)
    period = Period("weekly", "#alerts", now - timedelta(days=7), now + timedelta(minutes=1))
    digest = build_digest(store, period)
    assert (digest.total, digest.story_count, digest.previous_story_count) == (6, 3, 2)
    big, copied = digest.stories
    assert (big.mentions, big.url, big.title) == (
        3,
        "https://example.com/blog/launch",
        "Acme launches",
    )
    assert big.sources == {
        "hackernews": {"negative": 1},
        "mastodon": {"negative": 1},
        "reddit": {"positive": 1},
    }
    assert copied.mentions == 2 and copied.url == "https://reddit.test/4"
    text = digest_text(digest)
    assert "in 3 stories (+1 vs the previous period)" in text
    assert (
        "3 mentions · Hacker News: 1 negative · Mastodon: 1 negative · Reddit: 1 positive" in text
    )
    blocks = json.dumps(render_digest(digest).blocks)
    assert "Biggest stories" in blocks and "3 stories" in blocks
    # earshot report, on the same database (SQLite only: the CLI's storage path).
    if store.dialect == "sqlite":
        config = tmp_path / "earshot.toml"
        db = store.engine.url.database
        config.write_text(
            '[product]\nname = "Acme"\nqueries = ["acme"]\n'
            f'[storage]\npath = "{db}"\n'
            '[[sources]]\ntype = "reddit"\nsubreddits = ["acme"]\n'
        )
        result = CliRunner().invoke(
            app,
            ["report", "--config", str(config), "--since", "7d"],
            env={"COLUMNS": "200", "DATABASE_URL": ""},
        )
        assert result.exit_code == 0, result.output
        assert "in 3 stories" in result.output and "Biggest stories" in result.output
        assert "Hacker News: 1 negative" in result.output


def test_text_keys_expire_after_the_window_too(store: Store) -> None:
    # The text keys are written straight through the driver: their seen_at must compare
    # like a key written through SQLAlchemy (SQLite keeps datetimes as text).
    store.ingest("a", [mention("1", link=LINK, text=COMPLAINT)], None, alert, stories=OPTIONS)
    now = datetime.now(UTC)
    with Session(store.engine) as session:
        keys = list(session.exec(select(StoryKey)))
        later = list(session.exec(select(StoryKey).where(StoryKey.seen_at >= now)))
        earlier = list(
            session.exec(select(StoryKey).where(StoryKey.seen_at >= now - timedelta(minutes=5)))
        )
    assert len(keys) == 1 + BANDS and {k.key[:3] for k in keys} == {"url", "nd:"}
    assert later == []  # none looks newer than it is (it would never expire)
    assert len(earlier) == 1 + BANDS


def test_a_copy_of_a_titled_post_joins_its_story_in_a_later_batch(store: Store) -> None:
    """The stored first member is compared by its whole body (title and text), as the new
    one is: a post whose title is short and whose text is the complaint still matches."""
    title = "Logged out again"
    store.ingest(
        "rd", [mention("1", "reddit", title=title, text=COMPLAINT)], None, alert, stories=OPTIONS
    )
    store.ingest(
        "ms",
        [mention("2", "mastodon", text=f"{title}\n{COMPLAINT} #acme")],
        None,
        alert,
        stories=OPTIONS,
    )
    (story,) = stories(store)
    assert story.mention_count == 2


def test_a_member_that_is_not_alerted_still_updates_its_parents_count(store: Store) -> None:
    """A later member stored only (or held for a digest) joins the story: the parent's count
    must say so, so its update is queued though the member itself posts nothing."""
    store.ingest(
        "hn", [mention("1", link=LINK, title="Acme launches")], None, alert, stories=OPTIONS
    )
    later = mention("2", "rss", link=f"{LINK}&utm_medium=rss", title="Acme launches, a review")
    store.ingest("rss", [later], None, lambda _m: [], stories=OPTIONS)
    (story,) = stories(store)
    assert story.mention_count == 2
    updates = [r for r in rows(store) if r.kind == "story_update"]
    assert [u.idempotency_key for u in updates] == [f"story-update:{story.id}:#alerts:2"]
    assert updates[0].payload["story"] == "alert:hackernews:1:#alerts"
