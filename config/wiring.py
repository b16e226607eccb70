"""Wiring: turn validated settings into running parts (store, sources, pipeline, delivery).

This is the only place that knows both the settings and the classes they configure;
``earshot.listener`` and ``earshot.responders`` get plain arguments.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from slack_sdk import WebClient
from sqlmodel import Session

from earshot.listener import USER_AGENT, metrics
from earshot.listener.digest import DigestSchedule, PeriodKind, enqueue_digest
from earshot.listener.meaning import MeaningModel
from earshot.listener.model_versions import active_model, active_version
from earshot.listener.pipeline import Pipeline
from earshot.listener.query import QuerySet
from earshot.listener.reach import ReachPolicy
from earshot.listener.reach_refresh import RefreshReport, readers, refresh_reach
from earshot.listener.relevance import Relevance
from earshot.listener.routing import Action, Router, RouteRule, query_rules
from earshot.listener.sentiment import Classifier, ExperienceClassifier, VaderClassifier
from earshot.listener.sources import SOURCE_TYPES, RateLimiter, Source, SourceHttp
from earshot.listener.spikes import ShiftConfig, SpikeConfig, check_shifts, check_spikes
from earshot.listener.store import Store
from earshot.listener.stories import StoryOptions
from earshot.listener.workflow import MutingRouter, exclusions, with_exclusions
from earshot.responders.base import Channel
from earshot.responders.console import ConsoleChannel
from earshot.responders.delivery import DeliveryWorker
from earshot.responders.digest import SlackFileChannel
from earshot.responders.interactions import InteractionConfig
from earshot.responders.replies.base import Writer
from earshot.responders.replies.slack import alert_updater
from earshot.responders.replies.worker import ReplySender
from earshot.responders.slack import SlackChannel

from .migrations import ensure_schema
from .settings import ConfigError, Secrets, Settings, database_url, source_name

if TYPE_CHECKING:
    from earshot.responders.replies.slack import ReplyConfig
    from earshot.responders.slack_app import SlackInteractivity

logger = logging.getLogger("earshot.config")


@dataclass
class Earshot:
    """Everything one earshot process runs, built from its settings."""

    settings: Settings
    secrets: Secrets
    store: Store
    client: httpx.Client
    sources: list[Source]
    every: dict[str, float]
    pipeline: Pipeline
    channel: Channel
    worker: DeliveryWorker
    stop_event: threading.Event = field(default_factory=threading.Event)
    extras: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.client.close()
        self.store.engine.dispose()


def build_client(transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """The one HTTP client every source shares."""
    return httpx.Client(
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        timeout=httpx.Timeout(20.0, connect=10.0),
        follow_redirects=True,
        transport=transport,
    )


def build_sources(
    settings: Settings,
    client: httpx.Client,
    stop: threading.Event | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[list[Source], dict[str, float]]:
    """One ``Source`` per ``[[sources]]`` entry, each with its own rate limiter.

    Rate-limit waits end early when ``stop`` is set, so a shutdown never waits them out.
    Secrets come from ``env`` (default: the process environment). Raises ``ConfigError``
    naming each source that refuses its settings (GitHub discussions without a token, a
    Discourse source without ``base_url``...).
    """
    stop = stop or threading.Event()
    env = os.environ if env is None else env
    sources: list[Source] = []
    every: dict[str, float] = {}
    problems: list[str] = []
    for index, entry in enumerate(settings.sources):
        cls = SOURCE_TYPES[entry.type]
        rpm = entry.requests_per_minute or cls.default_requests_per_minute
        limiter = RateLimiter(rpm, sleep=stop.wait)
        http = SourceHttp(client, limiter, timeout=entry.timeout, stop=stop)
        options = {**entry.options(), **entry.secret_values(env)}
        try:
            source = cls(
                http,
                name=source_name(entry),
                base_url=entry.base_url,
                backfill_seconds=entry.backfill,
                **options,
            )
        except ValueError as exc:  # what the source refuses, often for a missing secret
            problems.append(f"sources[{index}] ({source_name(entry)}): {exc}")
            continue
        sources.append(source)
        every[source.key] = entry.every
    if problems:
        raise ConfigError("[[sources]]", problems)
    return sources, every


def build_queries(settings: Settings, store: Store) -> tuple[QuerySet, dict[str, str]]:
    """The configured queries with the exclusions leads added from Slack ("Not relevant").

    Returns the ``QuerySet`` and a map from each effective query text back to the
    configured one (mutes and reports name the configured text).
    """
    excluded = exclusions(store)
    effective = [with_exclusions(q, excluded.get(q, [])) for q in settings.product.queries]
    authors = settings.product.excluded_authors
    try:
        queries = QuerySet(effective, excluded_authors=authors)
    except ValueError:
        logger.exception("stored query exclusions do not parse; matching without them")
        effective = list(settings.product.queries)
        queries = QuerySet(effective, excluded_authors=authors)
    return queries, dict(zip(effective, settings.product.queries, strict=True))


def refresh_queries(app: Earshot) -> None:
    """Re-read the stored exclusions into the running pipeline (a scheduler job)."""
    queries, aliases = build_queries(app.settings, app.store)
    if [q.text for q in queries] != [q.text for q in app.pipeline.queries]:
        logger.info("queries updated with exclusions: %s", [q.text for q in queries])
        if isinstance(app.pipeline.router, MutingRouter):
            app.pipeline.router.aliases = aliases
        app.pipeline.queries = queries
        app.pipeline.source_queries = source_queries(app.settings, queries, aliases)


def load_meaning(store: Store) -> MeaningModel:
    """The model ``earshot train`` activated, else the shipped one (also, logged, when the
    stored one cannot be read)."""
    try:
        with Session(store.engine) as session:
            return active_model(session)
    except Exception:
        logger.exception("could not load the active sentiment model; using the shipped one")
        return MeaningModel.default()


def model_version(classifier: Classifier) -> str:
    """What labels mentions: the meaning model's version, or ``vader``/``thresholds``."""
    if isinstance(classifier, ExperienceClassifier):
        return classifier.meaning.version if classifier.meaning is not None else "thresholds"
    return "vader"


