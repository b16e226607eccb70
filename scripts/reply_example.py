"""Write docs/reply-example.png: the Reply modal and the stamped alert, drawn from the real
Block Kit JSON earshot sends to Slack (not a screenshot: Slack's own rendering differs).

    .venv/bin/python scripts/reply_example.py [OUTPUT.png]

A Bluesky complaint is stored and alerted in an in-memory SQLite; the modal is what
``responders/replies/slack.py`` opens for it (the template's draft, the platform's limit);
the reply is stored, sent to a stand-in writer, and the alert is re-rendered by
``responders/interactions.py`` with its trail, beside the note queued in its thread. The
drawing (Pillow, which matplotlib already brings) shows each block's text in order: header,
sections, inputs with their value and hint, context lines, buttons.
"""

from __future__ import annotations

import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from earshot.listener import workflow as wf  # noqa: E402
from earshot.listener.models import Delivery, Mention  # noqa: E402
from earshot.listener.store import Store  # noqa: E402
from earshot.responders.interactions import outcome_message  # noqa: E402
from earshot.responders.replies.base import Posted, Writer  # noqa: E402
from earshot.responders.replies.slack import pending_note, reply_view  # noqa: E402
from earshot.responders.replies.templates import Template, draft  # noqa: E402
from earshot.responders.replies.worker import ReplySender  # noqa: E402

WHEN = datetime(2026, 11, 30, 9, 14, tzinfo=UTC)


