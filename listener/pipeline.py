"""The pipeline: source -> mention -> match -> store (dedupe) -> classify -> route -> outbox.

``Pipeline.poll(source)`` runs one poll of one source. It never raises: a failing source
is logged, counted and reported in its ``SourceHealth``, and the next source goes on.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from . import metrics
from .models import Mention, MentionStatus, utcnow
from .query import Document, QuerySet
from .redaction import redact
from .relevance import EMBED_CHARS, Relevance
from .routing import Router
from .sentiment import Classifier
from .sources.base import FatalError, RateLimitedError, Source, SourceError, describe
from .store import Route, Store
from .stories import StoryOptions

logger = logging.getLogger("earshot.listener.pipeline")

#: A source silent this long (no new items, poll after poll) raises one notice, unless its
#: usual gap between new items is longer (see ``Pipeline.silent_after``).
SILENT_AFTER = 3 * 86400.0
#: Silence counts only when it is this many times the source's usual gap.
SILENT_FACTOR = 3.0
#: The usual gap is a moving average; each new gap weighs this much.
_GAP_WEIGHT = 0.2

#: Stored text is cut here; classification reads the first ``CLASSIFY_CHARS``.
MAX_TEXT = 100_000
MAX_FIELD = 2_000
CLASSIFY_CHARS = EMBED_CHARS  # relevance reads the classifier's embedding of the same text

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\x00"))


def clean(value: str, limit: int) -> str:
    """Text safe to store anywhere: no NULs, no lone surrogates, at most ``limit`` chars."""
    value = value.translate(_ZERO_WIDTH)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", errors="replace").decode("utf-8")
    return value[:limit]


def default_owner() -> str:
    """This replica's id for poll leases: the host name.

    A restarted process on the same host takes its own lease back at once instead of
    waiting for it to expire; replicas on different hosts (pods) exclude each other. Two
    replicas on one host need distinct ids (``EARSHOT_REPLICA_ID`` in the config layer).
    """
    return socket.gethostname()


@dataclass
class SourceHealth:
    """How one source is doing: ``ok``, ``degraded`` (some units failed) or ``failing``."""

    key: str
    status: str = "unknown"
    consecutive_failures: int = 0
    last_success: datetime | None = None
    last_error: str | None = None
    not_before: float = 0.0


@dataclass
class PollReport:
    """The figures of one poll."""

    source: str
    fetched: int = 0
    matched: int = 0
    stored: int = 0
    duplicates: int = 0
    queued: int = 0
    skipped: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    error_kinds: list[str] = field(default_factory=list)
    labels: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    skipped_busy: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class _Finished:
    """What a poll's ingest transaction did besides storing (``Pipeline._finish``): set
    only once that transaction committed."""

    recorded: bool = False  # the poll's health (and a recovery notice, if one was due)
    released: bool = False  # the poll lease given back
    silence: bool = False  # the silence state checked and stored
    recovered: bool = False  # a recovery notice queued


class Pipeline:
    """Polls sources and turns what they find into stored, classified, queued mentions."""

    def __init__(
        self,
        store: Store,
        queries: QuerySet,
        classifier: Classifier,
        router: Router,
        *,
        backoff_base: float = 30.0,
        backoff_max: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        owner: str | None = None,
        lease_seconds: float = 900.0,
        health_channel: str | None = None,
        failing_after: int = 3,
        source_queries: Mapping[str, QuerySet] | None = None,
        storm: tuple[int, float] | None = None,
        stories: StoryOptions | None = None,
        relevance: Relevance | None = None,
        unrelated_digests: Mapping[str, str] | None = None,
        silent_after: float | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        #: A source whose polls succeed but bring no new item for this long (and for
        #: ``SILENT_FACTOR`` times its usual gap between new items) raises one health
        #: notice, and one when items come again. ``None`` or 0: never.
        self.silent_after = silent_after or None
        #: Unix time, for the silence check (``clock`` is monotonic, for backoff).
        self.wall_clock = wall_clock
        #: ``(threshold, window seconds)`` of alert storms (see ``Store.ingest``).
        self.storm = storm
        #: How new mentions are grouped into stories (``None``: they are not).
        self.stories = stories
        #: Per-query relevance (``None``: mentions are not scored). A mention scored below
        #: its threshold that would alert goes to ``unrelated_digests[channel]`` ("hourly" or
        #: "daily") as "probably unrelated", or, when that channel has no digest, is stored
        #: only; it is never amplified.
        self.relevance = relevance
        self.unrelated_digests = dict(unrelated_digests or {})
        #: Per source type, the queries that apply to it (queries naming their ``sources``);
        #: a type not in it uses ``queries``.
        self.source_queries = dict(source_queries or {})
        self.owner = owner or default_owner()
        self.lease_seconds = lease_seconds
        self.health_channel = health_channel
        self.failing_after = failing_after
        self.store = store
        self.queries = queries
        self.classifier = classifier
        self.router = router
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.clock = clock
        self.health: dict[str, SourceHealth] = {}
        self.totals: Counter[str] = Counter()
        self._waited: dict[str, float] = {}

    def health_of(self, source: Source) -> SourceHealth:
        return self.health.setdefault(source.key, SourceHealth(source.key))

    def poll(self, source: Source, *, force: bool = False) -> PollReport:
        """Poll ``source`` once and store what it found. Never raises."""
        report = PollReport(source.key)
        health = self.health_of(source)
        if not force and self.clock() < health.not_before:
            wait = health.not_before - self.clock()
            logger.info("%s: backing off, next poll in %.0fs", source.key, wait)
            metrics.POLLS.labels(source.key, "skipped").inc()
            return report
        try:
            leased = self.store.acquire_source(source.key, self.owner, self.lease_seconds)
        except Exception as exc:
            logger.error(
                "%s: cannot reach the database to take the poll lease: %s", source.key, exc
            )
            report.errors.append(f"database: {type(exc).__name__}")
            report.error_kinds.append("database")
            return report
        if not leased:
            logger.info("%s: another replica is polling it, skipped", source.key)
            metrics.POLLS.labels(source.key, "skipped").inc()
            report.skipped_busy = True
            return report
        finished = _Finished()
        try:
            self._poll_leased(source, report, health, finished)
        finally:
            try:
                if not finished.released:
                    self.store.release_source(source.key, self.owner)
            except Exception as exc:  # the lease expires on its own
                logger.warning("%s: could not release the poll lease: %s", source.key, exc)
        return report

    def _poll_leased(
        self, source: Source, report: PollReport, health: SourceHealth, finished: _Finished
    ) -> None:
        started = time.perf_counter()
        try:
            self._poll(source, report, finished)
        except SourceError as exc:
            if not report.errors:  # else every unit failed: ``exc`` is counted among them
                report.errors.append(str(exc))
                report.error_kinds.append(type(exc).__name__)
            self._failed(source, health, exc)
        except Exception as exc:
            logger.exception("%s: poll failed", source.key, extra={"source": source.key})
            report.errors.append(describe(exc))
            report.error_kinds.append("internal")
            self._failed(source, health, exc)
        else:
            if report.errors:
                health.status = "degraded"
                health.last_error = report.errors[-1]
            else:
                health.status = "ok"
                health.last_error = None
            health.consecutive_failures = 0
            health.last_success = utcnow()
            health.not_before = 0.0
        report.seconds = time.perf_counter() - started
        self._count(report, source, health)
        logger.info(
            "%s: fetched=%d matched=%d stored=%d duplicates=%d queued=%d skipped=%d errors=%d",
            source.key,
            report.fetched,
            report.matched,
            report.stored,
            report.duplicates,
            report.queued,
            report.skipped,
            len(report.errors),
            extra={"source": source.key},
        )
        self._record_health(source, health, report, finished)

    def _record_health(
        self, source: Source, health: SourceHealth, report: PollReport, finished: _Finished
    ) -> None:
        """Persist how the poll went; alert a failing streak once, and its recovery once;
        the same for a silent source. What the poll's ingest transaction did already
        (``_finish``: every poll that did not fail) is not done again."""
        if not finished.recorded:
            try:
                self._alert_health(source, health)
            except Exception as exc:
                logger.error("%s: could not record source health: %s", source.key, describe(exc))
        if self.silent_after and health.status in ("ok", "degraded") and not finished.silence:
            try:
                self._check_silence(source, report)
            except Exception as exc:
                logger.error("%s: could not check for silence: %s", source.key, describe(exc))

    def _check_silence(
        self,
        source: Source,
        report: PollReport,
        state: dict[str, Any] | None = None,
        session: Session | None = None,
    ) -> None:
        """Track when the source last brought new items; notice a long silence once.

        The state lives in the cursors table under ``health/<source key>`` (shared by the
        replicas, like the cursor): the last time a poll fetched something new, the usual
        gap between such polls (a moving average) and whether a notice is out. ``state``
        is that document when the caller read it already; with ``session`` the notices
        and the new state are written in the caller's transaction.
        """
        assert self.silent_after is not None
        key = f"health/{source.key}"
        now = self.wall_clock()
        if state is None:
            state = self.store.get_cursor(key) or {}

        def put(value: dict[str, Any]) -> None:
            if session is None:
                self.store.put_cursor(key, value)
            else:
                self.store.put_cursor_in(session, key, value)

        last = _number(state.get("last_item"))
        gap = _number(state.get("gap"))
        alerted = state.get("alerted") is True
        if last is None or report.fetched:
            if last is not None:
                seen = max(0.0, now - last)
                gap = seen if gap is None else gap + _GAP_WEIGHT * (seen - gap)
            if alerted and last is not None:
                self._notice(
                    f"health:{source.key}:silent-over:{_iso(last)}",
                    f"Source {source.key} has new items again",
                    [f"{report.fetched} new after {_span(now - last)} without any."],
                    session,
                )
                logger.info("%s: new items again after %s", source.key, _span(now - last))
            put({"last_item": now, "gap": gap, "alerted": False})
            return
        silence = now - last
        threshold = max(self.silent_after, SILENT_FACTOR * (gap or 0.0))
        if alerted or silence < threshold:
            return
        usual = f" (new items usually come every {_span(gap)})" if gap else ""
        self._notice(
            f"health:{source.key}:silent:{_iso(last)}",
            f"Source {source.key}: no new items for {_span(silence)}",
            [
                f"Its polls succeed but have brought nothing new since {_iso(last)}{usual}.",
                "Check the source's queries, feeds or settings, or whether the API changed.",
            ],
            session,
        )
        logger.warning("%s: no new items for %s", source.key, _span(silence))
        put({**state, "alerted": True})

    def _notice(
        self, key: str, title: str, lines: list[str], session: Session | None = None
    ) -> None:
        if self.health_channel:
            payload = {"title": title, "lines": lines}
            if session is None:
                self.store.enqueue(key[:255], self.health_channel, "health", payload)
            else:
                self.store.queue(session, key[:255], self.health_channel, "health", payload)

    def _finish(
        self,
        session: Session,
        source: Source,
        report: PollReport,
        silence: dict[str, Any] | None,
        done: _Finished,
    ) -> None:
        """The end of a poll that did not fail, in its ingest transaction: its health (and
        the recovery notice of a failing streak that was alerted), the end of its lease
        and its silence check commit with its mentions and cursor. ``done`` says what was
        done; the caller applies it once the transaction committed."""
        status = "degraded" if report.errors else "ok"
        error = report.errors[-1] if report.errors else None
        state = self.store.finish_poll(session, source.key, self.owner, status, error)
        if state is not None:
            if self.health_channel and state.health_alerted:
                self.store.queue(
                    session,
                    _recovery_key(source.key, state.failing_since),
                    self.health_channel,
                    "health",
                    {"title": f"Source {source.key} recovered", "lines": ["Polling works again."]},
                )
                self.store.set_health_alerted_in(session, source.key, False)
                done.recovered = True
            done.recorded, done.released = True, state.released
        if self.silent_after and silence is not None:
            self._check_silence(source, report, silence, session)
            done.silence = True

    def _alert_health(self, source: Source, health: SourceHealth) -> None:
        state = self.store.record_poll(source.key, health.status, health.last_error)
        if not self.health_channel:
            return
        streak = state.failing_since.isoformat() if state.failing_since else "unknown"
        if (
            state.status == "failing"
            and state.consecutive_failures >= self.failing_after
            and not state.health_alerted
        ):
            self.store.enqueue(
                f"health:{source.key}:failing:{streak}",
                self.health_channel,
                "health",
                {
                    "title": f"Source {source.key} is failing",
                    "lines": [
                        f"{state.consecutive_failures} polls in a row failed.",
                        f"Last error: {redact(state.last_error or 'unknown')}",
                        "earshot keeps retrying with backoff; check the source's settings.",
                    ],
                },
            )
            self.store.set_health_alerted(source.key, True)
            logger.error("%s: failing %d polls in a row", source.key, state.consecutive_failures)
        elif state.status != "failing" and state.health_alerted:
            self.store.enqueue(
                _recovery_key(source.key, state.failing_since),
                self.health_channel,
                "health",
                {"title": f"Source {source.key} recovered", "lines": ["Polling works again."]},
            )
            self.store.set_health_alerted(source.key, False)
            logger.info("%s: recovered", source.key)

    def poll_all(self, sources: Sequence[Source], *, force: bool = False) -> list[PollReport]:
        return [self.poll(source, force=force) for source in sources]

    def _poll(self, source: Source, report: PollReport, finished: _Finished) -> None:
        silence_key = f"health/{source.key}"
        keys = [source.key, silence_key] if self.silent_after else [source.key]
        cursors = self.store.get_cursors(keys)  # the poll's cursor and its silence state
        result = source.poll(cursors[source.key], self.queries_for(source).search_terms())
        report.requests = result.requests
        report.fetched = len(result.mentions)
        report.skipped = result.skipped
        report.errors.extend(str(exc) for exc in result.errors)
        report.error_kinds.extend(type(exc).__name__ for exc in result.errors)
        kept = [m for m in result.mentions if self._match(source, m)]
        report.matched = len(kept)
        if self.relevance is not None and kept:
            try:
                self.relevance.refresh()  # what every replica stored and leads clicked since
                if not source.needs_query:
                    self.relevance.prime_feed(kept)  # a review feed's first page counts
            except Exception as exc:  # scoring goes on with the models as they are
                logger.warning("%s: could not refresh relevance: %s", source.key, exc)
        # Store whatever the poll got, with the cursor of the units that succeeded (a failed
        # unit's cursor is left where it was). A poll that did not fail (some unit worked)
        # records its health and ends its lease in the same transaction.
        failed = bool(result.errors) and len(result.errors) >= max(1, result.units)
        done = _Finished()
        finish: Callable[[Session], None] | None = None
        if not failed:
            silence = (cursors.get(silence_key) or {}) if self.silent_after else None

            def finish_poll(session: Session) -> None:
                self._finish(session, source, report, silence, done)

            finish = finish_poll
        ingest = self.store.ingest(
            source.key,
            kept,
            result.cursor,
            self._prepare,
            storm=self.storm,
            stories=self.stories,
            finish=finish,
        )
        # committed: what the transaction did counts now
        finished.recorded, finished.released = done.recorded, done.released
        finished.silence = done.silence
        if done.recovered:
            logger.info("%s: recovered", source.key)
        report.stored = len(ingest.stored)
        report.duplicates = ingest.duplicates
        report.queued = ingest.queued
        report.labels.update(m.sentiment_label or "" for m in ingest.stored)
        for mention in ingest.stored:
            logger.info(
                "%s: new mention %s (%s)",
                source.key,
                mention.id,
                mention.sentiment_label,
                extra={
                    "source": mention.source,
                    "source_key": source.key,
                    "query": mention.matched_query,
                    "mention_id": mention.id,
                    "sentiment": mention.sentiment_label,
                },
            )
        if failed:
            raise result.errors[0]

    def _match(self, source: Source, mention: Mention) -> bool:
        mention.title = clean(mention.title, MAX_FIELD)
        mention.text = clean(mention.text, MAX_TEXT)
        mention.author = clean(mention.author, 255)
        mention.site = clean(mention.site, 255)
        mention.url = clean(mention.url, MAX_FIELD)
        doc = Document(
            text=mention.body, author=mention.author, site=mention.site, lang=mention.language
        )
        if not source.needs_query:
            return not self.queries.excludes_author(mention.author)
        query = self.queries_for(source).match(doc)
        if query is None:
            return False
        mention.matched_query = query.text[:500]
        return True

    def queries_for(self, source: Source) -> QuerySet:
        """The queries that apply to ``source`` (by its type)."""
        return self.source_queries.get(source.type, self.queries)

    def _prepare(self, mention: Mention) -> list[Route]:
        result = self.classifier.classify(
            mention.body[:CLASSIFY_CHARS], mention.rating, mention.language
        )
        mention.sentiment_label = str(result.label)
        mention.sentiment_score = round(float(result.score), 4)
        mention.sentiment_reasons = list(result.reasons)
        # Classifiers written before the meaning fields (a plugin, a test stub) return the
        # old shape: no confidence, no intents, no model name.
        confidence = getattr(result, "confidence", None)
        mention.sentiment_confidence = (
            round(float(confidence), 4) if confidence is not None else None
        )
        mention.intents = [str(intent) for intent in getattr(result, "intents", None) or ()]
        model = getattr(result, "model", None)
        mention.model_version = str(model)[:64] if model else None
        if result.language and not mention.language:
            mention.language = result.language[:16]
        if self.relevance is not None:
            # One embedding per mention: the classifier's, when relevance embeds texts the
            # same way (the wiring gives it the classifier's ``embed_texts``).
            vector = None
            if self.relevance.embeds_with(getattr(self.classifier, "embed_texts", None)):
                vector = getattr(result, "embedding", None)
            mention.relevance = self.relevance.score(mention, vector)
        if getattr(result, "skip", False):
            return []  # stored, not alerted (e.g. a language the config skips)
        if mention.status == MentionStatus.HANDLED.value:
            # Answered where it was posted (a store review with the team's reply, read back
            # by the source): stored and classified, never alerted as unanswered.
            return []
        routes = self.router.routes(mention)
        if routes and self.relevance is not None and self.relevance.below(mention.relevance):
            return self._hold_unrelated(mention, routes)
        return routes

    def _hold_unrelated(self, mention: Mention, routes: Sequence[Route]) -> list[Route]:
        """A mention that would alert but is probably unrelated to its query: held for the
        digest of the first alert channel that has one (listed there as "probably
        unrelated"), else stored only. Never alerted, never amplified."""
        metrics.UNRELATED.labels(mention.source).inc()
        for channel, _kind in routes:
            digest = self.unrelated_digests.get(channel)
            if digest:
                mention.digest = digest
                mention.digest_channel = channel
                break
        return []

    def _failed(self, source: Source, health: SourceHealth, exc: Exception) -> None:
        health.consecutive_failures += 1
        health.status = "failing"
        # A SourceError's message is redacted already and carries its cause; anything else
        # is described (type, message, cause) and redacted here.
        health.last_error = redact(str(exc)) if isinstance(exc, SourceError) else describe(exc)
        if isinstance(exc, RateLimitedError) and exc.retry_after:
            delay = exc.retry_after
        elif isinstance(exc, FatalError):
            delay = self.backoff_max / 4
        else:
            delay = self.backoff_base * 2 ** (health.consecutive_failures - 1)
        delay = min(self.backoff_max, delay) * random.uniform(0.8, 1.2)
        health.not_before = self.clock() + delay
        logger.warning(
            "%s: poll failed (%d in a row), next try in %.0fs: %s",
            source.key,
            health.consecutive_failures,
            delay,
            health.last_error,
            extra={"source": source.key},
        )
        logger.debug("%s: the failure in full", source.key, exc_info=exc)

    def _count(self, report: PollReport, source: Source, health: SourceHealth) -> None:
        key = source.key
        metrics.POLLS.labels(key, health.status).inc()
        metrics.FETCHED.labels(key).inc(report.fetched)
        metrics.DUPLICATES.labels(key).inc(report.duplicates)
        metrics.SKIPPED.labels(key).inc(report.skipped)
        for label, count in report.labels.items():
            metrics.MENTIONS.labels(key, label or "none").inc(count)
        for error in report.error_kinds:
            metrics.POLL_ERRORS.labels(key, error).inc()
        metrics.POLL_SECONDS.labels(key).observe(report.seconds)
        metrics.SOURCE_UP.labels(key).set({"ok": 1.0, "degraded": 0.5}.get(health.status, 0.0))
        waited = source.http.limiter.waited
        if waited > self._waited.get(key, 0.0):
            metrics.RATE_LIMIT_WAIT.labels(key).inc(waited - self._waited.get(key, 0.0))
            self._waited[key] = waited
        self.totals["polls"] += 1
        self.totals["fetched"] += report.fetched
        self.totals["stored"] += report.stored
        self.totals["duplicates"] += report.duplicates
        self.totals["queued"] += report.queued
        self.totals["skipped"] += report.skipped
        self.totals["errors"] += len(report.errors)


def _recovery_key(key: str, failing_since: datetime | None) -> str:
    """The idempotency key of a source's recovery notice (one per recovery of a streak)."""
    streak = failing_since.isoformat() if failing_since else "unknown"
    return f"health:{key}:recovered:{streak}:{utcnow().isoformat()}"


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return float(value)
    return None


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


def _span(seconds: float | None) -> str:
    """``3 days``, ``5 hours``, ``12 minutes``: a duration as a person says it."""
    seconds = max(0.0, seconds or 0.0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{int(seconds)} seconds"
