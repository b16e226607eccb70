"""What a click, a modal submission or ``/earshot`` does, without Slack or Bolt.

Each handler takes the parsed Slack payload and the ``Store`` and returns an ``Outcome``:
the state change is already stored (through ``earshot.listener.workflow``, audited and
idempotent); the outcome says what to show in Slack (``chat.update`` of the alert, an
ephemeral reply, a modal to open). ``responders/slack_app.py`` carries that out. Bad input
(unknown action, malformed payload, a mention that is gone) is logged, counted and answered
with a clear ephemeral message; it never raises.

    >>> outcome = handle_action(store, payload, config)
    >>> outcome.update.blocks[-1]["elements"][-1]["text"]
    '✅ Handled by <@U123> at <!date^1700000000^{time}|22:13 UTC>'
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from earshot.listener import metrics
from earshot.listener import workflow as wf
from earshot.listener.models import (
    Label,
    Mention,
    MentionEvent,
    MentionStatus,
    as_utc,
    utcnow,
)
from earshot.listener.query import Query, QuerySyntaxError
from earshot.listener.reach import ACTION_HIGH_REACH, ReachPolicy, describe, stamp
from earshot.listener.routing import Router
from earshot.listener.store import Store

from .blocks import (
    ACTION_SEND_TO_LEADS,
    RenderedMessage,
    escape_mrkdwn,
    render_alert,
    with_story,
)

if TYPE_CHECKING:
    from .replies.slack import ReplyConfig

logger = logging.getLogger("earshot.responders.interactions")

INTERACTIONS = Counter(
    "earshot_slack_interactions",
    "Slack interactions handled, by kind and outcome.",
    ["kind", "outcome"],
    registry=metrics.REGISTRY,
)

#: Button action ids (rendered by ``responders/blocks.py``) -> workflow action.
ACTIONS: dict[str, str] = {
    "earshot_assign": "assign",
    "earshot_handled": "handled",
    "earshot_not_relevant": "not_relevant",
    "earshot_approve": "approve",
    "earshot_reject": "reject",
}
WRONG_SENTIMENT = "earshot_wrong_sentiment"
#: "Send to leads" on a positive alert: a complaint after all (see ``handle_action``).
SEND_TO_LEADS = ACTION_SEND_TO_LEADS
#: Link buttons (Open) still send a payload that must be acknowledged.
LINK_ACTIONS = frozenset({"earshot_open"})
#: The Reply button and the approval note's buttons (``responders/replies/slack.py``).
REPLY_PREFIX = "earshot_reply"
#: Only approvers may do these.
APPROVER_ACTIONS = frozenset({"approve", "reject"})

VIEW_WRONG_SENTIMENT = "earshot_wrong_sentiment_view"
VIEW_EXCLUSION = "earshot_exclusion_view"

_LINES = {
    "assign": "👤 Assigned to {user}",
    "handled": "✅ Handled by {user}",
    "not_relevant": "🚫 Marked not relevant by {user}",
    "approve": "📣 Approved for amplification by {user}",
    "reject": "✋ Rejected by {user}",
    "wrong_sentiment": "🏷️ Sentiment corrected to *{label}* by {user}",
    "send_to_leads": "🏷️ Re-labelled *{label}* by {user}",
    "exclusion": '🔕 {user} excluded "{term}" from `{query}`',
    "escalated": "⏰ Escalated: not handled within the SLA",
    "replied": "💬 Replied by {user}",
    "reply_pending": "📝 Reply by {user} pending approval",
    "reply_rejected": "✋ Reply rejected by {user}",
    ACTION_HIGH_REACH: "📣 {stamp}",
}
_PAST = {
    "assign": "assigned to",
    "handled": "handled by",
    "not_relevant": "marked not relevant by",
    "approve": "approved by",
    "reject": "rejected by",
    "wrong_sentiment": "re-labelled by",
    "send_to_leads": "sent to the leads by",
}


@dataclass
class InteractionConfig:
    """What the handlers need to know from the settings.

    * **is_approver** - whether a Slack user may approve or reject (user ids or a group).
    * **wins_channel** - where approved items are posted (``None``: nowhere).
    * **queries** - the configured query texts (``/earshot mute`` names one of them).
    * **alerts_channel** - the channel of negative alerts (``/earshot unhandled``).
    * **connected** - whether the Slack connection is up (``/earshot status``).
    * **router** - the pipeline's router: where a corrected label goes ("Wrong sentiment",
      "Send to leads"); ``None``: corrections change the label but send nothing.
    """

    product: str = ""
    is_approver: Callable[[str], bool] = lambda _user: False
    wins_channel: str | None = None
    queries: Sequence[str] = ()
    alerts_channel: str | None = None
    sla_seconds: float = 3600.0
    connected: Callable[[], bool] = lambda: True
    router: Router | None = None
    #: Replying from the alert (``None``: the Reply button says it is not set up).
    replies: ReplyConfig | None = None
    #: High reach: flagged in re-rendered alerts, escalated on its own SLA (``None``: off).
    reach: ReachPolicy | None = None


@dataclass
class Outcome:
    """What to do in Slack after a handler ran (the store is already updated).

    * **update** - the new body of the alert message, for ``chat.update`` at
      ``channel``/``ts``.
    * **ephemeral** - a message only the clicking ``user_id`` sees, in ``reply_channel``.
    * **view** - a modal to open with ``trigger_id``.
    * **errors** - for a modal submission: field errors to show in the modal.
    """

    kind: str
    ok: bool = True
    changed: bool = False
    user_id: str | None = None
    update: RenderedMessage | None = None
    channel: str | None = None
    ts: str | None = None
    ephemeral: str | None = None
    reply_channel: str | None = None
    view: dict[str, Any] | None = None
    trigger_id: str | None = None
    errors: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _count(outcome: Outcome, result: str) -> Outcome:
    INTERACTIONS.labels(outcome.kind, result).inc()
    return outcome


def _slack_time(at: datetime | None) -> str:
    at = as_utc(at) or utcnow()
    return f"<!date^{int(at.timestamp())}^{{time}}|{at:%H:%M} UTC>"


def _user(user_id: str) -> str:
    return f"<@{user_id}>" if user_id else "earshot"


def event_line(event: MentionEvent) -> str:
    """One audit row as a line of the alert's outcome context."""
    template = _LINES.get(event.action, "{action} by {user}")
    detail = event.detail or {}
    text = template.format(
        user=_user(event.user_id),
        action=event.action,
        label=escape_mrkdwn(str(detail.get("label", ""))),
        term=escape_mrkdwn(str(detail.get("term", ""))),
        query=escape_mrkdwn(str(detail.get("query", ""))),
        stamp=escape_mrkdwn(stamp(detail)) if event.action == ACTION_HIGH_REACH else "",
    )
    sent_to = detail.get("sent_to")
    if event.action in wf.CORRECTION_ACTIONS and sent_to:
        if event.action == "wrong_sentiment":
            text = _LINES["send_to_leads"].format(
                user=_user(event.user_id), label=escape_mrkdwn(str(detail.get("label", "")))
            )
        where = _channel(str(sent_to))
        digest = detail.get("digest")
        text += f", held for the {digest} digest in {where}" if digest else f", sent to {where}"
    url = str(detail.get("url") or "")
    if event.action == "replied" and detail.get("approved_by"):
        text += f", approved by {_user(str(detail['approved_by']))}"
    if event.action == "replied" and url.startswith("http") and not set(url) & set("|<> "):
        text += f" (<{url}|the reply>)"
    return f"{text} at {_slack_time(event.at)}"