def refresh_model(app: Earshot) -> str | None:
    """Swap in the model ``earshot train`` activated since the last look (a scheduler job).

    Returns the new version, or ``None`` when nothing changed. The swap is one attribute
    assignment: a mention being classified meanwhile gets the old model or the new one.
    """
    classifier = app.pipeline.classifier
    if not isinstance(classifier, ExperienceClassifier) or classifier.meaning is None:
        return None
    try:
        with Session(app.store.engine) as session:
            wanted = active_version(session) or MeaningModel.default().version
    except Exception as exc:
        logger.warning("could not look up the active sentiment model: %s", exc)
        return None
    current = classifier.meaning.version
    if wanted == current:
        return None
    model = load_meaning(app.store)
    if model.version == current:
        return None
    classifier.meaning = model
    metrics.set_model_version(model.version)
    logger.info("sentiment model %s replaces %s", model.version, current)
    return model.version


def train_job(app: Earshot) -> str:
    """The scheduled ``earshot train`` (``[training]``): refit, compare, adopt if not worse,
    log the outcome; an adopted model is swapped in at once. Returns the outcome."""
    from earshot.listener.learning import train

    training = app.settings.training
    classifier = app.pipeline.classifier
    features = (
        classifier
        if isinstance(classifier, ExperienceClassifier) and classifier.flags is not None
        else None
    )
    try:
        outcome = train(
            app.store,
            classifier=features,
            holdout=training.holdout,
            min_corrections=training.min_corrections,
            note="weekly schedule",
        )
    except Exception:
        logger.exception("scheduled training failed")
        return "failed"
    if outcome.outcome == "refused":
        logger.warning("scheduled training: %s", outcome.report())
    else:
        logger.info("scheduled training: %s", outcome.report())
    if outcome.outcome == "adopted":
        refresh_model(app)
    return outcome.outcome


