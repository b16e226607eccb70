"""The config file: the example validates, mistakes name their key, secrets stay secret."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from earshot.config.cli import app
from earshot.config.settings import (
    ConfigError,
    Secrets,
    load_settings,
    parse_duration,
    parse_settings,
)

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "config" / "earshot.example.toml"
runner = CliRunner()


def base() -> dict:
    return tomllib.loads(EXAMPLE.read_text())


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_settings(data, "test.toml")
    return info.value.problems


def test_example_config_is_valid_and_keeps_the_documented_names() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.product.name == "Acme"
    assert settings.product.queries == ["acme", '"acme app"', 'acme -"acme corp"']
    assert settings.sentiment.thresholds() is None  # the fitted flag model decides
    assert settings.slack.api_url == "https://slack.com/api/"
    assert settings.slack.alerts_channel == "#cx-alerts"
    assert settings.slack.amplify_channel == "#cx-wins"
    assert [s.type for s in settings.sources] == ["hackernews", "reddit", "appstore"]
    assert settings.sources[0].every == 300 and settings.sources[2].every == 3600
    assert settings.sources[0].base_url == "https://hn.algolia.com/api/v1"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("7d", 604800), (90, 90), ("250ms", 0.25)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_unknown_key_gets_did_you_mean() -> None:
    data = base()
    data["sources"][0]["evry"] = "5m"
    assert problems_of(data) == ["sources[0].evry: unknown key (did you mean 'every'?)"]
    data = base()
    data["slack"]["alert_channel"] = "#x"
    assert problems_of(data) == [
        "slack.alert_channel: unknown key (did you mean 'alerts_channel'?)"
    ]
    data = base()
    data["sentimnt"] = {}
    assert problems_of(data) == ["sentimnt: unknown key (did you mean 'sentiment'?)"]


def test_wrong_types_and_values_name_the_key() -> None:
    data = base()
    data["sources"][0]["every"] = "often"
    (problem,) = problems_of(data)
    assert problem.startswith("sources[0].every: expected a duration")
    data = base()
    data["sources"][1]["type"] = "redit"
    (problem,) = problems_of(data)
    assert "sources[1].type: unknown source type 'redit' (did you mean 'reddit'?)" in problem
    data = base()
    data["sentiment"]["negative_at"] = 0.9
    assert any("negative_at must be lower" in p for p in problems_of(data))
    data = base()
    data["sentiment"]["negative_at"] = 0.6  # positive_at unset: 0.5
    assert any("negative_at must be lower" in p for p in problems_of(data))
    data = base()
    data["sources"][2]["app_id"] = "not-a-number"
    assert any(p.startswith("sources[2].app_id") for p in problems_of(data))
    data = base()
    del data["sources"][1]["subreddits"]
    (problem,) = problems_of(data)
    assert problem.startswith("sources[1]") and "subreddits" in problem


def test_a_bad_query_is_reported_with_its_position() -> None:
    data = base()
    data["product"]["queries"] = ["acme", '"acme app']
    (problem,) = problems_of(data)
    assert problem.startswith("product.queries: query [1]")
    assert "position" in problem


def test_queries_required_when_a_source_needs_them() -> None:
    data = base()
    data["product"]["queries"] = []
    assert any("product.queries is empty" in p for p in problems_of(data))
    data["sources"] = [s for s in data["sources"] if s["type"] == "appstore"]
    assert parse_settings(data).sources[0].type == "appstore"


def test_check_exits_2_naming_the_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(EXAMPLE.read_text().replace('every = "5m"', 'evry = "5m"', 1))
    result = runner.invoke(app, ["check", "--config", str(path)])
    assert result.exit_code == 2
    assert "sources[0].evry: unknown key (did you mean 'every'?)" in result.output


def test_check_reports_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[product\nname = 1")
    result = runner.invoke(app, ["check", "--config", str(path)])
    assert result.exit_code == 2 and "invalid TOML" in result.output
    result = runner.invoke(app, ["check", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "file not found" in result.output


def test_check_prints_what_would_run_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-super-secret-token")
    monkeypatch.setenv("DATABASE_URL", "postgresql://earshot:hunter2pw@db:5432/earshot")
    result = runner.invoke(app, ["check", "--config", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "config OK" in result.output
    assert (
        "hackernews (hackernews)" in result.output
        and "subreddits=acme, selfhosted" in result.output
    )
    assert "Slack at https://slack.com/api/" in result.output
    assert "xoxb-super-secret-token" not in result.output and "hunter2pw" not in result.output
    assert "database: postgresql://earshot:***@db:5432/earshot" in result.output


def test_secrets_repr_never_shows_values() -> None:
    secrets = Secrets.from_env(
        {"SLACK_BOT_TOKEN": "xoxb-123", "DATABASE_URL": "postgresql://u:pw@h/d"}
    )
    assert "xoxb-123" not in repr(secrets) and "pw@" not in repr(secrets)
    assert secrets.slack_bot_token == "xoxb-123"
