"""The Reply button, its modal, the approval note and what their clicks do.

``handle_reply_action`` and ``handle_reply_view`` are called by
``responders/interactions.py`` for the ``earshot_reply*`` action ids and views and return
the same ``Outcome`` the other handlers do; ``responders/slack_app.py`` carries it out
(the modal opens after the ack, on the follow-up executor; a submission is checked before
the ack, so what is wrong shows in the modal).

* **Reply** (``earshot_reply``, on every open alert): a modal with the draft from
  ``[[replies.templates]]``. Where earshot can write to the platform, "Send" (or "Ask for
  approval") stores the reply; the platform's limit is checked first, in its own unit.
  Elsewhere the modal shows the draft to copy and the link, and "I replied" records it.
* With ``[replies] require_approval``, a stored reply is a note in the alert's thread
  ("pending approval") with **Send**, **Edit** and **Reject** for the approvers; anyone
  else is told they cannot. The author is told in the thread what the approver did.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from earshot.listener import workflow as wf
from earshot.listener.models import Mention, Reply, ReplyStatus
from earshot.listener.store import Store

from .. import interactions as ix
from ..blocks import escape_mrkdwn, safe, source_name, truncate
from . import COPY_ONLY
from .base import ReplyFatal, Writer
from .limits import LIMITS, measure, problem
from .templates import Template, draft

logger = logging.getLogger("earshot.responders.replies")

ACTION_REPLY = "earshot_reply"
ACTION_SEND = "earshot_reply_send"
ACTION_EDIT = "earshot_reply_edit"
ACTION_REJECT = "earshot_reply_reject"
ACTIONS = frozenset({ACTION_REPLY, ACTION_SEND, ACTION_EDIT, ACTION_REJECT})
VIEW_SEND = "earshot_reply_view"
VIEW_COPY = "earshot_reply_copy_view"
VIEW_EDIT = "earshot_reply_edit_view"
VIEWS = frozenset({VIEW_SEND, VIEW_COPY, VIEW_EDIT})

#: Slack's plain_text_input holds at most 3,000 characters.
INPUT_MAX = 3000


@dataclass
class ReplyConfig:
    """What the reply handlers need from the settings and the wiring.

    * **writers** - platform -> writer, for the platforms earshot can post to.
    * **templates** - the drafts, in config order.
    * **require_approval** / **is_approver** - the second pair of eyes.
    """

    writers: dict[str, Writer] = field(default_factory=dict)
    templates: Sequence[Template] = ()
    require_approval: bool = False
    is_approver: Callable[[str], bool] = lambda _user: False

    def writer_for(self, mention: Mention) -> Writer | None:
        """The writer that can answer ``mention``, or ``None`` (copy and "I replied")."""
        if mention.source in COPY_ONLY:
            return None
        writer = self.writers.get(mention.source)
        if writer is None:
            return None
        try:
            writer.target(mention)
        except ReplyFatal:
            return None
        return writer


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:150] or " "}


def _limit_line(platform: str) -> str:
    limit = LIMITS.get(platform)
    if limit is None:
        return ""
    extra = ", links count 23" if limit.mastodon_counting else ""
    return f"{source_name(platform)} takes at most {limit.most:,} {limit.unit}{extra}."


def reply_view(
    mention: Mention,
    text: str,
    *,
    writable: bool,
    approval: bool,
    where: tuple[str | None, str | None],
) -> dict[str, Any]:
    """The Reply modal: the draft to edit and send, or to copy (``writable`` False)."""
    meta: dict[str, Any] = {"mention_id": mention.id}
    if where[0] and where[1]:
        meta.update(channel=where[0], ts=where[1])
    platform = source_name(mention.source)
    author = safe(mention.author or "someone", 200)
    quoted = safe(truncate(mention.body.replace("\n", " "), 300), 1500)
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*{author}* on {platform}:\n>{quoted}"},
        }
    ]
    if writable:
        note = _limit_line(mention.source)
        if approval:
            note += " An approver sends it: it waits in the alert's thread until then."
        blocks.append(
            {
                "type": "input",
                "block_id": "reply",
                "label": _plain(f"Your reply on {platform}"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "text",
                    "multiline": True,
                    "max_length": INPUT_MAX,
                    **({"initial_value": text[:INPUT_MAX]} if text else {}),
                },
                **({"hint": _plain(note.strip())} if note.strip() else {}),
            }
        )
        submit = "Ask for approval" if approval else "Send"
        callback = VIEW_SEND
    else:
        url = mention.url if mention.url.startswith(("https://", "http://")) else ""
        link = f"<{url}|Open the post>" if url and "|" not in url and ">" not in url else ""
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": (
                        f"earshot cannot post on {platform}. Copy the draft, answer there "
                        f"({link or 'the post has no link'}), then press *I replied*."
                    ),
                },
            }
        )
        blocks.append(
            {
                "type": "input",
                "block_id": "reply",
                "optional": True,
                "label": _plain("Draft to copy"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "text",
                    "multiline": True,
                    "max_length": INPUT_MAX,
                    **({"initial_value": text[:INPUT_MAX]} if text else {}),
                },
            }
        )
        blocks.append(
            {
                "type": "input",
                "block_id": "url",
                "optional": True,
                "label": _plain("Link to your reply (optional)"),
                "element": {"type": "url_text_input", "action_id": "url"},
            }
        )
        submit = "I replied"
        callback = VIEW_COPY
    return {
        "type": "modal",
        "callback_id": callback,
        "private_metadata": json.dumps(meta),
        "title": _plain("Reply to the customer"[:24]),
        "submit": _plain(submit),
        "close": _plain("Cancel"),
        "blocks": blocks,
    }


def edit_view(reply: Reply) -> dict[str, Any]:
    """The approver's modal: the pending reply's text to edit, then send."""
    return {
        "type": "modal",
        "callback_id": VIEW_EDIT,
        "private_metadata": json.dumps({"mention_id": reply.mention_id, "reply_id": reply.id}),
        "title": _plain("Edit and send"),
        "submit": _plain("Send"),
        "close": _plain("Cancel"),
        "blocks": [
            {
                "type": "input",
                "block_id": "reply",
                "label": _plain(f"Reply by {reply.author_name or reply.author_id}"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "text",
                    "multiline": True,
                    "max_length": INPUT_MAX,
                    "initial_value": reply.text[:INPUT_MAX],
                },
                "hint": _plain(_limit_line(reply.platform) or "Edit, then send."),
            }
        ],
    }


# -- notes in the alert's thread ---------------------------------------------------------


def _quote(text: str) -> str:
    return "\n".join(f">{line}" for line in safe(truncate(text, 1500), 2500).split("\n"))


def pending_note(reply: Reply) -> tuple[str, list[dict[str, Any]]]:
    """The approval request: the reply, stamped pending, with Send / Edit / Reject."""
    platform = source_name(reply.platform)
    text = (
        f"📝 Reply on {platform} by <@{reply.author_id}>, *pending approval*:\n{_quote(reply.text)}"
    )
    value = str(reply.id)
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "block_id": f"earshot_reply_{value}",
            "text": {"type": "mrkdwn", "text": text[:3000]},
        },
        {
            "type": "actions",
            "block_id": f"earshot_reply_a_{value}",
            "elements": [
                {
                    "type": "button",
                    "text": _plain("Send"),
                    "action_id": ACTION_SEND,
                    "value": value,
                    "style": "primary",
                },
                {
                    "type": "button",
                    "text": _plain("Edit"),
                    "action_id": ACTION_EDIT,
                    "value": value,
                },
                {
                    "type": "button",
                    "text": _plain("Reject"),
                    "action_id": ACTION_REJECT,
                    "value": value,
                    "style": "danger",
                },
            ],
        },
    ]
    return text, blocks


def decided_note(reply: Reply) -> str:
    """What the approver did, telling the author."""
    who = f"<@{reply.approver_id}>"
    if reply.status == ReplyStatus.REJECTED.value:
        return f"✋ <@{reply.author_id}>, your reply was rejected by {who}. Nothing was posted."
    return f"✅ <@{reply.author_id}>, your reply was approved by {who}; earshot is posting it."


def sent_note(reply: Reply) -> str:
    """The thread note once the platform holds the reply."""
    platform = source_name(reply.platform)
    url = reply.remote_url or ""
    link = f": <{url}|view the reply>" if url.startswith("http") and "|" not in url else ""
    approved = f", approved by <@{reply.approver_id}>" if reply.approver_id else ""
    return f"💬 Replied on {platform} by <@{reply.author_id}>{approved}{link}"


def trouble_note(status: ReplyStatus, error: str) -> Callable[[Reply], tuple[str, Any]]:
    """The thread note of a reply that failed, or whose fate is unknown."""

    def note(reply: Reply) -> tuple[str, Any]:
        platform = source_name(reply.platform)
        reason = escape_mrkdwn(error[:300])
        if status is ReplyStatus.UNCERTAIN:
            text = (
                f"⚠️ <@{reply.author_id}>, earshot cannot tell whether your reply reached "
                f"{platform} ({reason}) and {platform} cannot be asked, so it was *not posted "
                "again*. Check the post: if the reply is not there, press Reply again."
            )
        else:
            text = (
                f"⚠️ <@{reply.author_id}>, {platform} refused your reply: {reason}. Nothing was "
                "posted; press Reply to try again."
            )
        return text, None

    return note


# -- handlers ---------------------------------------------------------------------------


def handle_reply_action(
    store: Store,
    payload: dict[str, Any],
    config: ix.InteractionConfig,
    action: dict[str, Any],
    actor: wf.Actor,
    base: dict[str, Any],
) -> ix.Outcome:
    """A click on Reply, or on an approval note's Send / Edit / Reject."""
    replies = config.replies
    action_id = str(action.get("action_id") or "")
    if replies is None:
        text = "Replying from Slack is not set up in earshot ([replies] in the config)."
        return ix._count(ix.Outcome("reply", ok=False, ephemeral=text, **base), "disabled")
    if action_id == ACTION_REPLY:
        mention_id = ix._mention_id(action.get("value"))
        mention = wf.get_mention(store, mention_id)
        if mention is None:
            gone = "That mention is no longer stored in earshot. Nothing was changed."
            return ix._count(ix.Outcome("reply", ok=False, ephemeral=gone, **base), "missing")
        writer = replies.writer_for(mention)
        lead = actor.user_name or "the team"
        text = draft(replies.templates, mention, product=config.product, lead=lead)
        view = reply_view(
            mention,
            text,
            writable=writer is not None,
            approval=replies.require_approval,
            where=ix._where(store, mention_id, payload),
        )
        outcome = ix.Outcome("reply", view=view, trigger_id=payload.get("trigger_id"), **base)
        return ix._count(outcome, "opened")
    reply_id = ix._mention_id(action.get("value"))
    if not replies.is_approver(actor.user_id):
        text = "Only the reply approvers ([replies] approvers) can send, edit or reject a reply."
        return ix._count(ix.Outcome("reply_decide", ok=False, ephemeral=text, **base), "forbidden")
    reply = wf.get_reply(store, reply_id)
    if reply is None:
        gone = "That reply is no longer stored in earshot."
        return ix._count(ix.Outcome("reply_decide", ok=False, ephemeral=gone, **base), "missing")
    if action_id == ACTION_EDIT:
        if reply.status != ReplyStatus.PENDING_APPROVAL.value:
            text = f"That reply is {reply.status.replace('_', ' ')} already."
            return ix._count(ix.Outcome("reply_decide", ephemeral=text, **base), "already")
        outcome = ix.Outcome(
            "reply_edit", view=edit_view(reply), trigger_id=payload.get("trigger_id"), **base
        )
        return ix._count(outcome, "opened")
    click = str(action.get("action_ts") or "")
    approve = action_id == ACTION_SEND
    change = wf.decide_reply(
        store,
        reply_id,
        actor,
        approve=approve,
        dedupe_key=f"reply_decide:{reply_id}:{actor.user_id}:{click}" if click else None,
        note=decided_note,
    )
    return _decided(change, payload, base)