def training_schedule(settings: Settings) -> dict[str, Any] | None:
    """``[training]``'s weekly run as cron fields, or ``None`` when it is off."""
    training = settings.training
    if not training.enabled:
        return None
    day, at = training.weekly_at.split()
    hour, minute = at.split(":")
    return {
        "day_of_week": day,
        "hour": int(hour),
        "minute": int(minute),
        "timezone": training.timezone,
    }


def source_queries(
    settings: Settings, queries: QuerySet, aliases: dict[str, str]
) -> dict[str, QuerySet]:
    """Per source type, the queries that apply to it, when some queries name their sources.

    ``queries`` are the effective queries (with exclusions); ``aliases`` maps them back to
    the configured texts, which ``sources`` is keyed by.
    """
    limited = settings.product.query_sources()
    if not limited:
        return {}
    per_type: dict[str, QuerySet] = {}
    for entry in settings.sources:
        kept = [
            q.text
            for q in queries
            if entry.type in limited.get(aliases.get(q.text, q.text), [entry.type])
        ]
        per_type[entry.type] = QuerySet(kept, excluded_authors=settings.product.excluded_authors)
    return per_type


def route_rules(settings: Settings) -> list[RouteRule]:
    """``[[routes]]`` first, then the queries' own channels (the defaults come last)."""
    rules = [
        RouteRule(
            Action(route.action),
            route.channel,
            queries=frozenset([route.query] if route.query is not None else []),
            tags=frozenset([route.tag] if route.tag is not None else []),
            sources=frozenset(route.source),
            sentiments=frozenset(route.sentiment),
            intents=frozenset(route.intents),
            min_rating=route.min_rating,
            max_rating=route.max_rating,
        )
        for route in settings.routes
    ]
    return rules + query_rules(settings.product.query_channels())


def _clock(text: str) -> time:
    hour, minute = text.split(":")
    return time(int(hour), int(minute))


def digest_schedules(settings: Settings) -> list[tuple[PeriodKind, DigestSchedule]]:
    """Every digest to send: hourly and daily ones where routes send mentions, weekly ones."""
    wanted: list[tuple[PeriodKind, str]] = []
    for route in settings.routes:
        if route.action in ("hourly", "daily") and route.channel:
            item: tuple[PeriodKind, str] = (route.action, route.channel)
            if item not in wanted:
                wanted.append(item)
    wanted += [("weekly", channel) for channel in settings.digests.weekly_channels()]
    schedules = []
    for kind, channel in wanted:
        own = settings.digests.for_channel(channel)
        day, at = str(own["weekly_at"]).split()
        schedules.append(
            (
                kind,
                DigestSchedule(
                    channel=channel,
                    timezone=own["timezone"],
                    hourly_minute=own["hourly_minute"],
                    daily_at=_clock(own["daily_at"]),
                    weekly_day=("mon", "tue", "wed", "thu", "fri", "sat", "sun").index(day),
                    weekly_at=_clock(at),
                    scope=own["scope"],
                    chart=own["chart"],
                    min_relevance=settings.relevance.min_relevance
                    if settings.relevance.enabled
                    else None,
                    tags=settings.product.tags(),
                ),
            )
        )
    return schedules


def unrelated_digests(schedules: list[tuple[PeriodKind, DigestSchedule]]) -> dict[str, str]:
    """Where a probably unrelated mention of each alert channel is held: the channel's daily
    digest, else its hourly one (a channel with neither stores them only)."""
    chosen: dict[str, str] = {}
    for kind, schedule in schedules:
        if kind == "daily" or (kind == "hourly" and schedule.channel not in chosen):
            chosen[schedule.channel] = kind
    return chosen


