"""The ``earshot`` command line."""

from __future__ import annotations

import logging
import os
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from earshot.listener import __version__

from . import exitcodes
from .logs import setup_logging

if TYPE_CHECKING:  # the commands import what they use: `earshot healthcheck` stays light
    from earshot.listener.store import Store

    from .settings import Settings

app = typer.Typer(
    name="earshot",
    help="Self-hosted social listening: hear mentions, understand them, answer them in Slack.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no "<bool>" on flags, no rich import
)

logger = logging.getLogger("earshot.cli")

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="EARSHOT_CONFIG",
        help="The TOML config file (`earshot init` writes a commented example).",
    ),
]


def _load(path: Path) -> Settings:
    from .settings import ConfigError, load_settings

    try:
        return load_settings(path)
    except ConfigError as exc:
        typer.echo(exc.render(), err=True)
        raise typer.Exit(exitcodes.USAGE) from None


def _url(settings: Settings) -> str:
    """The database URL ``settings`` and the environment name."""
    from .settings import Secrets, database_url

    return database_url(settings, Secrets.from_env())


@contextmanager
def _reaching(url: str) -> Iterator[None]:
    """Turn "the database cannot be reached" into one line and exit 4.

    Anything else SQLAlchemy raises goes on up: it is a bug, and its traceback is wanted.
    """
    try:
        yield
    except Exception as exc:
        from sqlalchemy.exc import InterfaceError, OperationalError

        from .database import DatabaseUnreachable, cause_of

        # refused, not resolved, password or database refused, a file SQLite cannot open
        if not isinstance(exc, OperationalError | InterfaceError):
            raise
        typer.echo(f"earshot: {DatabaseUnreachable(url, cause_of(exc, url))}", err=True)
        raise typer.Exit(exitcodes.DATABASE_UNREACHABLE) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"earshot {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """earshot listens to public sources and posts what matters to Slack."""


@app.command()
def run(
    config: ConfigOption = Path("earshot.toml"),
    once: Annotated[
        bool, typer.Option("--once", help="Poll every source once, deliver, and exit.")
    ] = False,
) -> None:
    """Run the listener: on its schedule until stopped, or once with --once.

    Exit codes: 0 every alert delivered; 1 an alert undeliverable, or still pending after
    [slack] drain_timeout; 2 bad config, the schema needs `earshot db upgrade`, another run
    holds the SQLite file or the ops port is taken; 3 every source failed; 4 the database
    cannot be reached.
    """
    from .migrations import SchemaError
    from .service import CannotStart, RunLock, Service, poll_and_deliver
    from .settings import ConfigError, Secrets, is_example_config, unknown_variables
    from .wiring import build

    setup_logging()
    settings = _load(config)
    if is_example_config(config):
        typer.echo(
            f"earshot run: {config} is the example config unchanged; it would poll the real "
            "APIs for someone else's product. Set your product, queries and sources first "
            "(mount your config at /config/earshot.toml in the container)",
            err=True,
        )
        raise typer.Exit(exitcodes.USAGE)
    for problem in unknown_variables():
        logger.warning("%s", problem)
    url = _url(settings)
    lock = RunLock.for_url(url)
    try:
        if lock is not None:
            lock.acquire()
        with _reaching(url):
            try:
                app_ = build(settings, Secrets.from_env())
            except SchemaError as exc:
                typer.echo(f"earshot: {exc}", err=True)
                raise typer.Exit(exitcodes.USAGE) from None
            except ConfigError as exc:  # a source refuses its settings (a missing secret...)
                typer.echo(ConfigError(str(config), exc.problems).render(), err=True)
                raise typer.Exit(exitcodes.USAGE) from None
            if once:
                try:
                    outcome = poll_and_deliver(app_)
                finally:
                    app_.close()
                typer.echo(outcome.summary())
                raise typer.Exit(outcome.code)
            code = Service(app_).run_forever()
    except CannotStart as exc:
        typer.echo(f"earshot: {exc}", err=True)
        raise typer.Exit(exitcodes.USAGE) from None
    finally:
        if lock is not None:
            lock.release()
    raise typer.Exit(code)


@app.command()
def check(config: ConfigOption = Path("earshot.toml")) -> None:
    """Validate the config and the environment, reach the database, and print everything
    `earshot run` would do (exit 0 usable, 2 config problem, 4 database unreachable)."""
    from .check import check_config

    try:
        report = check_config(config)
    except Exception as exc:  # a bug: one line, the traceback only at DEBUG
        logger.debug("earshot check failed", exc_info=True)
        typer.echo(f"earshot check: unexpected {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(exitcodes.FAILED) from None
    if report.lines:
        typer.echo("\n".join(report.lines))
    for warning in report.warnings:
        typer.echo(f"warning: {warning}")
    if report.error is not None:
        typer.echo(report.error, err=True)
    raise typer.Exit(report.code)


@app.command()
def init(
    path: Annotated[
        Path, typer.Argument(help="Where to write the config ('-': print it instead).")
    ] = Path("earshot.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write the commented example config to start from (exit 2 if the file exists)."""
    from .settings import example_config

    text = example_config()
    if str(path) == "-":
        typer.echo(text, nl=False)
        return
    if path.exists() and not force:
        typer.echo(f"earshot init: {path} exists; pass --force to overwrite it", err=True)
        raise typer.Exit(exitcodes.USAGE)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"earshot init: cannot write {path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(exitcodes.FAILED) from None
    typer.echo(
        f"wrote {path}: set [product] name and queries and your [[sources]], "
        f"then `earshot check --config {path}`"
    )