class StandIn(Writer):
    """Answers as Bluesky's createRecord does, without a network."""

    platform = "bluesky"

    def post(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted:
        did = "did:plc:acmeacmeacmeacme"
        return Posted(
            f"at://{did}/app.bsky.feed.post/3lcx2abcdefg2",
            f"https://bsky.app/profile/{did}/post/3lcx2abcdefg2",
            WHEN,
        )


def _plain(text: str) -> str:
    """Slack mrkdwn to readable text: links, user mentions, dates, emphasis; no emoji."""
    import re

    text = re.sub(r"<!date\^\d+\^[^|]*\|([^>]*)>", r"\1", text)
    text = re.sub(r"<(https?://[^|>]+)\|([^>]+)>", r"\2", text)
    text = re.sub(
        r"<@(U\w+)>", lambda m: "@" + {"U0LEAD": "bo", "U0APPR": "kim"}.get(m[1], m[1]), text
    )
    text = text.replace("*", "").replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&")
    return "".join(ch for ch in text if ord(ch) < 0x2190 or ch in "★☆")


def _lines(blocks: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(style, text) per line to draw, block by block."""
    out: list[tuple[str, str]] = []
    for block in blocks:
        kind = block["type"]
        if kind == "header":
            out.append(("bold", _plain(block["text"]["text"])))
        elif kind == "section":
            out += [("text", line) for line in _plain(block["text"]["text"]).split("\n")]
        elif kind == "context":
            out += [("small", _plain(e["text"])) for e in block["elements"]]
        elif kind == "input":
            out.append(("bold", block["label"]["text"]))
            value = block["element"].get("initial_value", "")
            out.append(("input", value or " "))
            if "hint" in block:
                out.append(("small", block["hint"]["text"]))
        elif kind == "actions":
            out.append(
                ("buttons", "   ".join(f"[ {e['text']['text']} ]" for e in block["elements"]))
            )
    return out


def _card(
    draw: ImageDraw.ImageDraw,
    x: int,
    y: int,
    width: int,
    title: str,
    lines: list[tuple[str, str]],
    fonts: dict[str, Any],
) -> int:
    top = y
    draw.text((x + 16, y + 12), title, font=fonts["title"], fill="#1d1c1d")
    y += 48
    chars = (width - 40) // 8
    for style, text in lines:
        for part in textwrap.wrap(text, chars) or [" "]:
            if style == "input":
                draw.rectangle((x + 16, y - 2, x + width - 16, y + 20), outline="#868686")
                draw.text((x + 22, y), part, font=fonts["text"], fill="#1d1c1d")
            else:
                color = {"small": "#616061", "buttons": "#1264a3"}.get(style, "#1d1c1d")
                draw.text(
                    (x + 16, y), part, font=fonts[style if style in fonts else "text"], fill=color
                )
            y += 22 if style != "small" else 19
        y += 4
    draw.rounded_rectangle((x, top, x + width, y + 12), radius=10, outline="#dddddd", width=2)
    return y + 12


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "reply-example.png"
    store = Store.from_url("sqlite://")
    store.create_schema()
    post = {
        "uri": "at://did:plc:customer/app.bsky.feed.post/3lcwzz2abcde2",
        "cid": "bafyreicustomer",
        "record": {"text": "acme notes ate my grocery list again"},
    }
    mention = Mention(
        source="bluesky",
        external_id=post["uri"],
        author="ana.bsky.social",
        url="https://bsky.app/profile/ana.bsky.social/post/3lcwzz2abcde2",
        text="acme notes ate my grocery list again. third time this week",
        created_at=WHEN,
        matched_query="acme notes",
        sentiment_label="negative",
        sentiment_confidence=0.93,
        intents=["bug"],
        raw=post,
    )
    store.ingest(None, [mention], None, lambda m: [("#cx-alerts", "alert")])
    templates = [
        Template(
            "Sorry {author}! A fix for lost lists is in 2.0.2, out today. {lead} from {product}",
            intent="bug",
        )
    ]
    text = draft(templates, mention, product="Acme Notes", lead="Bo")
    modal = reply_view(mention, text, writable=True, approval=True, where=(None, None))
    change = wf.draft_reply(
        store,
        mention.id or 0,
        key="reply:example",
        platform="bluesky",
        text=text,
        actor=wf.Actor("U0LEAD", "bo"),
        approval=True,
        alert=("C0ALERTS", "1764666840.000100"),
        note=pending_note,
        now=WHEN,
    )
    assert change.reply is not None
    wf.decide_reply(store, change.reply.id or 0, wf.Actor("U0APPR", "kim"), approve=True, now=WHEN)
    ReplySender(store, {"bluesky": StandIn()}).run_once()
    stamped = outcome_message(
        wf.get_mention(store, mention.id or 0) or mention,
        wf.events(store, mention.id or 0),
        product="Acme Notes",
    )
    from sqlmodel import Session, col, select

    with Session(store.engine) as session:
        notes = [
            d.payload["text"]
            for d in session.exec(
                select(Delivery).where(Delivery.kind == "thread_reply").order_by(col(Delivery.id))
            )
        ]

    regular = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    bold = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
    fonts = {
        "title": ImageFont.truetype(bold, 18),
        "bold": ImageFont.truetype(bold, 14),
        "text": ImageFont.truetype(regular, 14),
        "small": ImageFont.truetype(regular, 12),
        "buttons": ImageFont.truetype(bold, 13),
    }
    image = Image.new("RGB", (1240, 620), "white")
    draw = ImageDraw.Draw(image)
    modal_lines = [
        *_lines(modal["blocks"]),
        ("buttons", f"[ {modal['close']['text']} ]   [ {modal['submit']['text']} ]"),
    ]
    _card(draw, 20, 20, 560, modal["title"]["text"], modal_lines, fonts)
    y = _card(
        draw, 620, 20, 600, "#cx-alerts · the alert after the reply", _lines(stamped.blocks), fonts
    )
    thread = [("small", _plain(n)) for n in notes]
    _card(draw, 640, y + 16, 580, "Thread", thread, fonts)
    image.save(out)
    print(
        f"{out}: modal {len(modal['blocks'])} blocks, alert {len(stamped.blocks)} blocks, "
        f"{len(notes)} thread notes"
    )


if __name__ == "__main__":
    main()