def send_digests(app: Earshot, now: datetime | None = None) -> int:
    """Queue every digest that is due and not queued yet (a scheduler job); how many."""
    queued = 0
    reach = reach_policy(app.settings)
    for kind, schedule in app.extras.get("digests", []):
        try:
            if enqueue_digest(app.store, schedule, kind, now, reach=reach) is not None:
                queued += 1
                logger.info("queued the %s digest for %s", kind, schedule.channel)
        except Exception:
            logger.exception("could not build the %s digest for %s", kind, schedule.channel)
    return queued


def spike_config(settings: Settings) -> SpikeConfig:
    """``[spikes]`` as the listener's plain values."""
    spikes = settings.spikes
    return SpikeConfig(
        k=spikes.k,
        min_count=spikes.min_count,
        cooldown=timedelta(seconds=spikes.cooldown),
        alpha=spikes.alpha,
        history=timedelta(seconds=spikes.history),
        top=spikes.top,
    )


def check_spikes_job(app: Earshot, now: datetime | None = None) -> int:
    """Look for spikes and queue their alerts (a scheduler job); how many were queued."""
    channel = app.settings.spikes.channel or app.settings.slack.alerts_channel
    if not channel:
        return 0
    router = app.pipeline.router
    aliases = dict(getattr(router, "aliases", {}) or {})
    found = check_spikes(app.store, channel, now, spike_config(app.settings), aliases=aliases)
    for spike in found:
        logger.warning("%s", spike.headline)
    return len(found)


def shift_config(settings: Settings) -> ShiftConfig:
    """``[shifts]`` as the listener's plain values."""
    shifts = settings.shifts
    return ShiftConfig(
        k=shifts.k,
        min_count=shifts.min_count,
        min_jump=shifts.min_jump,
        bucket=timedelta(seconds=shifts.bucket),
        alpha=shifts.alpha,
        history=timedelta(seconds=shifts.history),
        min_history=shifts.min_history,
        cooldown=timedelta(seconds=shifts.cooldown),
        top=shifts.top,
    )


def shift_channel(settings: Settings) -> str | None:
    """Where shift alerts go: ``[shifts] channel``, else the spikes', else the alerts'."""
    return settings.shifts.channel or settings.spikes.channel or settings.slack.alerts_channel


def check_shifts_job(app: Earshot, now: datetime | None = None) -> int:
    """Look for sentiment shifts and queue their alerts (a scheduler job); how many."""
    channel = shift_channel(app.settings)
    if not channel:
        return 0
    aliases = dict(getattr(app.pipeline.router, "aliases", {}) or {})
    found = check_shifts(
        app.store,
        channel,
        now,
        shift_config(app.settings),
        aliases=aliases,
        tags=app.settings.product.tags(),
    )
    for shift in found:
        logger.warning("%s", shift.headline)
    return len(found)


