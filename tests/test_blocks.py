"""Block Kit rendering: escaping (Slack's documented cases), limits, hostile text, properties."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from earshot.listener.models import Label, Mention
from earshot.responders import blocks as B
from earshot.responders.blocks import (
    ACTION_APPROVE,
    ACTION_ASSIGN,
    ACTION_HANDLED,
    ACTION_NOT_RELEVANT,
    ACTION_OPEN,
    ACTION_REJECT,
    ACTION_REPLY,
    ACTION_SEND_TO_LEADS,
    ACTION_WRONG_SENTIMENT,
    RenderedMessage,
    clean_text,
    escape_mrkdwn,
    render_alert,
    render_summary,
    render_text,
    safe,
    truncate,
    validate_blocks,
    validate_message,
)

SLACK = Path(__file__).parent / "fixtures" / "slack"
ESCAPING = json.loads((SLACK / "mrkdwn" / "escaping_cases.json").read_text("utf-8"))
LIMITS = json.loads((SLACK / "block_kit" / "limits.json").read_text("utf-8"))["limits"]

WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
# The only <...> syntax the renderer writes itself.
DATE_TOKEN = re.compile(r"<!date\^-?\d+\^\{date_short_pretty\} \{time\}\|[^<>|]*>")


def make(**fields: Any) -> Mention:
    values: dict[str, Any] = {
        "source": "hackernews",
        "external_id": "1",
        "url": "https://news.ycombinator.com/item?id=1",
        "author": "alice",
        "title": "Acme keeps crashing",
        "text": "It crashed twice today.\nI want a refund.",
        "created_at": WHEN,
        "sentiment_label": "negative",
        "sentiment_score": -0.7,
        "sentiment_reasons": ["crashes", "refund"],
        "matched_query": '"acme"',
        "id": 42,
    }
    values.update(fields)
    return Mention(**values)


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value (dict values, list items; not keys)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def text_objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if value.get("type") in ("mrkdwn", "plain_text"):
            yield value
        for item in value.values():
            yield from text_objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from text_objects(item)


def as_message(message: RenderedMessage) -> dict[str, Any]:
    return {"text": message.text, "blocks": message.blocks}


def assert_valid(message: RenderedMessage) -> None:
    assert validate_blocks(message.blocks) == []
    assert validate_message(as_message(message)) == []
    # JSON-serialisable and valid UTF-8 (no lone surrogates survive).
    json.dumps(as_message(message), ensure_ascii=False).encode("utf-8")
    json.dumps(message.metadata)
    # slack_sdk's own models accept every block (they check the limits they know).
    for block in message.blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.to_dict()


def assert_no_markup_from_user(message: RenderedMessage) -> None:
    """No ``<`` or ``>`` except the renderer's own date token and quote markers."""
    for block in message.blocks:
        for item in text_objects(block):
            if item["type"] == "mrkdwn":
                assert item.get("verbatim") is True, item
            text = DATE_TOKEN.sub("", item["text"])
            assert "<" not in text, text
            if block["type"] == "section":
                # Quote markers: a ">" at the start of a line, written by the renderer.
                text = re.sub(r"(?m)^>", "", text)
            assert ">" not in text, text
        for value in strings(block):
            assert "<" not in DATE_TOKEN.sub("", value), value
    assert "<" not in message.text and ">" not in message.text


def section(message: RenderedMessage) -> str:
    return next(b for b in message.blocks if b["type"] == "section")["text"]["text"]


def context(message: RenderedMessage) -> list[str]:
    block = next(b for b in message.blocks if b["type"] == "context")
    return [e["text"] for e in block["elements"]]


def buttons(message: RenderedMessage) -> list[dict[str, Any]]:
    return [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]]


# -- Escaping: Slack's documented rule -------------------------------------------------------


@pytest.mark.parametrize("case", ESCAPING["cases"], ids=lambda c: c["input"][:30])
def test_escaping_cases(case: dict[str, Any]) -> None:
    assert escape_mrkdwn(case["input"]) == case["escaped"]


@pytest.mark.parametrize("case", ESCAPING["cases"], ids=lambda c: c["input"][:30])
@pytest.mark.parametrize("where", ["author", "title", "text"])
def test_escaping_cases_in_rendered_alerts(case: dict[str, Any], where: str) -> None:
    message = render_alert(make(**{where: case["input"]}), interactive=True)
    assert case["escaped"] in section(message)
    obj = message.blocks[1]["text"]
    for key, value in case.get("required_text_object", {"verbatim": True}).items():
        assert obj[key] == value
    assert_no_markup_from_user(message)
    assert_valid(message)