def _decided(change: wf.ReplyChange, payload: dict[str, Any], base: dict[str, Any]) -> ix.Outcome:
    if change.duplicate:
        return ix._count(ix.Outcome("reply_decide", **base), "redelivery")
    if not change.changed or change.reply is None:
        text = change.problem or "Nothing was changed."
        return ix._count(ix.Outcome("reply_decide", ephemeral=text, **base), "already")
    reply = change.reply
    channel, ts = ix._clicked(payload)
    note, _blocks = pending_note(reply)
    verdict = "sent" if reply.status == ReplyStatus.QUEUED.value else "rejected"
    stamp = f"{note.split(chr(10), 1)[0].replace('*pending approval*', verdict)}\n"
    stamp += _quote(reply.text) + f"\n_{verdict.capitalize()} by <@{reply.approver_id}>_"
    message = ix.RenderedMessage(
        text=stamp[:3000],
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": stamp[:3000]}}],
    )
    outcome = ix.Outcome(
        "reply_decide", changed=True, update=message, channel=channel, ts=ts, **base
    )
    return ix._count(outcome, verdict)


def handle_reply_view(
    store: Store,
    payload: dict[str, Any],
    config: ix.InteractionConfig,
    view: dict[str, Any],
    meta: dict[str, Any],
    actor: wf.Actor,
) -> ix.Outcome:
    """A submitted Reply modal (send, or "I replied"), or an approver's edit."""
    replies = config.replies
    callback = view.get("callback_id")
    text = str(ix._state_value(view, "reply", "text") or "").strip()
    if replies is None:
        return ix._count(
            ix.Outcome("reply", ok=False, errors={"reply": "Replying is not set up."}), "disabled"
        )
    if callback == VIEW_EDIT:
        return _edited(store, replies, view, meta, actor, text)
    mention_id = ix._mention_id(meta.get("mention_id"))
    mention = wf.get_mention(store, mention_id)
    if mention is None:
        gone = {"reply": "That mention is no longer stored."}
        return ix._count(ix.Outcome("reply", ok=False, errors=gone), "missing")
    clicked = (meta.get("channel"), meta.get("ts"))
    where = (str(clicked[0]), str(clicked[1])) if all(clicked) else (None, None)
    key = f"reply:{mention_id}:{view.get('id')}"
    if callback == VIEW_COPY:
        url = str(ix._state_value(view, "url", "url") or "").strip() or None
        if url is not None and not url.startswith(("https://", "http://")):
            return ix._count(
                ix.Outcome("replied", ok=False, errors={"url": "A link starts with https://."}),
                "invalid",
            )
        change = wf.record_manual_reply(
            store,
            mention_id,
            key=key,
            platform=mention.source,
            text=text,
            actor=actor,
            url=url,
            alert=where,
        )
        kind = "replied"
    else:
        writer = replies.writer_for(mention)
        if writer is None:
            errors = {"reply": f"earshot cannot post on {source_name(mention.source)} any more."}
            return ix._count(ix.Outcome("reply", ok=False, errors=errors), "unwritable")
        wrong = problem(mention.source, text)
        if wrong:
            return ix._count(ix.Outcome("reply", ok=False, errors={"reply": wrong}), "too_long")
        change = wf.draft_reply(
            store,
            mention_id,
            key=key,
            platform=mention.source,
            text=text,
            actor=actor,
            approval=replies.require_approval,
            alert=where,
            note=pending_note if replies.require_approval else None,
        )
        kind = "reply"
    if change.duplicate:
        return ix._count(ix.Outcome(kind, user_id=actor.user_id), "redelivery")
    if not change.changed:
        errors = {"reply": change.problem or "Nothing was changed."}
        return ix._count(ix.Outcome(kind, ok=False, errors=errors), "refused")
    fresh = wf.get_mention(store, mention_id) or mention
    message, channel, ts = ix._updated(store, fresh, {}, config, where)
    outcome = ix.Outcome(
        kind, changed=True, user_id=actor.user_id, update=message, channel=channel, ts=ts
    )
    return ix._count(outcome, "stored")