def _channel(channel: str) -> str:
    """A channel as configured (``#cx-alerts`` or an id such as ``C0123``) for mrkdwn."""
    if channel[:1] in ("C", "G") and channel.isalnum() and channel.isupper():
        return f"<#{channel}>"
    return escape_mrkdwn(channel)


def outcome_message(
    mention: Mention,
    trail: Sequence[MentionEvent],
    *,
    product: str = "",
    moved: bool = False,
    reach: ReachPolicy | None = None,
    interactive: bool = True,
) -> RenderedMessage:
    """The alert re-rendered with its audit trail; buttons only while it is still open.

    Once closed (handled, approved...) only the link to the post stays; so too on an alert
    a correction ``moved`` to another channel (the buttons are on the new alert there), and
    on every alert of a deployment without ``interactive`` buttons.
    """
    open_ = interactive and mention.status in wf.OPEN and not moved
    base = render_alert(mention, interactive=open_, product=product, reach=reach)
    blocks = [dict(b) for b in base.blocks]
    shown = [e for e in trail if e.action in _LINES][-10:]
    if shown:
        last = shown[-1].id or 0
        blocks.append(
            {
                "type": "context",
                "block_id": f"earshot_outcome_{last}",
                "elements": [{"type": "mrkdwn", "text": event_line(e)} for e in shown],
            }
        )
    text = base.text
    if shown:
        text = f"{text}\n{_plain(event_line(shown[-1]))}"[:3900]
    return RenderedMessage(text=text, blocks=blocks, metadata=base.metadata)


