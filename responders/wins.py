"""Approved mentions for marketing: the wins-channel post and the CSV/JSON export.

``share_snippet`` is the share-ready text (a short quote, who said it, where, the link);
``render_win`` wraps it for the wins channel; ``export_approved`` writes the approved
mentions for marketing tools (``earshot export --approved``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any, Literal, TextIO

from earshot.listener.models import Delivery, Mention, MentionEvent, as_utc
from earshot.listener.workflow import KIND_THREAD, KIND_WIN

from .base import Outgoing
from .blocks import RenderedMessage, escape_mrkdwn

SNIPPET_CHARS = 240
EXPORT_FIELDS = [
    "mention_id",
    "source",
    "url",
    "author",
    "created_at",
    "approved_by",
    "approved_at",
    "sentiment_label",
    "sentiment_score",
    "rating",
    "title",
    "text",
    "snippet",
]


def _quote(mention: Mention, limit: int = SNIPPET_CHARS) -> str:
    text = " ".join((mention.text or mention.title or "").split())
    if len(text) > limit:
        text = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",.;:") + "…"
    return text


def share_snippet(mention: Mention) -> str:
    """Plain share-ready text: ``“quote” (author on source) link``."""
    who = mention.author or "a user"
    where = mention.site or mention.source
    link = f" {mention.url}" if mention.url else ""
    return f"“{_quote(mention)}” ({who} on {where}){link}"


def render_win(mention: Mention, approved_by: str = "") -> RenderedMessage:
    """The wins-channel post: the snippet as a quote, the link, and who approved it."""
    quote = escape_mrkdwn(_quote(mention))
    who = escape_mrkdwn(mention.author or "a user")
    where = escape_mrkdwn(mention.site or mention.source)
    link = ""
    if mention.url.startswith(("http://", "https://")):
        link = f"\n<{escape_mrkdwn(mention.url).replace('|', '%7C')}|Open the post>"
    by = f" · approved by <@{approved_by}>" if approved_by else ""
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"> {quote}\n— {who} on {where}{link}"[:3000],
                "verbatim": True,
            },
        },
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"📣 Ready to share{by}"}],
        },
        {
            "type": "section",
            "text": {"type": "plain_text", "text": share_snippet(mention)[:3000]},
        },
    ]
    text = f"Win to share: {share_snippet(mention)}"[:3900]
    return RenderedMessage(text=text, blocks=blocks, metadata={})


def export_rows(rows: Sequence[tuple[Mention, MentionEvent]]) -> list[dict[str, Any]]:
    """One flat record per approved mention (``approved_since`` rows)."""
    out = []
    for mention, event in rows:
        created = as_utc(mention.created_at)
        approved = as_utc(event.at)
        out.append(
            {
                "mention_id": mention.id,
                "source": mention.source,
                "url": mention.url,
                "author": mention.author,
                "created_at": created.isoformat() if created else "",
                "approved_by": event.user_id,
                "approved_at": approved.isoformat() if approved else "",
                "sentiment_label": mention.sentiment_label or "",
                "sentiment_score": mention.sentiment_score,
                "rating": mention.rating,
                "title": mention.title,
                "text": mention.text,
                "snippet": share_snippet(mention),
            }
        )
    return out


def _cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet will not run as a formula (posts are untrusted text)."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_approved(
    rows: Sequence[tuple[Mention, MentionEvent]],
    fmt: Literal["csv", "json"],
    out: TextIO | None = None,
) -> str:
    """Write the approved mentions as CSV (header row) or a JSON array; return the text."""
    records = export_rows(rows)
    if fmt == "json":
        content = json.dumps(records, ensure_ascii=False, indent=2) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow({k: _cell(v) for k, v in record.items()})
        content = buffer.getvalue()
    if out is not None:
        out.write(content)
    return content


def render_workflow(delivery: Delivery, mention: Mention | None) -> Outgoing | None:
    """The outbox kinds the Slack workflow queues: a wins post, a thread reply.

    ``None`` for every other kind (the delivery worker renders those).
    """
    key = delivery.idempotency_key
    payload = delivery.payload or {}
    metadata = {"event_type": "earshot_message", "event_payload": {"key": key}}
    if delivery.kind == KIND_WIN and mention is not None:
        message = render_win(mention, str(payload.get("approved_by") or ""))
        message = RenderedMessage(message.text, message.blocks, metadata)
        return Outgoing(delivery.channel, message, share_snippet(mention), key)
    if delivery.kind == KIND_THREAD:
        text = str(payload.get("text") or "")[:3000] or "(no text)"
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
        if isinstance(payload.get("blocks"), list):  # a reply's approval note (Send/Edit/Reject)
            blocks = payload["blocks"]
        message = RenderedMessage(text, blocks, metadata)
        thread = str(payload.get("thread_ts") or "") or None
        return Outgoing(delivery.channel, message, text, key, thread_ts=thread)
    return None
