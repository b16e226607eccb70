"""The delivery worker: drains the outbox into a channel, at Slack's pace.

Each claimed row is rendered, sent, and marked sent; a ``DeliveryRetry`` puts it back with
a delay (Slack's ``Retry-After`` when given, else exponential backoff with jitter); a
``DeliveryFatal`` or too many attempts marks it failed, with the reason kept on the row.
Messages to one channel are spaced at least ``per_channel_interval`` seconds apart (Slack
allows about one message per second per channel).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from earshot.listener import metrics
from earshot.listener import workflow as wf
from earshot.listener.models import Delivery, as_utc, utcnow
from earshot.listener.reach import ReachPolicy
from earshot.listener.store import KIND_REACH_UPDATE, KIND_STORY_UPDATE, Claimed, Store

from .base import Channel, DeliveryFatal, DeliveryRetry, Outgoing
from .blocks import render_alert, render_summary, render_text
from .digest import FileOutgoing
from .digest import render_row as render_digest_row
from .interactions import current_alert
from .wins import render_workflow

logger = logging.getLogger("earshot.responders.delivery")


@dataclass
class DeliveryReport:
    """What a round of delivery did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    fatal_errors: list[str] = field(default_factory=list)

    def add(self, other: DeliveryReport) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.fatal_errors.extend(other.fatal_errors)