def _plain(line: str) -> str:
    # The notification text has no date formatting: keep the fallback part.
    if "<!date^" in line:
        head, _, rest = line.partition("<!date^")
        fallback = rest.split("|", 1)[-1].rstrip(">")
        return head + fallback
    return line


# -- payload parsing ---------------------------------------------------------------------


class BadPayload(ValueError):
    """The payload lacks what the handler needs."""


def _actor(payload: dict[str, Any]) -> wf.Actor:
    user = payload.get("user") or {}
    if not isinstance(user, dict) or not user.get("id"):
        raise BadPayload("no user")
    name = user.get("username") or user.get("name") or ""
    return wf.Actor(str(user["id"]), str(name))


def _container(payload: dict[str, Any]) -> tuple[str | None, str | None, bool]:
    container = payload.get("container") or {}
    channel = container.get("channel_id") or (payload.get("channel") or {}).get("id")
    ts = container.get("message_ts") or (payload.get("message") or {}).get("ts")
    return (
        str(channel) if channel else None,
        str(ts) if ts else None,
        bool(container.get("is_ephemeral")),
    )


def _mention_id(value: Any) -> int:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        raise BadPayload(f"not a mention id: {str(value)[:40]!r}") from None
    if number <= 0:
        raise BadPayload("not a mention id")
    return number


def _clicked(payload: dict[str, Any]) -> tuple[str | None, str | None]:
    channel, ts, ephemeral = _container(payload)
    return (None, None) if ephemeral else (channel, ts)


def _target(
    store: Store, mention_id: int, clicked: tuple[str | None, str | None]
) -> tuple[str | None, str | None, bool]:
    """The alert message to update, and whether a correction moved the mention on from it.

    The clicked message if it is one of the mention's stored alerts (the first one, or one a
    correction sent to another channel), else the first stored alert, else the clicked one.
    """
    alerts = wf.alert_messages(store, mention_id)
    sent = [a for a in alerts if a.message_channel and a.ts]
    chosen = next((a for a in sent if (a.message_channel, a.ts) == clicked), None)
    if chosen is None and sent:
        chosen = sent[0]
    if chosen is None:
        return clicked[0], clicked[1], False
    moved = any(a.rerouted and a.delivery_id > chosen.delivery_id for a in alerts)
    return chosen.message_channel, chosen.ts, moved


def _where(store: Store, mention_id: int, payload: dict[str, Any]) -> tuple[str | None, str | None]:
    """The alert message to update (see ``_target``)."""
    channel, ts, _moved = _target(store, mention_id, _clicked(payload))
    return channel, ts


def _updated(
    store: Store,
    mention: Mention,
    payload: dict[str, Any],
    config: InteractionConfig,
    clicked: tuple[str | None, str | None] | None = None,
) -> tuple[RenderedMessage, str | None, str | None]:
    assert mention.id is not None
    where = clicked if clicked is not None else _clicked(payload)
    channel, ts, moved = _target(store, mention.id, where)
    trail = wf.events(store, mention.id)
    message = outcome_message(
        mention, trail, product=config.product, moved=moved, reach=config.reach
    )
    return _with_story(store, mention, channel, ts, message), channel, ts


