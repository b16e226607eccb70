"""What every delivery channel shares: one method, two errors.

A channel (Slack, the console, later others) is one module with one class that implements
``Channel.send``. It reports a passing failure as ``DeliveryRetry`` (with the pause the
service asked for, if any) and a permanent one as ``DeliveryFatal``; the delivery worker
turns those into outbox retries or a failed row, so a channel never loops or sleeps itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .blocks import RenderedMessage


class DeliveryError(Exception):
    """Sending failed."""


class DeliveryRetry(DeliveryError):
    """Try again later; ``retry_after`` is the pause the service asked for (seconds).

    ``uncertain``: the request may have been carried out (a timeout after sending, a 5xx,
    Slack's ``internal_error``), so the next attempt must look for the message first.
    """

    def __init__(
        self, message: str, retry_after: float | None = None, *, uncertain: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.uncertain = uncertain


class DeliveryFatal(DeliveryError):
    """Sending will never work as configured (bad token, unknown channel, not invited).

    ``everywhere``: the channel itself is unusable (a refused token), not just this
    destination, so no message (not even a health alert) can go out through it.
    """

    def __init__(self, message: str, *, everywhere: bool = False) -> None:
        super().__init__(message)
        self.everywhere = everywhere


@dataclass(frozen=True)
class Outgoing:
    """One message ready to send: Block Kit for Slack, plain text for terminals and logs.

    ``key`` is the outbox row's idempotency key; channels that can look a message up by it
    (Slack message metadata) use it to avoid posting twice.
    """

    channel: str
    message: RenderedMessage
    plain: str
    key: str
    #: Post as a reply in this thread (the ``ts`` of the parent message), e.g. escalations.
    thread_ts: str | None = None


@dataclass(frozen=True)
class Sent:
    """Where the message landed, for later updates (``chat.update``) and threads."""

    channel_id: str | None = None
    ts: str | None = None


class Channel(Protocol):
    """A place alerts are delivered to."""

    name: str

    def send(self, outgoing: Outgoing) -> Sent:
        """Deliver one message; raise ``DeliveryRetry`` or ``DeliveryFatal`` on failure."""
        ...

    def find_sent(self, outgoing: Outgoing, since: float, channel_id: str | None) -> Sent | None:
        """The message of an earlier attempt, found by ``outgoing.key``, or ``None``.

        ``since`` is a unix time before the first attempt; ``channel_id`` the channel's id
        if known. Channels that cannot look messages up return ``None``.
        """
        ...
