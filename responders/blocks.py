"""Block Kit rendering: a stored mention as a safe, bounded Slack message.

Mention text is untrusted. Everything taken from it is cleaned (control, zero-width and
bidi-override characters, lone surrogates, non-characters), escaped (``&``, ``<``, ``>``
and nothing else, as Slack's formatting docs ask) and put in mrkdwn text objects with
``verbatim: true``, so ``<!channel>``, ``<@U123>``, ``<https://evil|label>`` or a plain
``@here`` in a post never pings anyone or forges a link. The post's URL goes only into a
button's ``url`` field, which Slack does not parse as mrkdwn. The only ``<...>`` syntax
the renderer writes itself is the ``<!date^...>`` token of the creation time.

Every piece is cut to Slack's limits (``tests/fixtures/slack/block_kit/limits.json``),
and ``validate_blocks`` / ``validate_message`` check those limits on any message,
independently of the cutting done here.

Usage:

```python
message = render_alert(mention, idempotency_key="alert:42", interactive=True)
assert validate_message({"text": message.text, "blocks": message.blocks}) == []
```
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from earshot.listener.models import COMPLAINT_INTENTS, Intent, Label, Mention
from earshot.listener.reach import MEASURES, ReachPolicy, describe

__all__ = [
    "ACTION_APPROVE",
    "ACTION_ASSIGN",
    "ACTION_HANDLED",
    "ACTION_NOT_RELEVANT",
    "ACTION_OPEN",
    "ACTION_REJECT",
    "ACTION_REPLY",
    "ACTION_SEND_TO_LEADS",
    "ACTION_WRONG_SENTIMENT",
    "EXCERPT_CHARS",
    "RenderedMessage",
    "clean_text",
    "escape_mrkdwn",
    "one_line",
    "render_alert",
    "render_summary",
    "render_text",
    "safe",
    "source_name",
    "truncate",
    "validate_blocks",
    "validate_message",
]

# Limits for messages (docs.slack.dev; see tests/fixtures/slack/block_kit/limits.json).
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_TEXT_OBJECT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS = 25
MAX_ID = 255
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_BUTTON_URL = 3000
MAX_ACCESSIBILITY_LABEL = 75
MAX_MESSAGE_TEXT = 4000

#: Button action ids. ``ACTION_OPEN`` is the link button: Slack still sends a payload
#: for it, which must be acknowledged.
ACTION_OPEN = "earshot_open"
ACTION_ASSIGN = "earshot_assign"
ACTION_HANDLED = "earshot_handled"
ACTION_NOT_RELEVANT = "earshot_not_relevant"
ACTION_WRONG_SENTIMENT = "earshot_wrong_sentiment"
ACTION_APPROVE = "earshot_approve"
ACTION_REJECT = "earshot_reject"
#: On positive alerts: "this is a complaint", re-labelled negative and sent to the leads.
ACTION_SEND_TO_LEADS = "earshot_send_to_leads"
#: Opens the reply modal (``responders/replies/slack.py``).
ACTION_REPLY = "earshot_reply"

#: How much of a post's text an alert quotes (characters before escaping). The section
#: could hold ~3,000; an alert channel reads better with a shorter excerpt.
EXCERPT_CHARS = 1200

SOURCE_NAMES = {
    "hackernews": "Hacker News",
    "reddit": "Reddit",
    "appstore": "App Store",
    "playstore": "Google Play",
    "googleplay": "Google Play",
    "appstoreconnect": "App Store",
    "mastodon": "Mastodon",
    "bluesky": "Bluesky",
    "stackexchange": "Stack Exchange",
    "github": "GitHub",
    "rss": "RSS",
    "discourse": "Discourse",
    "google_alerts": "Google Alerts",
}

_ELLIPSIS = "…"
_ZWNJ = "\u200c"
_ZWJ = "\u200d"
_NEWLINES = str.maketrans(
    {"\r": "\n", "\v": "\n", "\f": "\n", "\x85": "\n", "\u2028": "\n", "\u2029": "\n"}
)
# C0/C1 controls except tab and newline; lone surrogates; non-characters; invisible
# characters (zero-width space, word joiner, BOM, soft hyphen, Mongolian vowel separator,
# invisible operators); bidi embeddings, overrides and isolates ("Trojan Source").
# Left-to-right / right-to-left marks stay: RTL text uses them legitimately.
_NONCHARACTERS = "".join(
    f"\\U{plane * 0x10000 + 0xFFFE:08x}\\U{plane * 0x10000 + 0xFFFF:08x}" for plane in range(17)
)
_STRIP = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + _NONCHARACTERS
    + "\u200b\u2060-\u2064\ufeff\u00ad\u180e\u202a-\u202e\u2066-\u206f]"
)
_JOINERS = re.compile("[\u200c\u200d]+")
_BLANK_RUNS = re.compile(r"\n{4,}")  # more than two blank lines
_BLANK_LINE = re.compile(r"(?m)^[ \t]+$")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class RenderedMessage:
    """A message ready for ``chat.postMessage``.

    * **text** - the notification / screen-reader fallback: escaped, at most 4,000 chars.
    * **blocks** - the Block Kit blocks, as plain dicts.
    * **metadata** - Slack message metadata (``event_type`` and ``event_payload``), or
      ``None``.
    """

    text: str
    blocks: list[dict[str, Any]]
    metadata: dict[str, Any] | None = field(default=None)


# -- Text ---------------------------------------------------------------------------------


def _is_emoji_part(ch: str) -> bool:
    code = ord(ch)
    return (
        unicodedata.category(ch) in ("So", "Sk")
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # skin tones
        or 0xE0020 <= code <= 0xE007F  # tags (subdivision flags)
    )


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch)[0] in ("L", "M")


def _keep_joiner(match: re.Match[str]) -> str:
    # A joiner is kept only where it joins: ZWJ inside an emoji sequence (👩‍💻), ZWNJ
    # between letters (Persian, Indic scripts). Anywhere else it is just invisible.
    text, start, end = match.string, match.start(), match.end()
    if start == 0 or end >= len(text) or end - start > 1:
        return ""
    before, after = text[start - 1], text[end]
    if match.group() == _ZWJ and _is_emoji_part(before) and _is_emoji_part(after):
        return _ZWJ
    if match.group() == _ZWNJ and _is_letter(before) and _is_letter(after):
        return _ZWNJ
    return ""


def clean_text(text: Any) -> str:
    """Untrusted text made safe to display; not escaped (see ``escape_mrkdwn``).

    Removes control characters (tab and newline stay; CR, form feed, line and paragraph
    separators become newlines), lone surrogates (text decoded with
    ``errors="surrogateescape"``), non-characters, zero-width and bidi-override
    characters. Collapses more than two blank lines into two and strips the ends.
    ``None`` becomes ``""``; other non-strings are converted with ``str()``.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = text.replace("\r\n", "\n").translate(_NEWLINES)
    text = _STRIP.sub("", text)
    if _ZWJ in text or _ZWNJ in text:
        text = _JOINERS.sub(_keep_joiner, text)
    text = _BLANK_LINE.sub("", text)
    return _BLANK_RUNS.sub("\n\n\n", text).strip()