@app.command()
def demo(
    quiet_logs: Annotated[
        bool, typer.Option("--quiet/--verbose", help="Hide the log lines.")
    ] = True,
) -> None:
    """Replay bundled real payloads through the pipeline to the console, offline."""
    from earshot.responders.console import ConsoleChannel

    from .demo import demo_config_text, demo_transport
    from .settings import Secrets, parse_settings
    from .wiring import build

    setup_logging(level="WARNING" if quiet_logs else None, fmt="text")
    settings = parse_settings(tomllib.loads(demo_config_text()), "demo.toml")
    app_ = build(
        settings,
        Secrets(),
        transport=demo_transport(),
        channel=ConsoleChannel(sys.stdout),
        database="sqlite://",
    )
    try:
        reports = app_.pipeline.poll_all(app_.sources, force=True)
        delivered = app_.worker.drain(timeout=30)
    finally:
        app_.close()
    stored = sum(r.stored for r in reports)
    fetched = sum(r.fetched for r in reports)
    typer.echo(
        f"\nearshot demo: {fetched} items fetched from {len(reports)} sources, "
        f"{stored} matched and stored, {delivered.sent} alerts delivered "
        f"(neutral mentions are stored without an alert). "
        f"Next: `earshot init` writes a commented config; then `earshot run --once`."
    )


@app.command("eval")
def eval_(
    files: Annotated[
        list[Path],
        typer.Argument(
            exists=True, dir_okay=False, help="CSV/TSV files: text plus a label or a score."
        ),
    ],
    split: Annotated[
        str, typer.Option(help="Score the 'train' or 'test' part of each file, or 'all'.")
    ] = "all",
    seed: Annotated[int, typer.Option(help="Seed of the train/test split.")] = 7,
    gold_negative_at: Annotated[
        float, typer.Option(help="A gold score at or below this is negative.")
    ] = -1.0,
    gold_positive_at: Annotated[
        float, typer.Option(help="A gold score at or above this is positive.")
    ] = 1.0,
) -> None:
    """Measure plain VADER and the experience classifier on labelled texts (docs/sentiment.md)."""
    from earshot.listener.evaluation import Part, evaluate_files

    parts: dict[str, Part] = {"all": "all", "train": "train", "test": "test"}
    if split not in parts:
        typer.echo("--split must be 'all', 'train' or 'test'", err=True)
        raise typer.Exit(exitcodes.USAGE)
    try:
        table = evaluate_files(
            files,
            parts[split],
            seed=seed,
            gold_negative_at=gold_negative_at,
            gold_positive_at=gold_positive_at,
        )
    except (ValueError, UnicodeDecodeError) as exc:
        typer.echo(f"cannot evaluate: {exc}", err=True)
        raise typer.Exit(exitcodes.USAGE) from None
    typer.echo(table)