def test_escape_rule_matches_fixture_and_is_not_double_applied() -> None:
    assert ESCAPING["rule"] == {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
    assert escape_mrkdwn("&lt;") == "&amp;lt;"
    assert escape_mrkdwn("é ☃ \"quotes\" 'single'") == "é ☃ \"quotes\" 'single'"


@pytest.mark.parametrize("syntax", ESCAPING["app_written_syntax"]["special_mentions"])
def test_special_mentions_in_every_field_are_escaped(syntax: str) -> None:
    mention = make(
        author=syntax,
        title=syntax,
        text=syntax,
        matched_query=syntax,
        sentiment_reasons=[syntax],
        site=syntax,
    )
    message = render_alert(mention, interactive=True, product=syntax)
    assert_no_markup_from_user(message)
    assert escape_mrkdwn(syntax) in section(message)


def test_pings_and_links_never_survive() -> None:
    hostile = "<!channel> <@U123> <!here|here> <!subteam^X> <#C1> <https://evil|label>"
    mention = make(
        author=f"<!channel> <@U123> {hostile}",
        title=f"<!channel> and <@U123> {hostile}",
        text=f"hi <!channel> <@U123>\n{hostile}",
        url="https://example.com/a|b>c",
    )
    message = render_alert(mention, idempotency_key="k1", interactive=True, product="Acme")
    everything = [*strings(message.blocks), message.text]
    for value in everything:
        assert "<!" not in DATE_TOKEN.sub("", value)
        assert "<@" not in value and "<#" not in value and "<http" not in value
    assert "&lt;!channel&gt;" in section(message)
    assert "&lt;@U123&gt;" in section(message)
    assert "&lt;!channel&gt;" in message.text
    assert_no_markup_from_user(message)
    assert_valid(message)


def test_post_url_only_in_the_button() -> None:
    url = "https://example.com/post?id=1|evil>x&y=<2>"
    message = render_alert(make(url=url))
    (button,) = buttons(message)
    assert button["action_id"] == ACTION_OPEN
    assert button["url"] == "https://example.com/post?id=1|evil%3Ex&y=%3C2%3E"
    for item in text_objects(message.blocks):
        assert "example.com" not in item["text"]


@pytest.mark.parametrize(
    "url",
    [
        "",
        "javascript:alert(1)",
        "ftp://example.com/x",
        "https://",
        "//example.com/x",
        "https://exa mple.com/",
        "https://example.com/\nx",
        "https://example.com/" + "a" * 3000,
        "data:text/html,<b>x</b>",
    ],
)
def test_no_button_for_unusable_urls(url: str) -> None:
    message = render_alert(make(url=url))
    assert buttons(message) == []
    assert all(b["type"] != "actions" for b in message.blocks)
    assert_valid(message)


def test_url_non_ascii_is_encoded() -> None:
    (button,) = buttons(render_alert(make(url="https://bücher.example/é?q=日本")))
    assert button["url"] == "https://xn--bcher-kva.example/%C3%A9?q=%E6%97%A5%E6%9C%AC"
    assert button["url"].isascii()


# -- Layout ---------------------------------------------------------------------------------


def test_negative_alert_layout() -> None:
    message = render_alert(make(), idempotency_key="alert:42", interactive=True)
    assert [b["type"] for b in message.blocks] == ["header", "section", "context", "actions"]
    header = message.blocks[0]["text"]
    assert header == {
        "type": "plain_text",
        "text": "🔴 Negative mention on Hacker News",
        "emoji": True,
    }
    assert section(message) == (
        "*alice* · *Acme keeps crashing*\n>It crashed twice today.\n>I want a refund."
    )
    ctx = context(message)
    assert ctx[0] == "*Hacker News*"
    assert 'query: `"acme"`' in ctx
    assert "sentiment: *negative* (-0.70) · drove it: crashes, refund" in ctx
    unix = int(WHEN.timestamp())
    assert ctx[-1] == f"<!date^{unix}^{{date_short_pretty}} {{time}}|2026-03-04 05:06 UTC>"
    assert [(b["action_id"], b.get("style"), b.get("value")) for b in buttons(message)] == [
        (ACTION_OPEN, None, None),
        (ACTION_REPLY, None, "42"),
        (ACTION_ASSIGN, None, "42"),
        (ACTION_HANDLED, "primary", "42"),
        (ACTION_NOT_RELEVANT, None, "42"),
        (ACTION_WRONG_SENTIMENT, None, "42"),
    ]
    assert [b["text"]["text"] for b in buttons(message)] == [
        "Open post",
        "Reply",
        "Assign to me",
        "Handled",
        "Not relevant",
        "Wrong sentiment",
    ]
    assert message.metadata == {
        "event_type": "earshot_alert",
        "event_payload": {"mention_id": 42, "key": "alert:42"},
    }
    ids = [b["block_id"] for b in message.blocks]
    assert len(set(ids)) == len(ids) and all("42" in i for i in ids)
    assert message.text.startswith("🔴 Negative mention on Hacker News by alice")
    assert_valid(message)


def test_positive_alert_buttons() -> None:
    mention = make(sentiment_label=Label.POSITIVE.value, sentiment_score=0.81)
    message = render_alert(mention, interactive=True)
    assert message.blocks[0]["text"]["text"] == "🟢 Positive mention on Hacker News"
    assert [(b["action_id"], b.get("style"), b.get("value")) for b in buttons(message)] == [
        (ACTION_OPEN, None, None),
        (ACTION_REPLY, None, "42"),
        (ACTION_APPROVE, "primary", "42"),
        (ACTION_REJECT, "danger", "42"),
        (ACTION_WRONG_SENTIMENT, None, "42"),
        (ACTION_SEND_TO_LEADS, None, "42"),
    ]
    assert [b["text"]["text"] for b in buttons(message)][1:] == [
        "Reply",
        "Approve for amplification",
        "Reject",
        "Wrong sentiment",
        "Send to leads",
    ]
    assert any("(+0.81)" in c for c in context(message))
    assert_valid(message)


@pytest.mark.parametrize("label", [label.value for label in Label])
def test_every_alert_keeps_its_buttons_within_block_kit_limits(label: str) -> None:
    # The widest alert: a link, every button of its label; ids unique, one primary button.
    mention = make(sentiment_label=label, url="https://example.com/" + "p" * 2900)
    message = render_alert(mention, interactive=True, idempotency_key="alert:42")
    assert_valid(message)
    (actions,) = [b for b in message.blocks if b["type"] == "actions"]
    ids = [e["action_id"] for e in actions["elements"]]
    assert len(ids) == len(set(ids)) <= B.MAX_ACTIONS
    assert sum(e.get("style") == "primary" for e in actions["elements"]) == 1
    assert ACTION_WRONG_SENTIMENT in ids  # every alert can be corrected
    assert (ACTION_SEND_TO_LEADS in ids) == (label == Label.POSITIVE)
    # validate_blocks would catch the new buttons going wrong: a doubled id, a 26th element.
    doubled = {**actions, "elements": [*actions["elements"], actions["elements"][-1]]}
    assert any("duplicate action_id" in p for p in validate_blocks([doubled]))
    many = [{**actions["elements"][-1], "action_id": f"x{i}"} for i in range(B.MAX_ACTIONS + 1)]
    assert any("1..25 elements" in p for p in validate_blocks([{**actions, "elements": many}]))


def test_review_with_rating() -> None:
    mention = make(source="appstore", rating=2, title="Meh", sentiment_reasons=[])
    message = render_alert(mention)
    assert message.blocks[0]["text"]["text"] == "⭐ 2/5 App Store review"
    assert "★★☆☆☆ 2/5" in context(message)
    assert not any("drove it" in c for c in context(message))


def test_not_interactive_or_no_id_means_only_the_link() -> None:
    assert [b["action_id"] for b in buttons(render_alert(make()))] == [ACTION_OPEN]
    no_id = render_alert(make(id=None, external_id="abc/1"), interactive=True)
    assert [b["action_id"] for b in buttons(no_id)] == [ACTION_OPEN]
    assert no_id.blocks[0]["block_id"] == "earshot_h_abc_1"


def test_no_metadata_without_key_and_product_in_fallback() -> None:
    message = render_alert(make(), product="Acme & Co")
    assert message.metadata is None
    assert message.text.startswith("Acme &amp; Co: 🔴 Negative mention")


def test_minimal_mention() -> None:
    mention = Mention(source="reddit", external_id="x", created_at=WHEN)
    message = render_alert(mention, interactive=True)
    assert message.blocks[0]["text"]["text"] == "⚪ Mention on Reddit"
    assert section(message) == "*someone*"
    assert_valid(message)
    assert render_text(mention).startswith("⚪ Mention on Reddit\nby someone on Reddit")


def test_naive_created_at_is_utc() -> None:
    naive = render_alert(make(created_at=WHEN.replace(tzinfo=None)))
    other_zone = render_alert(make(created_at=WHEN.astimezone(timezone(timedelta(hours=-5)))))
    assert context(naive)[-1] == context(other_zone)[-1] == context(render_alert(make()))[-1]


def test_mrkdwn_gt_in_text_cannot_break_out_of_the_quote() -> None:
    text = "first\n> fake quote\n<!channel>\n\n\n\n\n\nlast"
    body = section(render_alert(make(text=text)))
    lines = body.split("\n")[1:]
    assert all(line.startswith(">") for line in lines)
    assert ">&gt; fake quote" in lines
    assert lines.count(">") == 2  # more than two blank lines collapse to two


def test_excerpt_is_cut() -> None:
    message = render_alert(make(text="word " * 2000))
    assert section(message).endswith("…")
    assert len(section(message)) < B.EXCERPT_CHARS + 100


# -- Hostile and huge text -------------------------------------------------------------------


HOSTILE_TEXT = (
    "emoji 👩‍👩‍👧‍👦 🇫🇷🇩🇪 👍🏽 CJK 日本語のテキスト 한국어 RTL עברית العربية "
    "zero\u200bwidth\u2060\ufeff bidi \u202eevil\u202c e\u0301 "
    + b"bad \xff\xfe bytes".decode("utf-8", errors="surrogateescape")
    + " \ud800 lone \x00\x07\x1b[31m ansi \x7f"
)


def test_huge_and_hostile_mention_is_valid() -> None:
    mention = make(
        text=(HOSTILE_TEXT + "&<>\n") * (1_000_000 // len(HOSTILE_TEXT)),
        title=("T&<" + HOSTILE_TEXT) * (10_000 // len(HOSTILE_TEXT)),
        author=("<@U1>" * 100)[:500],
        matched_query="q" * 500,
        sentiment_reasons=["r&" * 500] * 50,
        site="s" * 1000,
        language="x" * 100,
        url="https://example.com/" + "a" * 2900,
    )
    assert len(mention.text) > 900_000
    message = render_alert(mention, idempotency_key="k" * 255, interactive=True, product="P")
    assert_valid(message)
    assert_no_markup_from_user(message)
    assert len(section(message)) <= 3000
    assert len(message.text) <= 4000
    everything = json.dumps(as_message(message), ensure_ascii=False)
    for gone in ("\u200b", "\u2060", "\ufeff", "\u202e", "\x00", "\x1b", "\x7f", "\ud800"):
        assert gone not in everything
    for kept in ("👩‍👩‍👧‍👦", "🇫🇷", "👍🏽", "日本語", "עברית", "e\u0301"):
        assert kept in everything
    plain = render_text(mention)
    assert "\x1b" not in plain and "\ud800" not in plain
    plain.encode("utf-8")


def test_clean_text() -> None:
    raw = b"caf\xc3\xa9 \xff ok".decode("utf-8", errors="surrogateescape")
    assert clean_text(raw) == "café  ok"
    assert clean_text("a\x00b\x1b[0mc\x7fd\u0085e") == "ab[0mcd\ne"
    assert clean_text("a\r\nb\rc\u2028d") == "a\nb\nc\nd"
    assert clean_text("a\n\n\n\n\n\nb") == "a\n\n\nb"
    assert clean_text("a\n \t\n\n  \n\n\nb") == "a\n\n\nb"
    assert clean_text("a\n\n\nb") == "a\n\n\nb"
    assert clean_text("  \u200bzero\u200bwidth\ufeff\u2060 ") == "zerowidth"
    assert clean_text("\u202egnp.exe\u202c \u2066x\u2069") == "gnp.exe x"
    assert clean_text("tab\there") == "tab\there"
    assert clean_text(None) == ""
    assert clean_text(12) == "12"
    assert clean_text("non\ufffe\U0001ffffchar\ufdd0s") == "nonchars"


def test_clean_text_keeps_joiners_that_join() -> None:
    family = "👩\u200d👩\u200d👧"
    assert clean_text(family) == family
    assert clean_text("👩🏽\u200d💻") == "👩🏽\u200d💻"
    persian = "می\u200cخواهم"
    assert clean_text(persian) == persian
    assert clean_text("a\u200db \u200d x\u200c\u200cy \u200c") == "ab  xy"


def test_truncate() -> None:
    assert truncate("hello", 5) == "hello"
    assert truncate("hello world", 8) == "hello w…"
    assert truncate("hello world", 7) == "hello…"  # no trailing space before "…"
    assert truncate("hello", 0) == ""
    assert truncate("hello", 1) == "…"
    assert len(truncate("x" * 100, 10)) == 10


@pytest.mark.parametrize("limit", range(1, 20))
def test_truncate_never_splits_an_entity(limit: int) -> None:
    escaped = escape_mrkdwn("a&b<c>d&&<<>>e")
    cut = truncate(escaped, limit)
    assert len(cut) <= limit
    body = cut.removesuffix("…")
    assert escaped.startswith(body)
    # Every "&" in the cut text still starts a whole entity.
    for match in re.finditer("&", body):
        assert body.startswith(("&amp;", "&lt;", "&gt;"), match.start()), cut


@pytest.mark.parametrize(
    "text",
    ["ab👩\u200d👩\u200d👧xyz", "ab🇫🇷🇩🇪🇮🇹xyz", "abe\u0301\u0302xyz", "ab👍🏽xyz", "ab❤\ufe0fxyz"],
)
def test_truncate_never_splits_a_character_cluster(text: str) -> None:
    clusters = {"👩\u200d👩\u200d👧", "🇫🇷", "🇩🇪", "🇮🇹", "e\u0301\u0302", "👍🏽", "❤\ufe0f"}
    for limit in range(1, len(text)):
        body = truncate(text, limit).removesuffix("…")
        tail = text[len(body) :]
        # What was cut off never starts with a mark or joiner, and no half flag is kept.
        assert not tail or not B._extends(tail[0]), (limit, body)
        assert not body.endswith("\u200d")
        flags = len(re.findall("[\U0001f1e6-\U0001f1ff]", body))
        assert flags % 2 == 0
        assert any(body.endswith(c) for c in clusters) or body[-1:].isascii() or not body


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5, 6, 7, 10, 50])
def test_safe_fits_after_escaping(limit: int) -> None:
    for text in ["&&&&&&&&&&&&&&", "<<<<<<<<<<", "a&b<c>d" * 5, "plain text that is long"]:
        out = safe(text, limit)
        assert 1 <= len(out) <= limit
        assert "<" not in out and ">" not in out
        for match in re.finditer("&", out):
            assert out.startswith(("&amp;", "&lt;", "&gt;"), match.start())
    assert safe("abc", 0) == ""


# -- render_text ----------------------------------------------------------------------------


def test_render_text_is_plain() -> None:
    mention = make(
        title="Acme <!channel> & co",
        text="first\x1b[2J line\nsecond",
        rating=4,
        url="https://example.com/a|b",
    )
    text = render_text(mention)
    assert text.split("\n")[:3] == [
        "⭐ 4/5 Hacker News review",
        "by alice on Hacker News",
        "Acme <!channel> & co",
    ]
    assert "  > first[2J line\n  > second" in text
    assert "sentiment: negative (-0.70) | drove it: crashes, refund | rating: 4/5" in text
    assert 'query: "acme"' in text
    assert text.endswith("2026-03-04 05:06 UTC · https://example.com/a|b")
    assert "&lt;" not in text and "&amp;" not in text and "<!date" not in text
    assert "\x1b" not in text


# -- render_summary -------------------------------------------------------------------------


def test_summary_is_escaped() -> None:
    message = render_summary("Source <hackernews> failing", ["error: <!channel> & <@U1>"])
    assert message.blocks[0]["text"]["type"] == "plain_text"
    assert message.blocks[1]["text"] == {
        "type": "mrkdwn",
        "text": "error: &lt;!channel&gt; &amp; &lt;@U1&gt;",
        "verbatim": True,
    }
    assert (
        message.text
        == "Source &lt;hackernews&gt; failing: error: &lt;!channel&gt; &amp; &lt;@U1&gt;"
    )
    assert message.metadata is None
    assert_valid(message)


def test_summary_splits_and_caps() -> None:
    lines = [f"line {i} " + "x&" * 200 for i in range(2000)]
    message = render_summary("T" * 500, lines)
    assert_valid(message)
    assert len(message.blocks) == 50
    assert message.blocks[0]["text"]["text"].endswith("…")
    shown = sum(b["text"]["text"].count("\n") + 1 for b in message.blocks if b["type"] == "section")
    more = message.blocks[-1]
    assert more["type"] == "context"
    assert more["elements"][0]["text"] == f"… and {2000 - shown} more"


def test_summary_edge_cases() -> None:
    assert_valid(render_summary("", []))
    assert_valid(render_summary("Empty lines", ["", "  ", "\x00"]))
    one_huge = render_summary("Huge", ["<" * 100_000])
    assert_valid(one_huge)
    assert len(one_huge.blocks) == 2
    few = render_summary("Few", ["a", "b"])
    assert [b["type"] for b in few.blocks] == ["header", "section"]


# -- The validator itself -------------------------------------------------------------------


def button(**overrides: Any) -> dict[str, Any]:
    value = {"type": "button", "text": {"type": "plain_text", "text": "Go"}, "action_id": "a"}
    value.update(overrides)
    return value


def sec(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def test_limits_match_the_fixture() -> None:
    by_what = {limit["what"]: limit for limit in LIMITS}
    assert by_what["blocks per message"]["max"] == B.MAX_BLOCKS
    assert by_what["section.text length (chars)"]["max"] == B.MAX_SECTION_TEXT
    assert by_what["section.text length (chars)"]["min"] == 1
    assert by_what["section.fields items"]["max"] == B.MAX_FIELDS
    assert by_what["section.fields[].text length"]["max"] == B.MAX_FIELD_TEXT
    assert by_what["text object text length (any block)"]["max"] == B.MAX_TEXT_OBJECT
    assert by_what["header.text (plain_text) length"]["max"] == B.MAX_HEADER
    assert by_what["context.elements items"]["max"] == B.MAX_CONTEXT_ELEMENTS
    assert by_what["actions.elements items"]["max"] == B.MAX_ACTIONS
    assert by_what["block_id length"]["max"] == B.MAX_ID
    assert by_what["button.text (plain_text only) length"]["max"] == B.MAX_BUTTON_TEXT
    assert by_what["button.action_id length"]["max"] == B.MAX_ID
    assert by_what["button.value length"]["max"] == B.MAX_BUTTON_VALUE
    assert by_what["button.url length"]["max"] == B.MAX_BUTTON_URL
    assert by_what["button.accessibility_label length"]["max"] == B.MAX_ACCESSIBILITY_LABEL
    assert by_what["button.style"]["values"] == ["primary", "danger"]
    assert by_what["chat.postMessage top-level text: recommended"]["max"] == B.MAX_MESSAGE_TEXT


VIOLATIONS: dict[str, Any] = {
    "51 blocks": [sec("x") for _ in range(51)],
    "section 3001": [sec("x" * 3001)],
    "section empty": [sec("")],
    "section without text": [{"type": "section"}],
    "11 fields": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
    "field 2001": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
    "header 151": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
    "header mrkdwn": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}],
    "context 11": [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
    "context empty": [{"type": "context", "elements": []}],
    "context text 3001": [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c" * 3001}]}
    ],
    "actions 26": [{"type": "actions", "elements": [button(action_id=f"a{i}") for i in range(26)]}],
    "button text 76": [
        {"type": "actions", "elements": [button(text={"type": "plain_text", "text": "b" * 76})]}
    ],
    "button text mrkdwn": [
        {"type": "actions", "elements": [button(text={"type": "mrkdwn", "text": "b"})]}
    ],
    "button text empty": [
        {"type": "actions", "elements": [button(text={"type": "plain_text", "text": ""})]}
    ],
    "action_id 256": [{"type": "actions", "elements": [button(action_id="a" * 256)]}],
    "duplicate action_id": [{"type": "actions", "elements": [button(), button()]}],
    "value 2001": [{"type": "actions", "elements": [button(value="v" * 2001)]}],
    "url 3001": [{"type": "actions", "elements": [button(url="https://x/" + "u" * 2991)]}],
    "accessibility_label 76": [
        {"type": "actions", "elements": [button(accessibility_label="l" * 76)]}
    ],
    "bad style": [{"type": "actions", "elements": [button(style="danger-zone")]}],
    "two primary": [
        {
            "type": "actions",
            "elements": [button(style="primary"), button(action_id="b", style="primary")],
        }
    ],
    "block_id 256": [sec("x", block_id="b" * 256)],
    "duplicate block_id": [sec("x", block_id="same"), sec("y", block_id="same")],
    "accessory button 76": [
        sec("x", accessory=button(text={"type": "plain_text", "text": "b" * 76}))
    ],
    "unknown block": [{"type": "sectoin", "text": {"type": "mrkdwn", "text": "x"}}],
    "not a dict": ["section"],
}


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_validate_blocks_catches(name: str) -> None:
    problems = validate_blocks(VIOLATIONS[name])
    assert problems, name
    assert all(isinstance(p, str) for p in problems)


def test_validate_blocks_accepts_the_edges() -> None:
    ok = [
        sec("x" * 3000, block_id="b" * 255),
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2000}] * 10},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 10},
        {
            "type": "actions",
            "elements": [
                button(
                    action_id="a" * 255,
                    text={"type": "plain_text", "text": "b" * 75},
                    value="v" * 2000,
                    url="https://x/" + "u" * 2990,
                    style="primary",
                ),
                *[button(action_id=f"a{i}", style="danger") for i in range(24)],
            ],
        },
        {"type": "divider"},
    ]
    ok += [{"type": "divider"}] * (50 - len(ok))
    assert validate_blocks(ok) == []
    assert validate_message({"text": "t" * 4000, "blocks": ok}) == []