def one_line(text: Any) -> str:
    """``clean_text`` with every run of whitespace (newlines too) made a single space."""
    return _WHITESPACE.sub(" ", clean_text(text)).strip()


def escape_mrkdwn(text: str) -> str:
    """Escape Slack's three control characters: ``&`` first, then ``<`` and ``>``.

    Nothing else is encoded (Slack decodes only these three entities). ``@here`` and
    formatting characters are not affected: put the result in a mrkdwn text object with
    ``verbatim: true`` so Slack does not auto-link or auto-mention it.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _extends(ch: str) -> bool:
    # Characters that belong to the grapheme before them.
    if ch == _ZWJ:
        return True
    code = ord(ch)
    if 0xFE00 <= code <= 0xFE0F or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F:
        return True
    return unicodedata.category(ch) in ("Mn", "Me", "Mc")


def _is_regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


_ENTITIES = ("&amp;", "&lt;", "&gt;")


def _cut_point(text: str, cut: int) -> int:
    """The largest index <= ``cut`` that splits neither a character cluster nor an entity."""
    cut = max(0, min(cut, len(text)))
    # Do not leave a combining mark, variation selector, skin tone or ZWJ'd part behind.
    while 0 < cut < len(text) and (_extends(text[cut]) or text[cut - 1] == _ZWJ):
        cut -= 1
    # Flags are pairs of regional indicators: never keep half of one.
    if 0 < cut < len(text) and _is_regional(text[cut]):
        run = 0
        while cut - run > 0 and _is_regional(text[cut - run - 1]):
            run += 1
        cut -= run % 2
    # Never split an escape entity (&amp; &lt; &gt;).
    amp = text.rfind("&", max(0, cut - 4), cut)
    if amp != -1 and any(
        text.startswith(entity, amp) and amp + len(entity) > cut for entity in _ENTITIES
    ):
        cut = amp
    return cut


def _cut(text: str, keep: int) -> str:
    return text[: _cut_point(text, keep)].rstrip() + _ELLIPSIS


def truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters; if cut, the cut text ends with ``…``.

    The cut never splits a character cluster (combining marks, emoji sequences, flags) or
    an escape entity (``&amp;``, ``&lt;``, ``&gt;``), so it is safe on escaped text too.
    """
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    return _cut(text, limit - 1)