def _with_story(
    store: Store,
    mention: Mention,
    channel: str | None,
    ts: str | None,
    message: RenderedMessage,
) -> RenderedMessage:
    """``message`` with its story's live line when the alert at ``channel``/``ts`` is the
    parent of a story of more than one mention (a click must not drop the count)."""
    if mention.story_id is None or mention.id is None or not ts:
        return message
    alert = next(
        (
            a
            for a in wf.alert_messages(store, mention.id)
            if (a.message_channel, a.ts) == (channel, ts)
        ),
        None,
    )
    row = store.delivery_by_key(alert.key) if alert is not None else None
    if row is None or (row.payload or {}).get("story"):
        return message  # a reply in a story's thread, not its parent
    count, sources = store.story_sources(mention.story_id)
    if count < 2:
        return message
    return with_story(message, count, sources, mention.source)


def current_alert(
    store: Store,
    mention: Mention,
    channel: str,
    ts: str,
    *,
    key: str,
    product: str = "",
    interactive: bool = True,
    reach: ReachPolicy | None = None,
) -> RenderedMessage:
    """The alert at ``channel``/``ts`` as it stands now, for a ``chat.update`` that is not a
    click (a story's live count): the workflow state and trail as a click renders them (no
    buttons once handled), the story line, and the alert's metadata with its ``key``."""
    assert mention.id is not None
    _channel, _ts, moved = _target(store, mention.id, (channel, ts))
    trail = wf.events(store, mention.id)
    message = outcome_message(
        mention, trail, product=product, moved=moved, interactive=interactive, reach=reach
    )
    message = _with_story(store, mention, channel, ts, message)
    metadata = {
        "event_type": "earshot_alert",
        "event_payload": {"mention_id": mention.id, "key": key},
    }
    return RenderedMessage(text=message.text, blocks=message.blocks, metadata=metadata)


# -- block actions -----------------------------------------------------------------------


def handle_action(
    store: Store,
    payload: dict[str, Any],
    config: InteractionConfig,
    *,
    now: datetime | None = None,
) -> Outcome:
    """Handle one ``block_actions`` payload (a button click on an alert)."""
    try:
        return _handle_action(store, payload, config, now)
    except BadPayload as exc:
        logger.warning("slack action: malformed payload: %s", exc)
        channel, _, _ = _container(payload if isinstance(payload, dict) else {})
        user = (payload.get("user") or {}).get("id") if isinstance(payload, dict) else None
        outcome = Outcome(
            "invalid",
            ok=False,
            user_id=user,
            reply_channel=channel,
            ephemeral="Sorry, earshot could not read that click. Nothing was changed.",
        )
        return _count(outcome, "malformed")