def test_validate_message_checks_the_text() -> None:
    assert validate_message({"text": "t" * 4001, "blocks": []})
    assert validate_message({"text": "", "blocks": []})
    assert validate_message({"blocks": [sec("x")]})
    assert validate_message({"text": "ok", "blocks": [sec("x" * 3001)]})


# -- Properties -----------------------------------------------------------------------------

TOKENS = st.sampled_from(
    [
        "<!channel>",
        "<!here|here>",
        "<@U123>",
        "<!subteam^X>",
        "<#C1>",
        "<https://evil|label>",
        "<!date^1^{date}|x>",
        "&amp;",
        "&",
        "<",
        ">",
        "|",
        "`",
        "*",
        "\n",
        "\n\n\n\n",
        "\r",
        "\u200d",
        "\u200c",
        "\u200b",
        "\u202e",
        "👩\u200d💻",
        "🇫🇷",
        "e\u0301",
        "\ud800",
        "\udcff",
        "\x00",
        "\x1b",
        "日本",
        "עברית",
        "@here",
    ]
)
ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
TEXT = st.lists(st.one_of(TOKENS, st.text(ANY_CHAR, max_size=20)), max_size=30).map("".join)
BIG_TEXT = st.one_of(TEXT, TEXT.map(lambda t: t * 500))
URLS = st.one_of(
    TEXT,
    st.builds(lambda t: f"https://example.com/{t}", TEXT),
    st.builds(lambda t: f"http://{t}.example/x", TEXT),
    st.just("https://example.com/" + "a" * 3100),
)
LABELS = st.one_of(st.none(), st.sampled_from([label.value for label in Label]), TEXT)
SCORES = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
TIMES = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.timezones()
) | st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1))


