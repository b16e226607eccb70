"""The console channel: alerts printed readably, for a first run without a Slack token."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from .base import Outgoing, Sent


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
