"""``earshot check`` checks: what run would refuse, the database, the whole plan; ``init``."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from earshot.config.cli import app

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "config" / "earshot.example.toml"
runner = CliRunner()

#: The issue's example: an OR of bare words under a phrase, a route that takes every
#: positive mention to a daily digest, Stack Exchange on two sites, buttons without tokens,
#: the example's App Store app.
PLAN = """
[product]
name = "Quill"
queries = ['"quill pad" (app OR notes)', "quillpad", "quill-pad", "quillpad.io", "qpad"]
[slack]
interactive = true
[[routes]]
sentiment = "positive"
action = "daily"
channel = "#cx-daily"
[[sources]]
type = "hackernews"
[[sources]]
type = "stackexchange"
sites = ["stackoverflow", "superuser"]
[[sources]]
type = "reddit"
subreddits = ["quill"]
[[sources]]
type = "appstore"
app_id = 284815942
"""


def check(config: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["check", "--config", str(config)], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No Slack secrets; a SQLite file that does not exist yet."""
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'earshot.db'}")
    return {}


def test_check_prints_the_routes_digests_spikes_and_search_terms(
    tmp_path: Path, sqlite_env: dict[str, str]
) -> None:
    config = tmp_path / "earshot.toml"
    config.write_text(PLAN)
    code, out, err = check(config)
    assert code == 0, out + err
    lines = out.splitlines()
    # the route that takes every positive mention shadows the amplify default
    assert "  routes[0]: sentiment positive -> daily digest in #cx-daily" in lines
    (amplify,) = [line for line in lines if "alert in #cx-wins" in line]
    assert amplify.endswith("(never: routes[0] takes all of them first)")
    assert not any(line.startswith("  negative -> ") for line in lines)
    assert "  - daily to #cx-daily at 09:00 UTC (routed mentions, with the chart)" in lines
    assert any(line.startswith("spikes: checked every 5m") for line in lines)
    assert any(line.startswith("sentiment shifts: each 1d bucket") for line in lines), out
    assert any(
        line.startswith("reach refresh: every 10m, the unhandled complaints of the last 1d")
        and "hackernews (50 a request)" in line
        for line in lines
    ), out
    # each source: the exact terms it sends, or that it matches locally
    searched = '      searches the API for: "quill pad", "app", "notes", "quillpad", "quill-pad", '
    searched += '"quillpad.io", "qpad"'
    assert lines.count(searched) == 2  # Hacker News and Stack Exchange
    assert "      reads new items and matches them against the queries locally" in lines
    assert "      every item is a mention (no query needed)" in lines
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert len(warnings) == 4, warnings
    assert warnings[0].startswith(
        "warning: sources[1] (stackexchange): a poll needs at least 14 requests "
        "(2 site(s) x 7 term(s)) every 5m, but its budget allows 1 (0.2 a minute)"
    )
    assert 'poll every "70m" or more' in warnings[0]
    assert warnings[1].startswith(
        """warning: query '"quill pad" (app OR notes)' sends "app", "notes" on their own """
        "to hackernews, stackexchange"
    )
    assert warnings[2].startswith(
        "warning: slack.interactive = true in socket mode, but SLACK_BOT_TOKEN and "
        "SLACK_APP_TOKEN are not set"
    )
    assert warnings[3].startswith(
        "warning: sources[3].app_id 284815942 is the example config's app"
    )


def test_no_bare_word_warning_for_a_plain_or(tmp_path: Path, sqlite_env: dict[str, str]) -> None:
    config = tmp_path / "earshot.toml"
    config.write_text(
        '[product]\nname = "Acme"\nqueries = ["acme OR acmeapp", "acme (cloud OR sync)"]\n'
        '[[sources]]\ntype = "hackernews"\n'
    )
    code, out, _ = check(config)
    assert code == 0
    # "cloud" and "sync" alone cannot match, but "acme" is searched anyway: no warning
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert [w for w in warnings if "bare word" in w] == [
        w for w in warnings if "'acme (cloud OR sync)'" in w
    ]
    assert any('"cloud", "sync"' in w for w in warnings)
    assert not any("'acme OR acmeapp'" in w for w in warnings)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ('type = "github"\nkinds = ["discussions"]', "kinds = ['discussions'] needs a token"),
        ('type = "discourse"', "base_url (the forum root, https://...) is required"),
        ('type = "reddit"\nsearch = true', "search = true needs OAuth"),
    ],
)
def test_check_and_run_refuse_what_a_source_refuses(
    tmp_path: Path, sqlite_env: dict[str, str], source: str, problem: str
) -> None:
    config = tmp_path / "earshot.toml"
    config.write_text(f'[product]\nname = "Acme"\nqueries = ["acme"]\n[[sources]]\n{source}\n')
    code, out, err = check(config)
    assert (code, out) == (2, "")
    assert err.startswith(f"config error in {config}: sources[0] (")
    assert problem in err and len(err.strip().splitlines()) == 1
    result = runner.invoke(app, ["run", "--once", "--config", str(config)])
    assert result.exit_code == 2 and problem in result.stderr, result.output
    assert not (tmp_path / "earshot.db").exists()  # refused before the database is opened


