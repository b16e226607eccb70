"""Rendering digests, spike alerts and the chart, and uploading the chart to Slack.

* ``render_digest(digest)``: Block Kit for a digest (``earshot.listener.digest.Digest``):
  counts by source and sentiment, the change from the previous period, the spam filtered,
  top negative and positive mentions with links, the mentions held for this digest, alerts
  still unhandled, and (weekly) response times per channel. Untrusted text is escaped
  (``safe``) and links are written by us from sanitized http(s) URLs only; the message
  stays within Block Kit limits (``validate_message``).
  Daily and weekly digests add each query tag's share of voice; weekly ones the themes of
  the week (label, size and change, sentiment, two quotes with links).
* ``render_spike(payload)``: a spike alert; ``render_shift(payload)``: a sentiment shift.
* ``chart_png(days, title)``: the volume and sentiment per day chart (matplotlib, Agg).
* ``SlackFileChannel``: sends chart rows with ``WebClient.files_upload_v2``.
* ``render_row(delivery)``: the delivery worker's hook for the kinds above.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from earshot.listener.digest import KIND_CHART, KIND_DIGEST, DayCount, Digest, Item, ReplyItem
from earshot.listener.insight import StorySummary, Theme, Voice
from earshot.listener.models import Delivery
from earshot.listener.spikes import KIND_SHIFT, KIND_SPIKE

from .base import DeliveryRetry, Outgoing, Sent
from .blocks import RenderedMessage, one_line, safe, source_name, story_sentiment, truncate
from .slack import classify_slack_error

logger = logging.getLogger("earshot.responders.digest")

__all__ = [
    "FileOutgoing",
    "SlackFileChannel",
    "chart_png",
    "digest_text",
    "render_digest",
    "render_row",
    "render_shift",
    "render_spike",
    "theme_lines",
    "voice_line",
]

_TITLES = {"hourly": "Hourly digest", "daily": "Daily digest", "weekly": "Weekly picture"}
_DOTS = {"negative": "🔴", "mixed": "🟠", "unscored": "⚪", "neutral": "⚪", "positive": "🟢"}
_COLORS = {
    "negative": "#d64545",
    "mixed": "#f0a030",
    "unscored": "#b0b0b0",
    "neutral": "#8da0b6",
    "positive": "#3a9d5d",
}
_ORDER = ("negative", "mixed", "unscored", "neutral", "positive")
_UNSAFE = frozenset('<>|"`')
MAX_SECTION = 3000
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


@dataclass(frozen=True)
class FileOutgoing(Outgoing):
    """An ``Outgoing`` that carries a file (the chart PNG) to upload."""

    content: bytes = b""
    filename: str = "chart.png"
    title: str = ""


def link_url(url: Any) -> str | None:
    """``url`` made safe inside a mrkdwn link (``<url|label>``), or ``None`` if unusable."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    if not url or len(url) > 2000 or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return "".join(quote(ch, safe="") if ch in _UNSAFE or not ch.isascii() else ch for ch in url)


def _item_line(item: Item, width: int = 140, *, reach: bool = False) -> str:
    dot = _DOTS.get(item.label, "⚪")
    label = safe(one_line(item.title) or "(no title)", width)
    url = link_url(item.url)
    text = f"<{url}|{label}>" if url else label
    where = source_name(item.source)
    score = f" {item.score:+.2f}" if isinstance(item.score, int | float) else ""
    stars = f" ⭐{item.rating}" if item.rating is not None else ""
    shown = one_line(item.reach_figures) if reach else ""
    figures = f" · {safe(shown, 120)}" if shown else ""
    return f"{dot} {text} · {safe(where, 40)}{stars}{score}{figures}"


def stories_line(digest: Digest) -> str:
    """``12 stories (+3 vs the previous period)``: mentions grouped into stories."""
    change = digest.story_count - digest.previous_story_count
    noun = "story" if digest.story_count == 1 else "stories"
    return f"{digest.story_count} {noun} ({change:+d} vs the previous period)"


