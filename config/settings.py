"""Settings: the TOML config file, validated, plus the secrets from the environment.

Every key is documented in ``earshot.example.toml``. Secrets (tokens, the database URL with
its password) are read only from the environment and never printed. A mistake in the file
raises ``ConfigError`` whose message names the key, e.g.::

    sources[0].evry: unknown key (did you mean 'every'?)
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, cast
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from earshot.listener.models import Intent
from earshot.listener.query import QuerySet, QuerySyntaxError
from earshot.listener.reach import DEFAULT_THRESHOLDS, MAX_FIGURE, MEASURES
from earshot.listener.sources import SOURCE_TYPES, Source

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: The longest duration any key takes (a year and a day): longer ones overflow the
#: scheduler's and the HTTP client's clocks.
MAX_DURATION = 366 * 86400.0
#: The most characters of a bad value an error message shows.
_SHOWN = 40


def shown(value: Any) -> str:
    """A bad value as an error message shows it: its repr, cut to a readable length, with
    characters that cannot be printed (invalid UTF-8 from the environment) escaped."""
    text = repr(value) if isinstance(value, str | int | float | bool) else type(value).__name__
    if len(text) > _SHOWN:
        text = f"{text[: _SHOWN - 8]}...({len(text)} characters)"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def parse_duration(value: Any, *, at_most: float = MAX_DURATION) -> float:
    """Seconds from ``"30s"``, ``"5m"``, ``"1h"``, ``"7d"`` or a plain number of seconds.

    Raises ``ValueError`` for anything else, and for a duration that is not positive, not
    finite (``inf``, ``nan``) or longer than ``at_most`` (default ``MAX_DURATION``, 366 days).
    """
    limit = "366 days" if at_most == MAX_DURATION else duration_words(at_most)
    if isinstance(value, bool):
        raise ValueError("expected a duration like '30s', '5m', '1h' or '7d'")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str) and (match := _DURATION.match(value)):
            seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
        else:
            raise ValueError(
                f"expected a duration like '30s', '5m', '1h' or '7d', got {shown(value)}"
            )
    except OverflowError:  # an integer beyond a float's range
        raise ValueError(f"at most {limit}, got {shown(value)}") from None
    if not math.isfinite(seconds) and not isinstance(value, str):
        raise ValueError(f"expected a finite duration like '30s' or '5m', got {shown(value)}")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    if seconds > at_most:
        raise ValueError(f"at most {limit}, got {shown(value)}")
    return seconds


def duration_words(seconds: float) -> str:
    """``600`` -> ``"10 minutes"`` (for messages)."""
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"


def _parse_pause(value: Any) -> float:
    if value in (0, "0", 0.0):
        return 0.0
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(parse_duration)]
#: A request timeout: a duration of at most 10 minutes.
TIMEOUT_MAX = 600.0


def _parse_timeout(value: Any) -> float:
    return parse_duration(value, at_most=TIMEOUT_MAX)


Timeout = Annotated[float, BeforeValidator(_parse_timeout)]
#: How far back a first poll may read: up to a thousand years (everything; tests and
#: one-off imports use "10000d").
BACKFILL_MAX = 365_250 * 86400.0


def _parse_backfill(value: Any) -> float:
    return parse_duration(value, at_most=BACKFILL_MAX)


Backfill = Annotated[float, BeforeValidator(_parse_backfill)]
#: A duration that may be zero.
Pause = Annotated[float, BeforeValidator(_parse_pause)]


#: Deepest nesting of tables and arrays a config document may have (the deepest real key,
#: ``product.queries[0].sources[0]``, is at 5).
MAX_DEPTH = 10


def _slack_channel(value: Any) -> Any:
    """A Slack channel as Slack takes it: ``#name`` or ``name`` (lowercase letters, digits,
    ``-`` and ``_``, at most 80) or a channel id (``C0123ABCD``)."""
    if not isinstance(value, str):
        return value
    if _CHANNEL_ID.match(value):
        return value
    name = value.removeprefix("#")
    if not name:
        raise ValueError(
            f"expected a channel like '#cx-alerts' or an id like 'C0123ABCD', got {shown(value)}"
        )
    if len(name) > 80:
        raise ValueError(f"a Slack channel name has at most 80 characters, got {len(name)}")
    bad = sorted({c for c in name if not (c.isalnum() or c in "-_") or c.isspace()})
    if bad:
        what = ", ".join(shown(c) for c in bad[:3])
        raise ValueError(
            f"{shown(value)} is not a Slack channel: a name has only lowercase letters, digits, "
            f"'-' and '_' (here {what})"
        )
    if name != name.lower():
        raise ValueError(
            f"{shown(value)} is not a Slack channel: names are lowercase "
            f"(did you mean {('#' if value.startswith('#') else '') + name.lower()!r}?)"
        )
    return value


def _optional_channel(value: Any) -> Any:
    """A channel, or ``None`` for an empty string ("no channel")."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _slack_channel(value)


_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,20}$")
#: A Slack channel: ``#name``, ``name`` or an id.
SlackChannel = Annotated[str, BeforeValidator(_slack_channel)]
#: A Slack channel, or unset (``None`` or ``""``).
OptionalChannel = Annotated[str | None, BeforeValidator(_optional_channel)]