@st.composite
def mentions(draw: st.DrawFn) -> Mention:
    return Mention(
        id=draw(st.one_of(st.none(), st.integers(min_value=1, max_value=2**63))),
        source=draw(st.one_of(st.sampled_from(["hackernews", "reddit", "appstore"]), TEXT)),
        external_id=draw(TEXT),
        url=draw(URLS),
        author=draw(TEXT),
        site=draw(TEXT),
        title=draw(BIG_TEXT),
        text=draw(BIG_TEXT),
        created_at=draw(TIMES),
        rating=draw(st.one_of(st.none(), st.integers(min_value=1, max_value=5))),
        language=draw(st.one_of(st.none(), TEXT)),
        matched_query=draw(st.one_of(st.none(), TEXT)),
        sentiment_label=draw(LABELS),
        sentiment_score=draw(SCORES),
        sentiment_reasons=draw(st.lists(TEXT, max_size=12)),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mention=mentions(),
    interactive=st.booleans(),
    key=st.one_of(st.none(), st.text(max_size=255)),
    product=TEXT,
)
def test_render_alert_properties(
    mention: Mention, interactive: bool, key: str | None, product: str
) -> None:
    message = render_alert(mention, idempotency_key=key, interactive=interactive, product=product)
    assert_valid(message)
    assert_no_markup_from_user(message)
    for item in text_objects(message.blocks):
        assert item["text"].strip(), item
    assert message.text.strip()
    ids = [b["block_id"] for b in message.blocks]
    assert len(set(ids)) == len(ids)
    if interactive and mention.id is not None:
        assert {b.get("value") for b in buttons(message)} - {None} == {str(mention.id)}
    plain = render_text(mention)
    plain.encode("utf-8")
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", plain)