def story_summary(story: StorySummary) -> str:
    """One story in plain text: its mentions, its sentiment per source, its title and link."""
    return (
        f"{story.mentions} mentions · {story_sentiment(story.sources)} · "
        f"{one_line(story.title)[:100]} {story.url}"
    ).rstrip()


def _story_line(story: StorySummary, width: int = 120) -> str:
    label = safe(one_line(story.title) or "(no title)", width)
    url = link_url(story.url)
    text = f"<{url}|{label}>" if url else label
    return f"🧵 {text} · {story.mentions} mentions · {safe(story_sentiment(story.sources), 400)}"


def _person(user_id: str | None, name: str = "") -> str:
    """A Slack user as a mention (``<@U123>``, which Slack shows by name), else the name."""
    if user_id and _USER_ID.match(user_id):
        return f"<@{user_id}>"
    return safe(one_line(name), 80) or "someone"


def _reply_line(reply: ReplyItem, tz: str, width: int = 120) -> str:
    """Who replied, when and where, to what (linked), and the reply itself (linked)."""
    who = _person(reply.author_id, reply.author_name)
    where = safe(source_name(reply.platform), 40)
    verb = "said they replied" if reply.status == "manual" else "replied"
    approved = f" (approved by {_person(reply.approver_id)})" if reply.approver_id else ""
    label = safe(one_line(reply.title) or "(no title)", width)
    url = link_url(reply.url)
    what = f"<{url}|{label}>" if url else label
    answer = link_url(reply.reply_url)
    link = f" · <{answer}|the reply>" if answer else ""
    return f"✉️ {who} {verb} on {where}, {_when(reply.sent_at, tz)}{approved}: {what}{link}"


def _lines_section(block_id: str, heading: str, lines: Sequence[str], more: int) -> dict[str, Any]:
    body = [heading]
    size = len(heading)
    shown = 0
    for line in lines:
        if size + 1 + len(line) > MAX_SECTION - 40:
            break
        body.append(line)
        size += 1 + len(line)
        shown += 1
    hidden = more + (len(lines) - shown)
    if hidden:
        body.append(f"… and {hidden} more")
    return {
        "type": "section",
        "block_id": block_id,
        "text": {"type": "mrkdwn", "text": "\n".join(body), "verbatim": True},
    }


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(one_line(text), limit) or "-", "emoji": True}


def _when(value: str, tz: str) -> str:
    try:
        from zoneinfo import ZoneInfo

        return datetime.fromisoformat(value).astimezone(ZoneInfo(tz)).strftime("%a %d %b %H:%M")
    except (ValueError, KeyError):
        return value


def _change(digest: Digest) -> str:
    change = digest.change
    if digest.change_percent is None:
        return f"{change:+d} vs the previous period (which had none)"
    return f"{change:+d} ({digest.change_percent:+.0f}%) vs the previous period"


def _filtered(count: int) -> str:
    return f"{count} filtered as spam or off-topic (stored, not alerted)"


def duration_text(seconds: float | None) -> str:
    """A response time as people read it: "42 min", "3.5 h", "2.0 d" ("-" when none)."""
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _split(counts: dict[str, int]) -> str:
    """A sentiment split in the digest's order: ``🔴 12 · 🟢 30``."""
    return " · ".join(
        f"{_DOTS.get(label, '')} {counts[label]}" for label in _ORDER if counts.get(label)
    )