def build_writers(
    settings: Settings, sources: Sequence[Source], env: Mapping[str, str] | None = None
) -> dict[str, Writer]:
    """The reply writers: one per platform earshot may post to and has credentials for.

    Each is built from the first ``[[sources]]`` entry of its type (its ``base_url``, its
    HTTP client and, for App Store Connect and Google Play, its signed-token auth); the
    others' credentials come from ``env``. A platform without them is left out (logged):
    its alerts get the copy-and-"I replied" modal.
    """
    from earshot.listener.sources.appstoreconnect import AppStoreConnectSource
    from earshot.listener.sources.googleplay import GooglePlaySource
    from earshot.listener.sources.reddit import RedditSource
    from earshot.responders.replies.appstoreconnect import AppStoreConnectWriter
    from earshot.responders.replies.bluesky import BlueskyWriter
    from earshot.responders.replies.discourse import DiscourseWriter
    from earshot.responders.replies.github import GitHubWriter
    from earshot.responders.replies.googleplay import GooglePlayWriter
    from earshot.responders.replies.mastodon import MastodonWriter
    from earshot.responders.replies.reddit import RedditWriter

    env = os.environ if env is None else env
    wanted = settings.replies.platforms
    writers: dict[str, Writer] = {}
    for source in sources:
        kind = source.type
        if kind in writers or (wanted is not None and kind not in wanted):
            continue
        writer: Writer | None = None
        missing = ""
        if isinstance(source, AppStoreConnectSource):
            writer = AppStoreConnectWriter(source)
        elif isinstance(source, GooglePlaySource):
            writer = GooglePlayWriter(source)
        elif isinstance(source, RedditSource):
            writer = RedditWriter(source) if source.oauth else None
            missing = "the source's OAuth credentials (REDDIT_CLIENT_ID and the rest)"
        elif kind == "mastodon":
            token = env.get("MASTODON_ACCESS_TOKEN")
            writer = MastodonWriter(source.http, source.base_url, token) if token else None
            missing = "MASTODON_ACCESS_TOKEN"
        elif kind == "bluesky":
            handle, password = env.get("BLUESKY_HANDLE"), env.get("BLUESKY_APP_PASSWORD")
            if handle and password:
                writer = BlueskyWriter(source.http, source.base_url, handle, password)
            missing = "BLUESKY_HANDLE and BLUESKY_APP_PASSWORD"
        elif kind == "github":
            token = env.get("GITHUB_TOKEN")
            writer = GitHubWriter(source.http, source.base_url, token) if token else None
            missing = "GITHUB_TOKEN"
        elif kind == "discourse":
            key, user = env.get("DISCOURSE_API_KEY"), env.get("DISCOURSE_API_USERNAME")
            if key and user:
                writer = DiscourseWriter(source.http, source.base_url, key, user)
            missing = "DISCOURSE_API_KEY and DISCOURSE_API_USERNAME"
        else:
            continue
        if writer is None:
            logger.info(
                "replies: %s needs %s to post; the modal offers copy instead", kind, missing
            )
            continue
        writers[kind] = writer
    return writers


def reach_policy(settings: Settings) -> ReachPolicy | None:
    """``[reach]`` as the policy the renderer and the SLA job take (``None``: disabled)."""
    if not settings.reach.enabled:
        return None
    return ReachPolicy(thresholds=settings.reach.thresholds(), sla_seconds=settings.reach_sla())


#: The lease row (``source_state``) that lets one replica refresh reach per interval.
REACH_REFRESH_LEASE = "job:reach-refresh"


def refresh_reach_job(app: Earshot, now: datetime | None = None) -> RefreshReport | None:
    """One round of ``[reach] refresh``: the reach of recent unhandled complaints read
    again, those that crossed their threshold flagged (``listener/reach_refresh.py``).

    One replica refreshes per interval: the round takes a lease for 90% of ``refresh``
    (not given back), so the others skip (``None``) and the APIs are asked once; if that
    replica stops, another takes over when the lease runs out. A failure is logged; the
    next round tries again."""
    try:
        hold = max(1.0, 0.9 * app.settings.reach.refresh)
        if not app.store.acquire_source(REACH_REFRESH_LEASE, app.pipeline.owner, hold, now=now):
            logger.debug("reach refresh: another replica holds this round")
            return None
        return refresh_reach(
            app.store,
            app.sources,
            reach_policy(app.settings),
            window_seconds=app.settings.reach.refresh_for,
            now=now,
        )
    except Exception:
        logger.exception("reach refresh round failed")
        return None


def reply_config(
    settings: Settings, writers: dict[str, Writer], client: WebClient | None
) -> ReplyConfig | None:
    """``[replies]`` for the Slack handlers (``None`` when replying is off)."""
    from earshot.responders.replies.slack import ReplyConfig
    from earshot.responders.replies.templates import Template
    from earshot.responders.slack_app import ApproverCheck

    replies = settings.replies
    if not replies.enabled:
        return None
    users, group = replies.approvers, replies.approver_group
    if not users and not group:  # like the amplification approvers
        users, group = settings.slack.approvers, settings.slack.approver_group
    templates = [Template(**t.model_dump()) for t in replies.templates]
    return ReplyConfig(
        writers=writers,
        templates=templates,
        require_approval=replies.require_approval,
        is_approver=ApproverCheck(users, group, client),
    )


