"""Reply drafts from ``[[replies.templates]]``: the first template whose conditions all
match the mention is the draft, with ``{author}``, ``{product}`` and ``{lead}`` filled in.

    >>> fill("Hi {author}, {lead} from {product} here.", author="ana", product="Acme", lead="Bo")
    'Hi ana, Bo from Acme here.'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from earshot.listener.models import Mention

_VARIABLE = re.compile(r"\{(author|product|lead)\}")


@dataclass(frozen=True)
class Template:
    """A draft and when it applies (an unset condition matches everything).

    * **source** - the mention's source type (``googleplay``, ``bluesky``...).
    * **sentiment** - its label; **intent** - one of its intent tags.
    * **max_rating** / **min_rating** - its star rating, inclusive (reviews only).
    """

    text: str
    source: str | None = None
    sentiment: str | None = None
    intent: str | None = None
    min_rating: int | None = None
    max_rating: int | None = None

    def matches(self, mention: Mention) -> bool:
        """Whether every condition set holds for ``mention``."""
        if self.source is not None and mention.source != self.source:
            return False
        if self.sentiment is not None and mention.sentiment_label != self.sentiment:
            return False
        if self.intent is not None and self.intent not in (mention.intents or []):
            return False
        rating = mention.rating
        if self.min_rating is not None and (rating is None or rating < self.min_rating):
            return False
        return not (self.max_rating is not None and (rating is None or rating > self.max_rating))


def choose(templates: Sequence[Template], mention: Mention) -> Template | None:
    """The first template that matches ``mention`` (config order), or ``None``."""
    return next((t for t in templates if t.matches(mention)), None)


def fill(text: str, *, author: str, product: str, lead: str) -> str:
    """``text`` with the three variables replaced; any other brace is left as written."""
    values = {"author": author, "product": product, "lead": lead}
    return _VARIABLE.sub(lambda m: values[m.group(1)], text)


def draft(templates: Sequence[Template], mention: Mention, *, product: str, lead: str) -> str:
    """The draft for ``mention`` written by ``lead`` (empty when no template matches)."""
    chosen = choose(templates, mention)
    if chosen is None:
        return ""
    author = mention.author or "there"
    return fill(chosen.text, author=author, product=product, lead=lead)