def _escaped_width(ch: str) -> int:
    return 5 if ch == "&" else 4 if ch in "<>" else 1


def safe(text: Any, limit: int) -> str:
    """Untrusted text cleaned, cut and escaped, at most ``limit`` characters once escaped.

    The text is cut *before* escaping (so no entity is ever split), at the longest prefix
    whose escaped form still fits with the ellipsis.
    """
    if limit <= 0:
        return ""
    cleaned = clean_text(text)
    escaped = escape_mrkdwn(cleaned)
    if len(escaped) <= limit:
        return escaped
    budget, size, keep = limit - len(_ELLIPSIS), 0, 0
    for ch in cleaned:
        size += _escaped_width(ch)
        if size > budget:
            break
        keep += 1
    return escape_mrkdwn(_cut(cleaned, keep))


def _line(text: Any, limit: int) -> str:
    # One cleaned line of at most ``limit`` characters, unescaped (plain text).
    return truncate(one_line(str(text or "")[: limit * 4]), limit)


def _safe_line(text: Any, limit: int) -> str:
    # Inline fields (author, title, query): one line, escaped, cut; the raw text is cut
    # first so a megabyte title costs nothing.
    return safe(one_line(str(text or "")[: limit * 4]), limit)


# -- Pieces -------------------------------------------------------------------------------


