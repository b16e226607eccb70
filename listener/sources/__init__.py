"""Sources: one small module per API, all on ``base.Source``.

Every module in this package is imported here, and each ``Source`` subclass with a ``type``
registers itself, so adding a source is one module (plus its fixture test): its class, its
``Options`` (the settings keys), and nothing else to edit.
"""

import importlib
import pkgutil

from .base import (
    REGISTRY,
    BadPayloadError,
    FatalError,
    PollResult,
    RateLimitedError,
    RateLimiter,
    RetriableError,
    Source,
    SourceError,
    SourceHttp,
    SourceOptions,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

from .appstore import AppStoreSource  # noqa: E402
from .hackernews import HackerNewsSource  # noqa: E402
from .reddit import RedditSource  # noqa: E402

#: Config ``type`` name -> source class.
SOURCE_TYPES = REGISTRY

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
    "SourceOptions",
]
