"""The ``earshot`` command line."""

from __future__ import annotations

import logging
import os
import sys
import tomllib
from pathlib import Path
from typing import Annotated

import typer

from earshot.listener import __version__
from earshot.listener.store import redact_url

from .logs import setup_logging
from .settings import (
    ConfigError,
    Secrets,
    Settings,
    database_url,
    load_settings,
    parse_settings,
    source_name,
)

app = typer.Typer(
    name="earshot",
    help="Self-hosted social listening: hear mentions, understand them, answer them in Slack.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

logger = logging.getLogger("earshot.cli")

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="EARSHOT_CONFIG",
        help="The TOML config file (see config/earshot.example.toml).",
    ),
]


def _load(path: Path) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        typer.echo(exc.render(), err=True)
        raise typer.Exit(2) from None


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
    """Run the listener: on its schedule until stopped, or once with --once."""
    from .service import Service, run_once
    from .wiring import build

    setup_logging()
    settings = _load(config)
    app_ = build(settings, Secrets.from_env())
    if once:
        try:
            code = run_once(app_)
        finally:
            app_.close()
        raise typer.Exit(code)
    raise typer.Exit(Service(app_).run_forever())


@app.command()
def check(config: ConfigOption = Path("earshot.toml")) -> None:
    """Validate the config and print what would run (exit 2 on a config error)."""
    settings = _load(config)
    secrets = Secrets.from_env()
    lines = [f"config OK: {config}", f"product: {settings.product.name}"]
    for query in settings.product.queries:
        lines.append(f"  query: {query}")
    if settings.product.excluded_authors:
        lines.append(f"  excluded authors: {', '.join(settings.product.excluded_authors)}")
    lines.append(
        f"sentiment: negative <= {settings.sentiment.negative_at}, "
        f"positive >= {settings.sentiment.positive_at}"
    )
    lines.append("sources:")
    for entry in settings.sources:
        from earshot.listener.sources import SOURCE_TYPES

        cls = SOURCE_TYPES[entry.type]
        detail = "".join(
            f" {key}={', '.join(map(str, value)) if isinstance(value, list) else value}"
            for key, value in entry.options().items()
        )
        lines.append(
            f"  - {source_name(entry)} ({entry.type}){detail}: every {entry.every:g}s, "
            f"{entry.base_url or cls.default_base_url}"
        )
    if secrets.slack_bot_token:
        lines.append(f"delivery: Slack at {settings.slack.api_url} (SLACK_BOT_TOKEN set)")
    else:
        lines.append("delivery: console (SLACK_BOT_TOKEN not set)")
    lines.append(
        f"  negative -> {settings.slack.alerts_channel or '(none)'}, "
        f"positive -> {settings.slack.amplify_channel or '(none)'}"
    )
    url = database_url(settings, secrets)
    lines.append(f"database: {redact_url(url)}")
    typer.echo("\n".join(lines))


@app.command()
def demo(
    quiet_logs: Annotated[
        bool, typer.Option("--quiet/--verbose", help="Hide the log lines.")
    ] = True,
) -> None:
    """Replay bundled real payloads through the pipeline to the console, offline."""
    from earshot.responders.console import ConsoleChannel

    from .demo import demo_config_text, demo_transport
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
        f"Next: write a config (config/earshot.example.toml) and run `earshot run --once`."
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
        raise typer.Exit(2)
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
        raise typer.Exit(2) from None
    typer.echo(table)


@app.command()
def export(
    config: ConfigOption = Path("earshot.toml"),
    approved: Annotated[
        bool, typer.Option("--approved", help="Export mentions approved for amplification.")
    ] = False,
    since: Annotated[
        str, typer.Option(help="How far back: '7d', '24h', '30m' (by approval time).")
    ] = "7d",
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write approved mentions as CSV or JSON for marketing tools."""
    from datetime import timedelta
    from typing import Literal

    from earshot.listener.models import utcnow
    from earshot.listener.store import Store as _Store
    from earshot.listener.workflow import approved_since
    from earshot.responders.wins import export_approved

    from .settings import parse_duration

    if not approved:
        typer.echo("nothing to export: pass --approved", err=True)
        raise typer.Exit(2)
    if fmt not in ("csv", "json"):
        typer.echo("--format must be 'csv' or 'json'", err=True)
        raise typer.Exit(2)
    try:
        seconds = parse_duration(since)
    except ValueError as exc:
        typer.echo(f"--since: {exc}", err=True)
        raise typer.Exit(2) from None
    settings = _load(config)
    store = _Store.from_url(database_url(settings, Secrets.from_env()))
    try:
        from .migrations import SchemaError, ensure_schema

        try:
            ensure_schema(store.engine)
        except SchemaError as exc:
            typer.echo(f"earshot: {exc}", err=True)
            raise typer.Exit(2) from None
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


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
