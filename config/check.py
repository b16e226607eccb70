"""``earshot check``: validate the config and the environment, reach the database, and
print everything ``earshot run`` would do, with warnings for plans that cannot work.

``check_config`` does the work and returns a ``CheckReport``; the command prints it. Exit
codes (``exitcodes``): 0 the config is usable (warnings may follow), 2 a config,
environment or schema problem, 4 the database is unreachable.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from earshot.listener.query import Document, Query, QuerySet
from earshot.listener.routing import Action, RouteRule, default_rules
from earshot.listener.sources import SOURCE_TYPES, Source

from . import exitcodes
from .settings import (
    ConfigError,
    Secrets,
    Settings,
    database_url,
    env_overrides,
    example_config,
    is_example_config,
    load_settings,
    source_name,
    unknown_variables,
)

#: Source types that send each search term to the API's own search.
_SEARCHING = frozenset({"hackernews", "stackexchange", "github", "bluesky"})


@dataclass
class CheckReport:
    """What ``earshot check`` found: the plan, the warnings, and the outcome."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: One of ``exitcodes``.
    code: int = exitcodes.OK
    #: The error that decided ``code`` (printed to stderr), ``None`` when OK.
    error: str | None = None


def duration_text(seconds: float) -> str:
    """``300`` -> ``"5m"``, ``90`` -> ``"90s"``, ``86400`` -> ``"1d"``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _requests(count: int) -> str:
    return f"{count} request{'' if count == 1 else 's'}"


def _number(value: float) -> str:
    """``833.33`` -> ``"833"``, ``0.2`` -> ``"0.2"``, ``1.6667`` -> ``"1.67"``."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _quoted(terms: Sequence[str]) -> str:
    return ", ".join(json.dumps(term, ensure_ascii=False) for term in terms)


def check_config(config: Path, env: Mapping[str, str] | None = None) -> CheckReport:
    """Everything ``earshot check --config config`` reports, in the environment ``env``
    (default: the process environment)."""
    env = os.environ if env is None else env
    report = CheckReport()
    try:
        settings = load_settings(config, env=env)
    except ConfigError as exc:
        return _failed(report, exitcodes.USAGE, exc.render())
    unknown = unknown_variables(env)
    if unknown:
        problem = ConfigError(f"the environment (with {config})", unknown)
        return _failed(report, exitcodes.USAGE, problem.render())
    try:
        sources = _sources(settings, env)
    except ConfigError as exc:
        return _failed(report, exitcodes.USAGE, ConfigError(str(config), exc.problems).render())
    secrets = Secrets.from_env(env)
    lines = report.lines
    lines.append(f"config OK: {config}")
    lines.extend(_product(settings))
    lines.extend(_sentiment(settings))
    lines.append("sources:")
    terms = _terms_per_source(settings)
    for index, (entry, source) in enumerate(zip(settings.sources, sources, strict=True)):
        lines.extend(_source_lines(index, entry, source, terms[index], report.warnings))
    report.warnings.extend(_bare_word_warnings(settings, sources, terms))
    lines.extend(_routes(settings, report.warnings))
    lines.extend(_digests(settings))
    lines.extend(_spikes(settings, report.warnings))
    lines.extend(_shifts(settings))
    lines.extend(_reach_refresh(settings, sources))
    lines.extend(_training(settings))
    lines.extend(_delivery(settings, secrets, report.warnings))
    report.warnings.extend(_example_warnings(config, settings))
    url = database_url(settings, secrets)
    code, line, failure = _database(url, settings)
    lines.append(line)
    for override in env_overrides(env):
        lines.append(f"from the environment: {override.key} ({override.variable})")
    if failure is not None:
        report.code = code
        report.error = failure
    return report


def _failed(report: CheckReport, code: int, error: str) -> CheckReport:
    report.code = code
    report.error = error
    return report


def _sources(settings: Settings, env: Mapping[str, str]) -> list[Source]:
    """The sources ``run`` would build (no request is sent: the client refuses them)."""
    import httpx

    from .wiring import build_sources

    def refuse(request: httpx.Request) -> httpx.Response:  # pragma: no cover - never called
        raise httpx.ConnectError("earshot check sends no requests", request=request)

    with httpx.Client(transport=httpx.MockTransport(refuse)) as client:
        sources, _ = build_sources(settings, client, env=env)
    return sources


