"""What the two official review APIs share: a newest-first read down to a time cursor.

App Store Connect (``appstoreconnect.py``) and Google Play (``googleplay.py``) both list a
team's reviews newest first. A poll reads pages until it reaches the cursor, ``{"since":
<unix second>, "ids": [<review ids stamped that second>]}``, and only a complete read moves
it; a failed one keeps it, so the next poll reads the same reviews again (the store drops
the ones it has).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models import Mention
from .base import Cursor, PollResult, Source, SourceError


class NewestFirstReviews(Source):
    """A source that reads reviews newest first down to ``{"since", "ids"}``.

    A subclass gives ``unit`` (what a failure is reported under) and ``read_since``.
    """

    @property
    def unit(self) -> str:
        """The name a failed read is reported under, e.g. ``googleplay com.acme.notes``."""
        raise NotImplementedError

    def read_since(self, since: float, known: set[str], result: PollResult) -> list[Mention]:
        """The reviews newer than ``since`` (and not in ``known``), newest first."""
        raise NotImplementedError

    def poll(self, cursor: Cursor | None, terms: Sequence[str]) -> PollResult:
        state = dict(cursor or {})
        result = PollResult(mentions=[], cursor=state, units=1)
        start = self.http.requests
        since = float(state.get("since") or self.backfill_start())
        known = {str(i) for i in state.get("ids", [])}
        try:
            reviews = self.read_since(since, known, result)
        except SourceError as exc:
            result.fail(self.unit, exc)
        else:
            result.mentions = reviews
            result.cursor = advance(since, known, reviews)
        result.requests = self.http.requests - start
        return result


def advance(since: float, known: set[str], reviews: Sequence[Mention]) -> Cursor:
    """The cursor after a complete read: the newest second seen and the ids in it."""
    stamps = {m.external_id: int(m.created_at.timestamp()) for m in reviews}
    newest = max([int(since), *stamps.values()])
    ids = {rid for rid, stamp in stamps.items() if stamp == newest}
    if newest == int(since):
        ids |= known
    return {"since": newest, "ids": sorted(ids)}
