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
from dataclasses import dataclass, field

from earshot.listener import metrics
from earshot.listener.models import utcnow
from earshot.listener.store import Claimed, Store

from .base import Channel, DeliveryFatal, DeliveryRetry, Outgoing
from .blocks import render_alert, render_summary, render_text

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
    ) -> None:
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
        self.totals = DeliveryReport()

    def render(self, claimed: Claimed) -> Outgoing:
        """Turn an outbox row into the message to send."""
        delivery = claimed.delivery
        key = delivery.idempotency_key
        mention = claimed.mention
        if mention is not None:
            message = render_alert(
                mention,
                idempotency_key=key,
                interactive=self.interactive,
                product=self.product,
            )
            plain = render_text(mention)
        else:
            payload = delivery.payload or {}
            title = str(payload.get("title") or delivery.kind)
            lines = [str(line) for line in payload.get("lines") or []]
            message = render_summary(title, lines)
            plain = "\n".join([title, *lines])
        return Outgoing(channel=delivery.channel, message=message, plain=plain, key=key)

    def run_once(self, limit: int = 50) -> DeliveryReport:
        """Claim and send up to ``limit`` due rows."""
        report = DeliveryReport()
        if self.stopping.is_set():
            return report
        claimed = self.store.claim(limit=limit, lease_seconds=self.lease_seconds)
        for index, row in enumerate(claimed):
            if self.stopping.is_set():
                # Stopping: hand the rest back at once instead of waiting out the lease.
                self.store.release([c.delivery.id for c in claimed[index:] if c.delivery.id])
                break
            self._deliver(row, report)
        self.totals.add(report)
        return report

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

    def _pace(self, channel: str) -> None:
        last = self._last_sent.get(channel)
        if last is not None:
            wait = last + self.per_channel_interval - self.clock()
            if wait > 0:
                self.sleep(wait)

    def _deliver(self, claimed: Claimed, report: DeliveryReport) -> None:
        delivery = claimed.delivery
        assert delivery.id is not None
        try:
            outgoing = self.render(claimed)
        except Exception as exc:
            logger.exception("outbox %s: could not render", delivery.idempotency_key)
            self.store.mark_failed(delivery.id, f"render: {type(exc).__name__}: {exc}")
            report.failed += 1
            return
        self._pace(delivery.channel)
        if self.stopping.is_set():
            self.store.release([delivery.id])
            return
        try:
            sent = self.channel.send(outgoing)
        except DeliveryRetry as exc:
            self._last_sent[delivery.channel] = self.clock()
            attempts = delivery.attempts + 1
            if exc.retry_after is None and attempts >= self.max_attempts:
                logger.error("outbox %s: giving up: %s", delivery.idempotency_key, exc)
                self.store.mark_failed(delivery.id, f"gave up after {attempts} attempts: {exc}")
                metrics.ALERTS_FAILED.labels(delivery.channel).inc()
                report.failed += 1
                return
            delay = exc.retry_after
            if delay is None:
                delay = min(self.backoff_max, self.backoff_base * 2 ** (attempts - 1))
                delay *= random.uniform(0.5, 1.0)
            logger.warning("outbox %s: retry in %.1fs: %s", delivery.idempotency_key, delay, exc)
            self.store.mark_retry(delivery.id, str(exc), delay)
            metrics.ALERTS_RETRIED.labels(delivery.channel).inc()
            report.retried += 1
            return
        except DeliveryFatal as exc:
            logger.error("outbox %s: undeliverable: %s", delivery.idempotency_key, exc)
            self.store.mark_failed(delivery.id, str(exc))
            metrics.ALERTS_FAILED.labels(delivery.channel).inc()
            report.failed += 1
            report.fatal_errors.append(str(exc))
            return
        except Exception as exc:
            logger.exception("outbox %s: unexpected send error", delivery.idempotency_key)
            self.store.mark_retry(delivery.id, f"{type(exc).__name__}: {exc}", self.backoff_max)
            report.retried += 1
            return
        self._last_sent[delivery.channel] = self.clock()
        self.store.mark_sent(delivery.id, sent.channel_id, sent.ts)
        metrics.ALERTS_SENT.labels(delivery.channel).inc()
        report.sent += 1
