"""Storage: mentions, cursors and the delivery outbox, on SQLite or PostgreSQL.

The one write that matters is ``Store.ingest``: in a single transaction it inserts the new
mentions (the database's unique ``(source, external_id)`` drops repeats, even from another
replica), queues their deliveries in the outbox, and moves the source's cursor. Either all
of it happens or none of it does, so a crash can neither lose an alert (the cursor never
moves past an item that was not stored) nor double one (a stored item is never queued again).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, case, event, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, col, create_engine, select

from .models import (
    Delivery,
    DeliveryStatus,
    Mention,
    MentionStatus,
    SourceCursor,
    SourceState,
    Story,
    StoryKey,
    as_utc,
    utcnow,
)
from .stories import Membership, StoryKeys, StoryOptions, jaccard, keys_for_many, shingles

logger = logging.getLogger("earshot.listener.store")


def _table(model: type[SQLModel]) -> Table:
    """The SQLAlchemy table of a model (typed, for the core statements below)."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


MENTIONS = _table(Mention)
OUTBOX = _table(Delivery)
CURSORS = _table(SourceCursor)
SOURCE_STATE = _table(SourceState)
STORIES = _table(Story)
STORY_KEYS = _table(StoryKey)
#: The outbox kind of a story's live count (a ``chat.update`` of its parent alert).
KIND_STORY_UPDATE = "story_update"
#: The outbox kind of a re-render of an alert whose reach was refreshed past its source's
#: threshold (a ``chat.update``, ``listener/reach_refresh.py``).
KIND_REACH_UPDATE = "reach_update"

_CHUNK = 500
#: Rows per multi-row INSERT statement on SQLite (see ``make_engine``).
ROWS_PER_STATEMENT = 32

#: Where an ingested mention should be delivered: (channel, kind).
Route = tuple[str, str]


