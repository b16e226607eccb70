"""Running earshot: once (poll everything, deliver, exit) or on a schedule until stopped.

The schedule is APScheduler 3's ``BackgroundScheduler``: one interval job per source (never
two runs of one source at once, missed runs coalesced) and one delivery job that drains the
outbox every couple of seconds. SIGINT and SIGTERM stop it cleanly: running polls finish,
the scheduler shuts down, and whatever is still queued stays in the outbox for next time.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import IO, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from earshot.listener import metrics
from earshot.listener.pipeline import PollReport
from earshot.listener.sources import Source
from earshot.responders.delivery import DeliveryReport

from . import exitcodes
from .http import OpsServer
from .memory import release_free_memory
from .wiring import Earshot

logger = logging.getLogger("earshot.service")

DELIVERY_EVERY = 2.0
DELIVERY_BATCH = 50


class CannotStart(Exception):
    """``earshot run`` cannot start: something it needs is taken (the message says what,
    and how to change it)."""


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


@dataclass
class OnceOutcome:
    """What ``earshot run --once`` did, its exit code and its one summary line."""

    sources: int = 0
    failed_sources: list[str] = field(default_factory=list)
    degraded_sources: list[str] = field(default_factory=list)
    stored: int = 0
    sent: int = 0
    undeliverable: int = 0
    pending: int = 0
    drain_timeout: float = 0.0

    @property
    def code(self) -> int:
        """3 when every source failed, else 1 when an alert failed or is still pending,
        else 0."""
        if self.sources and len(self.failed_sources) == self.sources:
            return exitcodes.SOURCES_FAILED
        if self.undeliverable or self.pending:
            return exitcodes.FAILED
        return exitcodes.OK

    def summary(self) -> str:
        polled = _count(self.sources, "source") + " polled"
        if self.failed_sources:
            polled += f" ({len(self.failed_sources)} failed: {', '.join(self.failed_sources)})"
        if self.degraded_sources:
            polled += f" ({len(self.degraded_sources)} in part: "
            polled += f"{', '.join(self.degraded_sources)})"
        parts = [
            polled,
            _count(self.stored, "new mention"),
            _count(self.sent, "alert") + " sent",
            f"{self.undeliverable} undeliverable",
            f"{self.pending} still pending"
            + (f" after the {self.drain_timeout:g}s drain timeout" if self.pending else ""),
        ]
        return f"earshot run --once: {', '.join(parts)}; exit {self.code}"


def run_once(app: Earshot, *, drain_timeout: float | None = None) -> int:
    """Poll every source once, deliver what that produced, and return the exit code
    (``OnceOutcome.code``)."""
    return poll_and_deliver(app, drain_timeout=drain_timeout).code


def poll_and_deliver(app: Earshot, *, drain_timeout: float | None = None) -> OnceOutcome:
    """Poll every source once, deliver what that produced, and say how it went.

    ``drain_timeout`` (default ``[slack] drain_timeout``) bounds the wait for alerts that
    are being retried (Slack's ``Retry-After``, a 5xx, Slack unreachable); whatever is
    still pending then stays in the outbox for the next run, and the exit code says so.
    """
    if drain_timeout is None:
        drain_timeout = app.settings.slack.drain_timeout
    reports = app.pipeline.poll_all(app.sources, force=True)
    delivered = app.worker.drain(timeout=drain_timeout)
    outcome = OnceOutcome(
        sources=len(reports),
        stored=sum(r.stored for r in reports),
        sent=delivered.sent,
        undeliverable=delivered.failed,
        pending=app.store.outbox_counts().get("pending", 0),
        drain_timeout=drain_timeout,
    )
    for source, report in zip(app.sources, reports, strict=True):
        if not report.errors:
            continue
        failed = "database" in report.error_kinds
        if app.pipeline.health_of(source).status == "failing" or failed:
            outcome.failed_sources.append(report.source)
        else:
            outcome.degraded_sources.append(report.source)
    logger.info("%s", outcome.summary())
    return outcome


class RunLock:
    """The one ``earshot run`` on a SQLite file: ``<file>.lock``, held while it runs.

    SQLite is earshot's single-process store (several replicas need PostgreSQL): two
    processes on one file would each poll every source on their own schedule (twice the
    requests the budgets allow) and contend for the file's write lock. The lock is an
    ``flock`` the kernel drops when the process ends, however it ends.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[str] | None = None

    @classmethod
    def for_url(cls, url: str) -> RunLock | None:
        """The lock for a SQLite file URL; ``None`` for memory or another database."""
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        database = parsed.database or ""
        if not parsed.drivername.startswith("sqlite") or database in ("", ":memory:"):
            return None
        return cls(f"{database}.lock")

    def acquire(self) -> None:
        """Take the lock or raise ``CannotStart`` naming the process that holds it."""
        import fcntl

        try:
            handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open
        except OSError:
            return  # no lock file possible here (read-only dir): SQLite will say more
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            database = self.path.removesuffix(".lock")
            raise CannotStart(
                f"another earshot run (pid {holder}) is using {database}: stop it first; "
                "SQLite serves one process (give this one its own [storage] path, or use "
                "PostgreSQL through DATABASE_URL for several replicas)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None


def poll_source(app: Earshot, source: Source, *, force: bool = False) -> PollReport:
    """One scheduled poll of ``source``, then the allocator's free pages back to the system
    (``memory.release_free_memory``: what the poll freed on its thread stays resident
    otherwise)."""
    try:
        return app.pipeline.poll(source, force=force)
    finally:
        release_free_memory()


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
            poll_source(self.app, source)

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

    def bind(self) -> None:
        """Open the ops endpoint's port (``[http]``), or raise ``CannotStart`` saying
        which port is taken and how to change it. Nothing else has started yet."""
        http = self.app.settings.http
        if not http.enabled:
            return
        slack = self.app.extras.get("slack")
        try:
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
        except OSError as exc:
            raise CannotStart(
                f"cannot serve the ops endpoint on {http.host}:{http.port}: "
                f"{exc.strerror or exc} (another earshot, or another program, has it?); "
                "choose a free port with [http] port or EARSHOT_HTTP__PORT, "
                "or turn the endpoint off with [http] enabled = false"
            ) from None

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
        if self.ops is None:
            self.bind()
        if self.ops is not None:
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
        """Start, wait for SIGINT/SIGTERM, stop cleanly.

        Raises ``CannotStart`` (before anything ran, the app closed) when the ops port is
        taken.
        """
        try:
            self.bind()
        except CannotStart:
            self.app.close()
            raise

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