def _negative_share(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    return f"{100 * counts.get('negative', 0) / total:.0f}% negative" if total else "-"


def voice_line(voice: Voice) -> str:
    """One tag's share of voice in plain words (escaped by the caller where needed):
    ``competitor: 105 mentions (+12 vs 93), 21% negative (was 18%)``."""
    return (
        f"{voice.tag}: {voice.mentions} mentions ({voice.change:+d} vs {voice.previous}), "
        f"{_negative_share(voice.sentiment)} (was {_negative_share(voice.previous_sentiment)})"
    )


def _voices_section(voices: Sequence[Voice]) -> dict[str, Any]:
    total = sum(v.mentions for v in voices) or 1
    lines = [
        f"*{safe(v.tag, 100)}* {100 * v.mentions / total:.0f}% · "
        f"{safe(voice_line(v).split(': ', 1)[1], 300)}  {_split(v.sentiment)}"
        for v in voices
    ]
    return _lines_section("digest_voice", "*Share of voice*", lines, 0)


def theme_lines(theme: Theme, width: int = 140) -> list[str]:
    """A theme as plain lines: its label, size, change and negative share, then its quotes."""
    head = (
        f"{theme.label}: {theme.size} mentions ({theme.change:+d} vs {theme.previous} before), "
        f"{_negative_share(theme.sentiment)}"
    )
    return [head] + [f'  "{one_line(q.text)[:width]}" {q.url}'.rstrip() for q in theme.quotes]


def _theme_section(index: int, theme: Theme, before: str) -> dict[str, Any]:
    """One theme: label, size and change, sentiment split, then its quotes, linked."""
    head = (
        f"*{safe(theme.label, 120)}* · {theme.size} mentions ({theme.change:+d} vs {before})"
        f"  {_split(theme.sentiment)}"
    )
    lines = []
    for quoted in theme.quotes:
        text = safe(f"“{one_line(quoted.text)}”", 200)
        url = link_url(quoted.url)
        where = safe(source_name(quoted.source), 40)
        lines.append(f">{f'<{url}|{text}>' if url else text} · {where}")
    return _lines_section(f"digest_theme_{index}", head, lines, 0)


def render_digest(digest: Digest) -> RenderedMessage:
    """The digest as a Block Kit message (escaped, within limits)."""
    title = f"{_TITLES.get(digest.kind, 'Digest')} · {digest.channel}"
    window = (
        f"{_when(digest.start, digest.timezone)} – {_when(digest.end, digest.timezone)} "
        f"({digest.timezone})"
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "block_id": "digest_h", "text": _plain(title, 150)},
        {
            "type": "context",
            "block_id": "digest_when",
            "elements": [{"type": "mrkdwn", "text": safe(window, 300), "verbatim": True}],
        },
    ]
    sentiments = ", ".join(
        f"{_DOTS.get(label, '')} {label} {digest.by_sentiment[label]}"
        for label in _ORDER
        if digest.by_sentiment.get(label)
    )
    sources = ", ".join(
        f"{safe(source_name(s), 40)} {n}" for s, n in sorted(digest.by_source.items())
    )
    summary = f"*{digest.total} mentions*, {_change(digest)}"
    if digest.story_count:
        summary += f"\nin {stories_line(digest)}"
    if digest.filtered:
        summary += f"\n{_filtered(digest.filtered)}"
    fields = [
        {"type": "mrkdwn", "text": text[:2000], "verbatim": True}
        for text in (f"*By sentiment*\n{sentiments or '-'}", f"*By source*\n{sources or '-'}")
    ]
    blocks.append(
        {
            "type": "section",
            "block_id": "digest_counts",
            "text": {"type": "mrkdwn", "text": summary, "verbatim": True},
            "fields": fields,
        }
    )
    if digest.voices:
        blocks.append(_voices_section(digest.voices))
    if digest.themes:
        blocks.append(
            {
                "type": "section",
                "block_id": "digest_themes",
                "text": {"type": "mrkdwn", "text": "*Themes*", "verbatim": True},
            }
        )
        before = "last week" if digest.kind == "weekly" else "the period before"
        blocks += [_theme_section(i, t, before) for i, t in enumerate(digest.themes)]
    if digest.held_total:
        blocks.append(
            _lines_section(
                "digest_held",
                f"*Held for this digest ({digest.held_total})*",
                [_item_line(i) for i in digest.held],
                digest.held_total - len(digest.held),
            )
        )
    if digest.unrelated_total:
        blocks.append(
            _lines_section(
                "digest_unrelated",
                f"*Probably unrelated ({digest.unrelated_total}), held instead of alerted*",
                [_item_line(i) for i in digest.unrelated],
                digest.unrelated_total - len(digest.unrelated),
            )
        )
    if digest.stories:
        blocks.append(
            _lines_section(
                "digest_stories",
                "*Biggest stories* (one link or one complaint across sources)",
                [_story_line(story) for story in digest.stories],
                0,
            )
        )
    if digest.top_negative:
        blocks.append(
            _lines_section(
                "digest_neg", "*Top negative*", [_item_line(i) for i in digest.top_negative], 0
            )
        )
    if digest.top_positive:
        blocks.append(
            _lines_section(
                "digest_pos", "*Top positive*", [_item_line(i) for i in digest.top_positive], 0
            )
        )
    if digest.unhandled_total:
        blocks.append(
            _lines_section(
                "digest_open",
                f"*Alerts still unhandled ({digest.unhandled_total})*, biggest reach first",
                [_item_line(i, reach=True) for i in digest.unhandled],
                digest.unhandled_total - len(digest.unhandled),
            )
        )
    if digest.response_times:
        lines = [
            f"{safe(r.channel, 80)}: median {duration_text(r.median)}, p90 {duration_text(r.p90)} "
            f"({r.count} handled)"
            for r in digest.response_times
        ]
        blocks.append(_lines_section("digest_rt", "*Response times (alert to Handled)*", lines, 0))
    if digest.replies_total:
        blocks.append(
            _lines_section(
                "digest_replies",
                f"*Replies to customers ({digest.replies_total})*",
                [_reply_line(r, digest.timezone) for r in digest.replies],
                digest.replies_total - len(digest.replies),
            )
        )
    if digest.chart:
        blocks.append(
            {
                "type": "context",
                "block_id": "digest_chart",
                "elements": [
                    {"type": "mrkdwn", "text": "Chart: volume and sentiment per day, below."}
                ],
            }
        )
    fallback = f"{one_line(title)}: {digest.total} mentions, {_change(digest)}"
    metadata = {"event_type": "earshot_digest", "event_payload": {"key": digest.key}}
    return RenderedMessage(text=safe(fallback, 3000), blocks=blocks, metadata=metadata)


