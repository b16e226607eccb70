"""The real process: start ``earshot run``, read /healthz, /readyz, /metrics, stop it with
SIGTERM, and check that nothing in the outbox was lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, select

from earshot.listener.models import Delivery
from earshot.listener.store import Store

from .conftest import load_json
from .fakeapi import FakeAPI, json_answer
from .fakeslack import FakeSlack


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def test_run_serves_health_metrics_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    reviews = load_json("appstore/customerreviews_us_id284815942_json.json")
    with FakeAPI() as api, FakeSlack() as slack:
        api.route(r"/page=1/", lambda path, params: json_answer(reviews))
        api.route(r"/page=\d+/", lambda path, params: json_answer({"feed": {}}))
        db = tmp_path / "earshot.db"
        config = tmp_path / "earshot.toml"
        config.write_text(
            f"""
[product]
name = "Acme"

[slack]
api_url = "{slack.api_url}"

[storage]
path = "{db}"

[[sources]]
type = "appstore"
app_id = 284815942
base_url = "{api.base_url}"
backfill = "10000d"
every = "1h"
"""
        )
        port = free_port()
        env = {
            **os.environ,
            "SLACK_BOT_TOKEN": "xoxb-test",
            "EARSHOT_HTTP_PORT": str(port),
            "EARSHOT_LOG_FORMAT": "json",
        }
        exe = Path(sys.executable).parent / "earshot"
        proc = subprocess.Popen(
            [str(exe), "run", "--config", str(config)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            assert wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200)
            # Slack allows about one message per second per channel: let a few go out.
            assert wait_for(lambda: len(slack.messages) >= 3)
            ready = httpx.get(f"{base}/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["database"] is True and ready.json()["scheduler"] is True
            text = httpx.get(f"{base}/metrics").text
            families = {f.name: f for f in text_string_to_metric_families(text)}
            polls = families["earshot_polls"]
            assert any(s.labels.get("source") == "appstore-284815942" for s in polls.samples)
            sent = sum(
                s.value
                for s in families["earshot_alerts_sent"].samples
                if s.name.endswith("_total")
            )
            assert sent >= 3
            assert "earshot_outbox_depth" in families
            assert "earshot_poll_seconds" in families
        finally:
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=15)
            elapsed = time.monotonic() - started
        assert proc.returncode == 0, err[-2000:]
        assert elapsed < 10
        assert '"stopped' in err
        posted = [m["metadata"]["event_payload"]["key"] for m in slack.messages]
    # Nothing lost, nothing doubled: every outbox row is either in Slack once, or still
    # pending for the next start.
    store = Store.from_url(f"sqlite:///{db}")
    with Session(store.engine) as session:
        rows = list(session.exec(select(Delivery)))
    assert rows
    assert len(posted) == len(set(posted))
    sent_keys = {r.idempotency_key for r in rows if r.status == "sent"}
    assert sent_keys == set(posted)
    assert all(r.status in ("sent", "pending") for r in rows)
    assert all(r.lease_until is None for r in rows if r.status == "pending")