@app.command()
def train(
    config: ConfigOption = Path("earshot.toml"),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Compare and print, store nothing.")
    ] = False,
    holdout: Annotated[
        float | None,
        typer.Option(
            help="Share of the corrections held out to compare the models on "
            "(default: [training]'s, 0.3)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split.")] = 0,
    min_corrections: Annotated[
        int | None,
        typer.Option(help="Corrected mentions needed to train (default: [training]'s, 10)."),
    ] = None,
) -> None:
    """Refit the sentiment model on the team's corrections; adopt it only if not worse.

    Exit 0: adopted, or nothing to train (too few corrections). Exit 1: the refit was
    worse and refused (the active model stays). Exit 2: config or database problem.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from earshot.listener.learning import train as train_model

    if holdout is not None and not 0 < holdout < 1:
        typer.echo("--holdout must be between 0 and 1", err=True)
        raise typer.Exit(exitcodes.USAGE)
    setup_logging(level="WARNING", fmt="text")
    from earshot.listener.store import redact_url

    settings = _load(config)
    training = settings.training
    url = _url(settings)
    try:
        store = _store(config, settings)
        try:
            outcome = train_model(
                store,
                holdout=training.holdout if holdout is None else holdout,
                seed=seed,
                min_corrections=training.min_corrections
                if min_corrections is None
                else min_corrections,
                dry_run=dry_run,
                note="earshot train" + (" --dry-run" if dry_run else ""),
            )
        finally:
            store.engine.dispose()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        typer.echo(f"earshot train: database {redact_url(url)}: {reason}", err=True)
        raise typer.Exit(exitcodes.USAGE) from None
    typer.echo(outcome.report())
    if outcome.outcome in ("refused", "conflict"):
        raise typer.Exit(exitcodes.FAILED)


outbox_app = typer.Typer(help="Inspect and repair the delivery outbox.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")


def _store(config: Path, settings: Settings | None = None) -> Store:
    """The configured database: exit 4 when it cannot be reached, 2 when its schema is not
    current."""
    from earshot.listener.store import Store

    from .migrations import SchemaError, ensure_schema

    settings = settings or _load(config)
    url = _url(settings)
    store = Store.from_url(url)
    try:
        with _reaching(url):
            ensure_schema(store.engine)
    except SchemaError as exc:
        store.engine.dispose()
        typer.echo(f"earshot: {exc}", err=True)
        raise typer.Exit(exitcodes.USAGE) from None
    except typer.Exit:
        store.engine.dispose()
        raise
    return store


@outbox_app.command("status")
def outbox_status(config: ConfigOption = Path("earshot.toml")) -> None:
    """Print the outbox rows by status."""
    store = _store(config)
    counts = store.outbox_counts()
    typer.echo(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "empty")


@outbox_app.command("retry")
def outbox_retry(
    config: ConfigOption = Path("earshot.toml"),
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
) -> None:
    """Queue failed alerts again (after fixing the token or inviting the bot)."""
    store = _store(config)
    count = store.requeue_failed(channel)
    typer.echo(f"{count} failed alerts queued again; they go out on the next delivery round.")


@app.command()
def export(
    config: ConfigOption = Path("earshot.toml"),
    approved: Annotated[
        bool, typer.Option("--approved", help="Export mentions approved for amplification.")
    ] = False,
    corrections: Annotated[
        bool,
        typer.Option(
            "--corrections",
            help="Export the 'Wrong sentiment' corrections as labelled CSV for 'earshot eval' "
            "(the latest per mention, all of them; --since does not apply).",
        ),
    ] = False,
    relevance: Annotated[
        bool,
        typer.Option(
            "--relevance",
            help="Export relevance judgements as CSV for training: 'Not relevant' clicks "
            "(relevant=0) and sentiment corrections (relevant=1, with the label), each with "
            "the matched query (the latest per mention; --since does not apply).",
        ),
    ] = False,
    since: Annotated[
        str, typer.Option(help="How far back: '7d', '24h', '30m' (by approval time).")
    ] = "7d",
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write approved mentions (CSV or JSON, for marketing tools), sentiment corrections
    (labelled CSV that `earshot eval` reads) or relevance judgements (CSV for training)."""
    from datetime import timedelta
    from typing import Literal

    from earshot.listener.models import utcnow
    from earshot.listener.workflow import approved_since
    from earshot.responders.wins import export_approved

    from .settings import parse_duration

    if approved + corrections + relevance != 1:
        typer.echo("pass one of --approved, --corrections or --relevance", err=True)
        raise typer.Exit(exitcodes.USAGE)
    if corrections or relevance:
        if fmt != "csv":
            typer.echo("--corrections and --relevance write CSV only", err=True)
            raise typer.Exit(exitcodes.USAGE)
        _export_corrections(config, output, relevance=relevance)
        return
    if fmt not in ("csv", "json"):
        typer.echo("--format must be 'csv' or 'json'", err=True)
        raise typer.Exit(exitcodes.USAGE)
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        typer.echo(f"--since: {exc}", err=True)
        raise typer.Exit(exitcodes.USAGE) from None
    store = _store(config)
    try:
        rows = approved_since(store, utcnow() - timedelta(seconds=seconds))
    finally:
        store.engine.dispose()
    kind: Literal["csv", "json"] = "json" if fmt == "json" else "csv"
    if output is None:
        export_approved(rows, kind, sys.stdout)
    else:
        with output.open("w", encoding="utf-8", newline="") as out:
            export_approved(rows, kind, out)
        typer.echo(f"{len(rows)} approved mentions written to {output}", err=True)