def normalize_database_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain ``postgresql://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redact_url(url: str) -> str:
    """The database URL with its password replaced, safe for logs and errors."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database url>"


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url``. SQLite gets WAL, a busy timeout and cross-thread use."""
    url = normalize_database_url(url)
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:")
        engine = create_engine(
            url,
            echo=echo,
            # sqlite3 keeps 128 prepared statements per connection by default; each
            # multi-row INSERT ... RETURNING and IN (...) of a new batch size is one more,
            # often hundreds of KB: resident memory crept up ~1 MB per poll cycle until the
            # cache filled (benchmarks/bench_poll.py). 16 keeps the common ones prepared.
            connect_args={"check_same_thread": False, "timeout": 30, "cached_statements": 16},
            # A multi-row INSERT of n rows is one statement per n: at up to 200 rows of 30
            # columns, 16 cached ones took 3.5-5 MB per connection, and the pool's
            # connections filled their caches poll after poll (bench_poll.py, 1,000
            # queries: SQLite's memory 12 -> 21 MB over 4 cycles). At most 32 rows a
            # statement keeps each under ~100 KB (2.8 MB a connection, page cache included).
            insertmanyvalues_page_size=ROWS_PER_STATEMENT,
            poolclass=StaticPool if memory else None,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


@dataclass
class IngestResult:
    """What one ``ingest`` did."""

    stored: list[Mention] = field(default_factory=list)
    duplicates: int = 0
    queued: int = 0


@dataclass
class PollFinished:
    """What ``Store.finish_poll`` read back from a source's state row."""

    health_alerted: bool
    failing_since: datetime | None
    #: Whether the lease was ours and is now given back.
    released: bool


@dataclass
class Claimed:
    """An outbox row leased to one worker, with its mention (if it has one).

    ``verify`` is True when an earlier attempt may have reached Slack: the row was leased
    before and its lease ran out (a worker died mid-send), or it was retried after an
    uncertain error. The worker then looks for the message before posting again.
    """

    delivery: Delivery
    mention: Mention | None
    verify: bool = False
    #: The lease this worker holds (``lease_until`` as it set it): ``Store.renew`` checks it.
    lease: datetime | None = None


class Store:
    """All database access of earshot goes through here."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(make_engine(url))

    def create_schema(self) -> None:
        """Create missing tables (the embedded default; migrations manage PostgreSQL).

        Every table is created, whatever the caller imported: the modules that define the
        other tables (corrections, model versions) are loaded here, as the migrations do.
        """
        from . import corrections, model_versions  # noqa: F401 - their tables

        SQLModel.metadata.create_all(self.engine)

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    def insert(self, table: Any) -> Any:
        """An INSERT for ``table`` in this database's dialect (for ``ON CONFLICT``)."""
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    # -- cursors -------------------------------------------------------------------------

    def get_cursor(self, key: str) -> dict[str, Any] | None:
        with Session(self.engine) as session:
            row = session.get(SourceCursor, key)
            return json.loads(row.value) if row else None

    def get_cursors(self, keys: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """``get_cursor`` of several keys in one query (``None`` for a key not stored)."""
        found: dict[str, dict[str, Any] | None] = dict.fromkeys(keys)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(CURSORS.c.key, CURSORS.c.value).where(CURSORS.c.key.in_(list(keys)))
            )
            for key, value in rows:
                found[key] = json.loads(value)
        return found

    def put_cursor(self, key: str, value: dict[str, Any]) -> None:
        """Store the JSON document ``value`` under ``key`` (outside any ingest)."""
        with Session(self.engine) as session:
            self._put_cursor(session, key, value)
            session.commit()

    def put_cursor_in(self, session: Session, key: str, value: dict[str, Any]) -> None:
        """``put_cursor`` in the caller's transaction (not committed)."""
        self._put_cursor(session, key, value)

    def _put_cursor(self, session: Session, key: str, value: dict[str, Any]) -> None:
        stmt = self.insert(CURSORS).values(
            key=key, value=json.dumps(value, sort_keys=True), updated_at=utcnow()
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
        session.execute(stmt)

    def acquire_source(
        self, key: str, owner: str, seconds: float, now: datetime | None = None
    ) -> bool:
        """Take (or renew) the lease on polling ``key``; False if another owner holds it.

        One conditional upsert, atomic on SQLite and PostgreSQL: the row is taken only when
        it is free, expired, or already ours.
        """
        now = now or utcnow()
        until = now + timedelta(seconds=seconds)
        table = SOURCE_STATE
        stmt = self.insert(table).values(key=key, owner=owner, lease_until=until)
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"owner": owner, "lease_until": until},
            where=(table.c.owner.is_(None))
            | (table.c.lease_until.is_(None))
            | (table.c.lease_until < now)
            | (table.c.owner == owner),
        ).returning(table.c.owner)
        with Session(self.engine) as session:
            row = session.execute(stmt).first()
            session.commit()
        return row is not None and row.owner == owner

    def release_source(self, key: str, owner: str) -> None:
        """Give the polling lease back (only if we still hold it)."""
        table = SOURCE_STATE
        with Session(self.engine) as session:
            session.execute(
                update(table)
                .where(table.c.key == key, table.c.owner == owner)
                .values(owner=None, lease_until=None)
            )
            session.commit()

    def record_poll(
        self, key: str, status: str, error: str | None, now: datetime | None = None
    ) -> SourceState:
        """Store how a poll went and return the source's state after it.

        ``status`` is ``ok``, ``degraded`` or ``failing``. Failures count up
        ``consecutive_failures`` (``failing_since`` marks the start of the streak); a success
        resets them.
        """
        now = now or utcnow()
        with Session(self.engine) as session:
            state = session.get(SourceState, key, with_for_update=True)
            if state is None:
                state = SourceState(key=key)
            if status == "failing":
                if state.consecutive_failures == 0:
                    state.failing_since = now
                state.consecutive_failures += 1
                state.last_error = (error or "")[:2000]
            else:
                state.consecutive_failures = 0
                state.last_success = now
                state.last_error = (error or None) and error[:2000]
            state.status = status
            session.add(state)
            session.commit()
            session.refresh(state)
            session.expunge(state)
        return state

    def finish_poll(
        self,
        session: Session,
        key: str,
        owner: str,
        status: str,
        error: str | None,
        now: datetime | None = None,
    ) -> PollFinished | None:
        """``record_poll`` of a poll that did not fail, and ``release_source``, as one
        statement in the caller's transaction (``Store.ingest``'s ``finish``): the poll's
        mentions, its cursor, its health and the end of its lease commit together.

        ``status`` is ``ok`` or ``degraded``. Returns the row's ``health_alerted`` and
        ``failing_since`` (``None``: the source has no state row; nothing was written).
        """
        if status == "failing":
            raise ValueError("finish_poll records polls that did not fail")
        now = now or utcnow()
        table = SOURCE_STATE
        ours = table.c.owner == owner
        row = session.execute(
            update(table)
            .where(table.c.key == key)
            .values(
                status=status,
                consecutive_failures=0,
                last_success=now,
                last_error=(error or None) and error[:2000],
                # the right-hand sides read the row as it was: both test the old owner
                owner=case((ours, None), else_=table.c.owner),
                lease_until=case((ours, None), else_=table.c.lease_until),
            )
            .returning(table.c.health_alerted, table.c.failing_since, table.c.owner)
        ).first()
        if row is None:
            return None
        return PollFinished(bool(row.health_alerted), row.failing_since, row.owner is None)

    def set_health_alerted_in(self, session: Session, key: str, alerted: bool) -> None:
        """``set_health_alerted`` in the caller's transaction (not committed)."""
        session.execute(
            update(SOURCE_STATE).where(SOURCE_STATE.c.key == key).values(health_alerted=alerted)
        )

    def set_health_alerted(self, key: str, alerted: bool) -> None:
        with Session(self.engine) as session:
            state = session.get(SourceState, key)
            if state is not None:
                state.health_alerted = alerted
                session.add(state)
                session.commit()

    # -- ingest --------------------------------------------------------------------------

    def known_ids(self, source: str, external_ids: Iterable[str]) -> set[str]:
        """Which of these ids are stored already for ``source``."""
        ids = list(dict.fromkeys(external_ids))
        known: set[str] = set()
        with Session(self.engine) as session:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                rows = session.exec(
                    select(Mention.external_id).where(
                        Mention.source == source, col(Mention.external_id).in_(chunk)
                    )
                )
                known.update(rows)
        return known

    def ingest(
        self,
        cursor_key: str | None,
        mentions: Sequence[Mention],
        cursor: dict[str, Any] | None,
        prepare: Callable[[Mention], Sequence[Route]],
        *,
        storm: tuple[int, float] | None = None,
        finish: Callable[[Session], None] | None = None,
        stories: StoryOptions | None = None,
    ) -> IngestResult:
        """Store new mentions, queue their deliveries and move the cursor, atomically.

        ``prepare`` is called once per mention that is not stored yet (classify it, decide
        where it goes) and returns its routes. Items already stored are counted as
        duplicates and never prepared or queued again.

        ``storm``: ``(threshold, window seconds)``. When more than ``threshold`` alerts for
        one query reach one channel within the window, the ones past the threshold are
        queued as replies in the thread of one storm summary (queued here too, once).

        ``stories``: group the new mentions into stories (``listener/stories.py``), in this
        transaction. A later member's alert to a channel where its story already has one
        is queued as a reply in that alert's thread (payload ``{"story": <parent key>}``;
        story replies do not count toward storms), with a ``story_update`` row that
        re-renders the parent with the live count.

        ``finish`` runs in the same transaction, last before the commit (the pipeline
        records the poll's health and ends its lease there: ``finish_poll``); if it
        raises, nothing of this ingest is stored.
        """
        result = IngestResult()
        unique: dict[tuple[str, str], Mention] = {}
        for mention in mentions:
            unique.setdefault((mention.source, mention.external_id), mention)
        result.duplicates = len(mentions) - len(unique)
        by_source: dict[str, list[str]] = {}
        for source, external_id in unique:
            by_source.setdefault(source, []).append(external_id)
        known = {
            (source, external_id)
            for source, ids in by_source.items()
            for external_id in self.known_ids(source, ids)
        }
        fresh = [m for k, m in unique.items() if k not in known]
        result.duplicates += len(unique) - len(fresh)
        routes = {(m.source, m.external_id): list(prepare(m)) for m in fresh}

        with Session(self.engine) as session:
            inserted: dict[tuple[str, str], int] = {}
            for start in range(0, len(fresh), _CHUNK):
                chunk = fresh[start : start + _CHUNK]
                rows = [_mention_row(m) for m in chunk]
                stmt = (
                    self.insert(MENTIONS)
                    .on_conflict_do_nothing(index_elements=["source", "external_id"])
                    .returning(
                        MENTIONS.c.id,
                        MENTIONS.c.source,
                        MENTIONS.c.external_id,
                    )
                )
                for row in session.execute(stmt, rows):
                    inserted[(row.source, row.external_id)] = row.id
            outbox: list[dict[str, Any]] = []
            for mention in fresh:
                mention_id = inserted.get((mention.source, mention.external_id))
                if mention_id is None:  # another replica stored it first
                    result.duplicates += 1
                    continue
                mention.id = mention_id
                result.stored.append(mention)
                for channel, kind in routes[(mention.source, mention.external_id)]:
                    outbox.append(
                        _delivery_row(
                            f"{kind}:{mention.source}:{mention.external_id}:{channel}",
                            channel,
                            kind,
                            mention_id,
                        )
                    )
            if stories is not None and stories.enabled and result.stored:
                members = self._assign_stories(session, result.stored, stories)
                if members:
                    outbox = self._thread_stories(session, outbox, members)
            if outbox and storm is not None and storm[0] > 0:
                queries = {m.id: m.matched_query for m in result.stored}
                outbox = self._collapse_storms(session, outbox, queries, *storm)
            if outbox:
                stmt = (
                    self.insert(OUTBOX)
                    .on_conflict_do_nothing(index_elements=["idempotency_key"])
                    .returning(OUTBOX.c.id)
                )
                result.queued = len(session.execute(stmt, outbox).all())
            if cursor_key is not None and cursor is not None:
                self._put_cursor(session, cursor_key, cursor)
            if finish is not None:
                finish(session)
            session.commit()
        return result

    def _collapse_storms(
        self,
        session: Session,
        outbox: list[dict[str, Any]],
        queries: dict[int | None, str | None],
        threshold: int,
        window: float,
    ) -> list[dict[str, Any]]:
        """Mark the alerts of a storm as thread replies and put its summary first."""
        now = utcnow()
        since = now - timedelta(seconds=window)
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in outbox:
            query = queries.get(row["mention_id"])
            # Story replies are threaded already: they neither count nor collapse.
            if row["kind"] == "alert" and query and "story" not in row["payload"]:
                groups.setdefault((row["channel"], query), []).append(row)
        summaries: list[dict[str, Any]] = []
        table, mentions = OUTBOX, MENTIONS
        for (channel, query), rows in groups.items():
            recent = session.execute(
                select(func.count())
                .select_from(table.join(mentions, table.c.mention_id == mentions.c.id))
                .where(
                    table.c.channel == channel,
                    table.c.kind == "alert",
                    mentions.c.matched_query == query,
                    table.c.created_at > since,
                    table.c.payload["story"].as_string().is_(None),
                )
            ).scalar_one()
            if recent + len(rows) <= threshold:
                continue
            # An ongoing storm keeps its summary; a new one gets a new summary.
            ongoing = session.execute(
                select(table.c.idempotency_key)
                .where(
                    table.c.channel == channel,
                    table.c.kind == "storm",
                    table.c.payload["query"].as_string() == query,
                    table.c.created_at > since,
                )
                .order_by(table.c.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            key = ongoing or f"storm:{channel}:{query}:{now.isoformat(timespec='seconds')}"[:255]
            if ongoing is None:
                summaries.append(
                    _delivery_row(
                        key,
                        channel,
                        "storm",
                        None,
                        {
                            "query": query,
                            "title": f"Alert storm: mentions of {query!r} are pouring in",
                            "lines": [
                                f"More than {threshold} alerts for {query!r} within "
                                f"{window:g}s; the rest follow in this thread.",
                            ],
                        },
                    )
                )
            for row in rows[max(0, threshold - recent) :]:
                row["payload"] = {**row["payload"], "storm": key}
        return summaries + outbox

    # -- stories -------------------------------------------------------------------------

    def _assign_stories(
        self, session: Session, stored: Sequence[Mention], options: StoryOptions
    ) -> dict[int, Membership]:
        """Put each new mention in a story (joining a live one or starting one).

        Keys are looked up by primary key among those seen within ``options.window``; a
        near-duplicate candidate joins only when its shingle Jaccard against the story's
        first mention reaches ``options.threshold``. Members of one batch group with each
        other. The writes are batched: one insert of the new stories, one update per story
        joined, one upsert of the keys, one update of the mentions.

        Two replicas starting the same story at once: the key upsert only takes a key that
        is free, expired or already this story's, so the second replica finds the first's
        story, moves its members there and drops its own (empty) story.
        """
        now = utcnow()
        cutoff = now - timedelta(seconds=options.window)
        keys: dict[int, StoryKeys] = {}
        bodies_of = [m.body for m in stored]
        made_keys = keys_for_many(
            [m.link for m in stored], bodies_of, near_duplicate=options.near_duplicate
        )
        for mention, made in zip(stored, made_keys, strict=True):
            assert mention.id is not None
            if made.url_key or made.near:
                keys[mention.id] = made
        if not keys:
            return {}
        wanted = sorted({k for found in keys.values() for k in found.all})
        # A story is an id (stored) or ``-mention id`` (started by that mention, this batch).
        live: dict[str, int] = {}
        # Straight to the driver, like the key upsert: SQLAlchemy's expanding IN cost more
        # than the lookup itself here.
        mark = "?" if self.dialect == "sqlite" else "%s"
        before = self._db_time(cutoff)
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = session.connection().exec_driver_sql(
                "SELECT key, story_id FROM story_keys "
                f"WHERE key IN ({', '.join([mark] * len(chunk))}) AND seen_at >= {mark}",
                (*chunk, before),
            )
            live.update({key: story for key, story in rows})
        firsts: dict[int, set[str]] = {}
        bodies: dict[int, str] = {}  # the first text of the stories started in this batch
        # The first mention's text of every stored story a text key points at, in one query.
        stored_stories = sorted(
            {
                live[k]
                for found in keys.values()
                if not (found.url_key and found.url_key in live)
                for k in found.near
                if k in live
            }
        )
        for start in range(0, len(stored_stories), _CHUNK):
            ids_chunk = stored_stories[start : start + _CHUNK]
            first_ids = (
                select(func.min(MENTIONS.c.id))
                .where(MENTIONS.c.story_id.in_(ids_chunk))
                .group_by(MENTIONS.c.story_id)
            )
            for row in session.execute(
                select(MENTIONS.c.story_id, MENTIONS.c.title, MENTIONS.c.text).where(
                    MENTIONS.c.id.in_(first_ids)
                )
            ):
                # As ``Mention.body`` reads it: the new mention is compared by its body too.
                bodies[row.story_id] = "\n".join(p for p in (row.title, row.text) if p)

        def first_shingles(story: int) -> set[str]:
            if story not in firsts:
                firsts[story] = shingles(bodies.pop(story, ""))
            return firsts[story]

        plan: dict[int, int] = {}  # mention id -> story (as above)
        for mention, body in zip(stored, bodies_of, strict=True):
            assert mention.id is not None
            found = keys.get(mention.id)
            if found is None:
                continue
            story = live.get(found.url_key) if found.url_key else None
            if story is None and found.near:
                grams: set[str] | None = None  # made for the first candidate only
                tried: set[int] = set()
                for key in found.near:
                    candidate = live.get(key)
                    if candidate is None or candidate in tried:
                        continue
                    tried.add(candidate)
                    if grams is None:
                        grams = shingles(body)
                    if jaccard(grams, first_shingles(candidate)) >= options.threshold:
                        story = candidate
                        break
            if story is None:
                story = -mention.id
                if found.near:
                    bodies[story] = body
            plan[mention.id] = story
            for key in found.all:
                live.setdefault(key, story)
        sizes = Counter(plan.values())
        by_id = {m.id: m for m in stored}
        started = [s for s in sizes if s < 0]
        ids: dict[int, int] = {}
        if started:
            made_ids = self._new_story_ids(session, len(started))
            at = self._db_time(now)
            mark = "?" if self.dialect == "sqlite" else "%s"
            session.connection().exec_driver_sql(
                "INSERT INTO stories (id, url, title, mention_count, created_at, last_at) "
                f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark})",
                [
                    (
                        story_id,
                        keys[-s].url,
                        (by_id[-s].title or by_id[-s].text or "")[:500],
                        sizes[s],
                        at,
                        at,
                    )
                    for s, story_id in zip(started, made_ids, strict=True)
                ],
            )
            ids = dict(zip(started, made_ids, strict=True))
        resolved = {mid: ids.get(s, s) for mid, s in plan.items()}
        # Point every key at its story (the first mention with it wins within the batch).
        wants: dict[str, int] = {}
        for mention in stored:
            if mention.id in resolved:
                for key in keys[mention.id].all:
                    wants.setdefault(key, resolved[mention.id])
        claimed = self._claim_keys(session, wants, now, cutoff)
        moved: dict[int, int] = {}
        # A link's story another replica started a moment ago: join it, drop ours.
        lost = {
            ids[s]: keys[-s].url_key
            for s in started
            if keys[-s].url_key and keys[-s].url_key not in claimed
        }
        if lost:
            winners = {
                row.key: row.story_id
                for row in session.execute(
                    select(STORY_KEYS.c.key, STORY_KEYS.c.story_id).where(
                        STORY_KEYS.c.key.in_(list(lost.values()))
                    )
                )
            }
            moved = {ours: winners[key] for ours, key in lost.items() if key in winners}
            session.execute(STORY_KEYS.delete().where(STORY_KEYS.c.story_id.in_(list(moved))))
            session.execute(STORIES.delete().where(STORIES.c.id.in_(list(moved))))
            resolved = {mid: moved.get(story, story) for mid, story in resolved.items()}
            again: dict[str, int] = {}
            for mid, story in resolved.items():
                if story in moved.values():
                    for key in keys[mid].all:
                        again.setdefault(key, story)
            self._claim_keys(session, again, now, cutoff)
        # Count the members each stored story gained; a new story was inserted counted.
        fresh_ids = set(ids.values()) - set(moved)
        gained = Counter(story for story in resolved.values() if story not in fresh_ids)
        base = {
            story: count - gained[story]
            for story, count in self._bump_stories(session, gained, now).items()
        }
        members: dict[int, Membership] = {}
        seen: Counter[int] = Counter()
        for mention in stored:
            story = resolved.get(mention.id or 0)
            if story is None:
                continue
            seen[story] += 1
            count = base.get(story, 0) + seen[story]
            members[mention.id or 0] = Membership(story, count, count == 1)
            mention.story_id = story
        mark = "?" if self.dialect == "sqlite" else "%s"
        session.connection().exec_driver_sql(
            f"UPDATE mentions SET story_id = {mark} WHERE id = {mark}",
            [(m.story_id, mid) for mid, m in members.items()],
        )
        return members

    def _claim_keys(
        self, session: Session, wants: dict[str, int], now: datetime, cutoff: datetime
    ) -> set[str]:
        """Point each key at its story where the key is free, expired or already that
        story's (refreshing ``seen_at``); the link keys (``url:``) it now holds.

        Only the link keys are read back (a new story that did not get its link's key lost
        a race); the text keys, most of them, go in one ``executemany`` without
        ``RETURNING``, which the driver runs in its own loop.
        """
        table = STORY_KEYS
        links = sorted(k for k in wants if k.startswith("url:"))
        texts = sorted(k for k in wants if not k.startswith("url:"))
        held: set[str] = set()
        if links:
            stmt = self.insert(table)
            stmt = stmt.on_conflict_do_update(
                index_elements=["key"],
                set_={"story_id": stmt.excluded.story_id, "seen_at": stmt.excluded.seen_at},
                where=(table.c.story_id == stmt.excluded.story_id) | (table.c.seen_at < cutoff),
            )
            rows = [{"key": k, "story_id": wants[k], "seen_at": now} for k in links]
            held = set(session.execute(stmt.returning(table.c.key), rows).scalars())
        if texts:
            # Straight to the driver: SQLAlchemy's per-row parameter handling cost as much
            # as SQLite's own work here (bench_ingest --grouping).
            mark = "?" if self.dialect == "sqlite" else "%s"
            sql = (
                f"INSERT INTO story_keys (key, story_id, seen_at) VALUES ({mark}, {mark}, {mark}) "
                "ON CONFLICT (key) DO UPDATE SET story_id = excluded.story_id, "
                "seen_at = excluded.seen_at WHERE story_keys.story_id = excluded.story_id "
                f"OR story_keys.seen_at < {mark}"
            )
            seen, before = self._db_time(now), self._db_time(cutoff)
            session.connection().exec_driver_sql(sql, [(k, wants[k], seen, before) for k in texts])
        return held

    def _new_story_ids(self, session: Session, n: int) -> list[int]:
        """``n`` ids for new ``stories`` rows, so that they go in with one ``executemany``
        (an insert returning its ids in order goes row by row on SQLite).

        PostgreSQL: the next ``n`` of the table's sequence (unique across replicas).
        SQLite: the ones after the largest id; this transaction has already written (the
        mentions), so it holds the database's write lock and no other writer can take
        them.
        """
        if self.dialect == "postgresql":
            return list(
                session.connection()
                .exec_driver_sql(
                    "SELECT nextval(pg_get_serial_sequence('stories', 'id')) "
                    "FROM generate_series(1, %s)",
                    (n,),
                )
                .scalars()
            )
        top = session.connection().exec_driver_sql("SELECT max(id) FROM stories").scalar()
        return list(range(int(top or 0) + 1, int(top or 0) + 1 + n))

    def _db_time(self, at: datetime) -> Any:
        """``at`` as this database's driver takes a timezone-aware column's value (SQLite:
        the text SQLAlchemy stores and compares)."""
        dialect = self.engine.dialect
        process = STORY_KEYS.c.seen_at.type.dialect_impl(dialect).bind_processor(dialect)
        return process(at) if process is not None else at

    def _bump_stories(
        self, session: Session, gained: dict[int, int], now: datetime
    ) -> dict[int, int]:
        """Count more members (``{story: n}``); each story's count after them.

        One ``executemany`` of the updates, then one read of the counts: the updated rows
        stay locked by this transaction until it commits, so what is read is this count.
        """
        if not gained:
            return {}
        mark = "?" if self.dialect == "sqlite" else "%s"
        at = self._db_time(now)
        session.connection().exec_driver_sql(
            f"UPDATE stories SET mention_count = mention_count + {mark}, last_at = {mark} "
            f"WHERE id = {mark}",
            [(n, at, story) for story, n in sorted(gained.items())],
        )
        counts: dict[int, int] = {}
        wanted = sorted(gained)
        for start in range(0, len(wanted), _CHUNK):
            rows = session.execute(
                select(STORIES.c.id, STORIES.c.mention_count).where(
                    STORIES.c.id.in_(wanted[start : start + _CHUNK])
                )
            )
            counts.update({row.id: int(row.mention_count) for row in rows})
        return counts

    def _thread_stories(
        self, session: Session, outbox: list[dict[str, Any]], members: dict[int, Membership]
    ) -> list[dict[str, Any]]:
        """Make later members' alerts replies in their story's thread, per channel, and
        queue one live-count update of each parent touched.

        A later member that is not alerted itself (stored only, held for a digest, or
        alerted elsewhere) still changes the count its story's parents show: every parent
        of its story gets the update too."""
        parents: dict[tuple[int, str], str] = {}
        counts: dict[tuple[int, str], int] = {}
        # Stories joined by this batch: their alerts already stored, one query a story. The
        # first alert in a channel is the story's parent there, and its count changes.
        joined: dict[int, int] = {}
        for joiner in members.values():
            if not joiner.started:
                joined[joiner.story_id] = max(joined.get(joiner.story_id, 0), joiner.count)
        for story_id, count in joined.items():
            alerts = session.execute(
                select(OUTBOX.c.idempotency_key, OUTBOX.c.channel)
                .select_from(OUTBOX.join(MENTIONS, OUTBOX.c.mention_id == MENTIONS.c.id))
                .where(MENTIONS.c.story_id == story_id, OUTBOX.c.kind == "alert")
                .order_by(OUTBOX.c.id)
            ).all()
            for key, channel in alerts:
                parents.setdefault((story_id, channel), key)
                counts[(story_id, channel)] = count
        for row in outbox:
            member = members.get(row["mention_id"])
            if row["kind"] != "alert" or member is None:
                continue
            where = (member.story_id, row["channel"])
            parent = parents.get(where)
            if parent is None:  # the story's first alert in this channel
                parents[where] = row["idempotency_key"]
                continue
            row["payload"] = {**row["payload"], "story": parent}
            counts[where] = max(counts.get(where, 0), member.count)
        updates = [
            _delivery_row(
                f"story-update:{story_id}:{channel}:{count}",
                channel,
                KIND_STORY_UPDATE,
                None,
                {"story": parents[(story_id, channel)], "story_id": story_id},
            )
            for (story_id, channel), count in counts.items()
        ]
        return outbox + updates

    def story_sources(self, story_id: int) -> tuple[int, dict[str, dict[str, int]]]:
        """A story's mention count and its sentiment per source
        (``{"reddit": {"negative": 2}}``), as stored now."""
        with Session(self.engine) as session:
            count = session.execute(
                select(STORIES.c.mention_count).where(STORIES.c.id == story_id)
            ).scalar_one_or_none()
            rows = session.execute(
                select(MENTIONS.c.source, MENTIONS.c.sentiment_label, func.count())
                .where(MENTIONS.c.story_id == story_id)
                .group_by(MENTIONS.c.source, MENTIONS.c.sentiment_label)
            ).all()
        sources: dict[str, dict[str, int]] = {}
        for source, label, n in rows:
            split = sources.setdefault(source, {})
            split[label or "unscored"] = split.get(label or "unscored", 0) + int(n)
        return int(count or 0), sources

    def delivery_by_key(self, key: str) -> Delivery | None:
        """The outbox row with this idempotency key."""
        with Session(self.engine) as session:
            row = session.exec(select(Delivery).where(Delivery.idempotency_key == key)).first()
            if row is not None:
                session.expunge(row)
            return row

    def defer(self, delivery_id: int, delay: float) -> None:
        """Put a leased row back for ``delay`` seconds without counting an attempt."""
        with Session(self.engine) as session:
            session.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id == delivery_id)
                .values(lease_until=None, next_attempt_at=utcnow() + timedelta(seconds=delay))
            )
            session.commit()

    # -- outbox --------------------------------------------------------------------------

    def enqueue(
        self, key: str, channel: str, kind: str, payload: dict[str, Any] | None = None
    ) -> bool:
        """Queue a message that has no mention (health notices, summaries). Idempotent."""
        with Session(self.engine) as session:
            done = self.queue(session, key, channel, kind, payload)
            session.commit()
        return done

    def queue(
        self,
        session: Session,
        key: str,
        channel: str,
        kind: str,
        payload: dict[str, Any] | None = None,
        mention_id: int | None = None,
    ) -> bool:
        """Insert one outbox row in ``session`` (not committed) unless ``key`` is queued
        already; ``True`` if it was inserted. For callers that queue in their own
        transaction, with the state change the message reports."""
        stmt = self.insert(OUTBOX).on_conflict_do_nothing(index_elements=["idempotency_key"])
        row = _delivery_row(key, channel, kind, mention_id, payload)
        return bool(session.execute(stmt.returning(OUTBOX.c.id), [row]).all())

    def claim(
        self, limit: int = 50, lease_seconds: float = 120.0, now: datetime | None = None
    ) -> list[Claimed]:
        """Lease up to ``limit`` due outbox rows to this worker.

        On PostgreSQL, ``FOR UPDATE SKIP LOCKED`` lets replicas claim side by side; on both
        databases the lease is taken with a conditional update, so a row is only ever held
        by one worker at a time.
        """
        now = now or utcnow()
        until = now + timedelta(seconds=lease_seconds)
        table = OUTBOX.c
        claimed: list[Claimed] = []
        with Session(self.engine) as session:
            due = (
                select(Delivery.id, Delivery.lease_until)
                .where(
                    Delivery.status == DeliveryStatus.PENDING.value,
                    col(Delivery.next_attempt_at) <= now,
                    (col(Delivery.lease_until).is_(None)) | (col(Delivery.lease_until) < now),
                )
                .order_by(col(Delivery.next_attempt_at), col(Delivery.id))
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = list(session.exec(due))
            expired = {row[0] for row in rows if row[1] is not None}
            taken: list[int] = []
            for delivery_id, _lease in rows:
                res = session.execute(
                    update(OUTBOX)
                    .where(
                        table.id == delivery_id,
                        table.status == DeliveryStatus.PENDING.value,
                        (table.lease_until.is_(None)) | (table.lease_until < now),
                    )
                    .values(lease_until=until)
                )
                if res.rowcount and delivery_id is not None:  # type: ignore[attr-defined]
                    taken.append(delivery_id)
            session.commit()
            for delivery_id in taken:
                delivery = session.get(Delivery, delivery_id)
                if delivery is None:  # pragma: no cover - deleted under us
                    continue
                mention = session.get(Mention, delivery.mention_id) if delivery.mention_id else None
                session.expunge(delivery)
                if mention is not None:
                    session.expunge(mention)
                verify = delivery.verify or delivery_id in expired
                claimed.append(Claimed(delivery, mention, verify, until))
        return claimed

    def renew(
        self,
        claimed: Claimed,
        lease_seconds: float = 120.0,
        now: datetime | None = None,
    ) -> bool:
        """Extend the lease of a claimed row, if this worker still holds it.

        False when the lease was taken over: it ran out (a stalled worker) and another
        worker claimed the row. The row must then not be sent by this worker.
        """
        if claimed.lease is None or claimed.delivery.id is None:
            return False
        until = (now or utcnow()) + timedelta(seconds=lease_seconds)
        with Session(self.engine) as session:
            res = session.execute(
                update(OUTBOX)
                .where(
                    OUTBOX.c.id == claimed.delivery.id,
                    OUTBOX.c.status == DeliveryStatus.PENDING.value,
                    OUTBOX.c.lease_until == claimed.lease,
                )
                .values(lease_until=until)
            )
            session.commit()
        if not res.rowcount:  # type: ignore[attr-defined]
            return False
        claimed.lease = until
        return True

    def _update_delivery(self, delivery_id: int, **values: Any) -> None:
        with Session(self.engine) as session:
            session.execute(update(OUTBOX).where(OUTBOX.c.id == delivery_id).values(**values))
            session.commit()

    def release(self, delivery_ids: Sequence[int]) -> None:
        """Give leased rows back unsent (a worker that is stopping)."""
        if not delivery_ids:
            return
        with Session(self.engine) as session:
            session.execute(
                update(OUTBOX)
                .where(
                    OUTBOX.c.id.in_(list(delivery_ids)),
                    OUTBOX.c.status == DeliveryStatus.PENDING.value,
                )
                .values(lease_until=None)
            )
            session.commit()

    def known_channel_id(self, channel: str) -> str | None:
        """The Slack channel id a channel name resolved to on an earlier send, if any."""
        with Session(self.engine) as session:
            return session.exec(
                select(Delivery.message_channel)
                .where(Delivery.channel == channel, col(Delivery.message_channel).is_not(None))
                .limit(1)
            ).first()

    def mark_sent(self, delivery_id: int, channel_id: str | None, ts: str | None) -> None:
        """The message is in Slack: never send this row again."""
        now = utcnow()
        with Session(self.engine) as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None:
                return
            delivery.status = DeliveryStatus.SENT.value
            delivery.sent_at = now
            delivery.lease_until = None
            delivery.attempts += 1
            delivery.message_channel = channel_id
            delivery.message_ts = ts
            delivery.last_error = None
            if delivery.mention_id is not None:
                session.execute(
                    update(MENTIONS)
                    .where(
                        MENTIONS.c.id == delivery.mention_id,
                        MENTIONS.c.status == MentionStatus.NEW.value,
                    )
                    .values(status=MentionStatus.ALERTED.value)
                )
            session.add(delivery)
            session.commit()

    def mark_retry(
        self, delivery_id: int, error: str, delay: float, *, verify: bool = False
    ) -> None:
        """Sending failed for now: try again after ``delay`` seconds.

        ``verify``: the attempt may have reached Slack; check before the next post.
        """
        with Session(self.engine) as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None:
                return
            delivery.attempts += 1
            delivery.verify = delivery.verify or verify
            delivery.last_error = error[:2000]
            delivery.lease_until = None
            delivery.next_attempt_at = utcnow() + timedelta(seconds=max(0.0, delay))
            session.add(delivery)
            session.commit()

    def mark_failed(self, delivery_id: int, error: str) -> None:
        """Sending can never succeed (bad channel, bad token): stop and keep the reason."""
        with Session(self.engine) as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None:
                return
            delivery.attempts += 1
            delivery.status = DeliveryStatus.FAILED.value
            delivery.last_error = error[:2000]
            delivery.lease_until = None
            session.add(delivery)
            session.commit()

    def requeue_failed(self, channel: str | None = None) -> int:
        """Put failed rows back in the queue (after fixing a token or channel)."""
        table = OUTBOX
        stmt = update(table).where(table.c.status == DeliveryStatus.FAILED.value)
        if channel:
            stmt = stmt.where(table.c.channel == channel)
        with Session(self.engine) as session:
            result = session.execute(
                stmt.values(
                    status=DeliveryStatus.PENDING.value,
                    next_attempt_at=utcnow(),
                    lease_until=None,
                    attempts=0,
                    verify=True,
                )
            )
            session.commit()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def outbox_counts(self) -> dict[str, int]:
        """Outbox rows by status."""
        with Session(self.engine) as session:
            rows = session.exec(
                select(Delivery.status, func.count()).group_by(col(Delivery.status))
            )
            return {status: count for status, count in rows}

    def next_due(self) -> datetime | None:
        """When the earliest pending row becomes due (``None``: nothing pending)."""
        with Session(self.engine) as session:
            return as_utc(
                session.exec(
                    select(func.min(Delivery.next_attempt_at)).where(
                        Delivery.status == DeliveryStatus.PENDING.value
                    )
                ).one()
            )

    def count_mentions(self) -> int:
        with Session(self.engine) as session:
            return session.exec(select(func.count()).select_from(Mention)).one()


def _mention_row(mention: Mention) -> dict[str, Any]:
    row = mention.model_dump(exclude={"id"})
    return row


def _delivery_row(
    key: str,
    channel: str,
    kind: str,
    mention_id: int | None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    now = utcnow()
    if len(key) > 255:
        # Cutting would make two long keys one (two alerts, one sent): keep a digest.
        key = f"{key[:190]}~{hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()}"
    return {
        "idempotency_key": key,
        "mention_id": mention_id,
        "channel": channel,
        "kind": kind,
        "payload": payload or {},
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