def _handle_action(
    store: Store, payload: dict[str, Any], config: InteractionConfig, now: datetime | None
) -> Outcome:
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise BadPayload("not a block_actions payload")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise BadPayload("no actions")
    action = actions[0]
    action_id = str(action.get("action_id") or "")
    actor = _actor(payload)
    channel, _, _ = _container(payload)
    base: dict[str, Any] = {"user_id": actor.user_id, "reply_channel": channel}
    if action_id in LINK_ACTIONS:
        return _count(Outcome("link", **base), "ok")
    if action_id.startswith(REPLY_PREFIX):
        from .replies.slack import ACTIONS as REPLY_ACTIONS
        from .replies.slack import handle_reply_action

        if action_id in REPLY_ACTIONS:
            return handle_reply_action(store, payload, config, action, actor, base)
    if action_id not in (WRONG_SENTIMENT, SEND_TO_LEADS) and action_id not in ACTIONS:
        logger.warning("slack action: unknown action_id %r", action_id[:100])
        outcome = Outcome(
            "unknown",
            ok=False,
            ephemeral="earshot does not know that button. Nothing was changed.",
            **base,
        )
        return _count(outcome, "unknown")
    mention_id = _mention_id(action.get("value"))
    mention = wf.get_mention(store, mention_id)
    if mention is None:
        outcome = Outcome(
            action_id,
            ok=False,
            ephemeral="That mention is no longer stored in earshot. Nothing was changed.",
            **base,
        )
        return _count(outcome, "missing")
    if action_id == WRONG_SENTIMENT:
        view = wrong_sentiment_view(mention, _where(store, mention_id, payload))
        outcome = Outcome(WRONG_SENTIMENT, view=view, trigger_id=payload.get("trigger_id"), **base)
        return _count(outcome, "modal")
    if action_id == SEND_TO_LEADS:
        return _send_to_leads(store, payload, config, mention, action, actor, base, now)
    name = ACTIONS[action_id]
    if name in APPROVER_ACTIONS and not config.is_approver(actor.user_id):
        logger.info("slack action: %s by %s refused: not an approver", name, actor.user_id)
        outcome = Outcome(
            name,
            ok=False,
            ephemeral=(
                "Sorry, you are not allowed to approve or reject items for amplification: "
                "ask one of the configured approvers. Nothing was changed."
            ),
            **base,
        )
        return _count(outcome, "not_allowed")
    click = str(action.get("action_ts") or "")
    dedupe = f"{name}:{mention_id}:{actor.user_id}:{click}" if click else None
    queue: list[wf.Queued] = []
    if name == "approve" and config.wins_channel:
        queue.append(
            wf.Queued(
                key=f"win:{mention_id}",
                channel=config.wins_channel,
                kind=wf.KIND_WIN,
                payload={"approved_by": actor.user_id},
            )
        )
    detail = {"action_id": action_id, "action_ts": click}
    result = wf.transition(
        store, mention_id, name, actor, dedupe_key=dedupe, detail=detail, queue=queue, now=now
    )
    if result.duplicate:
        return _count(Outcome(name, **base), "redelivery")
    if not result.changed:
        assert result.mention is not None
        return _count(Outcome(name, ephemeral=_already(result), **base), "already")
    assert result.mention is not None
    message, where_channel, where_ts = _updated(store, result.mention, payload, config)
    outcome = Outcome(
        name, changed=True, update=message, channel=where_channel, ts=where_ts, **base
    )
    if name == "not_relevant" and result.mention.matched_query:
        outcome.view = exclusion_view(result.mention)
        outcome.trigger_id = payload.get("trigger_id")
    return _count(outcome, "changed")


def _send_to_leads(
    store: Store,
    payload: dict[str, Any],
    config: InteractionConfig,
    mention: Mention,
    action: dict[str, Any],
    actor: wf.Actor,
    base: dict[str, Any],
    now: datetime | None,
) -> Outcome:
    """A positive alert that is a complaint after all: re-labelled negative (``mixed`` stays
    mixed: someone chose it in "Wrong sentiment") and sent where that label routes."""
    assert mention.id is not None
    label = Label.MIXED if mention.sentiment_label == Label.MIXED else Label.NEGATIVE
    click = str(action.get("action_ts") or "")
    dedupe = f"send_to_leads:{mention.id}:{actor.user_id}:{click}" if click else None
    result = wf.relabel(
        store,
        mention.id,
        label,
        actor,
        action="send_to_leads",
        router=config.router,
        dedupe_key=dedupe,
        detail={"action_id": SEND_TO_LEADS, "action_ts": click},
        now=now,
    )
    kind = "send_to_leads"
    if result.duplicate:
        return _count(Outcome(kind, **base), "redelivery")
    if result.mention is None:
        gone = "That mention is no longer stored in earshot. Nothing was changed."
        return _count(Outcome(kind, ok=False, ephemeral=gone, **base), "missing")
    if not result.changed:
        text = _already(result)
        if result.last is None:
            text = f"This mention is already labelled {label.value}. Nothing was changed."
        return _count(Outcome(kind, ephemeral=text, **base), "already")
    message, channel, ts = _updated(store, result.mention, payload, config)
    outcome = Outcome(kind, changed=True, update=message, channel=channel, ts=ts, **base)
    return _count(outcome, "changed")


