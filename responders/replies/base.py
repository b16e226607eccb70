"""What every reply writer shares: the answer it gives, the two errors, the interface.

A writer posts one reply on one platform through its documented API (``post``) and, where
the platform lets it, finds a reply an earlier attempt may have posted (``find``): the
reply worker calls ``find`` before posting a reply a second time, so a crash or a 5xx
after the platform stored it never makes two. A writer that cannot look up
(``can_look_up`` False) has an uncertain reply handed to a human instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from earshot.listener.models import Mention
from earshot.listener.sources.base import (
    FatalError,
    RateLimitedError,
    RetriableError,
    SourceError,
)


@dataclass(frozen=True)
class Posted:
    """A reply on the platform: its id there, its link (if it has one) and its time."""

    remote_id: str
    url: str | None = None
    at: datetime | None = None


class ReplyError(Exception):
    """Posting a reply failed."""


class ReplyRetry(ReplyError):
    """Try again later (``retry_after`` seconds if the platform said).

    ``uncertain``: the request may have been carried out (a timeout, a 5xx), so the next
    attempt looks the reply up first.
    """

    def __init__(
        self, message: str, retry_after: float | None = None, *, uncertain: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.uncertain = uncertain


class ReplyFatal(ReplyError):
    """The platform refuses this reply (too long, no permission, the post is gone)."""


def mapped(exc: SourceError) -> ReplyError:
    """A ``SourceError`` of the shared HTTP layer as a reply error.

    A 429 was refused before anything happened (not uncertain); a timeout, a 5xx or a bad
    answer may have been carried out (uncertain); 4xx is fatal.
    """
    if isinstance(exc, RateLimitedError):
        return ReplyRetry(str(exc), exc.retry_after)
    if isinstance(exc, RetriableError):
        return ReplyRetry(str(exc), exc.retry_after, uncertain=True)
    if isinstance(exc, FatalError):
        return ReplyFatal(str(exc))
    return ReplyRetry(str(exc), uncertain=True)  # pragma: no cover - no other kinds


class Writer(ABC):
    """Posts replies on one platform."""

    #: The mention ``source`` this writer answers.
    platform: ClassVar[str]
    #: Whether ``find`` can tell whether an earlier attempt landed.
    can_look_up: ClassVar[bool] = True

    def target(self, mention: Mention) -> Any:
        """What the reply answers, from the stored mention; ``ReplyFatal`` if it lacks it.

        Called before the modal opens too: a mention the writer cannot answer gets the
        copy-and-"I replied" modal instead.
        """
        return mention.external_id

    @abstractmethod
    def post(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted:
        """Post ``text`` as a reply to ``mention``. ``key`` is the reply's idempotency key;
        ``attempted_at`` when its first attempt began (stable across attempts)."""

    def find(self, mention: Mention, text: str, key: str, attempted_at: datetime) -> Posted | None:
        """The reply an earlier attempt posted, or ``None`` if there is none."""
        raise NotImplementedError
