"""Replies to the customer, written in Slack and posted where the customer spoke.

* ``limits`` - each platform's length limit in its own unit (graphemes for Bluesky).
* ``templates`` - the drafts of ``[[replies.templates]]``.
* ``base`` and one module per platform - the writers (``post``, ``find``).
* ``slack`` - the Reply button's modal, the approval note and their handlers.
* ``worker`` - sends queued replies exactly once (``ReplySender``).

Platforms earshot cannot write to (Hacker News, RSS, Stack Exchange, the App Store RSS
feed, or a platform without credentials) get the draft to copy, the link, and "I replied".
"""

from __future__ import annotations

#: Sources whose posts earshot never writes to: the modal offers copy + "I replied".
COPY_ONLY = frozenset({"hackernews", "rss", "stackexchange", "appstore", "google_alerts"})
