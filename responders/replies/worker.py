"""The reply sender: posts queued replies on their platform, exactly once.

A round claims due replies (``workflow.claim_replies`` counts the attempt before anything
is posted), and for each:

1. if an earlier attempt was begun (``again``: a crash between the platform's answer and
   "sent", a timeout, a 5xx after the platform stored it), the writer looks the reply up
   first; found, it is marked sent and not posted again. A platform that cannot be asked
   (``can_look_up`` False) gets no second post: the reply becomes ``uncertain`` and a note
   in the alert's thread asks a person to check.
2. otherwise it is posted; the answer (the platform's id, link and time) is stored with the
   mention handled and a note "Replied by @lead" in the alert's thread, in one transaction.

A refused reply (too long, no permission, the post deleted) is ``failed`` with the
platform's reason, told in the thread; a passing error is retried with backoff.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from earshot.listener import metrics
from earshot.listener import workflow as wf
from earshot.listener.models import Reply, ReplyStatus, as_utc, utcnow
from earshot.listener.store import Store

from .base import Posted, ReplyFatal, ReplyRetry, Writer
from .slack import sent_note, trouble_note

logger = logging.getLogger("earshot.responders.replies")

REPLIES = Counter(
    "earshot_replies",
    "Replies to customers by platform and outcome (sent, found, retried, failed, uncertain).",
    ["platform", "outcome"],
    registry=metrics.REGISTRY,
)


@dataclass
class SendReport:
    """What a round did."""

    sent: int = 0
    found: int = 0
    retried: int = 0
    failed: int = 0
    uncertain: int = 0


class ReplySender:
    """Sends what ``replies`` holds through ``writers`` (platform -> writer).

    ``on_sent(reply)`` runs after a reply is stored as sent (the Slack app re-renders the
    alert with "Replied by"); its errors are logged, never raised.
    """

    def __init__(
        self,
        store: Store,
        writers: Mapping[str, Writer],
        *,
        lease_seconds: float = 120.0,
        backoff_base: float = 5.0,
        backoff_max: float = 900.0,
        max_attempts: int = 20,
        on_sent: Callable[[Reply], object] | None = None,
    ) -> None:
        self.store = store
        self.writers = dict(writers)
        self.lease_seconds = lease_seconds
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_attempts = max_attempts
        self.on_sent = on_sent

    def run_once(self, limit: int = 20) -> SendReport:
        """Claim and send up to ``limit`` due replies."""
        report = SendReport()
        for claimed in wf.claim_replies(self.store, limit, self.lease_seconds):
            try:
                self._send(claimed, report)
            except Exception as exc:  # a bug, not the platform: keep the row, look first
                logger.exception("reply %s: unexpected error", claimed.reply.id)
                wf.mark_reply_retry(
                    self.store, int(claimed.reply.id or 0), f"{type(exc).__name__}", 60.0
                )
                report.retried += 1
        return report

    def _send(self, claimed: wf.ClaimedReply, report: SendReport) -> None:
        reply, mention = claimed.reply, claimed.mention
        reply_id = int(reply.id or 0)
        writer = self.writers.get(reply.platform)
        if writer is None:
            self._end(reply, ReplyStatus.FAILED, f"earshot cannot write to {reply.platform}")
            report.failed += 1
            return
        attempted = as_utc(reply.attempted_at) or utcnow()
        try:
            posted: Posted | None = None
            if claimed.again:
                if not writer.can_look_up:
                    self._end(
                        reply,
                        ReplyStatus.UNCERTAIN,
                        f"an earlier attempt may have posted it ({reply.last_error or 'crash'})",
                    )
                    report.uncertain += 1
                    return
                posted = writer.find(mention, reply.text, reply.key, attempted)
                if posted is not None:
                    logger.info(
                        "reply %s: already on %s, not posted again", reply_id, reply.platform
                    )
                    REPLIES.labels(reply.platform, "found").inc()
                    report.found += 1
            if posted is None:
                posted = writer.post(mention, reply.text, reply.key, attempted)
                REPLIES.labels(reply.platform, "sent").inc()
                report.sent += 1
        except ReplyRetry as exc:
            if reply.attempts >= self.max_attempts:
                self._end(
                    reply,
                    ReplyStatus.UNCERTAIN if exc.uncertain else ReplyStatus.FAILED,
                    f"gave up after {reply.attempts} attempts: {exc}",
                )
                report.failed += 1
                return
            delay = exc.retry_after
            if delay is None:
                delay = min(self.backoff_max, self.backoff_base * 2 ** (reply.attempts - 1))
                delay *= random.uniform(0.5, 1.0)
            logger.warning("reply %s: retry in %.0fs: %s", reply_id, delay, exc)
            wf.mark_reply_retry(self.store, reply_id, str(exc), delay)
            REPLIES.labels(reply.platform, "retried").inc()
            report.retried += 1
            return
        except ReplyFatal as exc:
            logger.error("reply %s: %s refused it: %s", reply_id, reply.platform, exc)
            self._end(reply, ReplyStatus.FAILED, str(exc))
            report.failed += 1
            return
        change = wf.mark_reply_sent(
            self.store,
            reply_id,
            remote_id=posted.remote_id,
            url=posted.url,
            at=posted.at,
            note=sent_note,
        )
        if change.changed and change.reply is not None and self.on_sent is not None:
            try:
                self.on_sent(change.reply)
            except Exception:
                logger.exception("reply %s: updating the alert failed", reply_id)

    def _end(self, reply: Reply, status: ReplyStatus, error: str) -> None:
        REPLIES.labels(reply.platform, status.value).inc()
        wf.end_reply(
            self.store, int(reply.id or 0), status, error, note=trouble_note(status, error)
        )


def writers_summary(writers: Mapping[str, Any]) -> str:
    """``mastodon, bluesky`` for logs."""
    return ", ".join(sorted(writers)) or "none"