def digest_text(digest: Digest) -> str:
    """The digest as plain text (console channel, logs)."""
    lines = [
        f"{_TITLES.get(digest.kind, 'Digest')} · {digest.channel}",
        f"{digest.start} – {digest.end} ({digest.timezone})",
        f"{digest.total} mentions, {_change(digest)}",
        *([f"in {stories_line(digest)}"] if digest.story_count else []),
        *([_filtered(digest.filtered)] if digest.filtered else []),
        "by sentiment: " + ", ".join(f"{k} {v}" for k, v in sorted(digest.by_sentiment.items())),
        "by source: " + ", ".join(f"{k} {v}" for k, v in sorted(digest.by_source.items())),
    ]
    if digest.stories:
        lines.append("biggest stories:")
        lines += [f"  - {story_summary(story)}" for story in digest.stories]
    if digest.voices:
        lines.append("share of voice:")
        lines += [f"  - {voice_line(v)}" for v in digest.voices]
    if digest.themes:
        lines.append("themes:")
        for theme in digest.themes:
            first, *quotes = theme_lines(theme)
            lines += [f"  - {first}", *(f"  {q}" for q in quotes)]
    for heading, items in (
        (f"held for this digest ({digest.held_total})", digest.held),
        (f"probably unrelated ({digest.unrelated_total})", digest.unrelated),
        ("top negative", digest.top_negative),
        ("top positive", digest.top_positive),
        (f"alerts still unhandled ({digest.unhandled_total})", digest.unhandled),
    ):
        if items:
            lines.append(heading + ":")
            lines += [
                f"  - {one_line(i.title)[:120]} {i.url}"
                + (f" ({one_line(i.reach_figures)[:120]})" if i.reach_figures else "")
                for i in items
            ]
    for r in digest.response_times:
        lines.append(
            f"response times {r.channel}: median {duration_text(r.median)}, "
            f"p90 {duration_text(r.p90)}"
        )
    if digest.replies_total:
        lines.append(f"replies to customers ({digest.replies_total}):")
        lines += [f"  - {reply_summary(r, digest.timezone)}" for r in digest.replies]
    return "\n".join(lines)