def test_check_reports_the_schema_revision(
    empty_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from earshot.config import migrations

    monkeypatch.setenv("DATABASE_URL", empty_url)
    config = tmp_path / "earshot.toml"
    config.write_text('[product]\nname = "Acme"\n[[sources]]\ntype = "appstore"\napp_id = 1\n')
    migrations.upgrade(empty_url, "0003")
    head = migrations.head()
    code, out, err = check(config)
    assert code == 2
    assert f"schema revision 0003, earshot needs {head}: run `earshot db upgrade`" in err
    migrations.upgrade(empty_url, "head")
    code, out, err = check(config)
    assert code == 0, err
    assert re.search(rf"^database: .*: reachable, schema revision {head} \(current\)$", out, re.M)


def test_an_unreachable_database_is_one_line_and_exit_4(
    tmp_path: Path, sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("DATABASE_URL", f"postgresql://earshot:hunter2pw@127.0.0.1:{port}/prod")
    config = tmp_path / "earshot.toml"
    config.write_text('[product]\nname = "Acme"\n[[sources]]\ntype = "appstore"\napp_id = 1\n')
    code, out, err = check(config)
    assert code == 4
    assert err == (
        f"database unreachable: host 127.0.0.1, port {port}, database prod "
        f"(postgresql://earshot:***@127.0.0.1:{port}/prod): Connection refused\n"
    )
    assert "hunter2pw" not in out + err


def test_init_writes_the_example_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "earshot.toml"
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text() == EXAMPLE.read_text()
    target.write_text("mine")
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 2 and "exists; pass --force" in result.stderr
    assert target.read_text() == "mine"
    assert runner.invoke(app, ["init", str(target), "--force"]).exit_code == 0
    assert target.read_text() == EXAMPLE.read_text()
    printed = runner.invoke(app, ["init", "-"])
    assert printed.exit_code == 0 and printed.stdout == EXAMPLE.read_text()
    result = runner.invoke(app, ["init", str(tmp_path / "no" / "such" / "dir.toml")])
    assert result.exit_code == 1 and "cannot write" in result.stderr


def test_run_refuses_the_unmodified_example(tmp_path: Path, sqlite_env: dict[str, str]) -> None:
    config = tmp_path / "earshot.toml"
    assert runner.invoke(app, ["init", str(config)]).exit_code == 0
    result = runner.invoke(app, ["run", "--once", "--config", str(config)])
    assert result.exit_code == 2
    assert "is the example config unchanged" in result.stderr
    assert not (tmp_path / "earshot.db").exists()  # nothing was polled or stored


def test_the_image_carries_no_config_to_run() -> None:
    """Without a mounted config the container says how to make one instead of polling the
    real APIs with the example."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    copies = [line for line in dockerfile.splitlines() if line.startswith("COPY")]
    assert not [line for line in copies if line.rstrip().endswith("/config/earshot.toml")]
    assert "EARSHOT_CONFIG=/config/earshot.toml" in dockerfile


# --------------------------------------------------------------------------- the fuzz

#: The base config the fuzz mutates: every section, as TOML text per key.
_BASE: dict[str, dict[str, str]] = {
    "product": {"name": '"Acme"', "queries": '["acme", "\\"acme app\\" (cloud OR sync)"]'},
    "sentiment": {"classifier": '"experience"'},
    "slack": {"alerts_channel": '"#cx-alerts"', "storm_threshold": "10", "sla": '"60m"'},
    "storage": {"path": '"earshot.db"'},
    "http": {"port": "8080"},
    "digests": {"timezone": '"UTC"', "daily_at": '"09:00"'},
    "spikes": {"k": "3.0", "every": '"5m"'},
    "shifts": {"min_jump": "0.15", "bucket": '"1d"'},
    "relevance": {"min_relevance": "0.5"},
    "training": {"weekly_at": '"sun 03:00"'},
    "sources": {"type": '"hackernews"', "every": '"5m"', "timeout": '"20s"'},
    "routes": {"sentiment": '"negative"', "channel": '"#cx-alerts"'},
}
_HOSTILE = [
    "[" * 400 + "]" * 400,
    "{a=" * 300 + "1" + "}" * 300,
    "9" * 5000,
    "9" * 400,
    "-" + "9" * 30,
    "inf",
    "-inf",
    "nan",
    "1e308",
    "1e-300",
    "0",
    "-1",
    "true",
    "[]",
    "{}",
    '""',
    '" "',
    '"has spaces"',
    '"<!channel>"',
    '"#CX"',
    '"http://"',
    '"\\u0000"',
    '"' + "A" * 5000 + '"',
    '"99999999999999w"',
    '"\\ud7ff\\uffff"',
    '"\\U0010FFFF"',
    "1979-05-27T07:32:00Z",
    '["a", 1]',
]
#: Values that some keys take: a mutation is not always an error.
_BENIGN = ['"acme"', '"#cx-ops"', '"5m"', '"Europe/Berlin"', "1", "0.7", '["acme"]', "false"]
_ENV_HOSTILE = [
    "9" * 5000,
    "\udcff\udcfe",
    '["\udcff"]',
    "[" * 300 + "]" * 300,
    "nan",
    "inf",
    "<!channel>",
    "verbose",
    "",
    "a\nb = 1",
]


def _render(doc: dict[str, dict[str, str]], extra: str = "") -> str:
    parts = [extra]
    for section, keys in doc.items():
        header = f"[[{section}]]" if section in ("sources", "routes") else f"[{section}]"
        parts.append(header)
        parts.extend(f"{key} = {value}" for key, value in keys.items())
    return "\n".join(parts) + "\n"


def _mutate(rng: random.Random) -> tuple[str, dict[str, str]]:
    doc = {section: dict(keys) for section, keys in _BASE.items()}
    env: dict[str, str] = {}
    extra = ""
    for _ in range(rng.randint(1, 2)):
        roll = rng.random()
        section = rng.choice(list(doc))
        keys = list(doc[section])
        if roll < 0.2:
            doc[section][rng.choice(keys)] = rng.choice(_BENIGN)
        elif roll < 0.6:
            doc[section][rng.choice(keys)] = rng.choice(_HOSTILE)
        elif roll < 0.67:
            extra = ".".join(["k"] * rng.choice([20, 3000])) + " = 1"
        else:
            key = rng.choice(keys)
            index = "0__" if section in ("sources", "routes") else ""
            name = f"EARSHOT_{section.upper()}__{index}{key.upper()}"
            if rng.random() < 0.2:
                name = rng.choice(["EARSHOT_LOG_LEVEL", "EARSHOT_LOG_FORMAT", "EARSHOT_\udcff"])
            env[name] = rng.choice(_ENV_HOSTILE)
    return _render(doc, extra), env


def test_check_never_crashes_on_mutated_configs_and_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seeded: every outcome is exit 0, or exit 2 with one line per problem (or 4, one line,
    for a storage path whose directory does not exist), never a traceback."""
    for name in ("DATABASE_URL", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "earshot.toml"
    config.write_text(_render(_BASE))
    assert check(config)[0] == 0  # the base itself is fine
    rng = random.Random(15)
    outcomes = {0: 0, 2: 0, 4: 0}
    for case in range(60):
        text, env = _mutate(rng)
        config.write_text(text, encoding="utf-8")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        try:
            result = runner.invoke(app, ["check", "--config", str(config)])
        finally:
            for name in env:
                monkeypatch.delenv(name, raising=False)
        where = f"case {case}: env {sorted(env)!r}, config:\n{text[:600]}\n{result.output[-800:]}"
        assert result.exception is None or isinstance(result.exception, SystemExit), where
        assert result.exit_code in outcomes, where
        assert "Traceback" not in result.output, where
        outcomes[result.exit_code] += 1
        if result.exit_code == 4:
            assert result.stderr.startswith("database unreachable: SQLite file "), where
            assert len(result.stderr.strip().splitlines()) == 1, where
        if result.exit_code == 2:
            lines = result.stderr.strip().splitlines()
            assert lines and lines[0].startswith("config error in "), where
            if len(lines) > 1:  # several problems: a heading, then one line each
                assert all(line.startswith("  - ") for line in lines[1:]), where
            assert all(len(line) < 400 for line in lines), where
    assert outcomes[0] >= 3 and outcomes[2] >= 30, outcomes