def _plain(text: Any, limit: int) -> dict[str, Any]:
    value = truncate(one_line(text), limit) or "-"
    return {"type": "plain_text", "text": value, "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    # Every mrkdwn object is verbatim: no auto-linking of URLs, #channels or @mentions.
    return {"type": "mrkdwn", "text": text or "-", "verbatim": True}


def _quote(text: str) -> str:
    # The ">" quote markers are ours; a ">" in the text itself is already "&gt;".
    return "\n".join(f">{line}" for line in text.split("\n"))


def source_name(source: str) -> str:
    """The display name of a source type (``hackernews`` -> ``Hacker News``)."""
    name = SOURCE_NAMES.get(source)
    if name:
        return name
    # Source types come from code, but an unknown one is shown as letters and digits only.
    name = re.sub(r"[^\w .-]+", "", one_line(str(source or "")[:200].replace("_", " ")))
    return truncate(name.strip().title(), 40) or "Unknown source"


def _headline(mention: Mention) -> str:
    where = source_name(mention.source)
    if mention.rating is not None:
        return f"⭐ {_rating(mention.rating)}/5 {where} review"
    label = mention.sentiment_label or ""
    if label == Label.NEGATIVE:
        return f"🔴 Negative mention on {where}"
    if label == Label.POSITIVE:
        return f"🟢 Positive mention on {where}"
    if label == Label.MIXED:
        return f"🟠 Mixed mention on {where}"
    if label == Label.NEUTRAL:
        return f"⚪ Neutral mention on {where}"
    return f"⚪ Mention on {where}"


def _rating(rating: Any) -> int:
    try:
        return max(0, min(5, int(rating)))
    except (TypeError, ValueError, OverflowError):
        return 0


def _created(created: datetime | None) -> datetime | None:
    if created is None:
        return None
    if created.tzinfo is None:
        return created.replace(tzinfo=UTC)
    return created.astimezone(UTC)


def _date_token(created: datetime | None) -> str:
    when = _created(created)
    if when is None:
        return "unknown time"
    fallback = when.strftime("%Y-%m-%d %H:%M UTC")
    # Written by us, never from the post: the only <...> syntax the renderer emits.
    return f"<!date^{int(when.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def _score(score: Any) -> str:
    if isinstance(score, int | float) and score == score and abs(score) != float("inf"):
        return f" ({score:+.2f})"
    return ""


def _http_url(url: Any) -> str | None:
    """The post URL if it is a usable http(s) URL for a button, else ``None``.

    Non-ASCII characters are percent-encoded (IDNA for the host), so Slack accepts it.
    """
    if not isinstance(url, str):
        return None
    url = url.strip()
    if len(url) > MAX_BUTTON_URL * 2 or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme.lower() not in ("http", "https") or not host:
            return None
        if not host.isascii():
            userinfo, at, _hostport = parts.netloc.rpartition("@")
            port = f":{parts.port}" if parts.port is not None else ""
            netloc = f"{userinfo}{at}{host.encode('idna').decode('ascii')}{port}"
            parts = parts._replace(netloc=netloc)
        url = urlunsplit(parts)
    except (ValueError, UnicodeError):
        return None
    if not url.isascii() or any(ch in _URL_UNSAFE for ch in url):
        url = "".join(_percent(ch) if ch in _URL_UNSAFE or not ch.isascii() else ch for ch in url)
    if len(url) > MAX_BUTTON_URL:
        return None
    return url


#: Not valid in a URL (RFC 3986) and meaningful to Slack or HTML: always percent-encoded.
_URL_UNSAFE = frozenset('<>"`')


def _reasons(mention: Mention) -> list[str]:
    return [_line(reason, 100) for reason in list(mention.sentiment_reasons or [])[:10]]


#: How an alert names the intent tags (the others by their value, ``_`` as a space).
INTENT_NAMES = {Intent.FEATURE.value: "feature request", Intent.CHURN.value: "churn risk"}


def _intents(mention: Mention) -> list[str]:
    """The mention's intent tags by their human names (unescaped, one line each)."""
    names = []
    for intent in list(mention.intents or [])[:10]:
        name = INTENT_NAMES.get(str(intent)) or str(intent).replace("_", " ")
        names.append(_line(name, 40))
    return [name for name in names if name]


def _confidence(value: Any) -> str:
    """`` 0.87``: the label's probability, or ``""`` when there is none (or it is not one)."""
    if isinstance(value, int | float) and 0.0 <= value <= 1.0:
        return f" {value:.2f}"
    return ""


def _complaint_intent(mention: Mention) -> bool:
    return bool(set(mention.intents or ()) & COMPLAINT_INTENTS)


def _percent(ch: str) -> str:
    return "".join(f"%{byte:02X}" for byte in ch.encode("utf-8", errors="replace"))


def _button(
    text: str, action_id: str, value: str | None = None, *, style: str | None = None
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": _plain(text, MAX_BUTTON_TEXT),
        "action_id": action_id[:MAX_ID],
    }
    if value is not None:
        button["value"] = value[:MAX_BUTTON_VALUE]
    if style:
        button["style"] = style
    return button


def _ident(mention: Mention) -> str:
    raw = str(mention.id if mention.id is not None else mention.external_id or "x")
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", raw)[:64]


# -- Rendering ----------------------------------------------------------------------------


def _section_text(mention: Mention) -> str:
    author = _safe_line(mention.author, 200) or "someone"
    title = _safe_line(mention.title, 500)
    lead = f"*{author}*" + (f" · *{title}*" if title else "")
    body = clean_text(str(mention.text or "")[: EXCERPT_CHARS * 4])
    if not body:
        return lead
    excerpt = truncate(body, EXCERPT_CHARS)
    # Quoting adds one ">" per line: the escaped excerpt gets the room minus those.
    room = MAX_SECTION_TEXT - len(lead) - 1 - (excerpt.count("\n") + 1)
    quoted = _quote(safe(excerpt, room))
    text = f"{lead}\n{quoted}"
    return text if len(text) <= MAX_SECTION_TEXT else lead


def _context(mention: Mention) -> list[str]:
    where = f"*{escape_mrkdwn(source_name(mention.source))}*"
    if mention.site:
        where += f" · {_safe_line(mention.site, 100)}"
    parts = [where]
    if mention.matched_query:
        query = _safe_line(mention.matched_query, 300)
        parts.append(f"query: `{query}`" if "`" not in query else f"query: {query}")
    if mention.sentiment_label:
        label = _safe_line(mention.sentiment_label, 30)
        # The label's probability where the classifier has one, else VADER's score.
        certainty = _confidence(mention.sentiment_confidence)
        sentiment = f"sentiment: *{label}{certainty}*"
        if not certainty:
            sentiment += _score(mention.sentiment_score)
        reasons = [r for r in _reasons(mention) if r]
        if reasons:
            sentiment += f" · drove it: {_safe_line(', '.join(reasons), 600)}"
        parts.append(sentiment)
    intents = _intents(mention)
    if intents:
        parts.append(f"intent: {_safe_line(', '.join(intents), 400)}")
    if mention.rating is not None:
        stars = _rating(mention.rating)
        parts.append(f"{'★' * stars}{'☆' * (5 - stars)} {stars}/5")
    figures = describe(mention.reach_detail)
    if figures:
        parts.append(f"reach: {_safe_line(figures, 300)}")
    if mention.language:
        parts.append(f"language: {_safe_line(mention.language, 16)}")
    if mention.model_version:
        parts.append(f"model: {_safe_line(mention.model_version, 64)}")
    parts.append(_date_token(mention.created_at))
    return parts


def _high_reach(mention: Mention, reach: ReachPolicy | None) -> str | None:
    """The "High reach" line of a flagged mention (unescaped, one line), else ``None``."""
    if reach is None or not reach.flagged(mention):
        return None
    figures = describe(mention.reach_detail) or f"{mention.reach:,}"
    threshold = reach.threshold(mention.source) or 0
    measure = MEASURES.get(mention.source, "reach")
    line = f"High reach: {figures} (threshold {threshold:,} {measure})"
    if reach.sla_seconds:
        line += f" · escalated after {max(1, round(reach.sla_seconds / 60))} min if not handled"
    return _line(line, 400)


def _fallback(mention: Mention, headline: str, product: str) -> str:
    prefix = f"{_line(product, 100)}: " if product else ""
    author = _line(mention.author, 200) or "someone"
    summary = _line(mention.title or mention.text, 300)
    text = f"{prefix}{headline} by {author}" + (f": {summary}" if summary else "")
    return safe(text, MAX_MESSAGE_TEXT - 100)


def render_alert(
    mention: Mention,
    *,
    idempotency_key: str | None = None,
    interactive: bool = False,
    product: str = "",
    reach: ReachPolicy | None = None,
) -> RenderedMessage:
    """The Slack message for one mention: header, excerpt, context, actions.

    * **idempotency_key** - when given, carried in the message metadata
      (``event_type: earshot_alert``), so a retry can find an already-posted message.
    * **interactive** - add the workflow buttons (their ``value`` is the mention id;
      a mention without an id gets none).
    * **product** - named in the notification text.
    * **reach** - the high-reach policy: a flagged mention (high reach and a complaint)
      gets a "High reach: 312 points, 140 comments" section under the header, and the
      notification text says so. The figures themselves are in the context either way.

    All text from the mention is cleaned, escaped and cut; the result always passes
    ``validate_message``.
    """
    ident = _ident(mention)
    headline = _headline(mention)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "block_id": f"earshot_h_{ident}", "text": _plain(headline, MAX_HEADER)},
    ]
    high = _high_reach(mention, reach)
    if high:
        label, _, rest = high.partition(": ")
        blocks.append(
            {
                "type": "section",
                "block_id": f"earshot_r_{ident}",
                "text": _mrkdwn(f"📣 *{label}:* {safe(rest, MAX_SECTION_TEXT - 100)}"),
            }
        )
    blocks += [
        {
            "type": "section",
            "block_id": f"earshot_s_{ident}",
            "text": _mrkdwn(_section_text(mention)),
        },
        {
            "type": "context",
            "block_id": f"earshot_c_{ident}",
            "elements": [_mrkdwn(part) for part in _context(mention)[:MAX_CONTEXT_ELEMENTS]],
        },
    ]
    elements: list[dict[str, Any]] = []
    url = _http_url(mention.url)
    if url:
        open_button = _button("Open post", ACTION_OPEN)
        open_button["url"] = url
        elements.append(open_button)
    if interactive and mention.id is not None:
        value = str(mention.id)
        # A positive mention with a complaint intent was routed to the leads: lead buttons.
        if mention.sentiment_label == Label.POSITIVE and not _complaint_intent(mention):
            elements += [
                _button("Reply", ACTION_REPLY, value),
                _button("Approve for amplification", ACTION_APPROVE, value, style="primary"),
                _button("Reject", ACTION_REJECT, value, style="danger"),
                _button("Wrong sentiment", ACTION_WRONG_SENTIMENT, value),
                _button("Send to leads", ACTION_SEND_TO_LEADS, value),
            ]
        else:
            elements += [
                _button("Reply", ACTION_REPLY, value),
                _button("Assign to me", ACTION_ASSIGN, value),
                _button("Handled", ACTION_HANDLED, value, style="primary"),
                _button("Not relevant", ACTION_NOT_RELEVANT, value),
                _button("Wrong sentiment", ACTION_WRONG_SENTIMENT, value),
            ]
    if elements:
        blocks.append({"type": "actions", "block_id": f"earshot_a_{ident}", "elements": elements})

    metadata = None
    if idempotency_key:
        metadata = {
            "event_type": "earshot_alert",
            "event_payload": {"mention_id": mention.id, "key": idempotency_key},
        }
    text = _fallback(mention, f"{headline} (high reach)" if high else headline, product)
    return RenderedMessage(text=text, blocks=blocks, metadata=metadata)