@settings(max_examples=100, deadline=None)
@given(title=TEXT, lines=st.lists(BIG_TEXT, max_size=80))
def test_render_summary_properties(title: str, lines: list[str]) -> None:
    message = render_summary(title, lines)
    assert_valid(message)
    for block in message.blocks[1:]:
        for item in text_objects(block):
            assert "<" not in item["text"] and ">" not in item["text"]
    assert "<" not in message.text and ">" not in message.text


@settings(max_examples=300, deadline=None)
@given(text=TEXT, limit=st.integers(min_value=1, max_value=60))
def test_safe_and_truncate_properties(text: str, limit: int) -> None:
    out = safe(text, limit)
    assert len(out) <= limit
    assert "<" not in out and ">" not in out
    for match in re.finditer("&", out):
        assert out.startswith(("&amp;", "&lt;", "&gt;"), match.start())
    escaped = escape_mrkdwn(clean_text(text))
    cut = truncate(escaped, limit)
    assert len(cut) <= limit
    assert escaped.startswith(cut.removesuffix("…").rstrip())
    for match in re.finditer("&", cut):
        assert cut.startswith(("&amp;", "&lt;", "&gt;"), match.start())


# -- What the classifier understood: intents, confidence, model -----------------------------


def test_alert_shows_intents_confidence_and_model() -> None:
    mention = make(
        sentiment_label="negative",
        sentiment_score=-0.62,
        sentiment_reasons=["charged twice"],
        sentiment_confidence=0.8712,
        intents=["billing", "churn_risk", "feature_request"],
        model_version="meaning-2026.12",
    )
    message = render_alert(mention, interactive=True, idempotency_key="alert:42")
    assert_valid(message)
    parts = context(message)
    assert "sentiment: *negative 0.87* · drove it: charged twice" in parts
    assert "intent: billing, churn risk, feature request" in parts
    assert parts[-2] == "model: meaning-2026.12" and parts[-1].startswith("<!date^")
    text = render_text(mention)
    assert "sentiment: negative 0.87 | drove it: charged twice" in text
    assert "intent: billing, churn risk, feature request" in text
    assert "model: meaning-2026.12" in text