def _edited(
    store: Store,
    replies: ReplyConfig,
    view: dict[str, Any],
    meta: dict[str, Any],
    actor: wf.Actor,
    text: str,
) -> ix.Outcome:
    if not replies.is_approver(actor.user_id):
        errors = {"reply": "Only the reply approvers can send a reply."}
        return ix._count(ix.Outcome("reply_edit", ok=False, errors=errors), "forbidden")
    reply_id = ix._mention_id(meta.get("reply_id"))
    reply = wf.get_reply(store, reply_id)
    if reply is None:
        return ix._count(
            ix.Outcome("reply_edit", ok=False, errors={"reply": "That reply is gone."}), "missing"
        )
    wrong = problem(reply.platform, text)
    if wrong:
        return ix._count(ix.Outcome("reply_edit", ok=False, errors={"reply": wrong}), "too_long")
    change = wf.decide_reply(
        store,
        reply_id,
        actor,
        approve=True,
        text=text,
        dedupe_key=f"reply_edit:{reply_id}:{view.get('id')}",
        note=decided_note,
    )
    if change.duplicate:
        return ix._count(ix.Outcome("reply_edit", user_id=actor.user_id), "redelivery")
    if not change.changed:
        errors = {"reply": change.problem or "Nothing was changed."}
        return ix._count(ix.Outcome("reply_edit", ok=False, errors=errors), "already")
    return ix._count(ix.Outcome("reply_edit", changed=True, user_id=actor.user_id), "sent")


def alert_updater(
    client: Any, store: Store, config: ix.InteractionConfig
) -> Callable[[Reply], None]:
    """After a reply is sent: re-render its alert ("Replied by @lead, link", no buttons)."""

    def update(reply: Reply) -> None:
        mention = wf.get_mention(store, reply.mention_id)
        if mention is None:
            return
        where = (reply.alert_channel, reply.alert_ts)
        message, channel, ts = ix._updated(store, mention, {}, config, where)
        if channel and ts:
            client.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks)

    return update


def length(platform: str, text: str) -> int:
    """``text``'s length on ``platform`` in its unit (characters when it has no limit)."""
    limit = LIMITS.get(platform)
    return measure(text, limit) if limit is not None else len(text)
