"""What changed this week: the shapes of stories, themes and share of voice in a digest.

These are plain frozen dataclasses that travel in a digest's outbox payload (``to_payload``
and ``from_payload`` round-trip them) and that every renderer reads: Block Kit, the console,
``earshot report`` and its HTML page. How each is computed lives beside its data:
stories in ``listener/stories.py``, themes in ``listener/themes.py``, share of voice and the
sentiment shift in ``listener/digest.py`` and ``listener/spikes.py``.

Sentiment splits are ``{label: count}`` over ``Label`` values (``negative``, ``neutral``,
``positive``, ``mixed``, ``unscored``); a label with no mentions may be absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Quote:
    """A representative mention, quoted in a theme: its text (trimmed), link and source."""

    text: str
    url: str
    source: str


@dataclass(frozen=True)
class Theme:
    """Mentions clustered by meaning: a short extractive label, its size this period and
    the last, its sentiment split and two representative quotes."""

    label: str
    size: int
    previous: int
    sentiment: dict[str, int] = field(default_factory=dict)
    quotes: list[Quote] = field(default_factory=list)

    @property
    def change(self) -> int:
        """Mentions this period minus mentions last period."""
        return self.size - self.previous

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Theme:
        quotes = [Quote(**q) for q in data.get("quotes") or []]
        return cls(**{**_known(cls, data), "quotes": quotes})


@dataclass(frozen=True)
class Voice:
    """One query tag's share of voice (``product``, ``competitor``...): its volume and
    sentiment this period and the last."""

    tag: str
    mentions: int
    previous: int
    sentiment: dict[str, int] = field(default_factory=dict)
    previous_sentiment: dict[str, int] = field(default_factory=dict)

    @property
    def change(self) -> int:
        return self.mentions - self.previous

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Voice:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class StorySummary:
    """One story of the period: its title and link, how many mentions it has, and its
    sentiment per source (``{"hackernews": {"negative": 2}, "reddit": {"positive": 1}}``)."""

    id: int
    title: str
    url: str
    mentions: int
    first_at: str
    sources: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> StorySummary:
        return cls(**_known(cls, data))


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``data`` that are fields of ``cls`` (an older or newer payload's extras
    are ignored)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