def _already(result: wf.Transition) -> str:
    mention = result.mention
    assert mention is not None
    last = result.last
    if last is not None and last.action in _PAST:
        who = _user(last.user_id)
        return f"Already {_PAST[last.action]} {who} at {_slack_time(last.at)}. Nothing was changed."
    status = mention.status.replace("_", " ")
    return f"This mention is already {status}. Nothing was changed."


# -- modals --------------------------------------------------------------------------------


def wrong_sentiment_view(mention: Mention, where: tuple[str | None, str | None]) -> dict[str, Any]:
    """The modal asking for the right label.

    ``where`` (the clicked alert: channel id and ts) travels in ``private_metadata``, so the
    submission stamps that message (it is checked against the mention's stored alerts).
    """
    current = mention.sentiment_label or Label.UNSCORED.value
    meta: dict[str, Any] = {"mention_id": mention.id}
    if where[0] and where[1]:
        meta.update(channel=where[0], ts=where[1])
    options = [
        {"text": {"type": "plain_text", "text": label.value}, "value": label.value}
        for label in Label
        if label is not Label.UNSCORED and label.value != current
    ]
    return {
        "type": "modal",
        "callback_id": VIEW_WRONG_SENTIMENT,
        "private_metadata": json.dumps(meta),
        "title": {"type": "plain_text", "text": "Correct the sentiment"},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"earshot labelled this mention *{escape_mrkdwn(current)}*.",
                },
            },
            {
                "type": "input",
                "block_id": "label",
                "label": {"type": "plain_text", "text": "The right label"},
                "element": {"type": "static_select", "action_id": "label", "options": options},
            },
        ],
    }


def exclusion_view(mention: Mention) -> dict[str, Any]:
    """The modal offering to exclude a term from the query that matched."""
    query = mention.matched_query or ""
    return {
        "type": "modal",
        "callback_id": VIEW_EXCLUSION,
        "private_metadata": json.dumps({"mention_id": mention.id, "query": query}),
        "title": {"type": "plain_text", "text": "Exclude from the query"},
        "submit": {"type": "plain_text", "text": "Exclude"},
        "close": {"type": "plain_text", "text": "No thanks"},
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": (
                        f"This matched the query `{escape_mrkdwn(query[:200])}`. Exclude a "
                        'word or phrase so such posts stop matching (adds -"term").'
                    ),
                },
            },
            {
                "type": "input",
                "block_id": "term",
                "label": {"type": "plain_text", "text": "Word or phrase to exclude"},
                "element": {"type": "plain_text_input", "action_id": "term", "max_length": 100},
            },
        ],
    }


def _state_value(view: dict[str, Any], block: str, action: str) -> Any:
    values = ((view.get("state") or {}).get("values") or {}).get(block) or {}
    element = values.get(action) or {}
    if element.get("type") == "static_select" or "selected_option" in element:
        return (element.get("selected_option") or {}).get("value")
    return element.get("value")


def handle_view(
    store: Store,
    payload: dict[str, Any],
    config: InteractionConfig,
    *,
    now: datetime | None = None,
) -> Outcome:
    """Handle a ``view_submission`` of one of earshot's modals."""
    try:
        return _handle_view(store, payload, config, now)
    except BadPayload as exc:
        logger.warning("slack view: malformed payload: %s", exc)
        return _count(Outcome("invalid_view", ok=False), "malformed")