def render_text(mention: Mention, reach: ReachPolicy | None = None) -> str:
    """The same alert as readable plain text for a terminal: no escaping, no Slack syntax.

    Control characters (ANSI escapes included) are removed all the same.
    """
    lines = [_headline(mention)]
    high = _high_reach(mention, reach)
    if high:
        lines.append(high)
    who = _line(mention.author, 200) or "someone"
    where = source_name(mention.source)
    if mention.site:
        where += f" · {_line(mention.site, 100)}"
    lines.append(f"by {who} on {where}")
    if mention.title:
        lines.append(_line(mention.title, 300))
    body = truncate(clean_text(str(mention.text or "")[: EXCERPT_CHARS * 4]), EXCERPT_CHARS)
    if body:
        lines.extend(f"  > {line}" if line else "  >" for line in body.split("\n"))
    facts = []
    if mention.sentiment_label:
        certainty = _confidence(mention.sentiment_confidence)
        facts.append(
            f"sentiment: {_line(mention.sentiment_label, 30)}"
            + (certainty or _score(mention.sentiment_score))
        )
    reasons = [r for r in _reasons(mention) if r]
    if reasons:
        facts.append("drove it: " + ", ".join(reasons))
    intents = _intents(mention)
    if intents:
        facts.append("intent: " + ", ".join(intents))
    if mention.rating is not None:
        facts.append(f"rating: {_rating(mention.rating)}/5")
    if mention.matched_query:
        facts.append(f"query: {_line(mention.matched_query, 300)}")
    figures = describe(mention.reach_detail)
    if figures:
        facts.append(f"reach: {_line(figures, 300)}")
    if mention.model_version:
        facts.append(f"model: {_line(mention.model_version, 64)}")
    if facts:
        lines.append(" | ".join(facts))
    when = _created(mention.created_at)
    stamp = f"{when:%Y-%m-%d %H:%M} UTC" if when else "unknown time"
    url = _line(mention.url, MAX_BUTTON_URL)
    lines.append(f"{stamp}" + (f" · {url}" if url else ""))
    return "\n".join(lines)


