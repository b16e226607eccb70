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
    # check connects: the database "db" does not resolve here, a distinct exit code
    assert result.exit_code == 4, result.output
    assert "config OK" in result.output
    assert (
        "hackernews (hackernews)" in result.output
        and "subreddits=acme, selfhosted" in result.output
    )
    assert "Slack at https://slack.com/api/" in result.output
    assert "xoxb-super-secret-token" not in result.output and "hunter2pw" not in result.output
    assert "database: postgresql://earshot:***@db:5432/earshot: unreachable" in result.output
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith(
            "database unreachable: host db, port 5432, database earshot "
            "(postgresql://earshot:***@db:5432/earshot): "
        )
    )


def test_secrets_repr_never_shows_values() -> None:
    secrets = Secrets.from_env(
        {"SLACK_BOT_TOKEN": "xoxb-123", "DATABASE_URL": "postgresql://u:pw@h/d"}
    )
    assert "xoxb-123" not in repr(secrets) and "pw@" not in repr(secrets)
    assert secrets.slack_bot_token == "xoxb-123"


def _problem(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    """The one problem ``load_settings`` reports for the config ``text``."""
    path = tmp_path / "earshot.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env=env or {})
    (problem,) = info.value.problems
    assert "\n" not in problem and len(problem) < 300, problem
    return problem


MINIMAL = '[product]\nname = "Acme"\nqueries = ["acme"]\n[[sources]]\ntype = "hackernews"\n'


def _source_key(line: str) -> str:
    return MINIMAL + line + "\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a = " + "[" * 400 + "]" * 400 + "\n" + MINIMAL, "nested more than 10 levels"),
        ("a = " + "{b=" * 400 + "1" + "}" * 400 + "\n" + MINIMAL, "invalid TOML: nested too"),
        (".".join(["k"] * 3000) + " = 1\n" + MINIMAL, "nested more than 10 levels"),
        (MINIMAL + "[slack]\nstorm_threshold = " + "9" * 5000, "invalid TOML: an integer too"),
        (MINIMAL + "[slack]\nstorm_threshold = " + "9" * 400, "slack.storm_threshold: must be"),
        (MINIMAL + '[digests]\ntimezone = "' + "A" * 5000 + '"', "digests.timezone: unknown"),
        (_source_key('every = "99999999999999w"'), "sources[0].every: at most 366 days"),
        (_source_key("every = inf"), "sources[0].every: expected a finite duration"),
        (_source_key("every = nan"), "sources[0].every: expected a finite duration"),
        (_source_key("every = " + "9" * 400), "sources[0].every: at most 366 days"),
        (_source_key('base_url = "http://"'), "sources[0].base_url: must be an http(s) URL"),
        (_source_key("requests_per_minute = 1e-300"), "requests_per_minute: must be at least"),
        (_source_key("timeout = 1e308"), "sources[0].timeout: at most 10 minutes"),
        (MINIMAL + '[slack]\nalerts_channel = "has spaces"', "is not a Slack channel"),
        (MINIMAL + '[slack]\namplify_channel = "<!channel>"', "is not a Slack channel"),
        (MINIMAL + '[slack]\nalerts_channel = "#CX-Alerts"', "did you mean '#cx-alerts'"),
        (MINIMAL + "[spikes]\nk = inf", "spikes.k: must be a finite number"),
        (MINIMAL + '[digests]\nweekly = [""]', "digests.weekly[0]: expected a channel"),
        (
            MINIMAL + '[[routes]]\nsentiment = "positive"\nchannel = ""',
            "channel: required for action 'instant'",
        ),
    ],
)
def test_hostile_values_are_one_clear_problem(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _problem(tmp_path, text)


def test_an_empty_alerts_channel_means_none(tmp_path: Path) -> None:
    path = tmp_path / "earshot.toml"
    path.write_text(MINIMAL + '[slack]\nalerts_channel = ""\nhealth_channel = " "\n')
    settings = load_settings(path, env={})
    assert settings.slack.alerts_channel is None and settings.slack.health_channel is None


def test_a_bad_app_id_is_explained_not_a_pattern(tmp_path: Path) -> None:
    problem = _problem(tmp_path, MINIMAL + '[[sources]]\ntype = "appstore"\napp_id = "acme-app"')
    assert problem == (
        "sources[1].app_id: expected the app's numeric id (the number after 'id' in its App "
        "Store link), got 'acme-app'"
    )


def test_hostile_environment_values_name_their_variable(tmp_path: Path) -> None:
    problem = _problem(tmp_path, MINIMAL, {"EARSHOT_SLACK__STORM_THRESHOLD": "9" * 5000})
    assert problem.startswith(
        "slack.storm_threshold (from EARSHOT_SLACK__STORM_THRESHOLD): number too large"
    )
    # os.environ holds bytes that are not UTF-8 as lone surrogates
    problem = _problem(tmp_path, MINIMAL, {"EARSHOT_PRODUCT__QUERIES": '["\udcff\udcfe"]'})
    assert problem.startswith("EARSHOT_PRODUCT__QUERIES: not valid UTF-8 text")
    problem = _problem(tmp_path, MINIMAL, {"EARSHOT_PRODUCT__NAME": "\udcff"})
    assert problem.startswith("EARSHOT_PRODUCT__NAME: not valid UTF-8 text")
    problem = _problem(tmp_path, MINIMAL, {"EARSHOT_PRODUCT__QUERIES": "[" * 300 + "]" * 300})
    assert problem.startswith("product.queries[0]")


def test_plain_variables_with_a_fixed_set_of_values_are_checked() -> None:
    from earshot.config.settings import unknown_variables

    assert unknown_variables({"EARSHOT_LOG_LEVEL": "verbose", "EARSHOT_LOG_FORMAT": "JSON"}) == [
        "EARSHOT_LOG_LEVEL: 'verbose' is not one of CRITICAL, DEBUG, ERROR, INFO, WARNING"
    ]
    assert unknown_variables({"EARSHOT_LOG_LEVEL": "debug", "EARSHOT_LOG_FORMAT": "xml"}) == [
        "EARSHOT_LOG_FORMAT: 'xml' is not one of JSON, TEXT"
    ]


def test_a_missing_config_says_how_to_make_one(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", "--config", str(tmp_path / "earshot.toml")])
    assert result.exit_code == 2
    assert f"`earshot init {tmp_path / 'earshot.toml'}` writes a commented example" in (
        result.output
    )
