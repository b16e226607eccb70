"""The unhandled lists sort by reach: ``/earshot unhandled``, the digests' unhandled
section and ``earshot report`` list the biggest reach first (against each source's
threshold), unknown last, the oldest alert first among equals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlmodel import SQLModel
from typer.testing import CliRunner

from earshot.config.cli import app
from earshot.listener import workflow as wf
from earshot.listener.digest import Digest, Period, build_digest
from earshot.listener.models import Mention
from earshot.listener.reach import ReachPolicy
from earshot.listener.store import Store
from earshot.responders.digest import digest_text, render_digest
from earshot.responders.interactions import InteractionConfig, handle_command

SENT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
CHANNEL = "#cx-alerts"

#: external id -> (source, reach, figures, minutes after SENT its alert went out)
ALERTS: dict[str, tuple[str, int | None, dict[str, int], int]] = {
    "unknown-old": ("rss", None, {}, 0),
    "mastodon-1.2x": ("mastodon", 6_000, {"followers": 6_000, "reblogs": 2}, 1),
    "reddit-negative": ("reddit", -3, {"score": -3, "comments": 4}, 2),
    "hn-3x-new": ("hackernews", 300, {"points": 300, "comments": 90}, 5),
    "hn-3x-old": ("hackernews", 300, {"points": 300, "comments": 12}, 3),
    "unknown-new": ("hackernews", None, {}, 6),
    "se-0.5x": ("stackexchange", 500, {"views": 500}, 4),
}
#: Biggest reach against the source's threshold first; the oldest first among equals.
EXPECTED = [
    "hn-3x-old",
    "hn-3x-new",
    "mastodon-1.2x",
    "se-0.5x",
    "reddit-negative",
    "unknown-old",
    "unknown-new",
]


def alerted(store: Store, *, handled: str | None = None) -> dict[str, int]:
    """The alerts of ``ALERTS``, sent at their minutes; returns external id -> mention id."""
    mentions = [
        Mention(
            source=source,
            external_id=key,
            url=f"https://example.test/{key}",
            title=f"checkout broken ({key})",
            created_at=SENT - timedelta(hours=1),
            sentiment_label="negative",
            reach=reach,
            reach_detail=figures,
            status="alerted",
        )
        for key, (source, reach, figures, _) in ALERTS.items()
    ]
    store.ingest(None, mentions, None, lambda m: [(CHANNEL, "alert")])
    ids = {m.external_id: int(m.id or 0) for m in mentions}
    outbox = SQLModel.metadata.tables["outbox"]
    table = SQLModel.metadata.tables["mentions"]
    with store.engine.begin() as conn:
        for key, (_, _, _, minutes) in ALERTS.items():
            conn.execute(
                update(outbox)
                .where(outbox.c.mention_id == ids[key])
                .values(status="sent", sent_at=SENT + timedelta(minutes=minutes), message_ts="1.0")
            )
        if handled:
            conn.execute(update(table).where(table.c.id == ids[handled]).values(status="handled"))
    return ids


def names(ids: dict[str, int], mention_ids: list[int]) -> list[str]:
    back = {v: k for k, v in ids.items()}
    return [back[i] for i in mention_ids]


def test_workflow_unhandled_sorts_by_reach(store: Store) -> None:
    ids = alerted(store, handled="se-0.5x")
    rows = wf.unhandled(store, CHANNEL, limit=10)
    assert names(ids, [int(m.id or 0) for m, _ in rows]) == [k for k in EXPECTED if k != "se-0.5x"]
    # The policy's thresholds are the scale: HN at 1,000 puts 300 points at 0.3x.
    policy = ReachPolicy(thresholds={"hackernews": 1000, "mastodon": 5000})
    rows = wf.unhandled(store, CHANNEL, limit=3, reach=policy)
    assert names(ids, [int(m.id or 0) for m, _ in rows]) == [
        "mastodon-1.2x",
        "hn-3x-old",
        "hn-3x-new",
    ]


def test_slash_unhandled_lists_biggest_reach_first(store: Store) -> None:
    ids = alerted(store)
    config = InteractionConfig(alerts_channel=CHANNEL, reach=ReachPolicy(sla_seconds=900))
    now = SENT + timedelta(minutes=30)
    reply = handle_command(store, {"text": "unhandled", "user_id": "U1"}, config, now=now)
    lines = (reply.ephemeral or "").splitlines()
    assert "biggest reach first" in lines[0]
    order = [next(k for k in ids if f"({k})" in line) for line in lines[1:]]
    assert order == EXPECTED
    assert "📣" in lines[1] and "300 points, 12 comments" in lines[1]
    assert "hackernews, 300 points, 12 comments, 27 min ago" in lines[1]
    assert "6,000 followers, 2 boosts" in lines[3] and "📣" in lines[3]
    assert "📣" not in lines[4]  # 500 views: below 1,000


def test_digest_unhandled_section_by_reach(store: Store) -> None:
    alerted(store)
    end = SENT + timedelta(hours=1)
    digest = build_digest(store, Period("daily", CHANNEL, end - timedelta(days=1), end, "UTC"))
    assert digest.unhandled_total == len(ALERTS)
    # The five the digest lists: the biggest reach.
    assert [i.url.rsplit("/", 1)[1] for i in digest.unhandled] == EXPECTED[:5]
    first = digest.unhandled[0]
    assert (first.reach, first.reach_figures) == (300, "300 points, 12 comments")
    # The figures survive the outbox payload and show in both renderings.
    back = Digest.from_payload(digest.to_payload())
    assert back.unhandled == digest.unhandled
    blocks = str(render_digest(back).blocks)
    assert "biggest reach first" in blocks and "300 points, 12 comments" in blocks
    assert "(300 points, 12 comments)" in digest_text(back)


def test_an_old_payload_without_reach_still_reads() -> None:
    item: dict[str, Any] = {
        "id": 1,
        "source": "hackernews",
        "title": "t",
        "url": "https://x.test",
        "label": "negative",
        "score": -0.5,
        "created_at": SENT.isoformat(),
    }
    payload = {"kind": "daily", "channel": CHANNEL, "start": "", "end": "", "timezone": "UTC"}
    digest = Digest.from_payload({**payload, "key": "k", "unhandled": [item]})
    assert digest.unhandled[0].reach is None and digest.unhandled[0].reach_figures == ""


def test_report_lists_unhandled_by_reach(tmp_path: Path, monkeypatch: Any) -> None:
    database = tmp_path / "earshot.db"
    config = tmp_path / "earshot.toml"
    config.write_text(
        f"""
[product]
name = "Acme"
queries = ["checkout"]

[storage]
path = "{database}"

[[sources]]
type = "hackernews"
"""
    )
    monkeypatch.delenv("DATABASE_URL", raising=False)
    store = Store.from_url(f"sqlite:///{database}")
    store.create_schema()
    try:
        alerted(store)
    finally:
        store.engine.dispose()
    result = CliRunner().invoke(app, ["report", "--config", str(config)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    section = result.output.split("Unhandled alerts in #cx-alerts (7)", 1)[1]
    shown = [k for k in EXPECTED[:5]]
    positions = [section.index(f"({k}") for k in shown]
    assert positions == sorted(positions)
    assert "300 points, 12" in section