def render_summary(title: str, lines: list[str]) -> RenderedMessage:
    """A system message (health alert, storm summary): escaped, split within limits.

    Lines are packed into sections of at most 3,000 characters; past 50 blocks the rest is
    counted in an "… and N more" line.
    """
    limit = MAX_SECTION_TEXT
    sections: list[tuple[str, int]] = []  # (text, number of input lines in it)
    chunk: list[str] = []
    size = 0
    for line in lines:
        escaped = safe(line, limit)
        if not escaped:
            continue
        if chunk and size + 1 + len(escaped) > limit:
            sections.append(("\n".join(chunk), len(chunk)))
            chunk, size = [], 0
        size += len(escaped) + (1 if chunk else 0)
        chunk.append(escaped)
    if chunk:
        sections.append(("\n".join(chunk), len(chunk)))

    blocks: list[dict[str, Any]] = [
        {"type": "header", "block_id": "earshot_summary_h", "text": _plain(title, MAX_HEADER)}
    ]
    room = MAX_BLOCKS - len(blocks)
    if len(sections) > room:
        room -= 1  # keep one block for the "... and N more" line
    for index, (text, _count) in enumerate(sections[:room]):
        blocks.append(
            {"type": "section", "block_id": f"earshot_summary_{index}", "text": _mrkdwn(text)}
        )
    hidden = sum(count for _text, count in sections[room:])
    if hidden:
        blocks.append(
            {
                "type": "context",
                "block_id": "earshot_summary_more",
                "elements": [_mrkdwn(f"… and {hidden} more")],
            }
        )
    fallback = _safe_line(title, 300) or "earshot"
    first = next((line for line in lines if one_line(line)), None)
    if first is not None:
        fallback = f"{fallback}: {_safe_line(first, 1000)}"
    return RenderedMessage(text=fallback, blocks=blocks, metadata=None)


