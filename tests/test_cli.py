"""The command line: demo, run --once, the console responder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import respx
from typer.testing import CliRunner

from earshot.config.cli import app

from .conftest import load_json
from .fakeslack import FakeSlack

runner = CliRunner()


def test_demo_prints_alerts_offline() -> None:
    with respx.mock(assert_all_called=False) as router:
        # Nothing may leave the process: the demo serves its bundled payloads itself.
        router.route().respond(500)
        result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "→ #cx-alerts" in result.output and "→ #cx-wins" in result.output
    assert "App Store" in result.output
    assert "earshot demo:" in result.output and "alerts delivered" in result.output
    # What a lead sees from each source, not only App Store reviews.
    leads = [body for channel, body in _demo_alerts(result.output) if channel == "#cx-alerts"]
    for source in ("App Store", "Hacker News", "Reddit"):
        assert any(f"on {source}" in body for body in leads), source


def _demo_alerts(output: str) -> list[tuple[str, str]]:
    """(channel, alert text) for each alert the console printed."""
    alerts = []
    for chunk in output.split("→ ")[1:]:
        channel, _, body = chunk.partition("\n")
        alerts.append((channel.strip(), body))
    return alerts


def test_demo_amplifies_only_relevant_praise_and_alerts_billing_and_churn() -> None:
    """Issue 14's acceptance on the demo: no complaint, sarcasm or off-topic review is offered
    to marketing; churn and billing complaints reach the leads."""
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    alerts = _demo_alerts(result.output)
    wins = [body for channel, body in alerts if channel == "#cx-wins"]
    leads = [body for channel, body in alerts if channel == "#cx-alerts"]
    assert wins and leads
    for body in wins:
        assert "intent: praise" in body, body
        assert "sentiment: positive" in body, body
        for complaint in ("bug", "billing", "churn risk", "spam"):
            assert complaint not in body.split("intent:")[1].split("|")[0], body
    # the complaints of the list, and the off-topic reviews, never reach marketing
    for title in (
        "Slowly deteriorating",
        "Losing pages",
        "Almost got a virus",
        "The Interface is Getting Cluttered",
        "Fix History and Images",
        "Dentists of Tucson",
        "Restland",
    ):
        assert not any(title in body for body in wins), title
    assert any("churn risk" in body for body in leads)
    assert any("billing" in body for body in leads)


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("earshot ")


def write_config(tmp_path: Path, api_url: str) -> Path:
    path = tmp_path / "earshot.toml"
    path.write_text(
        f"""
[product]
name = "Acme"
queries = ["google"]

[slack]
api_url = "{api_url}"
min_interval = 0

[storage]
path = "{tmp_path / "earshot.db"}"

