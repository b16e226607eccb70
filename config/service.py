"""Running earshot: once (poll everything, deliver, exit) or on a schedule until stopped.

The schedule is APScheduler 3's ``BackgroundScheduler``: one interval job per source (never
two runs of one source at once, missed runs coalesced) and one delivery job that drains the
outbox every couple of seconds. SIGINT and SIGTERM stop it cleanly: running polls finish,
the scheduler shuts down, and whatever is still queued stays in the outbox for next time.
"""

from __future__ import annotations

import logging
import signal
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from earshot.listener import metrics
from earshot.listener.sources import Source
from earshot.responders.delivery import DeliveryReport

from .http import OpsServer
from .wiring import Earshot

logger = logging.getLogger("earshot.service")

DELIVERY_EVERY = 2.0
DELIVERY_BATCH = 50


def run_once(app: Earshot, *, drain_timeout: float = 300.0) -> int:
    """Poll every source once, deliver what that produced, and return an exit code."""
    reports = app.pipeline.poll_all(app.sources, force=True)
    delivered = app.worker.drain(timeout=drain_timeout)
    stored = sum(r.stored for r in reports)
    failed_sources = [r.source for r in reports if r.errors]
    logger.info(
        "once: %d sources polled, %d new mentions, %d alerts sent, %d undeliverable%s",
        len(reports),
        stored,
        delivered.sent,
        delivered.failed,
        f", failing: {', '.join(failed_sources)}" if failed_sources else "",
    )
    return 1 if delivered.failed else 0


class Service:
    """The long-running process: scheduled polls and delivery until a stop signal."""

    def __init__(self, app: Earshot) -> None:
        self.app = app
        self.stopping = app.stop_event
        self.ops: OpsServer | None = None
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max(4, len(app.sources) + 1))},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
            timezone=UTC,
        )

    def poll(self, source: Source) -> None:
        if not self.stopping.is_set():
            self.app.pipeline.poll(source)

    def deliver(self) -> DeliveryReport | None:
        """One delivery round: send what is due, batch after batch, until a batch comes
        back short (or we are stopping)."""
        total = DeliveryReport()
        try:
            while not self.stopping.is_set():
                report = self.app.worker.run_once(limit=DELIVERY_BATCH)
                total.add(report)
                if report.sent + report.retried + report.failed < DELIVERY_BATCH:
                    break
        except Exception:
            logger.exception("delivery round failed")
        return total

    def start(self) -> None:
        now = datetime.now(UTC)
        for index, source in enumerate(self.app.sources):
            self.scheduler.add_job(
                self.poll,
                IntervalTrigger(seconds=self.app.every[source.key], timezone=UTC),
                args=[source],
                id=f"poll:{source.key}",
                name=f"poll {source.key}",
                next_run_time=now + timedelta(seconds=index * 0.5),
            )
        self.scheduler.add_job(
            self.deliver,
            IntervalTrigger(seconds=DELIVERY_EVERY, timezone=UTC),
            id="deliver",
            name="deliver outbox",
            next_run_time=now,
        )
        for job_id, seconds, function in self.app.extras.get("jobs", []):
            self.scheduler.add_job(
                function,
                IntervalTrigger(seconds=seconds, timezone=UTC),
                id=job_id,
                name=job_id,
                next_run_time=now + timedelta(seconds=seconds),
            )
        for job_id, fields, function in self.app.extras.get("cron_jobs", []):
            self.scheduler.add_job(
                function, CronTrigger(**fields), id=job_id, name=job_id, misfire_grace_time=3600
            )
        self.scheduler.start()
        slack = self.app.extras.get("slack")
        if slack is not None:
            slack.start()
        http = self.app.settings.http
        if http.enabled:
            self.ops = OpsServer(
                http.host,
                http.port,  # EARSHOT_HTTP__PORT / EARSHOT_HTTP_PORT are applied already
                ready=self.readiness,
                alive=lambda: bool(self.scheduler.running),
                before_metrics=self.refresh_gauges,
                post={"/slack/events": slack.handle_http}
                if slack is not None and slack.mode == "http"
                else None,
            )
            self.ops.start()
        logger.info(
            "earshot running: %d sources, delivering to %s",
            len(self.app.sources),
            self.app.channel.name,
        )

    def readiness(self) -> dict[str, Any]:
        """What /readyz reports: each check and the verdict."""
        database = self.app.store.ping()
        scheduler = bool(self.scheduler.running) and not self.stopping.is_set()
        health = [self.app.pipeline.health_of(source) for source in self.app.sources]
        failing = [h.key for h in health if h.status == "failing"]
        sources_ok = not health or len(failing) < len(health)
        checks: dict[str, Any] = {
            "database": database,
            "scheduler": scheduler,
            "sources": {h.key: h.status for h in health},
            "some_source_working": sources_ok,
        }
        checks.update(self.app.extras.get("readiness", lambda: {})())
        checks["ready"] = bool(database and scheduler and sources_ok) and all(
            v for k, v in checks.items() if k.endswith("_connected")
        )
        return checks

    def refresh_gauges(self) -> None:
        counts = self.app.store.outbox_counts()
        for status in ("pending", "sent", "failed"):
            metrics.OUTBOX_DEPTH.labels(status).set(counts.get(status, 0))

    def stop(self, *_: object) -> None:
        self.stopping.set()

    def run_forever(self) -> int:
        """Start, wait for SIGINT/SIGTERM, stop cleanly."""

        def _handler(signum: int, _frame: FrameType | None) -> None:
            logger.info("received %s, stopping", signal.Signals(signum).name)
            self.stopping.set()

        previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            self.stopping.wait()
        finally:
            self.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def shutdown(self) -> None:
        self.stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self.ops is not None:
            self.ops.stop()
        slack = self.app.extras.get("slack")
        if slack is not None:
            slack.stop()
        counts = self.app.store.outbox_counts()
        logger.info("stopped; outbox: %s", counts or "empty")
        self.app.close()