# -- Validation ---------------------------------------------------------------------------


def _text_problems(obj: Any, where: str, limit: int, kinds: tuple[str, ...]) -> list[str]:
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return [f"{where}: text object missing"]
    problems = []
    if obj.get("type") not in kinds:
        problems.append(f"{where}: text type {obj.get('type')!r} not in {kinds}")
    length = len(obj["text"])
    if length < 1:
        problems.append(f"{where}: empty text")
    elif length > limit:
        problems.append(f"{where}: text {length} > {limit}")
    return problems


_ANY_TEXT = ("plain_text", "mrkdwn")


def _button_problems(item: dict[str, Any], spot: str) -> list[str]:
    problems = _text_problems(item.get("text"), f"{spot}.text", MAX_BUTTON_TEXT, ("plain_text",))
    action_id = item.get("action_id")
    if action_id is not None and (not isinstance(action_id, str) or len(action_id) > MAX_ID):
        problems.append(f"{spot}: action_id longer than {MAX_ID}")
    for key, limit in (
        ("value", MAX_BUTTON_VALUE),
        ("url", MAX_BUTTON_URL),
        ("accessibility_label", MAX_ACCESSIBILITY_LABEL),
    ):
        if key in item and (not isinstance(item[key], str) or len(item[key]) > limit):
            problems.append(f"{spot}: {key} longer than {limit} (or not a string)")
    if item.get("style") not in (None, "primary", "danger"):
        problems.append(f"{spot}: unknown style {item.get('style')!r}")
    return problems


def _block_problems(block: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    kind = block.get("type")
    if kind == "header":
        problems += _text_problems(block.get("text"), where, MAX_HEADER, ("plain_text",))
    elif kind == "section":
        fields = block.get("fields")
        if "text" in block:
            problems += _text_problems(block["text"], where, MAX_SECTION_TEXT, _ANY_TEXT)
        elif not fields:
            problems.append(f"{where}: a section needs text or fields")
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
                problems.append(f"{where}: more than {MAX_FIELDS} fields")
            else:
                for j, item in enumerate(fields):
                    problems += _text_problems(
                        item, f"{where}.fields[{j}]", MAX_FIELD_TEXT, _ANY_TEXT
                    )
        accessory = block.get("accessory")
        if isinstance(accessory, dict) and accessory.get("type") == "button":
            problems += _button_problems(accessory, f"{where}.accessory")
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= MAX_CONTEXT_ELEMENTS:
            problems.append(f"{where}: a context needs 1..{MAX_CONTEXT_ELEMENTS} elements")
        else:
            for j, item in enumerate(elements):
                if isinstance(item, dict) and item.get("type") in _ANY_TEXT:
                    problems += _text_problems(
                        item, f"{where}.elements[{j}]", MAX_TEXT_OBJECT, _ANY_TEXT
                    )
    elif kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= MAX_ACTIONS:
            problems.append(f"{where}: an actions block needs 1..{MAX_ACTIONS} elements")
        else:
            action_ids: set[str] = set()
            primaries = 0
            for j, item in enumerate(elements):
                spot = f"{where}.elements[{j}]"
                if not isinstance(item, dict):
                    problems.append(f"{spot}: not an object")
                    continue
                action_id = item.get("action_id")
                if isinstance(action_id, str):
                    if action_id in action_ids:
                        problems.append(f"{spot}: duplicate action_id {action_id!r}")
                    action_ids.add(action_id)
                if item.get("type") == "button":
                    problems += _button_problems(item, spot)
                    primaries += item.get("style") == "primary"
            if primaries > 1:
                problems.append(f"{where}: more than one primary button")
    elif kind not in ("divider", "image", "rich_text", "input", "file", "video", "markdown"):
        problems.append(f"{where}: unknown block type {kind!r}")
    return problems


def validate_blocks(blocks: list[dict[str, Any]]) -> list[str]:
    """Check blocks against Slack's limits for a message; ``[]`` means valid.

    Checks: at most 50 blocks; unique ``block_id``s of at most 255 characters; header
    text plain_text 1..150; section text 1..3,000, at most 10 fields of 1..2,000; context
    1..10 elements, text 1..3,000; actions 1..25 elements with unique ``action_id``s;
    buttons with plain_text 1..75, ``action_id`` <= 255, ``value`` <= 2,000, ``url``
    <= 3,000, style ``primary``/``danger`` (one primary per block). Independent of the
    renderer: it is meant to catch the renderer's mistakes too.
    """
    if not isinstance(blocks, list):
        return ["blocks: not a list"]
    problems: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"blocks: {len(blocks)} > {MAX_BLOCKS}")
    block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        if not isinstance(block, dict):
            problems.append(f"{where}: not an object")
            continue
        if "block_id" in block:
            block_id = block["block_id"]
            if not isinstance(block_id, str) or not 1 <= len(block_id) <= MAX_ID:
                problems.append(f"{where}: block_id must be 1..{MAX_ID} characters")
            elif block_id in block_ids:
                problems.append(f"{where}: duplicate block_id {block_id!r}")
            else:
                block_ids.add(block_id)
        problems += _block_problems(block, where)
    return problems