class DeliveryWorker:
    """Sends what the outbox holds."""

    def __init__(
        self,
        store: Store,
        channel: Channel,
        *,
        interactive: bool = False,
        product: str = "",
        per_channel_interval: float = 1.0,
        max_attempts: int = 30,
        backoff_base: float = 2.0,
        backoff_max: float = 600.0,
        lease_seconds: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        stopping: threading.Event | None = None,
        health_channel: str | None = None,
        files: Channel | None = None,
        reach: ReachPolicy | None = None,
    ) -> None:
        #: The high-reach policy: flagged alerts say "High reach" (``None``: never).
        self.reach = reach
        #: Sends ``FileOutgoing`` (digest charts); without it they go to ``channel``.
        self.files = files
        self.stopping = stopping or threading.Event()
        self.store = store
        self.channel = channel
        self.interactive = interactive
        self.product = product
        self.per_channel_interval = per_channel_interval
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.sleep: Callable[[float], object] = sleep or self.stopping.wait
        self._last_sent: dict[str, float] = {}
        self._reported: set[tuple[str, str]] = set()
        self.health_channel = health_channel
        self.totals = DeliveryReport()

    def render(self, claimed: Claimed) -> Outgoing:
        """Turn an outbox row into the message to send."""
        delivery = claimed.delivery
        key = delivery.idempotency_key
        mention = claimed.mention
        workflow = render_workflow(delivery, mention)  # wins posts, escalation replies
        if workflow is not None:
            return workflow
        if mention is None:
            special = render_digest_row(delivery)  # digests, their charts, spike alerts
            if special is not None:
                return special
        if mention is not None:
            message = render_alert(
                mention,
                idempotency_key=key,
                interactive=self.interactive,
                product=self.product,
                reach=self.reach,
            )
            plain = render_text(mention, self.reach)
        else:
            payload = delivery.payload or {}
            title = str(payload.get("title") or delivery.kind)
            lines = [str(line) for line in payload.get("lines") or []]
            message = render_summary(title, lines)
            message = replace(
                message,
                metadata={"event_type": f"earshot_{delivery.kind}", "event_payload": {"key": key}},
            )
            plain = "\n".join([title, *lines])
        return Outgoing(channel=delivery.channel, message=message, plain=plain, key=key)

    def run_once(self, limit: int = 50) -> DeliveryReport:
        """Claim and send up to ``limit`` due rows (more while every channel would wait).

        Each channel's rows go out in claim order, but a channel that must still wait out
        ``per_channel_interval`` does not hold up the others: the next row sent is the first
        one whose channel is free soonest. When even that one must wait, more due rows are
        claimed (as many as can be sent well within the lease), so one busy channel at the
        end of a batch does not leave the other channels idle.
        """
        report = DeliveryReport()
        if self.stopping.is_set():
            return report
        hand = self.store.claim(limit=limit, lease_seconds=self.lease_seconds)
        more = len(hand) >= limit
        while hand:
            if self.stopping.is_set():
                # Stopping: hand the rest back at once instead of waiting out the lease.
                self.store.release([c.delivery.id for c in hand if c.delivery.id])
                break
            index, wait = self._next_row(hand)
            if wait > 0 and more and self._can_hold(hand, limit):
                extra = self.store.claim(limit=limit, lease_seconds=self.lease_seconds)
                more = len(extra) >= limit
                if extra:
                    hand.extend(extra)
                    continue
            self._deliver(hand.pop(index), report)
        self.totals.add(report)
        return report

    def _next_row(self, hand: list[Claimed]) -> tuple[int, float]:
        """The row to send next (the first of the channel free soonest) and its wait."""
        now = self.clock()
        best, best_at = 0, float("inf")
        seen: set[str] = set()
        for index, row in enumerate(hand):
            channel = row.delivery.channel
            if channel in seen:
                continue
            seen.add(channel)
            last = self._last_sent.get(channel)
            at = now if last is None else max(now, last + self.per_channel_interval)
            if at < best_at:
                best, best_at = index, at
        return best, best_at - now

    def _can_hold(self, hand: list[Claimed], limit: int) -> bool:
        """Whether ``limit`` more rows would still all be sent within half their lease."""
        per_channel: dict[str, int] = {}
        for row in hand:
            per_channel[row.delivery.channel] = per_channel.get(row.delivery.channel, 0) + 1
        busiest = max(per_channel.values(), default=0)
        return (busiest + limit) * self.per_channel_interval <= self.lease_seconds / 2

    def drain(self, timeout: float = 300.0) -> DeliveryReport:
        """Send until the outbox holds nothing due within ``timeout`` seconds."""
        report = DeliveryReport()
        deadline = self.clock() + timeout
        while not self.stopping.is_set():
            round_report = self.run_once()
            report.add(round_report)
            if round_report.sent or round_report.retried or round_report.failed:
                continue
            due = self.store.next_due()
            if due is None:
                return report
            wait = (due - utcnow()).total_seconds()
            if self.clock() + max(0.0, wait) > deadline:
                logger.warning("outbox: %s still pending after the drain timeout", due)
                return report
            self.sleep(min(max(wait, 0.05), 30.0))
        return report

    def _report_fatal(self, channel: str, error: DeliveryFatal) -> None:
        """Say once that a channel (or the token) cannot be delivered to.

        A problem with one channel goes to the health channel as one alert per channel and
        error; a problem with Slack itself (the token) cannot be posted, so it is logged
        loudly, once per process.
        """
        code = str(error).removeprefix("slack: ")
        if error.everywhere or not self.health_channel or channel == self.health_channel:
            if (channel, code) not in self._reported:
                self._reported.add((channel, code))
                logger.critical(
                    "Slack refuses delivery to %s (%s): alerts are kept as failed in the outbox; "
                    "fix the token or channel, then run `earshot outbox retry`",
                    channel,
                    code,
                )
            return
        self.store.enqueue(
            f"health:delivery:{channel}:{code}",
            self.health_channel,
            "health",
            {
                "title": f"Alerts cannot be delivered to {channel}",
                "lines": [
                    f"Slack answered `{code}`.",
                    "Invite the bot to the channel or fix the channel name; the alerts are kept "
                    "and `earshot outbox retry` sends them again.",
                ],
            },
        )

    def _pace(self, channel: str) -> None:
        last = self._last_sent.get(channel)
        if last is not None:
            wait = last + self.per_channel_interval - self.clock()
            if wait > 0:
                self.sleep(wait)

    def _backoff(self, attempts: int) -> float:
        """The wait before attempt ``attempts + 1`` when Slack gave no ``Retry-After``:
        doubling from ``backoff_base``, at most ``backoff_max``."""
        return float(min(self.backoff_max, self.backoff_base * 2 ** (attempts - 1)))

    def _thread_root(self, key: str) -> str | None:
        """The ``ts`` of the thread a reply to the row ``key`` goes in: ``None`` while that
        row (or the root above it) is still pending, ``""`` when it was never posted
        (failed: the reply goes top-level rather than nowhere)."""
        parent = self.store.delivery_by_key(key)
        for _ in range(3):
            if parent is None:
                return ""
            if parent.status == "pending":
                return None
            above = (parent.payload or {}).get("storm")
            if not above or not parent.message_ts:
                return parent.message_ts or ""
            upper = self.store.delivery_by_key(str(above))
            if upper is None or upper.status != "sent" or not upper.message_ts:
                return parent.message_ts
            parent = upper
        return parent.message_ts or "" if parent is not None else ""

    def _update_story(self, claimed: Claimed, report: DeliveryReport) -> None:
        """Re-render an alert as it stands now (``chat.update``): a story's parent with its
        live count (``story_update``, payload ``story``), or an alert whose refreshed reach
        crossed its threshold (``reach_update``, payload ``alert``).

        The count, sources, reach and trail are read now, so an update that arrives late
        never shows less than an earlier one; the workflow state is the alert's current one.
        """
        delivery = claimed.delivery
        assert delivery.id is not None
        payload = delivery.payload or {}
        target = payload.get("story") or payload.get("alert") or ""
        parent: Delivery | None = self.store.delivery_by_key(str(target))
        if parent is not None and parent.status == "pending":
            self.store.defer(delivery.id, 1.0)
            return
        updater = getattr(self.channel, "update", None)
        if (
            parent is None
            or parent.mention_id is None
            or not parent.message_channel
            or not parent.message_ts
            or updater is None
        ):
            # The parent was never posted (or this channel cannot edit): nothing to update.
            self.store.mark_sent(delivery.id, None, None)
            return
        mention = wf.get_mention(self.store, parent.mention_id)
        if mention is None:
            self.store.mark_sent(delivery.id, None, None)
            return
        try:
            message = current_alert(
                self.store,
                mention,
                parent.message_channel,
                parent.message_ts,
                key=parent.idempotency_key,
                product=self.product,
                interactive=self.interactive,
                reach=self.reach,
            )
        except Exception as exc:
            logger.exception("outbox %s: could not render", delivery.idempotency_key)
            self.store.mark_failed(delivery.id, f"render: {type(exc).__name__}: {exc}")
            report.failed += 1
            return
        self._pace(delivery.channel)
        if self.stopping.is_set():
            self.store.release([delivery.id])
            return
        if not self.store.renew(claimed, self.lease_seconds):
            return
        try:
            sent = updater(parent.message_channel, parent.message_ts, message)
        except DeliveryRetry as exc:
            self._last_sent[delivery.channel] = self.clock()
            attempts = delivery.attempts + 1
            if exc.retry_after is None and attempts >= self.max_attempts:
                self.store.mark_failed(delivery.id, f"gave up after {attempts} attempts: {exc}")
                report.failed += 1
                return
            delay = exc.retry_after
            if delay is None:
                delay = self._backoff(attempts)
            # chat.update is idempotent: no lookup before the next attempt.
            self.store.mark_retry(delivery.id, str(exc), delay)
            report.retried += 1
            return
        except DeliveryFatal as exc:
            # The parent was deleted or can no longer be edited: the replies are in its
            # thread all the same. Only a refused token is worth a health alert.
            logger.warning(
                "outbox %s: cannot update the story's alert: %s", delivery.idempotency_key, exc
            )
            self.store.mark_failed(delivery.id, str(exc))
            report.failed += 1
            if exc.everywhere:
                report.fatal_errors.append(str(exc))
                self._report_fatal(delivery.channel, exc)
            return
        self._last_sent[delivery.channel] = self.clock()
        self.store.mark_sent(delivery.id, sent.channel_id, sent.ts)
        report.sent += 1

    def _deliver(self, claimed: Claimed, report: DeliveryReport) -> None:
        delivery = claimed.delivery
        assert delivery.id is not None
        if delivery.kind in (KIND_STORY_UPDATE, KIND_REACH_UPDATE):
            self._update_story(claimed, report)
            return
        # Structured fields of every log line about this row (JSON logs keep them as keys).
        fields = {
            "outbox_id": delivery.id,
            "mention_id": delivery.mention_id,
            "source": claimed.mention.source if claimed.mention else None,
            "query": claimed.mention.matched_query if claimed.mention else None,
            "channel": delivery.channel,
        }
        try:
            outgoing = self.render(claimed)
        except Exception as exc:
            logger.exception("outbox %s: could not render", delivery.idempotency_key, extra=fields)
            self.store.mark_failed(delivery.id, f"render: {type(exc).__name__}: {exc}")
            report.failed += 1
            return
        payload = delivery.payload or {}
        # A storm summary or a story's first alert goes first; its replies wait for its
        # thread. A story's parent may itself be a reply in a storm's thread: Slack threads
        # are one level deep, so the story's replies go to that thread's root.
        thread = payload.get("story") or payload.get("storm")
        if thread:
            root = self._thread_root(str(thread))
            if root is None:
                self.store.defer(delivery.id, 1.0)
                return
            if root:
                outgoing = replace(outgoing, thread_ts=root)
        self._pace(delivery.channel)
        if self.stopping.is_set():
            self.store.release([delivery.id])
            return
        # Still ours? A worker that stalled past its lease may have lost the row to another
        # worker, which then sends it: sending it here too would post it twice.
        if not self.store.renew(claimed, self.lease_seconds):
            logger.warning(
                "outbox %s: the lease ran out and another worker took the row; not sending",
                delivery.idempotency_key,
                extra=fields,
            )
            return
        try:
            sent = None
            if claimed.verify:
                since = as_utc(delivery.created_at)
                sent = self.channel.find_sent(
                    outgoing,
                    (since.timestamp() if since else 0.0) - 60.0,
                    self.store.known_channel_id(delivery.channel),
                )
                if sent is not None:
                    logger.info(
                        "outbox %s: already in Slack, not posting again",
                        delivery.idempotency_key,
                        extra=fields,
                    )
            if sent is None:
                channel = self.channel
                if isinstance(outgoing, FileOutgoing) and self.files is not None:
                    channel = self.files
                sent = channel.send(outgoing)
        except DeliveryRetry as exc:
            self._last_sent[delivery.channel] = self.clock()
            attempts = delivery.attempts + 1
            if exc.retry_after is None and attempts >= self.max_attempts:
                logger.error(
                    "outbox %s: giving up: %s", delivery.idempotency_key, exc, extra=fields
                )
                self.store.mark_failed(delivery.id, f"gave up after {attempts} attempts: {exc}")
                metrics.ALERTS_FAILED.labels(delivery.channel).inc()
                report.failed += 1
                return
            delay = exc.retry_after
            if delay is None:
                delay = self._backoff(attempts) * random.uniform(0.5, 1.0)
            logger.warning(
                "outbox %s: retry in %.1fs: %s",
                delivery.idempotency_key,
                delay,
                exc,
                extra=fields,
            )
            self.store.mark_retry(delivery.id, str(exc), delay, verify=exc.uncertain)
            metrics.ALERTS_RETRIED.labels(delivery.channel).inc()
            report.retried += 1
            return
        except DeliveryFatal as exc:
            logger.error(
                "outbox %s: undeliverable: %s", delivery.idempotency_key, exc, extra=fields
            )
            self.store.mark_failed(delivery.id, str(exc))
            metrics.ALERTS_FAILED.labels(delivery.channel).inc()
            report.failed += 1
            report.fatal_errors.append(str(exc))
            self._report_fatal(delivery.channel, exc)
            return
        except Exception as exc:
            logger.exception(
                "outbox %s: unexpected send error", delivery.idempotency_key, extra=fields
            )
            self.store.mark_retry(
                delivery.id, f"{type(exc).__name__}: {exc}", self.backoff_max, verify=True
            )
            report.retried += 1
            return
        self._last_sent[delivery.channel] = self.clock()
        self.store.mark_sent(delivery.id, sent.channel_id, sent.ts)
        logger.info(
            "outbox %s: sent to %s", delivery.idempotency_key, delivery.channel, extra=fields
        )
        metrics.ALERTS_SENT.labels(delivery.channel).inc()
        report.sent += 1
