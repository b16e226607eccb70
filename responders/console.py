"""The console channel: alerts printed readably, for a first run without a Slack token."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from .base import Outgoing, Sent
from .blocks import RenderedMessage


class ConsoleChannel:
    """Prints each alert to a stream (standard output by default)."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()
        self.sent = 0

    def find_sent(self, outgoing: Outgoing, since: float, channel_id: str | None) -> Sent | None:
        """A terminal keeps no history: nothing to find."""
        return None

    def send(self, outgoing: Outgoing) -> Sent:
        rule = "─" * 72
        with self._lock:
            self.stream.write(f"{rule}\n→ {outgoing.channel}\n{outgoing.plain}\n")
            self.stream.flush()
            self.sent += 1
        return Sent(channel_id=outgoing.channel, ts=str(self.sent))

    def update(self, channel_id: str, ts: str, message: RenderedMessage) -> Sent:
        """A terminal cannot edit what it printed: say what changed (a story's count)."""
        last = message.text.rsplit("\n", 1)[-1]
        with self._lock:
            self.stream.write(f"↻ {channel_id} message {ts}: {last}\n")
            self.stream.flush()
        return Sent(channel_id=channel_id, ts=ts)
