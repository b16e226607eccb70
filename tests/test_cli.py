"""The command line: demo, run --once, the console responder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_run_once_posts_to_slack_and_exits_0(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
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
