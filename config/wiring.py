"""Wiring: turn validated settings into running parts (store, sources, pipeline, delivery).

This is the only place that knows both the settings and the classes they configure;
``earshot.listener`` and ``earshot.responders`` get plain arguments.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from earshot.listener import USER_AGENT
from earshot.listener.pipeline import Pipeline, Router
from earshot.listener.query import QuerySet
from earshot.listener.sentiment import VaderClassifier
from earshot.listener.sources import SOURCE_TYPES, RateLimiter, Source, SourceHttp
from earshot.listener.store import Store
from earshot.responders.base import Channel
from earshot.responders.console import ConsoleChannel
from earshot.responders.delivery import DeliveryWorker
from earshot.responders.slack import SlackChannel

from .settings import Secrets, Settings, database_url, source_name

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
    Secrets come from ``env`` (default: the process environment).
    """
    stop = stop or threading.Event()
    env = os.environ if env is None else env
    sources: list[Source] = []
    every: dict[str, float] = {}
    for entry in settings.sources:
        cls = SOURCE_TYPES[entry.type]
        rpm = entry.requests_per_minute or cls.default_requests_per_minute
        limiter = RateLimiter(rpm, sleep=stop.wait)
        http = SourceHttp(client, limiter, timeout=entry.timeout, stop=stop)
        options = {**entry.options(), **entry.secret_values(env)}
        source = cls(
            http,
            name=source_name(entry),
            base_url=entry.base_url,
            backfill_seconds=entry.backfill,
            **options,
        )
        sources.append(source)
        every[source.key] = entry.every
    return sources, every


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
    swap the outside world for fakes."""
    store = Store.from_url(database or database_url(settings, secrets, base=base_dir))
    store.create_schema()
    client = build_client(transport)
    stop = threading.Event()
    sources, every = build_sources(settings, client, stop)
    queries = QuerySet(settings.product.queries, excluded_authors=settings.product.excluded_authors)
    classifier = VaderClassifier(settings.sentiment.negative_at, settings.sentiment.positive_at)
    router = Router(settings.slack.alerts_channel, settings.slack.amplify_channel)
    pipeline = Pipeline(store, queries, classifier, router)
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
        per_channel_interval=1.0 if isinstance(channel, SlackChannel) else 0.0,
        stopping=stop,
    )
    return Earshot(
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