def _export_corrections(config: Path, output: Path | None, *, relevance: bool = False) -> None:
    from sqlmodel import Session

    from earshot.listener.corrections import (
        export_corrections_csv,
        export_relevance_csv,
        latest_corrections,
        relevance_judgements,
    )

    write = export_relevance_csv if relevance else export_corrections_csv
    store = _store(config)
    try:
        with Session(store.engine) as session:
            if output is None:
                write(session, sys.stdout)
                return
            with output.open("w", encoding="utf-8", newline="") as out:
                write(session, out)
            if relevance:
                count = len(relevance_judgements(session))
            else:
                count = len(latest_corrections(session))
    finally:
        store.engine.dispose()
    what = "judged" if relevance else "corrected"
    typer.echo(f"{count} {what} mentions written to {output}", err=True)


db_app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _database(config: Path) -> str:
    """The database URL: ``DATABASE_URL``, else the config's SQLite file.

    With ``DATABASE_URL`` set, the config file may be absent (a migration job needs only
    the URL).
    """
    from .settings import Secrets

    secrets = Secrets.from_env()
    if secrets.database_url and not config.exists():
        return secrets.database_url
    return _url(_load(config))


@db_app.command("upgrade")
def db_upgrade(
    config: ConfigOption = Path("earshot.toml"),
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Migrate the database to the schema this earshot needs (run before rolling out)."""
    from earshot.listener.store import redact_url

    from . import migrations

    url = _database(config)
    with _reaching(url):
        before = migrations.status(url)
        try:
            if before.current is None and not before.empty:
                migrations.ensure_schema(url)  # tables from before migrations: adopt or refuse
            else:
                migrations.upgrade(url, revision)
        except migrations.SchemaError as exc:
            typer.echo(f"earshot: {exc}", err=True)
            raise typer.Exit(exitcodes.USAGE) from None
        after = migrations.status(url)
    where = redact_url(url)
    if after.current == before.current:
        typer.echo(f"{where}: already at revision {after.current}")
    else:
        typer.echo(f"{where}: upgraded from {before.current or 'empty'} to {after.current}")


@db_app.command("current")
def db_current(config: ConfigOption = Path("earshot.toml")) -> None:
    """Print the database's schema revision and the one this earshot needs.

    Exits 0 when they match, 1 when the database needs ``earshot db upgrade``, 4 when it
    cannot be reached.
    """
    from earshot.listener.store import redact_url

    from . import migrations

    url = _database(config)
    with _reaching(url):
        state = migrations.status(url)
    typer.echo(f"database: {redact_url(url)}")
    typer.echo(f"revision: {state.current or ('none (empty)' if state.empty else 'none')}")
    typer.echo(f"head:     {state.head}")
    if state.up_to_date:
        typer.echo("up to date")
        return
    if state.empty:
        typer.echo("empty: earshot creates the schema on its first start (or `earshot db upgrade`)")
        return
    typer.echo("behind: run `earshot db upgrade`")
    raise typer.Exit(exitcodes.FAILED)


@db_app.command("stamp")
def db_stamp(
    revision: Annotated[str, typer.Argument(help="The revision the database is at.")],
    config: ConfigOption = Path("earshot.toml"),
) -> None:
    """Record the database's revision without migrating (adopting a database by hand)."""
    from earshot.listener.store import redact_url

    from . import migrations

    url = _database(config)
    with _reaching(url):
        migrations.stamp(url, revision)
    typer.echo(f"{redact_url(url)}: stamped at {revision}")


@db_app.command("revision")
def db_revision(
    message: Annotated[str, typer.Option("--message", "-m", help="What the revision changes.")],
) -> None:
    """For developers: write a new revision from the models' changes (review it!)."""
    from . import migrations

    path = migrations.autogenerate(message)
    typer.echo(f"wrote {path}" if path else "nothing written")


def _ops_port(config: Path) -> str:
    """The ops endpoint's port as ``earshot run`` reads it: ``EARSHOT_HTTP__PORT``, then
    ``EARSHOT_HTTP_PORT``, then the config's ``[http] port``, else 8080.

    The config is read as plain TOML, not validated: the settings module loads the
    sources and the database models, seconds of imports that the image's HEALTHCHECK
    cannot wait for.
    """
    env = os.environ
    port = env.get("EARSHOT_HTTP__PORT") or env.get("EARSHOT_HTTP_PORT")
    if port:
        return port.strip()
    try:
        http = tomllib.loads(config.read_text(encoding="utf-8")).get("http")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return "8080"
    value = http.get("port") if isinstance(http, dict) else None
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "8080"


@app.command()
def healthcheck(
    config: ConfigOption = Path("earshot.toml"),
    url: Annotated[
        str | None, typer.Option(help="Probe this URL instead of the configured /healthz.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 3.0,
) -> None:
    """Probe a running earshot's /healthz (the container's HEALTHCHECK); exit 0 if alive."""
    import urllib.error
    import urllib.request

    if url is None:
        url = f"http://127.0.0.1:{_ops_port(config)}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            alive = answer.status == 200
    except (urllib.error.URLError, OSError) as exc:
        typer.echo(f"unhealthy: {url}: {exc}", err=True)
        raise typer.Exit(exitcodes.FAILED) from None
    typer.echo(f"{'healthy' if alive else 'unhealthy'}: {url}")
    raise typer.Exit(exitcodes.OK if alive else exitcodes.FAILED)


@app.command()
def report(
    config: ConfigOption = Path("earshot.toml"),
    since: Annotated[str, typer.Option(help="How far back: '7d', '24h', '30m'.")] = "7d",
    chart: Annotated[
        Path | None, typer.Option("--chart", help="Also write the per-day chart PNG here.")
    ] = None,
    timezone: Annotated[str, typer.Option(help="Days are counted in this timezone.")] = "UTC",
    html_file: Annotated[
        Path | None,
        typer.Option("--html", help="Also write the report as one self-contained HTML page here."),
    ] = None,
) -> None:
    """The digest figures in the terminal: counts, change, share of voice, themes, tops,
    unhandled, response times.

    --html FILE also writes them as one page to open or forward (charts inline, nothing
    loaded from elsewhere).
    """
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from rich.console import Console
    from rich.table import Table

    from earshot.listener.digest import Period, build_digest, response_times
    from earshot.listener.models import utcnow
    from earshot.responders.blocks import story_sentiment
    from earshot.responders.digest import chart_png

    from .settings import parse_duration
    from .wiring import reach_policy

    try:
        seconds = parse_duration(since)
        ZoneInfo(timezone)
    except (ValueError, KeyError) as exc:
        typer.echo(f"--since/--timezone: {exc}", err=True)
        raise typer.Exit(exitcodes.USAGE) from None
    settings = _load(config)
    store = _store(config, settings)
    end = utcnow()
    period = Period("report", "all", end - timedelta(seconds=seconds), end, timezone)
    try:
        digest = build_digest(store, period, scope="all", tags=settings.product.tags())
        alerts = settings.slack.alerts_channel
        unhandled = (
            build_digest(
                store,
                Period("report", alerts, end, end, timezone),
                reach=reach_policy(settings),
                themes=None,
            )
            if alerts
            else None
        )
        times = response_times(store, period.start, period.end)
    finally:
        store.engine.dispose()
    console = Console()

    def show(table: Table, empty: str = "none yet") -> None:
        """The table, or one line saying it has nothing in it (not an empty frame)."""
        console.print(table if table.row_count else f"{table.title}: {empty}")

    pct = f" ({digest.change_percent:+.0f}%)" if digest.change_percent is not None else ""
    console.print(
        f"[bold]{digest.total} mentions[/bold] since {period.start:%Y-%m-%d %H:%M} UTC, "
        f"{digest.change:+d}{pct} vs the {since} before"
        + (f"; {digest.filtered} filtered as spam or off-topic" if digest.filtered else "")
    )
    story_change = digest.story_count - digest.previous_story_count
    console.print(
        f"in [bold]{digest.story_count} stories[/bold] (one link or one complaint across "
        f"sources), {story_change:+d} vs the {since} before"
    )
    counts = Table(title="By sentiment")
    for column in ("sentiment", "now", "before", "change"):
        counts.add_column(column, justify="left" if column == "sentiment" else "right")
    for label in sorted(set(digest.by_sentiment) | set(digest.previous_by_sentiment)):
        now_n = digest.by_sentiment.get(label, 0)
        before_n = digest.previous_by_sentiment.get(label, 0)
        counts.add_row(label, str(now_n), str(before_n), f"{now_n - before_n:+d}")
    show(counts)
    sources = Table(title="By source")
    sources.add_column("source")
    sources.add_column("mentions", justify="right")
    for source, n in digest.by_source.items():
        sources.add_row(source, str(n))
    show(sources)
    if digest.voices:
        voices = Table(title="Share of voice (query tags; untagged queries are 'ours')")
        for column in ("tag", "now", "before", "change", "% negative", "before"):
            voices.add_column(column, justify="left" if column == "tag" else "right")
        for voice in digest.voices:
            voices.add_row(
                voice.tag,
                str(voice.mentions),
                str(voice.previous),
                f"{voice.change:+d}",
                _share(voice.sentiment),
                _share(voice.previous_sentiment),
            )
        show(voices)
    themes = Table(title="Themes (mentions clustered by meaning)")
    for column in ("theme", "mentions", "change", "% negative", "quotes"):
        themes.add_column(
            column, overflow="fold", justify="left" if column in ("theme", "quotes") else "right"
        )
    for theme in digest.themes:
        themes.add_row(
            theme.label,
            str(theme.size),
            f"{theme.change:+d}",
            _share(theme.sentiment),
            "\n".join(f'"{q.text[:100]}" {q.url}' for q in theme.quotes),
        )
    show(themes, "none (too few mentions, or none that cluster)")
    for title, items in (
        ("Top negative", digest.top_negative),
        ("Top positive", digest.top_positive),
        (
            f"Unhandled alerts in {alerts} ({unhandled.unhandled_total if unhandled else 0})",
            unhandled.unhandled if unhandled else [],
        ),
    ):
        table = Table(title=title)
        for column in ("score", "source", "title", "reach", "link"):
            table.add_column(column, overflow="fold")
        for item in items:
            score = f"{item.score:+.2f}" if item.score is not None else ""
            table.add_row(score, item.source, item.title[:80], item.reach_figures, item.url)
        show(table)
    stories = Table(title="Biggest stories")
    for column in ("mentions", "sentiment per source", "title", "link"):
        stories.add_column(
            column, overflow="fold", justify="right" if column == "mentions" else "left"
        )
    for story in digest.stories:
        stories.add_row(
            str(story.mentions), story_sentiment(story.sources), story.title[:80], story.url
        )
    show(stories, "none (no link or complaint seen on more than one mention)")
    rt = Table(title="Response times (alert to Handled)")
    for column in ("channel", "handled", "median", "p90"):
        rt.add_column(column, justify="left" if column == "channel" else "right")
    for row in times:
        rt.add_row(
            row.channel,
            str(row.count),
            f"{(row.median or 0) / 60:.0f} min",
            f"{(row.p90 or 0) / 60:.0f} min",
        )
    show(rt, "none yet (no alert marked Handled in this period)")
    replied = Table(title=f"Replies to customers ({digest.replies_total})")
    for column in ("who", "where", "when", "to", "reply"):
        replied.add_column(column, overflow="fold")
    for reply in digest.replies:
        verb = "" if reply.status == "sent" else " (I replied)"
        who = reply.author_name or reply.author_id
        if reply.approver_id:
            who += f", approved by {reply.approver_id}"
        replied.add_row(
            who + verb,
            reply.platform,
            reply.sent_at[:16].replace("T", " "),
            reply.title[:60],
            reply.reply_url or reply.url,
        )
    show(replied, "none yet (no reply sent or marked in this period)")
    days = Table(title=f"Per day ({timezone})")
    days.add_column("day")
    for label in ("total", "negative", "mixed", "neutral", "positive", "unscored"):
        days.add_column(label, justify="right")
    for day in digest.days:
        days.add_row(
            day.day,
            str(day.total),
            *(
                str(day.counts.get(label, 0))
                for label in ("negative", "mixed", "neutral", "positive", "unscored")
            ),
        )
    show(days)
    if chart is not None:
        _write_whole(chart, chart_png(digest.days, f"Mentions per day, last {since}"))
        console.print(f"chart written to {chart}")
    if html_file is not None:
        from earshot.responders.report_html import render_report_html

        page = render_report_html(
            digest,
            product=settings.product.name,
            title="Weekly report" if seconds == 7 * 86400 else f"Report, last {since}",
            since=since,
            unhandled=unhandled.unhandled if unhandled else [],
            unhandled_total=unhandled.unhandled_total if unhandled else None,
            unhandled_channel=alerts,
            response_times=times,
            generated=end,
        )
        _write_whole(html_file, page.encode("utf-8"))
        console.print(f"report page written to {html_file}")


def _write_whole(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` and rename it over: never a half-written file.

    A path that cannot be written (no such folder, a folder, no permission) is one line on
    stderr and exit 1, with nothing left behind.
    """
    partial = path.parent / f".{path.name or 'report'}.partial"
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory")
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError as exc:
        if partial.is_file():
            partial.unlink()
        typer.echo(f"earshot report: cannot write {path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(exitcodes.FAILED) from None


def _share(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    return f"{100 * counts.get('negative', 0) / total:.0f}%" if total else "-"


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
