"""The real process: start ``earshot run``, read /healthz, /readyz, /metrics, stop it with
SIGTERM, and check that nothing in the outbox was lost."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from earshot.listener.models import Delivery
from earshot.listener.store import Store

from .conftest import load_json
from .fakeapi import FakeAPI, json_answer
from .fakeslack import FakeSlack

EXE = Path(sys.executable).parent / "earshot"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment plus a Slack token, JSON logs and ``extra``."""
    return {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test", "EARSHOT_LOG_FORMAT": "json", **extra}


def start_run(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``earshot run`` as its own process in ``env``."""
    return subprocess.Popen(
        [str(EXE), "run", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


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
        env = run_env({"EARSHOT_HTTP_PORT": str(port)})  # the legacy spelling
        proc = start_run(config, env)
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
            mentions = families["earshot_mentions"].samples
            assert {s.labels["sentiment"] for s in mentions} >= {"negative", "positive"}
            assert {s.labels["source"] for s in mentions} == {"appstore-284815942"}
            assert "earshot_rate_limit_wait_seconds" in families
            assert "earshot_alerts_failed" in families
            # The container's HEALTHCHECK command, on the port from the environment.
            probe = subprocess.run(
                [str(EXE), "healthcheck", "--config", str(config)],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert probe.returncode == 0, probe.stderr
            # A second run on the same SQLite file is refused: SQLite serves one process.
            second = subprocess.run(
                [str(EXE), "run", "--once", "--config", str(config)],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert second.returncode == 2, second.stderr[-2000:]
            assert second.stderr.splitlines()[-1].startswith(
                f"earshot: another earshot run (pid {proc.pid}) is using {db}: stop it first"
            ), second.stderr[-2000:]
            # A second run on its own file but the same port says which port and how to move.
            other = {**env, "EARSHOT_STORAGE__PATH": str(tmp_path / "other.db")}
            second = subprocess.run(
                [str(EXE), "run", "--config", str(config)],
                env=other,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert second.returncode == 2, second.stderr[-2000:]
            last = second.stderr.splitlines()[-1]
            assert last.startswith(f"earshot: cannot serve the ops endpoint on 0.0.0.0:{port}: ")
            assert "EARSHOT_HTTP__PORT" in last and "[http] enabled = false" in last
            assert '"stopped' not in second.stderr  # it never started
        finally:
            proc.send_signal(signal.SIGTERM)
            # A hang guard, not a deadline: a clean exit after SIGTERM is what is checked.
            _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        assert '"stopped' in err
        probe = subprocess.run(
            [str(EXE), "healthcheck", "--config", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.returncode == 1
        # Logs: one JSON object per line; mention and delivery lines carry their fields.
        records = [json.loads(line) for line in err.splitlines() if line.strip()]
        stored = [r for r in records if r["message"].startswith("appstore-284815942: new mention")]
        assert stored and all(
            r["source"] == "appstore"
            and r["source_key"] == "appstore-284815942"
            and isinstance(r["mention_id"], int)
            for r in stored
        )
        delivered = [r for r in records if ": sent to " in r["message"]]
        assert delivered and all(
            r["source"] == "appstore" and isinstance(r["mention_id"], int) for r in delivered
        )
        assert {r["mention_id"] for r in delivered} <= {r["mention_id"] for r in stored}
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


class TcpProxy:
    """A loopback TCP forwarder that can cut every connection and refuse new ones (the
    database "going away") and come back on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        assert self.listener is not None
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.sockets.clear()


def test_readyz_fails_when_every_source_fails_and_when_the_database_is_gone(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """On PostgreSQL (through a proxy we can cut): both sources answer 500, so /readyz is
    503 naming them; the database goes away, /readyz says so; it comes back, SIGTERM stops
    the process cleanly within 10 s and no outbox row is left leased."""
    target = make_url(fresh_postgres_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    via_proxy = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    with FakeAPI() as api, FakeSlack() as slack:
        api.route(r".*", lambda path, params: json_answer({"error": "down"}, status=500))
        config = tmp_path / "earshot.toml"
        config.write_text(
            f"""
[product]
name = "Acme"
queries = ["acme"]

[slack]
api_url = "{slack.api_url}"
failing_after = 1

[[sources]]
type = "appstore"
app_id = 284815942
base_url = "{api.base_url}"
every = "1h"

[[sources]]
type = "hackernews"
base_url = "{api.base_url}"
every = "1h"
"""
        )
        port = free_port()
        env = run_env({"DATABASE_URL": via_proxy, "EARSHOT_HTTP__PORT": str(port)})
        proc = start_run(config, env)
        base = f"http://127.0.0.1:{port}"

        def readyz() -> tuple[int, dict[str, Any]]:
            answer = httpx.get(f"{base}/readyz", timeout=10)
            return answer.status_code, answer.json()

        try:
            assert wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200)
            assert wait_for(
                lambda: (
                    readyz()[1]["sources"]
                    == {"appstore-284815942": "failing", "hackernews": "failing"}
                ),
                timeout=60,
            )
            status, report = readyz()
            assert status == 503
            assert report["some_source_working"] is False and report["ready"] is False
            assert report["database"] is True and report["scheduler"] is True

            proxy.cut()
            status, report = readyz()
            assert status == 503 and report["database"] is False
            assert httpx.get(f"{base}/healthz").status_code == 200  # alive, not ready

            proxy.restore()
            assert wait_for(lambda: readyz()[1]["database"] is True)
        finally:
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=120)  # a hang guard, not a deadline
            proxy.cut()
        assert proc.returncode == 0, err[-3000:]
    store = Store.from_url(fresh_postgres_url)
    try:
        with Session(store.engine) as session:
            rows = list(session.exec(select(Delivery)))
    finally:
        store.engine.dispose()
    # The failing sources were reported to Slack's health channel through the outbox.
    assert rows and all(r.kind == "health" for r in rows)
    assert all(r.status in ("sent", "pending") for r in rows)
    assert all(r.lease_until is None for r in rows if r.status == "pending")
