"""Every config key can be set from the environment: ``EARSHOT_<SECTION>__<KEY>``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from earshot.config.cli import app
from earshot.config.settings import (
    ConfigError,
    env_value,
    load_settings,
    source_name,
    unknown_variables,
)

runner = CliRunner()

CONFIG = """
[product]
name = "Acme"
queries = ["acme"]

[slack]
alerts_channel = "#from-file"

[[sources]]
type = "hackernews"
every = "5m"

[[sources]]
type = "appstore"
app_id = 284815942
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "earshot.toml"
    path.write_text(CONFIG)
    return path


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("-0.4", -0.4),
        ("8081", 8081),
        ("true", True),
        ('["a", "b c"]', ["a", "b c"]),
        ('"quoted"', "quoted"),
        ("1m", "1m"),
        ("#cx-alerts", "#cx-alerts"),
        ("C0123ABC", "C0123ABC"),
        ("", ""),
        ("https://slack.example/api/", "https://slack.example/api/"),
    ],
)
def test_values_are_toml_when_they_parse_else_text(text: str, value: object) -> None:
    assert env_value(text) == value


def test_section_keys_sources_by_index_and_lists(config: Path) -> None:
    env = {
        "EARSHOT_SLACK__ALERTS_CHANNEL": "#from-env",
        "EARSHOT_SENTIMENT__NEGATIVE_AT": "-0.4",
        "EARSHOT_HTTP__PORT": "9100",
        "EARSHOT_SOURCES__0__EVERY": "1m",
        "EARSHOT_SOURCES__1__COUNTRIES": '["us", "gb"]',
        "EARSHOT_PRODUCT__QUERIES": '["acme", "\\"acme app\\""]',
        "EARSHOT_SLACK__INTERACTIVE": "true",
    }
    settings = load_settings(config, env=env)
    assert settings.slack.alerts_channel == "#from-env"
    assert settings.sentiment.negative_at == -0.4
    assert settings.http.port == 9100
    assert settings.sources[0].every == 60.0
    assert settings.sources[1].options()["countries"] == ["us", "gb"]
    assert settings.product.queries == ["acme", '"acme app"']
    assert settings.slack.interactive is True
    # Untouched keys keep the file's values.
    assert settings.product.name == "Acme"
    assert load_settings(config, env={}).slack.alerts_channel == "#from-file"


def test_a_new_source_can_be_added_at_the_next_index(config: Path) -> None:
    env = {
        "EARSHOT_SOURCES__2__TYPE": "reddit",
        "EARSHOT_SOURCES__2__SUBREDDITS": '["acme"]',
    }
    settings = load_settings(config, env=env)
    assert [source_name(s) for s in settings.sources][-1] == "reddit"


def test_a_number_meant_as_text_stays_text(config: Path) -> None:
    settings = load_settings(config, env={"EARSHOT_SLACK__ALERTS_CHANNEL": "12345"})
    assert settings.slack.alerts_channel == "12345"


def test_names_are_case_insensitive(config: Path) -> None:
    settings = load_settings(config, env={"earshot_slack__alerts_channel": "#lower"})
    assert settings.slack.alerts_channel == "#lower"


def test_legacy_http_port_variable_still_works(config: Path) -> None:
    assert load_settings(config, env={"EARSHOT_HTTP_PORT": "9200"}).http.port == 9200
    both = {"EARSHOT_HTTP_PORT": "9200", "EARSHOT_HTTP__PORT": "9300"}
    assert load_settings(config, env=both).http.port == 9300


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"EARSHOT_SLACK__ALERT_CHANNEL": "#x"},
            "slack.alert_channel (from EARSHOT_SLACK__ALERT_CHANNEL): unknown key "
            "(did you mean 'alerts_channel'?)",
        ),
        (
            {"EARSHOT_SLAK__ALERTS_CHANNEL": "#x"},
            "slak (from EARSHOT_SLAK__ALERTS_CHANNEL): unknown key (did you mean 'slack'?)",
        ),
        (
            {"EARSHOT_SOURCES__0__EVRY": "1m"},
            "sources[0].evry (from EARSHOT_SOURCES__0__EVRY): unknown key (did you mean 'every'?)",
        ),
        (
            {"EARSHOT_SENTIMENT__NEGATIVE_AT": "lots"},
            "sentiment.negative_at (from EARSHOT_SENTIMENT__NEGATIVE_AT):",
        ),
        (
            {"EARSHOT_SOURCES__5__EVERY": "1m"},
            "EARSHOT_SOURCES__5__EVERY: there is no sources[5] (the list has 2",
        ),
        (
            {"EARSHOT_PRODUCT__NAME__X": "1"},
            "EARSHOT_PRODUCT__NAME__X: product.name is not a table",
        ),
    ],
)
def test_bad_overrides_are_config_errors_naming_the_variable(
    config: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env=env)
    assert any(problem.startswith(message) for problem in caught.value.problems), (
        caught.value.problems
    )


def test_unknown_plain_variables_are_reported_with_a_suggestion() -> None:
    env = {
        "EARSHOT_LOG_LEVL": "DEBUG",
        "EARSHOT_LOG_LEVEL": "DEBUG",
        "EARSHOT_CONFIG": "x",
        "EARSHOT_TEST_POSTGRES_URL": "x",
        "OTHER": "x",
    }
    assert unknown_variables(env) == [
        "EARSHOT_LOG_LEVL: unknown environment variable (did you mean 'EARSHOT_LOG_LEVEL'?)"
    ]


def test_check_reports_env_typos_and_lists_overrides(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EARSHOT_SLACK__ALERTS_CHANEL", "#x")
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 2
    assert "(did you mean 'alerts_channel'?)" in result.output
    assert "EARSHOT_SLACK__ALERTS_CHANEL" in result.output

    monkeypatch.delenv("EARSHOT_SLACK__ALERTS_CHANEL")
    monkeypatch.setenv("EARSHOT_LOG_FORMATT", "json")
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 2
    assert "did you mean 'EARSHOT_LOG_FORMAT'?" in result.output

    monkeypatch.delenv("EARSHOT_LOG_FORMATT")
    monkeypatch.setenv("EARSHOT_SLACK__ALERTS_CHANNEL", "#from-env")
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "sentiment mixed, negative, unscored -> alert in #from-env" in result.output
    assert "from the environment: slack.alerts_channel (EARSHOT_SLACK__ALERTS_CHANNEL)" in (
        result.output
    )
