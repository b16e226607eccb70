"""Prometheus metrics of one earshot process, on their own registry.

The pipeline and the delivery worker count here; ``earshot.config`` serves ``REGISTRY`` at
``/metrics``. Labels are bounded: source keys, channels and sentiment labels come from the
config, never from mention content.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

POLLS = Counter(
    "earshot_polls",
    "Polls by source and outcome (ok, degraded, failing, skipped).",
    ["source", "outcome"],
    registry=REGISTRY,
)
FETCHED = Counter(
    "earshot_items_fetched",
    "Items read from a source, before matching.",
    ["source"],
    registry=REGISTRY,
)
MENTIONS = Counter(
    "earshot_mentions",
    "New mentions stored, by source and sentiment.",
    ["source", "sentiment"],
    registry=REGISTRY,
)
DUPLICATES = Counter(
    "earshot_duplicates",
    "Items dropped because they were stored already.",
    ["source"],
    registry=REGISTRY,
)
SKIPPED = Counter(
    "earshot_items_skipped", "Malformed items skipped.", ["source"], registry=REGISTRY
)
UNRELATED = Counter(
    "earshot_mentions_unrelated",
    "Mentions that would have alerted, held as probably unrelated to their query.",
    ["source"],
    registry=REGISTRY,
)
POLL_ERRORS = Counter(
    "earshot_poll_errors",
    "Poll errors by source and kind.",
    ["source", "kind"],
    registry=REGISTRY,
)
POLL_SECONDS = Histogram(
    "earshot_poll_seconds",
    "Time one poll of one source took.",
    ["source"],
    registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
RATE_LIMIT_WAIT = Counter(
    "earshot_rate_limit_wait_seconds",
    "Time spent waiting for a source's rate limit.",
    ["source"],
    registry=REGISTRY,
)
SOURCE_UP = Gauge(
    "earshot_source_up", "1 ok, 0.5 degraded, 0 failing.", ["source"], registry=REGISTRY
)
ALERTS_SENT = Counter(
    "earshot_alerts_sent", "Messages delivered, by channel.", ["channel"], registry=REGISTRY
)
ALERTS_RETRIED = Counter(
    "earshot_alerts_retried",
    "Delivery attempts that will be retried.",
    ["channel"],
    registry=REGISTRY,
)
ALERTS_FAILED = Counter(
    "earshot_alerts_failed",
    "Messages that could not be delivered.",
    ["channel"],
    registry=REGISTRY,
)
REACH_REFRESHED = Counter(
    "earshot_reach_refreshed",
    "Recent unhandled complaints whose reach was read again, by source type and outcome "
    "(updated, unchanged, missing, flagged).",
    ["source", "outcome"],
    registry=REGISTRY,
)
REACH_REFRESH_ERRORS = Counter(
    "earshot_reach_refresh_errors",
    "Reach-refresh requests that failed and were skipped, by source type and kind "
    "(rate_limited, retriable, fatal, error).",
    ["source", "kind"],
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge(
    "earshot_outbox_depth", "Outbox rows by status.", ["status"], registry=REGISTRY
)
MODEL_INFO = Gauge(
    "earshot_model_info",
    "The sentiment model version in use (1 for the version labelling mentions now).",
    ["version"],
    registry=REGISTRY,
)


def set_model_version(version: str) -> None:
    """Report ``version`` as the model in use, and no other."""
    MODEL_INFO.clear()
    MODEL_INFO.labels(version).set(1)