def _product(settings: Settings) -> list[str]:
    product = settings.product
    lines = [f"product: {product.name}"]
    tags, channels, limited = product.tags(), product.query_channels(), product.query_sources()
    for query in product.queries:
        extra = []
        if query in tags:
            extra.append(f"tag {tags[query]}")
        if query in channels:
            extra.append(f"complaints to {channels[query]}")
        if query in limited:
            extra.append(f"only on {', '.join(limited[query])}")
        lines.append(f"  query: {query}" + (f" ({'; '.join(extra)})" if extra else ""))
    if product.excluded_authors:
        lines.append(f"  excluded authors: {', '.join(product.excluded_authors)}")
    return lines


def _sentiment(settings: Settings) -> list[str]:
    sentiment = settings.sentiment
    thresholds = sentiment.thresholds()
    if thresholds is None and sentiment.classifier == "experience":
        labels = "labels and intent tags from the meaning model (below)"
    else:
        negative_at, positive_at = thresholds or (-0.5, 0.5)
        labels = f"negative <= {negative_at}, positive >= {positive_at}"
    lines = [f"sentiment: {sentiment.classifier}, {labels}"]
    relevance = settings.relevance
    if relevance.enabled:
        lines.append(
            f"relevance: on, below {relevance.min_relevance:g} held as probably unrelated "
            f"(scored once a query has {relevance.min_examples} accepted mentions)"
        )
    else:
        lines.append("relevance: off")
    return lines


def _terms_per_source(settings: Settings) -> list[list[str]]:
    """Per source, the search terms ``run`` hands it (before the exclusions leads add from
    Slack, which only add ``-"..."`` terms: nothing more is searched)."""
    from .wiring import source_queries

    everything = QuerySet(settings.product.queries)
    aliases = {q: q for q in settings.product.queries}
    per_type = source_queries(settings, everything, aliases)
    return [per_type.get(entry.type, everything).search_terms() for entry in settings.sources]


def search_plan(source: Source, terms: Sequence[str]) -> tuple[list[str], int, str]:
    """What one poll of ``source`` asks its API: the terms it sends to the API's search
    (none for a source that reads listings or feeds and matches locally), the fewest
    requests a poll takes (one page per unit), and how that number comes about."""
    kind = source.type
    n = len(terms)
    sent = list(terms) if kind in _SEARCHING else []
    if kind == "stackexchange":
        sites = list(getattr(source, "sites", []))
        return sent, len(sites) * n, f"{len(sites)} site(s) x {n} term(s)"
    if kind == "github":
        kinds = list(getattr(source, "kinds", []))
        return sent, len(kinds) * n, f"{len(kinds)} kind(s) x {n} term(s)"
    if kind in ("hackernews", "bluesky"):
        return sent, n, f"{n} term(s)"
    if kind == "reddit":
        subs, listings = list(source.subreddits), list(source.listings)  # type: ignore[attr-defined]
        search = bool(getattr(source, "search", False))
        units = len(subs) * len(listings) + (n if search else 0)
        why = f"{len(subs)} subreddit(s) x {len(listings)} listing(s)"
        return (
            (list(terms) if search else []),
            units,
            why + (f" + {n} search(es)" if search else ""),
        )
    if kind == "mastodon":
        tags = list(getattr(source, "hashtags", []))
        search = bool(getattr(source, "search", False))
        units = len(tags) + (n if search else 0)
        why = f"{len(tags)} hashtag(s)" + (f" + {n} search(es)" if search else "")
        return (list(terms) if search else []), units, why
    if kind == "appstore":
        countries = list(getattr(source, "countries", []))
        return [], len(countries), f"{len(countries)} country feed(s)"
    if kind == "rss":
        feeds = list(getattr(source, "feeds", []))
        return [], len(feeds), f"{len(feeds)} feed(s)"
    return [], 1, "1 listing"


def _rate(source: Source) -> float | None:
    """The requests a minute the source's limiter allows (``None``: no limit)."""
    interval = source.http.limiter.interval
    return 60.0 / interval if interval else None