def build_interactivity(
    settings: Settings,
    secrets: Secrets,
    store: Store,
    router: Router | None = None,
    writers: dict[str, Writer] | None = None,
) -> SlackInteractivity | None:
    """The Slack buttons, modals and ``/earshot``, when ``interactive`` and the tokens are set.

    ``router`` is the pipeline's: a sentiment correction from Slack is sent where its new
    label routes (the same rules, aliases and tags as new mentions).
    """
    slack = settings.slack
    if not slack.interactive or not secrets.slack_bot_token:
        return None
    # bolt loads here, only where clicks can arrive (it costs the polling process ~5 MB)
    from earshot.responders.slack_app import ApproverCheck, SlackInteractivity

    if slack.mode == "socket" and not secrets.slack_app_token:
        logger.warning("slack.interactive: SLACK_APP_TOKEN is not set, clicks cannot arrive")
        return None
    if slack.mode == "http" and not secrets.slack_signing_secret:
        logger.warning("slack.interactive: SLACK_SIGNING_SECRET is not set, clicks are refused")
        return None
    base_url = slack.api_url if slack.api_url.endswith("/") else slack.api_url + "/"
    client = WebClient(token=secrets.slack_bot_token, base_url=base_url, timeout=10)
    config = InteractionConfig(
        product=settings.product.name,
        is_approver=ApproverCheck(slack.approvers, slack.approver_group, client),
        wins_channel=slack.wins_channel,
        queries=list(settings.product.queries),
        alerts_channel=slack.alerts_channel,
        sla_seconds=slack.sla,
        router=router,
        reach=reach_policy(settings),
    )
    config.replies = reply_config(settings, writers or {}, client)
    return SlackInteractivity(
        store,
        config,
        client=client,
        mode=slack.mode,
        app_token=secrets.slack_app_token,
        signing_secret=secrets.slack_signing_secret,
        oncall_group=slack.oncall_group,
    )