def check_http_url(value: str) -> str:
    """``value`` if it is an absolute http(s) URL with a host, else ``ValueError``."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ValueError(f"not a URL ({exc}): {shown(value)}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must be an http(s) URL, got {shown(value)}")
    if not host or any(c.isspace() for c in value):
        raise ValueError(f"must be an http(s) URL with a host name, got {shown(value)}")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class QuerySpec(_Section):
    """One query given as a table: ``{ q = "...", tag = "...", sources = [...], channel = "..." }``.

    ``sources`` (source types) limits where the query is matched; ``channel`` takes the place
    of the alerts channel for its alerts; ``tag`` names it in ``[[routes]]``.
    """

    q: str = Field(min_length=1)
    tag: str | None = Field(None, min_length=1, max_length=100)
    sources: list[str] = Field(default_factory=list)
    channel: OptionalChannel = None


def _query_tables(data: Any) -> Any:
    """Split ``[product] queries`` into the query texts and the tables' options."""
    if not isinstance(data, dict) or "queries" not in data:
        return data
    if "query_specs" in data:
        raise ValueError("query_specs: unknown key (give queries as tables in 'queries')")
    queries = data["queries"]
    if not isinstance(queries, list):
        return data
    texts: list[Any] = []
    specs: list[QuerySpec] = []
    for index, entry in enumerate(queries):
        if not isinstance(entry, dict):
            texts.append(entry)
            continue
        try:
            spec = QuerySpec.model_validate(entry)
        except ValidationError as exc:
            error = exc.errors()[0]
            key = ".".join(str(part) for part in error["loc"])
            if error["type"] == "extra_forbidden":
                close = difflib.get_close_matches(key, list(QuerySpec.model_fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"queries[{index}].{key}: unknown key{hint}") from None
            if error["type"] == "missing":
                raise ValueError(f"queries[{index}].{key}: required key missing") from None
            raise ValueError(f"queries[{index}].{key}: {error['msg']}") from None
        unknown = [s for s in spec.sources if s not in SOURCE_TYPES]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(SOURCE_TYPES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"queries[{index}].sources: unknown source type {shown(unknown[0])}{hint}"
            )
        texts.append(spec.q)
        specs.append(spec)
    return {**data, "queries": texts, "query_specs": specs}


class ProductSettings(_Section):
    """``[product]``: what to listen for."""

    name: str = Field(min_length=1)
    queries: list[str] = Field(default_factory=list)
    excluded_authors: list[str] = Field(default_factory=list)
    #: The queries given as tables (filled from ``queries``; not a key of its own).
    query_specs: list[QuerySpec] = Field(default_factory=list)

    _tables = model_validator(mode="before")(_query_tables)

    def tags(self) -> dict[str, str]:
        """Query text -> tag, for the queries that have one."""
        return {spec.q: spec.tag for spec in self.query_specs if spec.tag}

    def query_channels(self) -> dict[str, str]:
        """Query text -> channel, for the queries that name one."""
        return {spec.q: spec.channel for spec in self.query_specs if spec.channel}

    def query_sources(self) -> dict[str, list[str]]:
        """Query text -> source types, for the queries limited to some sources."""
        return {spec.q: list(spec.sources) for spec in self.query_specs if spec.sources}

    @field_validator("queries")
    @classmethod
    def _parse_queries(cls, queries: list[str]) -> list[str]:
        for index, text in enumerate(queries):
            try:
                QuerySet([text])
            except QuerySyntaxError as exc:
                raise ValueError(
                    f"query [{index}] {shown(text)}: {exc.message} at position {exc.position}"
                ) from None
        return queries


class SentimentSettings(_Section):
    """``[sentiment]``: which classifier labels mentions, and how.

    ``negative_at`` / ``positive_at`` are compound-score thresholds. Unset, the ``experience``
    classifier lets its fitted flag model decide and ``vader`` uses -0.5 / 0.5. Set (one or
    both; the other then defaults to -0.5 or 0.5), either classifier labels by the compound
    score alone, at those thresholds.
    """

    negative_at: float | None = Field(None, ge=-1.0, le=1.0)
    positive_at: float | None = Field(None, ge=-1.0, le=1.0)
    classifier: Literal["experience", "vader"] = "experience"
    non_english: Literal["unscored", "skip", "score"] = "unscored"

    def thresholds(self) -> tuple[float, float] | None:
        """The configured compound thresholds, or ``None`` when neither is set."""
        if self.negative_at is None and self.positive_at is None:
            return None
        return (
            -0.5 if self.negative_at is None else self.negative_at,
            0.5 if self.positive_at is None else self.positive_at,
        )

    @model_validator(mode="after")
    def _ordered(self) -> SentimentSettings:
        thresholds = self.thresholds()
        if thresholds is not None and thresholds[0] >= thresholds[1]:
            raise ValueError(
                f"negative_at must be lower than positive_at (here {thresholds[0]} and "
                f"{thresholds[1]}; an unset one is -0.5 or 0.5)"
            )
        return self


class SlackSettings(_Section):
    """``[slack]``: where alerts go. The bot token comes from ``SLACK_BOT_TOKEN``."""

    api_url: str = "https://slack.com/api/"
    alerts_channel: OptionalChannel = "#cx-alerts"
    amplify_channel: OptionalChannel = "#cx-wins"
    health_channel: OptionalChannel = None
    interactive: bool = False
    #: How clicks reach earshot: "socket" (SLACK_APP_TOKEN, no public URL) or "http"
    #: (SLACK_SIGNING_SECRET; Slack posts to /slack/events on the [http] port).
    mode: Literal["socket", "http"] = "socket"
    #: Who may approve or reject positive mentions: user ids and/or one user group id.
    approvers: list[Annotated[str, Field(pattern=r"^[UW][A-Z0-9]+$")]] = Field(default_factory=list)
    approver_group: str | None = Field(None, pattern=r"^S[A-Z0-9]+$")
    #: Where approved mentions are posted, share-ready (unset: not posted).
    wins_channel: OptionalChannel = None
    #: A negative alert not handled within this is escalated once, in its thread.
    sla: Duration = 3600.0
    #: The user group mentioned in SLA escalations.
    oncall_group: str | None = Field(None, pattern=r"^S[A-Z0-9]+$")
    min_interval: Pause = 1.0
    #: More than this many alerts for one query in one channel within ``storm_window``
    #: collapse into one summary with the rest in its thread (0: never).
    storm_threshold: int = Field(10, ge=0, le=100_000)
    storm_window: Duration = 60.0
    #: How long a worker holds an outbox row while sending it; a crashed worker's rows are
    #: picked up again after this.
    delivery_lease: Duration = 120.0
    #: How long `earshot run --once` waits for alerts being retried (429 Retry-After, 5xx,
    #: Slack unreachable) before it exits 1 with them still pending in the outbox.
    drain_timeout: Duration = 60.0
    failing_after: int = Field(3, ge=1, le=10_000)
    #: A source whose polls succeed but bring nothing new for this long (and for three
    #: times its usual gap between new items) raises one health notice (0: never).
    silent_after: Pause = 3 * 86400.0

    @field_validator("api_url")
    @classmethod
    def _http(cls, value: str) -> str:
        return check_http_url(value)


class HttpSettings(_Section):
    """``[http]``: the ops endpoint (/healthz, /readyz, /metrics). ``EARSHOT_HTTP_PORT``
    overrides the port."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)


class StorageSettings(_Section):
    """``[storage]``: the embedded SQLite file, used when ``DATABASE_URL`` is not set."""

    path: str = "earshot.db"

    @field_validator("path")
    @classmethod
    def _file_name(cls, value: str) -> str:
        if not value.strip() or "\x00" in value:
            raise ValueError(f"expected a file name like 'earshot.db', got {shown(value)}")
        parts = Path(value).parts
        if len(value.encode("utf-8", "surrogateescape")) > 4000 or any(
            len(part.encode("utf-8", "surrogateescape")) > 255 for part in parts
        ):
            raise ValueError(f"a path too long for the file system: {shown(value)}")
        return value


class _SourceSettings(_Section):
    """Keys every ``[[sources]]`` table has; each type adds its own ``Options``."""

    name: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    every: Duration = 300.0
    base_url: str | None = None
    #: At least one request in 100 minutes; at most 100,000 a minute.
    requests_per_minute: float | None = Field(None, ge=0.01, le=100_000)
    backfill: Backfill = 86400.0
    #: Per request: at most 10 minutes.
    timeout: Timeout = 20.0
    if TYPE_CHECKING:
        type: str  # each source type's model adds it as a Literal

    #: Override which environment variables hold this source's secrets (names, not values).
    secrets: dict[str, Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=dict
    )

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    #: The common keys, which the source's constructor does not take as options.
    COMMON: ClassVar[frozenset[str]] = frozenset(
        {
            "type",
            "name",
            "every",
            "base_url",
            "requests_per_minute",
            "backfill",
            "timeout",
            "secrets",
        }
    )

    def options(self) -> dict[str, Any]:
        """The type-specific settings, as the source's constructor takes them."""
        return self.model_dump(exclude=set(self.COMMON))

    def secret_values(self, env: Mapping[str, str]) -> dict[str, str]:
        """The source's secrets from the environment, as constructor keywords."""
        declared = SOURCE_TYPES[str(getattr(self, "type", ""))].secrets
        values = {}
        for keyword, default_var in declared.items():
            value = env.get(self.secrets.get(keyword, default_var))
            if value:
                values[keyword] = value
        return values


def _settings_model(kind: str, source: type[Source]) -> type[_SourceSettings]:
    bases: Any = (_SourceSettings, source.Options)
    tag: Any = Literal[kind]
    model: Any = create_model(f"{source.__name__}Settings", __base__=bases, type=(tag, ...))
    return cast(type[_SourceSettings], model)


#: Config ``type`` name -> the settings model of that source (from the source registry).
SOURCE_SETTINGS: dict[str, type[_SourceSettings]] = {
    kind: _settings_model(kind, cls) for kind, cls in sorted(SOURCE_TYPES.items())
}

if TYPE_CHECKING:
    SourceSettings = _SourceSettings
else:
    # A discriminated union over every registered source's settings model.
    SourceSettings = Annotated[
        Union[tuple(SOURCE_SETTINGS.values())],  # noqa: UP007
        Field(discriminator="type"),
    ]


_LABELS = ("negative", "mixed", "unscored", "neutral", "positive")
_INTENTS = tuple(intent.value for intent in Intent)
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _strings(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _known_names(names: list[str], known: Sequence[str], kind: str) -> list[str]:
    """``names`` unchanged if each is one of ``known``; else an error with a did-you-mean."""
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown {kind} {shown(name)}{hint}; known: {', '.join(known)}")
    return names


class RouteSettings(_Section):
    """One ``[[routes]]`` table: conditions, then an action and a channel. First match wins."""

    query: str | None = None
    tag: str | None = None
    source: Annotated[list[str], BeforeValidator(_strings)] = Field(default_factory=list)
    sentiment: Annotated[list[str], BeforeValidator(_strings)] = Field(default_factory=list)
    #: Matches a mention with any of these intent tags (``bug``, ``churn_risk``, ``spam``...).
    intents: Annotated[list[str], BeforeValidator(_strings)] = Field(default_factory=list)
    min_rating: int | None = Field(None, ge=1, le=5)
    max_rating: int | None = Field(None, ge=1, le=5)
    action: Literal["instant", "hourly", "daily", "ignore"] = "instant"
    channel: OptionalChannel = None

    @field_validator("sentiment")
    @classmethod
    def _labels(cls, labels: list[str]) -> list[str]:
        return _known_names(labels, _LABELS, "sentiment")

    @field_validator("intents")
    @classmethod
    def _intents(cls, intents: list[str]) -> list[str]:
        return _known_names(intents, _INTENTS, "intent")

    @field_validator("source")
    @classmethod
    def _sources(cls, sources: list[str]) -> list[str]:
        for source in sources:
            if source not in SOURCE_TYPES:
                close = difflib.get_close_matches(source, list(SOURCE_TYPES), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown source type {shown(source)}{hint}")
        return sources

    @model_validator(mode="after")
    def _complete(self) -> RouteSettings:
        if self.action != "ignore" and not self.channel:
            raise ValueError(f"channel: required for action {self.action!r}")
        if (
            self.min_rating is not None
            and self.max_rating is not None
            and self.min_rating > self.max_rating
        ):
            raise ValueError("min_rating: must not be above max_rating")
        return self


def _clock(value: Any) -> str:
    if not isinstance(value, str) or not _CLOCK.match(value.strip()):
        raise ValueError(f"expected a time like '09:00', got {shown(value)}")
    return value.strip()


def _weekly(value: Any) -> str:
    parts = value.split() if isinstance(value, str) else []
    if len(parts) != 2 or parts[0].lower()[:3] not in _WEEKDAYS:
        raise ValueError(f"expected a weekday and a time like 'mon 09:00', got {shown(value)}")
    return f"{parts[0].lower()[:3]} {_clock(parts[1])}"


def _timezone(value: Any) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    problem = f"unknown timezone {shown(value)} (e.g. 'UTC', 'Europe/Berlin')"
    if not isinstance(value, str) or not value or len(value) > 100:
        raise ValueError(problem)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError, UnicodeError):
        raise ValueError(problem) from None
    return value


Clock = Annotated[str, BeforeValidator(_clock)]
Weekly = Annotated[str, BeforeValidator(_weekly)]
TimeZone = Annotated[str, BeforeValidator(_timezone)]


class DigestChannelSettings(_Section):
    """``[digests.channels."#name"]``: one channel's schedule (unset keys: ``[digests]``'s)."""

    hourly_minute: int | None = Field(None, ge=0, le=59)
    daily_at: Clock | None = None
    weekly_at: Weekly | None = None
    timezone: TimeZone | None = None
    scope: Literal["routed", "all"] | None = None
    chart: bool | None = None
    weekly: bool | None = None


class DigestSettings(_Section):
    """``[digests]``: when digests go out. Hourly and daily digests go to the channels that
    ``[[routes]]`` send there; the weekly picture to the channels in ``weekly``."""

    hourly_minute: int = Field(0, ge=0, le=59)
    daily_at: Clock = "09:00"
    weekly_at: Weekly = "mon 09:00"
    timezone: TimeZone = "UTC"
    scope: Literal["routed", "all"] = "routed"
    chart: bool = True
    weekly: list[SlackChannel] = Field(default_factory=list)
    channels: dict[SlackChannel, DigestChannelSettings] = Field(default_factory=dict)
    #: How often the digest job looks for a due digest.
    every: Duration = 60.0

    def for_channel(self, channel: str) -> dict[str, Any]:
        """This channel's schedule: its own keys over the defaults."""
        merged = {
            key: getattr(self, key)
            for key in ("hourly_minute", "daily_at", "weekly_at", "timezone", "scope", "chart")
        }
        own = self.channels.get(channel)
        if own is not None:
            merged.update(
                {k: v for k, v in own.model_dump().items() if v is not None and k != "weekly"}
            )
        return merged

    def weekly_channels(self) -> list[str]:
        """The channels that get the weekly picture."""
        chosen = list(self.weekly)
        for channel, own in self.channels.items():
            if own.weekly and channel not in chosen:
                chosen.append(channel)
            if own.weekly is False and channel in chosen:
                chosen.remove(channel)
        return chosen


class SpikeSettings(_Section):
    """``[spikes]``: a query's last hour against its EWMA baseline (k-sigma)."""

    enabled: bool = True
    k: float = Field(3.0, gt=0, le=100)
    min_count: int = Field(10, ge=1, le=1_000_000)
    cooldown: Duration = 6 * 3600.0
    alpha: float = Field(0.1, gt=0, le=1)
    history: Duration = 7 * 86400.0
    every: Duration = 300.0
    top: int = Field(3, ge=0, le=10)
    #: Where spike alerts go (unset: the alerts channel).
    channel: OptionalChannel = None


class ShiftSettings(_Section):
    """``[shifts]``: a query's or tag's negative share per bucket against its EWMA baseline
    (k-sigma), alerted when it jumps without a volume spike."""

    enabled: bool = True
    k: float = Field(3.0, gt=0, le=100)
    #: A bucket with fewer mentions has no share (neither alerts nor counts as history).
    min_count: int = Field(20, ge=2, le=1_000_000)
    #: The least rise of the negative share over its baseline (0.15: 15 points).
    min_jump: float = Field(0.15, gt=0, lt=1)
    bucket: Duration = 86400.0
    alpha: float = Field(0.2, gt=0, le=1)
    history: Duration = 28 * 86400.0
    #: Buckets with a share the baseline needs before a shift can fire.
    min_history: int = Field(5, ge=2, le=10_000)
    cooldown: Duration = 7 * 86400.0
    every: Duration = 3600.0
    top: int = Field(3, ge=0, le=10)
    #: Where shift alerts go (unset: the spikes channel, else the alerts channel).
    channel: OptionalChannel = None

    @model_validator(mode="after")
    def _history(self) -> ShiftSettings:
        if self.bucket < 3600:
            raise ValueError("bucket: at least 1h (a share needs mentions to be measured on)")
        if self.history < self.min_history * self.bucket:
            raise ValueError(
                f"history: at least min_history ({self.min_history}) buckets of {self.bucket:g} s"
            )
        return self


class TrainingSettings(_Section):
    """``[training]``: refit the sentiment model on the team's corrections on a schedule
    (what ``earshot train`` does; off unless enabled)."""

    enabled: bool = False
    #: When the weekly run starts: day and time, in ``timezone``.
    weekly_at: Weekly = "sun 03:00"
    timezone: TimeZone = "UTC"
    #: Corrected mentions needed before a refit is tried.
    min_corrections: int = Field(10, ge=2, le=1_000_000)
    #: Share of the corrections held out to compare the models on.
    holdout: float = Field(0.3, gt=0, lt=1)


class RelevanceSettings(_Section):
    """``[relevance]``: per-query relevance learned from accepted mentions and "Not relevant"
    clicks; a mention below ``min_relevance`` is held as probably unrelated, not alerted."""

    enabled: bool = True
    min_relevance: float = Field(0.5, gt=0, lt=1)
    min_examples: int = Field(5, ge=2, le=1_000_000)


class StorySettings(_Section):
    """``[stories]``: one story per link or copied complaint across sources; later
    mentions post as replies in the first one's thread (docs/stories.md)."""

    enabled: bool = True
    #: A mention joins a story whose link or text was last seen within this window.
    window: Duration = Field(3 * 86400.0, gt=0)
    #: Also group near-duplicate text (the same complaint copied), not only shared links.
    near_duplicate: bool = True


class ReplyTemplateSettings(_Section):
    """One ``[[replies.templates]]``: a draft and when it applies (unset: always).

    ``text`` may use ``{author}`` (the customer), ``{product}`` and ``{lead}`` (who replies).
    The first template whose conditions all hold is the draft.
    """

    text: str = Field(min_length=1, max_length=3000)
    source: str | None = None
    sentiment: Literal["negative", "neutral", "positive", "mixed"] | None = None
    intent: str | None = None
    min_rating: int | None = Field(None, ge=1, le=5)
    max_rating: int | None = Field(None, ge=1, le=5)

    @field_validator("source")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        if value is not None and value not in SOURCE_TYPES:
            close = difflib.get_close_matches(value, sorted(SOURCE_TYPES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{shown(value)} is not a source type{hint}")
        return value

    @field_validator("intent")
    @classmethod
    def _intent(cls, value: str | None) -> str | None:
        known = [i.value for i in Intent]
        if value is not None and value not in known:
            raise ValueError(f"{shown(value)} is not an intent (intents: {', '.join(known)})")
        return value


class ReplySettings(_Section):
    """``[replies]``: answering the customer from the alert (docs/replies.md).

    Credentials come from the environment, as for the sources: ``MASTODON_ACCESS_TOKEN``,
    ``BLUESKY_HANDLE``/``BLUESKY_APP_PASSWORD``, ``GITHUB_TOKEN``, ``DISCOURSE_API_KEY``/
    ``DISCOURSE_API_USERNAME``, and the App Store Connect, Google Play and Reddit (OAuth)
    credentials of their sources. Each platform
    is written through the first ``[[sources]]`` entry of its type (its ``base_url``).
    """

    enabled: bool = True
    #: A reply waits in the alert's thread until an approver sends it.
    require_approval: bool = False
    #: Who may send, edit or reject (unset: the [slack] approvers).
    approvers: list[Annotated[str, Field(pattern=r"^[UW][A-Z0-9]+$")]] = Field(default_factory=list)
    approver_group: str | None = Field(None, pattern=r"^S[A-Z0-9]+$")
    #: The platforms earshot may post to (unset: every one it has credentials for).
    platforms: list[str] | None = None
    templates: list[ReplyTemplateSettings] = Field(default_factory=list)
    #: How often queued replies are sent.
    every: Duration = 5.0

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, value: list[str] | None) -> list[str] | None:
        writable = (
            "appstoreconnect",
            "bluesky",
            "discourse",
            "github",
            "googleplay",
            "mastodon",
            "reddit",
        )
        for name in value or []:
            if name not in writable:
                raise ValueError(
                    f"earshot cannot post to {shown(name)} (it can: {', '.join(writable)})"
                )
        return value


_NO_REACH = "gives no reach figure"


class ReachSettings(_Section):
    """``[reach]``: high-reach complaints are flagged in their alert and escalated sooner.

    A mention whose ``reach`` (``listener/reach.py``: HN points, Reddit score, Mastodon
    followers...) is at or above its source type's threshold and that is a complaint
    (negative or mixed, or a complaint intent) shows "High reach" in its alert and is
    escalated after ``sla`` instead of ``[slack] sla``. A threshold of 0: never high reach.

    Reach is read when an item is fetched, usually its first minutes; every ``refresh``
    the figures of unhandled complaints created within ``refresh_for`` are read again
    (Hacker News, Reddit and Bluesky read items by id in batches), so one that grows past
    its threshold later is flagged then (``listener/reach_refresh.py``). 0: off.
    """

    enabled: bool = True
    #: The SLA of high-reach complaints (default 15 minutes, or ``[slack] sla`` if that is
    #: shorter); when set, it must be shorter than ``[slack] sla``.
    sla: Duration = 900.0
    #: How often the reach of recent unhandled complaints is read again (0: never).
    refresh: Pause = 600.0
    #: How far back (by the mention's time) complaints are refreshed (0: never).
    refresh_for: Pause = 86400.0
    hackernews: int = Field(DEFAULT_THRESHOLDS["hackernews"], ge=0, le=MAX_FIGURE)
    reddit: int = Field(DEFAULT_THRESHOLDS["reddit"], ge=0, le=MAX_FIGURE)
    mastodon: int = Field(DEFAULT_THRESHOLDS["mastodon"], ge=0, le=MAX_FIGURE)
    bluesky: int = Field(DEFAULT_THRESHOLDS["bluesky"], ge=0, le=MAX_FIGURE)
    stackexchange: int = Field(DEFAULT_THRESHOLDS["stackexchange"], ge=0, le=MAX_FIGURE)
    github: int = Field(DEFAULT_THRESHOLDS["github"], ge=0, le=MAX_FIGURE)
    discourse: int = Field(DEFAULT_THRESHOLDS["discourse"], ge=0, le=MAX_FIGURE)
    googleplay: int = Field(DEFAULT_THRESHOLDS["googleplay"], ge=0, le=MAX_FIGURE)
    appstore: int = Field(DEFAULT_THRESHOLDS["appstore"], ge=0, le=MAX_FIGURE)

    @model_validator(mode="before")
    @classmethod
    def _sources_without_reach(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key in SOURCE_TYPES and key not in MEASURES:
                    having = ", ".join(sorted(MEASURES))
                    raise ValueError(
                        f"{shown(key)}: this source type {_NO_REACH}, so no threshold applies "
                        f"(sources with one: {having})"
                    )
        return data

    @field_validator("refresh")
    @classmethod
    def _refresh_pace(cls, value: float) -> float:
        if 0 < value < 60:
            raise ValueError(
                f"{duration_words(value)} is too often: the refresh reads every recent "
                "complaint again through the sources' request budgets; use 1m or more "
                "(0: off)"
            )
        return value

    def refreshing(self) -> bool:
        """Whether the reach of recent complaints is read again (``refresh`` and
        ``refresh_for`` both set)."""
        return self.enabled and self.refresh > 0 and self.refresh_for > 0

    def thresholds(self) -> dict[str, int]:
        """Source type -> threshold (0: never high reach)."""
        return {kind: int(getattr(self, kind)) for kind in MEASURES}


class Settings(_Section):
    """The whole config file."""

    product: ProductSettings
    sentiment: SentimentSettings = SentimentSettings()
    slack: SlackSettings = SlackSettings()
    storage: StorageSettings = StorageSettings()
    http: HttpSettings = HttpSettings()
    sources: list[SourceSettings] = Field(min_length=1)
    routes: list[RouteSettings] = Field(default_factory=list)
    digests: DigestSettings = DigestSettings()
    spikes: SpikeSettings = SpikeSettings()
    shifts: ShiftSettings = ShiftSettings()
    relevance: RelevanceSettings = RelevanceSettings()
    stories: StorySettings = StorySettings()
    training: TrainingSettings = TrainingSettings()
    replies: ReplySettings = ReplySettings()
    reach: ReachSettings = ReachSettings()

    def reach_sla(self) -> float:
        """The SLA of high-reach complaints: ``[reach] sla`` as set, else the default or
        ``[slack] sla`` when that is shorter."""
        if "sla" in self.reach.model_fields_set:
            return self.reach.sla
        return min(self.reach.sla, self.slack.sla)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if "sla" in self.reach.model_fields_set and self.reach.sla >= self.slack.sla:
            raise ValueError(
                f"reach.sla ({duration_words(self.reach.sla)}) must be shorter than slack.sla "
                f"({duration_words(self.slack.sla)}): it is the SLA of high-reach complaints"
            )
        for index, entry in enumerate(self.sources):
            declared = SOURCE_TYPES[str(getattr(entry, "type", ""))].secrets
            unknown = sorted(set(entry.secrets) - set(declared))
            if unknown:
                known = ", ".join(declared) or "none"
                raise ValueError(
                    f"sources[{index}].secrets: {shown(unknown[0])} is not a secret of this source "
                    f"(known: {known})"
                )
        names = [source_name(s) for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"two sources share the name {shown(duplicates[0])}: give each a distinct 'name'"
            )
        queries = set(self.product.queries)
        tags = set(self.product.tags().values())
        for index, route in enumerate(self.routes):
            if route.query is not None and route.query not in queries:
                close = difflib.get_close_matches(route.query, sorted(queries), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"routes[{index}].query: {shown(route.query)} is not one of "
                    f"product.queries{hint}"
                )
            if route.tag is not None and route.tag not in tags:
                known = ", ".join(sorted(tags)) or "none"
                raise ValueError(
                    f"routes[{index}].tag: no query has the tag {shown(route.tag)} (tags: {known})"
                )
        needs_query = [s.type for s in self.sources if SOURCE_TYPES[s.type].needs_query]
        if needs_query and not self.product.queries:
            raise ValueError(
                f"product.queries is empty, but source {needs_query[0]!r} needs queries"
            )
        return self


def source_name(settings: _SourceSettings) -> str:
    """The source's name: its ``name`` key, or its type's default."""
    if settings.name:
        return settings.name
    kind = str(getattr(settings, "type", ""))
    return SOURCE_TYPES[kind].default_name(settings.options())


@dataclass(frozen=True)
class Secrets:
    """What comes from the environment only. ``repr`` never shows the values."""

    slack_bot_token: str | None = None
    slack_app_token: str | None = None
    slack_signing_secret: str | None = None
    database_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Secrets:
        env = os.environ if env is None else env
        return cls(
            slack_bot_token=env.get("SLACK_BOT_TOKEN") or None,
            slack_app_token=env.get("SLACK_APP_TOKEN") or None,
            slack_signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
            database_url=env.get("DATABASE_URL") or None,
        )

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={'set' if getattr(self, name) else 'unset'}"
            for name in (
                "slack_bot_token",
                "slack_app_token",
                "slack_signing_secret",
                "database_url",
            )
        )
        return f"Secrets({shown})"


class ConfigError(ValueError):
    """The config file cannot be used; the message names each bad key (or, from
    ``wiring.build_sources``, each source that refuses its settings)."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))

    def render(self) -> str:
        """One line for one problem; else a heading and one line per problem."""
        if len(self.problems) == 1:
            return f"config error in {self.path}: {self.problems[0]}"
        lines = [f"config error in {self.path}:"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        return "\n".join(lines)


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for index, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in SOURCE_SETTINGS and index and isinstance(loc[index - 1], int):
            continue  # the discriminated-union tag pydantic adds after sources[i]
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _known_keys(loc: tuple[Any, ...], data: Any) -> list[str]:
    """The keys allowed at ``loc`` (for did-you-mean)."""
    model: type[BaseModel] | None = Settings
    node: Any = data
    for part in loc[:-1]:
        if model is None:
            return []
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else {}
            continue
        if part in SOURCE_SETTINGS:
            model = SOURCE_SETTINGS[part]
            continue
        field = model.model_fields.get(part)
        node = node.get(part, {}) if isinstance(node, dict) else {}
        if field is None:
            return []
        if part == "sources":
            kind = node[0].get("type") if isinstance(node, list) and node else None
            model = SOURCE_SETTINGS.get(str(kind))
            continue
        annotation = field.annotation
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
        if model is None:  # list[Model] (e.g. [[routes]])
            args = getattr(annotation, "__args__", ())
            model = next(
                (a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None
            )
    if model is None and isinstance(node, dict):
        kind = node.get("type")
        model = SOURCE_SETTINGS.get(str(kind))
    return list(model.model_fields) if model is not None else []


#: What a value of these keys looks like, for a value that does not match its pattern.
_PATTERN_HINTS = {
    "app_id": "expected the app's numeric id (the number after 'id' in its App Store link)",
    "countries": "expected a two-letter country code like 'us'",
    "approvers": "expected a Slack user id like 'U0123ABCD'",
    "approver_group": "expected a Slack user group id like 'S0123ABCD'",
    "oncall_group": "expected a Slack user group id like 'S0123ABCD'",
    "name": "expected letters, digits, '_', '.', ':' and '-' only",
    "secrets": "expected an environment variable name like 'GITHUB_TOKEN'",
    "sites": "expected a Stack Exchange site name like 'stackoverflow'",
    "hashtags": "expected a hashtag like 'acme' (no spaces, '/', '?' or '&')",
    "feeds": "expected an http(s) URL",
    "auth_url": "expected an http(s) URL",
}


def _message(error: Any) -> str:
    """A pydantic error as one plain sentence, with the offending value."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    got = f" (got {shown(value)})" if isinstance(value, str | int | float) else ""
    field = next((p for p in reversed(error["loc"]) if isinstance(p, str)), "")
    if kind == "string_pattern_mismatch":
        hint = _PATTERN_HINTS.get(field, f"does not have the expected form ({ctx.get('pattern')})")
        return f"{hint}, got {shown(value)}"
    plain = {
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "less_than": f"must be below {ctx.get('lt')}",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "greater_than": f"must be above {ctx.get('gt')}",
        "finite_number": "must be a finite number (not inf or nan)",
        "int_parsing_size": "number too large",
        "int_parsing": "expected a whole number",
        "int_type": "expected a whole number",
        "int_from_float": "expected a whole number",
        "float_parsing": "expected a number",
        "float_type": "expected a number",
        "bool_parsing": "expected true or false",
        "bool_type": "expected true or false",
        "string_type": "expected text",
        "string_unicode": "not valid UTF-8 text",
        "list_type": "expected a list",
        "dict_type": "expected a table",
        "model_type": "expected a table",
        "model_attributes_type": "expected a table",
        "string_too_short": "must not be empty"
        if ctx.get("min_length") == 1
        else f"must have at least {ctx.get('min_length')} characters",
        "string_too_long": f"must have at most {ctx.get('max_length')} characters",
        "too_short": f"must have at least {ctx.get('min_length')} item(s)",
        "too_long": f"must have at most {ctx.get('max_length')} item(s)",
    }.get(kind)
    if plain is not None:
        return plain + got
    message = str(error["msg"]).removeprefix("Value error, ")
    return message + (got if kind == "literal_error" else "")


def _problems(exc: ValidationError, data: Any) -> list[str]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        where = _location(loc)
        kind = error["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            close = difflib.get_close_matches(key, _known_keys(loc, data), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{where}: unknown key{hint}")
        elif kind == "union_tag_invalid":
            tag = str(error.get("ctx", {}).get("tag", ""))
            close = difflib.get_close_matches(tag, list(SOURCE_SETTINGS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(SOURCE_SETTINGS)
            problems.append(f"{where}.type: unknown source type {shown(tag)}{hint}; known: {known}")
        elif kind == "union_tag_not_found":
            problems.append(f"{where}.type: missing (one of {', '.join(SOURCE_SETTINGS)})")
        elif kind == "missing":
            problems.append(f"{where}: required key missing")
        else:
            problems.append(f"{where}: {_message(error)}")
    return [_printable(problem) for problem in problems]


def _printable(text: str) -> str:
    """``text`` with characters that cannot be written as UTF-8 (surrogates) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def parse_settings(data: Mapping[str, Any], path: str = "<config>") -> Settings:
    """Validate a decoded config document."""
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, _problems(exc, data)) from None


#: Environment variables of earshot's own that are not config keys.
PLAIN_VARIABLES: dict[str, str] = {
    "EARSHOT_CONFIG": "the config file's path",
    "EARSHOT_LOG_LEVEL": "DEBUG, INFO (default), WARNING, ERROR",
    "EARSHOT_LOG_FORMAT": "json or text (default: text on a terminal, JSON lines otherwise)",
    "EARSHOT_HTTP_PORT": "the ops endpoint's port (same as EARSHOT_HTTP__PORT)",
    "EARSHOT_REPLICA_ID": "this replica's name in poll leases (default: the host name)",
}
#: The values the plain variables with a fixed set of values take (case-insensitive).
_PLAIN_VALUES: dict[str, frozenset[str]] = {
    "EARSHOT_LOG_LEVEL": frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}),
    "EARSHOT_LOG_FORMAT": frozenset({"JSON", "TEXT"}),
}
ENV_PREFIX = "EARSHOT_"
#: Variables read by earshot's tests and tools, never reported as unknown.
_TOOL_VARIABLES = ("EARSHOT_TEST_", "EARSHOT_CRASH_", "EARSHOT_BENCH_")


@dataclass(frozen=True)
class EnvOverride:
    """One ``EARSHOT_<SECTION>__<KEY>`` variable: where it goes and what it says."""

    variable: str
    path: tuple[str | int, ...]
    raw: str
    value: Any

    @property
    def key(self) -> str:
        """The config key it sets, spelled as in error messages: ``sources[0].every``."""
        return _location(self.path)


def env_value(text: str) -> Any:
    """A variable's value: a TOML scalar or array (``-0.4``, ``true``, ``["a", "b"]``) when
    it parses as one, else the text itself (``1m``, ``#cx-alerts``)."""
    try:
        document = tomllib.loads(f"value = {text}")
    except (ValueError, RecursionError):  # not TOML; or an integer of 4,300+ digits, or deep
        return text
    return document["value"] if list(document) == ["value"] else text


def env_overrides(env: Mapping[str, str] | None = None) -> list[EnvOverride]:
    """The config overrides in the environment: every ``EARSHOT_...`` name with ``__``.

    ``EARSHOT_SLACK__ALERTS_CHANNEL`` sets ``slack.alerts_channel``;
    ``EARSHOT_SOURCES__0__EVERY`` sets ``sources[0].every``. ``EARSHOT_HTTP_PORT`` is kept
    as a spelling of ``EARSHOT_HTTP__PORT``.
    """
    env = os.environ if env is None else env
    found: list[EnvOverride] = []
    for name in sorted(env):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or "__" not in upper:
            continue
        parts = upper[len(ENV_PREFIX) :].split("__")
        path = tuple(
            int(p) if p.isascii() and p.isdigit() and len(p) <= 18 else p.lower() for p in parts
        )
        found.append(EnvOverride(name, path, env[name], env_value(env[name])))
    port = env.get("EARSHOT_HTTP_PORT")
    if port and not any(o.path == ("http", "port") for o in found):
        found.append(EnvOverride("EARSHOT_HTTP_PORT", ("http", "port"), port, env_value(port)))
    return found


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """``EARSHOT_...`` variables (without ``__``) that earshot does not read, with a
    did-you-mean: a typo such as ``EARSHOT_LOG_LEVL`` would otherwise do nothing silently."""
    env = os.environ if env is None else env
    problems = []
    for name in sorted(env):
        upper = name.upper()
        if upper in _PLAIN_VALUES:
            value = env[name]
            allowed = _PLAIN_VALUES[upper]
            if value and value.strip().upper() not in allowed:
                problems.append(
                    f"{name}: {shown(value)} is not one of {', '.join(sorted(allowed))}"
                )
            continue
        if (
            not upper.startswith(ENV_PREFIX)
            or "__" in upper
            or upper in PLAIN_VARIABLES
            or upper.startswith(_TOOL_VARIABLES)
        ):
            continue
        sections = [f"{ENV_PREFIX}{key.upper()}__" for key in Settings.model_fields]
        close = difflib.get_close_matches(upper, [*PLAIN_VARIABLES, *sections], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(_printable(f"{name}: unknown environment variable{hint}"))
    return problems


def _apply(data: dict[str, Any], override: EnvOverride, value: Any) -> str | None:
    """Set one override in the decoded document; a problem message if it cannot go there."""
    if any(part == "" for part in override.path):
        return f"{override.variable}: empty name part (use one '__' between names)"
    node: Any = data
    path = override.path
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        here = _location(path[:depth]) if depth else "(top level)"
        if isinstance(part, int):
            if not isinstance(node, list):
                return f"{override.variable}: {here} is not a list"
            if part > len(node):
                return (
                    f"{override.variable}: there is no {_location(path[: depth + 1])} "
                    f"(the list has {len(node)}; add entries in order)"
                )
            if part == len(node):
                node.append({})
            if last:
                node[part] = value
            else:
                node = node[part]
        else:
            if not isinstance(node, dict):
                return f"{override.variable}: {here} is not a table"
            if last:
                node[part] = value
            else:
                child = node.setdefault(part, [] if isinstance(path[depth + 1], int) else {})
                node = child
    return None


def apply_env(
    data: Mapping[str, Any], env: Mapping[str, str] | None = None, *, raw: bool = False
) -> tuple[dict[str, Any], list[EnvOverride], list[str]]:
    """The document with the environment's overrides applied, the overrides, and the
    problems (an override that cannot be placed). ``raw`` uses the text as is."""
    import copy

    document = copy.deepcopy(dict(data))
    overrides = env_overrides(env)
    problems = []
    for override in overrides:
        if not _is_utf8(override.variable) or not _is_utf8(override.raw):
            problems.append(
                f"{_printable(override.variable)}: not valid UTF-8 text (the environment "
                "holds bytes that are not UTF-8)"
            )
            continue
        problem = _apply(document, override, override.raw if raw else override.value)
        if problem:
            problems.append(problem)
    return document, overrides, problems


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # surrogates: bytes that were not UTF-8 in the environment
        return False
    return True


def _too_deep(document: Any) -> str | None:
    """Where ``document`` nests deeper than ``MAX_DEPTH`` tables and arrays, else ``None``."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_DEPTH:
            return _location(path[:MAX_DEPTH])
        if isinstance(node, dict):
            stack.extend((v, (*path, str(k))) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(node))
    return None


def _name_variables(problems: list[str], overrides: list[EnvOverride]) -> list[str]:
    """Say which variable a problem comes from: ``slack.alerts_chanel (from EARSHOT_...)``."""
    origin: dict[str, str] = {}
    for override in overrides:
        for depth in range(len(override.path), 0, -1):
            origin.setdefault(_location(override.path[:depth]), override.variable)
    named = []
    for problem in problems:
        where, _, rest = problem.partition(": ")
        base = where.removesuffix(".type")
        if rest and base in origin:
            problem = f"{where} (from {origin[base]}): {rest}"
        named.append(problem)
    return named


def load_settings(path: str | Path, *, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a TOML config file, then the environment's overrides.

    Any key can be set from the environment as ``EARSHOT_<SECTION>__<KEY>`` (sources by
    index: ``EARSHOT_SOURCES__0__EVERY=1m``); values are TOML scalars or arrays when they
    parse as one, else text. A bad or unknown override is a ``ConfigError`` naming the
    variable. ``env`` defaults to the process environment.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            str(path),
            [
                f"file not found; `earshot init {path}` writes a commented example there "
                "(`earshot init -` prints it)"
            ],
        ) from None
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), ["not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"invalid TOML: {exc}"]) from None
    except RecursionError:
        raise ConfigError(str(path), ["invalid TOML: nested too deeply to read"]) from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        reason = "an integer too long" if "integer string" in str(exc) else str(exc)
        raise ConfigError(str(path), [f"invalid TOML: {reason}"]) from None
    deep = _too_deep(data)
    if deep is not None:
        raise ConfigError(str(path), [f"{deep}: nested more than {MAX_DEPTH} levels deep"])
    merged, overrides, problems = apply_env(data, env)
    if problems:
        raise ConfigError(str(path), problems)
    deep = _too_deep(merged)
    if deep is not None:
        culprit = next((o.variable for o in overrides if deep.startswith(o.key)), None)
        where = f"{deep} (from {culprit})" if culprit else deep
        raise ConfigError(str(path), [f"{where}: nested more than {MAX_DEPTH} levels deep"])
    try:
        return parse_settings(merged, str(path))
    except RecursionError:
        raise ConfigError(str(path), ["nested too deeply to read"]) from None
    except ConfigError as first:
        # A value that parsed as a number or boolean may be meant as text (a channel id
        # like 12345): try the overrides as plain text before reporting.
        if any(not isinstance(o.value, str) for o in overrides):
            as_text, _, _ = apply_env(data, env, raw=True)
            try:
                return parse_settings(as_text, str(path))
            except ConfigError:
                pass
        raise ConfigError(str(path), _name_variables(first.problems, overrides)) from None


def example_config() -> str:
    """The commented example config that ships with earshot (what ``earshot init`` writes)."""
    from importlib.resources import files

    return (files("earshot.config") / "earshot.example.toml").read_text("utf-8")


def is_example_config(path: str | Path) -> bool:
    """Whether the file at ``path`` is the example config, unchanged."""
    try:
        text = Path(path).read_bytes().replace(b"\r\n", b"\n")
    except OSError:
        return False
    return text == example_config().encode("utf-8")


def database_url(settings: Settings, secrets: Secrets, *, base: Path | None = None) -> str:
    """``DATABASE_URL`` if set, else the SQLite file of ``[storage] path``."""
    if secrets.database_url:
        return secrets.database_url
    path = Path(settings.storage.path)
    if not path.is_absolute() and base is not None:
        path = base / path
    return f"sqlite:///{path}"