[[sources]]
type = "appstore"
app_id = 284815942
base_url = "https://apple.test"
backfill = "10000d"
"""
    )
    return path


def test_run_once_posts_to_slack_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reviews = load_json("appstore/customerreviews_us_id284815942_json.json")
    with FakeSlack() as slack, respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        router.get(url__regex=r"https://apple\.test/us/rss/customerreviews/page=1/").respond(
            json=reviews
        )
        router.get(url__regex=r"https://apple\.test/us/rss/customerreviews/page=\d+/").respond(
            json={"feed": {}}
        )
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
        config = write_config(tmp_path, slack.api_url)
        result = runner.invoke(app, ["run", "--once", "--config", str(config)])
        assert result.exit_code == 0, result.output
        first = len(slack.messages)
        assert first > 0
        assert _summary(result.stdout) == (
            f"earshot run --once: 1 source polled, 50 new mentions, {first} alerts sent, "
            "0 undeliverable, 0 still pending; exit 0"
        )
        result = runner.invoke(app, ["run", "--once", "--config", str(config)])
        assert result.exit_code == 0
        assert len(slack.messages) == first


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "earshot"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "run" in out.stdout and "demo" in out.stdout


def test_outbox_status_and_retry_requeue_failed_alerts(tmp_path: Path) -> None:
    from earshot.config.settings import Secrets, load_settings
    from earshot.config.wiring import build

    config = write_config(tmp_path, "https://slack.test/api/")
    built = build(load_settings(config), Secrets(), database=f"sqlite:///{tmp_path / 'earshot.db'}")
    built.store.enqueue("health:x:1", "#ops", "health", {"title": "x"})
    built.store.enqueue("health:x:2", "#ops", "health", {"title": "y"})
    (first, second) = built.store.claim()
    assert first.delivery.id and second.delivery.id
    built.store.mark_failed(first.delivery.id, "slack: channel_not_found")
    built.store.mark_sent(second.delivery.id, "C1", "1.1")
    built.close()
    result = runner.invoke(app, ["outbox", "status", "--config", str(config)])
    assert result.exit_code == 0 and "failed: 1" in result.output and "sent: 1" in result.output
    result = runner.invoke(app, ["outbox", "retry", "--config", str(config)])
    assert result.exit_code == 0 and result.output.startswith("1 failed alerts queued again")
    result = runner.invoke(app, ["outbox", "status", "--config", str(config)])
    assert "pending: 1" in result.output and "failed" not in result.output


def _summary(output: str) -> str:
    """The one summary line ``earshot run --once`` prints on stdout."""
    lines = [line for line in output.splitlines() if line.startswith("earshot run --once:")]
    assert len(lines) == 1, output
    return lines[0]


def test_run_once_exits_3_when_every_source_fails(tmp_path: Path) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.route(host="apple.test").respond(404, json={"error": "gone"})
        config = write_config(tmp_path, "https://slack.test/api/")
        result = runner.invoke(app, ["run", "--once", "--config", str(config)])
    assert result.exit_code == 3, result.output
    line = _summary(result.stdout)
    assert "1 source polled (1 failed: appstore-284815942)" in line
    assert line.endswith("exit 3")


def test_run_once_exits_1_when_slack_is_unreachable_and_alerts_stay_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from earshot.listener.store import Store

    with socket.socket() as sock:  # a port nothing listens on: Slack unreachable
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    reviews = load_json("appstore/customerreviews_us_id284815942_json.json")
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        router.get(url__regex=r"https://apple\.test/us/rss/customerreviews/page=1/").respond(
            json=reviews
        )
        router.get(url__regex=r"https://apple\.test/us/rss/customerreviews/page=\d+/").respond(
            json={"feed": {}}
        )
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
        monkeypatch.setenv("EARSHOT_SLACK__DRAIN_TIMEOUT", "1s")
        config = write_config(tmp_path, f"http://127.0.0.1:{closed}/api/")
        result = runner.invoke(app, ["run", "--once", "--config", str(config)])
    assert result.exit_code == 1, result.output
    line = _summary(result.stdout)
    pending = Store.from_url(f"sqlite:///{tmp_path / 'earshot.db'}").outbox_counts()["pending"]
    assert pending > 0
    assert "0 alerts sent" in line
    assert f"{pending} still pending after the 1s drain timeout" in line
    assert line.endswith("exit 1")


def test_unreachable_postgres_is_one_line_and_exit_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    config = write_config(tmp_path, "https://slack.test/api/")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://earshot:s3cret@127.0.0.1:{closed}/prod")
    for command in (
        ["run", "--once"],
        ["db", "current"],
        ["db", "upgrade"],
        ["report"],
        ["export", "--approved"],
        ["outbox", "status"],
        ["train"],
    ):
        result = runner.invoke(app, [*command, "--config", str(config)])
        assert result.exit_code == 4, (command, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (command, result.stderr)
        assert lines[0].startswith("earshot: database unreachable: "), lines
        assert f"host 127.0.0.1, port {closed}, database prod" in lines[0]
        assert "s3cret" not in result.output
        assert lines[0].endswith("Connection refused"), lines


def test_unopenable_sqlite_file_is_one_line_and_exit_4(tmp_path: Path) -> None:
    config = write_config(tmp_path, "https://slack.test/api/")
    missing = tmp_path / "no such dir" / "earshot.db"
    config.write_text(config.read_text().replace(str(tmp_path / "earshot.db"), str(missing)))
    for command in (["run", "--once"], ["report"], ["outbox", "status"]):
        result = runner.invoke(app, [*command, "--config", str(config)])
        assert result.exit_code == 4, (command, result.output)
        assert result.stderr.strip() == (
            f"earshot: database unreachable: SQLite file {missing}: unable to open database file"
        )


def test_healthcheck_imports_neither_the_database_nor_the_models(tmp_path: Path) -> None:
    """The image's HEALTHCHECK has 5 s: the command must not load SQLAlchemy, SQLModel or
    numpy (seconds of imports on a busy host)."""
    config = tmp_path / "earshot.toml"
    config.write_text('[product]\nname = "Acme"\n[http]\nport = 1\n')
    code = (
        "import sys\n"
        "from earshot.config.cli import main\n"
        f"sys.argv = ['earshot', 'healthcheck', '--config', {str(config)!r}]\n"
        "try:\n    main()\n"
        "except SystemExit as exc:\n    print('exit', exc.code)\n"
        "print(sorted(m for m in ('sqlalchemy', 'sqlmodel', 'numpy') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARSHOT_HTTP")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.stdout.splitlines()[-2:] == ["exit 1", "[]"], out.stdout + out.stderr
    assert "http://127.0.0.1:1/healthz" in out.stderr  # the port from the config


def test_help_shows_no_bool_metavar_on_flags() -> None:
    for command in (["run", "--help"], ["demo", "--help"], ["export", "--help"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0
        assert "<bool>" not in result.output, result.output
        assert "--help" in result.output


def test_report_says_none_yet_for_empty_tables(tmp_path: Path) -> None:
    config = write_config(tmp_path, "https://slack.test/api/")
    result = runner.invoke(app, ["report", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "Response times (alert to Handled): none yet" in result.output
    assert "Top negative: none yet" in result.output