def validate_message(message: dict[str, Any]) -> list[str]:
    """``validate_blocks`` plus the top-level ``text``: required, 1..4,000 characters."""
    problems = validate_blocks(message.get("blocks") or [])
    text = message.get("text")
    if not isinstance(text, str) or not text:
        problems.append("text: the fallback text is missing")
    elif len(text) > MAX_MESSAGE_TEXT:
        problems.append(f"text: {len(text)} > {MAX_MESSAGE_TEXT}")
    return problems


#: The ``block_id`` of a story's live line in its parent alert.
STORY_BLOCK = "earshot_story"


def story_line(mentions: int, sources: dict[str, dict[str, int]], own_source: str) -> str:
    """``Also on Reddit, Mastodon - 4 mentions`` (plain text): the other sources of a story,
    by name, and its mention count."""
    others = [source_name(s) for s in sorted(sources) if s != own_source]
    noun = "mention" if mentions == 1 else "mentions"
    if others:
        return f"Also on {', '.join(others)} - {mentions} {noun}"
    return f"{mentions} {noun} of this story"


def story_sentiment(sources: dict[str, dict[str, int]]) -> str:
    """A story's sentiment per source: ``Hacker News: 2 negative · Reddit: 1 positive``."""
    parts = []
    for source in sorted(sources):
        split = sorted(sources[source].items(), key=lambda item: (-item[1], item[0]))
        parts.append(f"{source_name(source)}: " + ", ".join(f"{n} {label}" for label, n in split))
    return " · ".join(parts)


def with_story(
    message: RenderedMessage, mentions: int, sources: dict[str, dict[str, int]], own_source: str
) -> RenderedMessage:
    """``message`` (an alert) with its story's live line: the count, the other sources and
    the sentiment per source, in a context block before the buttons (replacing an earlier
    one). Escaped and cut like every alert block."""
    line = story_line(mentions, sources, own_source)
    block = {
        "type": "context",
        "block_id": STORY_BLOCK,
        "elements": [
            _mrkdwn(f"🧵 *{safe(line, 500)}* (replies in the thread)"),
            _mrkdwn(safe(story_sentiment(sources), 2000) or " "),
        ],
    }
    blocks = [dict(b) for b in message.blocks if b.get("block_id") != STORY_BLOCK]
    at = next((i for i, b in enumerate(blocks) if b.get("type") == "actions"), len(blocks))
    blocks.insert(at, block)
    text = message.text.split("\n🧵 ", 1)[0]
    text = f"{text}\n🧵 {line}"[:MAX_MESSAGE_TEXT]
    return RenderedMessage(text=text, blocks=blocks[:MAX_BLOCKS], metadata=message.metadata)