def _source_lines(
    index: int, entry: Any, source: Source, terms: list[str], warnings: list[str]
) -> list[str]:
    cls = SOURCE_TYPES[entry.type]
    detail = "".join(
        f" {key}={', '.join(map(str, value)) if isinstance(value, list) else value}"
        for key, value in entry.options().items()
        if value is not None
    )
    lines = [
        f"  - {source_name(entry)} ({entry.type}){detail}: every {duration_text(entry.every)}, "
        f"{entry.base_url or cls.default_base_url or source.base_url}"
    ]
    sent, units, why = search_plan(source, terms)
    if sent:
        lines.append(f"      searches the API for: {_quoted(sent)}")
    elif cls.needs_query:
        lines.append("      reads new items and matches them against the queries locally")
    else:
        lines.append("      every item is a mention (no query needed)")
    rate = _rate(source)
    if rate is None:
        lines.append(f"      at least {_requests(units)} a poll ({why})")
        return lines
    budget = rate * entry.every / 60.0
    lines.append(
        f"      at least {_requests(units)} a poll ({why}); its budget: {_number(rate)} a "
        f"minute, {_number(budget)} per {duration_text(entry.every)}"
    )
    if units > budget:
        needed = math.ceil(units * 60.0 / rate)
        warnings.append(
            f"sources[{index}] ({source_name(entry)}): a poll needs at least {units} requests "
            f"({why}) every {duration_text(entry.every)}, but its budget allows "
            f"{_number(budget)} ({_number(rate)} a minute): polls will fail on the rate limit "
            f'and fall behind; poll every "{duration_text(needed)}" or more, search fewer '
            "terms, or raise requests_per_minute if your quota allows"
        )
    return lines


def _bare_word_warnings(
    settings: Settings, sources: list[Source], terms: list[list[str]]
) -> list[str]:
    """Queries whose OR sends a bare word that alone cannot match the query to a search
    API: ``"quill pad" (app OR notes)`` searches for ``app`` and ``notes`` on their own."""
    searching = [
        (source.name, set(search_plan(source, own)[0]))
        for source, own in zip(sources, terms, strict=True)
    ]
    warnings = []
    for text in settings.product.queries:
        query = Query.parse(text)
        found = query.search_terms()
        bare = []
        for term in found:
            if any(c.isspace() for c in term.strip()):
                continue
            others = "\n".join(t for t in found if t != term)
            sufficient = query.matches(Document(text=term))
            necessary = not query.matches(Document(text=others))
            if not sufficient and not necessary:
                bare.append(term)
        if not bare:
            continue
        where = [name for name, sent in searching if sent & set(bare)]
        if not where:
            continue
        warnings.append(
            f"query {text!r} sends {_quoted(bare)} on {'its' if len(bare) == 1 else 'their'} "
            f"own to {', '.join(where)}: a search for a bare word returns every post that has "
            "it, though a match needs the rest of the query, so the request budget goes on "
            "posts that cannot match; narrow the OR (a phrase such as "
            f'"{found[0]} {bare[0]}") or limit the query to other sources (sources = [...])'
        )
    return warnings


def describe_rule(rule: RouteRule) -> str:
    """A rule's conditions in words: ``sentiment positive, source reddit``."""
    parts = []
    for name, values in (
        ("query", rule.queries),
        ("tag", rule.tags),
        ("source", rule.sources),
        ("sentiment", rule.sentiments),
        ("tagged", rule.intents),
    ):
        if values:
            parts.append(f"{name} {', '.join(sorted(values))}")
    if rule.without_intents:
        parts.append(f"not tagged {', '.join(sorted(rule.without_intents))}")
    if rule.min_rating is not None or rule.max_rating is not None:
        parts.append(f"rating {rule.min_rating or 1}-{rule.max_rating or 5}")
    if rule.min_relevance is not None:
        parts.append(f"relevance >= {rule.min_relevance:g} where scored")
    return ", ".join(parts) or "every mention"


def _action(rule: RouteRule) -> str:
    if rule.action is Action.IGNORE:
        return "stored only"
    if rule.action is Action.INSTANT:
        return f"alert in {rule.channel}"
    return f"{rule.action.value} digest in {rule.channel}"


def _covers(first: RouteRule, later: RouteRule) -> bool:
    """Whether every mention ``later`` matches is matched by ``first`` (conservative)."""

    def wider(a: frozenset[str], b: frozenset[str]) -> bool:
        return not a or (bool(b) and b <= a)

    if not all(
        wider(a, b)
        for a, b in (
            (first.queries, later.queries),
            (first.tags, later.tags),
            (first.sources, later.sources),
            (first.sentiments, later.sentiments),
            (first.intents, later.intents),
        )
    ):
        return False
    if not first.without_intents <= later.without_intents:
        return False
    if first.min_relevance is not None and (
        later.min_relevance is None or later.min_relevance < first.min_relevance
    ):
        return False
    if first.min_rating is not None and (later.min_rating or 0) < first.min_rating:
        return False
    return first.max_rating is None or (
        later.max_rating is not None and later.max_rating <= first.max_rating
    )


def _labelled_rules(settings: Settings) -> list[tuple[str, RouteRule]]:
    """Every rule the router tries, in order, with where it comes from."""
    from .wiring import route_rules

    configured = route_rules(settings)
    labels = [f"routes[{i}]" for i in range(len(settings.routes))]
    labels += ["query channel"] * (len(configured) - len(labels))
    slack = settings.slack
    defaults = default_rules(
        slack.alerts_channel, slack.amplify_channel, min_relevance=settings.relevance.min_relevance
    )
    return [*zip(labels, configured, strict=True), *(("default", r) for r in defaults)]


