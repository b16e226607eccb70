"""How long a reply may be on each platform, counted in the platform's own unit.

Checked in the modal before a reply is stored (the lead sees what is wrong and by how
much), and again by the strict fakes in the tests, which refuse what the platforms refuse.

* Bluesky: 300 graphemes (extended grapheme clusters) and 3,000 bytes of UTF-8 (the
  ``app.bsky.feed.post`` lexicon: ``text`` maxGraphemes 300, maxLength 3000).
* Mastodon: 500 characters, a link counting 23 and ``@user@domain`` as ``@user`` (the
  instance's ``configuration.statuses.max_characters``, 500 by default).
* Google Play: 350 characters (``reviews.reply``: "replies of more than approximately 350
  characters will be rejected").
* App Store Connect: 5,970 characters (a response's ``responseBody``).
* GitHub: 65,536 characters (a comment's ``body``). Discourse: 20 to 32,000 (the default
  ``min_post_length`` and ``max_post_length``). Reddit: 10,000.

Graphemes are counted with the ``regex`` module's ``\\X`` (UAX #29), not by hand: "👨‍👩‍👧‍👦" is one
grapheme of 7 code points, "🇸🇪" one of 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import regex

Unit = Literal["characters", "graphemes"]

_GRAPHEME = regex.compile(r"\X")
_URL = re.compile(r"https?://\S+")
_REMOTE_MENTION = re.compile(r"(?<![\w@])(@[A-Za-z0-9_]+)@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


@dataclass(frozen=True)
class Limit:
    """At most ``most`` of ``unit`` (and at most ``max_bytes`` of UTF-8, when set)."""

    most: int
    unit: Unit = "characters"
    #: At least this many (Discourse's ``min_post_length``, 20 by default).
    least: int = 1
    max_bytes: int | None = None
    #: Mastodon's way: a URL counts as 23 characters, a remote mention as its local part.
    mastodon_counting: bool = False


LIMITS: dict[str, Limit] = {
    "bluesky": Limit(300, "graphemes", max_bytes=3000),
    "mastodon": Limit(500, mastodon_counting=True),
    "googleplay": Limit(350),
    "appstoreconnect": Limit(5970),
    "github": Limit(65536),
    "discourse": Limit(32000, least=20),
    "reddit": Limit(10000),
}


def graphemes(text: str) -> int:
    """How many user-perceived characters (extended grapheme clusters) ``text`` has."""
    return len(_GRAPHEME.findall(text))


def measure(text: str, limit: Limit) -> int:
    """``text``'s length in ``limit``'s unit."""
    if limit.unit == "graphemes":
        return graphemes(text)
    if limit.mastodon_counting:
        text = _REMOTE_MENTION.sub(r"\1", text)
        text = _URL.sub("x" * 23, text)
    return len(text)


def problem(platform: str, text: str, limit: Limit | None = None) -> str | None:
    """Why ``text`` cannot be posted on ``platform`` (``None``: it can)."""
    if not text.strip():
        return "The reply is empty."
    limit = limit or LIMITS.get(platform)
    if limit is None:
        return None
    length = measure(text, limit)
    if length > limit.most:
        over = length - limit.most
        return (
            f"{length} {limit.unit}: {_NAMES.get(platform, platform)} takes at most "
            f"{limit.most} {limit.unit} ({over} too many)."
        )
    if len(text.strip()) < limit.least:
        return f"{_NAMES.get(platform, platform)} takes at least {limit.least} {limit.unit}."
    size = len(text.encode("utf-8"))
    if limit.max_bytes is not None and size > limit.max_bytes:
        return (
            f"{size} bytes: {_NAMES.get(platform, platform)} takes at most {limit.max_bytes} "
            "bytes of text."
        )
    return None


_NAMES = {
    "bluesky": "Bluesky",
    "mastodon": "Mastodon",
    "googleplay": "Google Play",
    "appstoreconnect": "App Store Connect",
    "github": "GitHub",
    "discourse": "Discourse",
    "reddit": "Reddit",
}