def build(
    settings: Settings,
    secrets: Secrets,
    *,
    transport: httpx.BaseTransport | None = None,
    channel: Channel | None = None,
    database: str | None = None,
    base_dir: Path | None = None,
) -> Earshot:
    """Build every part. ``transport``, ``channel`` and ``database`` let tests and the demo
    swap the outside world for fakes.

    Raises ``earshot.config.migrations.SchemaError`` when the database's schema is behind
    (or ahead of) this version; an empty database gets the schema created. Raises
    ``ConfigError`` when a source refuses its settings (``build_sources``), before the
    database is opened.
    """
    client = build_client(transport)
    stop = threading.Event()
    try:
        sources, every = build_sources(settings, client, stop)
    except ConfigError:
        client.close()
        raise
    store = Store.from_url(database or database_url(settings, secrets, base=base_dir))
    try:
        # Empty database: create the schema at head. Behind head: SchemaError, which says
        # to run `earshot db upgrade` (the CLI prints it and exits 2).
        ensure_schema(store.engine)
    except Exception:
        store.engine.dispose()
        client.close()
        raise
    queries, aliases = build_queries(settings, store)
    sentiment = settings.sentiment
    classifier: Classifier
    thresholds = sentiment.thresholds()
    if sentiment.classifier == "vader":
        classifier = VaderClassifier(*(thresholds or (-0.5, 0.5)))
    elif thresholds is not None:
        # explicit compound thresholds: label by the score alone, as configured
        classifier = ExperienceClassifier(
            *thresholds, flags=None, meaning=None, non_english=sentiment.non_english
        )
    else:
        classifier = ExperienceClassifier(
            non_english=sentiment.non_english, meaning=load_meaning(store)
        )
    metrics.set_model_version(model_version(classifier))
    router = MutingRouter(
        store,
        settings.slack.alerts_channel,
        settings.slack.amplify_channel,
        aliases=aliases,
        rules=route_rules(settings),
        tags=settings.product.tags(),
        min_relevance=settings.relevance.min_relevance,
    )
    schedules = digest_schedules(settings)
    relevance = None
    if settings.relevance.enabled:
        relevance = Relevance(
            store,
            min_relevance=settings.relevance.min_relevance,
            min_examples=settings.relevance.min_examples,
            # the classifier's own embedding of a text: each mention is embedded once
            embed=getattr(classifier, "embed_texts", None),
        )
    pipeline = Pipeline(
        store,
        queries,
        classifier,
        router,
        health_channel=settings.slack.health_channel or settings.slack.alerts_channel,
        failing_after=settings.slack.failing_after,
        silent_after=settings.slack.silent_after,
        storm=(settings.slack.storm_threshold, settings.slack.storm_window),
        stories=StoryOptions(
            enabled=settings.stories.enabled,
            window=settings.stories.window,
            near_duplicate=settings.stories.near_duplicate,
        ),
        owner=os.environ.get("EARSHOT_REPLICA_ID") or None,
        source_queries=source_queries(settings, queries, aliases),
        relevance=relevance,
        unrelated_digests=unrelated_digests(schedules),
    )
    if channel is None:
        if secrets.slack_bot_token:
            channel = SlackChannel.from_token(secrets.slack_bot_token, settings.slack.api_url)
        else:
            logger.info("SLACK_BOT_TOKEN is not set: alerts are printed to the console")
            channel = ConsoleChannel()
    worker = DeliveryWorker(
        store,
        channel,
        interactive=settings.slack.interactive and isinstance(channel, SlackChannel),
        product=settings.product.name,
        per_channel_interval=settings.slack.min_interval
        if isinstance(channel, SlackChannel)
        else 0.0,
        stopping=stop,
        lease_seconds=settings.slack.delivery_lease,
        health_channel=settings.slack.health_channel or settings.slack.alerts_channel,
        files=SlackFileChannel(channel.client, channel._channel_id)
        if isinstance(channel, SlackChannel)
        else None,
        reach=reach_policy(settings),
    )
    app = Earshot(
        settings=settings,
        secrets=secrets,
        store=store,
        client=client,
        sources=sources,
        every=every,
        pipeline=pipeline,
        channel=channel,
        worker=worker,
        stop_event=stop,
    )
    jobs: list[tuple[str, float, Any]] = [("queries", 60.0, lambda: refresh_queries(app))]
    writers = build_writers(settings, sources) if settings.replies.enabled else {}
    slack_app = build_interactivity(settings, secrets, store, router, writers)
    if slack_app is not None:
        app.extras["slack"] = slack_app
        app.extras["readiness"] = slack_app.readiness
        jobs.extend(slack_app.jobs())
        if writers and slack_app.config.replies is not None:
            sender = ReplySender(
                store,
                writers,
                on_sent=alert_updater(slack_app.client, store, slack_app.config),
            )
            app.extras["replies"] = sender
            jobs.append(("replies", settings.replies.every, sender.run_once))
    app.extras["digests"] = schedules
    if app.extras["digests"]:
        jobs.append(("digests", settings.digests.every, lambda: send_digests(app)))
    if settings.spikes.enabled:
        jobs.append(("spikes", settings.spikes.every, lambda: check_spikes_job(app)))
    if settings.shifts.enabled:
        jobs.append(("shifts", settings.shifts.every, lambda: check_shifts_job(app)))
    if settings.reach.refreshing() and readers(app.sources):
        jobs.append(("reach-refresh", settings.reach.refresh, lambda: refresh_reach_job(app)))
    if isinstance(classifier, ExperienceClassifier) and classifier.meaning is not None:
        jobs.append(("model", 60.0, lambda: refresh_model(app)))
    schedule = training_schedule(settings)
    if schedule is not None:
        app.extras["cron_jobs"] = [("train", schedule, lambda: train_job(app))]
    app.extras["jobs"] = jobs
    return app