def _handle_view(
    store: Store, payload: dict[str, Any], config: InteractionConfig, now: datetime | None
) -> Outcome:
    if not isinstance(payload, dict) or payload.get("type") != "view_submission":
        raise BadPayload("not a view_submission payload")
    view = payload.get("view")
    if not isinstance(view, dict):
        raise BadPayload("no view")
    actor = _actor(payload)
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except json.JSONDecodeError:
        raise BadPayload("private_metadata is not JSON") from None
    if not isinstance(meta, dict):
        raise BadPayload("private_metadata is not an object")
    callback = view.get("callback_id")
    if isinstance(callback, str) and callback.startswith(REPLY_PREFIX):
        from .replies.slack import handle_reply_view

        return handle_reply_view(store, payload, config, view, meta, actor)
    mention_id = _mention_id(meta.get("mention_id"))
    # A view is submitted once per opening: its id (plus hash) keys the redelivery check.
    dedupe = f"{callback}:{mention_id}:{view.get('id')}:{view.get('hash')}"
    if callback == VIEW_WRONG_SENTIMENT:
        label = wf.valid_label(str(_state_value(view, "label", "label") or ""))
        if label is None:
            return _count(
                Outcome("wrong_sentiment", ok=False, errors={"label": "Pick a label."}), "invalid"
            )
        mention = wf.get_mention(store, mention_id)
        if mention is None:
            return _count(
                Outcome(
                    "wrong_sentiment",
                    ok=False,
                    errors={"label": "That mention is no longer stored."},
                ),
                "missing",
            )
        result = wf.relabel(
            store,
            mention_id,
            label,
            actor,
            action="wrong_sentiment",
            router=config.router,
            dedupe_key=dedupe,
            now=now,
        )
        if not result.changed and not result.duplicate and result.mention is not None:
            already = f"It is labelled {label.value} already."
            return _count(
                Outcome("wrong_sentiment", ok=False, errors={"label": already}), "already"
            )
        kind = "wrong_sentiment"
    elif callback == VIEW_EXCLUSION:
        query = str(meta.get("query") or "")
        term = " ".join(str(_state_value(view, "term", "term") or "").split())
        problem = _exclusion_problem(query, term, config)
        if problem:
            return _count(Outcome("exclusion", ok=False, errors={"term": problem}), "invalid")
        result = wf.record(
            store,
            mention_id,
            "exclusion",
            actor,
            dedupe_key=dedupe,
            detail={"query": query, "term": term},
            exclusion=(query, term),
            now=now,
        )
        kind = "exclusion"
    else:
        logger.warning("slack view: unknown callback_id %r", str(callback)[:100])
        return _count(Outcome("unknown_view", ok=False), "unknown")
    if result.mention is None:
        return _count(
            Outcome(kind, ok=False, errors={"label" if kind != "exclusion" else "term": "gone"}),
            "missing",
        )
    if result.duplicate:
        return _count(Outcome(kind, user_id=actor.user_id), "redelivery")
    clicked = (meta.get("channel"), meta.get("ts"))
    where = (str(clicked[0]), str(clicked[1])) if all(clicked) else (None, None)
    message, channel, ts = _updated(store, result.mention, {}, config, where)
    outcome = Outcome(
        kind, changed=True, user_id=actor.user_id, update=message, channel=channel, ts=ts
    )
    return _count(outcome, "changed")


def _exclusion_problem(query: str, term: str, config: InteractionConfig) -> str | None:
    if not term:
        return "Enter a word or phrase."
    if len(term) > 100 or '"' in term:
        return 'At most 100 characters, without double quotes (").'
    if not query:
        return "This mention has no query to exclude from."
    try:
        Query.parse(wf.with_exclusions(query, [term]))
    except QuerySyntaxError as exc:
        return f"That would not be a valid query: {exc.message}"
    return None


# -- /earshot -------------------------------------------------------------------------------

USAGE = (
    "*/earshot* commands:\n"
    "• `/earshot status`: what earshot is doing\n"
    "• `/earshot mute <query> <hours>`: stop alerting a query for a while "
    '(e.g. `/earshot mute "acme app" 4`)\n'
    "• `/earshot unmute <query>`\n"
    "• `/earshot unhandled`: negative alerts nobody has handled, biggest reach first"
)


def handle_command(
    store: Store,
    payload: dict[str, Any],
    config: InteractionConfig,
    *,
    now: datetime | None = None,
) -> Outcome:
    """Handle ``/earshot <subcommand>``; the reply is ``Outcome.ephemeral``."""
    now = now or utcnow()
    text = str((payload or {}).get("text") or "").strip()
    user = str((payload or {}).get("user_id") or "")
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    sub = words[0].lower() if words else "status"
    args = words[1:]
    base: dict[str, Any] = {"user_id": user, "reply_channel": (payload or {}).get("channel_id")}
    try:
        if sub == "status":
            reply = _status(store, config, now)
        elif sub == "mute":
            reply = _mute(store, config, args, wf.Actor(user), now)
        elif sub == "unmute":
            reply = _mute(store, config, [*args, "0"], wf.Actor(user), now)
        elif sub in ("unhandled", "list"):
            reply = _unhandled(store, config, now)
        else:
            return _count(Outcome("command", ok=sub == "help", ephemeral=USAGE, **base), sub[:20])
    except Exception:
        logger.exception("/earshot %s failed", sub)
        reply = "Sorry, that did not work (earshot logged the error). Nothing was changed."
        return _count(Outcome("command", ok=False, ephemeral=reply, **base), "error")
    return _count(Outcome("command", ephemeral=reply, **base), sub)


