"""Sources: one small module per API, all on ``base.Source``.

``SOURCE_TYPES`` maps a config ``type`` name to its class; adding a source is one module
plus one line here and a fixture test.
"""

from .appstore import AppStoreSource
from .base import (
    BadPayloadError,
    FatalError,
    PollResult,
    RateLimitedError,
    RateLimiter,
    RetriableError,
    Source,
    SourceError,
    SourceHttp,
)
from .hackernews import HackerNewsSource
from .reddit import RedditSource

SOURCE_TYPES: dict[str, type[Source]] = {
    cls.type: cls for cls in (HackerNewsSource, RedditSource, AppStoreSource)
}

__all__ = [
    "SOURCE_TYPES",
    "AppStoreSource",
    "BadPayloadError",
    "FatalError",
    "HackerNewsSource",
    "PollResult",
    "RateLimitedError",
    "RateLimiter",
    "RedditSource",
    "RetriableError",
    "Source",
    "SourceError",
    "SourceHttp",
]