def _all_rules(settings: Settings) -> list[RouteRule]:
    return [rule for _, rule in _labelled_rules(settings)]


def _routes(settings: Settings, warnings: list[str]) -> list[str]:
    rules = _labelled_rules(settings)
    lines = ["routes (the first rule that matches a mention decides):"]
    for position, (label, rule) in enumerate(rules):
        line = f"  {label}: {describe_rule(rule)} -> {_action(rule)}"
        earlier = next((name for name, first in rules[:position] if _covers(first, rule)), None)
        if earlier is not None:
            line += f" (never: {earlier} takes all of them first)"
            if label != "default":
                warnings.append(f"{label} is never used: {earlier} takes all of its mentions first")
        lines.append(line)
    lines.append("  anything else: stored only")
    return lines


def _digests(settings: Settings) -> list[str]:
    from .wiring import digest_schedules, unrelated_digests

    schedules = digest_schedules(settings)
    if not schedules:
        return ["digests: none (no route sends mentions to an hourly or daily digest, no weekly)"]
    lines = ["digests:"]
    for kind, schedule in schedules:
        if kind == "hourly":
            when = f"at :{schedule.hourly_minute:02d} past every hour"
        elif kind == "daily":
            when = f"at {schedule.daily_at:%H:%M} {schedule.timezone}"
        else:
            day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[schedule.weekly_day]
            when = f"on {day} at {schedule.weekly_at:%H:%M} {schedule.timezone}"
        chart = ", with the chart" if schedule.chart and kind != "hourly" else ""
        lines.append(f"  - {kind} to {schedule.channel} {when} ({schedule.scope} mentions{chart})")
    alerting = {r.channel for r in _all_rules(settings) if r.action is Action.INSTANT}
    for channel, held in unrelated_digests(schedules).items():
        if settings.relevance.enabled and channel in alerting:
            lines.append(f"  probably unrelated alerts for {channel} wait for its {held} digest")
    return lines


def _spikes(settings: Settings, warnings: list[str]) -> list[str]:
    spikes = settings.spikes
    if not spikes.enabled:
        return ["spikes: off"]
    channel = spikes.channel or settings.slack.alerts_channel
    if not channel:
        warnings.append(
            "spikes are on but go nowhere: set [spikes] channel or [slack] alerts_channel"
        )
        return ["spikes: on, but no channel (none sent)"]
    return [
        f"spikes: checked every {duration_text(spikes.every)}: a query's last hour above its "
        f"baseline by {spikes.k:g} sigma (and at least {spikes.min_count} mentions) -> "
        f"alert in {channel}, at most one per query every {duration_text(spikes.cooldown)}"
    ]


def _reach_refresh(settings: Settings, sources: Sequence[Source]) -> list[str]:
    reach = settings.reach
    if not reach.refreshing():
        return ["reach refresh: off"]
    kinds = sorted({s.type: s.refresh_batch for s in sources if s.refresh_batch > 0}.items())
    if not kinds:
        return ["reach refresh: on, but no configured source can read its items by id"]
    each = ", ".join(f"{kind} ({batch} a request)" for kind, batch in kinds)
    return [
        f"reach refresh: every {duration_text(reach.refresh)}, the unhandled complaints of "
        f"the last {duration_text(reach.refresh_for)} read again from {each}; one that "
        "crosses its [reach] threshold is flagged then and escalated after "
        f"{duration_text(settings.reach_sla())}"
    ]


def _shifts(settings: Settings) -> list[str]:
    shifts = settings.shifts
    if not shifts.enabled:
        return ["sentiment shifts: off"]
    channel = shifts.channel or settings.spikes.channel or settings.slack.alerts_channel
    if not channel:
        return ["sentiment shifts: on, but no channel (none sent)"]
    return [
        f"sentiment shifts: each {duration_text(shifts.bucket)} bucket, a query's or tag's "
        f"negative share above its baseline by {shifts.k:g} sigma and {100 * shifts.min_jump:g} "
        "points "
        f"(at least {shifts.min_count} mentions, volume not spiking) -> alert in {channel}, "
        f"at most one per query or tag every {duration_text(shifts.cooldown)}"
    ]


def _training(settings: Settings) -> list[str]:
    training = settings.training
    if not training.enabled:
        return ["training: off (`earshot train` refits by hand)"]
    return [
        f"training: weekly on {training.weekly_at} {training.timezone}, once "
        f"{training.min_corrections} mentions are corrected"
    ]