def test_alert_without_the_meaning_fields_looks_as_before() -> None:
    message = render_alert(make(sentiment_label="negative", sentiment_score=-0.62))
    parts = context(message)
    assert any(p.startswith("sentiment: *negative* (-0.62)") for p in parts)
    assert not any(p.startswith(("intent:", "model:")) for p in parts)
    # A confidence that is not a probability is not shown; the score is.
    odd = make(sentiment_label="negative", sentiment_score=-0.62, sentiment_confidence=7.0)
    assert any(p.startswith("sentiment: *negative* (-0.62)") for p in context(render_alert(odd)))


def test_intents_and_model_are_escaped_and_cut() -> None:
    mention = make(
        sentiment_label="mixed",
        sentiment_confidence=0.5,
        intents=["<!channel>", "bug&<@U1>" * 40, *["spam"] * 20],
        model_version="<https://evil|x>" + "m" * 200,
    )
    message = render_alert(mention, interactive=True, idempotency_key="alert:42")
    assert_valid(message)
    joined = "\n".join(context(message))
    assert "<!channel>" not in joined and "<@U1>" not in joined and "<https://evil" not in joined
    assert "&lt;!channel&gt;" in joined
    (intents,) = [p for p in context(message) if p.startswith("intent:")]
    assert intents.count("spam") == 8  # ten tags at most
    (model,) = [p for p in context(message) if p.startswith("model:")]
    assert len(model) <= len("model: ") + 64


def test_a_positive_complaint_gets_the_lead_buttons() -> None:
    praise = make(sentiment_label="positive", intents=["praise"])
    complaint = make(sentiment_label="positive", intents=["praise", "churn_risk"])
    ids = [b["action_id"] for b in buttons(render_alert(praise, interactive=True))]
    assert ACTION_APPROVE in ids and ACTION_ASSIGN not in ids
    message = render_alert(complaint, interactive=True)
    assert_valid(message)
    ids = [b["action_id"] for b in buttons(message)]
    assert ACTION_ASSIGN in ids and ACTION_HANDLED in ids and ACTION_APPROVE not in ids
