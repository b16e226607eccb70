"""Request signing (HTTP mode), the /slack/events route, Socket Mode health, the export CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.signature import Clock
from typer.testing import CliRunner

from earshot.config.http import OpsServer
from earshot.listener import workflow as wf
from earshot.listener.models import Mention, utcnow
from earshot.listener.store import Store
from earshot.responders.interactions import InteractionConfig
from earshot.responders.slack_app import ReplayGuard, SlackInteractivity, verify_request

from .conftest import cli_config
from .fakeslack import FakeSlack
from .test_slack_interactions import SECRET, sign

SLACK = Path(__file__).parent / "fixtures" / "slack"
VECTORS = json.loads((SLACK / "signature" / "vectors.json").read_text("utf-8"))["vectors"]


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def vector(name: str) -> dict[str, Any]:
    found = {v["id"]: v for v in VECTORS}
    entry = dict(found[name])
    if "same_as" in entry:
        entry = {**found[entry["same_as"]], **{k: v for k, v in entry.items() if k != "same_as"}}
    return entry


def test_the_official_vector_passes_and_its_replay_is_refused() -> None:
    v = vector("official_slash_command")
    clock = FixedClock(float(v["clock_now"]))
    guard = ReplayGuard()
    assert verify_request(v["signing_secret"], v["body"], v["headers"], guard, clock=clock) is None
    again = verify_request(v["signing_secret"], v["body"], v["headers"], guard, clock=clock)
    assert again == "replayed request"


@pytest.mark.parametrize("name", ["official_body_as_bytes", "lowercase_header_names"])
def test_official_variants_pass(name: str) -> None:
    v = vector(name)
    body = v["body"].encode() if name.endswith("bytes") else v["body"]
    clock = FixedClock(float(v["clock_now"]))
    assert verify_request(v["signing_secret"], body, v["headers"], clock=clock) is None


def test_the_derived_block_actions_vector_passes() -> None:
    v = vector("derived_block_actions_form_body")
    # The file ends with a newline (a text file); the signed body is the line without it.
    body = (SLACK / v["body_file"]).read_bytes().rstrip(b"\n")
    headers = {
        "X-Slack-Request-Timestamp": v["timestamp"],
        "X-Slack-Signature": v["expected_signature"],
    }
    clock = FixedClock(float(v["clock_now"]))
    assert verify_request(v["signing_secret"], body, headers, clock=clock) is None


def test_wrong_signature_old_timestamp_and_missing_headers_are_refused() -> None:
    tampered = vector("tampered_body")
    clock = FixedClock(float(tampered["clock_now"]))
    secret = tampered["signing_secret"]
    headers = tampered["headers"]
    assert verify_request(secret, tampered["body"], headers, clock=clock) == "signature mismatch"
    official = vector("official_slash_command")
    assert verify_request("not-the-secret", official["body"], headers, clock=clock) == (
        "signature mismatch"
    )
    stale = vector("stale_timestamp")  # the real clock: 2018 is long past the 5 minutes
    assert verify_request(secret, stale["body"], stale["headers"]) == (
        "timestamp outside the 5-minute window"
    )
    just_late = FixedClock(float(official["clock_now"]) + 301)
    assert verify_request(secret, official["body"], headers, clock=just_late) == (
        "timestamp outside the 5-minute window"
    )
    at_the_edge = FixedClock(float(official["clock_now"]) + 300)
    assert verify_request(secret, official["body"], headers, clock=at_the_edge) is None
    missing = vector("missing_headers")
    assert verify_request(secret, missing["body"], missing["headers"], clock=clock) == (
        "missing signature headers"
    )


def test_slack_events_route_on_the_ops_port(store: Store) -> None:
    """POST /slack/events: Bolt answers a signed request; bad and replayed ones get 401."""
    with FakeSlack() as slack:
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        ui = SlackInteractivity(
            store, InteractionConfig(), client=client, mode="http", signing_secret=SECRET
        )
        ops = OpsServer(
            "127.0.0.1", 0, ready=lambda: {"ready": True}, post={"/slack/events": ui.handle_http}
        )
        ops.start()
        try:
            url = f"http://127.0.0.1:{ops.port}/slack/events"
            body = b"ssl_check=1&token=legacy"  # Slack's SSL check, answered by Bolt
            headers = sign(body, int(time.time()))
            ok = httpx.post(url, content=body, headers=headers)
            replay = httpx.post(url, content=body, headers=headers)
            bad = httpx.post(url, content=body + b"x", headers=sign(body, int(time.time()) - 1))
            missing = httpx.post(url, content=body)
            other = httpx.post(f"http://127.0.0.1:{ops.port}/elsewhere", content=body)
        finally:
            ops.stop()
    assert ok.status_code == 200
    assert replay.status_code == 401 and b"replayed" in replay.content
    assert bad.status_code == 401 and b"signature mismatch" in bad.content
    assert missing.status_code == 401
    assert other.status_code == 404


def test_socket_mode_down_makes_readiness_false(store: Store, tmp_path: Path) -> None:
    """A socket that never (re)connects: slack_connected false, /readyz not ready."""
    from earshot.config.service import Service
    from earshot.config.settings import Secrets, parse_settings
    from earshot.config.wiring import build

    with FakeSlack() as slack:  # apps.connections.open answers invalid_auth: no socket
        settings = parse_settings(
            {
                "product": {"name": "Acme", "queries": ["apple"]},
                "slack": {"api_url": slack.api_url, "interactive": True},
                "sources": [{"type": "hackernews", "base_url": "http://127.0.0.1:9/"}],
            }
        )
        app = build(
            settings,
            Secrets(slack_bot_token="xoxb-test", slack_app_token="xapp-test"),
            database=f"sqlite:///{tmp_path / 'e.db'}",
        )
        ui = app.extras["slack"]
        assert isinstance(ui, SlackInteractivity) and ui.mode == "socket"
        assert {job for job, _, _ in app.extras["jobs"]} >= {"slack-sla", "slack-watchdog"}
        service = Service(app)
        service.scheduler.start()
        try:
            ui.start()
            assert ui.watchdog() is False  # tried again, still down
            report = service.readiness()
        finally:
            service.scheduler.shutdown(wait=False)
            ui.stop()
            app.close()
    assert report["slack_connected"] is False and report["ready"] is False
    assert report["slack_mode"] == "socket" and "invalid_auth" in report["slack_error"]
    assert ui.reconnects == 1
    opens = [r for r in slack.requests if r[0] == "apps.connections.open"]
    assert len(opens) == 2


def test_readiness_follows_the_socket_connection(store: Store) -> None:
    """Connected, then dropped and not coming back: readiness says so."""
    with FakeSlack() as slack:
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        ui = SlackInteractivity(
            store, InteractionConfig(), client=client, mode="socket", app_token="xapp-test"
        )
        handler = ui._socket_handler()
        state = {"up": True}
        handler.client.is_connected = lambda: state["up"]  # the socket's own report
        assert ui.readiness()["slack_connected"] is True
        state["up"] = False  # dropped; reconnecting fails (invalid_auth from the fake)
        assert ui.watchdog() is False
        report = ui.readiness()
        ui.stop()
    assert report["slack_connected"] is False


def test_export_approved_as_json_and_csv(
    store: Store, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from earshot.config.cli import app as cli

    mention = Mention(
        source="appstore",
        external_id="r1",
        url="https://apps.apple.com/r1",
        author="=cmd|' /C calc'!A0",
        text="Best app I have used this year.",
        created_at=utcnow(),
        sentiment_label="positive",
    )
    other = Mention(source="appstore", external_id="r2", text="ok", created_at=utcnow())
    store.ingest(None, [mention, other], None, lambda m: [])
    wf.transition(store, mention.id or 0, "approve", wf.Actor("U111", "lead"))
    config = cli_config(database_url, tmp_path, monkeypatch)
    runner = CliRunner()
    result = runner.invoke(
        cli, ["export", "--approved", "--since", "7d", "--format", "json", "-c", str(config)]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["mention_id"], r["approved_by"], r["url"]) for r in rows] == [
        (mention.id, "U111", "https://apps.apple.com/r1")
    ]
    assert rows[0]["snippet"].startswith("“Best app I have used this year.”")
    out = tmp_path / "wins.csv"
    result = runner.invoke(
        cli, ["export", "--approved", "--format", "csv", "-o", str(out), "-c", str(config)]
    )
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("mention_id,source,url,author")
    assert len(lines) == 2 and ",'=cmd|" in lines[1]  # no spreadsheet formula
    bad = runner.invoke(cli, ["export", "--approved", "--since", "soon", "-c", str(config)])
    assert bad.exit_code == 2