def _delivery(settings: Settings, secrets: Secrets, warnings: list[str]) -> list[str]:
    slack = settings.slack
    if secrets.slack_bot_token:
        lines = [f"delivery: Slack at {slack.api_url} (SLACK_BOT_TOKEN set)"]
    else:
        lines = ["delivery: console (SLACK_BOT_TOKEN not set)"]
    if slack.interactive:
        needed = "SLACK_APP_TOKEN" if slack.mode == "socket" else "SLACK_SIGNING_SECRET"
        have = secrets.slack_app_token if slack.mode == "socket" else secrets.slack_signing_secret
        missing = [
            name
            for name, value in (("SLACK_BOT_TOKEN", secrets.slack_bot_token), (needed, have))
            if not value
        ]
        if missing:
            lines.append(f"  buttons: off ({', '.join(missing)} not set)")
            warnings.append(
                f"slack.interactive = true in {slack.mode} mode, but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set: alerts go out without buttons "
                "and clicks cannot arrive"
            )
        else:
            lines.append(f"  buttons: on ({slack.mode} mode)")
    return lines


def _example_warnings(config: Path, settings: Settings) -> list[str]:
    import tomllib

    warnings = []
    if is_example_config(config):
        warnings.append(
            f"{config} is the example config unchanged: `earshot run` refuses it; set your "
            "product, queries and sources first"
        )
    example = tomllib.loads(example_config())
    example_ids = {
        str(s.get("app_id")) for s in example.get("sources", []) if s.get("type") == "appstore"
    }
    for index, entry in enumerate(settings.sources):
        app_id = entry.options().get("app_id")
        if app_id is not None and str(app_id) in example_ids:
            warnings.append(
                f"sources[{index}].app_id {app_id} is the example config's app (someone "
                "else's real app): set your own app's id"
            )
    return warnings


def _database(url: str, settings: Settings) -> tuple[int, str, str | None]:
    """The outcome (``OK``, ``USAGE`` for a schema that is not current, or
    ``DATABASE_UNREACHABLE``), the lines to print, and the error line if any."""
    from earshot.listener.store import redact_url

    from .database import DatabaseUnreachable, probe

    try:
        state = probe(url)
    except DatabaseUnreachable as exc:
        line = f"database: {redact_url(url)}: unreachable"
        return exitcodes.DATABASE_UNREACHABLE, line, str(exc)
    where = redact_url(url)
    if state is None:
        text = (
            f"database: {where}: no file yet (created at schema revision {_head()} on the "
            f"first start)\n{_model_line(url, settings, fresh='no database yet')}"
        )
        return exitcodes.OK, text, None
    if state.empty:
        text = (
            f"database: {where}: reachable, empty (the schema is created at revision "
            f"{state.head} on the first start)\n"
            f"{_model_line(url, settings, fresh='the database is empty')}"
        )
        return exitcodes.OK, text, None
    if state.up_to_date:
        text = (
            f"database: {where}: reachable, schema revision {state.current} (current)\n"
            f"{_model_line(url, settings)}"
        )
        return exitcodes.OK, text, None
    problem = (
        f"database: {where}: schema revision {state.current or 'none'}, earshot needs "
        f"{state.head}: run `earshot db upgrade` (docs/deployment.md, 'Upgrades')"
    )
    return exitcodes.USAGE, problem, problem


def _head() -> str:
    from .migrations import head

    return head()


def _model_line(url: str, settings: Settings, *, fresh: str | None = None) -> str:
    """Which sentiment model the service would load from ``url`` (reachable, current)."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session

    from earshot.listener.meaning import MeaningModel
    from earshot.listener.model_versions import active_model
    from earshot.listener.store import Store

    sentiment = settings.sentiment
    if sentiment.classifier != "experience" or sentiment.thresholds() is not None:
        return "model: none (labels by the compound score)"
    shipped = MeaningModel.default().version
    if fresh is not None:
        return f"model: {shipped} (shipped, loaded; {fresh})"
    store = Store.from_url(url)
    try:
        with Session(store.engine) as session:
            model = active_model(session)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return f"model: {shipped} (shipped; the database could not be read: {reason})"
    except ValueError as exc:
        return f"model: the active trained model does not load ({exc}); earshot uses {shipped}"
    finally:
        store.engine.dispose()
    if model.version == shipped:
        return f"model: {shipped} (shipped, loaded)"
    return f"model: {model.version} (trained by `earshot train`, loaded from the database)"