def _status(store: Store, config: InteractionConfig, now: datetime) -> str:
    counts = wf.status_counts(store)
    open_alerts = len(wf.unhandled(store, config.alerts_channel, limit=1000))
    mutes = wf.active_mutes(store, now)
    lines = [
        f"*earshot* for {escape_mrkdwn(config.product or 'your product')}: "
        f"{sum(counts.values())} mentions stored.",
        f"• unhandled negative alerts: {open_alerts}",
        "• "
        + ", ".join(f"{status.replace('_', ' ')}: {counts.get(status, 0)}" for status in _SHOWN),
        f"• Slack connection: {'up' if config.connected() else 'DOWN'}",
    ]
    if mutes:
        lines.append(
            "• muted: "
            + ", ".join(f"`{escape_mrkdwn(q)}` until {_slack_time(u)}" for q, u in mutes.items())
        )
    return "\n".join(lines)


_SHOWN = [s.value for s in MentionStatus if s is not MentionStatus.NEW]


def _mute(
    store: Store, config: InteractionConfig, args: list[str], actor: wf.Actor, now: datetime
) -> str:
    if len(args) < 2:
        return "Usage: `/earshot mute <query> <hours>`, e.g. `/earshot mute acme 4`."
    *query_words, amount = args
    query = " ".join(query_words)
    try:
        hours = float(amount.lower().removesuffix("h"))
    except ValueError:
        return f"`{escape_mrkdwn(amount)}` is not a number of hours."
    if not 0 <= hours <= 24 * 30:
        return "Mute for 0 to 720 hours."
    known = {q.lower(): q for q in config.queries}
    if query.lower() not in known:
        listed = ", ".join(f"`{escape_mrkdwn(q)}`" for q in config.queries) or "none"
        return f"`{escape_mrkdwn(query)}` is not a configured query (queries: {listed})."
    query = known[query.lower()]
    until = now + timedelta(hours=hours)
    wf.mute(store, query, until, actor)
    logger.info("query %r muted until %s by %s", query, until.isoformat(), actor.user_id)
    if hours == 0:
        return f"`{escape_mrkdwn(query)}` is no longer muted."
    return (
        f"Muted `{escape_mrkdwn(query)}` until {_slack_time(until)}: its mentions are "
        "stored but not alerted."
    )


def _unhandled(store: Store, config: InteractionConfig, now: datetime) -> str:
    rows = wf.unhandled(store, config.alerts_channel, limit=10, reach=config.reach)
    if not rows:
        return "No unhandled negative alerts. 🎉"
    lines = [f"*Unhandled negative alerts* (biggest reach first, then oldest; {len(rows)} shown):"]
    for mention, delivery in rows:
        title = escape_mrkdwn((mention.title or mention.text or "")[:80].replace("\n", " "))
        sent = as_utc(delivery.sent_at)
        age = f"{int((now - sent).total_seconds() // 60)} min ago" if sent else "not sent yet"
        who = f", assigned to {_user(mention.assignee)}" if mention.assignee else ""
        url = escape_mrkdwn(mention.url).replace("|", "%7C")
        link = f"<{url}|{title or 'link'}>" if url.startswith("http") else title
        figures = escape_mrkdwn(describe(mention.reach_detail))
        flag = "📣 " if config.reach is not None and config.reach.flagged(mention) else ""
        reach = f", {figures}" if figures else ""
        lines.append(f"• {flag}{link} ({mention.source}{reach}, {age}{who})")
    return "\n".join(lines)