def reply_summary(reply: ReplyItem, tz: str) -> str:
    """One reply in plain text: who, when, where, to what, and the reply's link."""
    verb = "said they replied" if reply.status == "manual" else "replied"
    approved = f" (approved by {reply.approver_id})" if reply.approver_id else ""
    who = one_line(reply.author_name) or reply.author_id or "someone"
    return (
        f"{who} {verb} on {source_name(reply.platform)}, {_when(reply.sent_at, tz)}{approved}: "
        f"{one_line(reply.title)[:80]} {reply.reply_url or reply.url}"
    ).rstrip()


def render_spike(payload: dict[str, Any]) -> tuple[RenderedMessage, str]:
    """A spike alert (from ``Spike.to_payload``) as Block Kit and as plain text."""
    title = str(payload.get("title") or "Spike")
    label = str(payload.get("label") or "")
    items = [Item(**item) for item in payload.get("top") or []]
    detail = (
        f"Baseline {float(payload.get('mean') or 0):.1f}/hour, "
        f"sigma {float(payload.get('sigma') or 0):.1f}; "
        + ", ".join(f"{k} {v}" for k, v in sorted((payload.get("labels") or {}).items()))
    )
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "block_id": "spike_h",
            "text": _plain(f"{_DOTS.get(label, '📈')} {title}", 150),
        },
        {
            "type": "context",
            "block_id": "spike_detail",
            "elements": [{"type": "mrkdwn", "text": safe(detail, 1000), "verbatim": True}],
        },
    ]
    if items:
        blocks.append(_lines_section("spike_top", "*Top items*", [_item_line(i) for i in items], 0))
    plain = "\n".join([title, detail, *(f"  - {one_line(i.title)} {i.url}" for i in items)])
    metadata = {"event_type": "earshot_spike", "event_payload": {"key": payload.get("group")}}
    return RenderedMessage(text=safe(title, 3000), blocks=blocks, metadata=metadata), plain


def render_shift(payload: dict[str, Any]) -> tuple[RenderedMessage, str]:
    """A sentiment-shift alert (from ``Shift.to_payload``) as Block Kit and as plain text."""
    title = str(payload.get("title") or "Sentiment shift")
    items = [Item(**item) for item in payload.get("top") or []]
    detail = str(payload.get("detail") or "")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "block_id": "shift_h", "text": _plain(f"📉 {title}", 150)},
        {
            "type": "context",
            "block_id": "shift_detail",
            "elements": [{"type": "mrkdwn", "text": safe(detail or "-", 1000), "verbatim": True}],
        },
    ]
    if items:
        blocks.append(
            _lines_section("shift_top", "*Negative items*", [_item_line(i) for i in items], 0)
        )
    plain = "\n".join([title, detail, *(f"  - {one_line(i.title)} {i.url}" for i in items)])
    metadata = {"event_type": "earshot_shift", "event_payload": {"key": payload.get("group")}}
    return RenderedMessage(text=safe(title, 3000), blocks=blocks, metadata=metadata), plain


def chart_png(days: Sequence[DayCount], title: str = "Mentions per day") -> bytes:
    """A PNG: stacked bars of mentions per day by sentiment, and the share that is negative."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4), dpi=100)
    axes = figure.add_subplot(1, 1, 1)
    labels = [day.day[5:] for day in days]
    bottom = [0] * len(days)
    for label in _ORDER:
        values = [day.counts.get(label, 0) for day in days]
        if not any(values):
            continue
        axes.bar(labels, values, bottom=bottom, color=_COLORS[label], label=label, width=0.7)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes.set_ylabel("mentions")
    axes.set_title(title)
    axes.spines[["top", "right"]].set_visible(False)
    share = axes.twinx()
    negative = [
        100.0 * day.counts.get("negative", 0) / day.total if day.total else 0.0 for day in days
    ]
    share.plot(labels, negative, color="#222222", marker="o", linewidth=1.5, label="% negative")
    share.set_ylim(0, 100)
    share.set_ylabel("% negative")
    share.spines[["top"]].set_visible(False)
    handles, names = axes.get_legend_handles_labels()
    more, more_names = share.get_legend_handles_labels()
    axes.legend(handles + more, names + more_names, loc="upper left", fontsize=8, frameon=False)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def render_row(delivery: Delivery) -> Outgoing | None:
    """The message of a digest, chart, spike or shift outbox row (``None``: another kind)."""
    key = delivery.idempotency_key
    payload = delivery.payload or {}
    if delivery.kind == KIND_DIGEST:
        digest = Digest.from_payload(payload)
        return Outgoing(delivery.channel, render_digest(digest), digest_text(digest), key)
    if delivery.kind == KIND_CHART:
        digest = Digest.from_payload(payload)
        title = f"{_TITLES.get(digest.kind, 'Digest')} · volume and sentiment per day"
        png = chart_png(digest.days, title)
        name = f"earshot-{digest.kind}-{digest.start[:10]}.png"
        message = RenderedMessage(text=title, blocks=[], metadata=None)
        plain = f"{title}: {name} ({len(png)} bytes PNG)"
        return FileOutgoing(delivery.channel, message, plain, key, None, png, name, title)
    if delivery.kind == KIND_SPIKE:
        message, plain = render_spike(payload)
        metadata = {"event_type": "earshot_spike", "event_payload": {"key": key}}
        message = RenderedMessage(message.text, message.blocks, metadata)
        return Outgoing(delivery.channel, message, plain, key)
    if delivery.kind == KIND_SHIFT:
        message, plain = render_shift(payload)
        metadata = {"event_type": "earshot_shift", "event_payload": {"key": key}}
        message = RenderedMessage(message.text, message.blocks, metadata)
        return Outgoing(delivery.channel, message, plain, key)
    return None


class SlackFileChannel:
    """Uploads ``FileOutgoing`` files to Slack with ``files_upload_v2``.

    ``files_upload_v2`` needs a channel id: names are resolved with ``conversations.list``
    (through ``resolve``, e.g. ``SlackChannel._channel_id``). Errors are sorted like
    message sends (``classify_slack_error``).
    """

    name = "slack-files"

    def __init__(self, client: WebClient, resolve: Any = None) -> None:
        self.client = client
        self.resolve = resolve

    def find_sent(self, outgoing: Outgoing, since: float, channel_id: str | None) -> Sent | None:
        return None

    def send(self, outgoing: Outgoing) -> Sent:
        if not isinstance(outgoing, FileOutgoing):
            raise TypeError("SlackFileChannel sends files only")
        channel = outgoing.channel
        try:
            if self.resolve is not None and not _CHANNEL_ID.match(channel):
                channel = self.resolve(channel) or channel
            response = self.client.files_upload_v2(
                channel=channel,
                content=outgoing.content,
                filename=outgoing.filename,
                title=outgoing.title or outgoing.filename,
                initial_comment=outgoing.message.text or None,
            )
        except SlackApiError as exc:
            raise classify_slack_error(exc) from exc
        except (SlackClientError, OSError) as exc:
            raise DeliveryRetry(f"slack: {type(exc).__name__}: {exc}", uncertain=True) from exc
        data = response.data if isinstance(response.data, dict) else {}
        file = data.get("file") or {}
        return Sent(channel_id=channel, ts=str(file.get("id") or "") or None)
